"""The smaller sections of the report: targets, reads, the log, CPU, the profile, the machine."""

from __future__ import annotations

import math
from typing import Any

TARGET_LIMIT_SHARE = 0.5
TARGET_P99_MS = 50.0
TARGET_LOG_EVENTS_PER_S = 50_000


def fmt(value: float | None, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.{digits}f}"


def _share(level: dict[str, Any], key: str) -> str:
    value = level.get(key)
    return "-" if value is None else f"{value:.0%}"


def steal_note(results: dict[str, Any]) -> str:
    """The range of CPU steal over the checkout levels and over pgbench's, for the targets."""
    parts = []
    for name, levels in (
        ("checkout levels", (results.get("http") or {}).get("checkout")),
        ("pgbench levels", (results.get("pgbench") or {}).get("statements")),
    ):
        stolen = [
            level["machine_steal_fraction"]
            for level in levels or []
            if "machine_steal_fraction" in level
        ]
        if stolen:
            parts.append(f"{min(stolen):.0%}-{max(stolen):.0%} during the {name}")
    if not parts:
        return ""
    return (
        "CPU time the hypervisor gave to other guests (steal, of both cores): "
        + ", ".join(parts)
        + ". A ratio to the pgbench phase compares levels taken minutes apart: where steal"
        " differs between them, the ratio moves with it (the paired row compares levels taken"
        " seconds apart, each with its own steal)."
    )


def tail_note(results: dict[str, Any]) -> str:
    """When the slowest 1% of the half-throughput load finished: stalls or a steady queue."""
    half = (results.get("http") or {}).get("half_max") or {}
    tail = half.get("tail_in_time")
    if not tail or not tail["slow"]:
        return ""
    worst = ", ".join(
        f"{count} at {second}-{second + 1} s" for second, count in tail["worst_seconds"]
    )
    return (
        f"At half the maximum throughput, the {tail['slow']} slowest requests (1%, each"
        f" ≥ {fmt(tail['threshold_ms'], 1)} ms) finished in {tail['seconds_with_slow']}"
        f" of the load's {tail['seconds']} seconds; the worst: {worst}. CPU steal during that"
        f" load: {_share(half, 'machine_steal_fraction')}."
    )


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "**missed**")


def _levels(levels: list[dict[str, Any]] | None) -> dict[int, dict[str, Any]]:
    return {level["concurrency"]: level for level in levels or []}


def _checkouts(results: dict[str, Any]) -> list[tuple[str, str]]:
    """The checkout sweeps the targets are judged on: (the results' part, its name)."""
    several = results.get("processes", {}).get("checkout") or [{}]
    count = several[0].get("processes", 2)
    return [("http", "`boost serve`"), ("processes", f"`boost serve --processes {count}`")]


def _checkout(results: dict[str, Any], part: str) -> dict[int, dict[str, Any]]:
    return _levels(results.get(part, {}).get("checkout"))


def _limit_row(results: dict[str, Any], part: str, label: str) -> str:
    ours = _checkout(results, part)
    limit = _levels(results.get("pgbench", {}).get("statements"))
    target = f"checkout ≥ 50% of pgbench at the same concurrency ({label})"
    shares = {
        c: ours[c]["per_s"] / limit[c]["per_s"] for c in ours if limit.get(c, {}).get("per_s")
    }
    if not shares:
        return f"| {target} | - | n/a |"
    text = ", ".join(f"c={c}: {share:.0%}" for c, share in sorted(shares.items()))
    ok = min(shares.values()) >= TARGET_LIMIT_SHARE
    return f"| {target} | {text} | {_verdict(ok)} |"


def _paired(levels: list[dict[str, Any]] | None) -> tuple[dict[int, float], str, str]:
    """Each checkout level against the pgbench level run right after it (bench/http_phase.py):
    the shares by concurrency, as text, and the steal of both, as text."""
    paired = [level for level in levels or [] if level.get("paired_pgbench", {}).get("per_s")]
    shares = {
        level["concurrency"]: level["per_s"] / level["paired_pgbench"]["per_s"] for level in paired
    }
    steal = ", ".join(
        f"{_share(level, 'machine_steal_fraction')}"
        f"/{_share(level['paired_pgbench'], 'machine_steal_fraction')}"
        for level in paired
    )
    text = ", ".join(f"c={c}: {share:.0%}" for c, share in sorted(shares.items()))
    return shares, text, steal


def _paired_row(results: dict[str, Any]) -> str:
    """Checkout against the pgbench level run right after it, as a target row."""
    shares, text, steal = _paired((results.get("http") or {}).get("checkout"))
    if not shares:
        return ""
    ok = min(shares.values()) >= TARGET_LIMIT_SHARE
    return (
        "| checkout ≥ 50% of pgbench run right after it at the same concurrency, workers idle"
        f" (`boost serve`, paired) | {text} (steal, checkout/pgbench: {steal}) | {_verdict(ok)} |"
    )


