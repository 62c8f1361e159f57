"""The PNG chart: throughput and p99 latency against concurrency (matplotlib, headless Agg)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _series(results: dict[str, Any]) -> list[tuple[str, list[dict[str, Any]], str]]:
    http = results.get("http", {})
    pgbench = results.get("pgbench", {})
    peers = results.get("peers", {})
    return [
        ("checkout over HTTP (ours)", http.get("checkout") or [], "per_s"),
        (
            "checkout, 2 server processes",
            results.get("processes", {}).get("checkout") or [],
            "per_s",
        ),
        ("pgbench, our checkout SQL", pgbench.get("statements") or [], "per_s"),
        ("pgbench, minimal function", pgbench.get("one_trip") or [], "per_s"),
        ("store.append, 2 events/tx", results.get("log", {}).get("sweep") or [], "appends_per_s"),
        ("eventsourcing", peers.get("eventsourcing") or [], "appends_per_s"),
        ("message-db", peers.get("messagedb") or [], "appends_per_s"),
    ]


def draw(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (rate_axis, p99_axis) = plt.subplots(1, 2, figsize=(13, 5))
    for label, levels, key in _series(results):
        if not levels:
            continue
        ordered = sorted(levels, key=lambda level: level["concurrency"])
        x = [level["concurrency"] for level in ordered]
        rate_axis.plot(x, [level[key] for level in ordered], marker="o", label=label)
        p99_axis.plot(x, [level["p99_ms"] for level in ordered], marker="o", label=label)
    rate_axis.set(
        xscale="log",
        xlabel="concurrent clients",
        ylabel="checkouts (transactions) / s",
        title="Throughput",
    )
    p99_axis.set(
        xscale="log",
        yscale="log",
        xlabel="concurrent clients",
        ylabel="p99 latency, ms",
        title="p99 latency",
    )
    p99_axis.axhline(50, color="grey", linestyle="--", linewidth=1)
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    concurrencies = sorted({c for _, levels, _ in _series(results) for c in
                            (level["concurrency"] for level in levels)})
    for axis in (rate_axis, p99_axis):
        axis.grid(True, which="both", alpha=0.3)
        axis.set_xticks(concurrencies)
        axis.xaxis.set_major_formatter(ScalarFormatter())
        axis.xaxis.set_minor_formatter(NullFormatter())
    rate_axis.legend(fontsize=8)
    meta = results["meta"]
    figure.suptitle(f"boost-ledger bench {meta['date']} on {meta['host']}")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
