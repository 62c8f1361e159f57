"""The one-statement checkout (sql/0011_checkout.sql) and the state checkout keeps between
requests: a cached service is never trusted past a catalog change, and the answer the function
assembles is the one the views render."""

from __future__ import annotations

import asyncio
import random
from decimal import Decimal
from typing import Any

import asyncpg
import pytest
from support import open_funded_account, seed_catalog, simulator_offers

from boost_ledger.ledger import accounts, catalog, checkout
from boost_ledger.ledger.checkout_state import CheckoutState, OrderIds
from boost_ledger.ledger.connection import Lent
from boost_ledger.ledger.keys import hash_key
from boost_ledger.ledger.money import format_kobo
from boost_ledger.projections.views import checkout_response, checkout_response_parts

LINK = "https://instagram.com/p/example"


@pytest.fixture(scope="module", autouse=True)
async def _catalog(pool: asyncpg.Pool[Any]) -> None:
    await seed_catalog(pool)


async def _place(
    pool: asyncpg.Pool[Any], state: CheckoutState, account_id: int, key: str, quantity: int = 1000
) -> checkout.CheckoutAnswer:
    body = {"service_id": "1", "link": LINK, "quantity": quantity, "idempotency_key": key}
    async with pool.acquire() as connection:
        return await checkout.checkout(
            Lent(connection), account_id=account_id, idempotency_key=key, service_id="1", body=body,
            subscription_default_posts=10, metadata={"actor": "test"}, state=state,
        )


async def _charged(pool: asyncpg.Pool[Any], order_id: int) -> int:
    price: int = await pool.fetchval("select price_kobo from orders where order_id = $1", order_id)
    return price


async def test_sql_format_kobo_writes_what_python_writes(pool: asyncpg.Pool[Any]) -> None:
    rng = random.Random(7)
    edges = [0, 1, 9, 10, 99, 100, 101, 999, 1000, 2**31 - 1, 2**31, 2**63 - 1]
    samples = edges + [rng.randrange(0, 2**63) for _ in range(2000)]
    samples += [rng.randrange(0, 10**k) for k in range(1, 19) for _ in range(50)]
    rows = await pool.fetch(
        "select value, format_kobo(value) as text from unnest($1::bigint[]) as value", samples
    )
    assert len(rows) == len(samples)
    assert [row["text"] for row in rows] == [format_kobo(value) for value in samples]


def test_the_answer_parts_join_to_the_rendered_answer() -> None:
    order = {
        "order_id": 100000123, "service_id": "7", "service_name": 'Likes "fast" ✓',
        "category": "Instagram", "type": "Default", "link": 'https://x.test/"balance_after":""}}',
        "quantity": 10, "price_kobo": 1, "cancel_supported": True,
    }
    head, tail = checkout_response_parts(order)
    for balance in (0, 5, 100, 123456789):
        joined = head + format_kobo(balance).encode() + tail
        assert joined == checkout_response(order, balance)


async def test_a_cached_service_is_repriced_after_the_catalog_changes(
    pool: asyncpg.Pool[Any],
) -> None:
    account_id, _ = await open_funded_account(pool, 10**9)
    state = CheckoutState.for_server()
    first = await _place(pool, state, account_id, "cache-1")
    assert await _charged(pool, first.order_id) == 162_000
    async with pool.acquire() as connection:
        await catalog.pin_rate(connection, "1", 200_000)
    second = await _place(pool, state, account_id, "cache-2")
    assert second.status_code == 201 and not second.replayed
    assert await _charged(pool, second.order_id) == 200_000  # not the cached 162,000
    async with pool.acquire() as connection:
        await catalog.pin_rate(connection, "1", None)