def alone_note(results: dict[str, Any]) -> str:
    """The API without its workers (bench/alone_phase.py), paired with pgbench as above: what
    the workers cost the checkout figures. Not a target (such a server sends no order)."""
    levels = (results.get("alone") or {}).get("checkout")
    shares, text, steal = _paired(levels)
    if not shares:
        return ""
    rates = ", ".join(f"c={level['concurrency']}: {fmt(level['per_s'])}" for level in levels or [])
    return (
        "What the workers cost the checkout (not a target: a server without them sends no"
        " order): the same `boost serve` with BOOST_WORKERS=0 took"
        f" {rates} orders/s; against pgbench run right after each level, {text} (steal,"
        f" checkout/pgbench: {steal})."
    )


def _peer_row(results: dict[str, Any], part: str, label: str) -> str:
    ours = _checkout(results, part)
    target = f"checkout ≥ the peers' append rate, same events ({label})"
    peers = results.get("peers", {})
    rows = []
    for c, level in sorted(ours.items()):
        rates = [
            p["appends_per_s"]
            for name in ("eventsourcing", "messagedb")
            for p in peers.get(name) or []
            if p["concurrency"] == c
        ]
        if rates:
            rows.append((c, level["per_s"] / max(rates)))
    if not rows:
        return f"| {target} | - | n/a |"
    text = ", ".join(f"c={c}: {ratio:.2f}x" for c, ratio in rows)
    ok = min(ratio for _, ratio in rows) >= 1.0
    return f"| {target} | {text} | {_verdict(ok)} |"


def _log_row(results: dict[str, Any], key: str, label: str) -> str:
    entry = results.get("log", {}).get(key) or {}
    if not entry.get("available"):
        return f"| {label} ≥ 50,000 events/s | not available | n/a |"
    rate = entry["events_per_s"]
    ok = (
        entry.get("exit_code") == 0
        and not entry.get("timed_out")
        and rate >= TARGET_LOG_EVENTS_PER_S
    )
    note = " (timed out)" if entry.get("timed_out") else ""
    if entry.get("exit_code") not in (0, None):
        note += f" (exit {entry['exit_code']})"
    return f"| {label} ≥ 50,000 events/s | {fmt(rate)} events/s{note} | {_verdict(ok)} |"


def targets_table(results: dict[str, Any]) -> str:
    half = results.get("http", {}).get("half_max")
    half_row = "| checkout p99 ≤ 50 ms at half the maximum throughput | - | n/a |"
    if half:
        half_row = (
            "| checkout p99 ≤ 50 ms at half the maximum throughput"
            f" | p99 {fmt(half['p99_ms'], 1)} ms"
            f" at {fmt(half['per_s'], 1)}/s (open loop, {half['concurrency']} connections)"
            f" | {_verdict(half['p99_ms'] <= TARGET_P99_MS)} |"
        )
    return "\n".join(
        [
            "| target | measured | verdict |",
            "|---|---|---|",
            *(_limit_row(results, part, label) for part, label in _checkouts(results)),
            *([paired] if (paired := _paired_row(results)) else []),
            *(_peer_row(results, part, label) for part, label in _checkouts(results)),
            half_row,
            _log_row(results, "rebuild", "`boost projections rebuild --all`"),
            _log_row(results, "verify", "`boost audit verify`"),
        ]
    )


