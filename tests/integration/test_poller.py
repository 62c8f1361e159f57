"""The status poller against the simulator: batches of at most 100, the longest overdue first,
per-item errors kept to their item, a provider fault changes nothing, and several pollers at
once never observe an order twice."""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from typing import Any
from urllib.parse import parse_qs

import asyncpg
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from support import bearer, http_server, open_funded_account, rewriting_panel, seed_catalog

from boost_ledger import postgres, projections
from boost_ledger.ledger import fulfilment
from boost_ledger.projections.replay import compare_with_replay
from boost_ledger.upstream.client import ProviderClient
from boost_ledger.upstream.errors import ProviderError
from boost_ledger.workers import poller, submitter

# Service "16" (TikTok Views) at 0.01234 USD: 2221 kobo per 1000, so 100 units cost 2.23 NGN;
# cheap enough to place a few hundred orders from one wallet.
CHEAP_SERVICE = "16"
FUNDS_KOBO = 10_000_00
INTERVAL_S = 60.0


@pytest.fixture(scope="module", autouse=True)
async def catalog(pool: asyncpg.Pool[Any]) -> None:
    await seed_catalog(pool)


@pytest.fixture(autouse=True)
async def only_this_tests_orders_are_due(pool: asyncpg.Pool[Any]) -> None:
    """Orders left by earlier tests of the module are not due, so each test sees its own."""
    await pool.execute("update order_polls set next_check_at = now() + interval '1 day'")


async def _submitted_orders(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient, provider: ProviderClient, count: int
) -> list[int]:
    """``count`` orders of one new account, placed over HTTP and submitted; their ids."""
    _, key = await open_funded_account(pool, FUNDS_KOBO)
    gate = asyncio.Semaphore(10)

    async def place() -> int:
        body = {"service_id": CHEAP_SERVICE, "link": f"https://tiktok.com/@{uuid.uuid4().hex}",
                "quantity": 100, "idempotency_key": uuid.uuid4().hex}
        async with gate:
            response = await client.post("/api/v1/boost/orders", json=body, headers=bearer(key))
        assert response.status_code == 201, response.text
        return int(response.json()["data"]["order_id"])

    order_ids = await asyncio.gather(*(place() for _ in range(count)))
    drained = await asyncio.gather(*(submitter.drain(pool, provider, limit=200) for _ in range(4)))
    assert sum(len(outcomes) for outcomes in drained) == count
    return sorted(order_ids)


async def _submitted_as(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient, provider_order_id: str
) -> int:
    """An order placed over HTTP and recorded as accepted under ``provider_order_id`` without
    a call to the provider; its id."""
    _, key = await open_funded_account(pool, FUNDS_KOBO)
    body = {"service_id": CHEAP_SERVICE, "link": f"https://tiktok.com/@{uuid.uuid4().hex}",
            "quantity": 100, "idempotency_key": uuid.uuid4().hex}
    placed = await client.post("/api/v1/boost/orders", json=body, headers=bearer(key))
    order_id = int(placed.json()["data"]["order_id"])
    async with pool.acquire() as connection:
        claimed = await fulfilment.claim_for_submission(connection)
        assert claimed is not None and claimed.order_id == order_id
        assert await fulfilment.settle_submission(
            connection, order_id, provider_order_id=provider_order_id
        )
    return order_id


async def _observations(pool: asyncpg.Pool[Any], order_ids: list[int]) -> dict[int, int]:
    """How many StatusObserved each order has."""
    rows = await pool.fetch(
        "select o.order_id, (select count(*) from events e where e.stream_id = 'order-' ||"
        " o.order_id and e.type = 'StatusObserved') as seen"
        " from orders o where o.order_id = any($1::bigint[])",
        order_ids,
    )
    return {row["order_id"]: row["seen"] for row in rows}


async def _status_calls(simulator: httpx.AsyncClient) -> int:
    calls: int = (await simulator.get("/stats")).json()["requests"].get("status", 0)
    return calls


