"""Latency summaries: percentiles by nearest rank, in milliseconds."""

from __future__ import annotations

import heapq
import math
from collections import Counter
from collections.abc import Sequence
from typing import Any


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


def summarize_ms(latencies_s: Sequence[float]) -> dict[str, float]:
    values = sorted(latency * 1000 for latency in latencies_s)
    return {
        "p50_ms": percentile(values, 0.50),
        "p95_ms": percentile(values, 0.95),
        "p99_ms": percentile(values, 0.99),
        "max_ms": values[-1] if values else math.nan,
        "mean_ms": sum(values) / len(values) if values else math.nan,
    }


def tail_in_time(
    finished_s: Sequence[float], latencies_s: Sequence[float], window_s: float
) -> dict[str, Any]:
    """Where in time the slowest 1% of requests finished, by whole second of the window (of
    ``window_s``; ``finished_s`` counts from its start): a few
    bad seconds point to stalls (a checkpoint, a burst of background work, the hypervisor),
    slow requests spread over most seconds to a steady queue."""
    if not latencies_s:
        return {}
    count = max(1, len(latencies_s) // 100)
    slowest = heapq.nlargest(count, zip(latencies_s, finished_s, strict=True))
    per_second = Counter(int(at) for _, at in slowest)
    worst = per_second.most_common(3)
    return {
        "threshold_ms": slowest[-1][0] * 1000,
        "slow": count,
        "seconds": math.ceil(window_s),
        "seconds_with_slow": len(per_second),
        "worst_seconds": [[second, slow] for second, slow in worst],
        "worst_second_share": worst[0][1] / count,
    }
