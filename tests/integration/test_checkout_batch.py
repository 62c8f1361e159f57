"""Checkouts placed together (ledger/checkout_batch.py, sql/0014_checkout_batch.sql): a batch
decides exactly as its checkouts would one after another, shares one transaction, and lets a
bad checkout fail alone.

A gate in front of the real pool holds the first checkout (sent at once, alone) at its
``acquire``: the checkouts started meanwhile wait, and leave together in one batch after it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import asyncpg
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import open_funded_account, seed_catalog, simulator_offers

from boost_ledger.ledger import catalog, checkout
from boost_ledger.ledger.checkout_batch import CheckoutBatcher
from boost_ledger.ledger.checkout_state import CheckoutState
from boost_ledger.ledger.connection import Connection

LINK = "https://instagram.com/p/batch"
PRICE_PER_100_KOBO = 16_200  # service 1: 1620.00 NGN per 1000


@pytest.fixture(scope="module", autouse=True)
async def _catalog(pool: asyncpg.Pool[Any]) -> None:
    await seed_catalog(pool)


class Gated:
    """The pool, behind a gate that every ``acquire`` waits at until it opens."""

    def __init__(self, pool: asyncpg.Pool[Any]) -> None:
        self.pool = pool
        self.gate = asyncio.Event()
        self.acquired = 0

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[Connection]:
        await self.gate.wait()
        self.acquired += 1
        async with self.pool.acquire() as connection:
            yield connection


async def _warm_state(pool: asyncpg.Pool[Any]) -> CheckoutState:
    """A server's state holding service 1 and a block of order ids: the checkouts that use it
    take no connection before they are placed."""
    state = CheckoutState.for_server()
    await state.services.get(pool, "1")
    await state.order_ids.take(pool)
    return state


def _order(key: str, quantity: int) -> dict[str, Any]:
    return {"service_id": "1", "link": LINK, "quantity": quantity, "idempotency_key": key}


async def _checkout(
    gated: Gated, batcher: CheckoutBatcher, state: CheckoutState, account_id: int,
    body: dict[str, Any],
) -> checkout.CheckoutAnswer | Exception:
    try:
        return await checkout.checkout(
            gated, account_id=account_id, idempotency_key=body["idempotency_key"],
            service_id="1", body=body, subscription_default_posts=10,
            metadata={"actor": "test"}, state=state, place=batcher.place,
        )
    except (checkout.CheckoutRefused, asyncpg.PostgresError) as refusal:
        return refusal


async def _in_one_batch(
    pool: asyncpg.Pool[Any], requests: list[tuple[int, dict[str, Any]]]
) -> tuple[list[checkout.CheckoutAnswer | Exception], Gated]:
    """Run ``requests``: the first alone, held at the gate until the others wait behind it,
    then those in one batch; answers in request order."""
    gated, state = Gated(pool), await _warm_state(pool)
    batcher = CheckoutBatcher(gated, flights=1)
    tasks = [
        asyncio.ensure_future(_checkout(gated, batcher, state, account_id, body))
        for account_id, body in requests
    ]
    await asyncio.sleep(0.01)  # every task is now waiting on the batcher
    gated.gate.set()
    async with asyncio.timeout(30):
        return list(await asyncio.gather(*tasks)), gated


async def _placed_transactions(pool: asyncpg.Pool[Any], order_ids: list[int]) -> int:
    count: int = await pool.fetchval(
        "select count(distinct transaction_id) from events where type = 'OrderPlaced'"
        " and stream_id = any($1::text[])",
        [f"order-{order_id}" for order_id in order_ids],
    )
    return count


async def test_checkouts_that_wait_together_commit_in_one_transaction(
    pool: asyncpg.Pool[Any],
) -> None:
    accounts = [(await open_funded_account(pool, 10_000_000))[0] for _ in range(3)]
    requests = [(accounts[i % 3], _order(f"together-{i}", 100)) for i in range(13)]
    answers, gated = await _in_one_batch(pool, requests)
    assert all(isinstance(a, checkout.CheckoutAnswer) and a.status_code == 201 for a in answers)
    placed = [a.order_id for a in answers if isinstance(a, checkout.CheckoutAnswer)]
    assert len(set(placed)) == 13
    assert gated.acquired == 2  # the first alone, then the twelve others in one statement
    assert await _placed_transactions(pool, placed[1:]) == 1
    for account_id in accounts:
        balance = await pool.fetchval(
            "select balance_kobo from wallets where account_id = $1", account_id
        )
        charged = sum(1 for owner, _ in requests if owner == account_id) * PRICE_PER_100_KOBO
        assert balance == 10_000_000 - charged


async def test_a_checkout_that_errs_fails_alone(pool: asyncpg.Pool[Any]) -> None:
    """An account without a wallet makes checkout_place raise, which aborts the whole batch
    statement; every other checkout of the batch is then placed on its own."""
    account_id, _ = await open_funded_account(pool, 10_000_000)
    no_wallet = await pool.fetchval("select coalesce(max(account_id), 0) + 1000 from accounts")
    requests = [(account_id, _order("alone-0", 100)), (account_id, _order("alone-1", 100)),
                (no_wallet, _order("alone-2", 100)), (account_id, _order("alone-3", 100))]
    answers, _ = await _in_one_batch(pool, requests)
    assert isinstance(answers[2], asyncpg.PostgresError)
    assert all(isinstance(answers[i], checkout.CheckoutAnswer) for i in (0, 1, 3))
    assert await pool.fetchval(
        "select count(*) from orders where account_id = $1", no_wallet
    ) == 0
    assert await pool.fetchval(
        "select balance_kobo from wallets where account_id = $1", account_id
    ) == 10_000_000 - 3 * PRICE_PER_100_KOBO



class _Proxy:
    """A pooled connection whose batch statement commits and then loses its reply."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    async def fetch(self, query: str, *arguments: Any) -> list[Any]:
        rows = await self._connection.fetch(query, *arguments)
        if "checkout_place_batch" in query:
            raise ConnectionResetError("injected: the reply is lost after the commit")
        return rows

    async def fetchrow(self, query: str, *arguments: Any) -> Any:
        return await self._connection.fetchrow(query, *arguments)


