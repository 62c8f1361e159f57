"""Part 1: ``boost serve`` measured over real HTTP: checkout at each concurrency (every request
with a fresh idempotency key), a hot-wallet level, the two reads, and the server's RSS."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import msgspec

from bench.cluster import Cluster
from bench.config import BenchConfig
from bench.loadgen import Spec
from bench.sampler import Sampler
from bench.server import Server

REPO = Path(__file__).resolve().parent.parent
GENERATOR_CPU_WARNING = 0.8


async def run_load(spec: Spec, server: Server, cluster: Cluster) -> dict[str, Any]:
    """One load from a separate generator process, with the server and PostgreSQL sampled."""
    import asyncio

    async with Sampler(server.psutil, cluster.postmaster()) as sampler:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.loadgen", cwd=REPO,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await process.communicate(msgspec.json.encode(spec))
    if process.returncode != 0 or not out:
        raise RuntimeError(f"load generator failed ({process.returncode})")
    result: dict[str, Any] = {**msgspec.json.decode(out), **sampler.result}
    served = result["per_s"] * result["wall_s"]
    result["server_cpu_ms_per_request"] = 1000 * result["server_cpu_s"] / max(served, 1)
    result["postgres_cpu_ms_per_request"] = 1000 * result["postgres_cpu_s"] / max(served, 1)
    _print_level(result)
    return result


def _print_level(result: dict[str, Any]) -> None:
    print(
        f"  {result['mode']:<9} c={result['concurrency']:<3} {result['per_s']:8.1f}/s"
        f"  p50 {result['p50_ms']:6.1f}  p95 {result['p95_ms']:6.1f}  p99 {result['p99_ms']:6.1f} ms"
        f"  server {result['server_cpu_ms_per_request']:.2f} + pg"
        f" {result['postgres_cpu_ms_per_request']:.2f} cpu-ms/req"
        f"  rss {result['server_rss_peak_mb']:.0f} MB  gen-cpu {result['generator_cpu_fraction']:.0%}"
        f"  statuses {result['statuses']}",
        flush=True,
    )
    if result["error_sample"]:
        print(f"    first error: {result['error_sample']}", flush=True)
    if result["generator_cpu_fraction"] > GENERATOR_CPU_WARNING:
        print("    warning: the load generator used most of a core", flush=True)


def _spec(config: BenchConfig, server: Server, **fields: Any) -> Spec:
    base: dict[str, Any] = {
        "host": "127.0.0.1", "port": server.port, "warmup_s": config.warmup_s,
        "duration_s": config.level_s, "quantity": config.quantity,
    }
    return Spec(**{**base, **fields})


async def measure(
    config: BenchConfig, cluster: Cluster, server: Server, keys: list[str], hot_key: str
) -> dict[str, Any]:
    checkout: list[dict[str, Any]] = []
    order_ids: list[list[str]] = [[] for _ in keys]
    for concurrency in config.concurrencies:
        result = await run_load(
            _spec(config, server, mode="checkout", concurrency=concurrency, keys=keys),
            server, cluster,
        )
        for kept, new in zip(order_ids, result.pop("order_ids"), strict=True):
            kept.extend(new)
        checkout.append(result)
    hot = await run_load(
        _spec(config, server, mode="checkout", concurrency=config.hot_wallet_concurrency,
              keys=[hot_key]),
        server, cluster,
    )
    hot.pop("order_ids")
    readable = [(key, ids) for key, ids in zip(keys, order_ids, strict=True) if ids]
    reads = []
    for mode in ("get_order", "wallet"):
        result = await run_load(
            _spec(config, server, mode=mode, concurrency=config.read_concurrency,
                  duration_s=config.read_s, keys=[key for key, _ in readable],
                  order_ids=[ids for _, ids in readable]),
            server, cluster,
        )
        result.pop("order_ids")
        reads.append(result)
    return {"checkout": checkout, "hot_wallet": hot, "reads": reads}
