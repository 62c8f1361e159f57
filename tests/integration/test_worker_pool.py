"""The workers' own pool: a serving process's submitter keeps sending while the API holds
every connection of its pool (and ``boost worker``, which serves nothing, has one pool)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import httpx
import pytest
from support import bearer, open_funded_account, seed_catalog

from boost_ledger.server import running_runtime, start_worker_tasks
from boost_ledger.settings import Settings

SUBMITTED_WITHIN_S = 10.0


@pytest.fixture(scope="module", autouse=True)
async def catalog(pool: asyncpg.Pool[Any]) -> None:
    await seed_catalog(pool)


def _settings(dsn: str, simulator_url: str) -> Settings:
    return Settings(
        database_url=dsn,
        provider_url=f"{simulator_url}/api/v2",
        demo_account=False,
        pool_min_size=1,
        pool_max_size=1,
        worker_pool_max_size=1,
        submit_sweep_interval_s=0.1,
        poll_interval_s=60,
    )


async def _until_submitted(pool: asyncpg.Pool[Any], order_id: str) -> None:
    async with asyncio.timeout(SUBMITTED_WITHIN_S):
        for _ in range(int(SUBMITTED_WITHIN_S / 0.05)):
            query = "select submission from orders where order_id = $1"
            if await pool.fetchval(query, int(order_id)) == "submitted":
                return
            await asyncio.sleep(0.05)
    raise AssertionError(f"order {order_id} was not submitted")


async def test_the_submitter_sends_while_the_api_holds_its_whole_pool(
    dsn: str, simulator_url: str, pool: asyncpg.Pool[Any], client: httpx.AsyncClient
) -> None:
    _, key = await open_funded_account(pool, 1_000_00)
    async with running_runtime(_settings(dsn, simulator_url)) as (runtime, _):
        assert runtime.worker_pool is not None
        assert runtime.workers_pool is runtime.worker_pool
        async with runtime.pool.acquire():  # the API's only connection, held throughout
            body = {"service_id": "1", "link": "https://instagram.com/p/held",
                    "quantity": 100, "idempotency_key": uuid.uuid4().hex}
            # Placed through the test's own API (another pool); this runtime's submitter sends it.
            placed = await client.post("/api/v1/boost/orders", json=body, headers=bearer(key))
            assert placed.status_code == 201, placed.text
            order_id = placed.json()["data"]["order_id"]
            tasks = start_worker_tasks(runtime)
            try:
                await _until_submitted(pool, order_id)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
        application_names = await pool.fetch(
            "select application_name from pg_stat_activity where datname = current_database()"
        )
        assert "boost-workers" in {row["application_name"] for row in application_names}


async def test_a_process_that_serves_nothing_gives_its_workers_the_one_pool(
    dsn: str, simulator_url: str
) -> None:
    async with running_runtime(_settings(dsn, simulator_url), serving=False) as (runtime, _):
        assert runtime.worker_pool is None
        assert runtime.workers_pool is runtime.pool


async def test_workers_turned_off_open_no_pool_for_them(dsn: str, simulator_url: str) -> None:
    base = _settings(dsn, simulator_url)
    fields = {name: getattr(base, name) for name in Settings.__struct_fields__}
    settings = Settings(**{**fields, "workers_enabled": False})
    async with running_runtime(settings) as (runtime, _):
        assert runtime.worker_pool is None
