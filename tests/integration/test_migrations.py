"""Migrations applied to databases in the states a deployment may have left them in."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from boost_ledger import migrations, postgres
from boost_ledger.ledger import store
from boost_ledger.ledger.events import CancelRequested
from boost_ledger.ledger.store import NewEvent

_ATTEMPTING = """
select c.relname::text as name, pg_get_indexdef(i.indexrelid) as definition
  from pg_index i join pg_class c on c.oid = i.indexrelid
 where i.indrelid = 'public.orders'::regclass
   and pg_get_expr(i.indpred, i.indrelid) like '%attempting%'
"""


async def _migrated_before(test_server, tmp_path: Path, first_left_out: str) -> str:
    """A new database migrated up to, not including, the migration numbered ``first_left_out``."""
    earlier = tmp_path / "sql"
    earlier.mkdir()
    for migration in sorted(migrations.sql_directory().glob("*.sql")):
        if migration.name < first_left_out:
            shutil.copy(migration, earlier / migration.name)
    dsn: str = await test_server.fresh_database(migrated=False)
    await migrations.migrate(dsn, earlier)
    return dsn


async def test_the_attempting_index_moves_to_order_id_whatever_a_rebuild_named_it(
    test_server, tmp_path: Path
) -> None:
    """Migration 0013 replaces the sweeper's index on updated_at by one on order_id, found by its
    predicate: a projection rebuild before it (which let ``like`` name the copies' indexes) left
    it under another name. Afterwards only the new index is there, under the migration's name,
    and ``orders`` has its fillfactor."""
    dsn = await _migrated_before(test_server, tmp_path, "0013")
    connection = await asyncpg.connect(dsn)
    try:
        # What a rebuild of orders did to the index's name before 0013.
        await connection.execute(
            "alter index orders_attempting_idx rename to orders_updated_at_idx"
        )
        assert [row["name"] for row in await connection.fetch(_ATTEMPTING)] == [
            "orders_updated_at_idx"
        ]

        assert "0013_orders_hot_updates" in await migrations.migrate(dsn)

        rows = await connection.fetch(_ATTEMPTING)
        assert [row["name"] for row in rows] == ["orders_attempting_idx"]
        assert "btree (order_id) WHERE" in rows[0]["definition"]
        options = await connection.fetchval(
            "select reloptions from pg_class where oid = 'public.orders'::regclass"
        )
        assert options == ["fillfactor=70"]
    finally:
        await connection.close()


BOOST = str(Path(sys.executable).parent / "boost")


async def test_boost_migrate_refuses_0021_in_one_message_while_two_orders_share_an_id(
    test_server, tmp_path: Path
) -> None:
    """Migration 0021 refuses its unique index while two orders hold one provider order id,
    and says how to find them (its hint). ``boost migrate`` prints that reason, named by the
    migration, on stderr and exits 1, instead of a stack trace; 0021 stays unapplied."""
    dsn = await _migrated_before(test_server, tmp_path, "0021")
    connection = await asyncpg.connect(dsn)
    try:
        # What an earlier version could record: two orders under one provider order id.
        await connection.execute(
            "insert into orders (order_id, account_id, idempotency_key, fingerprint, service_id,"
            " provider_service_id, service_name, category, type, billable_quantity, fields,"
            " rate_per_1000_kobo, price_kobo, cancel_supported, status, submission,"
            " provider_order_id, version, created_at, updated_at)"
            " select id, 1001, 'key-' || id, '\\x00'::bytea, '1', '1', 'Likes', 'Instagram',"
            " 'Default', 100, '{}'::jsonb, 1620, 162, true, 'pending', 'submitted', '23517', 3,"
            " now(), now() from unnest(array[100000001, 100000002]::bigint[]) as id"
        )
        environment = {
            name: value for name, value in os.environ.items()
            if not name.startswith("BOOST_") and name != "DATABASE_URL"
        }
        process = await asyncio.create_subprocess_exec(
            BOOST, "migrate", env={**environment, "DATABASE_URL": dsn},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), timeout=60)
        stderr = err.decode()
        assert process.returncode == 1, stderr
        assert stderr.startswith(
            "boost: migration 0021_orders_provider_order_id_unique failed: provider order id"
            " 23517 is recorded for more than one order"
        ), stderr
        assert "HINT:  find them with:" in stderr and "Traceback" not in stderr, stderr
        assert out == b""
        applied = await connection.fetchval("select max(number) from schema_migrations")
        assert applied == 20
    finally:
        await connection.close()


async def _refused_while_locked(dsn: str) -> str:
    """What a runner kept waiting for the lock says (it must refuse, not migrate)."""
    try:
        await migrations.migrate(dsn)
    except migrations.MigrationError as error:
        return str(error)
    raise AssertionError("migrated while another runner held the lock")


async def test_a_runner_waits_for_the_lock_a_bounded_time_and_names_its_holder(
    test_server, monkeypatch
) -> None:
    """A session holding the runners' lock (another runner, stopped) makes the next runner
    wait at most LOCK_WAIT_S, then refuse in one line naming the holder's backend (it waited
    forever: every process's start hung, silently); once the lock is free, it migrates."""
    dsn: str = await test_server.fresh_database(migrated=False)
    holder = await asyncpg.connect(dsn)
    try:
        await holder.execute("select pg_advisory_lock($1)", migrations._LOCK_KEY)
        monkeypatch.setattr(migrations, "LOCK_WAIT_S", 0.3)
        refused = await _refused_while_locked(dsn)
        assert f"PostgreSQL backend {holder.get_server_pid()}" in refused, refused
        tables = "select count(*) from pg_tables where tablename = 'events'"
        assert await holder.fetchval(tables) == 0
        monkeypatch.setattr(migrations, "LOCK_WAIT_S", 60.0)
        waiting = asyncio.create_task(migrations.migrate(dsn))
        await asyncio.sleep(0.1)
        await holder.execute("select pg_advisory_unlock($1)", migrations._LOCK_KEY)
        assert "0001_event_log" in await waiting
    finally:
        await holder.close()


async def test_the_lock_holder_named_is_the_one_of_this_database(test_server, monkeypatch) -> None:
    """Advisory locks belong to a database: while the runners of other databases on the same
    server hold their own lock, a runner kept waiting names the backend holding its database's
    lock (it named any backend holding the key, so an operator following the runbook ended
    another database's runner with pg_terminate_backend)."""
    others = [await test_server.fresh_database(migrated=False) for _ in range(8)]
    dsn: str = await test_server.fresh_database(migrated=False)
    holders = [await asyncpg.connect(other) for other in others]
    holder = await asyncpg.connect(dsn)
    try:
        for connection in [*holders, holder]:
            await connection.execute("select pg_advisory_lock($1)", migrations._LOCK_KEY)
        monkeypatch.setattr(migrations, "LOCK_WAIT_S", 0.2)
        refused = await _refused_while_locked(dsn)
        assert f"PostgreSQL backend {holder.get_server_pid()})" in refused, refused
    finally:
        for connection in [*holders, holder]:
            await connection.close()


def _as_user(dsn: str, user: str, password: str) -> str:
    parts = urlsplit(dsn)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:{password}@{host}"))


async def test_a_user_who_may_not_create_tables_is_told_so_in_one_line(test_server) -> None:
    """A DATABASE_URL whose user may not create tables in the schema (PostgreSQL 15's default
    for a user who does not own the database): ``boost migrate`` says so in one line on stderr
    and exits 1. The runner's own table, created outside any migration file, escaped as the
    driver's stack trace."""
    dsn: str = await test_server.fresh_database(migrated=False)
    user = f"boost_plain_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(dsn)
    try:
        await admin.execute(f"create role {user} login password 'plain'")
        environment = {
            name: value for name, value in os.environ.items()
            if not name.startswith("BOOST_") and name != "DATABASE_URL"
        }
        process = await asyncio.create_subprocess_exec(
            BOOST, "migrate", env={**environment, "DATABASE_URL": _as_user(dsn, user, "plain")},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), timeout=60)
        stderr = err.decode()
        assert process.returncode == 1, stderr
        assert stderr == (
            "boost: cannot migrate the database: permission denied for schema public\n"
        ), stderr
        assert out == b""
    finally:
        await admin.execute(f"drop role if exists {user}")
        await admin.close()


