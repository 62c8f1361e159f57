"""The migration runner: numbered SQL files of ``sql/``, applied in order, each exactly once.

One runner at a time holds an advisory lock; each file runs in its own transaction together with
its row in ``schema_migrations``, so a failing file leaves nothing behind. A file waits for a
table's lock a bounded time (``FILE_LOCK_TIMEOUT_MS``), then steps aside and tries again, so
that a table held by a long transaction is not closed to the traffic meanwhile. Every run then
realigns the feed's clock (``feed_epoch_realign()``, see ``sql/0009_feed_epoch.sql``), which is
a no-op unless the database was restored from another cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

_LOCK_KEY = 0x626F6F7374  # "boost": one migration runner per database at a time.
LOCK_WAIT_S = 300.0
"""How long a runner waits for another to finish, at most: a slow migration of a large table
fits, a session left holding the lock (a runner stopped in a debugger, say) is named."""
FILE_LOCK_TIMEOUT_MS = 2000
"""How long a file's statement waits for a lock on a table (its ``lock_timeout``). A statement
waiting for an ALTER's lock makes every query of that table queue behind it: without a bound, a
server started while an audit's verify holds its tables (for its whole pass) stops checkout for
as long. A file that cannot have its locks in time is rolled back and tried again."""
FILE_LOCK_TRIES = 30
"""How often a file is tried before the runner gives up (about a minute and a half in all)."""
FILE_RETRY_PAUSE_S = 1.0
"""The pause between two tries, in which the queries the file held up run."""
_FILE_PATTERN = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
EARLIER_CHECKSUMS: dict[int, frozenset[str]] = {
    # 0002 before it left a role made by someone else to them: it failed where the user may not
    # take that role, and did what the file does now wherever it succeeded.
    2: frozenset({"7d4055de076fbf640f8b90a316c4787b212f48d13781bcc24059a40b19e2aa34"}),
}
"""Earlier texts of applied files, accepted as applied: only for an edit that changes nothing
where the earlier text ran to its end (a file that failed was recorded nowhere)."""


class MigrationError(RuntimeError):
    """The database's migrations disagree with this build's (e.g. a file edited after use)."""


class DatabaseUnreachable(MigrationError):
    """The runner, every process's first contact with the database, could not connect: the
    server is down or not where the URL says, or it refuses the login or the database name."""


@dataclass(frozen=True)
class Migration:
    number: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def sql_directory() -> Path:
    """The ``sql/`` folder: packaged beside the code, or at the repository root."""
    packaged = Path(__file__).parent / "sql"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "sql"


def load_migrations(directory: Path | None = None) -> list[Migration]:
    folder = directory or sql_directory()
    found: list[Migration] = []
    for path in sorted(folder.glob("*.sql")):
        match = _FILE_PATTERN.match(path.name)
        if match is None:
            raise ValueError(f"migration file name not understood: {path.name}")
        found.append(Migration(int(match[1]), match[2], path.read_text()))
    numbers = [migration.number for migration in found]
    assert numbers == sorted(set(numbers)), "migration numbers must be unique"
    return found


async def migrate(dsn: str, directory: Path | None = None) -> list[str]:
    """Apply every pending migration; return the names of those applied by this call."""
    try:
        connection = await asyncpg.connect(dsn, timeout=10)
    except (OSError, ValueError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
        # The operator's most common mistake (a wrong DATABASE_URL, a database not started):
        # one line saying so, printed by ``boost``, rather than the driver's stack trace.
        reason = str(error) or type(error).__name__
        raise DatabaseUnreachable(f"cannot connect to the database: {reason}") from error
    try:
        await _lock(connection, LOCK_WAIT_S)
        try:
            applied = await _apply_pending(connection, load_migrations(directory))
            await realign_feed_epoch(connection)
            return applied
        finally:
            # Closing the session releases the lock as well: an unlock that fails (the
            # connection lost) must not hide why the run stopped.
            if not connection.is_closed():
                with contextlib.suppress(*_DATABASE_FAILURES):
                    await connection.execute("select pg_advisory_unlock($1)", _LOCK_KEY)
    except MigrationError:
        raise
    except _DATABASE_FAILURES as error:
        # Refused outside a migration file (no right to create schema_migrations in the schema,
        # to call feed_epoch_realign()), or the connection lost: one line, not a stack trace.
        raise MigrationError(f"cannot migrate the database: {_reason(error)}") from error
    finally:
        await connection.close()


_DATABASE_FAILURES = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError)


def _reason(error: BaseException) -> str:
    return str(error) or type(error).__name__


async def _lock(connection: asyncpg.Connection[Any], wait_s: float) -> None:
    """Take the runners' lock, waiting at most ``wait_s`` for the runner that holds it."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    pause_s = 0.05
    while not await connection.fetchval("select pg_try_advisory_lock($1)", _LOCK_KEY):
        if loop.time() >= deadline:
            # Advisory locks belong to a database: the runners of another database on the
            # same server hold a lock of the same key that is not the one waited for.
            holder = await connection.fetchval(
                "select pid from pg_locks where locktype = 'advisory' and granted"
                " and database = (select oid from pg_database where datname = current_database())"
                " and objsubid = 1 and ((classid::bigint << 32) | objid::bigint) = $1 limit 1",
                _LOCK_KEY,
            )
            raise MigrationError(
                f"another migration runner (PostgreSQL backend {holder}) has held the"
                f" migration lock for over {wait_s:g} s"
            )
        await asyncio.sleep(pause_s)
        pause_s = min(pause_s * 2, 1.0)


