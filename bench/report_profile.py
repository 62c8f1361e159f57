"""The report's section on where a checkout's time goes: the profile and the round trips."""

from __future__ import annotations

from typing import Any

from bench.report_sections import fmt


def _share_rows(title: str, rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "",
        f"| {title} | share of busy samples | server CPU ms per checkout |",
        "|---|---:|---:|",
    ]
    lines += [
        f"| {row['name']} | {row['share']:.1%} | {row['cpu_ms_per_request']:.2f} |" for row in rows
    ]
    return lines


def profile_section(results: dict[str, Any]) -> str:
    profile = results.get("profile") or {}
    lines = ["## Where a checkout's time goes", ""]
    if profile.get("busy_samples"):
        load = profile["load"]
        lines += [
            f"py-spy (`--native`, 100 Hz; collapsed stacks in `{profile['stacks_file']}`, e.g. for"
            " flamegraph.pl or speedscope) on the server for"
            f" {results['meta']['config']['profile_s']:.0f} s of checkout at {load['concurrency']}"
            f" clients ({fmt(load['per_s'], 1)} orders/s,"
            f" machine {profile['machine_busy_fraction']:.0%}"
            f" busy): {fmt(profile['server_cpu_ms_per_request'], 2)} ms of server CPU and"
            f" {fmt(profile['postgres_cpu_ms_per_request'], 2)} ms of PostgreSQL CPU per checkout"
            " (OS counters; the shares below come from the busy samples and are scaled to them)."
            " Samples in the event loop's epoll wait are idle and left out. On a saturated machine"
            " a sample in a send/receive syscall includes waiting for a CPU.",
        ]
        lines += _share_rows("what the server was doing", profile["activities"])
        lines += _share_rows("layer (innermost recognised frame)", profile["layers"])
        lines += _share_rows("our function (inclusive)", profile["functions"][:15])
    elif profile.get("skipped"):
        lines.append(f"Profile skipped: {profile['skipped']}")
    lines += _round_trips(results.get("round_trips") or {})
    return "\n".join(lines)


def _round_trips(trips: dict[str, Any]) -> list[str]:
    if not trips.get("checkouts"):
        return []
    lines = [
        "",
        f"Round trips, from PostgreSQL's statement log over {trips['checkouts']} sequential"
        f" checkouts: **{trips['round_trips_per_checkout']:.1f} statements per checkout request**"
        f" ({trips['auth_statements']:.1f} for the API key lookup, none while the key is cached,"
        f" {trips['checkout_transaction_statements']:.1f} for the checkout: one call of"
        " `checkout_place`, a transaction of its own). Meanwhile the workers sent"
        f" {trips['background_statements_per_checkout']:.1f} statements per checkout (submission of"
        " these orders and polling of all open ones).",
        "",
        "| statement of the checkout transaction | per checkout |",
        "|---|---:|",
    ]
    lines += [
        f"| `{row['sql']}` | {row['per_checkout']:.2f} |"
        for row in trips["checkout_statement_list"]
    ]
    lines += ["", "| statement of the workers | per checkout |", "|---|---:|"]
    lines += [
        f"| `{row['sql']}` | {row['per_checkout']:.2f} |"
        for row in trips.get("background_statement_list", [])
    ]
    return lines
