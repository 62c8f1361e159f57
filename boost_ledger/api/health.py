"""``GET /healthz`` (the process answers) and ``GET /readyz`` (it can serve: the database is
reachable and every migration of this build is applied). Neither needs a key; both are cheap
enough for a load balancer to call every second."""

from __future__ import annotations

from typing import Any

import asyncpg
import structlog
from starlette.requests import Request
from starlette.responses import Response

from boost_ledger import migrations
from boost_ledger.api.errors import service_unavailable
from boost_ledger.api.http import raw_json_response
from boost_ledger.api.runtime import runtime_of

log = structlog.get_logger("boost.health")

READY_TIMEOUT_S = 2.0
_ALIVE = b'{"success":true,"data":{"status":"ok"}}'
_READY = b'{"success":true,"data":{"status":"ready"}}'


async def healthz(request: Request) -> Response:
    return raw_json_response(_ALIVE, 200)


async def readyz(request: Request) -> Response:
    pool = runtime_of(request).pool
    try:
        async with pool.acquire(timeout=READY_TIMEOUT_S) as connection:
            pending = await _pending_migrations(connection)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
        log.warning("readyz.database_unreachable", error=type(error).__name__)
        raise service_unavailable("The database cannot be reached.") from None
    if pending:
        raise service_unavailable(f"{pending} database migrations are not applied yet.")
    return raw_json_response(_READY, 200)


async def _pending_migrations(connection: Any) -> int:
    # Pooled connections run as the restricted application role, which may not read
    # ``schema_migrations``; for this one read-only transaction, act as the login user again.
    async with connection.transaction(readonly=True):
        await connection.execute(
            f"set local statement_timeout = {int(READY_TIMEOUT_S * 1000)}; set local role none"
        )
        return await migrations.pending_count(connection)
