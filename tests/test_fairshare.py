"""Per-topic fair share: bursts pass, floods coalesce like with like, events are kept."""

from __future__ import annotations

import orjson
from hypothesis import given
from hypothesis import strategies as st

from gateway.fairshare import FairShare, is_event, same_state


def test_burst_passes_then_newest_is_parked() -> None:
    """Up to `burst` messages pass at once; later ones park, each replacing the last."""
    fs: FairShare[int] = FairShare(rate=10, burst=3)
    assert [fs.offer("t", i, 0.0)[0] for i in range(3)] == [[0], [1], [2]]
    assert fs.offer("t", 3, 0.0) == ([], None)
    assert fs.offer("t", 4, 0.0) == ([], 3)
    assert fs.parked == 1


def test_parked_item_is_released_when_a_token_returns() -> None:
    """The parked newest message is released after 1/rate seconds, in order."""
    fs: FairShare[str] = FairShare(rate=10, burst=1)
    assert fs.offer("t", "a", 0.0) == (["a"], None)
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
    assert fs.offer("t", 3, 0.5) == ([], 2)
    assert fs.due(0.5) == [3]


def test_one_babbling_topic_does_not_limit_another() -> None:
    """Buckets are per topic: a flood on one leaves the next topic's budget whole."""
    fs: FairShare[int] = FairShare(rate=1, burst=2)
    for i in range(1000):
        fs.offer("babbler", i, 0.0)
    assert fs.offer("quiet", 1, 0.0) == ([1], None)


def z2m(**fields: object) -> bytes:
    """A Zigbee2MQTT state message."""
    return orjson.dumps(fields)


def z2m_share(*, rate: float = 10, burst: float = 1, max_parked: int = 64) -> FairShare[bytes]:
    """A fair share that coalesces Zigbee2MQTT messages as the MQTT link does."""
    return FairShare(
        rate=rate, burst=burst, max_parked=max_parked, replaces=same_state, keep=is_event
    )


def drain(fs: FairShare[bytes], start: float = 1.0) -> list[bytes]:
    """Everything still queued, as the link's timer would release it."""
    out: list[bytes] = []
    now = start
    while fs.parked:
        out += fs.due(now)
        now += 1.0
    return out


def test_a_press_is_never_superseded_by_a_later_report() -> None:
    """A parked press (`action`, never repeated by Zigbee2MQTT) survives the reports after it.

    Review finding 5: a battery report right after a press used to replace it, so a
    pull cord on a chatty device never rang.
    """
    fs = z2m_share()
    fs.offer("snor", z2m(battery=90, linkquality=100), 0.0)  # takes the one token
    press = z2m(action="single", battery=90, linkquality=80)
    fs.offer("snor", press, 0.0)
    for lqi in (81, 82, 83):
        assert fs.offer("snor", z2m(battery=90, linkquality=lqi), 0.0)[1] != press
    released = drain(fs)
    assert released == [press, z2m(battery=90, linkquality=83)]


def test_a_second_identical_press_is_kept_too() -> None:
    """Two presses with the same payload are two presses: neither replaces the other."""
    fs = z2m_share()
    fs.offer("snor", z2m(battery=90), 0.0)
    press = z2m(action="single", battery=90)
    assert fs.offer("snor", press, 0.0) == ([], None)
    assert fs.offer("snor", press, 0.0) == ([], None)
    assert drain(fs) == [press, press]


def test_a_level_change_is_kept_and_only_equal_reports_coalesce() -> None:
    """Reports replace reports with the same levels; a report with a new level queues behind.

    A bed sensor's occupancy true, then false, within one throttled interval must reach
    the decoder as both, or the transition (a bed exit) is lost.
    """
    fs = z2m_share()
    fs.offer("seng", z2m(occupancy=False, battery=90), 0.0)
    up = z2m(occupancy=True, battery=90)
    fs.offer("seng", up, 0.0)
    assert fs.offer("seng", z2m(occupancy=True, battery=89), 0.0) == ([], up)
    fs.offer("seng", z2m(occupancy=False, battery=89), 0.0)
    fs.offer("seng", z2m(occupancy=False, battery=88, last_seen="2026-01-01T00:00:00Z"), 0.0)
    assert [orjson.loads(m)["occupancy"] for m in drain(fs)] == [True, False]


def test_a_key_past_max_parked_releases_its_oldest_press_in_order() -> None:
    """A device sending presses past `max_parked` is passed on, oldest first: none dropped."""
    fs = z2m_share(max_parked=2)
    fs.offer("snor", z2m(battery=90), 0.0)
    presses = [z2m(action="single", n=str(i)) for i in range(4)]
    out = [m for p in presses for m in fs.offer("snor", p, 0.0)[0]]
    assert out == presses[:2]
    assert drain(fs) == presses[2:]