async def test_one_poll_asks_about_at_most_100_orders_longest_overdue_first(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient, simulator: httpx.AsyncClient,
    provider: ProviderClient,
) -> None:
    """150 due orders: one poll is one multi-status call about the 100 due longest ago; the
    next poll takes the other 50. Each is observed exactly once."""
    order_ids = await _submitted_orders(pool, client, provider, 150)
    # Make every order due since a distinct time, in an order unrelated to the order ids, and
    # its last check unrelated to either (the claim goes by how long an order has been due).
    shuffled = random.Random(5).sample(order_ids, len(order_ids))
    checked = random.Random(6).sample(range(1, 151), 150)
    for (minutes_ago, order_id), checked_ago in zip(
        enumerate(reversed(shuffled), start=1), checked, strict=True
    ):
        await pool.execute(
            "update order_polls set next_check_at = now() - make_interval(mins => $2),"
            " last_checked_at = now() - make_interval(mins => $3) where order_id = $1",
            order_id, minutes_ago, checked_ago,
        )
    oldest_first = shuffled[:100]  # the last of `reversed(shuffled)` have been due longest
    calls_before = await _status_calls(simulator)

    assert await poller.poll_once(pool, provider, INTERVAL_S) == 100

    assert await _status_calls(simulator) == calls_before + 1
    seen = await _observations(pool, order_ids)
    assert sorted(order_id for order_id, count in seen.items() if count == 1) == sorted(
        oldest_first
    )
    assert sum(seen.values()) == 100

    assert await poller.poll_once(pool, provider, INTERVAL_S) == 50
    assert await poller.poll_once(pool, provider, INTERVAL_S) == 0
    assert set((await _observations(pool, order_ids)).values()) == {1}
    assert await _status_calls(simulator) == calls_before + 2


async def test_an_order_unknown_to_the_provider_does_not_fail_the_batch(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient, simulator: httpx.AsyncClient,
    provider: ProviderClient,
) -> None:
    """A per-item "Incorrect order ID" backs that order off; the rest of the batch is
    recorded as usual."""
    order_ids = await _submitted_orders(pool, client, provider, 2)
    # The provider's reply named an order it does not know.
    ghost = await _submitted_as(pool, client, "987654")

    assert await poller.poll_once(pool, provider, INTERVAL_S) == 3

    assert await _observations(pool, [*order_ids, ghost]) == {
        order_ids[0]: 1, order_ids[1]: 1, ghost: 0
    }
    backoff = await pool.fetchrow(
        "select failures, next_check_at - now() as wait from order_polls where order_id = $1",
        ghost,
    )
    assert backoff["failures"] == 1
    assert backoff["wait"].total_seconds() > INTERVAL_S * 1.5
    healthy = await pool.fetchval(
        "select max(failures) from order_polls where order_id = any($1::bigint[])", order_ids
    )
    assert healthy == 0


async def test_an_id_no_call_could_carry_backs_off_alone(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient, simulator: httpx.AsyncClient,
    provider: ProviderClient,
) -> None:
    """An order recorded under an id that no comma-separated call can carry (as one could be
    before ids were checked) is left out of the batch's call and backs off alone: the rest of
    its batch is asked about and recorded, and alone it costs no call at all."""
    order_ids = await _submitted_orders(pool, client, provider, 2)
    odd = await _submitted_as(pool, client, "23,501")
    calls_before = await _status_calls(simulator)

    assert await poller.poll_once(pool, provider, INTERVAL_S) == 3

    assert await _status_calls(simulator) == calls_before + 1
    assert await _observations(pool, [*order_ids, odd]) == {
        order_ids[0]: 1, order_ids[1]: 1, odd: 0
    }
    assert await pool.fetchval("select failures from order_polls where order_id = $1", odd) == 1

    await pool.execute(
        "update order_polls set next_check_at = now() - interval '1 minute' where order_id = $1",
        odd,
    )
    assert await poller.poll_once(pool, provider, INTERVAL_S) == 1
    assert await _status_calls(simulator) == calls_before + 1
    assert await pool.fetchval("select failures from order_polls where order_id = $1", odd) == 2


@pytest.mark.parametrize(
    "mode", ["http_500", "html", "malformed_json", "timeout", "reply_lost", "error"]
)
async def test_a_provider_fault_raises_and_changes_nothing(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient, simulator: httpx.AsyncClient,
    provider: ProviderClient, impatient: ProviderClient, mode: str,
) -> None:
    """A fault on the multi-status call raises ProviderError from poll_once: no event, no
    order changed, and the claimed orders keep their lease instead of being asked at once."""
    order_ids = await _submitted_orders(pool, client, provider, 3)
    for order_id in order_ids:
        provider_order_id = await pool.fetchval(
            "select provider_order_id from orders where order_id = $1", order_id
        )
        await simulator.post(f"/orders/{provider_order_id}", json={"status": "Canceled"})
    before = await pool.fetch(
        "select * from orders where order_id = any($1::bigint[]) order by order_id", order_ids
    )
    fault = {"action": "status", "mode": mode, "latency_ms": 3_000}
    (await simulator.post("/faults", json=fault)).raise_for_status()

    with pytest.raises(ProviderError):
        await poller.poll_once(pool, impatient, INTERVAL_S)

    after = await pool.fetch(
        "select * from orders where order_id = any($1::bigint[]) order by order_id", order_ids
    )
    assert [dict(row) for row in after] == [dict(row) for row in before]
    assert set((await _observations(pool, order_ids)).values()) == {0}
    leased = await pool.fetchval(
        "select count(*) from order_polls where order_id = any($1::bigint[])"
        " and next_check_at > now() + interval '30 seconds'",
        order_ids,
    )
    assert leased == 3
    assert await poller.poll_once(pool, impatient, INTERVAL_S) == 0


