"""The report's section on the log: appends, feed read, rebuild and verify."""

from __future__ import annotations

from typing import Any

from bench.report_sections import fmt


def _cli_row(entry: dict[str, Any]) -> str:
    if not entry.get("available"):
        return f"| `boost {entry['command']}` | not available | |"
    if entry.get("timed_out"):
        rate = f"< {fmt(entry['events_per_s'])}"
        progress = entry.get("last_progress") or "-"
        detail = f"stopped after {fmt(entry['seconds'])} s; last progress: {progress}"
    else:
        rate = fmt(entry["events_per_s"])
        detail = (
            f"exit {entry['exit_code']}, {fmt(entry['seconds'], 1)} s wall (process start included)"
        )
        rounds = entry.get("rounds_events_per_s")
        if rounds:
            failed = entry.get("failed_rounds") or []
            shown = [
                "failed" if number in failed else fmt(rate)
                for number, rate in enumerate(rounds, 1)
            ]
            detail = (
                f"median of the {len(rounds) - len(failed)} of {len(rounds)} rounds that exited 0"
                f" in time ({' / '.join(shown)} events/s, in run order); the median one: {detail}"
            )
    profile = entry.get("profile")
    if profile:
        layers = ", ".join(f"{row['name']} {row['share']:.0%}" for row in profile["layers"][:3])
        detail += (
            f"; py-spy: {profile['idle_share']:.0%} of the samples waiting on the event"
            f" loop (PostgreSQL), busy samples: {layers}"
        )
    detail += f"; PostgreSQL CPU {fmt(entry.get('postgres_cpu_s'), 1)} s"
    if entry.get("started_quiet") is False:
        detail += "; autovacuum was still running when it started"
    return f"| `boost {entry['command']}` | {rate} | {detail} |"


def _vacuum_note(log: dict[str, Any]) -> str:
    seconds = log.get("vacuum_after_rebuild_s")
    if not seconds:
        return ""
    each = seconds if isinstance(seconds, list) else [seconds]
    return (
        f" Between each rebuild and the verify after it, `vacuum analyze` of the database took"
        f" {' / '.join(fmt(value, 1) for value in each)} s (the tables the rebuild swapped in,"
        " which autovacuum would take up within a minute, perhaps during the verify)."
    )


def log_table(results: dict[str, Any]) -> str:
    log = results.get("log") or {}
    if not log:
        return "## The log\n\nnot measured in this run"
    lines = [
        "## The log",
        "",
        f"A log of {fmt(log.get('events'))} events (checkout-shaped: OrderPlaced + FundsDebited on"
        " contiguous wallet streams, true balances, deterministic debit ids), appended through"
        " `store.append` in a database of its own. Each timed command starts after a"
        " checkpoint, once no autovacuum worker runs."
        + _vacuum_note(log),
        "",
        "| operation | events/s | detail |",
        "|---|---:|---|",
    ]
    for level in log.get("sweep") or []:
        lines.append(
            f"| append, 2 events per transaction, {level['concurrency']} connections"
            f" | {fmt(level['events_per_s'])} | p99 {fmt(level['p99_ms'], 1)} ms |"
        )
    bulk = log.get("bulk")
    if bulk:
        lines.append(
            f"| append (filling the log), {bulk['orders_per_append'] * 2} events per"
            f" transaction, {bulk['concurrency']} connections | {fmt(bulk['events_per_s'])}"
            f" | {fmt(bulk['events'])} events in {fmt(bulk['elapsed_s'], 1)} s, the log growing"
            f" from {fmt(bulk.get('log_size_before'))}; p99 {fmt(bulk['p99_ms'], 1)} ms |"
        )
    feed = log.get("feed")
    if feed:
        partial = "" if feed.get("complete", True) else " (time bound reached: part of the log)"
        lines.append(
            f"| feed read, `iterate_feed` batches of {feed['batch_size']}{partial}"
            f" | {fmt(feed['events_per_s'])} | {fmt(feed['events'])} events,"
            f" reader at {feed['client_cpu_fraction']:.0%} of a core |"
        )
    for key in ("rebuild", "verify", "verify_log_only"):
        if log.get(key):
            lines.append(_cli_row(log[key]))
    target = results["meta"]["config"]["log_events"]
    if log.get("events", 0) < target:
        lines += [
            "",
            f"**The log fell short of {fmt(target)} events**: filling is bounded to"
            f" {fmt(results['meta']['config']['fill_budget_s'])} s and the append path was"
            " slower than that allows.",
        ]
    return "\n".join(lines)