def test_a_flapping_level_past_max_parked_coalesces_to_its_newest() -> None:
    """A door flapping faster than its budget keeps its queue short: the newest state wins."""
    fs = z2m_share(max_parked=3)
    fs.offer("dor", z2m(contact=True), 0.0)
    superseded = [fs.offer("dor", z2m(contact=i % 2 == 1), 0.0)[1] for i in range(100)]
    assert sum(s is not None for s in superseded) == 97
    assert [orjson.loads(m)["contact"] for m in drain(fs)] == [False, True, True]


def test_same_state_reads_only_json_objects() -> None:
    """Payloads that are not JSON objects never stand for one another."""
    assert same_state(z2m(contact=True, battery=1), z2m(contact=True, battery=2))
    assert not same_state(z2m(contact=True), z2m(contact=False))
    assert not same_state(b"online", b"online")
    assert not same_state(b"[1]", b"[1]")
    assert not same_state(z2m(action_group=1), z2m(action_group=1))
    assert not same_state(z2m(battery=1), z2m(battery=1, action="single"))
    assert is_event(z2m(action="single"))
    assert is_event(z2m(action_group=3))
    assert not is_event(z2m(battery=1))
    assert not is_event(b'"action"')


@given(st.lists(st.tuples(st.sampled_from("abc"), st.floats(0, 0.01)), max_size=200))
def test_nothing_is_lost_but_superseded(offers: list[tuple[str, float]]) -> None:
    """Every offered item is admitted, superseded or finally released; none vanish."""
    fs: FairShare[int] = FairShare(rate=50, burst=2)
    now = 0.0
    seen = 0
    for i, (key, step) in enumerate(offers):
        now += step
        go, superseded = fs.offer(key, i, now)
        seen += len(go) + (superseded is not None)
    seen += len(fs.due(now + 10))
    assert seen == len(offers)


@given(
    st.lists(
        st.tuples(st.sampled_from(["report", "press", "open", "closed"]), st.floats(0, 0.01)),
        max_size=200,
    )
)
def test_every_press_and_level_change_comes_out_in_order(
    offers: list[tuple[str, float]],
) -> None:
    """Whatever the timing, each press and each level change leaves the share, in order.

    (A queue never reaches `max_parked` here; past it a flapping level coalesces.)
    """
    fs = FairShare[tuple[int, bytes]](
        rate=50,
        burst=2,
        max_parked=500,
        replaces=lambda a, b: same_state(a[1], b[1]),
        keep=lambda a: is_event(a[1]),
    )
    payloads = {
        "report": z2m(battery=90),
        "press": z2m(action="single", battery=90),
        "open": z2m(contact=False),
        "closed": z2m(contact=True),
    }
    now = 0.0
    out: list[tuple[int, bytes]] = []
    for i, (what, step) in enumerate(offers):
        now += step
        out += fs.offer("dev", (i, payloads[what]), now)[0]
    while fs.parked:
        now += 1.0
        out += fs.due(now)
    order = [i for i, _ in out]
    assert order == sorted(order)
    events = [i for i, (what, _) in enumerate(offers) if what == "press"]
    assert [i for i in order if offers[i][0] == "press"] == events
    levels = [what for what, _ in offers if what in ("open", "closed")]
    changes = [w for j, w in enumerate(levels) if j == 0 or w != levels[j - 1]]
    seen = [offers[i][0] for i in order if offers[i][0] in ("open", "closed")]
    assert [w for j, w in enumerate(seen) if j == 0 or w != seen[j - 1]] == changes


@given(st.lists(st.sampled_from(["report", "press", "open", "closed"]), max_size=300))
def test_a_press_comes_out_even_when_the_queue_is_full(offers: list[str]) -> None:
    """With a tiny queue and no time passing, every press still leaves the share, in order."""
    fs = FairShare[tuple[int, bytes]](
        rate=50,
        burst=1,
        max_parked=4,
        replaces=lambda a, b: same_state(a[1], b[1]),
        keep=lambda a: is_event(a[1]),
    )
    payloads = {
        "report": z2m(battery=90),
        "press": z2m(action="single", battery=90),
        "open": z2m(contact=False),
        "closed": z2m(contact=True),
    }
    out: list[tuple[int, bytes]] = []
    for i, what in enumerate(offers):
        out += fs.offer("dev", (i, payloads[what]), 0.0)[0]
    now = 0.0
    while fs.parked:
        now += 1.0
        out += fs.due(now)
    order = [i for i, _ in out]
    assert order == sorted(order)
    assert [i for i in order if offers[i] == "press"] == [
        i for i, w in enumerate(offers) if w == "press"
    ]


def test_take_all_empties_every_queue_in_order_per_key() -> None:
    """At a stop everything queued goes at once, whatever the buckets hold, oldest first."""
    fs: FairShare[str] = FairShare(rate=0.01, burst=1, replaces=lambda _old, _new: False)
    for key in ("a", "b"):
        assert fs.offer(key, f"{key}0", 0.0) == ([f"{key}0"], None)
        fs.offer(key, f"{key}1", 0.0)
        fs.offer(key, f"{key}2", 0.0)
    assert fs.take_all() == ["a1", "a2", "b1", "b2"]
    assert (fs.parked, fs.next_deadline(), fs.due(1000.0)) == (0, None, [])