async def test_a_runner_whose_session_is_ended_says_why(test_server, tmp_path: Path) -> None:
    """A runner's session ended while a file runs (pg_terminate_backend, as the runbook says to
    end a runner that holds the lock; a server restarting) is a MigrationError naming the file
    and the server's reason; the file is not recorded. It was the driver's "connection is
    closed", raised by the rollback and the unlock tried on the dead connection."""
    sql = tmp_path / "sql"
    sql.mkdir()
    for migration in sorted(migrations.sql_directory().glob("*.sql")):
        shutil.copy(migration, sql / migration.name)
    (sql / "0999_slow.sql").write_text("select pg_sleep(60);\n")
    dsn: str = await test_server.fresh_database()
    running = asyncio.create_task(migrations.migrate(dsn, sql))
    observer = await asyncpg.connect(dsn)
    try:
        runner = None
        for _ in range(200):
            runner = await observer.fetchval(
                "select pid from pg_stat_activity where query like 'select pg_sleep(60)%'"
                " and datname = current_database()"
            )
            if runner is not None:
                break
            await asyncio.sleep(0.05)
        assert runner is not None
        await observer.execute("select pg_terminate_backend($1)", runner)
        try:
            await asyncio.wait_for(running, timeout=30)
        except migrations.MigrationError as error:
            refused = str(error)
        else:
            raise AssertionError("the runner went on without its session")
        assert refused.startswith("migration 0999_slow failed: "), refused
        assert "terminating connection due to administrator command" in refused, refused
        assert await observer.fetchval("select max(number) from schema_migrations") == 21
    finally:
        await observer.close()


