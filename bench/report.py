"""The run's report: markdown tables (ours, the pgbench limit, the peers, the ratios, the targets)
and a PNG chart of throughput and p99 latency against concurrency."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from bench.cluster import LEVEL_QUIESCE_S
from bench.report_lifecycle import lifecycle_section
from bench.report_log import log_table
from bench.report_profile import profile_section
from bench.report_sections import (
    alone_note,
    cpu_table,
    machine_section,
    reads_table,
    steal_note,
    submission_table,
    tail_note,
    targets_table,
)


def _f(value: float | None, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.{digits}f}"


def _ratio(ours: float | None, other: float | None) -> str:
    if not ours or not other:
        return "-"
    return f"{ours / other:.2f}"


def by_concurrency(levels: list[dict[str, Any]] | None) -> dict[int, dict[str, Any]]:
    return {level["concurrency"]: level for level in levels or []}


def _rate(level: dict[str, Any] | None, key: str = "per_s") -> float | None:
    return None if level is None else float(level[key])


def checkout_table(results: dict[str, Any]) -> str:
    http = results.get("http", {})
    ours = by_concurrency(http.get("checkout"))
    multi = by_concurrency(results.get("processes", {}).get("checkout"))
    processes = (results.get("processes", {}).get("checkout") or [{}])[0].get("processes", 2)
    pgbench = results.get("pgbench", {})
    statements = by_concurrency(pgbench.get("statements"))
    one_trip = by_concurrency(pgbench.get("one_trip"))
    lines = [
        "| clients | checkout over HTTP, orders/s | p50 / p95 / p99 ms |"
        f" {processes} server processes, orders/s |"
        " pgbench, our checkout SQL, tx/s (p99 ms) | ours ÷ pgbench |"
        " pgbench, minimal function, tx/s (p99 ms) | ours ÷ minimal |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for concurrency in sorted(set(ours) | set(statements)):
        level, limit, trip = (
            ours.get(concurrency),
            statements.get(concurrency),
            one_trip.get(concurrency),
        )
        latency = (
            f"{_f(level['p50_ms'], 1)} / {_f(level['p95_ms'], 1)} / {_f(level['p99_ms'], 1)}"
            if level
            else "-"
        )
        lines.append(
            f"| {concurrency} | {_f(_rate(level), 1)} | {latency}"
            f" | {_f(_rate(multi.get(concurrency)), 1)}"
            f" | {_f(_rate(limit), 1)} ({_f(limit['p99_ms'], 1) if limit else '-'})"
            f" | {_ratio(_rate(level), _rate(limit))}"
            f" | {_f(_rate(trip), 1)} ({_f(trip['p99_ms'], 1) if trip else '-'})"
            f" | {_ratio(_rate(level), _rate(trip))} |"
        )
    hot, hot_limit = http.get("hot_wallet"), pgbench.get("hot_wallet")
    if hot or hot_limit:
        lines.append(
            f"| {(hot or hot_limit)['concurrency']}, one wallet | {_f(_rate(hot), 1)}"
            f" | {_f(hot['p50_ms'], 1) if hot else '-'} / {_f(hot['p95_ms'], 1) if hot else '-'}"
            f" / {_f(hot['p99_ms'], 1) if hot else '-'} | - | {_f(_rate(hot_limit), 1)}"
            f" ({_f(hot_limit['p99_ms'], 1) if hot_limit else '-'})"
            f" | {_ratio(_rate(hot), _rate(hot_limit))} | - | - |"
        )
    return "\n".join(lines)


def peers_table(results: dict[str, Any]) -> str:
    ours = by_concurrency(results.get("http", {}).get("checkout"))
    append = by_concurrency(results.get("log", {}).get("sweep"))
    peers = results.get("peers", {})
    es = by_concurrency(peers.get("eventsourcing"))
    mdb = by_concurrency(peers.get("messagedb"))
    lines = [
        "| clients | checkout over HTTP, orders/s | our `store.append`, tx/s (p99 ms) |"
        " eventsourcing, tx/s (p99 ms) | message-db, tx/s (p99 ms) | HTTP checkout ÷ best peer |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for concurrency in sorted(set(ours) | set(append) | set(es) | set(mdb)):
        cells = []
        for table in (append, es, mdb):
            level = table.get(concurrency)
            cells.append(
                f"{_f(_rate(level, 'appends_per_s'), 1)}"
                f" ({_f(level['p99_ms'], 1) if level else '-'})"
            )
        best = max((_rate(t.get(concurrency), "appends_per_s") or 0.0) for t in (es, mdb))
        lines.append(
            f"| {concurrency} | {_f(_rate(ours.get(concurrency)), 1)} | {' | '.join(cells)}"
            f" | {_ratio(_rate(ours.get(concurrency)), best)} |"
        )
    return "\n".join(lines)


def _warmup_note(results: dict[str, Any]) -> str:
    warmup = results.get("warmup")
    if not warmup:
        return ""
    return (
        f" Before the first level, {warmup['orders']:,} orders placed in {warmup['seconds']:.0f} s"
        " and settled, then ANALYZE (`bench/warmup.py`): a database in use, so that no level runs"
        " with the sequential-scan plans PostgreSQL keeps for statements first planned on empty"
        " tables."
    )


def render(results: dict[str, Any], chart_name: str | None) -> str:
    meta = results["meta"]
    parts = [
        f"# Benchmark {meta['date']} on {meta['host']}",
        "",
        f"`{meta['command']}` — {meta['machine']}. One embedded PostgreSQL"
        f" {meta['pg_settings'].get('server_version', '')} for the whole run, at `initdb`"
        " defaults (settings below). Every figure comes from this one run on this machine;"
        " ratios compare figures taken minutes apart on the same server. Every load and every"
        " pgbench level starts after a checkpoint, once no autovacuum runs (waiting at most"
        f" {LEVEL_QUIESCE_S:.0f} s), so that none pays for the writes of the one before it."
        f"{_warmup_note(results)}",
        "",
        "## Targets (issue 7)",
        "",
        targets_table(results),
        "",
        steal_note(results),
        "",
        tail_note(results),
        "",
        alone_note(results),
        "",
        "## Checkout against the pgbench limit",
        "",
        "Each client sends one request at a time on a keep-alive connection; every checkout has a"
        " fresh idempotency key; client *i* pays from account *i* mod"
        f" {meta['config']['accounts']}. pgbench runs the SQL a checkout sends"
        " (`bench/sql/pgbench_checkout.sql`: one call of `checkout_place`, `-M prepared`), one"
        " checkout per transaction, where the server sends the checkouts that arrive together"
        " as one call of `checkout_place_batch` and commits them in one transaction; and,"
        " as a floor, the same transaction written as a minimal function without the server's"
        " checks (`bench/sql/pgbench_one_trip.sql`)."
        " The last row puts every client on one wallet.",
        "",
        checkout_table(results),
        "",
        submission_table(results),
        "",
        "## Appending a checkout's two events: ours against the peers",
        "",
        "Transactions per second, each appending OrderPlaced (new stream) and FundsDebited"
        " (the account's wallet stream, expected version given) with the same JSON bytes."
        " `store.append` here is the bare append (asyncpg, no HTTP, no projections);"
        " eventsourcing is `PostgresApplicationRecorder.insert_events` (psycopg, one thread per"
        " client); message-db is two `write_message` calls in one transaction (asyncpg).",
        "",
        peers_table(results),
        "",
        reads_table(results),
        "",
        log_table(results),
        "",
        cpu_table(results),
        "",
        lifecycle_section(results),
        "",
        profile_section(results),
        "",
        machine_section(results),
    ]
    if chart_name:
        parts[2:2] = [f"![throughput and p99 against concurrency]({chart_name})", ""]
    return "\n".join(parts) + "\n"


def write(results: dict[str, Any], out_dir: Path, stem: str) -> tuple[Path, Path | None]:
    from bench.chart import draw

    out_dir.mkdir(parents=True, exist_ok=True)
    chart = out_dir / f"{stem}.png"
    try:
        draw(results, chart)
    except Exception as error:
        print(f"chart not drawn: {error}")
        chart = None  # type: ignore[assignment]
    markdown = out_dir / f"{stem}.md"
    markdown.write_text(render(results, chart.name if chart else None))
    return markdown, chart
