"""The handset answer path in the pure engine (accept / reject / resolve).

Found by a review (2026-11-25); each test failed before its fix, as its docstring says.
"""

from __future__ import annotations

from gateway.model import AlertState
from tests.test_engine import Clocked, config, journaled, restored


def test_an_accepter_handing_back_at_the_last_step_is_not_rung_again_at_once() -> None:
    """The call in room 102 reached the failsafe step (vakt); vakt accepts, then finds she
    cannot go and taps reject.

    What she sees: her phone rings again at once with the call she just handed back
    (a `ring` with a new seq), and again at every last-step repeat. A nurse who had
    rejected without accepting first is skipped at the last step ("that handset is
    skipped later in that round"; only when everyone there said no are they all rung
    again). The reject handler notes her refusal, then `_give_back` -> `_reopen` wipes
    `rejected_by`/`declined`, so the accepter's own "no" is forgotten the moment it
    reopens the alert.
    """
    c = Clocked(config())
    c.signal("cord-102")
    c.at(125)  # n-ost at 0, n-vest at 60, the failsafe step (vakt too) at 120
    c.respond("vakt", "a1")
    handed_back = c.respond("vakt", "a1", "reject")
    rung_again = [d.handset for d in handed_back.deliveries if d.action == "ring"]
    assert {"n-ost", "n-vest"} <= set(rung_again)  # the others hear it at once
    assert "vakt" not in rung_again, "the nurse who just said no is rung again at once"


def test_an_accept_of_a_group_member_does_not_leave_the_group_ringing() -> None:
    """A pull cord in room 101 rings n-ost; the room's door opens 20 s later and joins it
    as one group ("Room 101: pull_cord, door_open", members listed with their alert ids).

    What the nurse sees: she taps accept on the door line of the group (its member
    alert id); alertgw confirms it (`update`, state accepted) and she walks to room 101.
    Yet the group itself stays unaccepted: n-vest is rung for room 101 at 60 s, the
    failsafe at 120 s, and her own phone rings for it again at the last step. An accept
    of a member is applied to the member alone (`_handle_response` looks only at that
    alert), so the message on every screen, the leader, keeps escalating as if nobody
    took the room. It should act on the group (or be refused, so her phone says so).
    """
    c = Clocked(config())
    c.signal("cord-101")  # a1 rings n-ost
    c.at(20)
    c.signal("door-101")  # a2 joins a1's group
    result = c.respond("n-ost", "a2")
    c.at(200)
    if result.rejected is not None:
        return  # refused: her phone can tell her to answer the group instead
    assert [d.payload["state"] for d in result.deliveries] == ["accepted"]  # confirmed
    leader = c.engine.alert("a1")
    assert leader is not None
    assert leader.state is AlertState.ACCEPTED, "the group still rings though she took it"
    assert [h for _, h, _ in c.rings()] == ["n-ost"]


def test_an_accept_then_reject_is_remembered_across_a_restart() -> None:
    """vakt accepts the call in room 102 at the failsafe step, then hands it back; the
    daemon restarts a minute later.

    Before: the journal holds `rejected` (vakt) and then `reopened` ("rejected by vakt"),
    and reading the timeline back wiped every "no" at the reopen: after the restart vakt
    was rung again with the call she had just given back, at the last step's next repeat,
    where the uninterrupted daemon skips her.
    """
    c = Clocked(config())
    c.signal("cord-102")
    c.at(125)
    c.respond("vakt", "a1")
    c.respond("vakt", "a1", "reject")
    c.at(130)
    fresh = restored(c, "a1")
    c.at(400)
    fresh.at(400 - (fresh.start - c.start))
    assert "vakt" not in [h for t, h, _ in c.rings() if t > 130]  # as the README says
    assert [h for _, h, _ in fresh.rings()] == [h for t, h, _ in c.rings() if t > 130]


