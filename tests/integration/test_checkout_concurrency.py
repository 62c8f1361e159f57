"""Concurrent checkouts on real PostgreSQL over real HTTP connections.

The server's pool (tests/support.make_pool, 20 connections) bounds how many requests reach the
database at once; the requests themselves are all in flight together.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import httpx
import pytest
from support import bearer, open_funded_account, seed_catalog

from boost_ledger.ledger import wallet

ORDERS = "/api/v1/boost/orders"
LINK = "https://instagram.com/p/example"
PRICE_KOBO = 162_000  # service 1, 1000 units: 0.90 USD x 1500 x 1.2 = 1620.00 per 1000
TIMEOUT_S = 30


@pytest.fixture(scope="module", autouse=True)
async def _catalog(pool: asyncpg.Pool[Any]) -> None:
    await seed_catalog(pool)


async def wallet_facts(pool: asyncpg.Pool[Any], account_id: int) -> dict[str, Any]:
    """The wallet row next to what the wallet's events add up to."""
    async with pool.acquire() as connection:
        row = await connection.fetchrow(
            "select balance_kobo, version from wallets where account_id = $1", account_id
        )
        events = await connection.fetch(
            "select type, version, data from events where stream_id = $1 order by version",
            f"wallet-{account_id}",
        )
        placed = await connection.fetchval(
            "select count(*) from events where type = 'OrderPlaced'"
            " and (data->>'account_id')::bigint = $1",
            account_id,
        )
        orders = await connection.fetchval(
            "select count(*) from orders where account_id = $1", account_id
        )
    assert row is not None
    sign = {"WalletCredited": 1, "Refunded": 1, "FundsDebited": -1}
    return {
        "balance_kobo": row["balance_kobo"],
        "version": row["version"],
        "events_sum_kobo": sum(sign[e["type"]] * e["data"]["amount_kobo"] for e in events),
        "versions": [e["version"] for e in events],
        "debits": [e["data"] for e in events if e["type"] == "FundsDebited"],
        "placed": placed,
        "orders": orders,
    }


async def test_twenty_simultaneous_requests_with_one_key_make_one_order(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient
) -> None:
    """20 simultaneous requests with one key and one body record exactly one order and one debit;
    every other answer is a byte-identical replay or 409 IDEMPOTENCY_KEY_IN_PROGRESS."""
    for round_number in range(3):
        account_id, key = await open_funded_account(pool, 10_000_000)
        body = {
            "service_id": "1", "link": LINK, "quantity": 1000,
            "idempotency_key": f"same-key-{round_number}",
        }
        async with asyncio.timeout(TIMEOUT_S):
            answers = await asyncio.gather(
                *(client.post(ORDERS, json=body, headers=bearer(key)) for _ in range(20))
            )
        originals = [
            a for a in answers if a.status_code == 201 and "idempotent-replayed" not in a.headers
        ]
        assert len(originals) == 1, [a.status_code for a in answers]
        original = originals[0]
        for answer in answers:
            if answer is original:
                continue
            if answer.status_code == 201:
                assert answer.headers["idempotent-replayed"] == "true"
                assert answer.content == original.content
            else:
                assert answer.status_code == 409, answer.text
                assert answer.json() == {
                    "success": False, "status": 409, "code": "IDEMPOTENCY_KEY_IN_PROGRESS",
                    "message": "The same key is still processing. Retry shortly.",
                }
                assert answer.headers["retry-after"] == "1"
        facts = await wallet_facts(pool, account_id)
        order_id = int(original.json()["data"]["order_id"])
        assert facts["placed"] == facts["orders"] == 1
        assert [debit["order_id"] for debit in facts["debits"]] == [order_id]
        assert facts["balance_kobo"] == 10_000_000 - PRICE_KOBO == facts["events_sum_kobo"]
        # Once the first request is over, the key only ever replays.
        replay = await client.post(ORDERS, json=body, headers=bearer(key))
        assert (replay.status_code, replay.content) == (201, original.content)


