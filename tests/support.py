"""Helpers shared by the tests: a real PostgreSQL per test module, and the app over real HTTP."""

from __future__ import annotations

import asyncio
import atexit
import itertools
import json
import os
import shutil
import socket
import tempfile
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp

from boost_ledger import migrations, postgres
from boost_ledger.ledger import accounts, wallet
from boost_ledger.ledger.keys import ABILITIES

TEMPLATE = "boost_template"
_numbers = itertools.count(1)


class TestServer:
    """One PostgreSQL for the whole run: embedded (fast, unsafe settings) or DATABASE_URL."""

    def __init__(self) -> None:
        self.admin_uri = ""

    async def start(self) -> None:
        if os.environ.get("DATABASE_URL"):
            self.admin_uri = os.environ["DATABASE_URL"]
        else:
            data_dir = Path(tempfile.mkdtemp(prefix="boost-test-"))
            # Registered before the server's own exit hook, so it runs after the server stops: a
            # run leaves no cluster behind (each one grows to hundreds of MB).
            atexit.register(shutil.rmtree, data_dir, ignore_errors=True)
            self.admin_uri = postgres.embedded_server_uri(data_dir)
            await self._tune_for_tests()
        await self._drop_if_exists(TEMPLATE)
        await self._admin(f'create database "{TEMPLATE}"')
        await migrations.migrate(postgres.with_database(self.admin_uri, TEMPLATE))

    async def _tune_for_tests(self) -> None:
        # Durability is irrelevant to a throwaway test cluster; speed is not.
        connection = await asyncpg.connect(self.admin_uri)
        try:
            for setting in ("fsync = off", "synchronous_commit = off", "full_page_writes = off"):
                await connection.execute(f"alter system set {setting}")
            await connection.execute("select pg_reload_conf()")
        finally:
            await connection.close()

    async def _admin(self, sql: str) -> None:
        connection = await asyncpg.connect(self.admin_uri)
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    async def _drop_if_exists(self, name: str) -> None:
        await self._admin(f'drop database if exists "{name}" with (force)')

    async def fresh_database(self, migrated: bool = True) -> str:
        """A new database cloned from the migrated template (or, not ``migrated``, with no
        migration applied); returns its DSN."""
        name = f"boost_test_{os.getpid()}_{next(_numbers)}"
        await self._drop_if_exists(name)
        template = f' template "{TEMPLATE}"' if migrated else ""
        await self._admin(f'create database "{name}"{template}')
        return postgres.with_database(self.admin_uri, name)


async def make_pool(dsn: str, max_size: int = 20) -> asyncpg.Pool[Any]:
    return await postgres.create_pool(
        dsn, min_size=1, max_size=max_size, statement_timeout_ms=10_000
    )


async def wait_for(predicate: Callable[[], bool], timeout_s: float) -> bool:
    """Whether ``predicate()`` holds within ``timeout_s``, checked every 50 ms."""
    for _ in range(int(timeout_s / 0.05)):
        if predicate():
            return True
        await asyncio.sleep(0.05)
    return bool(predicate())


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@asynccontextmanager
async def http_server(app: ASGIApp) -> AsyncIterator[str]:
    """Serve ``app`` over real HTTP on a free local port, in this event loop."""
    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_config=None,
        access_log=False,
        loop="none",
        lifespan="on",
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=10)


@asynccontextmanager
async def production_server(app: ASGIApp, settings: Any) -> AsyncIterator[tuple[str, int]]:
    """``app`` served by uvicorn with the server's own protocol and configuration
    (``server._uvicorn_config``), on a free local port, in this event loop."""
    from boost_ledger.server import _uvicorn_config

    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    server = uvicorn.Server(_uvicorn_config(app, settings, lifespan="on"))
    serving = asyncio.create_task(server.serve(sockets=[listening]))
    try:
        while not server.started:
            if serving.done():
                serving.result()
            await asyncio.sleep(0.01)
        yield listening.getsockname()
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, 15)
        listening.close()


def rewriting_panel(simulator_url: str, rewrite: Callable[[Any], None]) -> Starlette:
    """A panel that is the simulator, but whose JSON replies pass through ``rewrite`` (which
    changes them in place) on their way back: a provider quirk, staged over real HTTP."""

    async def api(request: Request) -> Response:
        async with httpx.AsyncClient(timeout=5.0) as upstream:
            answer = await upstream.post(
                f"{simulator_url}/api/v2", content=await request.body(),
                headers={"content-type": "application/x-www-form-urlencoded"},
            )
        reply = answer.json()
        rewrite(reply)
        return Response(json.dumps(reply), media_type="application/json")

    return Starlette(routes=[Route("/api/v2", api, methods=["POST"])])


async def open_funded_account(
    pool: asyncpg.Pool[Any],
    balance_kobo: int = 0,
    abilities: list[str] | None = None,
    name: str = "test",
) -> tuple[int, str]:
    """A new account (all abilities unless told) with ``balance_kobo``; returns (id, key)."""
    async with pool.acquire() as connection:
        account_id, key = await accounts.open_account(
            connection, name, abilities if abilities is not None else list(ABILITIES)
        )
        if balance_kobo:
            await wallet.credit(connection, account_id, balance_kobo, f"seed-{account_id}")
    return account_id, key.secret


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", "Accept": "application/json"}


async def http_client(base_url: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=base_url, timeout=30.0)


def simulator_offers() -> list[Any]:
    """The simulator's catalog as provider offers (what a sync would read over HTTP)."""
    from decimal import Decimal

    from boost_ledger.ledger.catalog import ProviderOffer
    from boost_ledger.upstream.sim_catalog import CATALOG

    return [
        ProviderOffer(
            service=entry.service_id,
            name=entry.name,
            type=entry.type,
            category=entry.category,
            rate=Decimal(entry.rate),
            min=entry.min,
            max=entry.max,
            refill=entry.refill,
            cancel=entry.cancel,
            dripfeed=bool(entry.dripfeed),
        )
        for entry in CATALOG
    ]


async def seed_catalog(pool: asyncpg.Pool[Any], fx_rate: str = "1500", markup: str = "20") -> None:
    from decimal import Decimal

    from boost_ledger.ledger import catalog

    async with pool.acquire() as connection:
        await catalog.sync(connection, simulator_offers(), Decimal(fx_rate), Decimal(markup))


async def order_events(pool: asyncpg.Pool[Any], order_id: str) -> Counter[str]:
    """An order's events by type, with its refunds (which live on the wallet stream)."""
    rows = await pool.fetch(
        "select type from events where stream_id = $1"
        " union all select type from events where type = 'Refunded'"
        " and (data->>'order_id')::bigint = $2",
        f"order-{order_id}",
        int(order_id),
    )
    return Counter(row["type"] for row in rows)