async def test_a_delisted_service_refuses_new_orders_but_replays_old_ones(
    pool: asyncpg.Pool[Any],
) -> None:
    account_id, _ = await open_funded_account(pool, 10**9)
    state = CheckoutState.for_server()
    placed = await _place(pool, state, account_id, "delist-1")
    async with pool.acquire() as connection:  # the provider stops offering service 1
        others = [offer for offer in simulator_offers() if offer.service != "1"]
        await catalog.sync(connection, others, Decimal("1500"), Decimal("20"))
    try:
        replay = await _place(pool, state, account_id, "delist-1")
        assert replay.replayed and replay.body == placed.body
        with pytest.raises(checkout.ServiceNotFound):
            await _place(pool, state, account_id, "delist-2")
        with pytest.raises(checkout.IdempotencyKeyReused):
            await _place(pool, state, account_id, "delist-1", quantity=2000)
    finally:
        await seed_catalog(pool)


async def test_a_refused_checkout_writes_nothing_and_leaves_the_key_free(
    pool: asyncpg.Pool[Any],
) -> None:
    account_id, _ = await open_funded_account(pool, 100_000)  # less than one order's 162,000
    state = CheckoutState.for_server()
    before = await pool.fetchval("select count(*) from events")
    with pytest.raises(checkout.InsufficientBalance) as refused:
        await _place(pool, state, account_id, "poor-1")
    assert (refused.value.price_kobo, refused.value.balance_kobo) == (162_000, 100_000)
    assert await pool.fetchval("select count(*) from events") == before
    cheaper = await _place(pool, state, account_id, "poor-1", quantity=500)
    assert cheaper.status_code == 201 and await _charged(pool, cheaper.order_id) == 81_000


async def test_order_ids_come_in_blocks_increasing_and_unique(pool: asyncpg.Pool[Any]) -> None:
    first, second = OrderIds(block=5), OrderIds(block=5)
    a = [await first.take(pool) for _ in range(7)]
    b = [await second.take(pool) for _ in range(7)]
    assert a == sorted(a) and b == sorted(b)
    assert len(set(a) | set(b)) == 14


async def _place_with_key(pool: asyncpg.Pool[Any], account_id: int, key: str, name: str) -> str:
    """A checkout that presents ``key`` (checked in its own transaction): its outcome."""
    body = {"service_id": "1", "link": LINK, "quantity": 1000, "idempotency_key": name}
    try:
        answer = await checkout.checkout(
            pool, account_id=account_id, idempotency_key=name, service_id="1", body=body,
            subscription_default_posts=10, metadata={"actor": "test"}, key_hash=hash_key(key),
        )
    except checkout.KeyNotLive:
        return "refused"
    return f"placed {answer.status_code}"


async def test_a_ban_waits_for_the_checkouts_that_passed_the_key_check(
    pool: asyncpg.Pool[Any],
) -> None:
    """A checkout that passed its key check and waits for its wallet (another transaction
    holds it) keeps the ban waiting: it commits first, the ban after it, and the log says so;
    a checkout after the ban is refused. (Read without a lock, the key let the waiting
    checkout spend after the ban had committed.)"""
    account_id, key = await open_funded_account(pool, 10_000_00)
    async with pool.acquire() as holder:
        await holder.execute("begin")
        await holder.execute("select 1 from wallets where account_id = $1 for update", account_id)
        waiting = asyncio.create_task(_place_with_key(pool, account_id, key, "before-ban"))
        await asyncio.sleep(0.3)  # past its key check, waiting for the wallet
        async with pool.acquire() as operator:
            ban = asyncio.create_task(accounts.change_standing(operator, account_id, "ban"))
            await asyncio.sleep(0.3)
            assert not ban.done() and not waiting.done()
            await holder.execute("commit")
            assert await asyncio.wait_for(waiting, 5) == "placed 201"
            assert await asyncio.wait_for(ban, 5) is True

    positions = await pool.fetch(
        "select type from events where type in ('FundsDebited', 'AccountBanned')"
        " and (data->>'account_id')::bigint = $1 order by global_position",
        account_id,
    )
    assert [row["type"] for row in positions] == ["FundsDebited", "AccountBanned"]
    assert await _place_with_key(pool, account_id, key, "after-ban") == "refused"
