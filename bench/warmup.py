"""A database in use before the first measured load: orders placed and settled, then ANALYZE.

A new database's tables are empty, and PostgreSQL plans a session's statements for the tables
as they are: a prepared statement (asyncpg prepares every one, and PL/pgSQL caches those of its
functions and triggers) switches to a generic plan after five executions and keeps it until a
table it reads is analyzed or vacuumed. Planned while ``orders`` held a few rows, the workers'
batch statements kept sequential scans of it, each reading every order placed since: on a new
database, a 7-second load at one client scanned ``orders`` 567-1,417 times (2.8-3.9 million
rows) and cost PostgreSQL 1.22-1.26 ms of CPU per checkout, against 3 scans and 1.01-1.04 ms
once the tables had been analyzed. Autovacuum's first ANALYZE comes within a minute or so, so
whether a run's first levels paid for it was chance. A production database is analyzed; so,
here, is the bench's, once the warm-up's orders have settled.
"""

from __future__ import annotations

from typing import Any

from bench import submission
from bench.cluster import LEVEL_QUIESCE_S, Cluster
from bench.config import BenchConfig
from bench.http_phase import spec_for
from bench.proc import run_json_module
from bench.server import Server

CONCURRENCY = 8
SETTLE_TIMEOUT_S = 120.0


async def warm(
    config: BenchConfig, cluster: Cluster, server: Server, keys: list[str]
) -> dict[str, Any]:
    """Place orders for ``config.warm_s``, wait (bounded) until every order has settled, then
    ANALYZE the server's database and quiesce: what the warm-up did, for the report."""
    seconds = config.warm_s
    spec = spec_for(
        config, [server], mode="checkout", concurrency=CONCURRENCY, keys=keys,
        warmup_s=0.0, duration_s=seconds,
    )
    generated = await run_json_module("bench.loadgen", spec)
    settled = await submission.settled(cluster, SETTLE_TIMEOUT_S)
    cluster.psql("boost", "analyze")
    await cluster.quiesce(LEVEL_QUIESCE_S)
    orders = int(generated["ok"])
    print(f"  warm-up: {orders} orders placed, settled {settled}; database analyzed", flush=True)
    return {"seconds": seconds, "orders": orders, "settled": settled}
