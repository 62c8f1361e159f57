"""The API alone: ``boost serve`` with BOOST_WORKERS=0 (no submitter, poller or catalog sync in
any process), at the checkout levels of the http phase, each followed by pgbench's checkout
statement (paired, as there). Not a way to run the server, since nothing sends the orders it
takes: a measure of what its workers cost the checkout figures on these two cores, which they
share with the API, PostgreSQL and the provider. It runs after every other server phase; the
orders it leaves queued are sent by no one and counted by nothing later."""

from __future__ import annotations

from typing import Any

from bench.cluster import Cluster
from bench.config import BenchConfig
from bench.http_phase import checkout_sweep
from bench.server import Provider, Server

DATABASE = "bench_pgbench_paired_alone"  # fresh tables, as the http phase's paired levels had
HOW = (
    "`boost serve` with BOOST_WORKERS=0: the API process alone, no `boost worker` child;"
    " the orders stay queued"
)


async def measure(config: BenchConfig, cluster: Cluster, keys: list[str]) -> dict[str, Any]:
    with (
        Provider(cluster) as provider,
        Server(cluster, "server-alone", provider=provider, env={"BOOST_WORKERS": "0"}) as server,
    ):
        checkout, _ = await checkout_sweep(
            config, cluster, [server], keys, config.concurrencies, paired=DATABASE, workers=False
        )
    return {"how": HOW, "checkout": checkout}
