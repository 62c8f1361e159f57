"""Several server processes against the one PostgreSQL. When ``boost serve`` has a
``--workers N`` option it is used; otherwise two ``boost serve`` processes run side by side on
two ports (the second with ``BOOST_WORKERS=0``: one set of submitter/poller/catalog workers, as the
design allows) and the load generator spreads its connections over both ports."""

from __future__ import annotations

from typing import Any

from bench.cluster import Cluster
from bench.config import BenchConfig
from bench.http_phase import checkout_sweep
from bench.server import Server, serve_supports

PROCESSES = 2


async def measure(config: BenchConfig, cluster: Cluster, keys: list[str]) -> dict[str, Any]:
    if serve_supports("--workers"):
        servers = [Server(cluster, "server-workers", arguments=("--workers", str(PROCESSES)))]
        how = f"`boost serve --workers {PROCESSES}`"
    else:
        servers = [
            Server(cluster, "server-a"),
            *[
                Server(cluster, f"server-{i}", env={"BOOST_WORKERS": "0", "BOOST_DEMO": "0"})
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
        levels = tuple(c for c in config.concurrencies if c >= 8) or config.concurrencies
        checkout, _ = await checkout_sweep(config, cluster, servers, keys, levels)
    finally:
        for server in servers:
            server.stop()
    for level in checkout:
        level["processes"] = PROCESSES
    return {"how": how, "checkout": checkout}
