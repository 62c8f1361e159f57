"""Races on real PostgreSQL over real HTTP (issue 5): whichever paths race to pay a refund
(live check, poller, cancel) it is paid once; and a cancel racing the submitter ends with the
order either submitted or canceled locally, never both and never neither."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from typing import Any

import asyncpg
import httpx
import pytest
from support import bearer, open_funded_account, order_events, seed_catalog

from boost_ledger.upstream.client import ProviderClient
from boost_ledger.workers import poller, submitter

FUNDS_KOBO = 1_000_00
PRICE_100_KOBO = 162_00  # service "1": 0.90 USD * 1500 * 1.20 = 1620 NGN per 1000
DRAIN_DELAYS_S = (0.0, 0.001, 0.002, 0.004, 0.008)
CANCELED_LOCALLY = "Order canceled before submission; the wallet was refunded."


@pytest.fixture(scope="module", autouse=True)
async def catalog(pool: asyncpg.Pool[Any]) -> None:
    await seed_catalog(pool)


async def _place(client: httpx.AsyncClient, key: str) -> dict[str, Any]:
    link = f"https://instagram.com/p/{uuid.uuid4().hex}"
    body = {"service_id": "1", "link": link, "quantity": 100, "idempotency_key": uuid.uuid4().hex}
    response = await client.post("/api/v1/boost/orders", json=body, headers=bearer(key))
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


async def _submitted(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient, provider: ProviderClient, key: str
) -> tuple[dict[str, Any], str]:
    """A placed and submitted order, and its provider order id."""
    order = await _place(client, key)
    assert await submitter.drain(pool, provider) == ["provider_order_id"]
    provider_order_id = await pool.fetchval(
        "select provider_order_id from orders where order_id = $1", int(order["order_id"])
    )
    assert provider_order_id is not None
    return order, provider_order_id


async def _balance(pool: asyncpg.Pool[Any], account_id: int) -> int:
    balance: int = await pool.fetchval(
        "select balance_kobo from wallets where account_id = $1", account_id
    )
    return balance


async def _assert_refund_matches_wallet(pool: asyncpg.Pool[Any], account_id: int) -> None:
    """The last Refunded event's balance_after is the wallet's true balance."""
    balance_after = await pool.fetchval(
        "select (data->>'balance_after_kobo')::bigint from events"
        " where stream_id = $1 and type = 'Refunded' order by version desc limit 1",
        f"wallet-{account_id}",
    )
    assert balance_after == await _balance(pool, account_id)


async def test_twenty_concurrent_checks_of_a_canceled_order_refund_once(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient, simulator: httpx.AsyncClient,
    provider: ProviderClient,
) -> None:
    """Twenty simultaneous live checks all see Canceled; exactly one refund is paid and the
    wallet is back exactly where it started."""
    account_id, key = await open_funded_account(pool, FUNDS_KOBO)
    order, provider_order_id = await _submitted(pool, client, provider, key)
    await simulator.post(f"/orders/{provider_order_id}", json={"status": "Canceled"})

    checks = await asyncio.gather(*(
        client.post(f"/api/v1/boost/orders/{order['order_id']}/check", headers=bearer(key))
        for _ in range(20)
    ))

    assert [check.status_code for check in checks] == [200] * 20
    assert {(check.json()["data"]["status"], check.json()["data"]["refunded"])
            for check in checks} == {("canceled", True)}
    events = await order_events(pool, order["order_id"])
    assert (events["Refunded"], events["StatusObserved"]) == (1, 1)
    assert await _balance(pool, account_id) == FUNDS_KOBO
    await _assert_refund_matches_wallet(pool, account_id)


async def test_check_poller_and_cancel_racing_refund_once(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient, simulator: httpx.AsyncClient,
    provider: ProviderClient,
) -> None:
    """Live checks, two pollers and cancels racing on orders the provider reports Canceled:
    each order is refunded exactly once, the wallet exactly restored."""
    account_id, key = await open_funded_account(pool, 5 * PRICE_100_KOBO)
    orders = [await _submitted(pool, client, provider, key) for _ in range(5)]
    for _, provider_order_id in orders:
        await simulator.post(f"/orders/{provider_order_id}", json={"status": "Canceled"})

    racers: list[Any] = []
    for order, _ in orders:
        for _ in range(3):
            racers.append(
                client.post(f"/api/v1/boost/orders/{order['order_id']}/check", headers=bearer(key))
            )
            racers.append(
                client.post(f"/api/v1/boost/orders/{order['order_id']}/cancel", headers=bearer(key))
            )
    racers += [poller.poll_once(pool, provider, interval_s=0) for _ in range(2)]
    results = await asyncio.gather(*racers)

    answers = [result for result in results if isinstance(result, httpx.Response)]
    checks = [answer for answer in answers if answer.url.path.endswith("/check")]
    cancels = [answer for answer in answers if answer.url.path.endswith("/cancel")]
    assert {check.status_code for check in checks} == {200}
    # The provider refuses to cancel a Canceled order (409) or we see it settled already (422).
    assert {cancel.status_code for cancel in cancels} <= {409, 422}
    for order, _ in orders:
        events = await order_events(pool, order["order_id"])
        assert events["Refunded"] == 1, events
        assert events["CancelRequested"] == 0
        row = await pool.fetchrow(
            "select status, refunded, refunded_kobo from orders where order_id = $1",
            int(order["order_id"]),
        )
        assert tuple(row) == ("canceled", True, PRICE_100_KOBO)
    assert await _balance(pool, account_id) == 5 * PRICE_100_KOBO
    await _assert_refund_matches_wallet(pool, account_id)


async def test_an_accepted_cancel_then_racing_follow_ups_refund_once(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient, simulator: httpx.AsyncClient,
    provider: ProviderClient,
) -> None:
    """Cancel races check and poller while the provider still works (the order ends
    `canceling`, no refund); once the provider settles it Canceled, racing follow-ups pay the
    refund once."""
    account_id, key = await open_funded_account(pool, FUNDS_KOBO)
    order, provider_order_id = await _submitted(pool, client, provider, key)
    await simulator.post(f"/orders/{provider_order_id}", json={"status": "In progress"})
    url = f"/api/v1/boost/orders/{order['order_id']}"

    first = await asyncio.gather(
        client.post(f"{url}/cancel", headers=bearer(key)),
        client.post(f"{url}/check", headers=bearer(key)),
        poller.poll_once(pool, provider, interval_s=0),
        client.post(f"{url}/check", headers=bearer(key)),
    )

    assert first[0].status_code == 200, first[0].text
    assert first[0].json()["data"]["status"] == "canceling"
    shown = (await client.get(url, headers=bearer(key))).json()["data"]
    assert (shown["status"], shown["refunded"], shown["cancel"]) == ("canceling", False, False)
    assert (await order_events(pool, order["order_id"]))["Refunded"] == 0

    await simulator.post("/tick")  # the provider acts on the cancel request: Canceled
    second = await asyncio.gather(
        *(client.post(f"{url}/check", headers=bearer(key)) for _ in range(4)),
        *(client.post(f"{url}/cancel", headers=bearer(key)) for _ in range(2)),
        *(poller.poll_once(pool, provider, interval_s=0) for _ in range(2)),
    )

    assert [answer.status_code for answer in second[:4]] == [200] * 4
    assert [answer.status_code for answer in second[4:6]] == [422] * 2
    events = await order_events(pool, order["order_id"])
    assert (events["Refunded"], events["CancelRequested"]) == (1, 1)
    final = (await client.get(url, headers=bearer(key))).json()["data"]
    assert (final["status"], final["refunded"]) == ("canceled", True)
    assert await _balance(pool, account_id) == FUNDS_KOBO
    await _assert_refund_matches_wallet(pool, account_id)


async def test_cancel_racing_the_submitter_ends_submitted_or_canceled_never_both(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient, simulator: httpx.AsyncClient,
    provider: ProviderClient,
) -> None:
    """A cancel over HTTP racing a submitter on a fresh order, fifteen times: each order is
    either at the provider (once) or canceled locally and refunded, never both, never neither."""
    account_id, key = await open_funded_account(pool, 15 * PRICE_100_KOBO)
    seen: Counter[str] = Counter()
    for round_number in range(15):
        order = await _place(client, key)

        async def drain_after(delay_s: float) -> list[str]:
            await asyncio.sleep(delay_s)
            return await submitter.drain(pool, provider)

        # The cancel's HTTP round trip takes a few milliseconds: holding the submitter back by
        # 0 to 8 ms lets either side win the order's row lock, so both outcomes occur.
        answer, _ = await asyncio.gather(
            client.post(f"/api/v1/boost/orders/{order['order_id']}/cancel", headers=bearer(key)),
            drain_after(DRAIN_DELAYS_S[round_number % len(DRAIN_DELAYS_S)]),
        )

        row = await pool.fetchrow(
            "select submission, status, refunded from orders where order_id = $1",
            int(order["order_id"]),
        )
        events = await order_events(pool, order["order_id"])
        at_provider = [
            item for item in (await simulator.get("/orders")).json()
            if item["link"] == order["link"]
        ]
        if row["submission"] == "canceled":
            seen["canceled locally"] += 1
            assert (row["status"], row["refunded"]) == ("canceled", True)
            assert answer.status_code == 200 and answer.json()["message"] == CANCELED_LOCALLY
            assert at_provider == []
            assert (events["OrderCanceled"], events["Refunded"]) == (1, 1)
            assert events["SubmissionAttempted"] == events["OrderSubmitted"] == 0
        else:
            seen["submitted"] += 1
            assert row["submission"] == "submitted", dict(row)
            assert len(at_provider) == 1
            assert (events["OrderSubmitted"], events["OrderCanceled"], events["Refunded"]) == (
                1, 0, 0
            )
            # Either the claim held the order (busy: 409) or the provider took the cancel (200).
            assert answer.status_code in (200, 409), answer.text
            if answer.status_code == 200:
                assert answer.json()["data"]["status"] == "canceling"
    assert sum(seen.values()) == 15
    refunded = seen["canceled locally"] * PRICE_100_KOBO
    assert await _balance(pool, account_id) == refunded
    print(dict(seen))
