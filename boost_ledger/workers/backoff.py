"""Bounded exponential backoff for workers that meet a failing provider."""

from __future__ import annotations

import random


class Backoff:
    def __init__(self, base_s: float = 0.5, cap_s: float = 30.0) -> None:
        assert 0 < base_s <= cap_s
        self.base_s = base_s
        self.cap_s = cap_s
        self.failures = 0

    def failed(self) -> float:
        """Record a failure; return how long to wait (jittered, never above the cap)."""
        self.failures = min(self.failures + 1, 30)
        delay: float = min(self.cap_s, self.base_s * 2 ** (self.failures - 1))
        return delay * random.uniform(0.5, 1.0)

    def succeeded(self) -> None:
        self.failures = 0
