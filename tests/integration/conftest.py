"""The fixtures of the tampering tests: a ledger with every kind of money movement in it, and an
owner's connection to it (what a superuser who tampers with the log would hold)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest
import support
from support import make_pool, open_funded_account, seed_catalog

from boost_ledger import postgres
from boost_ledger.ledger import checkout, fulfilment
from boost_ledger.ledger.connection import Lent
from boost_ledger.upstream.client import ProviderClient
from boost_ledger.workers import poller, submitter


@dataclass(frozen=True)
class Ledger:
    dsn: str
    spender: int  # an account with a completed, a partial, a canceled and a locally canceled order
    partial: int  # an account whose wallet stream ends with a partial refund
    submitted_order: int  # an order stream of four events: placed, attempted, submitted, observed


async def _place(pool: asyncpg.Pool[Any], account_id: int, key: str, quantity: int) -> int:
    body = {"service_id": "1", "link": "https://instagram.com/p/x", "quantity": quantity,
            "idempotency_key": key}
    async with pool.acquire() as connection:
        answer = await checkout.checkout(
            Lent(connection), account_id=account_id, idempotency_key=key, service_id="1", body=body,
            subscription_default_posts=10, metadata={"actor": "test"},
        )
    assert answer.status_code == 201
    return answer.order_id


async def _provider_says(
    pool: asyncpg.Pool[Any], simulator: httpx.AsyncClient, order_id: int, **status: Any
) -> None:
    provider_order_id = await pool.fetchval(
        "select provider_order_id from orders where order_id = $1", order_id
    )
    assert provider_order_id is not None
    assert (await simulator.post(f"/orders/{provider_order_id}", json=status)).status_code == 200


@pytest.fixture
async def ledger(
    test_server: support.TestServer, provider: ProviderClient, simulator: httpx.AsyncClient
) -> AsyncIterator[Ledger]:
    """A fresh database with every kind of money movement in it."""
    dsn = await test_server.fresh_database()
    pool = await make_pool(dsn, max_size=4)
    try:
        await seed_catalog(pool)
        spender, _ = await open_funded_account(pool, 50_000_00)
        partial, _ = await open_funded_account(pool, 20_000_00)
        completed, half, canceled = [
            await _place(pool, spender, f"k{quantity}", quantity) for quantity in (100, 200, 300)
        ]
        partly = await _place(pool, partial, "p", 400)
        assert len(await submitter.drain(pool, provider)) == 4
        await _provider_says(pool, simulator, completed, status="Completed", remains=0)
        await _provider_says(pool, simulator, half, status="Partial", remains=100)
        await _provider_says(pool, simulator, canceled, status="Canceled")
        await _provider_says(pool, simulator, partly, status="Partial", remains=150)
        assert await poller.poll_once(pool, provider, 0.01) == 4
        never_sent = await _place(pool, spender, "k-local", 50)
        async with pool.acquire() as connection, connection.transaction():
            order = await fulfilment.lock_order(connection, never_sent)
            await fulfilment.cancel_locally(connection, order, "test")
        refunds = await pool.fetchval("select count(*) from events where type = 'Refunded'")
        assert refunds == 4  # the partial one, the canceled one, the local one, the other partial
    finally:
        await pool.close()
    yield Ledger(dsn, spender, partial, completed)


@pytest.fixture
async def owner(ledger: Ledger) -> AsyncIterator[asyncpg.Connection[Any]]:
    connection = await postgres.owner_connection(ledger.dsn)
    yield connection
    await connection.close()
