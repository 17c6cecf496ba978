"""Token buckets per API key or per client address: `rate` requests per second on average,
bursts up to `burst`."""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

from scheduler import tuning


@dataclass
class Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """Thread-safe; `now` is a monotonic time in seconds, passed in so tests need no clock."""

    def __init__(self, rate: float, burst: int, max_buckets: int = tuning.API_RATE_MAX_CLIENTS) -> None:
        self.rate = rate
        self.burst = burst
        self.max_buckets = max_buckets
        self._buckets: dict[str, Bucket] = {}
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def take(self, key: str, now: float) -> float:
        """Spend one token of `key`'s bucket: 0.0 when allowed, else the seconds until one is free."""
        if not self.enabled:
            return 0.0
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                if len(self._buckets) >= self.max_buckets:
                    self._make_room(now)
                bucket = self._buckets[key] = Bucket(float(self.burst), now)
            bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.updated) * self.rate)
            bucket.updated = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return 0.0
            return (1.0 - bucket.tokens) / self.rate

    def _make_room(self, now: float) -> None:
        """Drop the buckets that have refilled (forgetting them changes nothing), else the oldest
        tenth: one client sending from many addresses must not grow this without bound."""
        full = [k for k, b in self._buckets.items() if b.tokens + (now - b.updated) * self.rate >= self.burst]
        for key in full:
            del self._buckets[key]
        if len(self._buckets) >= self.max_buckets:
            for key in list(self._buckets)[: max(1, self.max_buckets // 10)]:
                del self._buckets[key]


def retry_after_header(wait: float) -> str:
    """Retry-After takes whole seconds; round up so a client that obeys it is let in."""
    return str(max(1, math.ceil(wait)))