async def test_several_pollers_at_once_observe_each_order_once(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient, simulator: httpx.AsyncClient,
    provider: ProviderClient,
) -> None:
    """Four pollers racing in batches of 25 over 60 due orders: each order is asked about and
    observed exactly once."""
    order_ids = await _submitted_orders(pool, client, provider, 60)
    for order_id in order_ids:
        provider_order_id = await pool.fetchval(
            "select provider_order_id from orders where order_id = $1", order_id
        )
        await simulator.post(f"/orders/{provider_order_id}", json={"status": "In progress"})

    asked = 0
    for _ in range(10):
        rounds = await asyncio.gather(
            *(poller.poll_once(pool, provider, INTERVAL_S, batch=25) for _ in range(4))
        )
        asked += sum(rounds)
        if not any(rounds):
            break

    assert asked == 60
    assert set((await _observations(pool, order_ids)).values()) == {1}
    statuses = await pool.fetch(
        "select distinct status from orders where order_id = any($1::bigint[])", order_ids
    )
    assert [row["status"] for row in statuses] == ["in_progress"]


async def test_a_repeated_answer_is_only_rescheduled(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient, simulator: httpx.AsyncClient,
    provider: ProviderClient,
) -> None:
    """Asked again with nothing new upstream, a batch appends nothing and each order's next
    check moves on; then one order moves upstream and only that one is observed again."""
    order_ids = await _submitted_orders(pool, client, provider, 6)
    provider_ids = [
        await pool.fetchval("select provider_order_id from orders where order_id = $1", order_id)
        for order_id in order_ids
    ]
    for provider_order_id in provider_ids:
        await simulator.post(f"/orders/{provider_order_id}", json={"status": "In progress"})
    assert await poller.poll_once(pool, provider, interval_s=0) == 6
    events = await pool.fetchval("select count(*) from events")
    before = await pool.fetch(
        "select order_id, last_checked_at from order_polls where order_id = any($1::bigint[])"
        " order by order_id", order_ids,
    )

    assert await poller.poll_once(pool, provider, interval_s=0) == 6
    assert await pool.fetchval("select count(*) from events") == events
    after = await pool.fetch(
        "select order_id, last_checked_at, failures from order_polls"
        " where order_id = any($1::bigint[]) order by order_id", order_ids,
    )
    assert [row["order_id"] for row in after] == order_ids
    for old, new in zip(before, after, strict=True):
        assert new["last_checked_at"] > old["last_checked_at"] and new["failures"] == 0

    await simulator.post(f"/orders/{provider_ids[0]}", json={"status": "Completed", "remains": 0})
    assert await poller.poll_once(pool, provider, interval_s=0) == 6
    observed = await _observations(pool, order_ids)
    assert observed[order_ids[0]] == 2 and {observed[i] for i in order_ids[1:]} == {1}
    assert await pool.fetchval("select count(*) from order_polls where order_id = $1",
                               order_ids[0]) == 0  # settled: no longer polled


async def test_a_repeated_answer_never_waits_for_its_orders_row(
    dsn: str, pool: asyncpg.Pool[Any], client: httpx.AsyncClient, provider: ProviderClient,
    simulator: httpx.AsyncClient,
) -> None:
    """An answer that repeats an unsettled order's known status (the poller's usual answer) is
    rescheduled without locking the order: a check or cancel holding the row delays nothing.
    Polled through connections whose lock timeout is shorter than the hold, an order whose row
    the poll waited for would back off (``failures`` 1)."""
    order_ids = await _submitted_orders(pool, client, provider, 2)
    for order_id in order_ids:
        provider_order_id = await pool.fetchval(
            "select provider_order_id from orders where order_id = $1", order_id
        )
        await simulator.post(f"/orders/{provider_order_id}", json={"status": "In progress"})
    assert await poller.poll_once(pool, provider, interval_s=0) == 2
    impatient = await postgres.create_pool(
        dsn, min_size=1, max_size=2, statement_timeout_ms=300, application_name="test-poller"
    )
    try:
        async with pool.acquire() as holder, holder.transaction():
            await holder.execute(
                "select 1 from orders where order_id = $1 for update", order_ids[0]
            )
            assert await poller.poll_once(impatient, provider, interval_s=0) == 2
    finally:
        await impatient.close()
    failures = await pool.fetch(
        "select failures from order_polls where order_id = any($1::bigint[])", order_ids
    )
    assert [row["failures"] for row in failures] == [0, 0]
    assert set((await _observations(pool, order_ids)).values()) == {1}