async def test_fifty_simultaneous_orders_spend_only_what_the_wallet_holds(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient
) -> None:
    """50 simultaneous orders (distinct keys) on a wallet that can pay for exactly 7: exactly 7
    are placed, 43 get 402, the balance ends at balance - 7 x price >= 0 and never went below
    zero, and the wallet row equals the sum of the wallet's events."""
    affordable = 7
    start_kobo = affordable * PRICE_KOBO + PRICE_KOBO - 1  # one kobo short of an eighth order
    account_id, key = await open_funded_account(pool, start_kobo)
    bodies = [
        {"service_id": "1", "link": LINK, "quantity": 1000, "idempotency_key": f"many-{n}"}
        for n in range(50)
    ]
    async with asyncio.timeout(TIMEOUT_S):
        answers = await asyncio.gather(
            *(client.post(ORDERS, json=body, headers=bearer(key)) for body in bodies)
        )
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses == [201] * affordable + [402] * (50 - affordable), statuses
    for answer in answers:
        if answer.status_code == 402:
            assert answer.json()["code"] == "INSUFFICIENT_BALANCE"
    balances_after = sorted(
        int(answer.json()["data"]["balance_after"].replace(".", ""))
        for answer in answers if answer.status_code == 201
    )
    # Each success saw the balance left by the one before it: no two spent the same money.
    assert balances_after == [start_kobo - n * PRICE_KOBO for n in range(affordable, 0, -1)]
    facts = await wallet_facts(pool, account_id)
    final_kobo = start_kobo - affordable * PRICE_KOBO
    assert final_kobo == PRICE_KOBO - 1 >= 0
    assert facts["balance_kobo"] == final_kobo == facts["events_sum_kobo"]
    # One credit then one debit per placed order, versions without gaps, the row at the last.
    assert facts["versions"] == list(range(1, affordable + 2))
    assert facts["version"] == affordable + 1
    assert all(debit["balance_after_kobo"] >= 0 for debit in facts["debits"])
    assert sorted(debit["balance_after_kobo"] for debit in facts["debits"]) == balances_after
    assert facts["placed"] == facts["orders"] == affordable
    # The refused keys were not consumed: after a top-up one of them places its order.
    refused_body = bodies[[a.status_code for a in answers].index(402)]
    async with pool.acquire() as connection:
        await wallet.credit(connection, account_id, 1, "top-up-after-race")
    late = await client.post(ORDERS, json=refused_body, headers=bearer(key))
    assert late.status_code == 201 and late.json()["data"]["balance_after"] == "0.00"


