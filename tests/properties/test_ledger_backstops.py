"""The database's own guards of the money, proved past the application's: the properties below
bypass (or race) the code that normally keeps a write from ever reaching a guard, so that each
guard is seen to hold on its own.

- a stream's versions are 1, 2, 3 ... with none repeated: ``unique (stream_id, version)``;
- a fact that may happen at most once (a refund: a deterministic event id) is refused a second
  time however it is reached: ``unique (event_id)``;
- a decision on an order is serialised on the order's row lock: a second decision waits for the
  first to commit and then decides on what it recorded;
- one poll that settles several orders of one wallet pays each its refund, chained on the
  wallet, in one transaction (the poller's one-by-one fallback would hide a batch that fails).

Each runs against a real PostgreSQL (the module's own database), with no mock of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import open_funded_account, seed_catalog

from boost_ledger import postgres
from boost_ledger.ledger import checkout, fulfilment, store
from boost_ledger.ledger.errors import ConcurrencyConflict, DuplicateEvent
from boost_ledger.ledger.events import CancelRejected
from boost_ledger.ledger.statuses import map_upstream_status

_FIXTURES = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
_keys = itertools.count(1)
WAIT_FOR_LOCK_S = 10.0
STATUSES = st.sampled_from(
    ["Completed", "Partial", "Canceled", "Refunded", "Fail", "In progress", "Pending", "Expired"]
)
REMAINS = st.one_of(st.none(), st.integers(-5, 70))


@pytest.fixture(scope="module")
async def catalog_seeded(pool: asyncpg.Pool[Any]) -> asyncpg.Pool[Any]:
    await seed_catalog(pool)
    return pool


@pytest.fixture(scope="module")
async def monitor(dsn: str) -> AsyncIterator[asyncpg.Connection[Any]]:
    """The database's owner, who sees what every session waits for (the application's role
    sees only its own sessions in pg_stat_activity)."""
    connection = await postgres.owner_connection(dsn)
    yield connection
    await connection.close()


async def _versions(pool: asyncpg.Pool[Any], stream_id: str) -> list[int]:
    rows = await pool.fetch(
        "select version from events where stream_id = $1 order by global_position", stream_id
    )
    return [row["version"] for row in rows]


@_FIXTURES
@given(proposed=st.lists(st.integers(1, 6), min_size=1, max_size=8))
async def test_a_version_a_stream_holds_is_never_taken_twice(
    pool: asyncpg.Pool[Any], proposed: list[int]
) -> None:
    """An append names the version it takes; one naming a version the stream already holds (a
    writer that read the stream before another appended) is refused as ConcurrencyConflict and
    writes nothing, as is one past the stream's end; one naming the next version is appended.
    So a stream's versions are always exactly 1..n, each once."""
    stream_id = f"order-backstop-{uuid.uuid4().hex}"
    held = 0
    for version in proposed:
        event = store.NewEvent(
            stream_id=stream_id, version=version,
            event=CancelRejected(order_id=0, reason=f"proposal {version}"),
        )
        async with pool.acquire() as connection:
            try:
                async with connection.transaction():
                    await store.append(connection, [event])
            except ConcurrencyConflict as conflict:
                assert version != held + 1, (version, held, conflict)
            else:
                assert version == held + 1, f"version {version} taken with {held} held"
                held = version
    assert await _versions(pool, stream_id) == list(range(1, held + 1))


async def _submitted_order(
    pool: asyncpg.Pool[Any], quantity: int, account_id: int | None = None
) -> int:
    """A new order of service 1 (Default, cancelable), placed, claimed and accepted by the
    provider, as the submitter leaves it (of a new account unless told)."""
    if account_id is None:
        account_id, _ = await open_funded_account(pool, 1_000_000_00)
    answer = await checkout.checkout(
        pool, account_id=account_id, idempotency_key=f"backstop-{next(_keys)}", service_id="1",
        body={"service_id": "1", "link": "https://instagram.com/p/abc", "quantity": quantity},
        subscription_default_posts=10, metadata={"actor": "test"},
    )
    assert answer.status_code == 201 and not answer.replayed, answer
    async with pool.acquire() as connection:
        claimed = await fulfilment.claim_batch(connection, fulfilment.MAX_CLAIM_BATCH)
        for order in claimed:  # every order this module places is claimed here, at once
            assert await fulfilment.settle_submission(
                connection, order.order_id, provider_order_id=f"p-{order.order_id}",
                attempt=order.attempt,
            )
    assert answer.order_id in {order.order_id for order in claimed}
    return answer.order_id