async def test_a_partial_subscription_refunds_the_share_of_its_posts_left_undelivered(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient, simulator: httpx.AsyncClient,
    provider: ProviderClient,
) -> None:
    """A subscription of 10 posts at max 80 is billed 800 units, and the provider (as the
    simulator) counts its remains in posts: a Partial with 4 posts left owes back 4/10 of the
    charge, not 4/800 of it."""
    _, key = await open_funded_account(pool, FUNDS_KOBO)
    body = {"service_id": "11", "username": "someone", "min": 50, "max": 80, "delay": 0,
            "posts": 10, "idempotency_key": uuid.uuid4().hex}
    placed = await client.post("/api/v1/boost/orders", json=body, headers=bearer(key))
    assert placed.status_code == 201, placed.text
    order_id = int(placed.json()["data"]["order_id"])
    await submitter.drain(pool, provider)
    order = await pool.fetchrow("select * from orders where order_id = $1", order_id)
    assert (order["submission"], order["billable_quantity"]) == ("submitted", 800)
    await simulator.post(
        f"/orders/{order['provider_order_id']}", json={"status": "Partial", "remains": 4}
    )

    assert await poller.poll_once(pool, provider, INTERVAL_S) >= 1

    settled = await pool.fetchrow("select * from orders where order_id = $1", order_id)
    assert (settled["status"], settled["remains"]) == ("partial", 4)
    assert settled["refunded_kobo"] == order["price_kobo"] * 4 // 10 > 0
    paid = await pool.fetchval(
        "select sum((data->>'amount_kobo')::bigint) from events"
        " where type = 'Refunded' and (data->>'order_id')::bigint = $1",
        order_id,
    )
    assert paid == settled["refunded_kobo"]


async def test_changed_answers_and_their_refunds_are_recorded_in_one_transaction(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient, simulator: httpx.AsyncClient,
    provider: ProviderClient,
) -> None:
    """One poll of five orders: three moved on and one came back Canceled, all recorded in one
    transaction with the cancellation's refund (paid once), and one is unchanged; then each
    order's poll schedule matches its new status."""
    order_ids = await _submitted_orders(pool, client, provider, 5)
    provider_ids = {
        order_id: await pool.fetchval(
            "select provider_order_id from orders where order_id = $1", order_id
        )
        for order_id in order_ids
    }
    moved, canceled, unchanged = order_ids[:3], order_ids[3], order_ids[4]
    for order_id in order_ids:
        await simulator.post(f"/orders/{provider_ids[order_id]}", json={"status": "Pending"})
    assert await poller.poll_once(pool, provider, interval_s=0) == 5
    first = await pool.fetchval("select max(global_position) from events")
    for order_id in moved:
        await simulator.post(f"/orders/{provider_ids[order_id]}", json={"status": "In progress"})
    await simulator.post(f"/orders/{provider_ids[moved[0]]}", json={"status": "Completed",
                                                                     "remains": 0})
    await simulator.post(f"/orders/{provider_ids[canceled]}", json={"status": "Canceled"})

    assert await poller.poll_once(pool, provider, INTERVAL_S) == 5

    rows = await pool.fetch(
        "select (data->>'order_id')::bigint as order_id, transaction_id from events"
        " where type = 'StatusObserved' and (data->>'order_id')::bigint = any($1::bigint[])"
        " and global_position > $2",
        order_ids, first,
    )
    transaction_of = {row["order_id"]: row["transaction_id"] for row in rows}
    assert sorted(transaction_of) == sorted([*moved, canceled])
    assert len({transaction_of[order_id] for order_id in [*moved, canceled]}) == 1
    refunds = await pool.fetch(
        "select (data->>'order_id')::bigint as order_id, transaction_id from events"
        " where type = 'Refunded' and (data->>'order_id')::bigint = any($1::bigint[])",
        order_ids,
    )
    assert [row["order_id"] for row in refunds] == [canceled]
    assert refunds[0]["transaction_id"] == transaction_of[canceled]
    statuses = dict(await pool.fetch(
        "select order_id, status from orders where order_id = any($1::bigint[])", order_ids
    ))
    assert [statuses[order_id] for order_id in order_ids] == [
        "completed", "in_progress", "in_progress", "canceled", "pending"
    ]
    polled = {
        row["order_id"]
        for row in await pool.fetch(
            "select order_id from order_polls where order_id = any($1::bigint[])", order_ids
        )
    }
    assert polled == {moved[1], moved[2], unchanged}  # settled orders are no longer polled