async def test_simultaneous_orders_of_different_prices_never_overdraw(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient
) -> None:
    """30 simultaneous orders of mixed prices on a small wallet: whatever subset wins, the sum
    of the winners' prices is what left the wallet, the balance never goes below zero, and every
    refused order costs more than the balance left."""
    start_kobo = 1_000_000
    account_id, key = await open_funded_account(pool, start_kobo)
    # Service 3: 222.21 per 1000 (0.12345 x 1800); quantities 20 to 87020 price from 4.45 to
    # 19336.72, against a wallet of 10000.00.
    bodies = [
        {"service_id": "3", "link": LINK, "quantity": 20 + n * 3000,
         "idempotency_key": f"mixed-{n}"}
        for n in range(30)
    ]
    async with asyncio.timeout(TIMEOUT_S):
        answers = await asyncio.gather(
            *(client.post(ORDERS, json=body, headers=bearer(key)) for body in bodies)
        )
    assert {answer.status_code for answer in answers} <= {201, 402}
    won = [answer.json()["data"] for answer in answers if answer.status_code == 201]
    spent_kobo = sum(int(data["price"].replace(".", "")) for data in won)
    facts = await wallet_facts(pool, account_id)
    assert facts["balance_kobo"] == start_kobo - spent_kobo == facts["events_sum_kobo"] >= 0
    assert facts["placed"] == facts["orders"] == len(won) >= 1
    # Only debits move the balance during the race, so it only falls: each refused order cost
    # more than was left when it was decided, hence more than is left at the end.
    for body, answer in zip(bodies, answers, strict=True):
        if answer.status_code == 402:
            price_kobo = -(-22_221 * body["quantity"] // 1000)  # ceil(222.21 x quantity / 1000)
            assert price_kobo > facts["balance_kobo"]


async def test_simultaneous_orders_commit_together(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient
) -> None:
    """The server gathers checkouts that arrive while others are in flight into shared
    transactions (ledger/checkout_batch.py): 40 simultaneous orders on four wallets commit in
    fewer than 40 transactions, and each wallet still pays for exactly its own orders."""
    accounts = [await open_funded_account(pool, 10_000_000) for _ in range(4)]
    requests = [
        (accounts[n % 4], {"service_id": "1", "link": LINK, "quantity": 1000,
                           "idempotency_key": f"together-{n}"})
        for n in range(40)
    ]
    async with asyncio.timeout(TIMEOUT_S):
        answers = await asyncio.gather(
            *(client.post(ORDERS, json=body, headers=bearer(key)) for (_, key), body in requests)
        )
    assert [answer.status_code for answer in answers] == [201] * 40
    order_streams = [f"order-{answer.json()['data']['order_id']}" for answer in answers]
    transactions = await pool.fetchval(
        "select count(distinct transaction_id) from events where stream_id = any($1::text[])",
        order_streams,
    )
    assert transactions < 40
    for account_id, _ in accounts:
        facts = await wallet_facts(pool, account_id)
        assert facts["balance_kobo"] == 10_000_000 - 10 * PRICE_KOBO == facts["events_sum_kobo"]
        assert facts["versions"] == list(range(1, 12))


async def test_a_checkout_during_a_key_rotation_waits_for_it_without_a_deadlock(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient
) -> None:
    """A rotation locks the account's row, then revokes the old key. A checkout with that key
    arriving in between waits at the account's row, holding nothing the rotation needs: the
    rotation commits (no deadlock for PostgreSQL to break by failing one of them) and the
    checkout then finds the key revoked, 401, nothing charged."""
    account_id, key = await open_funded_account(pool, 10 * PRICE_KOBO)
    body = {"service_id": "1", "link": LINK, "quantity": 1000, "idempotency_key": "rotating"}
    warm = {**body, "idempotency_key": "before-rotation"}
    assert (await client.post(ORDERS, json=warm, headers=bearer(key))).status_code == 201
    async with pool.acquire() as rotation, rotation.transaction():
        await rotation.execute(
            "select 1 from accounts where account_id = $1 for update", account_id
        )
        placing = asyncio.ensure_future(client.post(ORDERS, json=body, headers=bearer(key)))
        await asyncio.sleep(0.3)
        assert not placing.done(), "the checkout waits for the rotation's lock"
        await rotation.execute("set local lock_timeout = '5s'")
        await rotation.execute(
            "update api_keys set revoked = true where account_id = $1", account_id
        )
    response = await asyncio.wait_for(placing, TIMEOUT_S)
    assert (response.status_code, response.json()["code"]) == (401, "UNAUTHENTICATED")
    balance = await pool.fetchval(
        "select balance_kobo from wallets where account_id = $1", account_id
    )
    assert balance == 9 * PRICE_KOBO


async def test_a_checkout_rolled_back_by_postgresql_is_a_503_to_retry(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A transaction PostgreSQL rolled back to break a deadlock (or a serialization conflict)
    is worth retrying with the same key: 503 SERVICE_UNAVAILABLE with Retry-After, not 500."""
    from boost_ledger.ledger import checkout

    _, key = await open_funded_account(pool, 10 * PRICE_KOBO)

    async def rolled_back(*_: Any, **__: Any) -> None:
        raise asyncpg.exceptions.DeadlockDetectedError("injected: deadlock detected")

    monkeypatch.setattr(checkout, "checkout", rolled_back)
    body = {"service_id": "1", "link": LINK, "quantity": 1000, "idempotency_key": "rolled-back"}
    response = await client.post(ORDERS, json=body, headers=bearer(key))
    assert (response.status_code, response.json()["code"]) == (503, "SERVICE_UNAVAILABLE")
    assert response.headers["retry-after"]
