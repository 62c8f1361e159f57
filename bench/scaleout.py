"""Several server processes against the one PostgreSQL. When ``boost serve`` has a
``--processes N`` option it is used (N API processes on one port, the workers apart, niced);
otherwise two ``boost serve`` processes run side by side on
two ports (the second with ``BOOST_WORKERS=0``: one set of submitter/poller/catalog workers, as the
design allows) and the load generator spreads its connections over both ports."""

from __future__ import annotations

from typing import Any

from bench.cluster import Cluster
from bench.config import BenchConfig
from bench.http_phase import checkout_sweep
from bench.server import Provider, Server, serve_supports

PROCESSES = 2


async def measure(config: BenchConfig, cluster: Cluster, keys: list[str]) -> dict[str, Any]:
    with Provider(cluster) as provider:  # its own, as the one-process server had
        return await _measure(config, cluster, provider, keys)


async def _measure(
    config: BenchConfig, cluster: Cluster, provider: Provider, keys: list[str]
) -> dict[str, Any]:
    if serve_supports("--processes"):
        arguments = ("--processes", str(PROCESSES))
        servers = [Server(cluster, "server-processes", provider=provider, arguments=arguments)]
        how = (
            f"`boost serve --processes {PROCESSES}`: {PROCESSES} API processes on one port"
            " (SO_REUSEPORT) serving requests only; the submitter, poller and catalog sync in"
            f" {PROCESSES} `boost worker` children at a lower CPU priority (BOOST_WORKER_NICE,"
            " default 10)"
        )
    else:
        servers = [
            Server(cluster, "server-a", provider=provider),
            *[
                Server(
                    cluster,
                    f"server-{i}",
                    provider=provider,
                    env={"BOOST_WORKERS": "0", "BOOST_DEMO": "0"},
                )
                for i in range(1, PROCESSES)
            ],
        ]
        how = (
            f"{PROCESSES} `boost serve` processes on {PROCESSES} ports (one with workers),"
            " connections spread over them by the load generator"
        )
    try:
        for server in servers:
            server.wait_ready()
        checkout, _ = await checkout_sweep(config, cluster, servers, keys, config.concurrencies)
    finally:
        for server in servers:
            server.stop()
    for level in checkout:
        level["processes"] = PROCESSES
    return {"how": how, "checkout": checkout}