class LosesBatchReplies(Gated):
    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[Any]:
        async with super().acquire() as connection:
            yield _Proxy(connection)


async def test_a_batch_committed_but_unanswered_gives_first_answers_not_replays(
    pool: asyncpg.Pool[Any],
) -> None:
    """A batch whose commit went through but whose reply was lost is placed again one by one:
    each checkout then finds the order it proposed itself, and answers as placed (no
    Idempotent-Replayed: its client hears of it for the first time), charged once."""
    account_id, _ = await open_funded_account(pool, 10_000_000)
    gated, state = LosesBatchReplies(pool), await _warm_state(pool)
    batcher = CheckoutBatcher(gated, flights=1)
    requests = [_order(f"lost-reply-{i}", 100) for i in range(4)]
    tasks = [
        asyncio.ensure_future(_checkout(gated, batcher, state, account_id, body))
        for body in requests
    ]
    await asyncio.sleep(0.01)
    gated.gate.set()
    async with asyncio.timeout(30):
        answers = await asyncio.gather(*tasks)
    assert all(isinstance(answer, checkout.CheckoutAnswer) for answer in answers)
    assert [(a.status_code, a.replayed) for a in answers] == [(201, False)] * 4  # type: ignore[union-attr]
    assert await pool.fetchval(
        "select balance_kobo from wallets where account_id = $1", account_id
    ) == 10_000_000 - 4 * PRICE_PER_100_KOBO
    again = await _checkout(gated, batcher, state, account_id, requests[1])
    assert isinstance(again, checkout.CheckoutAnswer) and again.replayed
    assert again.body == answers[1].body  # type: ignore[union-attr]

async def test_a_checkout_cancelled_before_its_batch_leaves_is_not_placed(
    pool: asyncpg.Pool[Any],
) -> None:
    account_id, _ = await open_funded_account(pool, 10_000_000)
    gated, state = Gated(pool), await _warm_state(pool)
    batcher = CheckoutBatcher(gated, flights=1)
    first, kept, dropped = (
        asyncio.ensure_future(_checkout(gated, batcher, state, account_id, _order(key, 100)))
        for key in ("cancel-first", "cancel-kept", "cancel-dropped")
    )
    await asyncio.sleep(0.01)
    dropped.cancel()
    gated.gate.set()
    async with asyncio.timeout(30):
        answers = await asyncio.gather(first, kept)
    assert all(isinstance(a, checkout.CheckoutAnswer) for a in answers)
    assert dropped.cancelled()
    keys = await pool.fetch(
        "select idempotency_key from orders where account_id = $1 order by order_id", account_id
    )
    assert [row[0] for row in keys] == ["cancel-first", "cancel-kept"]


# ---- a batch decides as its checkouts one after another ----------------------------------

_requests = st.lists(
    st.tuples(
        st.integers(0, 2),  # which account
        st.sampled_from(["k1", "k2", "k3", "k4"]),  # the idempotency key
        st.sampled_from([100, 300, 500]),  # quantity: 162.00, 486.00 or 810.00 NGN
    ),
    min_size=1,
    max_size=16,
)


def _model(
    balances: list[int], requests: list[tuple[int, str, int]]
) -> list[tuple[str, int]]:
    """What each request gets when the requests run one by one in order: an outcome, and the
    index of the request whose answer a replay repeats."""
    balances = list(balances)
    first_use: dict[tuple[int, str], tuple[int, int]] = {}  # (account, key) -> (index, quantity)
    outcomes = []
    for index, (who, key, quantity) in enumerate(requests):
        price = quantity // 100 * PRICE_PER_100_KOBO
        if (who, key) in first_use:
            earlier, earlier_quantity = first_use[(who, key)]
            same = earlier_quantity == quantity
            outcomes.append(("replayed", earlier) if same else ("reused", -1))
        elif balances[who] >= price:
            balances[who] -= price
            first_use[(who, key)] = (index, quantity)
            outcomes.append(("placed", index))
        else:
            outcomes.append(("insufficient", -1))
    return outcomes


