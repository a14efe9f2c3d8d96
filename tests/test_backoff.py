"""Capped exponential backoff with jitter: the one reconnect policy."""

from __future__ import annotations

import random

import pytest

from gateway.backoff import Backoff


def delays_of(b: Backoff, n: int) -> list[float]:
    """Fail `n` times and return each delay."""
    return [b.fail() for _ in range(n)]


class TopJitter(random.Random):
    """A Random whose uniform() always returns the upper bound."""

    def uniform(self, a: float, b: float) -> float:
        """Return the upper bound."""
        return b


class BottomJitter(random.Random):
    """A Random whose uniform() always returns the lower bound."""

    def uniform(self, a: float, b: float) -> float:
        """Return the lower bound."""
        return a


def test_delay_doubles_per_failure_up_to_the_cap() -> None:
    """Ceilings grow 0.5, 1, 2, 4 … and stop at the maximum."""
    b = Backoff(initial=0.5, maximum=5.0, rng=TopJitter())
    assert delays_of(b, 6) == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    assert b.failures == 6


def test_jitter_keeps_each_delay_between_half_and_full_ceiling() -> None:
    """With a seeded Random every delay is in [ceiling/2, ceiling] and the run is repeatable."""
    b = Backoff(initial=1.0, maximum=30.0, rng=random.Random(42))
    delays = delays_of(b, 12)
    for n, delay in enumerate(delays, start=1):
        ceiling = min(30.0, 2 ** (n - 1))
        assert ceiling / 2 <= delay <= ceiling
    again = Backoff(initial=1.0, maximum=30.0, rng=random.Random(42))
    assert delays_of(again, 12) == delays
    assert len(set(delays[5:])) > 1  # capped delays still spread


def test_lowest_jitter_is_half_the_ceiling() -> None:
    """The smallest possible delay is half the current ceiling, never zero."""
    b = Backoff(initial=2.0, maximum=8.0, rng=BottomJitter())
    assert delays_of(b, 4) == [1.0, 2.0, 4.0, 4.0]


def test_reset_starts_over() -> None:
    """reset() after a success returns to the initial delay and clears the count."""
    b = Backoff(initial=0.5, maximum=30.0, rng=TopJitter())
    delays_of(b, 5)
    b.reset()
    assert b.failures == 0
    assert b.fail() == 0.5


def test_fatal_failure_jumps_to_the_cap_until_reset() -> None:
    """fail(fatal=True) waits the maximum, and stays there until reset()."""
    b = Backoff(initial=0.5, maximum=30.0, rng=TopJitter())
    assert b.fail() == 0.5
    assert b.fail(fatal=True) == 30.0
    assert b.fail() == 30.0  # an auth error does not heal by itself
    b.reset()
    assert b.fail() == 0.5


def test_first_failure_is_true_only_right_after_the_first() -> None:
    """first_failure marks the first failure of an outage (log it at WARNING, later at DEBUG)."""
    b = Backoff(rng=random.Random(1))
    seen = [b.first_failure]
    for _ in range(3):
        b.fail()
        seen.append(b.first_failure)
    b.reset()
    b.fail()
    seen.append(b.first_failure)
    assert seen == [False, True, False, False, True]


@pytest.mark.parametrize("failures", [1100, 5000])
def test_a_very_long_outage_stays_at_the_cap(failures: int) -> None:
    """Thousands of failures keep returning the cap (2**1024 used to overflow float)."""
    b = Backoff(initial=0.5, maximum=30.0, rng=TopJitter())
    delays = delays_of(b, failures)
    assert delays[-1] == 30.0
    assert max(delays) == 30.0


def test_default_rng_is_used_when_none_is_given() -> None:
    """Without an injected Random the delays still respect the bounds."""
    b = Backoff(initial=1.0, maximum=1.0)
    assert all(0.5 <= d <= 1.0 for d in delays_of(b, 20))
