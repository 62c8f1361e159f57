"""What one run measures and for how long: the full default run and the ``--quick`` one."""

from __future__ import annotations

import msgspec


class BenchConfig(msgspec.Struct, frozen=True, kw_only=True):
    concurrencies: tuple[int, ...] = (1, 8, 32, 64)
    warmup_s: float = 2.0
    level_s: float = 10.0
    """Measured seconds per concurrency level (checkout, pgbench, peers)."""
    read_s: float = 8.0
    read_concurrency: int = 32
    hot_wallet_concurrency: int = 32
    """A level where every client spends from one wallet (the row lock serialises them)."""
    accounts: int = 64
    """Accounts used by the load: client connection i pays from account i mod ``accounts``."""
    warm_s: float = 3.0
    """Seconds of orders placed (and settled, then ANALYZE) before the first measured load of
    a new database (``bench/warmup.py``)."""
    quantity: int = 10
    log_events: int = 1_000_000
    """Size of the log that append, feed read, rebuild and verify run on."""
    log_batch_events: int = 100
    log_writers: int = 4
    profile_s: float = 10.0
    profile_concurrency: int = 32
    cli_timeout_s: float = 120.0
    """Bound on each of ``boost projections rebuild --all`` and ``boost audit verify``."""
    cli_trials: int = 3
    """Rebuild-then-verify rounds on the log; the report gives each figure's median (the
    machine's speed drifts by a third within minutes) and every round's."""
    fill_budget_s: float = 300.0
    """Bound on filling the log: a slower append path leaves a smaller log (the report says)."""
    lifecycle_s: float = 5.0
    """Seconds of checkout whose orders the lifecycle phase follows until they settle."""
    lifecycle_concurrency: int = 8
    lifecycle_timeout_s: float = 180.0
    """Bound on waiting for those orders to reach a terminal status."""


FULL = BenchConfig()

QUICK = BenchConfig(
    concurrencies=(1, 8, 32),
    warmup_s=1.0,
    level_s=3.0,
    read_s=2.0,
    read_concurrency=8,
    hot_wallet_concurrency=8,
    accounts=32,
    warm_s=1.0,
    log_events=10_000,
    profile_s=3.0,
    profile_concurrency=8,
    cli_timeout_s=60.0,
    cli_trials=1,
    fill_budget_s=30.0,
    lifecycle_s=2.0,
)
