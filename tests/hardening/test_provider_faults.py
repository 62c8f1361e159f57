"""Every simulator fault during submission, check, cancel, polling and catalog sync.

For each fault mode the same story runs through the real HTTP API and the real workers' steps:
orders are placed and submitted, then the fault is switched on for one action at a time while
that action is exercised (a submission, a live check, a cancel, a poll, a catalog sync). The
client only ever sees documented answers (200/201/409, or 503 PROVIDER_UNAVAILABLE: never a
500). Once the provider behaves again and settles the orders (one canceled, one partial), the
books close: each wallet equals credits - charges + refunds, no refund exceeds its charge, no
submission is left half-done, the catalog is intact, and ``audit verify`` finds nothing.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
import pytest
from support import bearer, open_funded_account, seed_catalog

from boost_ledger import postgres
from boost_ledger.audit.verify import verify
from boost_ledger.upstream.client import ProviderClient
from boost_ledger.upstream.errors import ProviderError
from boost_ledger.workers import catalog_sync, poller, submitter

ORDERS = "/api/v1/boost/orders"
MODES = ["latency", "http_500", "html", "error", "malformed_json", "timeout", "reply_lost"]
CREDIT_KOBO = 10_000_000
_keys = itertools.count()


@pytest.fixture(scope="module")
async def provider(simulator_url: str) -> AsyncIterator[ProviderClient]:
    """As conftest's, but impatient, so a hanging provider costs a fraction of a second."""
    client = ProviderClient(f"{simulator_url}/api/v2", "sim-key", timeout_s=0.3,
                            read_retries=1, backoff_s=0.01)
    yield client
    await client.aclose()


@pytest.fixture(scope="module", autouse=True)
async def _catalog(pool: asyncpg.Pool[Any]) -> None:
    await seed_catalog(pool)


async def _fault(simulator: httpx.AsyncClient, action: str, mode: str) -> None:
    rule: dict[str, Any] = {"action": action, "mode": mode}
    if mode in ("latency", "timeout"):
        rule["latency_ms"] = 100 if mode == "latency" else 2000
    response = await simulator.post("/faults", json=rule)
    assert response.status_code == 200, response.text


async def _clear(simulator: httpx.AsyncClient) -> None:
    await simulator.post("/faults", json={"action": "*", "mode": "none"})


async def _place(client: httpx.AsyncClient, key: str) -> str:
    body = {"service_id": "1", "link": "https://instagram.com/p/fault", "quantity": 1000,
            "idempotency_key": f"fault-{next(_keys)}"}
    response = await client.post(ORDERS, json=body, headers=bearer(key))
    assert response.status_code == 201, response.text
    order_id: str = response.json()["data"]["order_id"]
    return order_id


async def _make_due(pool: asyncpg.Pool[Any]) -> None:
    await pool.execute("update order_polls set next_check_at = now() - interval '1 second'")


async def _poll(pool: asyncpg.Pool[Any], provider: ProviderClient) -> None:
    await _make_due(pool)
    # On a ProviderError the worker backs off; the claimed orders are asked again later.
    with contextlib.suppress(ProviderError):
        await poller.poll_once(pool, provider, 5.0)


async def _force(simulator: httpx.AsyncClient, pool: asyncpg.Pool[Any], order_id: str,
                 **fields: Any) -> None:
    provider_id = await pool.fetchval(
        "select provider_order_id from orders where order_id = $1", int(order_id))
    if provider_id is not None:
        response = await simulator.post(f"/orders/{provider_id}", json=fields)
        assert response.status_code == 200, response.text


@pytest.mark.parametrize("mode", MODES)
async def test_each_fault_leaves_the_books_consistent(
    mode: str, pool: asyncpg.Pool[Any], client: httpx.AsyncClient, provider: ProviderClient,
    simulator: httpx.AsyncClient, dsn: str,
) -> None:
    account_id, key = await open_funded_account(pool, CREDIT_KOBO)
    answers: list[httpx.Response] = []
    partial, canceling, canceled = [await _place(client, key) for _ in range(3)]
    assert await submitter.drain(pool, provider) == ["provider_order_id"] * 3

    await _fault(simulator, "add", mode)  # a submission under the fault
    late = await _place(client, key)
    await submitter.drain(pool, provider)
    await _clear(simulator)

    await _fault(simulator, "status", mode)  # a live check and a poll under the fault
    answers.append(await client.post(f"{ORDERS}/{partial}/check", headers=bearer(key)))
    await _poll(pool, provider)
    await _clear(simulator)

    await _fault(simulator, "cancel", mode)  # a cancel under the fault
    answers.append(await client.post(f"{ORDERS}/{canceling}/cancel", headers=bearer(key)))
    await _clear(simulator)

    await _fault(simulator, "services", mode)  # a catalog sync under the fault
    catalog_before = await pool.fetch("select * from services order by service_id")
    with contextlib.suppress(ProviderError):
        await catalog_sync.sync_once(pool, provider, Decimal(1500), Decimal(20))
    assert await pool.fetch("select * from services order by service_id") == catalog_before
    await _clear(simulator)

    for answer in answers:
        assert answer.status_code in (200, 409, 503), answer.text
        if answer.status_code == 503:
            assert answer.json()["code"] == "PROVIDER_UNAVAILABLE"
            assert answer.headers["retry-after"]
    # The provider recovers and settles: one order partial, one canceled, the rest as they are.
    await _force(simulator, pool, partial, status="Partial", remains=400)
    await _force(simulator, pool, canceled, status="Canceled")
    await _force(simulator, pool, late, status="Completed")
    await _poll(pool, provider)
    await _assert_books_close(pool, dsn, account_id, {partial: 64_800, canceled: 162_000})


async def _assert_books_close(
    pool: asyncpg.Pool[Any], dsn: str, account_id: int, expected_refunds: dict[str, int]
) -> None:
    orders = await pool.fetch(
        "select order_id, price_kobo, refunded_kobo, submission, status from orders"
        " where account_id = $1", account_id)
    assert len(orders) == 4
    for order in orders:
        assert 0 <= order["refunded_kobo"] <= order["price_kobo"]
        assert order["submission"] != "attempting", dict(order)
        if str(order["order_id"]) in expected_refunds:
            assert order["refunded_kobo"] == expected_refunds[str(order["order_id"])], dict(order)
    charged = sum(order["price_kobo"] for order in orders)
    refunded = sum(order["refunded_kobo"] for order in orders)
    balance = await pool.fetchval(
        "select balance_kobo from wallets where account_id = $1", account_id)
    assert balance == CREDIT_KOBO - charged + refunded
    owner = await postgres.owner_connection(dsn)
    try:
        report = await verify(owner)
    finally:
        await owner.close()
    assert report.ok, report.findings
