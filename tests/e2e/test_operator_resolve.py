"""The operator's side of unknown submissions, through the real ``boost`` console script:
``boost orders unknown`` lists them, ``boost orders resolve`` settles each exactly once."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from support import bearer, open_funded_account, seed_catalog

from boost_ledger.ledger import fulfilment
from boost_ledger.upstream.client import ProviderClient
from boost_ledger.workers import poller, submitter

FUNDS_KOBO = 1_000_00
PRICE_100_KOBO = 162_00  # service "1": 0.90 USD * 1500 * 1.20 = 1620 NGN per 1000
BOOST = shutil.which("boost", path=str(Path(sys.executable).parent)) or "boost"


@pytest.fixture(scope="module", autouse=True)
async def catalog(pool: asyncpg.Pool[Any]) -> None:
    await seed_catalog(pool)


async def _boost(dsn: str, *arguments: str) -> tuple[int, str, str]:
    """Run the console script against the test database; (exit code, stdout, stderr)."""
    environment = {**os.environ, "DATABASE_URL": dsn, "BOOST_LOG_LEVEL": "warning"}
    process = await asyncio.create_subprocess_exec(
        BOOST, *arguments, env=environment,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


async def _unknown_ids(dsn: str) -> dict[str, dict[str, Any]]:
    code, stdout, stderr = await _boost(dsn, "orders", "unknown", "--json")
    assert code == 0, stderr
    return {item["order_id"]: item for item in json.loads(stdout)}


async def _place(client: httpx.AsyncClient, key: str) -> dict[str, Any]:
    link = f"https://instagram.com/p/{uuid.uuid4().hex}"
    body = {"service_id": "1", "link": link, "quantity": 100, "idempotency_key": uuid.uuid4().hex}
    response = await client.post("/api/v1/boost/orders", json=body, headers=bearer(key))
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


async def _claim(pool: asyncpg.Pool[Any], order_id: str) -> fulfilment.Claimed:
    async with pool.acquire() as connection:
        claimed = await fulfilment.claim_for_submission(connection)
    assert claimed is not None and claimed.order_id == int(order_id)
    return claimed


async def _sweep(pool: asyncpg.Pool[Any]) -> int:
    async with pool.acquire() as connection:
        return await fulfilment.mark_abandoned_attempts(connection, older_than_s=0)


async def _refunds(pool: asyncpg.Pool[Any], order_id: str) -> int:
    count: int = await pool.fetchval(
        "select count(*) from events where type = 'Refunded' and (data->>'order_id')::bigint = $1",
        int(order_id),
    )
    return count


async def _provider_orders(simulator: httpx.AsyncClient, link: str) -> list[dict[str, Any]]:
    return [item for item in (await simulator.get("/orders")).json() if item["link"] == link]


async def test_an_accepted_order_lost_in_a_crash_is_resolved_with_its_provider_id_and_polled(
    dsn: str, pool: asyncpg.Pool[Any], client: httpx.AsyncClient,
    simulator: httpx.AsyncClient, provider: ProviderClient,
) -> None:
    """Crash after the provider accepted: listed as unknown, never resent, resolved by the
    operator with the provider's id, then polled to completed; a second resolve is refused."""
    _, key = await open_funded_account(pool, FUNDS_KOBO)
    order = await _place(client, key)
    claimed = await _claim(pool, order["order_id"])
    fields = {name: str(value) for name, value in claimed.fields.items()}
    provider_order_id = await provider.add(claimed.provider_service_id, fields)
    # The submitter dies here, before recording OrderSubmitted.
    assert await _sweep(pool) == 1
    assert await submitter.drain(pool, provider) == []

    listed = await _unknown_ids(dsn)
    assert order["order_id"] in listed
    item = listed[order["order_id"]]
    assert (item["service_id"], item["link"], item["price"]) == ("1", order["link"], "162.00")
    assert item["reason"] == "no outcome recorded after the attempt"

    code, stdout, stderr = await _boost(
        dsn, "orders", "resolve", order["order_id"], "--provider-order-id", provider_order_id
    )
    assert code == 0, stderr
    assert provider_order_id in stdout
    assert order["order_id"] not in await _unknown_ids(dsn)
    row = await pool.fetchrow("select * from orders where order_id = $1", int(order["order_id"]))
    assert (row["submission"], row["provider_order_id"]) == ("submitted", provider_order_id)
    resolved_by = await pool.fetchval(
        "select data->>'resolved_by' from events where stream_id = $1 and type = 'OrderSubmitted'",
        f"order-{order['order_id']}",
    )
    assert resolved_by == "operator"

    # Now the poller follows it like any submitted order.
    await simulator.post(f"/orders/{provider_order_id}", json={"status": "Completed", "remains": 0})
    assert await poller.poll_once(pool, provider, interval_s=60) >= 1
    shown = await client.get(f"/api/v1/boost/orders/{order['order_id']}", headers=bearer(key))
    assert (shown.json()["data"]["status"], shown.json()["data"]["refunded"]) == (
        "completed", False
    )
    assert len(await _provider_orders(simulator, order["link"])) == 1

    again, _, stderr = await _boost(
        dsn, "orders", "resolve", order["order_id"], "--provider-order-id", "99999"
    )
    assert again != 0 and "not awaiting an operator" in stderr
    still = await pool.fetchval(
        "select provider_order_id from orders where order_id = $1", int(order["order_id"])
    )
    assert still == provider_order_id
    assert await _refunds(pool, order["order_id"]) == 0