async def _apply_pending(
    connection: asyncpg.Connection[Any], migrations: list[Migration]
) -> list[str]:
    await connection.execute(
        """
        create table if not exists schema_migrations (
            number     integer     primary key,
            name       text        not null,
            checksum   text        not null,
            applied_at timestamptz not null default now()
        )
        """
    )
    rows = await connection.fetch("select number, checksum from schema_migrations")
    applied = {row["number"]: row["checksum"] for row in rows}
    done: list[str] = []
    for migration in migrations:
        name = f"{migration.number:04d}_{migration.name}"
        if migration.number in applied:
            recorded = applied[migration.number]
            earlier = EARLIER_CHECKSUMS.get(migration.number, frozenset())
            if recorded != migration.checksum and recorded not in earlier:
                raise MigrationError(f"migration {name} changed after it was applied")
            continue
        await _apply_with_retries(connection, migration, name)
        done.append(name)
    return done


async def _apply_with_retries(
    connection: asyncpg.Connection[Any], migration: Migration, name: str
) -> None:
    """``_apply``, tried again while a table it must lock is in use (``FILE_LOCK_TIMEOUT_MS``),
    ``FILE_LOCK_TRIES`` times at most; then a one-line refusal saying so."""
    for tried in range(1, FILE_LOCK_TRIES + 1):
        try:
            await _apply(connection, migration, name)
            return
        except asyncpg.LockNotAvailableError as error:
            if tried == FILE_LOCK_TRIES:
                raise MigrationError(
                    f"migration {name} could not lock the tables it changes in {tried} tries"
                    f" ({_reason(error)}): a long transaction holds them (an audit's verify,"
                    " say); run it again once that has ended"
                ) from error
            await asyncio.sleep(FILE_RETRY_PAUSE_S)


async def _apply(connection: asyncpg.Connection[Any], migration: Migration, name: str) -> None:
    """One file and its row in ``schema_migrations``, in one transaction."""
    transaction = connection.transaction()
    await transaction.start()
    try:
        await connection.execute(f"set local lock_timeout = {FILE_LOCK_TIMEOUT_MS:d}")
        await connection.execute(migration.sql)
        await connection.execute(
            "insert into schema_migrations (number, name, checksum) values ($1, $2, $3)",
            migration.number,
            migration.name,
            migration.checksum,
        )
    except BaseException as error:
        # A lost connection has rolled the file back already; a rollback attempted there
        # would only raise "connection is closed" in place of the reason.
        if not connection.is_closed():
            with contextlib.suppress(*_DATABASE_FAILURES):
                await transaction.rollback()
        if isinstance(error, asyncpg.LockNotAvailableError):
            raise
        if isinstance(error, _DATABASE_FAILURES):
            # A migration that refuses (sql/0021 while two orders share a provider id) says
            # why, and how to proceed, in its message and hint: those, not a stack trace.
            raise MigrationError(f"migration {name} failed: {_reason(error)}") from error
        raise
    await transaction.commit()


async def realign_feed_epoch(connection: asyncpg.Connection[Any]) -> int | None:
    """Move the feed clock past a log restored from another cluster; the offset in force.

    ``None`` when the migration that defines the clock is not part of this schema.
    """
    defined = await connection.fetchval(
        "select to_regprocedure('feed_epoch_realign()') is not null"
    )
    if not defined:
        return None
    offset: int = await connection.fetchval("select feed_epoch_realign()")
    return offset


async def pending_count(connection: asyncpg.Connection[Any]) -> int:
    """How many migrations of this build are not applied (for readiness checks)."""
    exists = await connection.fetchval("select to_regclass('schema_migrations') is not null")
    applied: set[int] = set()
    if exists:
        applied = {row[0] for row in await connection.fetch("select number from schema_migrations")}
    return sum(1 for migration in load_migrations() if migration.number not in applied)
