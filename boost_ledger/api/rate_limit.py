"""Per-key rate limiting: one token bucket per API key id, in this process's memory.

Each authenticated request takes a token from its key's bucket. A bucket holds at most ``burst``
tokens and refills at ``rate_per_s``; an empty bucket means 429 ``RATE_LIMITED`` with a
``Retry-After`` of the whole seconds until the next token. The buckets live in one process, so
N API processes behind a balancer allow up to N times the rate in total (docs/scaling.md); the
limit is not a billing quota.

What it bounds is the work one key can cause once it is known: the route's own queries, the
checkout's transaction, the provider calls of check and cancel. It does not keep requests off
the database altogether. The bucket is taken after the key is looked up (api/auth.py), so that
only the holder of a live key can drain its bucket (the key id can be read from the presented
token, but it is unproven until then: anyone who knew a key's id could empty its bucket) and a
dead key hears 401/403 rather than 429.
So every refused request still costs one indexed lookup of its key (a checkout skips the lookup
for a key this process remembers only when it lets the request through, api/orders.py), and
requests with unknown or malformed keys are never limited here: they end at the lookup, or
before it. Shielding the database from a flood of those is the load balancer's job.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

MAX_TRACKED_KEYS = 100_000


class RateLimiter:
    def __init__(
        self,
        rate_per_s: float,
        burst: int,
        *,
        max_keys: int = MAX_TRACKED_KEYS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate_per_s < 0 or burst < 1 or max_keys < 1:
            raise ValueError("rate_per_s must be >= 0, burst and max_keys >= 1")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._max_keys = max_keys
        self._clock = clock
        # key id -> (tokens, time of the last refill); insertion order is least recently used.
        self._buckets: dict[str, tuple[float, float]] = {}

    @property
    def enabled(self) -> bool:
        return self.rate_per_s > 0

    def retry_after_s(self, key_id: str) -> int | None:
        """Take a token for ``key_id``: None when allowed, else the seconds to wait (>= 1)."""
        if not self.enabled:
            return None
        now = self._clock()
        tokens, last = self._buckets.pop(key_id, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate_per_s)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        self._buckets[key_id] = (tokens, now)
        if len(self._buckets) > self._max_keys:
            # Forget the least recently seen key: it comes back with a full bucket, which only
            # ever favours a client, never refuses one wrongly.
            del self._buckets[next(iter(self._buckets))]
        if allowed:
            return None
        return max(1, math.ceil((1.0 - tokens) / self.rate_per_s))

    def tracked_keys(self) -> int:
        return len(self._buckets)
