"""Per-topic fair share: token buckets that coalesce a babbling topic, like with like.

For sources whose topic names one device (Zigbee2MQTT), a newer state report carries the
device's whole state, so it may replace an older report that says the same thing — and one
babbling sensor can no longer starve the others. An event is different: a press (`action`,
never cached by Zigbee2MQTT) or a report whose level differs from the one before it is
queued behind the budget, not replaced, so throttling delays it but does not lose it. Only
a device flapping so fast that `max_parked` changes queue up loses the changes between its
oldest and its newest; a press is never dropped.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import orjson

T = TypeVar("T")

# Zigbee2MQTT never caches these (its `dontCacheProperties`): they appear only in the
# message the event produced, so a later message cannot stand for it.
_EVENT_KEYS = frozenset({"action", "click"})
# Fields that change with every message without saying anything about the device's state.
_VOLATILE_KEYS = frozenset({"last_seen", "elapsed"})


def is_event(payload: bytes) -> bool:
    """True when a Zigbee2MQTT message reports an event (`action`, `click`): never drop it."""
    if b'"action' not in payload and b'"click"' not in payload:
        return False  # cheap: most messages of a babbling device are reports
    data = _parsed(payload)
    return isinstance(data, dict) and any(k in _EVENT_KEYS or k.startswith("action_") for k in data)


def same_state(old: bytes, new: bytes) -> bool:
    """True when Zigbee2MQTT message `new` can stand for `old`: no event, same levels.

    Both must be JSON objects without an event field (`action`, `action_*`, `click`) and
    agree on every field that is not a number (numbers are battery, link quality, voltage:
    the newest is the one worth having); anything else is kept.
    """
    a, b = _fields(old), _fields(new)
    return a is not None and a == b


def _parsed(payload: bytes) -> object:
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None


def _fields(payload: bytes) -> dict[str, Any] | None:
    data = _parsed(payload)
    if not isinstance(data, dict):
        return None
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key in _EVENT_KEYS or key.startswith("action_"):
            return None
        if key in _VOLATILE_KEYS or (
            isinstance(value, int | float) and not isinstance(value, bool)
        ):
            continue
        out[key] = value
    return out


def _always(old: object, new: object) -> bool:
    return True


def _never(item: object) -> bool:
    return False


@dataclasses.dataclass(slots=True)
class _Bucket(Generic[T]):
    tokens: float
    stamp: float
    parked: collections.deque[T] | None = None  # oldest first; None when empty


class FairShare(Generic[T]):
    """Admit up to `rate` messages/s per key (bursts of `burst`); queue the rest in order.

    A refused item replaces the newest queued one of its key only when `replaces(old, new)`
    says the new one stands for it; otherwise it queues behind it. A key with `max_parked`
    items queued is flapping: its newest item is then replaced whatever it says, unless
    `keep(item)` (an event: a press), in which case the oldest is released at once, so an
    event is delayed but never dropped.
    """

    def __init__(
        self,
        *,
        rate: float,
        burst: float,
        max_keys: int = 50_000,
        max_parked: int = 64,
        replaces: Callable[[T, T], bool] = _always,
        keep: Callable[[T], bool] = _never,
    ) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: dict[str, _Bucket[T]] = {}
        self._max_keys = max_keys
        self._max_parked = max_parked
        self._replaces = replaces
        self._keep = keep

    def offer(self, key: str, item: T, now: float) -> tuple[list[T], T | None]:
        """Return (go now, superseded): what to pass on at once, in order, and what `item`
        replaced; an item not in the first list is queued."""
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self._max_keys:
                self._forget_idle(now)
            bucket = self._buckets[key] = _Bucket(self.burst, now)
        self._refill(bucket, now)
        queue = bucket.parked
        if queue is None:
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return [item], None
            bucket.parked = collections.deque((item,))
            return [], None
        full = len(queue) >= self._max_parked
        if self._replaces(queue[-1], item) or (full and not self._keep(queue[-1])):
            superseded, queue[-1] = queue[-1], item
            return [], superseded
        queue.append(item)
        if full:
            return [queue.popleft()], None
        return [], None

    def due(self, now: float) -> list[T]:
        """Take the queued items whose bucket has a token again, oldest first per key."""
        out: list[T] = []
        for bucket in self._buckets.values():
            queue = bucket.parked
            if queue is None:
                continue
            self._refill(bucket, now)
            while queue and bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                out.append(queue.popleft())
            if not queue:
                bucket.parked = None
        return out

    def next_deadline(self) -> float | None:
        """When the earliest queued item can go (None when nothing is queued)."""
        times = [
            b.stamp + max(0.0, 1.0 - b.tokens) / self.rate
            for b in self._buckets.values()
            if b.parked is not None
        ]
        return min(times) if times else None

    def rewrite_parked(self, change: Callable[[T], T]) -> None:
        """Replace every queued item by `change(item)`, in place (e.g. when a session ends)."""
        for bucket in self._buckets.values():
            if bucket.parked is not None:
                bucket.parked = collections.deque(change(item) for item in bucket.parked)

    def take_all(self) -> list[T]:
        """Take every queued item whatever its bucket holds, oldest first per key (a stop)."""
        out: list[T] = []
        for bucket in self._buckets.values():
            if bucket.parked is not None:
                out.extend(bucket.parked)
                bucket.parked = None
        return out

    @property
    def parked(self) -> int:
        """How many items are queued, over all keys."""
        return sum(len(b.parked) for b in self._buckets.values() if b.parked is not None)

    def _refill(self, bucket: _Bucket[T], now: float) -> None:
        if now > bucket.stamp:
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.stamp) * self.rate)
            bucket.stamp = now

    def _forget_idle(self, now: float) -> None:
        for key, bucket in list(self._buckets.items()):
            self._refill(bucket, now)
            if bucket.parked is None and bucket.tokens >= self.burst:
                del self._buckets[key]