async def test_a_provider_id_already_recorded_for_another_order_is_refused(
    dsn: str, pool: asyncpg.Pool[Any], client: httpx.AsyncClient, provider: ProviderClient,
) -> None:
    """Two unknown orders resolved with one provider id: the second is refused (exit 1) and
    stays unknown, since the poller asks after each provider id once and its status would
    settle, and refund, both."""
    _, key = await open_funded_account(pool, FUNDS_KOBO)
    first, second = await _place(client, key), await _place(client, key)
    for order in (first, second):
        await _claim(pool, order["order_id"])
    assert await _sweep(pool) == 2
    code, _, stderr = await _boost(
        dsn, "orders", "resolve", first["order_id"], "--provider-order-id", "shared-1"
    )
    assert code == 0, stderr
    code, _, stderr = await _boost(
        dsn, "orders", "resolve", second["order_id"], "--provider-order-id", "shared-1"
    )
    assert code == 1
    assert f"already recorded for order {first['order_id']}" in stderr
    assert second["order_id"] in await _unknown_ids(dsn)
    code, _, stderr = await _boost(
        dsn, "orders", "resolve", second["order_id"], "--provider-order-id", "shared-2"
    )
    assert code == 0, stderr


async def test_two_resolves_naming_one_provider_id_take_turns(
    dsn: str, pool: asyncpg.Pool[Any], client: httpx.AsyncClient,
) -> None:
    """A resolve naming a provider id that another operator's resolve is recording right now
    waits for it (the unique index on the id), then sees the id taken and refuses (exit 1):
    both cannot record it."""
    _, key = await open_funded_account(pool, FUNDS_KOBO)
    first, second = await _place(client, key), await _place(client, key)
    for order in (first, second):
        await _claim(pool, order["order_id"])
    assert await _sweep(pool) == 2
    async with pool.acquire() as connection, connection.transaction():
        assert await fulfilment.settle_submission(
            connection, int(first["order_id"]), provider_order_id="shared-9",
            actor="operator", expected_submission="unknown",
        )
        racing = asyncio.ensure_future(_boost(
            dsn, "orders", "resolve", second["order_id"], "--provider-order-id", "shared-9"
        ))
        await asyncio.sleep(1.0)
        assert not racing.done(), "the second resolve waits for the first"
    code, _, stderr = await racing
    assert code == 1 and f"already recorded for order {first['order_id']}" in stderr
    assert second["order_id"] in await _unknown_ids(dsn)


async def test_an_order_never_placed_is_resolved_as_refunded_exactly_once(
    dsn: str, pool: asyncpg.Pool[Any], client: httpx.AsyncClient,
    simulator: httpx.AsyncClient, provider: ProviderClient,
) -> None:
    """Crash after the attempt, before the call: `resolve --refund` fails it and refunds the
    whole charge once; resolving it again, either way, exits non-zero and pays nothing."""
    account_id, key = await open_funded_account(pool, FUNDS_KOBO)
    order = await _place(client, key)
    await _claim(pool, order["order_id"])
    assert await _sweep(pool) == 1
    assert order["order_id"] in await _unknown_ids(dsn)

    code, stdout, stderr = await _boost(dsn, "orders", "resolve", order["order_id"], "--refund")
    assert code == 0, stderr
    assert "refunded" in stdout

    row = await pool.fetchrow("select * from orders where order_id = $1", int(order["order_id"]))
    assert (row["submission"], row["status"], row["refunded"]) == ("failed", "failed", True)
    assert row["refunded_kobo"] == PRICE_100_KOBO
    wallet = await client.get("/api/v1/wallet", headers=bearer(key))
    assert wallet.json()["data"]["balance"] == "1000.00"
    assert await _refunds(pool, order["order_id"]) == 1

    seconds = await asyncio.gather(
        _boost(dsn, "orders", "resolve", order["order_id"], "--refund"),
        _boost(dsn, "orders", "resolve", order["order_id"], "--provider-order-id", "12345"),
    )
    for again, _, stderr in seconds:
        assert again != 0 and "not awaiting an operator" in stderr
    assert await _refunds(pool, order["order_id"]) == 1
    balance = await pool.fetchval(
        "select balance_kobo from wallets where account_id = $1", account_id
    )
    assert balance == FUNDS_KOBO
    assert await submitter.drain(pool, provider) == []
    assert await _provider_orders(simulator, order["link"]) == []