def test_an_alert_waiting_in_an_unsent_batch_cannot_be_answered_from_it() -> None:
    """Rate limit one call a handset per 10 min: room 101's cord rings n-ost, room 102's
    waits in n-ost's batch. An answer for room 102 from n-ost cannot come from her screen.

    Before: it was taken as an accept ("Only handsets that received an alert may answer
    it"), and room 102 stopped escalating on the word of a handset that never showed it.
    An alert she was shown before and that waits in a batch again is hers to answer.
    """
    c = Clocked(config("rate_limit: {max: 1, per: 600}\n"))
    c.signal("cord-101")
    c.signal("cord-102")
    assert [h for _, h, _ in c.rings()] == ["n-ost"]
    unseen = c.respond("n-ost", "a2")
    assert unseen.rejected == "not_delivered_to_handset"
    assert c.engine.alert("a2").state is AlertState.ACTIVE  # type: ignore[union-attr]
    c.at(125)  # a1's last step rings n-ost again, into the batch still waiting for a2
    assert c.respond("n-ost", "a1").rejected is None  # she has a1 on her screen since 0 s


def test_an_unsent_batch_restored_after_a_restart_cannot_be_answered_either() -> None:
    """As above across a restart: the batch is read back from the timeline (`batched`)."""
    c = Clocked(config("rate_limit: {max: 1, per: 600}\n"))
    c.signal("cord-101")
    c.signal("cord-102")
    alert = c.engine.alert("a2")
    assert alert is not None
    fresh = Clocked(config("rate_limit: {max: 1, per: 600}\n"), start=c.start, first_id=100)
    fresh.engine.restore(alert, [], 0, timeline=journaled(c, "a2"))
    assert fresh.respond("n-ost", "a2").rejected == "not_delivered_to_handset"
    fresh.at(1)  # the batch a restart cut short goes out at the first tick
    assert fresh.respond("n-ost", "a2").rejected is None


def test_an_accept_of_a_reminder_is_confirmed_to_the_handset() -> None:
    """n-ost accepted room 102's call; ten minutes on her phone rings a reminder and she
    taps accept again.

    Before: alertgw noted it (`attended`, reason reminder) and sent nothing back, so an
    app that rings until it hears the alert's state kept ringing, and an ESPA pager was
    never sent the reset that stops its reminder page.
    """
    c = Clocked(config())
    c.signal("cord-102")
    c.respond("n-ost", "a1")
    c.at(601)
    assert c.events("a1")[-1] == "reminder"
    answered = c.respond("n-ost", "a1")
    assert [(d.handset, d.action, d.payload["state"]) for d in answered.deliveries] == [
        ("n-ost", "update", "accepted")
    ]


def test_a_refused_update_to_the_accepter_does_not_reopen_the_call() -> None:
    """n-ost accepts room 102's call; the `update` confirming it is refused by her channel
    (an ESPA NAK, an MQTT 5 "no subscribers").

    Before: the refusal was handed to the engine as a failed ring, and since she was the
    accepter the call was reopened and rung to everyone while she walked to room 102. A
    refused update is in the timeline (`update_failed`); only a refused ring moves a call on (her
    next reminder is a ring: if that is refused too, the call reopens then).
    """
    c = Clocked(config())
    c.signal("cord-102")
    c.respond("n-ost", "a1")
    moved = c.engine.handle_delivery_failed("n-ost", "a1", c.now, why="refused", action="update")
    assert [(t.event, t.detail, t.reason) for t in moved.transitions] == [
        ("update_failed", "n-ost", "refused")
    ]
    assert moved.deliveries == []
    assert c.engine.alert("a1").state is AlertState.ACCEPTED  # type: ignore[union-attr]
    c.at(601)  # the reminder is a ring: refused, the call is hers no more
    c.out.extend(c.engine.handle_delivery_failed("n-ost", "a1", c.now, why="refused"))
    assert c.engine.alert("a1").state is AlertState.ACTIVE  # type: ignore[union-attr]