async def test_a_user_who_may_not_take_an_existing_application_role_still_migrates(
    test_server,
) -> None:
    """The server already has ``boost_app`` (made by the migrations of another database, or by
    an administrator as the restore steps say) and the database's owner may not grant it to
    itself (no CREATEROLE, or CREATEROLE on PostgreSQL 16+ for a role it did not make). The
    README promises the trigger alone then guards the log; sql/0002 failed instead, so every
    start of every process refused. It now migrates, runs as its own user, and the trigger
    refuses an UPDATE of the log."""
    admin_dsn: str = await test_server.fresh_database(migrated=False)
    database = urlsplit(admin_dsn).path.lstrip("/")
    user = f"boost_owner_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(admin_dsn)
    try:
        assert await admin.fetchval("select count(*) from pg_roles where rolname = 'boost_app'")
        await admin.execute(f"create role {user} login password 'owner'")
        await admin.execute(f'alter database "{database}" owner to {user}')
        dsn = _as_user(admin_dsn, user, "owner")
        assert "0021_orders_provider_order_id_unique" in await migrations.migrate(dsn)
        assert await migrations.migrate(dsn) == []
        pool = await postgres.create_pool(dsn, min_size=1, max_size=1, statement_timeout_ms=5000)
        try:
            async with pool.acquire() as connection:
                assert await connection.fetchval("select current_user") == user
                async with connection.transaction():
                    await store.append(connection, [NewEvent(
                        stream_id="order-1", version=1, event=CancelRequested(order_id=1))])
                with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
                    await connection.execute("update events set type = 'x'")
        finally:
            await pool.close()
    finally:
        await admin.execute(f"reassign owned by {user} to current_user")
        await admin.execute(f"drop owned by {user}")
        await admin.execute(f"drop role {user}")
        await admin.close()


async def test_a_database_that_applied_the_earlier_0002_is_not_refused(test_server) -> None:
    """sql/0002 was edited (a role this user may not take is left alone): a database that
    recorded the earlier text's checksum migrates as before; any other checksum is refused."""
    dsn: str = await test_server.fresh_database()
    connection = await asyncpg.connect(dsn)
    try:
        (earlier,) = migrations.EARLIER_CHECKSUMS[2]
        await connection.execute(
            "update schema_migrations set checksum = $1 where number = 2", earlier
        )
        assert await migrations.migrate(dsn) == []
        await connection.execute("update schema_migrations set checksum = 'x' where number = 2")
        with pytest.raises(migrations.MigrationError, match="0002_application_role changed"):
            await migrations.migrate(dsn)
    finally:
        await connection.close()


