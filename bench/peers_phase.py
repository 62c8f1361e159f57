"""Part 3b: peer event stores appending a checkout's two events, on the same server.

message-db is not vendored: its SQL is fetched from the npm registry at bench time
(``npm pack @eventide/message-db``) into the run's temporary directory and installed from there
with its own ``install.sh`` into a database of its own. The one change made to that copy: its
``CREATE EXTENSION pgcrypto`` step is emptied, because the embedded PostgreSQL wheel ships no
pgcrypto and the only function it was needed for, ``gen_random_uuid()``, is built into
PostgreSQL since version 13.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import shutil
import subprocess
import tarfile
from typing import Any

from bench.append_spec import AppendSpec
from bench.cluster import Cluster
from bench.config import BenchConfig
from bench.proc import run_json_module
from bench.sampler import Sampler

MESSAGE_DB_PACKAGE = "@eventide/message-db"
MESSAGE_DB_DATABASE = "message_store"
EVENTSOURCING_DATABASE = "bench_eventsourcing"
NPM_TIMEOUT_S = 180


def install_message_db(cluster: Cluster) -> str:
    """Fetch, unpack and install message-db; return its version (raises when unavailable)."""
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is not installed")
    target = cluster.root / "message-db"
    target.mkdir()
    packed = subprocess.run(
        [npm, "pack", MESSAGE_DB_PACKAGE, "--json"],
        cwd=target,
        capture_output=True,
        text=True,
        timeout=NPM_TIMEOUT_S,
        check=True,
    )
    info = json.loads(packed.stdout)[0]
    with tarfile.open(target / info["filename"]) as archive:
        archive.extractall(target, filter="data")
    database = target / "package" / "database"
    (database / "extensions" / "pgcrypto.sql").write_text("-- emptied by the bench (see above)\n")
    env = {**cluster.libpq_env("postgres"), "DATABASE_NAME": MESSAGE_DB_DATABASE}
    subprocess.run(
        ["bash", str(database / "install.sh")],
        env=env,
        cwd=database,
        capture_output=True,
        text=True,
        timeout=NPM_TIMEOUT_S,
        check=True,
    )
    return str(info["version"])


async def _level(cluster: Cluster, spec: AppendSpec) -> dict[str, Any]:
    async with Sampler(None, cluster.postmaster()) as sampler:
        result = await run_json_module("bench.appenders", spec)
    result.update(sampler.result)
    print(
        f"  {spec.kind:<13} c={spec.concurrency:<3} {result['appends_per_s']:8.1f} appends/s"
        f" ({result['events_per_s']:.0f} events/s)  p50 {result['p50_ms']:6.1f}"
        f"  p99 {result['p99_ms']:6.1f} ms  client-cpu {result['client_cpu_fraction']:.0%}",
        flush=True,
    )
    return result


async def measure(cluster: Cluster, config: BenchConfig) -> dict[str, Any]:
    results: dict[str, Any] = {}
    if importlib.util.find_spec("eventsourcing") is None:
        results["eventsourcing_skipped"] = "not installed (pip install -e '.[bench]')"
        print(f"  eventsourcing skipped: {results['eventsourcing_skipped']}", flush=True)
    else:
        await cluster.create_database(EVENTSOURCING_DATABASE)
        results["eventsourcing_version"] = importlib.metadata.version("eventsourcing")
        results["eventsourcing"] = [
            await _level(cluster, AppendSpec(
                kind="eventsourcing", dsn="", socket_dir=cluster.socket_dir,
                database=EVENTSOURCING_DATABASE, concurrency=concurrency,
                warmup_s=config.warmup_s, duration_s=config.level_s,
            ))
            for concurrency in config.concurrencies
        ]
    try:
        results["message_db_version"] = install_message_db(cluster)
    except (OSError, RuntimeError, subprocess.SubprocessError, ValueError, KeyError) as error:
        detail = getattr(error, "stderr", "") or ""
        results["message_db_skipped"] = f"{error} {detail}"[-500:]
        print(f"  message-db skipped: {results['message_db_skipped']}", flush=True)
        return results
    results["messagedb"] = [
        await _level(
            cluster,
            AppendSpec(
                kind="messagedb",
                dsn=cluster.uri(MESSAGE_DB_DATABASE),
                concurrency=concurrency,
                warmup_s=config.warmup_s,
                duration_s=config.level_s,
            ),
        )
        for concurrency in config.concurrencies
    ]
    return results
