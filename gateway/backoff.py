"""Capped exponential backoff with full jitter: the one reconnect policy for every driver."""

from __future__ import annotations

import random


class Backoff:
    """Delays for reconnect attempts; `reset()` on success, `fail(fatal=True)` jumps to the cap."""

    def __init__(
        self, *, initial: float = 0.5, maximum: float = 30.0, rng: random.Random | None = None
    ) -> None:
        self.initial = initial
        self.maximum = maximum
        self.failures = 0
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._fatal = False

    def fail(self, *, fatal: bool = False) -> float:
        """Record a failed attempt; return how long to wait before the next."""
        self.failures += 1
        self._fatal = self._fatal or fatal
        ceiling = (
            self.maximum
            if self._fatal
            # the exponent is capped: 2**1024 overflows float after a long outage
            else min(self.maximum, self.initial * 2 ** min(self.failures - 1, 64))
        )
        # Full jitter spreads reconnects of many gateways after a broker restart.
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)

    def reset(self) -> None:
        """Forget past failures after a successful connection."""
        self.failures = 0
        self._fatal = False

    @property
    def first_failure(self) -> bool:
        """True right after the first failure of an outage (log it at WARNING)."""
        return self.failures == 1