def submission_table(results: dict[str, Any]) -> str:
    """How far submission to the provider kept up with each checkout load (bench/submission.py)."""
    http = results.get("http", {})
    several = results.get("processes", {}).get("checkout") or []
    loads = [
        *((level, "boost serve") for level in http.get("checkout") or []),
        *((level, f"--processes {level.get('processes', 2)}") for level in several),
    ]
    lines = [
        "## Submission to the provider",
        "",
        "Checkout answers once the order is paid and queued; the submitter sends it to the provider"
        " afterwards (claim, provider call, settle) and the poller follows its status. Around each"
        " checkout load the bench counts the orders not yet sent, then waits until the submitter"
        " has sent them all before the next load. *Placed and sent* is the orders of the load over"
        " the time from its start until the last of them was sent: the rate the whole system"
        " sustains, provider calls included (the provider, `boost simulator`, runs in a process of"
        " its own on the same two cores).",
        "",
        "| server | clients | checkout orders/s | sent/s during the load | waiting at its end"
        " | drained in | placed and sent, orders/s | refused by the provider |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for level, server in loads:
        sent = level.get("submission")
        if not sent:
            continue
        lines.append(
            f"| {server} | {level['concurrency']} | {fmt(level['per_s'])}"
            f" | {fmt(sent['sent_per_s_during_load'])} | {fmt(sent['waiting_at_end'])}"
            f" | {fmt(sent['drain_s'], 1)} s | {fmt(sent['placed_and_sent_per_s'])}"
            f" | {fmt(sent.get('refused_by_provider'))} |"
        )
    return "\n".join(lines)


def reads_table(results: dict[str, Any]) -> str:
    reads = results.get("http", {}).get("reads") or []
    lines = [
        "## Reads",
        "",
        "| request | clients | requests/s | p50 / p95 / p99 ms |",
        "|---|---:|---:|---:|",
    ]
    names = {"get_order": "GET /api/v1/boost/orders/{id}", "wallet": "GET /api/v1/wallet"}
    for level in reads:
        lines.append(
            f"| `{names[level['mode']]}` | {level['concurrency']} | {fmt(level['per_s'], 1)}"
            f" | {fmt(level['p50_ms'], 1)} / {fmt(level['p95_ms'], 1)}"
            f" / {fmt(level['p99_ms'], 1)} |"
        )
    return "\n".join(lines)


def cpu_table(results: dict[str, Any]) -> str:
    http = results.get("http", {})
    hot = http.get("hot_wallet")
    levels = [
        *(http.get("checkout") or []),
        *([{**hot, "mode": "checkout, one wallet"}] if hot else []),
        *(results.get("processes", {}).get("checkout") or []),
        *(
            {**level, "mode": "checkout, no workers"}
            for level in (results.get("alone") or {}).get("checkout") or []
        ),
        *(http.get("reads") or []),
    ]
    lines = [
        "## CPU and memory per request",
        "",
        "CPU milliseconds per request of the server process(es) (API and workers), of all"
        " PostgreSQL processes and of the provider (`boost simulator`, its own process; a"
        " checkout's provider call may fall after its load); machine = share of both cores busy"
        " (anything else running on the machine included); steal = share of both cores the"
        " hypervisor gave to other guests meanwhile (a virtual machine's co-tenants: the higher,"
        " the slower the level); generator = the load generator's own share of one core.",
        "",
        "| load | clients | server cpu ms/req | PostgreSQL cpu ms/req | provider cpu ms/req"
        " | machine busy | steal | generator | server RSS peak |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for level in levels:
        name = level["mode"] + (
            f" x{level['processes']} processes" if level.get("processes", 1) > 1 else ""
        )
        lines.append(
            f"| {name} | {level['concurrency']} | {fmt(level['server_cpu_ms_per_request'], 2)}"
            f" | {fmt(level['postgres_cpu_ms_per_request'], 2)}"
            f" | {fmt(level.get('provider_cpu_ms_per_request'), 2)}"
            f" | {level['machine_busy_fraction']:.0%} | {_share(level, 'machine_steal_fraction')}"
            f" | {level['generator_cpu_fraction']:.0%} | {fmt(level['server_rss_peak_mb'])} MB |"
        )
    idle = http.get("idle_rss_mb")
    if idle:
        lines += ["", f"Server RSS before any load: {fmt(idle)} MB."]
    return "\n".join(lines)


def machine_section(results: dict[str, Any]) -> str:
    meta = results["meta"]
    settings = ", ".join(f"`{name}={value}`" for name, value in meta["pg_settings"].items())
    notes = meta.get("notes") or []
    peers = results.get("peers", {})
    return "\n".join(
        [
            "## Machine, settings and notes",
            "",
            f"- machine: {meta['machine']}; Python {meta['python']}; commit `{meta['commit']}`",
            f"- background CPU before the run: {meta['background_cpu_fraction']:.0%} of the"
            " machine",
            "- PostgreSQL (embedded wheel, unix socket, `initdb` defaults, nothing tuned):"
            f" {settings}",
            "- server: `boost serve` (the API in one process; the submitter, poller and catalog"
            " sync in its `boost worker` child at BOOST_WORKER_NICE), info logs to a file;"
            f" provider: {meta.get('provider', 'the built-in simulator')};"
            f" pool {meta.get('server_pool', 'default')}; set for the bench:"
            f" {meta.get('server_env', {})} (the per-key rate limit is off: the load sends more"
            " than one reseller's share per key on purpose)",
            f"- peers: eventsourcing {peers.get('eventsourcing_version', '-')};"
            f" message-db {peers.get('message_db_version', peers.get('message_db_skipped', '-'))}"
            " (fetched with `npm pack` at bench time into the run's temp dir, installed with its"
            " own `install.sh`, pgcrypto step emptied; not part of this repository)",
            f"- run config: {meta['config']}; seconds per phase: {meta.get('phase_seconds')}",
            *[f"- {note}" for note in notes],
        ]
    )
