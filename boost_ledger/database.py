"""Open the project's database for a process: resolve, migrate, pool; close it again."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from boost_ledger import migrations, postgres
from boost_ledger.settings import Settings


@asynccontextmanager
async def open_pool(
    settings: Settings, *, migrate: bool = True, application_name: str = "boost"
) -> AsyncIterator[asyncpg.Pool[Any]]:
    dsn = await postgres.prepare_dsn(settings.database_url, settings.data_dir)
    if migrate:
        await migrations.migrate(dsn)
    pool = await postgres.create_pool(
        dsn,
        min_size=settings.pool_min_size,
        max_size=settings.pool_max_size,
        statement_timeout_ms=settings.statement_timeout_ms,
        application_name=application_name,
    )
    try:
        yield pool
    finally:
        await pool.close()


@asynccontextmanager
async def open_owner_connection(settings: Settings) -> AsyncIterator[asyncpg.Connection[Any]]:
    """One connection as the schema's owner (rebuilds swap tables; audits read everything)."""
    dsn = await postgres.prepare_dsn(settings.database_url, settings.data_dir)
    await migrations.migrate(dsn)
    connection = await postgres.owner_connection(dsn)
    try:
        yield connection
    finally:
        await connection.close()
