"""The handset answer path in the pure engine (accept / reject / resolve).

Found by a review (2026-11-25); each test failed before its fix, as its docstring says.
"""

from __future__ import annotations

from gateway.model import AlertState
from tests.test_engine import Clocked, config


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