async def _refund_facts(pool: asyncpg.Pool[Any], order_id: int) -> tuple[Any, ...]:
    """The order's row, its wallet's row, and its refunds' amounts."""
    order = await pool.fetchrow("select * from orders where order_id = $1", order_id)
    wallet = await pool.fetchrow(
        "select * from wallets where account_id = $1", order["account_id"]
    )
    refunds = await pool.fetch(
        "select (data->>'amount_kobo')::bigint as amount from events where type = 'Refunded'"
        " and (data->>'order_id')::bigint = $1",
        order_id,
    )
    return dict(order), dict(wallet), [row["amount"] for row in refunds]


def _owed_kobo(order: dict[str, Any]) -> int:
    """What a Default order's settled status owes back, computed independently (DESIGN §5)."""
    if order["status"] in ("canceled", "failed"):
        return int(order["price_kobo"])
    expired = order["status"] == "completed" and order["upstream_status"] == "Expired"
    if order["status"] == "partial" or expired:
        units = order["billable_quantity"]
        remains = min(max(order["remains"] or 0, 0), units)
        return int(order["price_kobo"] * remains // units)
    return 0


@_FIXTURES
@given(
    quantity=st.integers(10, 60),
    status=st.sampled_from(["Canceled", "Refunded", "Fail", "Partial"]),
    remains=st.integers(1, 60),
    again_kobo=st.integers(1, 10**6),
)
async def test_an_order_refunded_once_is_refused_a_second_refund_past_every_guard(
    catalog_seeded: asyncpg.Pool[Any], quantity: int, status: str, remains: int,
    again_kobo: int,
) -> None:
    """A refund is paid at most once even when the application's guards are bypassed: after an
    order settled and was refunded, a decision made on a stale copy of it (one that still says
    "not refunded") that pays a refund again, at the wallet's next version and of any amount up
    to the charge, is refused by the database (DuplicateEvent: the refund's event id is the
    order's), and the order, its wallet and its refunds stay exactly as they were."""
    pool = catalog_seeded
    order_id = await _submitted_order(pool, quantity)
    async with pool.acquire() as connection:
        await fulfilment.observe(connection, order_id, status, None, remains, None, "poller")
    before = await _refund_facts(pool, order_id)
    assert before[0]["refunded"] and len(before[2]) == 1, before
    async with pool.acquire() as connection:
        with pytest.raises(DuplicateEvent):
            async with connection.transaction():
                locked = await fulfilment.lock_order(connection, order_id)
                stale = msgspec.structs.replace(locked, refunded=False)
                amount_kobo = min(again_kobo, locked.price_kobo)
                await fulfilment.record(connection, stale, [], {"actor": "test"}, amount_kobo,
                                        "a second refund")
    assert await _refund_facts(pool, order_id) == before


async def _decide(
    connection: asyncpg.Connection[Any], how: str, order_id: int, status: str,
    remains: int | None,
) -> None:
    if how == "poller":
        await fulfilment.observe_batch(connection, {order_id: (status, None, remains, None)},
                                       "poller")
    else:
        await fulfilment.observe(connection, order_id, status, None, remains, None, "check")


async def _until_waiting(
    monitor: asyncpg.Connection[Any], pid: int, task: asyncio.Task[None]
) -> None:
    """Return once the backend ``pid`` waits for a lock, or once ``task`` has ended."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_FOR_LOCK_S
    while not task.done():
        waiting = await monitor.fetchval(
            "select wait_event_type = 'Lock' from pg_stat_activity where pid = $1", pid
        )
        if waiting:
            return
        assert loop.time() < deadline, "the second decision neither waited nor ended"
        await asyncio.sleep(0.002)


@_FIXTURES
@given(
    quantity=st.integers(10, 60),
    first=st.tuples(st.sampled_from(["check", "poller"]), STATUSES, REMAINS),
    second=st.tuples(st.sampled_from(["check", "poller"]), STATUSES, REMAINS),
)
async def test_two_decisions_on_one_order_are_serialised_on_its_row(
    catalog_seeded: asyncpg.Pool[Any], monitor: asyncpg.Connection[Any], quantity: int,
    first: tuple[str, str, int | None], second: tuple[str, str, int | None],
) -> None:
    """A decision on an order (a check's or the poller's status) holds the order's row from
    its read to its commit: while one is still uncommitted, a second decision on the same order
    waits for it (whichever path each takes), then decides on what the first recorded. Neither
    fails, and the order is refunded at most once, exactly what its settled status owes: a
    status the first settled with is never paid again by the second."""
    pool = catalog_seeded
    order_id = await _submitted_order(pool, quantity)
    async with pool.acquire() as holder, pool.acquire() as waiter:
        deciding = None
        try:
            async with holder.transaction():
                await _decide(holder, first[0], order_id, first[1], first[2])
                deciding = asyncio.create_task(_decide(waiter, second[0], order_id, *second[1:]))
                await _until_waiting(monitor, waiter.get_server_pid(), deciding)
                assert not deciding.done(), "the second decision did not wait for the first"
            await deciding
        finally:
            if deciding is not None and not deciding.done():  # a failed assertion: stop it
                deciding.cancel()
                with contextlib.suppress(BaseException):
                    await deciding
    order, _, refunds = await _refund_facts(pool, order_id)
    assert len(refunds) <= 1, refunds
    assert sum(refunds) == _owed_kobo(order), (order, refunds)
    assert order["refunded"] == (len(refunds) == 1), (order, refunds)
    # A status that settles the order (a Partial only with remains) is the first's to record.
    settles = map_upstream_status(first[1])
    recordable = settles is not None and (settles.refund != "partial" or first[2] is not None)
    if settles is not None and settles.terminal and recordable:
        assert order["upstream_status"] == first[1], (order, first, second)


@_FIXTURES
@given(settled=st.lists(
    st.tuples(st.integers(10, 60), st.sampled_from(["Canceled", "Refunded", "Fail", "Partial"]),
              st.integers(0, 70)),
    min_size=2, max_size=5,
))
async def test_one_poll_refunds_every_order_of_a_wallet_it_settles(
    catalog_seeded: asyncpg.Pool[Any], settled: list[tuple[int, str, int]]
) -> None:
    """The poller's batch (observe_batch) that settles several orders of one wallet pays each
    the refund its status owes, once, in the batch's one transaction, the refunds following
    one another on the wallet: versions consecutive, each balance_after the one before plus its
    amount, the last one the wallet's balance."""
    pool = catalog_seeded
    account_id, _ = await open_funded_account(pool, 1_000_000_00)
    orders = [await _submitted_order(pool, quantity, account_id) for quantity, _, _ in settled]
    replies = {order_id: (status, None, remains, None)
               for order_id, (_, status, remains) in zip(orders, settled, strict=True)}
    async with pool.acquire() as connection:
        assert sorted(await fulfilment.observe_batch(connection, replies, "poller")) == orders
    owed = [_owed_kobo(dict(row)) for row in await pool.fetch(
        "select * from orders where order_id = any($1::bigint[]) order by order_id", orders
    )]
    refunds = await pool.fetch(
        "select version, transaction_id, (data->>'order_id')::bigint as order_id,"
        " (data->>'amount_kobo')::bigint as amount,"
        " (data->>'balance_after_kobo')::bigint as balance_after"
        " from events where type = 'Refunded' and stream_id = $1 order by version",
        f"wallet-{account_id}",
    )
    paid = {row["order_id"]: row["amount"] for row in refunds}
    assert len(paid) == len(refunds), "an order refunded twice"
    assert [paid.get(order_id, 0) for order_id in orders] == owed, (paid, owed)
    assert len({row["transaction_id"] for row in refunds}) <= 1, "not the batch's transaction"
    wallet = await pool.fetchrow("select * from wallets where account_id = $1", account_id)
    for earlier, later in itertools.pairwise(refunds):
        assert later["version"] == earlier["version"] + 1, (earlier, later)
        assert later["balance_after"] == earlier["balance_after"] + later["amount"]
    if refunds:
        assert refunds[-1]["balance_after"] == wallet["balance_kobo"]
        assert refunds[-1]["version"] == wallet["version"]
