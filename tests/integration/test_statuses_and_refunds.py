"""Every upstream status string of the protocol, forced on the simulator and seen through a live
check, gives our status and the refund of the table in ``ledger/statuses.py``; Partial refunds
match amounts computed by hand (DESIGN.md §5: floor, remains clamped to [0, billable])."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import httpx
import pytest
from structlog.testing import capture_logs
from support import bearer, open_funded_account, seed_catalog

from boost_ledger.ledger import fulfilment
from boost_ledger.upstream.client import ProviderClient
from boost_ledger.upstream.models import ProviderStatus
from boost_ledger.workers import poller, submitter

FUNDS_KOBO = 500_00
# Service "3" (Default, cancelable) at 0.12345 USD per 1000, fx 1500, markup 20 %:
#   0.12345 * 1500 * 120 = 22221 kobo per 1000 (exact).
# 777 units: ceil(22221 * 777 / 1000) = ceil(17265.717) = 17266 kobo, i.e. "172.66".
CHARGE_777_KOBO = 17_266


@pytest.fixture(scope="module", autouse=True)
async def catalog(pool: asyncpg.Pool[Any]) -> None:
    await seed_catalog(pool)


async def _submitted_order(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient, provider: ProviderClient,
    **body: Any,
) -> tuple[int, str, dict[str, Any], str]:
    """A fresh funded account with one submitted order: (account, key, order, provider id)."""
    account_id, key = await open_funded_account(pool, FUNDS_KOBO)
    request = {"service_id": "3", "link": f"https://instagram.com/p/{uuid.uuid4().hex}",
               "quantity": 777, "idempotency_key": uuid.uuid4().hex, **body}
    response = await client.post("/api/v1/boost/orders", json=request, headers=bearer(key))
    assert response.status_code == 201, response.text
    order = response.json()["data"]
    assert await submitter.drain(pool, provider) == ["provider_order_id"]
    provider_order_id = await pool.fetchval(
        "select provider_order_id from orders where order_id = $1", int(order["order_id"])
    )
    return account_id, key, order, provider_order_id


async def _force_and_check(
    client: httpx.AsyncClient, simulator: httpx.AsyncClient, key: str, order_id: str,
    provider_order_id: str, **forced: Any,
) -> dict[str, Any]:
    forcing = await simulator.post(f"/orders/{provider_order_id}", json=forced)
    assert forcing.status_code == 200, forcing.text
    checked = await client.post(f"/api/v1/boost/orders/{order_id}/check", headers=bearer(key))
    assert checked.status_code == 200, checked.text
    data: dict[str, Any] = checked.json()["data"]
    return data


async def _refunds(pool: asyncpg.Pool[Any], order_id: str) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        "select data from events where type = 'Refunded' and (data->>'order_id')::bigint = $1",
        int(order_id),
    )
    return [row["data"] for row in rows]


async def _balance(pool: asyncpg.Pool[Any], account_id: int) -> int:
    balance: int = await pool.fetchval(
        "select balance_kobo from wallets where account_id = $1", account_id
    )
    return balance


async def _assert_refund(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient, key: str, account_id: int,
    order: dict[str, Any], shown: dict[str, Any], expected_kobo: int, charge_kobo: int,
) -> None:
    """Exactly the expected refund (or none), visible at once, with a true balance_after."""
    refunds = await _refunds(pool, order["order_id"])
    balance = await _balance(pool, account_id)
    assert balance == FUNDS_KOBO - charge_kobo + expected_kobo
    wallet = (await client.get("/api/v1/wallet", headers=bearer(key))).json()["data"]
    assert wallet["balance"] == f"{balance // 100}.{balance % 100:02d}"
    if expected_kobo == 0:
        assert refunds == []
        assert shown["refunded"] is False
        return
    [refund] = refunds
    assert refund["amount_kobo"] == expected_kobo
    assert refund["balance_after_kobo"] == balance
    assert shown["refunded"] is True


STATUS_CASES = [
    # (upstream string, our status, refund owed)
    ("Pending", "pending", "none"),
    ("Processing", "processing", "none"),
    ("In progress", "in_progress", "none"),
    ("in_progress", "in_progress", "none"),
    ("Completed", "completed", "none"),
    ("Canceled", "canceled", "full"),
    ("Cancelled", "canceled", "full"),
    ("CANCELLED ", "canceled", "full"),
    ("Refunded", "canceled", "full"),
    ("Fail", "failed", "full"),
    ("Error", "failed", "full"),
    ("Active", "in_progress", "none"),
    ("Paused", "processing", "none"),
    ("Expired", "completed", "unused"),  # the undelivered share, here 500 of 777 units
]


@pytest.mark.parametrize(("upstream", "status", "refund"), STATUS_CASES)
async def test_each_upstream_status_maps_to_our_status_and_refund(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient, simulator: httpx.AsyncClient,
    provider: ProviderClient, upstream: str, status: str, refund: str,
) -> None:
    """One upstream string seen by a live check: our status, and the whole charge back, the
    unused share of it or nothing, as the statuses table says."""
    account_id, key, order, provider_order_id = await _submitted_order(pool, client, provider)
    assert order["price"] == "172.66"

    shown = await _force_and_check(
        client, simulator, key, order["order_id"], provider_order_id,
        status=upstream, start_count=42, remains=500,
    )

    assert shown["status"] == status
    assert (shown["start_count"], shown["remains"]) == (42, 500)
    observed = await pool.fetchval(
        "select data from events where stream_id = $1 and type = 'StatusObserved'",
        f"order-{order['order_id']}",
    )
    assert observed["status"] == status
    # Recorded as the client read it: trimmed, with the spelling "Cancelled" made "Canceled".
    assert observed["upstream_status"] == {"Cancelled": "Canceled"}.get(
        upstream.strip(), upstream.strip()
    )
    expected = {"full": CHARGE_777_KOBO, "unused": CHARGE_777_KOBO * 500 // 777}.get(refund, 0)
    await _assert_refund(
        pool, client, key, account_id, order, shown, expected, CHARGE_777_KOBO
    )


async def test_an_unknown_upstream_status_keeps_the_order_where_it_is(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient, simulator: httpx.AsyncClient,
    provider: ProviderClient,
) -> None:
    """A string the protocol does not list changes nothing (no event, same status, no refund)
    and is logged."""
    account_id, key, order, provider_order_id = await _submitted_order(pool, client, provider)
    shown = await _force_and_check(
        client, simulator, key, order["order_id"], provider_order_id,
        status="In progress", start_count=7, remains=700,
    )
    assert shown["status"] == "in_progress"
    before = await pool.fetchval(
        "select count(*) from events where stream_id = $1", f"order-{order['order_id']}"
    )

    with capture_logs() as logged:
        shown = await _force_and_check(
            client, simulator, key, order["order_id"], provider_order_id,
            status="Teleporting", remains=0,
        )

    assert {
        "event": "status.unknown_upstream", "order_id": int(order["order_id"]),
        "upstream_status": "Teleporting", "log_level": "warning",
    } in logged

    assert (shown["status"], shown["remains"], shown["refunded"]) == ("in_progress", 700, False)
    after = await pool.fetchval(
        "select count(*) from events where stream_id = $1", f"order-{order['order_id']}"
    )
    assert after == before
    await _assert_refund(pool, client, key, account_id, order, shown, 0, CHARGE_777_KOBO)


PARTIAL_CASES = [
    # (remains reported, refund in kobo computed by hand from the charge of 17266 for 777)
    (100, 2_222),  # 17266 * 100 / 777 = 2222.136... -> 2222
    (1, 22),  # 17266 / 777 = 22.221... -> 22
    (776, 17_243),  # 17266 * 776 / 777 = 17243.778... -> 17243
    (777, CHARGE_777_KOBO),  # nothing delivered: the whole charge
    (5_000, CHARGE_777_KOBO),  # more than ordered: clamped to 777, the whole charge
    (0, 0),  # all delivered: nothing owed
    (-25, 0),  # over-delivered: clamped to 0, nothing owed (never a negative refund)
]


@pytest.mark.parametrize(("remains", "refund_kobo"), PARTIAL_CASES)
async def test_partial_refunds_the_unused_share_rounded_down(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient, simulator: httpx.AsyncClient,
    provider: ProviderClient, remains: int, refund_kobo: int,
) -> None:
    """Partial refunds floor(charge * remains / quantity), remains clamped to [0, quantity]."""
    account_id, key, order, provider_order_id = await _submitted_order(pool, client, provider)

    shown = await _force_and_check(
        client, simulator, key, order["order_id"], provider_order_id,
        status="Partial", remains=remains,
    )

    assert (shown["status"], shown["remains"]) == ("partial", remains)
    await _assert_refund(
        pool, client, key, account_id, order, shown, refund_kobo, CHARGE_777_KOBO
    )


async def test_a_drip_feed_partial_refund_uses_the_billable_quantity(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient, simulator: httpx.AsyncClient,
    provider: ProviderClient,
) -> None:
    """Drip-feed bills quantity x runs, so Partial's share is of that total, not of one run."""
    # Service "16" (drip-feed) at 0.01234 USD: 0.01234 * 1500 * 120 = 2221.2 -> 2221 kobo per
    # 1000. 150 per run x 3 runs = 450 billable: ceil(2221 * 450 / 1000) = ceil(999.45) = 1000.
    # Partial with 200 remaining: floor(1000 * 200 / 450) = floor(444.4...) = 444 (a refund
    # computed on one run's 150 would clamp to the whole 1000).
    account_id, key, order, provider_order_id = await _submitted_order(
        pool, client, provider, service_id="16", quantity=150, runs=3, interval=10
    )
    assert order["price"] == "10.00"
    provider_side = (await simulator.get(f"/orders/{provider_order_id}")).json()
    assert (provider_side["quantity"], provider_side["runs"]) == (450, 3)

    shown = await _force_and_check(
        client, simulator, key, order["order_id"], provider_order_id,
        status="Partial", remains=200,
    )

    assert shown["status"] == "partial"
    await _assert_refund(pool, client, key, account_id, order, shown, 444, 1_000)


