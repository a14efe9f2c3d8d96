"""Per-topic fair share: token buckets that coalesce a babbling topic to its newest message.

For sources whose topic names one device (Zigbee2MQTT), the newest message carries the
device's whole state, so dropping the superseded ones loses no condition — and one flapping
sensor can no longer starve the others.
"""

from __future__ import annotations

import dataclasses
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclasses.dataclass(slots=True)
class _Bucket(Generic[T]):
    tokens: float
    stamp: float
    parked: T | None = None


class FairShare(Generic[T]):
    """Admit up to `rate` messages/s per key (bursts of `burst`); park the newest of the rest."""

    def __init__(self, *, rate: float, burst: float, max_keys: int = 50_000) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: dict[str, _Bucket[T]] = {}
        self._max_keys = max_keys

    def offer(self, key: str, item: T, now: float) -> tuple[bool, T | None]:
        """Return (admitted, superseded): a refused item is parked, replacing an older one."""
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self._max_keys:
                self._forget_idle(now)
            bucket = self._buckets[key] = _Bucket(self.burst, now)
        self._refill(bucket, now)
        if bucket.parked is None and bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return True, None
        superseded, bucket.parked = bucket.parked, item
        return False, superseded

    def due(self, now: float) -> list[T]:
        """Take the parked items whose bucket has a token again."""
        out: list[T] = []
        for bucket in self._buckets.values():
            if bucket.parked is None:
                continue
            self._refill(bucket, now)
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                out.append(bucket.parked)
                bucket.parked = None
        return out

    def next_deadline(self) -> float | None:
        """When the earliest parked item can go (None when nothing is parked)."""
        times = [
            b.stamp + max(0.0, 1.0 - b.tokens) / self.rate
            for b in self._buckets.values()
            if b.parked is not None
        ]
        return min(times) if times else None

    @property
    def parked(self) -> int:
        """How many keys hold a parked item."""
        return sum(1 for b in self._buckets.values() if b.parked is not None)

    def _refill(self, bucket: _Bucket[T], now: float) -> None:
        if now > bucket.stamp:
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.stamp) * self.rate)
            bucket.stamp = now

    def _forget_idle(self, now: float) -> None:
        for key, bucket in list(self._buckets.items()):
            self._refill(bucket, now)
            if bucket.parked is None and bucket.tokens >= self.burst:
                del self._buckets[key]
