"""The bench's pure summaries (latency percentiles, the tail, the median round): no server, no
database."""

from __future__ import annotations

from typing import Any

from bench.log_phase import median_run
from bench.stats import summarize_ms, tail_in_time


def test_percentiles_are_nearest_rank_in_milliseconds() -> None:
    summary = summarize_ms([i / 1000 for i in range(1, 101)])  # 1..100 ms
    assert (summary["p50_ms"], summary["p95_ms"], summary["p99_ms"]) == (50.0, 95.0, 99.0)
    assert summary["max_ms"] == 100.0


def test_the_tail_is_placed_in_the_seconds_it_finished() -> None:
    """1,000 requests over 10 s, 10 of them slow: all in second 7 is a stall, one per second
    is a steady tail; either way the tail is the slowest 1%, found whatever the p99 says (the
    nearest-rank p99 of this load is a fast request's 2 ms)."""
    finished = [i / 100 for i in range(1000)]
    fast = [0.002] * 1000
    stall = [0.080 if 700 <= i < 710 else latency for i, latency in enumerate(fast)]
    tail = tail_in_time(finished, stall, 10.0)
    assert summarize_ms(stall)["p99_ms"] == 2.0
    assert tail["threshold_ms"] == 80.0
    assert (tail["slow"], tail["seconds"], tail["seconds_with_slow"]) == (10, 10, 1)
    assert tail["worst_seconds"] == [[7, 10]]
    assert tail["worst_second_share"] == 1.0

    steady = [0.080 if i % 100 == 50 else latency for i, latency in enumerate(fast)]
    spread = tail_in_time(finished, steady, 10.0)
    assert (spread["slow"], spread["seconds_with_slow"]) == (10, 10)
    assert spread["worst_second_share"] == 0.1
    assert tail_in_time([], [], 10.0) == {}


def _round(rate: float, exit_code: int = 0, timed_out: bool = False) -> dict[str, Any]:
    return {"available": True, "events_per_s": rate, "seconds": 100 / rate,
            "exit_code": exit_code, "timed_out": timed_out}


def test_the_log_rounds_report_the_median_run_and_every_rate_in_run_order() -> None:
    runs = [_round(rate) for rate in (10.0, 30.0, 20.0)]
    chosen = median_run(runs)
    assert (chosen["events_per_s"], chosen["seconds"]) == (20.0, 5.0)
    assert (chosen["rounds_events_per_s"], chosen["failed_rounds"]) == ([10.0, 30.0, 20.0], [])
    assert median_run(runs[:2])["events_per_s"] == 10.0  # the lower middle of an even count
    assert median_run(runs[:1]) == runs[0]  # one round: no rounds to quote


def test_a_failed_or_late_round_is_never_the_median_and_is_named() -> None:
    """A crash early in a round looks fast (events over a short time): it must not count."""
    runs = [_round(10.0), _round(900.0, exit_code=1), _round(20.0), _round(800.0, timed_out=True)]
    chosen = median_run(runs)
    assert chosen["events_per_s"] == 10.0  # the lower middle of the two clean rounds
    assert chosen["failed_rounds"] == [2, 4]
    assert median_run(runs[1:2])["exit_code"] == 1  # nothing clean: the first round, failed