async def test_a_settled_order_never_pays_a_second_refund(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient, simulator: httpx.AsyncClient,
    provider: ProviderClient,
) -> None:
    """After a Partial refund, later statuses (Canceled, Refunded) observed by any path pay
    nothing more and leave the order partial."""
    account_id, key, order, provider_order_id = await _submitted_order(pool, client, provider)
    shown = await _force_and_check(
        client, simulator, key, order["order_id"], provider_order_id,
        status="Partial", remains=100,
    )
    await _assert_refund(pool, client, key, account_id, order, shown, 2_222, CHARGE_777_KOBO)

    async with pool.acquire() as connection:
        for upstream in ("Canceled", "Refunded", "Partial"):
            await fulfilment.observe(
                connection, int(order["order_id"]), upstream, 0, 777, None, "poller"
            )
    shown = await _force_and_check(
        client, simulator, key, order["order_id"], provider_order_id, status="Canceled"
    )

    assert (shown["status"], shown["remains"]) == ("partial", 100)
    await _assert_refund(pool, client, key, account_id, order, shown, 2_222, CHARGE_777_KOBO)


async def test_a_partial_without_remains_waits_for_a_status_that_prices_it(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient, simulator: httpx.AsyncClient,
    provider: ProviderClient,
) -> None:
    """A Partial that does not say how much is left cannot be priced: nothing is recorded until
    one that does arrives (the unpriced one is logged, for an operator), and then the refund is
    paid once."""
    account_id, key, order, _ = await _submitted_order(pool, client, provider)
    unpriced = ProviderStatus(status="Partial", start_count=10)
    with capture_logs() as logged:
        async with pool.acquire() as connection:
            await poller.record_status(connection, int(order["order_id"]), unpriced, "poller")
    assert {
        "event": "status.partial_without_remains", "order_id": int(order["order_id"]),
        "log_level": "warning",
    } in logged
    row = await pool.fetchrow(
        "select status, refunded from orders where order_id = $1", int(order["order_id"])
    )
    assert tuple(row) == ("pending", False)
    async with pool.acquire() as connection:
        await fulfilment.observe(
            connection, int(order["order_id"]), "Partial", 10, 1, None, "poller"
        )
    shown = (await client.get(
        f"/api/v1/boost/orders/{order['order_id']}", headers=bearer(key)
    )).json()["data"]
    assert shown["status"] == "partial"
    await _assert_refund(pool, client, key, account_id, order, shown, 22, CHARGE_777_KOBO)