def _with_file(tmp_path: Path, name: str, sql: str) -> Path:
    """This build's migrations and one more file after them."""
    folder = tmp_path / "sql"
    folder.mkdir()
    for migration in sorted(migrations.sql_directory().glob("*.sql")):
        shutil.copy(migration, folder / migration.name)
    (folder / name).write_text(sql)
    return folder


async def _waiting_for_a_lock(observer: asyncpg.Connection[Any], query: str) -> int:
    for _ in range(400):
        pid = await observer.fetchval(
            "select pid from pg_stat_activity where wait_event_type = 'Lock'"
            " and query like $1 and datname = current_database()",
            query,
        )
        if pid is not None:
            return int(pid)
        await asyncio.sleep(0.025)
    raise AssertionError(f"nothing waited for a lock running {query}")


async def test_a_file_waiting_for_a_table_in_use_lets_its_queries_through_meanwhile(
    test_server, tmp_path: Path, monkeypatch
) -> None:
    """A file altering a table a long transaction holds (an audit's verify holds its tables for
    its whole pass) waits a bounded time, steps aside and tries again: the table's other
    queries run meanwhile, where every one queued behind the waiting ALTER until the long
    transaction ended. Once it has, the file is applied."""
    monkeypatch.setattr(migrations, "FILE_LOCK_TIMEOUT_MS", 200)
    monkeypatch.setattr(migrations, "FILE_RETRY_PAUSE_S", 0.05)
    sql = _with_file(tmp_path, "0999_orders_note.sql", "alter table orders add column note text;\n")
    dsn: str = await test_server.fresh_database()
    holder, observer, reader = [await asyncpg.connect(dsn) for _ in range(3)]
    try:
        async with holder.transaction():
            await holder.execute("lock table orders in access share mode")  # as verify does
            running = asyncio.create_task(migrations.migrate(dsn, sql))
            await _waiting_for_a_lock(observer, "alter table orders add column note%")
            # A query arriving now used to queue behind the ALTER until the holder let go.
            counted = await asyncio.wait_for(reader.fetchval("select count(*) from orders"), 30)
            assert counted == 0
            assert not running.done()
        assert await asyncio.wait_for(running, 30) == ["0999_orders_note"]
        assert await reader.fetchval("select note from orders limit 1") is None
    finally:
        for connection in (holder, observer, reader):
            await connection.close()


async def test_a_file_that_never_gets_its_locks_is_refused_in_one_line(
    test_server, tmp_path: Path, monkeypatch
) -> None:
    """Past FILE_LOCK_TRIES tries, the runner gives up with one line saying the file could not
    lock its tables and why; the file is not recorded and its change not made."""
    monkeypatch.setattr(migrations, "FILE_LOCK_TIMEOUT_MS", 50)
    monkeypatch.setattr(migrations, "FILE_RETRY_PAUSE_S", 0.01)
    monkeypatch.setattr(migrations, "FILE_LOCK_TRIES", 3)
    sql = _with_file(tmp_path, "0999_orders_note.sql", "alter table orders add column note text;\n")
    dsn: str = await test_server.fresh_database()
    holder = await asyncpg.connect(dsn)
    try:
        async with holder.transaction():
            await holder.execute("lock table orders in access share mode")
            with pytest.raises(migrations.MigrationError) as refused:
                await asyncio.wait_for(migrations.migrate(dsn, sql), 30)
        message = str(refused.value)
        assert message.startswith(
            "migration 0999_orders_note could not lock the tables it changes in 3 tries ("
        ), message
        assert "lock timeout" in message and "\n" not in message, message
        assert await holder.fetchval("select max(number) from schema_migrations") == 21
        note = "select count(*) from pg_attribute where attrelid = 'orders'::regclass"
        assert await holder.fetchval(f"{note} and attname = 'note'") == 0
    finally:
        await holder.close()
