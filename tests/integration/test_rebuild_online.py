"""Rebuilding every projection online, while clients keep buying over HTTP.

Proves the promise of ``boost projections rebuild``: the server keeps serving during the rebuild
(every checkout is answered 201 or 402, every read 200; no 5xx, no dropped connection), and
afterwards the rebuilt tables equal a replay of the log, with no write lost in the swap.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
from support import bearer, open_funded_account, seed_catalog

from boost_ledger import postgres, projections
from boost_ledger.ledger import checkout
from boost_ledger.ledger.connection import Lent
from boost_ledger.projections import rebuild
from boost_ledger.projections.replay import compare_with_replay

BUYERS = 8
ROUNDS = 2  # every projection is rebuilt twice, each time swapped in under load
# Each client stays below the API's per-key rate limit (50 requests/s by default): the test is
# about the rebuild, and a 429 would be the limiter's doing, not the swap's.
REQUESTS_PER_S = 30
HISTORY_ORDERS = 600  # a log long enough for the rebuild to take a while
LOAD_TIMEOUT_S = 120


@dataclass
class Load:
    """What the clients saw: statuses, failures, and when each answer came."""

    stop: asyncio.Event = field(default_factory=asyncio.Event)
    statuses: Counter[int] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    answered_at: list[float] = field(default_factory=list)
    placed: dict[tuple[int, str], str] = field(default_factory=dict)  # key -> order id

    def record(self, response: httpx.Response, expected: tuple[int, ...]) -> None:
        self.statuses[response.status_code] += 1
        self.answered_at.append(time.monotonic())
        if response.status_code not in expected:
            self.failures.append(f"{response.status_code} {response.text}")


class Pace:
    """Spaces one client's requests at least 1 / REQUESTS_PER_S apart."""

    def __init__(self) -> None:
        self.next_at = time.monotonic()

    async def wait(self) -> None:
        now = time.monotonic()
        await asyncio.sleep(max(0.0, self.next_at - now))
        self.next_at = max(self.next_at, now) + 1 / REQUESTS_PER_S


def _body(key: str, quantity: int) -> dict[str, Any]:
    return {"service_id": "1", "link": "https://instagram.com/p/x", "quantity": quantity,
            "idempotency_key": key}


async def _history(pool: asyncpg.Pool[Any], account_id: int) -> None:
    """Orders placed straight through the ledger, so that the log has a past to replay."""
    async def place(first: int) -> None:
        async with pool.acquire() as connection:
            for index in range(first, HISTORY_ORDERS, 4):
                key = f"history-{index}"
                await checkout.checkout(
                    Lent(connection), account_id=account_id, idempotency_key=key, service_id="1",
                    body=_body(key, 10 + index % 50), subscription_default_posts=10,
                    metadata={"actor": "test"},
                )

    await asyncio.gather(*[place(first) for first in range(4)])


async def _buyer(base_url: str, account_id: int, key: str, name: str, load: Load) -> None:
    # Fresh connections: an idle keep-alive connection the server closes just as a request goes
    # out would fail for reasons that have nothing to do with the rebuild.
    limits = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=base_url, timeout=30.0, limits=limits) as http:
        number, pace = 0, Pace()
        while not load.stop.is_set():
            await pace.wait()
            idempotency_key = f"{name}-{number}"
            number += 1
            try:
                response = await http.post(
                    "/api/v1/boost/orders", json=_body(idempotency_key, 10 + number % 90),
                    headers=bearer(key),
                )
            except httpx.HTTPError as error:
                load.failures.append(f"{name}: {type(error).__name__}: {error}")
                continue
            load.record(response, (201, 402))
            if response.status_code == 201:
                load.placed[(account_id, idempotency_key)] = response.json()["data"]["order_id"]


async def _reader(base_url: str, key: str, load: Load) -> None:
    limits = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=base_url, timeout=30.0, limits=limits) as http:
        pace = Pace()
        while not load.stop.is_set():
            for path in ("/api/v1/wallet", "/api/v1/boost/orders?per_page=5"):
                await pace.wait()
                try:
                    response = await http.get(path, headers=bearer(key))
                except httpx.HTTPError as error:
                    load.failures.append(f"reader: {type(error).__name__}: {error}")
                    continue
                load.record(response, (200,))


async def test_rebuilding_every_projection_under_checkout_load(pool, dsn, base_url):
    """While buyers check out over HTTP (one of them running out of money), every projection
    is rebuilt and swapped in: no request fails, and afterwards the projections equal a replay
    of the log and every 201 has its order and idempotency record."""
    await seed_catalog(pool)
    rich = [await open_funded_account(pool, 10_000_000_00) for _ in range(BUYERS - 1)]
    poor = await open_funded_account(pool, 30_00)  # an order, then 402s
    buyers = [*rich, poor]
    _, reader_key = await open_funded_account(pool)
    await _history(pool, rich[0][0])

    load = Load()
    tasks = [
        asyncio.create_task(_buyer(base_url, account_id, key, f"buyer{index}", load))
        for index, (account_id, key) in enumerate(buyers)
    ]
    tasks.append(asyncio.create_task(_reader(base_url, reader_key, load)))
    connection = await postgres.owner_connection(dsn)
    try:
        async with asyncio.timeout(LOAD_TIMEOUT_S):
            await asyncio.sleep(0.5)  # the load is running before the rebuild starts
            started = time.monotonic()
            reports = [
                await rebuild.rebuild(connection, module)
                for _ in range(ROUNDS) for module in projections.PROJECTIONS
            ]
            ended = time.monotonic()
            await asyncio.sleep(0.5)  # and keeps running on the swapped-in tables
            load.stop.set()
            await asyncio.gather(*tasks)
        assert load.failures == [], load.failures[:10]
        during = sum(started <= moment <= ended for moment in load.answered_at)
        print(f"rebuild {ended - started:.2f} s, {during} answers during it, {load.statuses},"
              f" {[(r.name, r.events_applied, r.tail_events, r.swap_attempts) for r in reports]}")
        assert during >= 10, f"only {during} requests were answered during the rebuild"
        assert load.statuses[201] > 0 and load.statuses[402] > 0, load.statuses
        assert [report.name for report in reports] == [
            module.NAME for module in projections.PROJECTIONS
        ] * ROUNDS

        assert await compare_with_replay(connection, list(projections.PROJECTIONS)) == []
        stored = {
            (row["account_id"], row["idempotency_key"]): str(row["order_id"])
            for row in await connection.fetch(
                "select account_id, idempotency_key, order_id from idempotency_keys"
                " where idempotency_key like 'buyer%'"
            )
        }
        assert stored == load.placed, "a checkout answered 201 lost its record in the swap"
        orders = await connection.fetchval(
            "select count(*) from events where type = 'OrderPlaced'"
            " and data->>'idempotency_key' like 'buyer%'"
        )
        assert orders == len(load.placed)
    finally:
        load.stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await connection.close()
