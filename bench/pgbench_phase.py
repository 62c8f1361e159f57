"""Part 3a: the physical limit. pgbench runs the checkout's SQL (``sql/pgbench_checkout.sql``:
one call of ``checkout_place``, as the server sends it) and, as a floor, the same reads and
writes as a minimal function (``sql/pgbench_one_trip.sql``) on the same server, in a database
migrated by ``boost migrate`` so that tables, indexes and event-log triggers are the server's
own."""

from __future__ import annotations

import asyncio
import resource
import time
from pathlib import Path
from typing import Any

from bench.cluster import LEVEL_QUIESCE_S, Cluster
from bench.config import BenchConfig
from bench.sampler import Sampler
from bench.server import BOOST
from bench.stats import summarize_ms

SQL = Path(__file__).resolve().parent / "sql"
DATABASE = "bench_pgbench"
SCRIPTS = {"statements": "pgbench_checkout.sql", "one_trip": "pgbench_one_trip.sql"}


async def prepare(cluster: Cluster, config: BenchConfig, database: str = DATABASE) -> None:
    uri = await cluster.create_database(database)
    env = {**cluster.env(), "DATABASE_URL": uri}
    process = await asyncio.create_subprocess_exec(BOOST, "migrate", env=env)
    assert await process.wait() == 0, "boost migrate failed on the pgbench database"
    setup = (SQL / "pgbench_setup.sql").read_text().replace(":accounts", str(config.accounts))
    cluster.psql(database, setup)
    cluster.psql(database, (SQL / "pgbench_checkout_function.sql").read_text())


def _window_latencies(log_dir: Path, prefix: str, start: float, end: float) -> list[float]:
    latencies = []
    for path in log_dir.glob(f"{prefix}.*"):
        for line in path.read_text().splitlines():
            fields = line.split()
            done = int(fields[4]) + int(fields[5]) / 1e6
            if start <= done < end:
                latencies.append(int(fields[2]) / 1e6)
    return latencies


async def run_level(
    cluster: Cluster,
    config: BenchConfig,
    script: str,
    clients: int,
    accounts: int,
    database: str = DATABASE,
) -> dict[str, Any]:
    log_dir = cluster.root / "pgbench-logs"
    log_dir.mkdir(exist_ok=True)
    prefix = f"{database}-{script}-{clients}-{accounts}"
    arguments = [
        str(cluster.bin_dir / "pgbench"),
        "-n",
        "-M",
        "prepared",
        "-c",
        str(clients),
        "-j",
        str(min(2, clients)),
        "-T",
        str(round(config.warmup_s + config.level_s)),
        "-f",
        str(SQL / SCRIPTS[script]),
        "-D",
        f"accounts={accounts}",
        "-l",
        f"--log-prefix={log_dir / prefix}",
        database,
    ]
    # As before every checkout load (http_phase.run_load): no level pays for the one before.
    quiet = await cluster.quiesce(LEVEL_QUIESCE_S)
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.time()
    async with Sampler(None, cluster.postmaster()) as sampler:
        process = await asyncio.create_subprocess_exec(
            *arguments,
            env=cluster.libpq_env(database),
            cwd=log_dir,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output = (await process.communicate())[0].decode()
    children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = started + config.warmup_s
    latencies = _window_latencies(log_dir, prefix, start, start + config.level_s)
    pgbench_cpu_s = (children_after.ru_utime + children_after.ru_stime) - (
        children_before.ru_utime + children_before.ru_stime
    )
    result = {
        "script": script,
        "concurrency": clients,
        "accounts": accounts,
        "per_s": len(latencies) / config.level_s,
        **summarize_ms(latencies),
        "failed": process.returncode != 0 or "aborted" in output,
        "pgbench_cpu_fraction": pgbench_cpu_s / sampler.result["wall_s"],
        **sampler.result,
        "quiesced": quiet,
    }
    if result["failed"]:
        result["output_tail"] = output[-800:]
    print(
        f"  pgbench {script:<10} c={clients:<3} accounts={accounts:<3} {result['per_s']:8.1f}/s"
        f"  p50 {result['p50_ms']:6.1f}  p99 {result['p99_ms']:6.1f} ms"
        f"  pgbench-cpu {result['pgbench_cpu_fraction']:.0%}"
        f"  steal {result.get('machine_steal_fraction', 0.0):.0%}"
        + ("  FAILED: " + output[-300:] if result["failed"] else ""),
        flush=True,
    )
    return result


async def measure(cluster: Cluster, config: BenchConfig) -> dict[str, Any]:
    await prepare(cluster, config)
    levels: dict[str, list[dict[str, Any]]] = {name: [] for name in SCRIPTS}
    for script in SCRIPTS:
        for clients in config.concurrencies:
            levels[script].append(
                await run_level(cluster, config, script, clients, config.accounts)
            )
    hot = await run_level(cluster, config, "statements", config.hot_wallet_concurrency, 1)
    cluster.psql(DATABASE, "checkpoint")
    return {**levels, "hot_wallet": hot}