async def test_one_poll_refunds_several_orders_of_one_wallet_each_exactly_once(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient, simulator: httpx.AsyncClient,
    provider: ProviderClient,
) -> None:
    """Four orders of one account come back Canceled, Partial and Completed in one poll: the
    three refunds follow one another in the wallet's stream within one transaction (contiguous
    versions, each balance after the one before), the wallet's projection ends where the events
    say, and the same answers polled again pay nothing more."""
    order_ids = await _submitted_orders(pool, client, provider, 4)
    rows = await pool.fetch(
        "select order_id, account_id, provider_order_id, price_kobo from orders"
        " where order_id = any($1::bigint[]) order by order_id",
        order_ids,
    )
    account_id = rows[0]["account_id"]
    answers = [
        {"status": "Canceled"},
        {"status": "Partial", "remains": 40},
        {"status": "Canceled"},
        {"status": "Completed", "remains": 0},
    ]
    for row, answer in zip(rows, answers, strict=True):
        await simulator.post(f"/orders/{row['provider_order_id']}", json=answer)
    balance_before = await pool.fetchval(
        "select balance_kobo from wallets where account_id = $1", account_id
    )

    assert await poller.poll_once(pool, provider, INTERVAL_S) == 4
    await pool.execute(
        "update order_polls set next_check_at = now() where order_id = any($1::bigint[])",
        order_ids,
    )
    assert await poller.poll_once(pool, provider, INTERVAL_S) == 0, "settled orders are not polled"

    refunds = await pool.fetch(
        "select version, transaction_id, (data->>'order_id')::bigint as order_id,"
        " (data->>'amount_kobo')::bigint as amount, (data->>'balance_after_kobo')::bigint"
        " as balance_after from events where stream_id = $1 and type = 'Refunded'"
        " order by version",
        f"wallet-{account_id}",
    )
    price = {row["order_id"]: row["price_kobo"] for row in rows}
    expected = {
        rows[0]["order_id"]: price[rows[0]["order_id"]],
        rows[1]["order_id"]: price[rows[1]["order_id"]] * 40 // 100,
        rows[2]["order_id"]: price[rows[2]["order_id"]],
    }
    assert {row["order_id"]: row["amount"] for row in refunds} == expected
    assert len({row["transaction_id"] for row in refunds}) == 1
    versions = [row["version"] for row in refunds]
    assert versions == list(range(versions[0], versions[0] + 3))
    running = balance_before
    for row in refunds:
        running += row["amount"]
        assert row["balance_after"] == running
    wallet = await pool.fetchrow(
        "select balance_kobo, version from wallets where account_id = $1", account_id
    )
    assert (wallet["balance_kobo"], wallet["version"]) == (running, versions[-1])
    statuses = dict(await pool.fetch(
        "select order_id, status from orders where order_id = any($1::bigint[])", order_ids
    ))
    assert [statuses[row["order_id"]] for row in rows] == [
        "canceled", "partial", "canceled", "completed"
    ]
    async with pool.acquire() as connection:  # the batch's projections equal a replay of the log
        assert await compare_with_replay(connection, list(projections.PROJECTIONS)) == []


async def test_a_recorded_status_is_a_heap_only_update_of_the_order(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient, provider: ProviderClient,
) -> None:
    """Statuses the poller records touch no indexed column of ``orders`` and find room on the
    row's page (sql/0013_orders_hot_updates.sql): each order's update is heap-only, writing no
    index entry. Counted by PostgreSQL within the transaction that makes them."""
    order_ids = await _submitted_orders(pool, client, provider, 3)
    replies: dict[int, fulfilment.Reply] = {
        order_id: ("In progress", 1_000, 60, None) for order_id in order_ids
    }
    counted = (
        "select n_tup_upd, n_tup_hot_upd from pg_stat_xact_user_tables"
        " where relid = 'public.orders'::regclass"
    )
    async with pool.acquire() as connection, connection.transaction():
        before = await connection.fetchrow(counted)
        recorded = await fulfilment.observe_batch(connection, replies, "test")
        after = await connection.fetchrow(counted)
    assert sorted(recorded) == order_ids
    assert after["n_tup_upd"] - before["n_tup_upd"] == 3
    assert after["n_tup_hot_upd"] - before["n_tup_hot_upd"] == 3
    statuses = await pool.fetch(
        "select status, start_count, remains from orders where order_id = any($1::bigint[])",
        order_ids,
    )
    assert [tuple(row) for row in statuses] == [("in_progress", 1_000, 60)] * 3


