"""Open the project's database for a process: resolve, migrate, pool; close it again."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from boost_ledger import migrations, postgres
from boost_ledger.settings import Settings

# Failures of the database, or of reaching it, that say "not now" rather than "never": the API
# answers them 503 with Retry-After (api/app.py), an operator's command in one line (cli/common).
REFUSED_ERRORS: tuple[type[Exception], ...] = (
    asyncpg.LockNotAvailableError,  # lock_timeout
    asyncpg.exceptions.QueryCanceledError,  # statement_timeout
    # Class 40, a transaction rolled back to break a deadlock or a serialization conflict: a
    # retry is the remedy PostgreSQL itself prescribes.
    asyncpg.exceptions.TransactionRollbackError,
    asyncpg.exceptions.InsufficientResourcesError,  # too many connections, disk full
)
"""A statement the database refused: its transaction was rolled back, nothing of it recorded."""
LOST_ERRORS: tuple[type[Exception], ...] = (
    asyncpg.PostgresConnectionError,  # class 08: the connection failed or was closed
    asyncpg.exceptions.OperatorInterventionError,  # shutting down, starting up
    asyncpg.InterfaceError,  # the pool or connection is closing
    # asyncpg's own state error when a connection dies mid-operation and is then reset.
    asyncpg.exceptions._base.InternalClientError,
    OSError,  # the server's socket is gone or refuses
    TimeoutError,  # no pooled connection in time
)
"""The database out of reach, or the connection lost: a commit in flight may have landed."""
UNAVAILABLE_ERRORS = REFUSED_ERRORS + LOST_ERRORS


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
