"""Per-topic fair share: bursts pass, floods coalesce to the newest message."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway.fairshare import FairShare


def test_burst_passes_then_newest_is_parked() -> None:
    """Up to `burst` messages pass at once; later ones park, each replacing the last."""
    fs: FairShare[int] = FairShare(rate=10, burst=3)
    assert [fs.offer("t", i, 0.0)[0] for i in range(3)] == [True, True, True]
    assert fs.offer("t", 3, 0.0) == (False, None)
    assert fs.offer("t", 4, 0.0) == (False, 3)
    assert fs.parked == 1


def test_parked_item_is_released_when_a_token_returns() -> None:
    """The parked newest message is released after 1/rate seconds, in order."""
    fs: FairShare[str] = FairShare(rate=10, burst=1)
    assert fs.offer("t", "a", 0.0) == (True, None)
    fs.offer("t", "b", 0.0)
    deadline = fs.next_deadline()
    assert deadline is not None
    assert abs(deadline - 0.1) < 1e-9
    assert fs.due(0.05) == []
    assert fs.due(0.1) == ["b"]
    assert fs.next_deadline() is None


def test_a_parked_topic_keeps_order_behind_its_parked_item() -> None:
    """While a topic has a parked item, newer messages park too, so order is never inverted."""
    fs: FairShare[int] = FairShare(rate=10, burst=1)
    fs.offer("t", 1, 0.0)
    fs.offer("t", 2, 0.0)
    assert fs.offer("t", 3, 0.5) == (False, 2)
    assert fs.due(0.5) == [3]


def test_one_babbling_topic_does_not_limit_another() -> None:
    """Buckets are per topic: a flood on one leaves the next topic's budget whole."""
    fs: FairShare[int] = FairShare(rate=1, burst=2)
    for i in range(1000):
        fs.offer("babbler", i, 0.0)
    assert fs.offer("quiet", 1, 0.0) == (True, None)


@given(st.lists(st.tuples(st.sampled_from("abc"), st.floats(0, 0.01)), max_size=200))
def test_nothing_is_lost_but_superseded(offers: list[tuple[str, float]]) -> None:
    """Every offered item is admitted, superseded or finally released; none vanish."""
    fs: FairShare[int] = FairShare(rate=50, burst=2)
    now = 0.0
    seen = 0
    for i, (key, step) in enumerate(offers):
        now += step
        admitted, superseded = fs.offer(key, i, now)
        seen += admitted + (superseded is not None)
    seen += len(fs.due(now + 10))
    assert seen == len(offers)