def _plan_nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return [plan, *(node for child in plan.get("Plans", []) for node in _plan_nodes(child))]


async def test_a_claim_reads_the_due_orders_in_index_order_however_many_are_due(
    pool: asyncpg.Pool[Any],
) -> None:
    """With 20,000 due orders (analyzed), the claim's plan walks ``order_polls_due_order_idx``
    and sorts nothing (sql/0015): ordered by how long an order has been due, with the row locks
    under the limit, it reads about as many entries as it claims. Ordered by anything no index
    gives, it would sort every due row for each claim. The rows are deleted afterwards."""
    await pool.execute(
        "insert into order_polls (order_id, next_check_at, last_checked_at)"
        " select -i, now() - make_interval(secs => random() * 3600),"
        "        now() - make_interval(secs => 3600 + random() * 3600)"
        "   from generate_series(1, 20000) i"
    )
    try:
        await pool.execute("analyze order_polls")
        explained = await pool.fetchval(
            f"explain (format json) {poller._CLAIM}", 100, poller.LEASE_S
        )
    finally:
        await pool.execute("delete from order_polls where order_id < 0")
        await pool.execute("analyze order_polls")
    assert not _sorts(explained), explained
    assert "order_polls_due_order_idx" in explained


def _sorts(explained: str) -> list[dict[str, Any]]:
    nodes = _plan_nodes(json.loads(explained)[0]["Plan"])
    return [node for node in nodes if "Sort" in node["Node Type"]]


async def test_a_claim_first_planned_on_an_empty_table_walks_the_index_once_it_fills(
    dsn: str,
) -> None:
    """The claim's statement, run a few times while order_polls is empty (and analyzed so),
    gets a generic plan that sorts the whole table, and PostgreSQL keeps it until the table's
    next ANALYZE: once 20,000 due orders have arrived, that kept plan still sorts them all. The
    poller's claim runs in a transaction that plans its statements afresh, for the table as it
    is: then the same statement walks the index. Everything is rolled back. (The owner's
    connection: emptying the table to its last page takes TRUNCATE.)"""
    connection = await asyncpg.connect(dsn)
    try:
        transaction = connection.transaction()
        await transaction.start()
        try:
            await connection.execute("truncate order_polls")
            await connection.execute("analyze order_polls")
            await connection.execute(f"prepare claim (int, float8) as {poller._CLAIM}")
            for _ in range(8):  # past the five custom plans after which one turns generic
                await connection.execute(f"execute claim(100, {poller.LEASE_S})")
            await connection.execute(
                "insert into order_polls (order_id, next_check_at)"
                " select -i, now() - make_interval(secs => random() * 3600)"
                "   from generate_series(1, 20000) i"
            )
            explain = f"explain (format json) execute claim(100, {poller.LEASE_S})"
            kept = await connection.fetchval(explain)
            await poller._claim(connection, 100)  # its setting lasts to this transaction's end
            setting = await connection.fetchval("show plan_cache_mode")
            afresh = await connection.fetchval(explain)
        finally:
            await transaction.rollback()
    finally:
        await connection.close()
    assert _sorts(kept), kept  # the control: the plan kept from the empty table
    assert setting == "force_custom_plan"
    assert not _sorts(afresh), afresh
    assert "order_polls_due_order_idx" in afresh


async def test_the_poller_asks_about_an_order_soon_after_it_falls_due_not_an_interval_later(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient, provider: ProviderClient,
) -> None:
    """The running poller, each order asked every minute: an order that falls due while it
    rests is asked about within a few of its wake-ups, not when the minute is up (orders due
    at a steady rate are then asked about at that rate, not in a burst once an interval)."""
    (order_id,) = await _submitted_orders(pool, client, provider, 1)
    await pool.execute(
        "update order_polls set next_check_at = now() + interval '1 day' where order_id = $1",
        order_id,
    )
    running = asyncio.create_task(poller.run(pool, provider, INTERVAL_S))
    try:
        await asyncio.sleep(poller.WAKE_S)  # it found nothing due and rests
        await pool.execute(
            "update order_polls set next_check_at = now() where order_id = $1", order_id
        )
        for _ in range(100):
            if (await _observations(pool, [order_id]))[order_id]:
                break
            await asyncio.sleep(0.05)
        assert (await _observations(pool, [order_id]))[order_id] == 1
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)


