"""Part 1: ``boost serve`` measured over real HTTP: checkout at each concurrency (every request
with a fresh idempotency key), each followed by pgbench's checkout statement at the same
concurrency once the workers are idle (a paired limit), a hot-wallet level, an open-loop level at
half the best throughput (for the p99 target), the two reads, and the server's RSS."""

from __future__ import annotations

import time
from typing import Any

from bench import pgbench_phase, submission
from bench.cluster import LEVEL_QUIESCE_S, Cluster
from bench.config import BenchConfig
from bench.loadgen import Spec
from bench.proc import run_json_module
from bench.sampler import Sampler
from bench.server import Server

GENERATOR_CPU_WARNING = 0.8


async def run_load(
    spec: Spec, servers: list[Server], cluster: Cluster, workers: bool = True
) -> dict[str, Any]:
    """One load from a separate generator process, with the servers and PostgreSQL sampled,
    once PostgreSQL has checkpointed and no autovacuum runs (``Cluster.quiesce``, bounded), so
    that a load does not pay for the writes of the one before it (a pgbench level's included).
    A checkout load is followed by the submission of its orders (see ``submission``), unless
    the servers run no ``workers``."""
    quiet = await cluster.quiesce(LEVEL_QUIESCE_S)
    following = spec.mode == "checkout" and workers
    before = await submission.counts(cluster) if following else None
    started = time.monotonic()
    provider = servers[0].provider
    async with Sampler(
        [server.psutil for server in servers],
        cluster.postmaster(),
        provider.psutil if provider else None,
    ) as sampler:
        generated = await run_json_module("bench.loadgen", spec)
    result: dict[str, Any] = {**generated, **sampler.result, "quiesced": quiet}
    if before is not None:
        result["submission"] = await submission.follow(cluster, before, started)
    served = result["per_s"] * result["wall_s"]
    result["server_cpu_ms_per_request"] = 1000 * result["server_cpu_s"] / max(served, 1)
    result["postgres_cpu_ms_per_request"] = 1000 * result["postgres_cpu_s"] / max(served, 1)
    result["provider_cpu_ms_per_request"] = 1000 * result["provider_cpu_s"] / max(served, 1)
    _print_level(result)
    return result


def _print_level(result: dict[str, Any]) -> None:
    shape = f"c={result['concurrency']:<3}"
    if result["processes"] > 1:
        shape += f" x{result['processes']} processes"
    if result["rate_per_s"]:
        shape += f" open loop at {result['rate_per_s']:.0f}/s"
    print(
        f"  {result['mode']:<9} {shape} {result['per_s']:8.1f}/s"
        f"  p50 {result['p50_ms']:6.1f}  p95 {result['p95_ms']:6.1f}"
        f"  p99 {result['p99_ms']:6.1f} ms"
        f"  server {result['server_cpu_ms_per_request']:.2f} + pg"
        f" {result['postgres_cpu_ms_per_request']:.2f}"
        f" + provider {result['provider_cpu_ms_per_request']:.2f} cpu-ms/req"
        f"  rss {result['server_rss_peak_mb']:.0f} MB"
        f"  gen-cpu {result['generator_cpu_fraction']:.0%}"
        f"  machine {result['machine_busy_fraction']:.0%}"
        f" steal {result.get('machine_steal_fraction', 0.0):.0%}  statuses {result['statuses']}",
        flush=True,
    )
    if "submission" in result:
        print(f"    {submission.describe(result['submission'])}", flush=True)
    if result["error_sample"]:
        print(f"    first error: {result['error_sample']}", flush=True)
    if result["generator_cpu_fraction"] > GENERATOR_CPU_WARNING:
        print("    warning: the load generator used most of a core", flush=True)


def spec_for(config: BenchConfig, servers: list[Server], **fields: Any) -> Spec:
    base: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": servers[0].port,
        "extra_ports": [server.port for server in servers[1:]],
        "warmup_s": config.warmup_s,
        "duration_s": config.level_s,
        "quantity": config.quantity,
    }
    return Spec(**{**base, **fields})


PAIRED_DATABASE = "bench_pgbench_paired"
SETTLE_TIMEOUT_S = 90.0


async def _paired_pgbench(
    config: BenchConfig, cluster: Cluster, clients: int, database: str, workers: bool
) -> dict[str, Any]:
    """pgbench's checkout statement at ``clients``, right after the checkout level at the same
    concurrency, once the server's workers (if it runs any) have settled every order: the two
    figures a ratio compares are then seconds apart, not minutes, on a machine whose speed
    moves."""
    settled = await submission.settled(cluster, SETTLE_TIMEOUT_S) if workers else None
    level = await pgbench_phase.run_level(
        cluster, config, "statements", clients, config.accounts, database
    )
    return {**level, "server_settled": settled}


async def checkout_sweep(
    config: BenchConfig,
    cluster: Cluster,
    servers: list[Server],
    keys: list[str],
    concurrencies: tuple[int, ...],
    paired: str | None = None,
    workers: bool = True,
) -> tuple[list[dict[str, Any]], list[list[str]]]:
    """Checkout at each concurrency; with ``paired`` (a database name, prepared here), each
    level followed by pgbench's. Without ``workers`` (servers that run none), no level waits for
    its orders to be sent."""
    levels: list[dict[str, Any]] = []
    order_ids: list[list[str]] = [[] for _ in keys]
    if paired:
        await pgbench_phase.prepare(cluster, config, paired)
    for concurrency in concurrencies:
        result = await run_load(
            spec_for(config, servers, mode="checkout", concurrency=concurrency, keys=keys),
            servers,
            cluster,
            workers,
        )
        for kept, new in zip(order_ids, result.pop("order_ids"), strict=True):
            kept.extend(new)
        if paired:
            result["paired_pgbench"] = await _paired_pgbench(
                config, cluster, concurrency, paired, workers
            )
        levels.append(result)
    return levels, order_ids


async def measure(
    config: BenchConfig, cluster: Cluster, server: Server, keys: list[str], hot_key: str
) -> dict[str, Any]:
    checkout, order_ids = await checkout_sweep(
        config, cluster, [server], keys, config.concurrencies, paired=PAIRED_DATABASE
    )
    best = max(level["per_s"] for level in checkout)
    half = await run_load(
        spec_for(
            config,
            [server],
            mode="checkout",
            concurrency=max(config.concurrencies),
            keys=keys,
            rate_per_s=best / 2,
        ),
        [server],
        cluster,
    )
    half.pop("order_ids")
    hot = await run_load(
        spec_for(
            config,
            [server],
            mode="checkout",
            concurrency=config.hot_wallet_concurrency,
            keys=[hot_key],
        ),
        [server],
        cluster,
    )
    hot.pop("order_ids")
    readable = [(key, ids) for key, ids in zip(keys, order_ids, strict=True) if ids]
    reads = []
    for mode in ("get_order", "wallet"):
        result = await run_load(
            spec_for(
                config,
                [server],
                mode=mode,
                concurrency=config.read_concurrency,
                duration_s=config.read_s,
                keys=[key for key, _ in readable],
                order_ids=[ids for _, ids in readable],
            ),
            [server],
            cluster,
        )
        result.pop("order_ids")
        reads.append(result)
    return {"checkout": checkout, "half_max": half, "hot_wallet": hot, "reads": reads}
