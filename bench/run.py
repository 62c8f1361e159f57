"""``python -m bench.run`` (``make bench``): every measurement of issue 7 in one run, on one
embedded PostgreSQL started for the run in a fresh temporary directory (the lifecycle phase on a
second one of its own), then the report.

    python -m bench.run            # the full run (about 17 minutes on 2 cores)
    python -m bench.run --quick    # a short smoke run (about 3 to 4 minutes)
    python -m bench.run --phases http,pgbench   # only some parts

Phases: http (checkout, reads, RSS), profile (py-spy and round trips; needs http), processes
(several server processes; needs http), alone (the API without its workers, each level paired
with pgbench; needs http), pgbench, peers (eventsourcing, message-db), log (append, feed,
rebuild, verify), lifecycle (what an order costs until it settles, on a cluster of its own with
pg_stat_statements). The report goes to ``bench/results/<date>-<host>.md`` with a PNG chart and
the raw figures as JSON; the markdown is printed too.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import msgspec
import psutil

from bench import (
    alone_phase,
    http_phase,
    lifecycle_phase,
    log_phase,
    peers_phase,
    pgbench_phase,
    profile_phase,
    report,
    roundtrips,
    scaleout,
    warmup,
)
from bench import cluster as cluster_module
from bench.config import FULL, QUICK, BenchConfig
from bench.server import SERVER_ENV, Provider, Server, open_accounts, open_funded_account

PHASES = ("http", "profile", "processes", "alone", "pgbench", "peers", "log", "lifecycle")
NEED_HTTP = {"profile", "processes", "alone"}
RESULTS = Path(__file__).resolve().parent / "results"


def _machine() -> str:
    model = platform.processor() or platform.machine()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    memory_gib = psutil.virtual_memory().total / 2**30
    system = f"{platform.system()} {platform.release()}"
    return f"{psutil.cpu_count()} x {model}, {memory_gib:.0f} GiB, {system}"


def _commit() -> str:
    def git(*arguments: str) -> str:
        return subprocess.run(
            ["git", *arguments],
            capture_output=True,
            text=True,
            cwd=RESULTS.parent.parent,
            check=False,
        ).stdout.strip()

    return git("rev-parse", "--short", "HEAD") + (
        " (with local changes)" if git("status", "--porcelain") else ""
    )


def _meta(config: BenchConfig, arguments: argparse.Namespace) -> dict[str, Any]:
    from boost_ledger.settings import Settings

    defaults = Settings()
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d"),
        "started_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "machine": _machine(),
        "python": platform.python_version(),
        "commit": _commit(),
        "command": "python -m bench.run" + (" --quick" if arguments.quick else ""),
        "config": msgspec.to_builtins(config),
        "background_cpu_fraction": psutil.cpu_percent(interval=3.0) / 100,
        "server_pool": f"min {defaults.pool_min_size}, max {defaults.pool_max_size} (defaults)",
        "server_env": dict(SERVER_ENV),
        "provider": "`boost simulator`, a process of its own on the same machine, holding up to"
        " 1,000,000 orders (BOOST_SIMULATOR_MAX_ORDERS)",
        "notes": [],
    }


async def _server_phases(
    config: BenchConfig,
    cluster: cluster_module.Cluster,
    phases: set[str],
    results: dict[str, Any],
    artifacts: Path,
) -> None:
    with Provider(cluster) as provider:  # a fresh one per server: a simulator's orders are bounded
        keys = await _served_phases(config, cluster, provider, phases, results, artifacts)
    if "processes" in phases:
        print("several server processes", flush=True)
        results["processes"] = await scaleout.measure(config, cluster, keys)
    if "alone" in phases:  # last: it leaves its orders queued
        print("the API alone (no workers)", flush=True)
        results["alone"] = await alone_phase.measure(config, cluster, keys)


async def _served_phases(
    config: BenchConfig,
    cluster: cluster_module.Cluster,
    provider: Provider,
    phases: set[str],
    results: dict[str, Any],
    artifacts: Path,
) -> list[str]:
    """The phases on one server; returns the API keys its load paid from."""
    server = Server(cluster, provider=provider)
    try:
        server.wait_ready()
        tree = [server.psutil, *server.psutil.children(recursive=True)]  # its worker child too
        idle_rss_mb = sum(process.memory_info().rss for process in tree) / 2**20
        print(f"server up on port {server.port}; opening {config.accounts} accounts", flush=True)
        accounts = await open_accounts(cluster, config.accounts, "bench")
        _, hot_key = await open_funded_account(cluster, "bench-hot")
        keys = [key for _, key in accounts]
        results["warmup"] = await warmup.warm(config, cluster, server, keys)
        results["http"] = await http_phase.measure(config, cluster, server, keys, hot_key)
        results["http"]["idle_rss_mb"] = idle_rss_mb
        if "profile" in phases:
            print("profile", flush=True)
            stacks = artifacts.with_name(artifacts.name + "-profile-stacks.txt.gz")
            results["profile"] = await profile_phase.profile(config, cluster, server, keys, stacks)
            results["round_trips"] = await roundtrips.count(cluster, server, keys[0], 3.0)
    finally:
        server.stop()
    return keys


async def run(
    config: BenchConfig, phases: set[str], meta: dict[str, Any], keep: bool, artifacts: Path
) -> dict[str, Any]:
    """Every chosen phase on one new embedded server; ``artifacts`` is the report's path stem."""
    results: dict[str, Any] = {"meta": meta}
    cluster = cluster_module.start(keep)
    print(f"embedded PostgreSQL in {cluster.root}", flush=True)
    try:
        meta["pg_settings"] = await cluster.settings()
        timings = meta["phase_seconds"] = {}
        if "http" in phases:
            print("checkout and reads over HTTP", flush=True)
            started = time.perf_counter()
            await _server_phases(config, cluster, phases, results, artifacts)
            timings["server"] = round(time.perf_counter() - started)
        for name, measure in (
            ("pgbench", pgbench_phase.measure),
            ("peers", peers_phase.measure),
            ("log", log_phase.measure),
        ):
            if name in phases:
                cluster.psql("postgres", "checkpoint")
                print(name, flush=True)
                started = time.perf_counter()
                results[name] = await measure(cluster, config)
                timings[name] = round(time.perf_counter() - started)
        if "lifecycle" in phases and lifecycle_phase.is_available():
            print("an order's whole life", flush=True)
            started = time.perf_counter()
            results["lifecycle"] = await lifecycle_phase.measure(config)
            timings["lifecycle"] = round(time.perf_counter() - started)
    finally:
        if not keep:
            cluster_module.remove(cluster)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run",
        description="Benchmark boost-ledger against pgbench and peer event stores (issue 7).",
    )
    parser.add_argument("--quick", action="store_true", help="short levels, small log")
    parser.add_argument(
        "--phases", default=",".join(PHASES), help=f"comma list of {', '.join(PHASES)}"
    )
    parser.add_argument("--keep", action="store_true", help="keep the run's temporary directory")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the report goes")
    arguments = parser.parse_args(argv)
    phases = {name.strip() for name in arguments.phases.split(",") if name.strip()}
    unknown = phases - set(PHASES)
    if unknown:
        parser.error(f"unknown phases: {', '.join(sorted(unknown))}")
    if "http" not in phases and (needing := phases & NEED_HTTP):
        named = ", ".join(sorted(needing))
        parser.error(f"these phases need the http phase (its accounts): {named}")
    config = QUICK if arguments.quick else FULL
    meta = _meta(config, arguments)
    stem = f"{meta['date']}-{meta['host']}" + ("-quick" if arguments.quick else "")
    arguments.out.mkdir(parents=True, exist_ok=True)
    results = asyncio.run(run(config, phases, meta, arguments.keep, arguments.out / stem))
    (arguments.out / f"{stem}.json").write_bytes(msgspec.json.format(msgspec.json.encode(results)))
    markdown, chart = report.write(results, arguments.out, stem)
    print("\n" + markdown.read_text())
    print(f"report: {markdown}" + (f", chart: {chart}" if chart else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
