"""Fixtures: one real PostgreSQL per run, a fresh migrated database per test module."""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator
from types import FrameType
from typing import Any

import asyncpg
import httpx
import hypothesis_profiles  # noqa: F401 - registers the ci and deep profiles
import pytest
from support import TestServer, http_server, make_pool

from boost_ledger.api.runtime import Runtime
from boost_ledger.server import build_app
from boost_ledger.settings import Settings
from boost_ledger.upstream.client import ProviderClient
from boost_ledger.upstream.simulator import create_simulator_app


def _stop_as_on_ctrl_c(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_configure(config: pytest.Config) -> None:
    """A run sent SIGTERM (a timeout, a cancelled job) stops as on Ctrl-C, so that the exit hook
    of the embedded PostgreSQL runs: Python's default ends the process without it, and the run's
    cluster was left running (and its data directory on disk)."""
    signal.signal(signal.SIGTERM, _stop_as_on_ctrl_c)


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
    # No rate limit: most tests fire bursts with one key; tests/hardening covers the limiter.
    return Settings(
        database_url=dsn, workers_enabled=False, demo_account=False, rate_limit_per_s=0
    )


@pytest.fixture(scope="module")
async def simulator_url() -> AsyncIterator[str]:
    """A provider simulator over real HTTP, progression off: tests decide every status."""
    async with http_server(create_simulator_app(autoprogress=False)) as url:
        yield url


@pytest.fixture(scope="module")
async def provider(simulator_url: str) -> AsyncIterator[ProviderClient]:
    client = ProviderClient(f"{simulator_url}/api/v2", "sim-key", timeout_s=2.0, backoff_s=0.01)
    yield client
    await client.aclose()


@pytest.fixture(scope="module")
async def impatient(simulator_url: str) -> AsyncIterator[ProviderClient]:
    """No read retries and half a second of patience: a fault surfaces at once and a hanging
    provider costs little."""
    client = ProviderClient(
        f"{simulator_url}/api/v2", "sim-key", timeout_s=0.5, read_retries=0, backoff_s=0.01
    )
    yield client
    await client.aclose()


@pytest.fixture(scope="module")
def runtime(pool: asyncpg.Pool[Any], settings: Settings, provider: ProviderClient) -> Runtime:
    return Runtime(settings=settings, pool=pool, provider=provider)


@pytest.fixture(scope="module")
async def base_url(runtime: Runtime) -> AsyncIterator[str]:
    """The API served over real HTTP (workers off: tests drive them explicitly)."""
    app = build_app(runtime, start_workers=False)
    async with http_server(app) as url:
        yield url


@pytest.fixture
async def simulator(simulator_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the simulator's control API, reset after each test."""
    async with httpx.AsyncClient(base_url=f"{simulator_url}/control", timeout=10.0) as control:
        yield control
        await control.post("/faults", json={"action": "*", "mode": "none"})


@pytest.fixture
async def client(base_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=base_url, timeout=30.0) as created:
        yield created
