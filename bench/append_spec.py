"""What an appender run is asked to do, and which of its appends count."""

from __future__ import annotations

import threading
import time

import msgspec


class Wallet(msgspec.Struct, kw_only=True):
    account_id: int
    version: int
    balance_kobo: int


class AppendSpec(msgspec.Struct, frozen=True, kw_only=True):
    kind: str  # "ours", "eventsourcing" or "messagedb"
    dsn: str
    concurrency: int
    warmup_s: float = 0.0
    duration_s: float = 0.0
    target_events: int = 0
    """When set, append until this many events are written (and time the whole of it)..."""
    max_s: float = 0.0
    """... or until this many seconds have passed, whichever comes first."""
    orders_per_append: int = 1
    wallets: list[Wallet] = []
    socket_dir: str = ""
    database: str = ""


class Window:
    """Which appends count: those done inside the measured window (or all, for a target)."""

    def __init__(self, spec: AppendSpec) -> None:
        self.spec = spec
        self.start = time.perf_counter() + spec.warmup_s
        self.end = self.start + spec.duration_s if not spec.target_events else float("inf")
        self.latencies: list[float] = []
        self.events = 0
        self._lock = threading.Lock()

    def done(self) -> bool:
        if self.spec.target_events:
            overdue = self.spec.max_s and time.perf_counter() - self.start > self.spec.max_s
            return self.events >= self.spec.target_events or bool(overdue)
        return time.perf_counter() >= self.end

    def record(self, sent: float, events: int) -> None:
        now = time.perf_counter()
        with self._lock:
            if self.spec.target_events or self.start <= now < self.end:
                self.events += events
                self.latencies.append(now - sent)
