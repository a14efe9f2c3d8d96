"""Seams of the restart path: what a crash, a late journal or an old journal leaves behind.

Sans-IO where the engine decides; the journal where a row is kept or cancelled. The same
cases against a real daemon, broker and SIGKILL are in tests/faults/test_restart_seams.py.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.engine import Engine, Transition
from gateway.journal import Journal
from gateway.model import (
    Alert,
    AlertState,
    Delivery,
    DeliveryState,
    Response,
    ResponseKind,
    Signal,
    SignalState,
)
from tests.test_engine import NIGHT, Clocked, config, journaled
from tests.test_journal import T0, alert, ring


def _press(signal_id: str, state: str = "raised", device: str = "cord-101") -> Signal:
    dc = config().devices[device]
    return Signal(signal_id, "test", device, dc.room, dc.kind, SignalState(state), NIGHT)


def _started(start: int) -> Engine:
    """An engine as the gateway builds it for its `start`-th start; nothing committed yet."""
    engine = Engine(config(), now=NIGHT, salt="site")
    engine.use_start(start)
    return engine


def _accept_at_qos0(engine: Engine, alert_id: str, now: float) -> list[Delivery]:
    answer = Response("n-ost", alert_id, ResponseKind.ACCEPT, now)
    return engine.handle_response(answer, now).deliveries


def _page_failed(engine: Engine, alert_id: str, now: float) -> list[Delivery]:
    return engine.handle_delivery_failed("n-ost", alert_id, now, why="fault").deliveries


def _cleared(engine: Engine) -> list[Delivery]:
    return engine.handle_signal(_press("s9", "cleared"), NIGHT + 30).deliveries


def _step_timeout(engine: Engine) -> list[Delivery]:
    return engine.tick(NIGHT + 70).deliveries


@pytest.mark.parametrize(
    ("unresent", "then"),
    [(_accept_at_qos0, _cleared), (_page_failed, _step_timeout)],
    ids=["qos0-accept-then-cancel", "espa-fault-then-escalation"],
)
def test_a_message_beside_an_uncommitted_raise_keeps_its_seq_from_the_re_created_alert(
    unresent: Callable[[Engine, str, float], list[Delivery]],
    then: Callable[[Engine], list[Delivery]],
) -> None:
    """A QoS 1 press rang n-ost (seq 1) and, within the same commit window, an input
    nothing sends again (an accept at QoS 0, an ESPA paging fault) sent seq 2; a crash beat
    the commit. The broker redelivers the press and the restarted daemon re-creates the
    alert with seq 1, which the handsets rightly drop, but the second input is gone, and
    the next message took seq 2 again: a handset that had seen it dropped the cancel (the
    call stayed on her screen) or the escalation's ring (the colleague never heard it).
    """
    first = _started(1)
    (ring,) = first.handle_signal(_press("mqtt-7"), NIGHT).deliveries
    beside = unresent(first, ring.alert_id, NIGHT + 0.005)
    assert beside  # it sent something the restarted daemon never hears of
    seen = {(d.handset, d.alert_id): d.seq for d in [ring, *beside]}

    second = _started(2)  # the journal holds neither: both were in the lost commit
    (again,) = second.handle_signal(_press("mqtt-7"), NIGHT + 5).deliveries
    assert (again.alert_id, again.seq) == (ring.alert_id, ring.seq)  # dropped as a repeat
    later = then(second)
    assert {d.handset for d in later} & {h for h, _ in seen}
    dropped = [d for d in later if d.seq <= seen.get((d.handset, d.alert_id), 0)]
    assert dropped == [], f"seen before the crash: {seen}"


# -- a journal opened late --------------------------------------------------------------


def _outbox(path: Path) -> list[tuple[int, str, str, int, str]]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return db.execute(
            "SELECT id, alert_id, action, seq, state FROM outbox ORDER BY id"
        ).fetchall()


async def test_a_late_open_cancels_the_file_s_queue_in_the_commit_that_queues_its_copies(
    tmp_path: Path,
) -> None:
    """The file held a cancel still queued (its PUBACK never came) for a call that ended.

    The late open cancelled every queued row at once, in a commit of its own, and only
    rang the alerts it restored: a finished call is not restored, so its cancel never
    went and the handset showed the call for good. Now a copy is queued, numbered past
    the ids handed out meanwhile, in the same transaction that cancels the file's rows.
    """
    path = tmp_path / "journal.db"
    before = Journal(path)
    await before.open()
    ended = alert("a1", AlertState.CLEARED)
    await before.commit_batch(
        [], [Transition(ended, "cleared", T0)], [ring("a1", "n1", 1), ring("a1", "n1", 2, "cancel")]
    )
    await before.commit_batch([], [], [], sent=[(1, DeliveryState.SENT)])
    await before.close()

    late = Journal(path)
    (meanwhile,) = late.number([ring("m1", "n1", 1)])  # routed from memory: id 1 again
    await late.open()
    (cancel,) = await late.pending_deliveries()
    assert (cancel.id, cancel.action, cancel.seq) == (2, "cancel", 2)
    with pytest.raises(sqlite3.IntegrityError):  # a failing commit cancels nothing
        await late.commit_batch([], [], [cancel], cancel_queued_up_to=late.opened_last_id)
    assert _outbox(path)[1][4] == "queued"
    await late.commit_batch(
        [], [], [meanwhile, *late.number([cancel])], cancel_queued_up_to=late.opened_last_id
    )
    await late.commit_batch([], [], [], sent=[(1, DeliveryState.SENT), (4, DeliveryState.SENT)])
    await late.close()
    assert _outbox(path) == [
        (1, "a1", "ring", 1, "sent"),
        (2, "a1", "cancel", 2, "cancelled"),
        (3, "m1", "ring", 1, "sent"),  # handed out as 1, written past the file's rows
        (4, "a1", "cancel", 2, "sent"),  # the copy, as the handset gets it
    ]


# -- two open alerts for one key in the journal ---------------------------------------------


def _restarted(*stored: tuple[Alert, list[str], Clocked]) -> Clocked:
    """A fresh engine a normal start restores `stored` into, oldest first."""
    c = Clocked(config(), start=max(old.now for _, _, old in stored), first_id=50)
    for back, rung, old in stored:
        seq = max((d.seq for d in old.out.deliveries if d.alert_id == back.id), default=0)
        c.engine.restore(back, rung, seq, timeline=journaled(old, back.id))
    return c


def test_a_start_restoring_two_open_alerts_of_one_key_keeps_the_newer() -> None:
    """An older journal holds cord-102's call twice: an alertgw before 2026-11-25 left a
    journal's alerts in the file when it opened late, and the call pulled meanwhile was a
    second alert; today a crash between the late open's commits leaves the same.

    Both came back and rang on. The key named only the newer, so the cord's reset ended
    that one and the older escalated to the failsafe and reminded all night.
    """
    old = Clocked(config())
    old.signal("cord-102")  # a1, rings n-ost
    memory = Clocked(config(), start=old.now + 600, first_id=2)
    memory.signal("cord-102")  # a2: the same call, pulled again while the file was shut
    first, second = old.engine.alert("a1"), memory.engine.alert("a2")
    assert first is not None
    assert second is not None
    c = _restarted((first, ["n-ost"], old), (second, ["n-ost"], memory))
    c.at(1)
    assert [(t.alert.id, t.event, t.detail, t.reason) for t in c.out.transitions] == [
        ("a1", "cleared", "by a2", "superseded")
    ]
    assert [(d.alert_id, d.handset, d.action) for d in c.out.deliveries] == [
        ("a1", "n-ost", "cancel")
    ]
    c.signal("cord-102", "cleared")  # the resident's call is answered and reset
    assert c.engine.active == []
    c.at(3600)
    assert c.rings() == []


def test_a_start_restoring_a_ringing_alert_and_a_held_one_of_its_key_keeps_the_ringing() -> None:
    """bed-102 rang and went to the failsafe; a second, newer bed exit of the same key is
    in its 20-minute hold-off. As at a late open, the ringing alarm is not silenced for the
    hold-off: the held one ends."""
    old = Clocked(config())
    old.signal("bed-102")
    old.at(1400)  # rang at 1200 and escalated since
    memory = Clocked(config(), start=old.now, first_id=2)
    memory.signal("bed-102")  # held 1200 s
    ringing, held = old.engine.alert("a1"), memory.engine.alert("a2")
    assert ringing is not None
    assert held is not None
    assert (ringing.state, held.state) == (AlertState.ACTIVE, AlertState.HELD)
    rung = sorted({h for _, h, _ in old.rings()})
    c = _restarted((ringing, rung, old), (held, [], memory))
    c.at(1)
    assert [(t.alert.id, t.event, t.reason) for t in c.out.transitions] == [
        ("a2", "cancelled", "superseded")
    ]
    assert c.engine.alert("a1") is not None
    c.signal("bed-102", "cleared")
    assert c.engine.active == []
