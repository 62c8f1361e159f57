"""The report's section on what one order costs over its whole life (bench/lifecycle_phase.py)."""

from __future__ import annotations

from typing import Any

from bench.report_sections import fmt


def _cpu_rows(life: dict[str, Any]) -> list[str]:
    cpu = life["cpu_ms_per_order"]
    lines = ["| process | CPU ms per order |", "|---|---:|"]
    lines += [f"| {name} | {fmt(ms, 2)} |" for name, ms in cpu.items()]
    lines.append(f"| all of them | {fmt(sum(cpu.values()), 2)} |")
    return lines


def _statement_rows(life: dict[str, Any]) -> list[str]:
    statements = life["statements"]
    lines = ["| sent by | PostgreSQL execution µs per order |", "|---|---:|"]
    lines += [
        f"| {name} | {fmt(us, 0)} |" for name, us in statements["groups_us_per_order"].items()
    ]
    lines += [
        "",
        "| statement (nested: run inside a function or trigger, counted in its caller too)"
        " | calls per order | µs per order |",
        "|---|---:|---:|",
    ]
    for entry in statements["top"]:
        where = "" if entry["toplevel"] else "nested: "
        query = entry["query"].replace("|", "\\|")
        lines.append(
            f"| {where}`{query}` | {fmt(entry['calls_per_order'], 2)}"
            f" | {fmt(entry['us_per_order'], 0)} |"
        )
    return lines


def _table_rows(life: dict[str, Any]) -> list[str]:
    lines = [
        "| table | rows inserted | updated | of which HOT | deleted |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in life["tables"]:
        if row["n_tup_ins"] + row["n_tup_upd"] + row["n_tup_del"] < 0.01:
            continue
        lines.append(
            f"| {row['relname']} | {fmt(row['n_tup_ins'], 2)} | {fmt(row['n_tup_upd'], 2)}"
            f" | {fmt(row['n_tup_hot_upd'], 2)} | {fmt(row['n_tup_del'], 2)} |"
        )
    return lines


def lifecycle_section(results: dict[str, Any]) -> str:
    life = results.get("lifecycle")
    if not life:
        return ""
    settled = "all settled" if life["settled"] else "**not all settled in time**"
    lines = [
        "## What one order costs over its whole life",
        "",
        f"{life['orders']:,} orders placed at {life['concurrency']} clients"
        f" ({fmt(life['checkout_per_s'])}/s), then followed until they reached a terminal status"
        f" ({settled}, {fmt(life['life_s'], 1)} s in all,"
        f" machine {life['machine_busy_fraction']:.0%} busy,"
        f" {life.get('machine_steal_fraction', 0.0):.0%} stolen): checkout, claim and submission,"
        " and the statuses the poller records. A cluster of its own with `pg_stat_statements`"
        " (`track = all`); CPU from the OS counters over the whole time. pgbench, the limit of"
        " the checkout ratios, runs only the first statement group below.",
        "",
        *_cpu_rows(life),
        "",
        *_statement_rows(life),
        "",
        f"Per order: {fmt(life['statements'].get('round_trips_per_order'), 1)} statements sent"
        f" (round trips), {fmt(life.get('commits_per_order'), 2)} transactions committed,"
        f" {fmt(float(life['wal_bytes_per_order']) / 1024, 1)} KiB of WAL, and these rows written:",
        "",
        *_table_rows(life),
    ]
    return "\n".join(lines)
