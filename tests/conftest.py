"""Fixtures: one real PostgreSQL per run, a fresh migrated database per test module."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
from support import TestServer, http_server, make_pool

from boost_ledger.api.runtime import Runtime
from boost_ledger.server import build_app
from boost_ledger.settings import Settings


@pytest.fixture(scope="session")
async def test_server() -> TestServer:
    server = TestServer()
    await server.start()
    return server


@pytest.fixture(scope="module")
async def dsn(test_server: TestServer) -> str:
    return await test_server.fresh_database()


@pytest.fixture(scope="module")
async def pool(dsn: str) -> AsyncIterator[asyncpg.Pool[Any]]:
    created = await make_pool(dsn)
    yield created
    await created.close()


@pytest.fixture(scope="module")
def settings(dsn: str) -> Settings:
    return Settings(database_url=dsn, workers_enabled=False, demo_account=False)


@pytest.fixture(scope="module")
async def base_url(pool: asyncpg.Pool[Any], settings: Settings) -> AsyncIterator[str]:
    """The API served over real HTTP (workers off: tests drive them explicitly)."""
    app = build_app(Runtime(settings=settings, pool=pool), start_workers=False)
    async with http_server(app) as url:
        yield url


@pytest.fixture
async def client(base_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=base_url, timeout=30.0) as created:
        yield created