async def test_two_operators_resolving_at_once_refund_once(
    dsn: str, pool: asyncpg.Pool[Any], client: httpx.AsyncClient,
) -> None:
    """Two `resolve --refund` processes racing on one unknown order: one succeeds, the other
    exits non-zero, and exactly one refund is paid."""
    _, key = await open_funded_account(pool, FUNDS_KOBO)
    order = await _place(client, key)
    await _claim(pool, order["order_id"])
    assert await _sweep(pool) == 1

    results = await asyncio.gather(
        _boost(dsn, "orders", "resolve", order["order_id"], "--refund"),
        _boost(dsn, "orders", "resolve", order["order_id"], "--refund"),
    )

    assert sorted(code == 0 for code, _, _ in results) == [False, True]
    assert await _refunds(pool, order["order_id"]) == 1


async def test_resolving_an_order_that_does_not_exist_fails(dsn: str) -> None:
    """An order id that names no order exits 1 with a one-line reason."""
    code, _, stderr = await _boost(dsn, "orders", "resolve", "999999999", "--refund")
    assert code == 1
    assert "no order 999999999" in stderr


@pytest.mark.parametrize("provider_order_id", ["23,501", "235 01", "", "7" * 65])
async def test_a_provider_order_id_no_call_could_carry_is_refused(
    dsn: str, pool: asyncpg.Pool[Any], client: httpx.AsyncClient, provider_order_id: str
) -> None:
    """An id the poller could never ask about (a comma list's separator, a space, none, too
    long) is refused before anything is recorded: the order still awaits an operator."""
    _, key = await open_funded_account(pool, FUNDS_KOBO)
    order = await _place(client, key)
    await _claim(pool, order["order_id"])
    assert await _sweep(pool) == 1

    code, _, stderr = await _boost(
        dsn, "orders", "resolve", order["order_id"], "--provider-order-id", provider_order_id
    )

    assert code != 0
    assert "no space or comma" in stderr
    assert order["order_id"] in await _unknown_ids(dsn)


async def test_the_unknown_list_shows_what_the_provider_panel_is_searched_by(
    dsn: str, pool: asyncpg.Pool[Any], client: httpx.AsyncClient,
) -> None:
    """The runbook has the operator find an unknown order in the provider's panel by its link
    and quantity around the time it was placed: `orders unknown` shows all three, in text and
    in JSON, besides when it became unknown."""
    _, key = await open_funded_account(pool, FUNDS_KOBO)
    order = await _place(client, key)
    await _claim(pool, order["order_id"])
    assert await _sweep(pool) == 1
    placed = await pool.fetchval(
        "select created_at from orders where order_id = $1", int(order["order_id"])
    )

    item = (await _unknown_ids(dsn))[order["order_id"]]
    assert (item["link"], item["quantity"]) == (order["link"], 100)
    assert item["created_at"] == placed.isoformat()

    code, stdout, stderr = await _boost(dsn, "orders", "unknown")
    assert code == 0, stderr
    (line,) = [line for line in stdout.splitlines() if line.startswith(order["order_id"] + " ")]
    assert f"link {order['link']}" in line and "quantity 100" in line, line
    assert f"placed {placed.isoformat()}" in line, line


@pytest.mark.parametrize("order_id", ["99999999999999999999", "-1"])
async def test_an_order_id_the_ledger_cannot_hold_is_refused_as_input(
    dsn: str, order_id: str
) -> None:
    """An order id that is not up to 18 decimal digits (a bigint) is refused as input: exit 2
    with its reason, never a stack trace from the database driver."""
    code, stdout, stderr = await _boost(dsn, "orders", "resolve", order_id, "--refund")
    assert code == 2, stderr
    assert "not an order id" in stderr and "Traceback" not in stderr, stderr
    assert stdout == ""