async def _canceled_at_the_provider(
    pool: asyncpg.Pool[Any], simulator: httpx.AsyncClient, order_ids: list[int]
) -> dict[int, str]:
    """Cancel the orders at the simulator; their provider ids."""
    provider_ids: dict[int, str] = {}
    for order_id in order_ids:
        provider_ids[order_id] = await pool.fetchval(
            "select provider_order_id from orders where order_id = $1", order_id
        )
        await simulator.post(f"/orders/{provider_ids[order_id]}", json={"status": "Canceled"})
    return provider_ids


async def _poll_once_through(panel: Starlette, pool: asyncpg.Pool[Any]) -> int:
    """One poll through ``panel`` served over HTTP (no retries); the orders it asked about."""
    async with http_server(panel) as panel_url:
        odd = ProviderClient(f"{panel_url}/api/v2", "sim-key", timeout_s=2.0, read_retries=0)
        try:
            return await poller.poll_once(pool, odd, INTERVAL_S)
        finally:
            await odd.aclose()


def _panel_garbling_remains(simulator_url: str, provider_order_id: str, remains: str) -> Starlette:
    """A panel that is the simulator, but whose status replies give one order ``remains``."""

    def garble(reply: Any) -> None:
        if isinstance(reply, dict) and isinstance(reply.get(provider_order_id), dict):
            reply[provider_order_id]["remains"] = remains

    return rewriting_panel(simulator_url, garble)


async def test_a_remains_past_any_number_does_not_hold_back_a_cancellation(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient, simulator: httpx.AsyncClient,
    provider: ProviderClient, simulator_url: str,
) -> None:
    """A slot whose remains is a number too large even to round ("1e9999999999") does not sink
    its batch (it raised decimal.Overflow, which did, every time the same orders fell due
    together), nor its own order: a Canceled order owes its whole charge whatever remains says,
    so it is recorded and refunded with the rest of its batch (it was backed off as a garbled
    slot, at every poll, its refund never paid), its remains unknown."""
    order_ids = await _submitted_orders(pool, client, provider, 3)
    provider_ids = await _canceled_at_the_provider(pool, simulator, order_ids)
    garbled = order_ids[0]
    panel = _panel_garbling_remains(simulator_url, provider_ids[garbled], "1e9999999999")
    assert await _poll_once_through(panel, pool) == 3

    settled = await pool.fetch(
        "select order_id, status, refunded, refunded_kobo = price_kobo, remains from orders"
        " where order_id = any($1::bigint[]) order by order_id",
        order_ids,
    )
    assert [tuple(row)[:4] for row in settled] == [
        (order_id, "canceled", True, True) for order_id in order_ids
    ]
    assert settled[0]["remains"] is None
    refunds = await pool.fetchval(
        "select count(*) from events where type = 'Refunded'"
        " and (data->>'order_id')::bigint = any($1::bigint[])",
        order_ids,
    )
    assert refunds == 3


@pytest.mark.parametrize("upstream", ["Partial", "Expired"])
async def test_a_partial_or_expired_with_an_unreadable_remains_is_held_back(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient, simulator: httpx.AsyncClient,
    provider: ProviderClient, simulator_url: str, upstream: str,
) -> None:
    """A Partial or an Expired owes the share of what was left undelivered, which an unreadable
    remains ("1,250") does not say: nothing is recorded or refunded (an Expired read as without
    remains would have settled owing nothing), and the order is asked again at the next poll."""
    (order_id,) = await _submitted_orders(pool, client, provider, 1)
    provider_id = await pool.fetchval(
        "select provider_order_id from orders where order_id = $1", order_id
    )
    await simulator.post(f"/orders/{provider_id}", json={"status": upstream, "remains": 3})
    panel = _panel_garbling_remains(simulator_url, provider_id, "1,250")
    assert await _poll_once_through(panel, pool) == 1

    order = await pool.fetchrow(
        "select status, refunded, version from orders where order_id = $1", order_id
    )
    assert (order["status"], order["refunded"]) == ("pending", False)
    observed = await pool.fetchval(
        "select count(*) from events where stream_id = $1 and type = 'StatusObserved'",
        f"order-{order_id}",
    )
    assert observed == 0
    due = await pool.fetchval("select failures from order_polls where order_id = $1", order_id)
    assert due == 0


def _null_errors(reply: Any) -> None:
    """Every status slot gets ``"error": null`` beside its fields, as some panel scripts send."""
    if isinstance(reply, dict):
        for slot in reply.values():
            if isinstance(slot, dict):
                slot["error"] = None


