"""A compact summary of a run for the README: ``python -m bench.summary bench/results/X.json``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import msgspec

from bench.report import by_concurrency
from bench.report_sections import (
    alone_note,
    fmt,
    steal_note,
    submission_table,
    tail_note,
    targets_table,
)


def _rate(level: dict[str, Any] | None, key: str = "per_s") -> str:
    if not level:
        return "-"
    return f"{fmt(level[key])} ({fmt(level['p99_ms'], 0)})"


def summary(results: dict[str, Any], report_name: str) -> str:
    meta = results["meta"]
    http = results.get("http", {})
    ours = by_concurrency(http.get("checkout"))
    multi = by_concurrency(results.get("processes", {}).get("checkout"))
    pgbench = results.get("pgbench", {})
    limit, trip = by_concurrency(pgbench.get("statements")), by_concurrency(pgbench.get("one_trip"))
    append = by_concurrency(results.get("log", {}).get("sweep"))
    peers = results.get("peers", {})
    es, mdb = by_concurrency(peers.get("eventsourcing")), by_concurrency(peers.get("messagedb"))
    lines = [
        f"Latest full run: {meta['date']}, {meta['machine']}, commit `{meta['commit']}`"
        f" ([report]({report_name})). Transactions per second (p99 ms):",
        "",
        "| clients | checkout over HTTP | 2 server processes | pgbench, same SQL |"
        " pgbench, minimal function | `store.append` (2 events) | eventsourcing | message-db |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in sorted(ours):
        lines.append(
            f"| {c} | {_rate(ours.get(c))} | {_rate(multi.get(c))} | {_rate(limit.get(c))}"
            f" | {_rate(trip.get(c))} | {_rate(append.get(c), 'appends_per_s')}"
            f" | {_rate(es.get(c), 'appends_per_s')} | {_rate(mdb.get(c), 'appends_per_s')} |"
        )
    sent = submission_table(results).split("\n")[4:]  # its table, without heading and prose
    notes = [
        note for note in (steal_note(results), tail_note(results), alone_note(results)) if note
    ]
    steal = [line for note in notes for line in (note, "")]
    return "\n".join([*lines, "", targets_table(results), "", *steal, *sent])


def main() -> None:
    path = Path(sys.argv[1])
    results = msgspec.json.decode(path.read_bytes())
    print(summary(results, f"bench/results/{path.with_suffix('.md').name}"))


if __name__ == "__main__":
    main()
