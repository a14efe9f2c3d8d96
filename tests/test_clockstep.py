"""Telling a stepped wall clock apart from elapsed time."""

from __future__ import annotations

from gateway.clockstep import ClockWatch, elapsed_clock


class Clocks:
    """A wall clock and an elapsed-time clock the test moves by hand."""

    def __init__(self) -> None:
        self.wall = 1_790_000_000.0
        self.elapsed = 500.0

    def advance(self, seconds: float) -> None:
        """Time passes: both clocks move."""
        self.wall += seconds
        self.elapsed += seconds


def watch(c: Clocks) -> ClockWatch:
    """A ClockWatch on the test's clocks."""
    return ClockWatch(lambda: c.wall, lambda: c.elapsed)


def test_time_passing_is_not_a_step() -> None:
    """Wall and elapsed time moving together report no step."""
    c = Clocks()
    w = watch(c)
    c.advance(3600)
    assert w.read() == (c.wall, 0.0)


def test_a_step_back_and_forward_are_reported_once_with_their_size() -> None:
    """NTP stepping the clock back 1 h, later forward 6 h, reports each step exactly once."""
    c = Clocks()
    w = watch(c)
    c.advance(10)
    c.wall -= 3600
    assert w.read() == (c.wall, -3600.0)
    c.advance(10)
    assert w.read()[1] == 0.0
    c.wall += 6 * 3600
    assert w.read()[1] == 6 * 3600
    assert w.read()[1] == 0.0


def test_slewing_below_the_threshold_is_not_a_step() -> None:
    """NTP slewing (a fraction of a second between reads) is not a step."""
    c = Clocks()
    w = watch(c)
    for _ in range(100):
        c.advance(10)
        c.wall += 0.005
        assert w.read()[1] == 0.0


def test_the_elapsed_clock_moves_forward() -> None:
    """The default elapsed-time clock is readable and never goes back."""
    first = elapsed_clock()
    assert elapsed_clock() >= first