async def test_a_null_error_beside_each_status_is_no_refusal(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient, simulator: httpx.AsyncClient,
    provider: ProviderClient, simulator_url: str,
) -> None:
    """A panel that sends ``"error": null`` in each slot of its status replies is read for the
    statuses beside it: canceled orders are recorded and refunded (each slot was the refusal
    "None", so no order of such a panel ever settled)."""
    order_ids = await _submitted_orders(pool, client, provider, 2)
    await _canceled_at_the_provider(pool, simulator, order_ids)
    assert await _poll_once_through(rewriting_panel(simulator_url, _null_errors), pool) == 2
    settled = await pool.fetch(
        "select status, refunded from orders where order_id = any($1::bigint[])", order_ids
    )
    assert [tuple(row) for row in settled] == [("canceled", True)] * 2


def _panel_refusing_status_calls_with(
    simulator_url: str, refused: set[str], *, bad_key: bool = False
) -> tuple[Starlette, list[list[str]]]:
    """A panel that is the simulator, but refuses a whole status call (``{"error": ...}``, as
    some panels do) when it names one of ``refused`` (and, with ``bad_key``, every call of
    another action); and the ids of each status call made."""
    calls: list[list[str]] = []

    async def api(request: Request) -> Response:
        body = await request.body()
        form = {name: values[0] for name, values in parse_qs(body.decode()).items()}
        if bad_key and form.get("action") != "status":
            return JSONResponse({"error": "Invalid API key"})
        if form.get("action") == "status":
            ids = form.get("orders", form.get("order", "")).split(",")
            calls.append(ids)
            if refused & set(ids):
                return JSONResponse({"error": "Incorrect order ID"})
        async with httpx.AsyncClient(timeout=5.0) as upstream:
            answer = await upstream.post(
                f"{simulator_url}/api/v2", content=body,
                headers={"content-type": "application/x-www-form-urlencoded"},
            )
        return Response(answer.content, media_type="application/json")

    return Starlette(routes=[Route("/api/v2", api, methods=["POST"])]), calls


@pytest.mark.parametrize("unknown_at", [[0], [0, -1]], ids=["one id", "one in each half"])
async def test_a_status_call_refused_whole_for_unknown_ids_is_narrowed_down_to_them(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient, simulator: httpx.AsyncClient,
    provider: ProviderClient, simulator_url: str, unknown_at: list[int],
) -> None:
    """A panel that refuses a whole multi-id status call for an id it does not know: the batch
    is asked again in halves, so the other orders are recorded and refunded and those ids back
    off alone (the poll raised, the batch kept its lease and was asked again as a whole, and
    none of its orders was ever recorded), in a bounded number of calls. With one such id in
    each half, both halves are refused, yet the panel answers other calls (its balance), so it
    is not refusing every call (that was taken for a bad key, and the batch stalled as before)."""
    order_ids = await _submitted_orders(pool, client, provider, 6)
    provider_ids = await _canceled_at_the_provider(pool, simulator, order_ids)
    unknown = [order_ids[index] for index in unknown_at]
    panel, calls = _panel_refusing_status_calls_with(
        simulator_url, {provider_ids[order_id] for order_id in unknown}
    )
    assert await _poll_once_through(panel, pool) == 6

    settled = await pool.fetch(
        "select order_id, status, refunded from orders where order_id = any($1::bigint[])"
        " order by order_id",
        order_ids,
    )
    assert [tuple(row) for row in settled] == [
        (order_id, "pending", False) if order_id in unknown else (order_id, "canceled", True)
        for order_id in order_ids
    ]
    failures = await pool.fetch(
        "select failures from order_polls where order_id = any($1::bigint[])", unknown
    )
    assert [row[0] for row in failures] == [1] * len(unknown)
    assert len(calls[0]) == 6 and len(calls) <= 2 * 6 - 1
    assert all([provider_ids[order_id]] in calls for order_id in unknown)  # asked alone


async def test_a_provider_refusing_every_status_call_backs_the_poller_off(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient, provider: ProviderClient,
    simulator_url: str,
) -> None:
    """Both halves of a refused batch refused too, and the balance as well: the provider
    refuses every call (a bad key, say), which is the poller's to back off from, as before:
    the poll raises after three status calls and no order is marked as failing."""
    order_ids = await _submitted_orders(pool, client, provider, 4)
    provider_ids = await pool.fetch(
        "select provider_order_id from orders where order_id = any($1::bigint[])", order_ids
    )
    panel, calls = _panel_refusing_status_calls_with(
        simulator_url, {row[0] for row in provider_ids}, bad_key=True
    )
    with pytest.raises(ProviderError):
        await _poll_once_through(panel, pool)
    assert [len(ids) for ids in calls] == [4, 2, 2]
    failures = await pool.fetch(
        "select failures from order_polls where order_id = any($1::bigint[])", order_ids
    )
    assert [row[0] for row in failures] == [0] * 4