def _outcome(answer: checkout.CheckoutAnswer | Exception) -> str:
    if isinstance(answer, checkout.CheckoutAnswer):
        return "replayed" if answer.replayed else "placed"
    if isinstance(answer, checkout.InsufficientBalance):
        return "insufficient"
    assert isinstance(answer, checkout.IdempotencyKeyReused), repr(answer)
    return "reused"


@settings(
    max_examples=25, deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    requests=_requests,
    balances=st.lists(st.integers(0, 2_000_00), min_size=3, max_size=3),
)
async def test_a_batch_decides_as_its_checkouts_would_one_by_one(
    pool: asyncpg.Pool[Any], requests: list[tuple[int, str, int]], balances: list[int]
) -> None:
    accounts = [(await open_funded_account(pool, balance))[0] for balance in balances]
    bodies = [(accounts[who], _order(key, quantity)) for who, key, quantity in requests]
    answers, _ = await _in_one_batch(pool, bodies)
    expected = _model(balances, requests)
    assert [_outcome(a) for a in answers] == [outcome for outcome, _ in expected]
    for answer, (outcome, first) in zip(answers, expected, strict=True):
        if outcome == "replayed":
            original = answers[first]
            assert isinstance(answer, checkout.CheckoutAnswer)
            assert isinstance(original, checkout.CheckoutAnswer)
            assert (answer.body, answer.order_id) == (original.body, original.order_id)
    model_balances = list(balances)
    for (who, _, quantity), (outcome, _) in zip(requests, expected, strict=True):
        if outcome == "placed":
            model_balances[who] -= quantity // 100 * PRICE_PER_100_KOBO
    rows = await pool.fetch(
        "select account_id, balance_kobo, version from wallets"
        " where account_id = any($1::bigint[])", accounts,
    )
    found = {row["account_id"]: row["balance_kobo"] for row in rows}
    assert [found[account_id] for account_id in accounts] == model_balances


async def test_a_checkout_placed_as_a_batch_lands_is_sent(pool: asyncpg.Pool[Any]) -> None:
    """A caller whose checkout came back in a flight's batch places another at once, in the
    very loop step its answer arrives, while that flight's task is finishing: the new one must
    still be sent (and not wait for some later checkout to start a flight)."""
    account_id, _ = await open_funded_account(pool, 10_000_000)
    gated, state = Gated(pool), await _warm_state(pool)
    batcher = CheckoutBatcher(gated, flights=1)

    async def one(key: str) -> checkout.CheckoutAnswer | Exception:
        return await _checkout(gated, batcher, state, account_id, _order(key, 100))

    async def two_in_a_row() -> list[checkout.CheckoutAnswer | Exception]:
        return [await one("landing-batched"), await one("landing-next")]

    alone = asyncio.ensure_future(one("landing-alone"))  # sent at once, held at the gate
    await asyncio.sleep(0)
    in_a_row = asyncio.ensure_future(two_in_a_row())  # waits, then leaves in a flight
    await asyncio.sleep(0.01)
    gated.gate.set()
    async with asyncio.timeout(10):
        answers = [await alone, *await in_a_row]
    assert all(isinstance(a, checkout.CheckoutAnswer) and a.status_code == 201 for a in answers)
    assert gated.acquired == 3


async def test_a_cached_service_row_refuses_nothing_a_sync_has_since_allowed(
    pool: asyncpg.Pool[Any],
) -> None:
    """A server's cached row of a service is checked again against the catalog before it
    refuses an order: after a sync doubled the service's maximum, an order above the old one
    is placed (not BOOST_QUANTITY_OUT_OF_RANGE from the row read before the sync)."""
    account_id, _ = await open_funded_account(pool, 10**12)
    offers = simulator_offers()
    [offer] = [o for o in offers if o.service == "1"]
    state = CheckoutState.for_server()
    assert (await state.services.get(pool, "1")).max_quantity == offer.max  # type: ignore[union-attr]
    widened = [msgspec.structs.replace(o, max=o.max * 2) if o.service == "1" else o for o in offers]

    async def synced(listing: list[Any]) -> None:
        async with pool.acquire() as connection:
            await catalog.sync(connection, listing, Decimal("1500"), Decimal("20"))

    await synced(widened)
    try:
        answer = await checkout.checkout(
            pool, account_id=account_id, idempotency_key="widened-max", service_id="1",
            body=_order("widened-max", offer.max + 1), subscription_default_posts=10,
            metadata={"actor": "test"}, state=state,
        )
        assert (answer.status_code, answer.replayed) == (201, False)
        with pytest.raises(checkout.OrderInvalid):
            await checkout.checkout(
                pool, account_id=account_id, idempotency_key="above-widened", service_id="1",
                body=_order("above-widened", 2 * offer.max + 1), subscription_default_posts=10,
                metadata={"actor": "test"}, state=state,
            )
    finally:
        await synced(offers)
