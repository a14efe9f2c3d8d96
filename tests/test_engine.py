"""The pure rule engine on an injected clock: every routing feature, no ports, no sleeps."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from gateway.config import Config, parse_config
from gateway.engine import Engine, Outcome
from gateway.errors import ConfigError
from gateway.espa.decode import EspaDecoder
from gateway.model import Alert, AlertState, Response, ResponseKind, Signal, SignalState

OSLO = ZoneInfo("Europe/Oslo")
NIGHT = dt.datetime(2026, 11, 24, 23, 0, tzinfo=OSLO).timestamp()
DAY = dt.datetime(2026, 11, 25, 10, 0, tzinfo=OSLO).timestamp()

YAML = """
site: {timezone: Europe/Oslo}
zones:
  ost: {rooms: ["101", "102", "103"]}
  vest: {rooms: ["201"]}
devices:
  bed-101: {room: "101", kind: bed_exit, tags: [fall_risk]}
  bed-102: {room: "102", kind: bed_exit}
  door-101: {room: "101", kind: door_open, tags: [dementia]}
  cord-101: {room: "101", kind: pull_cord}
  cord-102: {room: "102", kind: pull_cord}
  pres-101: {room: "101", kind: presence}
  pres-102: {room: "102", kind: presence}
  epi-101: {room: "101", kind: epilepsy}
  fall-102: {room: "102", kind: fall}
  bed-201: {room: "201", kind: bed_exit}
  cord-201: {room: "201", kind: pull_cord}
handsets:
  n-ost: {channel: console}
  n-vest: {channel: console}
  d-ost: {channel: console}
  d-2: {channel: console}
  vakt: {channel: console}
  tech: {channel: console}
schedules:
  night: {start: "22:00", end: "07:00"}
  day: {start: "07:00", end: "22:00"}
roster:
  shifts:
    - {schedule: night, assign: {ost: [n-ost], vest: [n-vest]}}
    - {schedule: day, assign: {ost: [d-ost, d-2], vest: []}}
  failsafe: [vakt]
escalation:
  default:
    steps: [{to: primary, after: 60}, {to: all_on_duty, after: 60}, {to: failsafe, after: 60}]
    reminder: 600
rules:
  - {name: bed-fall-risk, match: {kinds: [bed_exit], tags: [fall_risk], schedule: night},
     hold_off: 45}
  - {name: bed-night, match: {kinds: [bed_exit], schedule: night}, hold_off: 1200}
  - {name: bed-day, match: {kinds: [bed_exit], schedule: day}, action: suppress}
  - {name: cord, match: {kinds: [pull_cord]}, group: 120}
  - {name: door, match: {kinds: [door_open]}, group: 120}
inhibit:
  - {name: fall-covers-room, source_kinds: [fall, epilepsy], target_kinds: [bed_exit, door_open]}
technical: {handsets: [tech], digest: true, digest_at: "07:30"}
"""


def config(extra: str = "", base: str = YAML) -> Config:
    """The test unit's config, optionally with extra top-level YAML."""
    return parse_config(base + extra, filename="engine.yaml")


class Clocked:
    """An engine driven on a virtual clock that collects every outcome."""

    def __init__(self, cfg: Config, start: float = NIGHT, first_id: int = 1) -> None:
        ids = itertools.count(first_id)
        self.now = start
        self.start = start
        self.engine = Engine(cfg, new_id=lambda: f"a{next(ids)}", now=start)
        self.out = Outcome()
        self._n = itertools.count(1)
        self.journaled: dict[str, Any] = {}  # what a test saved of changed_conditions()

    def at(self, seconds: float) -> None:
        """Advance the clock to start+seconds, firing timers on the way."""
        target = self.start + seconds
        while (due := self.engine.next_deadline()) is not None and due <= target:
            self.now = max(self.now, due)
            self.out.extend(self.engine.tick(self.now))
        self.now = target
        self.out.extend(self.engine.tick(self.now))

    def step(self, seconds: float) -> None:
        """Step the wall clock (NTP, an RTC) and tell the engine, as the gateway does."""
        self.engine.shift(seconds)
        self.start += seconds
        self.now += seconds

    def signal(self, device: str, state: str = "raised", *, kind: str | None = None) -> Outcome:
        """Feed one signal from a configured device at the current time."""
        dc = self.engine.config.devices[device]
        sig = Signal(
            id=f"s{next(self._n)}",
            source="test",
            device=device,
            room=dc.room,
            kind=kind or dc.kind,
            state=SignalState(state),
            ts=self.now,
        )
        result = self.engine.handle_signal(sig, self.now)
        self.out.extend(result)
        return result

    def respond(self, handset: str, alert_id: str, kind: str = "accept") -> Outcome:
        """A handset answers."""
        result = self.engine.handle_response(
            Response(handset, alert_id, ResponseKind(kind), self.now), self.now
        )
        self.out.extend(result)
        return result

    def rings(self, handset: str | None = None) -> list[tuple[float, str, str]]:
        """(seconds, handset, kind) of every ring so far."""
        return [
            (round(d.payload["sent_at"] - self.start, 3), d.handset, str(d.payload.get("kind")))
            for d in self.out.deliveries
            if d.action == "ring" and (handset is None or d.handset == handset)
        ]

    def events(self, alert_id: str) -> list[str]:
        """The timeline events of one alert."""
        return [t.event for t in self.out.transitions if t.alert.id == alert_id]


def test_hold_off_auto_cancels_a_bed_exit_cleared_in_time() -> None:
    """A fall-risk bed exit cleared within 45 s never rings and ends as cancelled."""
    c = Clocked(config())
    c.signal("bed-101")
    c.at(30)
    c.signal("bed-101", "cleared")
    c.at(300)
    assert c.rings() == []
    assert c.events("a1") == ["raised", "held", "cancelled"]


def test_hold_off_rings_when_still_active() -> None:
    """A fall-risk bed exit still active after 45 s rings the zone's primary at 45 s."""
    c = Clocked(config())
    c.signal("bed-101")
    c.at(50)
    assert c.rings() == [(45, "n-ost", "bed_exit")]


def test_rules_are_first_match_and_tags_matter() -> None:
    """A bed exit without fall_risk falls to the 20-minute long-absence rule."""
    c = Clocked(config())
    c.signal("bed-102")
    c.at(1199)
    assert c.rings() == []
    c.at(1201)
    assert c.rings() == [(1200, "n-ost", "bed_exit")]


def test_schedule_suppresses_by_day() -> None:
    """By day the bed-day rule suppresses bed exits, counted with their rule."""
    c = Clocked(config(), start=DAY)
    result = c.signal("bed-102")
    assert c.rings() == []
    (sup,) = [t for t in result.transitions if t.event == "suppressed"]
    assert (sup.reason, sup.alert.rule) == ("rule", "bed-day")


def test_dedup_merges_repeats_into_a_count() -> None:
    """A pull cord pressed five times rings once; the alert counts five."""
    c = Clocked(config())
    for _ in range(5):
        c.signal("cord-102")
        c.at(c.now - c.start + 5)
    assert c.rings() == [(0, "n-ost", "pull_cord")]
    alert = c.engine.alert("a1")
    assert alert is not None
    assert alert.count == 5


def test_critical_rings_at_once_and_repeats_update() -> None:
    """An epilepsy alarm rings at 0 s with no rule; a repeat sends an update, not silence."""
    c = Clocked(config())
    c.signal("epi-101")
    assert c.rings() == [(0, "n-ost", "epilepsy")]
    repeat = c.signal("epi-101")
    assert [d.action for d in repeat.deliveries] == ["update"]
    assert repeat.deliveries[0].payload["count"] == 2


def test_critical_ignores_presence_and_rules() -> None:
    """Staff presence does not suppress a fall; presence marks it accepted (attended)."""
    c = Clocked(config())
    c.signal("pres-102")
    c.signal("fall-102")
    assert c.rings() == [(0, "n-ost", "fall")]
    c.at(10)
    c.signal("pres-102")
    alert = c.engine.alert("a1")
    assert alert is not None
    assert alert.state is AlertState.ACCEPTED
    assert alert.accepted_by == "presence:102"


def test_presence_suppresses_and_attends() -> None:
    """Presence cancels a held bed exit, resolves a ringing cord and suppresses new alerts."""
    c = Clocked(config())
    c.signal("bed-101")  # held 45 s
    c.signal("cord-101")  # rings
    c.at(10)
    c.signal("pres-101")
    assert c.events("a1")[-1] == "cancelled"
    assert c.events("a2")[-1] == "resolved"
    cancels = [d for d in c.out.deliveries if d.action == "cancel"]
    assert [(d.alert_id, d.handset) for d in cancels] == [("a2", "n-ost")]
    later = c.signal("door-101")
    assert [t.event for t in later.transitions] == ["raised", "suppressed"]
    assert later.transitions[-1].reason == "presence"
    c.signal("pres-101", "cleared")
    # The door is still open after the staff leave, so it is raised again (re-armed).
    assert c.rings()[-1] == (10, "n-ost", "door_open")


def test_presence_expires_without_its_clear() -> None:
    """A presence whose clear is lost stops suppressing after the presence timeout."""
    c = Clocked(config("presence: {timeout: 600}\n"))
    c.signal("pres-102")
    c.at(601)
    c.signal("cord-102")
    assert c.rings() == [(601, "n-ost", "pull_cord")]


def test_grouping_makes_one_message_per_room() -> None:
    """A cord and a door in one room within the window: one ring, then an update."""
    c = Clocked(config())
    c.signal("cord-101")
    c.at(20)
    c.signal("door-101")
    assert c.rings() == [(0, "n-ost", "pull_cord")]
    update = [d for d in c.out.deliveries if d.action == "update"][-1]
    assert update.alert_id == "a1"
    assert [m["kind"] for m in update.payload["members"]] == ["door_open"]
    assert "door_open" in update.payload["text"]
    c.respond("n-ost", "a1")
    member = c.engine.alert("a2")
    assert member is not None
    assert member.state is AlertState.ACCEPTED


def test_a_group_is_as_urgent_as_its_most_urgent_member() -> None:
    """A pull cord (high) joins a door alert (medium): the group's messages said medium,
    so an ESPA pager beeped the call as a door and a handset sorted it below other calls."""
    c = Clocked(config())
    c.signal("door-101")  # a1 rings at medium
    c.at(10)
    c.signal("cord-101")  # a2 (high) joins a1
    update = c.out.deliveries[-1]
    assert (update.action, update.payload["priority"]) == ("update", "high")
    c.at(70)  # the group escalates: its ring carries the member's urgency too
    ring = c.out.deliveries[-1]
    assert (ring.action, ring.handset, ring.payload["priority"]) == ("ring", "n-vest", "high")
    c.signal("cord-101", "cleared")  # the call ends: the door alone is medium again
    assert c.out.deliveries[-1].payload["priority"] == "medium"


def test_group_member_clearing_updates_and_leader_waits_for_members() -> None:
    """The leader's own clear waits for its members; the last one out sends the cancel."""
    c = Clocked(config())
    c.signal("cord-101")
    c.signal("door-101")
    c.signal("door-101", "cleared")  # member leaves: update
    assert c.out.deliveries[-1].action == "update"
    c.signal("door-101")
    c.at(5)
    c.signal("cord-101", "cleared")  # leader's condition ends, member still open
    assert c.engine.alert("a1") is not None
    c.signal("door-101", "cleared")
    assert c.engine.alert("a1") is None
    assert c.out.deliveries[-1].action == "cancel"


def test_inhibition_mutes_targets_both_ways() -> None:
    """A fall mutes an open bed exit in its room, and a later bed exit is suppressed."""
    c = Clocked(config())
    c.signal("bed-102")  # held 1200 s
    c.signal("fall-102")
    assert c.events("a1")[-1] == "cancelled"
    later = c.signal("cord-102", kind="bed_exit")
    assert later.transitions[-1].event == "suppressed"
    assert later.transitions[-1].reason == "inhibited"


def bed_exits(c: Clocked) -> list[tuple[str, str]]:
    """(alert id, event) of every bed-exit transition so far."""
    return [(t.alert.id, t.event) for t in c.out.transitions if t.alert.kind == "bed_exit"]


def test_a_muted_condition_still_raised_comes_back_when_its_inhibitor_ends() -> None:
    """As in Alertmanager: the fall is over, the bed is still empty, so the bed exit is back."""
    c = Clocked(config())
    c.signal("bed-102")  # held 1200 s
    c.signal("fall-102")  # mutes it
    c.at(30)
    c.signal("fall-102", "cleared")
    # The fall latches: it still rings until someone takes it, and still mutes the bed.
    assert bed_exits(c) == [("a1", "raised"), ("a1", "held"), ("a1", "cancelled")]
    c.respond("n-ost", "a2", "accept")
    assert bed_exits(c) == [
        ("a1", "raised"),
        ("a1", "held"),
        ("a1", "cancelled"),
        ("a3", "raised"),
        ("a3", "held"),
    ]
    assert c.engine.alert("a3") is not None


def test_a_condition_suppressed_by_inhibition_is_raised_after_it() -> None:
    """A bed exit that arrives while the fall rings is suppressed, then raised when it ends."""
    c = Clocked(config())
    c.signal("fall-102")
    c.signal("bed-102")
    c.respond("n-ost", "a1", "accept")
    c.at(60)
    assert [e for _, e in bed_exits(c)] == ["raised", "suppressed"]
    c.respond("n-ost", "a1", "resolve")  # staff resolve the fall: the bed is still empty
    assert [e for _, e in bed_exits(c)] == ["raised", "suppressed", "raised", "held"]


def test_an_inhibition_does_not_silence_a_call_grouped_with_its_target() -> None:
    """A pull cord joins the open door's alert; then the seizure sensor of the room rings.

    The seizure mutes door alerts, not calls: muting the door's group resolved the pull
    cord with it (a cancel on the handset, reason inhibited), and a pressed button is no
    condition that comes back.
    """
    c = Clocked(config())
    c.signal("door-101")  # a1 rings
    c.at(10)
    c.signal("cord-101")  # a2 joins a1
    c.at(20)
    c.signal("epi-101")  # a3
    c.at(30)
    assert c.events("a2") == ["raised", "grouped"]
    assert c.engine.alert("a2") is not None
    assert not [d for d in c.out.deliveries if d.action == "cancel"]
    assert (20, "n-ost", "epilepsy") in c.rings()


def test_a_bed_exit_muted_with_its_group_is_ended_once_and_comes_back() -> None:
    """A bed exit that joined the door's group is muted with it by a seizure: one ending in
    its timeline (it had two: with the group, then on its own), and back after the seizure."""
    c = Clocked(config(base=YAML.replace("hold_off: 45}", "hold_off: 45, group: 120}")))
    c.signal("door-101")  # a1 rings
    c.at(1)
    c.signal("bed-101")  # a2: held 45 s, then joins a1
    c.at(50)
    c.signal("epi-101")  # a3 mutes a1 and a2
    assert c.events("a2") == ["raised", "held", "grouped", "resolved"]
    c.at(60)
    c.respond("n-ost", "a3", "accept")
    c.signal("epi-101", "cleared")
    c.at(200)
    bed = [(t.ts - c.start, t.event) for t in c.out.transitions if t.alert.kind == "bed_exit"]
    assert (60, "raised") in bed


def test_a_reload_that_drops_an_inhibition_decides_its_muted_conditions_again() -> None:
    """The seizure in room 101 mutes its bed exit; a reload then removes the inhibit rule.

    The bed came back only through that rule when the seizure ended, so the bed still
    empty never rang again. Still muted by a rule that stays, it stays quiet.
    """
    c = Clocked(config())
    c.signal("epi-101")  # a1
    c.at(5)
    c.signal("bed-101")  # a2: muted by the seizure
    c.signal("fall-102")  # a3
    c.at(6)
    c.signal("bed-102")  # a4: muted by the fall
    c.at(10)
    narrowed = YAML.replace("source_kinds: [fall, epilepsy]", "source_kinds: [fall]")
    c.engine.reconfigure(config(base=narrowed), c.now)
    c.at(300)  # the seizure no longer mutes bed-101: its hold-off runs from the reload
    beds = [d for d in c.out.deliveries if d.action == "ring" and d.payload["kind"] == "bed_exit"]
    assert {d.payload["room"] for d in beds} == {"101"}  # the fall still mutes bed-102
    assert c.rings()[2] == (55, "n-ost", "bed_exit")


def test_a_condition_that_cleared_meanwhile_or_elsewhere_stays_quiet() -> None:
    """Only muted targets still raised come back, and only those sharing the `equal` labels."""
    c = Clocked(config())
    c.signal("bed-102")
    c.signal("fall-102")
    c.signal("bed-102", "cleared")  # back in bed while staff attend the fall
    c.signal("pres-101")
    c.signal("bed-101")  # muted by presence in room 101, not by the fall in 102
    before = bed_exits(c)
    c.signal("fall-102", "cleared")
    assert bed_exits(c) == before


def test_escalation_on_timeout_then_failsafe() -> None:
    """Unaccepted: primary at 0, everyone on duty at 60 s, failsafe at 120 s."""
    c = Clocked(config())
    c.signal("cord-102")
    c.at(130)
    assert c.rings()[:3] == [
        (0, "n-ost", "pull_cord"),
        (60, "n-vest", "pull_cord"),
        (120, "vakt", "pull_cord"),
    ]
    assert "escalated" in c.events("a1")


def test_reject_moves_on_at_once() -> None:
    """A reject escalates immediately to the next step."""
    c = Clocked(config())
    c.signal("cord-102")
    c.at(5)
    c.respond("n-ost", "a1", "reject")
    assert c.rings() == [(0, "n-ost", "pull_cord"), (5, "n-vest", "pull_cord")]


def test_a_repeated_reject_is_no_news() -> None:
    """The same reject twice (a broker redelivery, a double tap) escalates once.

    Answers are acknowledged to the broker only after their commit, so a crash between
    the two redelivers one the engine may already have applied.
    """
    c = Clocked(config())
    c.signal("cord-102")
    c.at(5)
    c.respond("n-ost", "a1", "reject")
    c.at(6)
    assert c.respond("n-ost", "a1", "reject").transitions == []
    assert c.rings() == [(0, "n-ost", "pull_cord"), (5, "n-vest", "pull_cord")]


def journaled(c: Clocked, alert_id: str) -> list[tuple[float, str, str]]:
    """An alert's timeline as the journal stores it (the reason goes into the detail)."""
    return [
        (t.ts, t.event, f"{t.detail} ({t.reason})" if t.reason else t.detail)
        for t in c.out.transitions
        if t.alert.id == alert_id
    ]


def restored(c: Clocked, alert_id: str) -> Clocked:
    """A fresh engine holding `alert_id` as the gateway restores it from the journal."""
    alert = c.engine.alert(alert_id)
    assert alert is not None
    rung = list(dict.fromkeys(d.handset for d in c.out.deliveries if d.alert_id == alert_id))
    fresh = Clocked(config(), start=c.start, first_id=100)
    fresh.now = c.now
    seq = max(d.seq for d in c.out.deliveries if d.alert_id == alert_id)
    fresh.engine.restore(alert, rung, seq, timeline=journaled(c, alert_id))
    return fresh


def test_a_restart_remembers_who_declined() -> None:
    """Who said no comes back from the timeline: a second tap after a restart is no news."""
    c = Clocked(config())
    c.signal("cord-102")
    c.at(5)
    busy = Response("n-ost", "a1", ResponseKind.REJECT, c.now, reason="busy")
    c.out.extend(c.engine.handle_response(busy, c.now))
    assert ("rejected", "n-ost (busy)") in [(e, d) for _, e, d in journaled(c, "a1")]
    fresh = restored(c, "a1")
    assert fresh.respond("n-ost", "a1", "reject").transitions == []
    fresh.at(200)
    assert "n-ost" not in {h for _, h, _ in fresh.rings()}


def test_a_restart_counts_a_reject_from_someone_rung_again_since() -> None:
    """Everyone said no, the last step rang them all again: a new no after a restart counts."""
    c = Clocked(config())
    c.signal("cord-102")
    for h in ("n-ost", "n-vest", "vakt"):
        c.at(c.now - c.start + 1)
        c.respond(h, "a1", "reject")
    c.at(200)  # the last step rings everyone again
    fresh = restored(c, "a1")
    assert [t.event for t in fresh.respond("n-ost", "a1", "reject").transitions][:1] == ["rejected"]


def test_a_reject_after_accepting_again_counts() -> None:
    """Reject, then accept after all, then reject: the last reject gives the alert back."""
    c = Clocked(config())
    c.signal("cord-102")
    c.at(5)
    c.respond("n-ost", "a1", "reject")
    c.at(10)
    c.respond("n-ost", "a1")
    c.at(20)
    c.respond("n-ost", "a1", "reject")
    alert = c.engine.alert("a1")
    assert alert is not None
    assert (alert.state, alert.accepted_by) == (AlertState.ACTIVE, None)


def test_accept_stops_escalation_and_reminds() -> None:
    """After an accept nobody else rings; the accepter is reminded after the reminder time."""
    c = Clocked(config())
    c.signal("cord-102")
    c.at(10)
    c.respond("n-ost", "a1")
    c.at(605)
    assert c.rings() == [(0, "n-ost", "pull_cord")]
    c.at(611)
    reminder = [d for d in c.out.deliveries if d.payload.get("reminder")]
    assert [(d.handset, d.action) for d in reminder] == [("n-ost", "ring")]


def test_responses_only_from_handsets_that_got_the_alert() -> None:
    """Unknown alerts and handsets that never rang are refused with a reason."""
    c = Clocked(config())
    c.signal("cord-102")
    assert c.respond("n-vest", "a1").rejected == "not_delivered_to_handset"
    assert c.respond("n-ost", "nope").rejected == "unknown_alert"


def test_roster_by_day_rings_the_day_team_primary() -> None:
    """By day the day shift's primary for the zone takes the alert."""
    c = Clocked(config(), start=DAY)
    c.signal("cord-102")
    assert c.rings() == [(0, "d-ost", "pull_cord")]


def test_roster_override_replaces_the_zone_team() -> None:
    """An override for a zone replaces the shift between its start and end."""
    extra = (
        "  overrides: [{start: '2026-11-24T22:00', end: '2026-11-25T07:00', zone: ost,"
        " handsets: [vakt]}]\n"
    )
    base = YAML.replace("  failsafe: [vakt]\n", "  failsafe: [vakt]\n" + extra)
    c = Clocked(config(base=base))
    c.signal("cord-102")
    assert c.rings() == [(0, "vakt", "pull_cord")]


def test_nobody_on_duty_is_an_alert_to_the_failsafe() -> None:
    """By day zone vest has nobody: the failsafe gets the alert and a no-staff alarm."""
    c = Clocked(config(), start=DAY)
    c.signal("cord-201")
    kinds = sorted((h, k) for _, h, k in c.rings())
    assert ("vakt", "no_staff_on_duty") in kinds
    assert ("vakt", "pull_cord") in kinds


def test_a_staffing_alarm_says_in_its_timeline_whom_it_rang() -> None:
    """The no-staff alarm's first ring is a `ringing` event like any other alert's.

    It had none: an auditor could not tell from the timeline who was told that nobody was
    on duty, and a restart could not tell its current step's handsets.
    """
    c = Clocked(config(), start=DAY)
    c.signal("cord-201")
    (alarm,) = [a for a in c.engine.active if a.kind == "no_staff_on_duty"]
    ringing = [t for t in c.out.transitions if t.alert.id == alarm.id and t.event == "ringing"]
    assert [t.detail for t in ringing] == ["step 2 failsafe: d-ost,d-2,vakt"]
    assert sorted(h for _, h, k in c.rings() if k == "no_staff_on_duty") == ["d-2", "d-ost", "vakt"]
    # Everyone offline: it says so, and it still repeats at the reminder time.
    d = Clocked(config(), start=DAY)
    for h in ("d-ost", "d-2", "vakt"):
        offline(d, h)
    d.out = Outcome()
    d.signal("cord-201")
    (alarm,) = [a for a in d.engine.active if a.kind == "no_staff_on_duty"]
    timeline = [(t.event, t.detail) for t in d.out.transitions if t.alert.id == alarm.id]
    assert timeline[1:] == [("ringing", "step 2 failsafe: "), ("unrouted", "no handset online")]
    assert alarm.due == d.now + 600  # the ladder's reminder


def test_nobody_on_duty_rings_the_failsafe_once_without_reminders() -> None:
    """`reminder: 0` (no reminders after an accept) made the no-staff alarm due at once:
    every handset of the failsafe step got it twice in the same instant."""
    c = Clocked(config(base=YAML.replace("reminder: 600", "reminder: 0")), start=DAY)
    c.signal("cord-201")  # zone vest has nobody by day
    c.at(30)
    assert [k for _, h, k in c.rings("vakt")] == ["no_staff_on_duty", "pull_cord"]
    c.at(61)  # nobody accepted: rung again after the last step's time
    assert sorted(k for t, _, k in c.rings("vakt") if t == 60) == ["no_staff_on_duty", "pull_cord"]


def test_technical_alarms_go_to_the_digest() -> None:
    """Battery-low never rings night handsets; it arrives in the 07:30 digest."""
    c = Clocked(config())
    c.signal("bed-102", kind="battery_low")
    assert c.rings() == []
    c.at(9 * 3600)
    digests = [d for d in c.out.deliveries if d.action == "digest"]
    assert [d.handset for d in digests] == ["tech"]
    assert len(digests[0].payload["items"]) == 1
    local = dt.datetime.fromtimestamp(digests[0].payload["sent_at"], tz=OSLO)
    assert (local.hour, local.minute) == (7, 30)


def restored_technical(c: Clocked, alert_id: str) -> Clocked:
    """A fresh engine holding a technical alert nobody was rung for, as the journal has it."""
    alert = c.engine.alert(alert_id)
    assert alert is not None
    fresh = Clocked(config(), start=c.start, first_id=100)
    fresh.now = c.now
    fresh.engine.restore(alert, [], 0, timeline=journaled(c, alert_id))
    return fresh


def test_a_restart_before_the_digest_keeps_its_items() -> None:
    """A battery low at 00:00, a restart at 01:00: the 07:30 digest still lists it."""
    c = Clocked(config())
    c.signal("bed-102", kind="battery_low")
    c.at(3600)
    fresh = restored_technical(c, "a1")
    fresh.at(9 * 3600)
    digests = [d for d in fresh.out.deliveries if d.action == "digest"]
    assert [(d.handset, d.payload["items"]) for d in digests] == [("tech", ["Battery low bed-102"])]
    local = dt.datetime.fromtimestamp(digests[0].payload["sent_at"], tz=OSLO)
    assert (local.hour, local.minute) == (7, 30)


def test_a_digest_missed_while_down_goes_out_at_the_start_and_only_once() -> None:
    """Down from 01:00 to 08:00: the digest goes at the start; once sent, never again."""
    c = Clocked(config())
    c.signal("bed-102", kind="battery_low")
    c.at(3600)
    timeline = journaled(c, "a1")
    c.now = c.start + 9 * 3600  # 08:00, after the 07:30 that passed while down
    fresh = Clocked(config(), start=c.start, first_id=100)
    fresh.now = c.now
    alert = c.engine.alert("a1")
    assert alert is not None
    fresh.engine.restore(alert, [], 0, timeline=timeline)
    fresh.at(9 * 3600)
    assert [d.action for d in fresh.out.deliveries] == ["digest"]
    assert fresh.events("a1") == ["digest_sent"]
    again = Clocked(config(), start=c.start, first_id=200)  # a restart after it
    again.now = fresh.now
    again.engine.restore(alert, [], 0, timeline=timeline + journaled(fresh, "a1"))
    again.at(40 * 3600)
    assert [d.action for d in again.out.deliveries] == []


def test_a_flapping_technical_sensor_is_one_digest_line_with_a_count() -> None:
    """Battery low raised and cleared all night: one line with a count, not one per flap."""
    c = Clocked(config())
    for hour in range(6):
        c.at(hour * 3600)
        c.signal("bed-102", kind="battery_low")
        c.at(hour * 3600 + 60)
        c.signal("bed-102", "cleared", kind="battery_low")
    c.signal("bed-101", kind="battery_low")
    c.at(9 * 3600)
    (digest,) = [d for d in c.out.deliveries if d.action == "digest"]
    assert digest.payload["items"] == ["Battery low bed-102 (6x)", "Battery low bed-101"]
    assert digest.payload["text"] == "Technical digest: 7 alarm(s)"


def test_a_safety_sensor_the_bridge_reports_offline_rings_the_night_staff_at_once() -> None:
    """The epilepsy sensor drops off the Zigbee network: not a 07:30 digest line only.

    It also used to count as a sign of life, restarting supervision's hour.
    """
    c = Clocked(config("supervision: {kinds: {epilepsy: 3600}}\n"))
    c.signal("epi-101", "report")
    c.at(100)
    c.signal("epi-101", kind="device_offline")
    assert {(h, k) for t, h, k in c.rings() if t == 100} == {("n-ost", "safety_sensor_silent")}
    c.at(4000)  # supervision does not raise it a second time
    silent = [t for t in c.out.transitions if t.alert.kind == "safety_sensor_silent"]
    assert [t.event for t in silent if t.event == "raised"] == ["raised"]
    c.signal("epi-101", "cleared", kind="device_offline")  # back on the network
    assert [t.event for t in c.out.transitions if t.alert.kind == "safety_sensor_silent"][
        -1
    ] == "cleared"


def test_an_offline_report_does_not_end_a_silence_alarm() -> None:
    """Silent for an hour, then the bridge says offline: that is no 'reporting again'."""
    c = Clocked(config("supervision: {kinds: {epilepsy: 900}}\n"))
    c.at(1000)
    (alarm,) = {t.alert.id for t in c.out.transitions if t.alert.kind == "safety_sensor_silent"}
    c.signal("epi-101", kind="device_offline")
    assert "cleared" not in c.events(alarm)


def test_staff_in_the_room_do_not_end_a_safety_sensor_silence_alarm() -> None:
    """A visit to room 101 does not mend its dead epilepsy sensor."""
    c = Clocked(config("supervision: {kinds: {epilepsy: 900}}\n"))
    c.at(1000)
    (alarm,) = {t.alert.id for t in c.out.transitions if t.alert.kind == "safety_sensor_silent"}
    c.signal("pres-101")
    c.at(1100)
    assert c.engine.alert(alarm) is not None
    assert not {"resolved", "suppressed"} & set(c.events(alarm))


def finished(c: Clocked, alert_id: str) -> Alert:
    """An alert's last journaled state (the engine forgets finished alerts)."""
    return [t.alert for t in c.out.transitions if t.alert.id == alert_id][-1]


def restarted_with_finished(c: Clocked, alert_id: str, *, saved: dict[str, Any]) -> Clocked:
    """A fresh engine restored as the gateway does: conditions, then a finished alert."""
    fresh = Clocked(config(), start=c.start, first_id=100)
    fresh.now = c.now
    fresh.engine.tick(c.now)  # the gateway's engine starts at the time it restarts
    fresh.engine.restore_conditions(saved)
    fresh.engine.restore_finished(finished(c, alert_id), journaled(c, alert_id))
    return fresh


def test_a_technical_alarm_that_cleared_before_a_restart_is_still_in_the_digest() -> None:
    """Battery low at 23:00, replaced at 00:00, a restart at 01:00: 07:30 still lists it."""
    c = Clocked(config())
    c.engine.restore_conditions({})  # as the gateway starts, on a fresh journal
    c.signal("bed-102", kind="battery_low")
    c.at(3600)
    c.signal("bed-102", "cleared", kind="battery_low")
    assert finished(c, "a1").state is AlertState.CLEARED
    c.at(7200)
    fresh = restarted_with_finished(c, "a1", saved=c.engine.changed_conditions())
    fresh.at(9 * 3600)
    (digest,) = [d for d in fresh.out.deliveries if d.action == "digest"]
    assert digest.payload["items"] == ["Battery low bed-102"]
    # Marked on the finished alert too, with its final state, and the time journaled.
    (mark,) = [t for t in fresh.out.transitions if t.event == "digest_sent"]
    assert (mark.alert.id, mark.alert.state) == ("a1", AlertState.CLEARED)
    assert fresh.engine.changed_conditions()["engine:digest_sent_at"] == mark.ts


def test_a_finished_alarm_already_in_a_digest_is_not_sent_again_after_a_restart() -> None:
    """Listed at 07:30, a restart at 08:00: tomorrow's digest does not list it again."""
    c = Clocked(config())
    c.engine.restore_conditions({})  # as the gateway starts, on a fresh journal
    c.signal("bed-102", kind="battery_low")
    c.at(3600)
    c.signal("bed-102", "cleared", kind="battery_low")
    c.at(9 * 3600)
    assert [d.action for d in c.out.deliveries] == ["digest"]
    assert c.events("a1")[-1] == "digest_sent"
    fresh = restarted_with_finished(c, "a1", saved=c.engine.changed_conditions())
    fresh.at(40 * 3600)
    assert [d.action for d in fresh.out.deliveries] == []


def test_a_journal_from_before_the_digest_marks_owes_no_finished_alarm() -> None:
    """No digest time journaled (older version): finished alarms count as sent, not twice."""
    c = Clocked(config())
    c.signal("bed-102", kind="battery_low")
    c.at(60)
    c.signal("bed-102", "cleared", kind="battery_low")
    c.at(7200)
    fresh = restarted_with_finished(c, "a1", saved={})
    assert fresh.engine.last_digest == fresh.now
    assert fresh.engine.changed_conditions() == {"engine:digest_sent_at": fresh.now}
    fresh.at(40 * 3600)
    assert [d.action for d in fresh.out.deliveries] == []


def test_a_silent_sensor_alarm_restored_after_a_restart_clears_when_it_reports() -> None:
    """Flagged silent before a restart: its next report ends the alarm, no second one."""
    sup = "supervision: {kinds: {bed_exit: 3600}}\n"
    c = Clocked(config(sup))
    c.signal("bed-102", "cleared")  # bed-102 reports; the others stay quiet
    c.at(4000)
    (silent,) = {t.alert.id for t in c.out.transitions if t.alert.key == "bed-101:silent"}
    alert = c.engine.alert(silent)
    assert alert is not None
    fresh = Clocked(config(sup), start=c.start, first_id=100)
    fresh.now = c.now
    fresh.engine.restore(alert, [], 0, timeline=journaled(c, silent))
    fresh.at(4000 + 3 * 3600)  # still silent: supervision does not raise it again
    assert [t.event for t in fresh.out.transitions if t.alert.key == "bed-101:silent"] == []
    fresh.signal("bed-101", "cleared")
    assert fresh.events(silent) == ["cleared"]
    assert fresh.engine.alert(silent) is None


def test_a_restart_resumes_supervision_where_it_was_without_counting_the_downtime() -> None:
    """Unheard 50 of its 60 minutes before a restart: flagged 10 minutes after the start.

    The two hours the daemon was down count for nothing: a sensor heard 100 s before the
    restart is not called silent at once, however long the restart took.
    """
    sup = "supervision: {kinds: {bed_exit: 3600}}\n"
    c = Clocked(config(sup))
    c.at(2900)
    c.signal("bed-102", "cleared")
    c.at(3000)
    c.journaled = c.engine.changed_conditions()
    assert c.journaled["engine:silent_for"]["bed-101"] == 3000
    fresh = Clocked(config(sup), start=c.now + 7200)
    fresh.engine.restore_conditions(c.journaled)
    fresh.at(590)
    assert not [t for t in fresh.out.transitions if t.alert.kind == "device_silent"]
    fresh.at(620)
    silent = {t.alert.device for t in fresh.out.transitions if t.event == "raised"}
    assert silent == {"bed-101", "bed-201"}  # bed-102 has 2,700 s to go
    fresh.at(3500)
    assert "bed-102" in {t.alert.device for t in fresh.out.transitions if t.event == "raised"}


def test_the_unheard_times_are_journaled_every_five_minutes_not_every_batch() -> None:
    """A snapshot per supervision check would be a journal write every 10 s."""
    c = Clocked(config("supervision: {kinds: {bed_exit: 3600}}\n"))
    c.at(100)
    assert "engine:silent_for" not in c.engine.changed_conditions()
    c.at(310)
    assert "engine:silent_for" in c.engine.changed_conditions()
    c.at(400)
    assert "engine:silent_for" not in c.engine.changed_conditions()


def test_technical_immediate_when_digest_off() -> None:
    """With digest off, technical alarms ring the technician handset at once."""
    c = Clocked(config(base=YAML.replace("digest: true", "digest: false")))
    c.signal("bed-102", kind="battery_low")
    assert c.rings() == [(0, "tech", "battery_low")]


def test_rate_limit_batches_non_critical_rings() -> None:
    """Past the per-handset budget, rings wait and arrive as one batch message."""
    c = Clocked(config("rate_limit: {max: 2, per: 300}\n"))
    for device in ("cord-101", "cord-102"):
        c.signal(device)
    c.signal("bed-101", kind="water_leak")  # no rule: rings at once, but over budget
    c.signal("epi-101")  # critical: never batched
    kinds = [k for _, _, k in c.rings("n-ost")]
    assert kinds == ["pull_cord", "pull_cord", "epilepsy"]
    c.at(1)
    for alert_id in ("a1", "a2", "a4"):
        c.respond("n-ost", alert_id)
    c.at(301)
    batches = [d for d in c.out.deliveries if d.action == "batch" and d.handset == "n-ost"]
    assert len(batches) == 1
    assert [a["kind"] for a in batches[0].payload["alerts"]] == ["water_leak"]


def test_sensor_supervision_raises_and_clears() -> None:
    """A silent epilepsy sensor rings the zone at once; its next report clears it."""
    c = Clocked(config("supervision: {kinds: {epilepsy: 600}}\n"))
    c.at(601)
    silent = [r for r in c.rings() if r[2] == "safety_sensor_silent"]
    assert silent
    assert silent[0][1] == "n-ost"
    c.signal("epi-101", "report")
    assert any(
        t.event == "cleared" and t.alert.kind == "safety_sensor_silent" for t in c.out.transitions
    )


def test_reconfigure_keeps_active_alerts_and_timers() -> None:
    """A hot reload keeps a held alert's deadline and sends nothing again."""
    c = Clocked(config())
    c.signal("bed-101")
    c.at(10)
    sent_before = len(c.out.deliveries)
    c.engine.reconfigure(config("rate_limit: {max: 5, per: 60}\n"))
    assert len(c.out.deliveries) == sent_before
    c.at(50)
    assert c.rings() == [(45, "n-ost", "bed_exit")]


def test_restore_resumes_an_escalation() -> None:
    """An alert restored after a restart escalates when its persisted deadline passes."""
    c = Clocked(config())
    c.signal("cord-102")
    c.at(30)
    alert = c.engine.alert("a1")
    assert alert is not None
    fresh = Clocked(config(), start=c.start)
    fresh.engine.restore(alert, ["n-ost"], last_seq=1)
    fresh.at(61)
    assert fresh.rings() == [(60, "n-vest", "pull_cord")]
    assert fresh.out.deliveries[0].seq == 2


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("{name: slow-fall, match: {kinds: [fall]}, hold_off: 10}", "critical kind"),
        ("{name: quiet, match: {}, action: suppress}", "critical kind"),
        ("{name: grouped, match: {kinds: [epilepsy]}, group: 60}", "critical kind"),
    ],
)
def test_check_rejects_rules_that_would_delay_critical(rule: str, message: str) -> None:
    """A rule that would hold, group or suppress a critical kind fails `check`, naming it."""
    text = YAML.replace("rules:\n", f"rules:\n  - {rule}\n")
    with pytest.raises(ConfigError) as exc:
        parse_config(text, filename="bad.yaml")
    line = exc.value.problems[0]
    assert message in line
    assert line.startswith("bad.yaml:")
    assert rule.split(",", maxsplit=1)[0].split(": ")[1] in line


def test_check_rejects_a_ladder_without_failsafe() -> None:
    """An escalation ladder must end with the failsafe step."""
    text = YAML.replace("{to: failsafe, after: 60}]", "{to: zone, after: 60}]")
    with pytest.raises(ConfigError) as exc:
        parse_config(text, filename="bad.yaml")
    assert "escalation.default.steps" in exc.value.problems[0]
    assert "failsafe" in exc.value.problems[0]


def test_alert_is_frozen() -> None:
    """Alerts crossing the engine boundary are immutable."""
    c = Clocked(config())
    c.signal("cord-102")
    alert = c.engine.alert("a1")
    assert alert is not None
    with pytest.raises(dataclasses.FrozenInstanceError):
        alert.state = AlertState.CLEARED  # type: ignore[misc]


def test_display_text_is_stripped_of_control_characters_and_capped() -> None:
    """A kind from a payload with control characters cannot reach a handset's display raw."""
    c = Clocked(config())
    c.signal("cord-102", kind="x\x02\x03\x1e\x04" + "y" * 500)
    text = c.out.deliveries[0].payload["text"]
    assert not any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in text)
    assert len(text) <= 120


def test_presence_keeps_a_still_active_bed_exit_armed() -> None:
    """Staff leaving while the bed is still empty re-raises the bed exit with a fresh hold-off."""
    c = Clocked(config())
    c.signal("bed-102")  # held 20 min
    c.at(60)
    c.signal("pres-102")  # staff round cancels the held alert
    c.at(120)
    c.signal("pres-102", "cleared")  # staff leave; the bed is still empty
    c.at(120 + 1201)
    assert c.rings() == [(1320, "n-ost", "bed_exit")]


def test_presence_does_not_rearm_a_condition_that_cleared() -> None:
    """A bed exit that clears while staff are present is not raised again when they leave."""
    c = Clocked(config())
    c.signal("pres-102")
    c.signal("bed-102")  # suppressed by presence, armed
    c.signal("bed-102", "cleared")
    c.signal("pres-102", "cleared")
    c.at(3000)
    assert c.rings() == []


def restarted(c: Clocked, cfg: Config) -> Clocked:
    """A fresh engine at `c`'s time that reloads what `c` journaled (alerts and conditions)."""
    fresh = Clocked(cfg, start=c.start)
    fresh.now = c.now
    fresh.engine.restore_conditions(c.engine.changed_conditions() | c.journaled)
    return fresh


def test_a_restart_keeps_a_bed_exit_muted_by_presence() -> None:
    """Staff in the room at a restart; they leave after it; the bed is still empty: it rings.

    The sensor's level is journaled, so no new edge comes after the restart: an engine that
    forgot the muted condition would never ring this bed exit.
    """
    c = Clocked(config())
    c.signal("pres-102")
    c.signal("bed-102")  # suppressed by presence, armed
    c.journaled = c.engine.changed_conditions()
    assert any(k.startswith("engine:armed:") for k in c.journaled)
    fresh = restarted(c, config())
    fresh.signal("pres-102", "cleared")
    fresh.at(1250)
    assert fresh.rings() == [(1200, "n-ost", "bed_exit")]


def test_a_restart_keeps_presence_until_it_expires() -> None:
    """Presence journaled with its expiry: after a restart it still mutes, then lapses."""
    c = Clocked(config("presence: {timeout: 600}\n"))
    c.signal("pres-102")
    c.signal("bed-102")
    c.journaled = c.engine.changed_conditions()
    fresh = restarted(c, config("presence: {timeout: 600}\n"))
    fresh.at(599)
    assert bed_exits(fresh) == []
    fresh.at(1810)  # presence expired at 600; the bed exit comes back and holds 1200 s
    assert fresh.rings() == [(1800, "n-ost", "bed_exit")]


def test_conditions_are_journaled_only_when_they_change() -> None:
    """Nothing armed: nothing to write; a disarmed condition is written as None (removed)."""
    c = Clocked(config())
    assert c.engine.changed_conditions() == {}
    c.signal("pres-102")
    c.signal("bed-102")
    first = c.engine.changed_conditions()
    assert set(first) == {"engine:present:102", "engine:armed:bed-102:bed_exit"}
    assert c.engine.changed_conditions() == {}
    c.signal("bed-102", "cleared")
    c.signal("pres-102", "cleared")
    assert c.engine.changed_conditions() == dict.fromkeys(first)


def test_reconfigure_keeps_a_queued_digest() -> None:
    """Technical items queued before a reload still go out in the digest."""
    c = Clocked(config())
    c.signal("bed-102", kind="battery_low")
    c.engine.reconfigure(config("rate_limit: {max: 5, per: 60}\n"))
    c.at(9 * 3600)
    assert [d.handset for d in c.out.deliveries if d.action == "digest"] == ["tech"]


# -- who has an alert: presence, rejects, failed pages, repeats (from a review) ------------


def test_presence_stops_a_critical_button_alarm_and_leaving_resolves_it() -> None:
    """An EMERGENCY press attended in the room is resolved when staff leave; a new press rings."""
    c = Clocked(config())
    c.signal("cord-102", kind="emergency")
    c.at(20)
    c.signal("pres-102")
    c.at(60)
    c.signal("pres-102", "cleared")
    assert c.events("a1") == ["raised", "ringing", "accepted", "resolved"]
    assert [d.action for d in c.out.deliveries if d.alert_id == "a1"] == [
        "ring",
        "update",
        "cancel",
    ]
    c.at(120)
    c.signal("cord-102", kind="emergency")
    assert c.rings() == [(0, "n-ost", "emergency"), (120, "n-ost", "emergency")]
    c.at(2000)  # no reminder is ever addressed to "presence:102"
    assert {d.handset for d in c.out.deliveries} <= set(c.engine.config.handsets)


def test_presence_stops_a_critical_sensor_alarm_until_staff_leave() -> None:
    """A fall still raised when staff leave rings its team again; a handset may take it over."""
    c = Clocked(config())
    c.signal("fall-102")
    c.at(20)
    c.signal("pres-102")
    c.at(600)  # staff stay ten minutes: no escalation, no reminder
    assert c.rings() == [(0, "n-ost", "fall")]
    assert c.respond("n-ost", "a1").rejected is None  # take-over from presence is allowed
    assert c.engine.alert("a1").accepted_by == "n-ost"  # type: ignore[union-attr]
    c.respond("n-ost", "a1", "reject")
    c.signal("pres-102")
    c.at(700)
    c.signal("pres-102", "cleared")
    assert c.engine.alert("a1").state is AlertState.ACTIVE  # type: ignore[union-attr]
    assert "reopened" in c.events("a1")
    assert (700, "n-ost", "fall") in c.rings()


def test_presence_expiry_after_a_restart_recalls_the_critical_alarm() -> None:
    """Presence is not journaled; the alarm's own timer notices the room is empty again."""
    c = Clocked(config("presence: {timeout: 300}\n"))
    c.signal("fall-102")
    c.at(10)
    c.signal("pres-102")
    alert = c.engine.alert("a1")
    assert alert is not None
    assert alert.due == c.start + 310  # the presence's expiry
    fresh = Clocked(config("presence: {timeout: 300}\n"))
    fresh.engine.restore(alert, ["n-ost"], 2)  # a restart forgets who is in which room
    fresh.at(311)
    assert fresh.rings() == [(310, "n-ost", "fall")]
    assert fresh.events("a1")[:2] == ["reopened", "ringing"]


def test_reject_by_the_accepter_gives_the_alert_back() -> None:
    """A nurse who accepted and then cannot go rejects: the alert moves on at once."""
    c = Clocked(config())
    c.signal("cord-102")
    c.at(10)
    c.respond("n-ost", "a1")
    c.at(30)
    c.respond("n-ost", "a1", "reject")
    alert = c.engine.alert("a1")
    assert alert is not None
    assert (alert.state, alert.accepted_by) == (AlertState.ACTIVE, None)
    assert c.rings() == [(0, "n-ost", "pull_cord"), (30, "n-vest", "pull_cord")]


def test_a_failed_page_moves_on_but_does_not_exclude_the_handset() -> None:
    """Pages that fail once are retried at the last step: a critical alarm never rings nobody."""
    c = Clocked(config())
    c.signal("fall-102")
    c.out.extend(c.engine.handle_delivery_failed("n-ost", "a1", c.now))
    c.at(1)
    c.out.extend(c.engine.handle_delivery_failed("n-vest", "a1", c.now))
    c.out.extend(c.engine.handle_delivery_failed("vakt", "a1", c.now))
    c.at(62)
    assert "unrouted" not in c.events("a1")
    assert {h for t, h, _ in c.rings() if t == 61} == {"n-ost", "n-vest", "vakt"}


def test_everyone_rejecting_still_rings_the_last_step() -> None:
    """When every handset rejects, the last step rings them again instead of nobody."""
    c = Clocked(config())
    c.signal("cord-102")
    for h in ("n-ost", "n-vest", "vakt"):
        c.at(c.now - c.start + 1)
        c.respond(h, "a1", "reject")
    c.at(200)
    assert "unrouted" not in c.events("a1")
    assert {h for t, h, _ in c.rings() if t > 3} == {"n-ost", "n-vest", "vakt"}


def test_a_repeat_after_accept_reaches_the_accepter() -> None:
    """A new EMERGENCY press rings the accepter again; a new cord pull shows them the count."""
    c = Clocked(config())
    c.signal("cord-102", kind="emergency")
    c.respond("n-ost", "a1")
    c.at(240)
    repeat = c.signal("cord-102", kind="emergency")
    assert [(d.handset, d.action, d.payload["count"]) for d in repeat.deliveries] == [
        ("n-ost", "ring", 2)
    ]
    c.signal("cord-101")
    c.respond("n-ost", "a2")
    c.at(780)
    repeat = c.signal("cord-101")
    assert [(d.handset, d.action, d.payload["count"]) for d in repeat.deliveries] == [
        ("n-ost", "update", 2)
    ]


def test_a_sensor_that_reports_again_is_not_re_raised_silent() -> None:
    """A silence alarm armed by presence is forgotten when the sensor reports again."""
    c = Clocked(config("supervision: {kinds: {epilepsy: 600}}\n"))
    c.at(601)
    assert c.events("a1")[:1] == ["raised"]
    c.signal("pres-101")  # the nurse comes to swap the battery
    c.signal("epi-101", "report")
    c.signal("pres-101", "cleared")
    c.at(1100)  # before the sensor could be silent again
    assert [a.kind for a in c.engine.active] == []
    assert [k for _, _, k in c.rings()] == ["safety_sensor_silent"]


def test_a_device_added_by_reload_is_supervised_from_the_reload() -> None:
    """A sensor installed hours after start is not called silent at once."""
    supervised = "supervision: {kinds: {smoke: 600}}\n"
    c = Clocked(config(supervised))
    c.at(7200)
    base = YAML.replace("  pres-101:", '  smoke-103: {room: "103", kind: smoke}\n  pres-101:')
    c.engine.reconfigure(config(supervised, base=base), c.now)
    c.at(7210)
    assert c.rings() == []
    c.at(7805)
    assert [(k, t) for t, _, k in c.rings()] == [("safety_sensor_silent", 7800)]


def test_a_silent_safety_sensor_is_never_batched() -> None:
    """Past the rate limit ordinary rings are batched; a dead safety sensor still rings."""
    c = Clocked(config("rate_limit: {max: 1, per: 600}\nsupervision: {kinds: {epilepsy: 600}}\n"))
    c.at(500)
    c.signal("epi-101", "report")
    c.signal("cord-101")
    c.signal("cord-102")
    assert "batched" in c.events("a2")
    c.at(1200)  # epi-101 has been silent 700 s
    assert "safety_sensor_silent" in [k for _, _, k in c.rings()]


def test_a_roster_without_failsafe_is_refused_when_the_default_ladder_applies() -> None:
    """The built-in ladder ends at the failsafe group, so a roster must name one."""
    base = YAML.replace("  failsafe: [vakt]\n", "").replace(
        YAML[YAML.index("escalation:") : YAML.index("rules:")], ""
    )
    with pytest.raises(ConfigError, match=r"roster\.failsafe"):
        config(base=base)


# -- a stepped wall clock (NTP correction, an RTC restored at boot) ----------------------


def test_a_clock_stepped_back_does_not_stall_hold_off_or_escalation() -> None:
    """The clock steps back 1 h during a 45 s hold-off: it rings at 45 s, escalates every 60 s."""
    c = Clocked(config())
    c.signal("bed-101")  # fall risk, night: held 45 s
    c.at(10)
    c.step(-3600)
    c.at(200)
    assert c.rings() == [
        (45, "n-ost", "bed_exit"),
        (105, "n-vest", "bed_exit"),
        (165, "vakt", "bed_exit"),
    ]


def test_a_clock_stepped_forward_does_not_call_a_reporting_sensor_silent() -> None:
    """A sensor heard 10 s before the clock jumps 6 h ahead is silent only 600 s later."""
    c = Clocked(config("supervision: {kinds: {epilepsy: 600}}\n"))
    c.at(300)
    c.signal("epi-101", "report")
    c.at(310)
    c.step(6 * 3600)
    c.at(320)
    assert c.rings() == []
    c.at(920)
    assert [k for _, _, k in c.rings()] == ["safety_sensor_silent"]


def test_a_clock_step_moves_presence_expiry() -> None:
    """Presence (1 h timeout) expires 1 h after it began, not 2 h, when the clock steps back."""
    c = Clocked(config())
    c.signal("pres-102")  # a clear that is never seen: presence expires after 3600 s
    c.signal("bed-102")  # muted by presence, armed
    c.at(10)
    c.step(-3600)
    c.at(3601 + 1200)  # the re-raised bed exit's night hold-off is 1200 s
    assert c.rings() == [(4800, "n-ost", "bed_exit")]


def test_a_clock_step_moves_the_rate_limit_window() -> None:
    """Rings batched past the rate limit go out when the window ends in elapsed time."""
    c = Clocked(config("rate_limit: {max: 1, per: 600}\n"))
    c.signal("cord-101")
    c.signal("cord-201")
    c.signal("cord-102")  # n-ost had its one ring: batched until 600 s
    c.at(10)
    c.step(-3600)
    c.at(601)
    batches = [d for d in c.out.deliveries if d.action == "batch" and d.handset == "n-ost"]
    assert [round(d.payload["sent_at"] - c.start) for d in batches] == [600]


# -- a level condition a schedule-bound rule suppressed, when the schedule changes --------

EVENING = dt.datetime(2026, 11, 24, 21, 55, tzinfo=OSLO).timestamp()


def test_a_bed_exit_suppressed_by_day_is_decided_again_when_the_night_starts() -> None:
    """Out of bed at 21:55 (bed-day: suppressed), still out at 22:00: the night hold-off rings."""
    c = Clocked(config(), start=EVENING)
    c.signal("bed-102")
    c.at(300 + 1199)  # the bed sensor has sent nothing new since 21:55
    assert c.rings() == []
    c.at(300 + 1200)  # 22:00 + the night rule's 20 min hold-off
    assert c.rings() == [(1500, "n-ost", "bed_exit")]


def test_a_bed_exit_cleared_before_the_night_does_not_come_back() -> None:
    """Back in bed at 21:58: nothing is raised at 22:00."""
    c = Clocked(config(), start=EVENING)
    c.signal("bed-102")
    c.at(180)
    c.signal("bed-102", "cleared")
    c.at(3600)
    assert c.rings() == []


def test_a_button_pressed_during_a_suppressing_schedule_does_not_come_back() -> None:
    """A pull cord suppressed by a daytime rule is a press, not a condition: 22:00 is quiet."""
    day_cords = (
        "  - {name: cord-day, match: {kinds: [pull_cord], schedule: day}, action: suppress}\n"
    )
    c = Clocked(config(base=YAML.replace("rules:\n", "rules:\n" + day_cords)), start=EVENING)
    c.signal("cord-102")
    c.at(3600)
    assert c.rings() == []


def test_a_reload_decides_again_a_condition_its_removed_rule_suppressed() -> None:
    """Removing bed-day by reload at 21:56 rings the bed still empty since 21:55 at once."""
    c = Clocked(config(), start=EVENING)
    c.signal("bed-102")
    c.at(60)
    rule = "  - {name: bed-day, match: {kinds: [bed_exit], schedule: day}, action: suppress}\n"
    c.engine.reconfigure(config(base=YAML.replace(rule, "")), c.now)
    c.at(61)
    assert c.rings() == [(60, "d-ost", "bed_exit")]


def test_a_call_from_an_unknown_call_point_rings_everyone_on_duty_not_the_digest() -> None:
    """Technical (nobody mapped the call point), but a person is waiting behind it."""
    c = Clocked(config())
    sig = Signal(
        "u1", "nurse", "espa:ward:999", "", "unknown_call_point", SignalState.RAISED, c.now
    )
    c.out.extend(c.engine.handle_signal(sig, c.now))
    assert sorted(h for _, h, _ in c.rings()) == ["n-ost", "n-vest", "tech", "vakt"]
    assert "digest" not in c.events("a1")
    c.at(3600)  # nobody answered, and the call point calls again: everyone rings again
    again = dataclasses.replace(sig, id="u2", ts=c.now)
    c.out.extend(c.engine.handle_signal(again, c.now))
    assert sorted(h for t, h, _ in c.rings() if t == 3600) == ["n-ost", "n-vest", "tech", "vakt"]


# -- review: failing tests for engine findings ---------------------------------------------


def test_a_pull_cord_does_not_join_a_technical_alarm_that_rings_only_the_technician() -> None:
    """A call grouped into the room's battery alarm would reach only the technician, for good.

    With the digest off a technical alarm rings the technician's handset and stays open with no
    escalation timer; a pull cord in that room within the group window must still ring the
    night nurse (and escalate), not become a silent member of the technician's alarm.
    """
    c = Clocked(config(base=YAML.replace("digest: true", "digest: false")))
    c.signal("bed-101", kind="battery_low")  # a1: rings tech
    c.at(30)
    c.signal("cord-101")  # a2: the resident calls
    c.at(300)
    assert (30, "n-ost", "pull_cord") in c.rings()
    assert "grouped" not in c.events("a2")


def test_a_condition_a_catch_all_rule_suppressed_is_decided_again_when_a_schedule_starts() -> None:
    """`bed exits ring at night, otherwise suppress`: out of bed at 21:55, still out at 22:00.

    The suppressing rule has no schedule, but the decision depends on the schedule of the
    night rule above it (first match wins): at 22:00 the bed still empty must be decided
    again, as it is when the suppressing rule itself names a schedule.
    """
    day_rule = "  - {name: bed-day, match: {kinds: [bed_exit], schedule: day}, action: suppress}\n"
    otherwise = "  - {name: bed-otherwise, match: {kinds: [bed_exit]}, action: suppress}\n"
    c = Clocked(config(base=YAML.replace(day_rule, otherwise)), start=EVENING)
    c.signal("bed-102")  # 21:55: suppressed by bed-otherwise
    c.at(300 + 1200 + 1)  # 22:00 + the night rule's 20 min hold-off; never cleared
    assert c.rings() == [(1500, "n-ost", "bed_exit")]


def test_a_condition_muted_by_presence_keeps_its_source_for_the_rules() -> None:
    """A bed exit from the Zigbee mats, muted by a staff visit, comes back as a Zigbee signal.

    `_arm` promises that rules matching on `sources` still match a re-raised condition; an
    alert that was already open when staff came in is armed without its source, comes back
    as source "presence", and falls to the catch-all suppress: the bed never rings again.
    """
    rules = (
        "  - {name: bed-z2m, match: {kinds: [bed_exit], sources: [z2m]}, hold_off: 45}\n"
        "  - {name: bed-legacy, match: {kinds: [bed_exit]}, action: suppress}\n"
    )
    old = YAML[YAML.index("  - {name: bed-fall-risk") : YAML.index("  - {name: cord")]
    base = YAML.replace(old, rules).replace(
        "rules:\n", "sources:\n  z2m: {type: simulator}\nrules:\n"
    )
    c = Clocked(config(base=base))
    bed = Signal("z1", "z2m", "bed-102", "102", "bed_exit", SignalState.RAISED, c.now)
    c.out.extend(c.engine.handle_signal(bed, c.now))
    c.at(60)  # rang at 45 s
    c.signal("pres-102")  # a staff round resolves it; the bed is still empty
    c.at(120)
    c.signal("pres-102", "cleared")  # staff leave
    c.at(200)
    assert c.rings() == [(45, "n-ost", "bed_exit"), (165, "n-ost", "bed_exit")]


def test_a_group_leader_whose_condition_cleared_is_not_raised_again_after_presence() -> None:
    """A closed door that led a group is not rung again as open when staff leave the room."""
    c = Clocked(config())
    c.signal("door-101")  # a1 rings
    c.at(10)
    c.signal("cord-101")  # a2 joins a1
    c.at(20)
    c.signal("door-101", "cleared")  # the door is closed: a1 waits for its member
    c.at(30)
    c.signal("pres-101")  # staff come: a1 and a2 resolved
    c.at(90)
    c.signal("pres-101", "cleared")  # staff leave; the door is still closed
    c.at(300)
    assert [r for r in c.rings() if r[2] == "door_open"] == [(0, "n-ost", "door_open")]
    assert c.engine.active == []


def test_a_technical_alarm_the_technician_rejects_never_rings_night_handsets() -> None:
    """Battery low rejected by the technician must not climb the night ladder to every nurse."""
    c = Clocked(config(base=YAML.replace("digest: true", "digest: false")))
    c.signal("bed-101", kind="battery_low")
    c.at(10)
    c.respond("tech", "a1", "reject")
    c.at(600)
    assert {h for _, h, _ in c.rings()} <= {"tech"}


def test_a_technical_alarm_given_back_by_its_accepter_never_rings_night_handsets() -> None:
    """The technician accepts a battery low, then rejects it (cannot come tonight).

    The reopened alarm kept its reminder's deadline; when it fell due the alarm climbed the
    night ladder and rang every nurse and the failsafe about a battery, once a minute.
    """
    c = Clocked(config(base=YAML.replace("digest: true", "digest: false")))
    c.signal("bed-101", kind="battery_low")
    c.respond("tech", "a1", "accept")
    c.at(10)
    c.respond("tech", "a1", "reject")
    c.at(3600)
    assert {h for _, h, _ in c.rings()} == {"tech"}
    assert "escalated" not in c.events("a1")
    assert c.engine.alert("a1") is not None  # still open to the technicians


def test_staff_presence_neither_resolves_nor_holds_back_a_technical_alarm() -> None:
    """A night nurse visiting room 102 does not replace the battery of its bed sensor.

    Presence resolved the technician's battery alarm (a cancel to the technician) and armed
    it, so it rang the technician again when the nurse left: at every staff visit. One
    raised while the nurse was there waited for them to leave.
    """
    c = Clocked(config(base=YAML.replace("digest: true", "digest: false")))
    c.signal("bed-102", kind="battery_low")  # a1 rings the technician
    c.at(10)
    c.signal("pres-102")
    c.at(60)
    c.signal("door-101", kind="battery_low")  # room 101: no staff there
    c.signal("cord-102", kind="battery_low")  # room 102, staff there: rings at once
    c.signal("pres-102", "cleared")
    c.at(120)
    assert c.rings("tech") == [
        (0, "tech", "battery_low"),
        (60, "tech", "battery_low"),
        (60, "tech", "battery_low"),
    ]
    assert c.events("a1") == ["raised"]
    assert not [d for d in c.out.deliveries if d.action == "cancel"]


def test_a_call_from_a_zone_with_nobody_on_duty_is_never_batched() -> None:
    """README: rate-limit batching never applies to a zone with nobody on duty.

    By day zone vest has nobody: a second call from room 201 goes straight to the failsafe
    step while the zone's no-staff alarm is still open; it must ring at once, not wait up to
    `rate_limit.per` in a batch for every handset that could go.
    """
    c = Clocked(config("rate_limit: {max: 1, per: 300}\n"), start=DAY)
    c.signal("cord-201")  # a1 (and the no-staff alarm a2): the failsafe step rings
    c.at(10)
    c.respond("vakt", "a1", "resolve")
    c.at(20)
    c.signal("cord-201")  # a3: the resident calls again
    assert [h for t, h, k in c.rings() if t == 20 and k == "pull_cord"] != []


def test_a_member_restored_before_its_leader_still_follows_it() -> None:
    """Restored in raise order, a held alert that joined later may come back first."""
    c = Clocked(config())
    c.signal("cord-101")
    c.at(20)
    c.signal("door-101")  # joins a1
    leader, member = c.engine.alert("a1"), c.engine.alert("a2")
    assert leader is not None
    assert member is not None
    assert member.group == "a1"
    fresh = Clocked(config(), start=c.start)
    fresh.now = c.now
    fresh.engine.restore(member, [], 0)
    fresh.engine.restore(leader, ["n-ost"], 2)
    fresh.respond("n-ost", "a1", "resolve")
    assert fresh.engine.alert("a2") is None  # resolved with its leader, not left behind


def test_a_restored_leader_whose_condition_cleared_ends_with_its_last_member() -> None:
    """The door closed before the restart: after it the leader still waits only for the cord."""
    c = Clocked(config())
    c.signal("door-101")  # a1 leads
    c.at(10)
    c.signal("cord-101")  # a2 joins
    c.signal("door-101", "cleared")  # a1 waits for its member
    leader, member = c.engine.alert("a1"), c.engine.alert("a2")
    assert leader is not None
    assert member is not None
    fresh = Clocked(config(), start=c.start, first_id=10)
    fresh.now = c.now
    fresh.engine.restore(leader, ["n-ost"], 1, condition_cleared=True)
    fresh.engine.restore(member, [], 0)
    fresh.signal("door-101")  # the door opens again: a new alert (joining a1), not a repeat
    assert fresh.engine.alert("a10") is not None
    fresh.signal("cord-101", "cleared")
    fresh.signal("door-101", "cleared")  # the last member: the leader ends with it
    assert fresh.engine.alert("a1") is None


# -- review of the session diff: failing tests ---------------------------------------------


def test_changed_conditions_reports_only_what_changed_among_many() -> None:
    """`changed_conditions` runs for every routed batch: it reports only the changed entries.

    By day the bed-day rule keeps every empty bed of a 500-bed site armed; a batch that
    changed one of them must not rebuild (or rewrite) the other 499. The cost itself is
    measured by the benchmark, not here.
    """
    beds = "".join(f'  bed-x{i}: {{room: "102", kind: bed_exit}}\n' for i in range(500))
    c = Clocked(config(base=YAML.replace("devices:\n", "devices:\n" + beds)), start=DAY)
    for i in range(500):
        c.signal(f"bed-x{i}")  # suppressed by bed-day, armed until the schedule changes
    assert len(c.engine.changed_conditions()) == 500  # journaled once
    assert c.engine.changed_conditions() == {}
    c.signal("bed-x7", "cleared")  # back in bed: disarmed
    assert c.engine.changed_conditions() == {"engine:armed:bed-x7:bed_exit": None}
    assert c.engine.changed_conditions() == {}


def test_a_condition_the_same_rule_still_suppresses_is_not_raised_again_at_each_boundary() -> None:
    """A catch-all suppress re-decided at 22:00, 07:00 and every reload: same rule, no news.

    Every rule suppression is now decided again at every schedule boundary and reload. A
    condition the same rule still suppresses comes back as a new alert each time ("raised",
    "suppressed", a new alert row and id, a new journal level row): a site with a hundred
    motion sensors a catch-all mutes shows the municipality hundreds of phantom alerts a day.
    """
    base = YAML.replace("devices:\n", 'devices:\n  mot-101: {room: "101", kind: motion}\n')
    base = base.replace(
        "rules:\n", "rules:\n  - {name: no-motion, match: {kinds: [motion]}, action: suppress}\n"
    )
    c = Clocked(config(base=base), start=EVENING)
    c.signal("mot-101")  # 21:55: suppressed by no-motion; the sensor stays raised
    c.engine.changed_conditions()
    c.at(12 * 3600)  # through 22:00 and 07:00: two schedule boundaries
    c.engine.reconfigure(config(base=base), c.now)  # a reload that changes nothing
    c.at(12 * 3600 + 1)
    raised = [t for t in c.out.transitions if t.alert.kind == "motion" and t.event == "raised"]
    assert len(raised) == 1, [(round(t.ts - c.start), t.alert.id) for t in raised]
    assert c.engine.changed_conditions() == {}


def test_a_technical_alarm_whose_page_to_the_technician_failed_is_not_dropped() -> None:
    """The paging system fault, paged to the technician's pager on that paging system.

    The pager refuses it (delivery failed). `_escalate` now returns early for technical
    alarms, so a failed page moves nothing on: the alarm stays active with no timer and no
    handset that ever got it; nobody is told, tonight or later.
    """
    c = Clocked(config(base=YAML.replace("digest: true", "digest: false")))
    sig = Signal("p1", "espa", "espa:ward", "", "paging_fault", SignalState.RAISED, c.now)
    c.out.extend(c.engine.handle_signal(sig, c.now))
    assert c.rings() == [(0, "tech", "paging_fault")]
    c.at(5)
    c.out.extend(c.engine.handle_delivery_failed("tech", "a1", c.now))
    c.at(3600)
    assert [r for r in c.rings() if r[0] > 5], c.events("a1")


def test_a_grouped_door_still_open_comes_back_when_staff_leave() -> None:
    """A door that joined a pull cord's group is a condition like a door alone.

    Presence resolves the group; only the leader is armed, so when staff leave with the door
    still open it never rings again (a door alone does, see test_presence_suppresses_and_attends).
    """
    c = Clocked(config())
    c.signal("cord-101")  # a1 rings
    c.at(10)
    c.signal("door-101")  # a2 joins a1; the door stays open
    c.at(30)
    c.signal("pres-101")  # staff come: a1 and a2 resolved
    c.at(120)
    c.signal("pres-101", "cleared")  # staff leave; the door is still open
    c.at(400)
    assert (120, "n-ost", "door_open") in c.rings()


def test_a_call_from_a_zone_with_nobody_on_duty_is_not_batched_when_rung_again() -> None:
    """README: batching never applies to a call from a zone with nobody on duty.

    Only the first ring of such a call skips the rate limit; the failsafe step rung again
    (nobody accepted) is batched for up to `rate_limit.per`.
    """
    c = Clocked(config("rate_limit: {max: 1, per: 300}\n"), start=DAY)
    c.signal("cord-201")  # a1: zone vest has nobody by day; the failsafe step rings
    c.at(200)  # not accepted: the failsafe step rings again every 60 s
    assert "batched" not in c.events("a1"), c.events("a1")


# -- latching alarms (IEC 60601-1-8): a critical sensor alarm outlives its condition -------


def test_a_seizure_that_stops_before_anyone_came_keeps_ringing_until_accepted() -> None:
    """The epilepsy sensor clears after 40 s: the alarm still escalates, and says it ended."""
    c = Clocked(config())
    c.signal("epi-101")
    c.at(40)
    cleared = c.signal("epi-101", "cleared")
    assert [t.event for t in cleared.transitions] == ["condition_cleared"]
    assert cleared.deliveries == []  # nothing changes on the handsets: it still rings
    alert = c.engine.alert("a1")
    assert alert is not None
    assert alert.state is AlertState.ACTIVE
    c.at(200)  # nobody answered: the ladder goes on
    later = [d for d in c.out.deliveries if d.alert_id == "a1" and d.action == "ring"][1:]
    assert later, "the latched alarm escalated"
    assert all(d.payload["condition_cleared"] is True for d in later)
    assert "condition_cleared" not in c.out.deliveries[0].payload  # the first ring: still on
    done = c.respond("n-ost", "a1")  # the acknowledgement ends it
    assert [t.event for t in done.transitions] == ["accepted", "cleared"]
    assert c.engine.alert("a1") is None
    assert {d.action for d in done.deliveries} == {"update", "cancel"}


def test_a_latched_alarm_is_resolved_by_staff_in_the_room() -> None:
    """Staff pressing presence in the room attended the fall that had cleared."""
    c = Clocked(config())
    c.signal("fall-102")
    c.at(30)
    c.signal("fall-102", "cleared")
    c.at(50)
    c.signal("pres-102")
    assert c.events("a1") == ["raised", "ringing", "condition_cleared", "resolved"]
    resolved = [t for t in c.out.transitions if t.event == "resolved"]
    assert resolved[0].reason == "presence"


def test_a_latched_alarm_taken_by_presence_is_resolved_when_staff_leave() -> None:
    """The fall clears while staff are in the room (presence took it): leaving resolves it."""
    c = Clocked(config())
    c.signal("fall-102")
    c.at(20)
    c.signal("pres-102")  # presence stops the escalation; the alarm is theirs
    c.signal("fall-102", "cleared")  # an acknowledged alarm ends with its condition
    assert c.events("a1")[-1] == "cleared"
    assert c.engine.alert("a1") is None


def test_a_new_raise_of_a_latched_key_is_a_new_alarm() -> None:
    """A second seizure while the first still latches rings as its own alarm."""
    c = Clocked(config())
    c.signal("epi-101")
    c.at(30)
    c.signal("epi-101", "cleared")
    c.at(60)
    c.signal("epi-101")
    assert c.engine.alert("a1") is not None
    second = c.engine.alert("a2")
    assert second is not None
    assert second.state is AlertState.ACTIVE
    assert (60, "n-ost", "epilepsy") in c.rings()


def test_latching_is_a_kind_setting() -> None:
    """`latching: false` ends a critical alarm with its condition; `true` latches any kind."""
    extra = (
        "kinds:\n"
        "  epilepsy: {priority: critical, critical: true, latching: false}\n"
        "  bed_exit: {priority: high, latching: true}\n"
    )
    c = Clocked(config(extra))
    assert c.engine.config.kind("fall").latches  # the default for critical sensors
    assert not c.engine.config.kind("emergency").latches  # a button does not clear itself
    assert not c.engine.config.kind("door_open").latches
    c.signal("epi-101")
    c.at(10)
    c.signal("epi-101", "cleared")
    assert c.events("a1")[-1] == "cleared"
    c.signal("bed-101")  # fall-risk hold-off, 45 s
    c.at(20)
    c.signal("bed-101", "cleared")  # cleared in its hold-off: auto-cancel, latching or not
    assert c.events("a2")[-1] == "cancelled"
    c.signal("bed-101")
    c.at(80)  # rang at 65 s
    c.signal("bed-101", "cleared")
    assert c.events("a3")[-1] == "condition_cleared"
    assert c.engine.alert("a3") is not None


def test_a_restored_latched_alarm_still_waits_for_its_acknowledgement() -> None:
    """The seizure had stopped before the restart: after it, the alarm still rings on."""
    c = Clocked(config())
    c.signal("epi-101")
    c.at(30)
    c.signal("epi-101", "cleared")
    alert = c.engine.alert("a1")
    assert alert is not None
    fresh = Clocked(config(), start=c.start, first_id=10)
    fresh.now = c.now
    fresh.engine.restore(alert, ["n-ost"], 1, condition_cleared=True)
    fresh.at(500)
    assert len(fresh.rings()) >= 1  # escalation resumed
    fresh.signal("epi-101", "cleared")  # a queued repeat of the clear changes nothing
    assert fresh.engine.alert("a1") is not None
    done = fresh.respond("n-ost", "a1")
    assert [t.event for t in done.transitions] == ["accepted", "cleared"]


def _leak_group_config() -> Config:
    """Room 101's door leads a group; a latching water leak joins it."""
    leak_rule = "  - {name: leak, match: {kinds: [water_leak]}, group: 120}\n"
    base = YAML.replace(
        "  bed-201:", '  leak-101: {room: "101", kind: water_leak}\n  bed-201:'
    ).replace("  - {name: door,", leak_rule + "  - {name: door,")
    return config("kinds:\n  water_leak: {priority: medium, latching: true}\n", base=base)


def test_an_accepted_group_ends_when_its_latched_member_and_leader_have_cleared() -> None:
    """The accept acknowledges a latched member too: it is not left open for good."""
    c = Clocked(_leak_group_config())
    c.signal("door-101")  # a1 leads
    c.signal("leak-101")  # a2 joins it
    c.signal("leak-101", "cleared")  # a2 latches: nobody has taken the group yet
    assert c.engine.alert("a2") is not None
    c.respond("n-ost", "a1")
    assert c.engine.alert("a2") is None  # acknowledged, and its condition had ended
    c.signal("door-101", "cleared")
    assert c.engine.alert("a1") is None
    assert c.out.deliveries[-1].action == "cancel"


def test_staff_in_the_room_do_not_bring_back_a_latched_member_that_cleared() -> None:
    """Presence ends the group; a member whose sensor had cleared is no condition to re-raise."""
    c = Clocked(_leak_group_config())
    c.signal("door-101")
    c.signal("leak-101")
    c.signal("leak-101", "cleared")
    c.signal("pres-101")
    assert c.engine.active_count == 0
    c.signal("pres-101", "cleared")  # staff leave: the door is still open, the leak is not
    assert [a.kind for a in c.engine.active] == ["door_open"]


def test_a_latching_alarm_nobody_was_rung_for_ends_with_its_condition() -> None:
    """A latching technical kind in the morning digest: no handset could ever acknowledge it."""
    kinds = "kinds:\n  link_down: {priority: medium, technical: true, latching: true}\n"
    c = Clocked(config(kinds))
    c.signal("cord-101", kind="link_down")
    assert c.events("a1") == ["raised", "digest"]
    c.signal("cord-101", "cleared", kind="link_down")
    assert c.engine.alert("a1") is None


def test_an_accepted_alarm_nobody_attends_is_reopened_and_climbs_the_ladder() -> None:
    """An accepted fall whose sensor stays raised, unresolved and with nobody in the room,
    was reminded to its accepter every 10 minutes all night and never reached anyone else.
    After two unanswered reminders it is nobody's again: the next step rings, accepter too."""
    c = Clocked(config())
    c.signal("fall-102")
    c.at(5)
    c.respond("n-ost", "a1")
    c.at(1804)  # reminders at 605 and 1205, each unanswered
    assert c.rings() == [(0, "n-ost", "fall"), (605, "n-ost", "fall"), (1205, "n-ost", "fall")]
    c.at(1806)
    alert = c.engine.alert("a1")
    assert alert is not None
    assert (alert.state, alert.accepted_by) == (AlertState.ACTIVE, None)
    (reopened,) = [t for t in c.out.transitions if t.event == "reopened"]
    assert reopened.detail == "not attended after 2 reminders (n-ost)"
    assert {h for t, h, _ in c.rings() if t == 1805} == {"n-ost", "n-vest"}
    c.at(1866)  # unaccepted again: it escalates as any active alert does
    assert (1865, "vakt", "fall") in c.rings()


def test_a_reopened_alert_rings_the_whole_next_step_and_the_accepter() -> None:
    """Accepted at the primary step: the reopen rings all on duty, the accepter among them;
    accepted at the failsafe step, it rings the failsafe step again."""
    c = Clocked(config())
    c.signal("cord-102")
    c.at(10)
    c.respond("n-ost", "a1")
    c.at(1811)
    assert [(t, h) for t, h, _ in c.rings() if t > 1210] == [(1810, "n-ost"), (1810, "n-vest")]
    assert c.events("a1")[-3:] == ["reopened", "escalated", "ringing"]

    late = Clocked(config())
    late.signal("cord-102")
    late.at(125)  # the failsafe step rang vakt at 120
    late.respond("vakt", "a1")
    late.at(1926)
    assert {h for t, h, _ in late.rings() if t == 1925} == {"n-ost", "n-vest", "vakt"}


def test_an_accepter_who_answers_in_time_is_not_reopened() -> None:
    """Resolving, the condition clearing, or staff in the room: nothing is reopened."""
    for finish in ("resolve", "clear", "presence"):
        c = Clocked(config())
        c.signal("fall-102")
        c.respond("n-ost", "a1")
        c.at(1500)  # two reminders sent
        if finish == "resolve":
            c.respond("n-ost", "a1", "resolve")
        elif finish == "clear":
            c.signal("fall-102", "cleared")
        else:
            c.signal("pres-102")
        c.at(3000)
        assert "reopened" not in c.events("a1"), finish
        assert {h for _, h, _ in c.rings()} == {"n-ost"}, finish


def test_an_accept_tapped_on_a_reminder_starts_the_count_again() -> None:
    """The nurse answers each reminder: she still has the alert, it is never reopened.

    Her accept was taken for a double tap and dropped, and the alert reopened to everyone
    after two reminders she had answered.
    """
    c = Clocked(config())
    c.signal("fall-102")
    c.at(5)
    c.respond("n-ost", "a1")
    c.at(700)  # reminded at 605
    again = c.respond("n-ost", "a1")
    assert again.rejected is None
    assert [(t.event, t.detail, t.reason) for t in again.transitions] == [
        ("accepted", "n-ost", "reminder")
    ]
    c.at(2400)
    assert "reopened" not in c.events("a1")
    # The next reminder is a full reminder time after her answer.
    assert [t for t, h, _ in c.rings("n-ost")] == [0, 605, 1300, 1900]
    c.at(2600)  # two unanswered since her answer: now it is reopened
    assert c.events("a1").count("reopened") == 1
    # A double tap before any reminder is still no news.
    d = Clocked(config())
    d.signal("fall-102")
    d.respond("n-ost", "a1")
    assert d.respond("n-ost", "a1").transitions == []


def test_staff_in_the_room_after_reminders_starts_the_count_again() -> None:
    """A visit between reminders: the alert is not reopened at the next due time."""
    c = Clocked(config())
    c.signal("fall-102")
    c.at(5)
    c.respond("n-ost", "a1")
    c.at(700)  # reminded at 605
    c.signal("pres-102")
    assert c.events("a1")[-1] == "attended"
    c.at(800)
    c.signal("pres-102", "cleared")
    c.at(1300)  # due at 1205: one reminder after the visit, not a reopen
    assert "reopened" not in c.events("a1")
    assert c.rings("n-ost")[-1] == (1205, "n-ost", "fall")


def test_a_late_busy_on_a_colleagues_alert_is_refused_and_shuts_nobody_out() -> None:
    """n-vest took it; n-ost's late 'busy' is moot. Reopened later, it rings n-ost again."""
    c = Clocked(config())
    c.signal("cord-101")
    c.at(70)  # step 1 rang n-vest
    c.respond("n-vest", "a1")
    late = c.respond("n-ost", "a1", "reject")
    assert (late.rejected, late.transitions) == ("already_accepted", [])
    c.at(70 + 3 * 600 + 5)  # two unanswered reminders, then the reopen
    assert "reopened" in c.events("a1")
    assert "n-ost" in {h for t, h, _ in c.rings() if t > 1800}


def test_a_busy_counts_for_its_round_only() -> None:
    """n-ost said busy, n-vest took it and never came: the reopen rings n-ost too."""
    c = Clocked(config())
    c.signal("cord-101")
    c.at(5)
    c.respond("n-ost", "a1", "reject")  # moves it on to all on duty at once
    c.respond("n-vest", "a1")
    c.at(5 + 3 * 600 + 5)
    assert "reopened" in c.events("a1")
    assert "n-ost" in {h for t, h, _ in c.rings() if t > 1800}
    # A restart reads the same from the timeline.
    assert "n-ost" not in restored(c, "a1").engine._live["a1"].rejected_by


def test_reopen_after_zero_or_no_reminders_never_reopens() -> None:
    """`reopen_after: 0` keeps reminding for ever; `reminder: 0` sends no reminder to count."""
    for ladder in ("reminder: 600\n    reopen_after: 0", "reminder: 0"):
        c = Clocked(config(base=YAML.replace("reminder: 600", ladder)))
        c.signal("fall-102")
        c.respond("n-ost", "a1")
        c.at(4 * 3600)
        assert "reopened" not in c.events("a1"), ladder
        assert {h for _, h, _ in c.rings()} == {"n-ost"}, ladder


def test_an_accepted_technical_alarm_is_never_reopened_to_the_night_staff() -> None:
    """A battery the technician accepted stays with the technician, reminded as before."""
    c = Clocked(config(base=YAML.replace("digest: true", "digest: false")))
    c.signal("bed-101", kind="battery_low")
    c.respond("tech", "a1")
    c.at(4 * 3600)
    assert "reopened" not in c.events("a1")
    assert {h for _, h, _ in c.rings()} == {"tech"}
    assert c.events("a1").count("reminder") == 24


def test_a_restart_remembers_how_many_reminders_went_unanswered() -> None:
    """The count comes back from the timeline: a restart does not buy another 20 minutes."""
    c = Clocked(config())
    c.signal("fall-102")
    c.at(5)
    c.respond("n-ost", "a1")
    c.at(700)  # one reminder at 605
    fresh = restored(c, "a1")
    fresh.at(1806)
    assert "reopened" in fresh.events("a1")
    assert (1805, "vakt", "fall") not in fresh.rings()  # step 1 first: everyone on duty
    assert {h for t, h, _ in fresh.rings() if t == 1805} == {"n-ost", "n-vest"}


def test_a_restart_after_a_reopen_and_a_new_accept_counts_afresh() -> None:
    """Reminders before the reopen belong to the first accept, not to the second."""
    c = Clocked(config())
    c.signal("fall-102")
    c.respond("n-ost", "a1")
    c.at(1810)  # reopened at 1800
    c.respond("n-vest", "a1")
    c.at(2500)  # one reminder to n-vest at 2410
    fresh = restored(c, "a1")
    fresh.at(3015)  # the second reminder at 3010 is sent, not a reopen
    assert "reopened" not in fresh.events("a1")
    assert fresh.rings() == [(3010, "n-vest", "fall")]
    fresh.at(3615)
    assert "reopened" in fresh.events("a1")


def test_a_reload_applies_a_new_reopen_after_to_an_accepted_alert() -> None:
    """The count survives a reload; the reloaded ladder's `reopen_after` decides."""
    c = Clocked(config())
    c.signal("fall-102")
    c.respond("n-ost", "a1")
    c.at(700)  # one reminder
    c.engine.reconfigure(
        config(base=YAML.replace("reminder: 600", "reminder: 600\n    reopen_after: 1")), c.now
    )
    c.at(1205)
    assert "reopened" in c.events("a1")


def test_a_late_reject_from_an_earlier_step_does_not_skip_the_current_one() -> None:
    """The primary says no at 61 s, a second after step 1 rang n-vest: that no used to send
    the alert straight to the failsafe, taking n-vest's minute away. It is noted (n-ost is
    skipped from now on) and the step's timeout still applies."""
    c = Clocked(config())
    c.signal("cord-102")
    c.at(61)
    result = c.respond("n-ost", "a1", "reject")
    assert [t.event for t in result.transitions] == ["rejected"]
    assert c.rings() == [(0, "n-ost", "pull_cord"), (60, "n-vest", "pull_cord")]
    c.at(121)
    assert c.rings()[2:] == [(120, "vakt", "pull_cord")]
    c.at(181)  # the failsafe step rings again: everyone but the rejecter
    assert {h for t, h, _ in c.rings() if t == 180} == {"n-vest", "vakt"}


def test_a_reject_moves_on_only_when_everyone_the_step_rang_has_said_no() -> None:
    """By day a fall rings both of ost's day staff; one no leaves it with the other."""
    c = Clocked(config(), start=DAY)
    c.signal("fall-102")
    assert {h for _, h, _ in c.rings()} == {"d-ost", "d-2"}
    c.at(5)
    c.respond("d-ost", "a1", "reject")
    assert "escalated" not in c.events("a1")
    c.at(10)
    c.respond("d-2", "a1", "reject")
    assert c.events("a1")[-2:] == ["escalated", "ringing"]
    assert c.rings()[2:] == [(10, "vakt", "fall")]


def test_a_failed_ring_moves_on_only_when_nobody_else_the_step_rang_can_take_it() -> None:
    """By day a fall rings both of ost's day staff. One handset's page failing used to send
    the alert to the next step at once, although the other had it: now it stays with the
    other until its no, its own failure or the step's timeout."""
    c = Clocked(config(), start=DAY)
    c.signal("fall-102")
    assert {h for _, h, _ in c.rings()} == {"d-ost", "d-2"}
    c.at(5)
    c.out.extend(c.engine.handle_delivery_failed("d-ost", "a1", c.now, why="refused"))
    assert c.events("a1")[-1] == "delivery_failed"
    assert "escalated" not in c.events("a1")
    c.at(10)
    c.respond("d-2", "a1", "reject")  # the other one's no completes the step
    assert c.events("a1")[-2:] == ["escalated", "ringing"]
    assert c.rings()[2:] == [(10, "vakt", "fall")]


def test_a_restart_remembers_a_failed_ring_of_the_current_step() -> None:
    """Restored after one of two rings failed, the other's failure moves the alert on."""
    c = Clocked(config(), start=DAY)
    c.signal("fall-102")
    c.at(5)
    c.out.extend(c.engine.handle_delivery_failed("d-ost", "a1", c.now))
    fresh = restored(c, "a1")
    fresh.out.extend(fresh.engine.handle_delivery_failed("d-2", "a1", fresh.now))
    assert fresh.rings() == [(5, "vakt", "fall")]


def test_a_restart_remembers_which_handsets_the_current_step_rang() -> None:
    """Restored at step 1, n-vest's reject is the whole step's: it moves on at once."""
    c = Clocked(config())
    c.signal("cord-102")
    c.at(61)
    fresh = restored(c, "a1")
    fresh.respond("n-vest", "a1", "reject")  # n-ost, rung at step 0, has not answered
    assert fresh.rings() == [(61, "vakt", "pull_cord")]


EARLY = dt.datetime(2026, 11, 25, 6, 50, tzinfo=OSLO).timestamp()


def test_a_night_hold_off_that_ends_in_the_day_is_decided_by_the_day_rules() -> None:
    """A bed exit at 06:50 held 20 minutes by `bed-night` rang the day handset at 07:10,
    although `bed-day` suppresses bed exits by day. It is suppressed by the day rule."""
    c = Clocked(config(), start=EARLY)
    c.signal("bed-102")
    c.at(1300)
    assert c.rings() == []
    assert c.events("a1") == ["raised", "held", "suppressed"]
    (sup,) = [t for t in c.out.transitions if t.event == "suppressed"]
    assert (sup.reason, sup.detail, sup.alert.rule) == ("rule", "bed-day", "bed-day")
    assert c.engine.active_count == 0


def test_a_bed_still_empty_after_a_suppressed_hold_off_comes_back_at_night() -> None:
    """Suppressed at the end of its hold-off, it is armed like any bed exit the day rule
    mutes: still empty at 22:00, the night rule holds it afresh and it rings at 22:20."""
    c = Clocked(config(), start=EARLY)
    c.signal("bed-102")
    night = dt.datetime(2026, 11, 25, 22, 0, tzinfo=OSLO).timestamp() - EARLY
    c.at(night + 1199)
    assert c.rings() == []
    c.at(night + 1201)
    assert c.rings() == [(night + 1200, "n-ost", "bed_exit")]


def test_a_hold_off_ending_under_another_holding_rule_rings_without_holding_again() -> None:
    """No endless hold-offs: a day rule that would hold too does not restart the wait."""
    c = Clocked(config(base=YAML.replace("action: suppress}", "hold_off: 1200}")), start=EARLY)
    c.signal("bed-102")
    c.at(1201)
    assert c.rings() == [(1200, "d-ost", "bed_exit")]


def test_a_babbling_nurse_call_system_grows_no_table_per_unknown_address() -> None:
    """100,000 calls from distinct addresses no device names: each is an unknown call point
    alarm, but the engine kept a last-heard time and an id counter (journaled too) for each
    address, for good. Only configured devices are supervised; strangers share one counter."""
    cfg = config()
    engine = Engine(cfg, now=NIGHT, salt="s")  # derived ids, as the daemon makes them
    decoder = EspaDecoder(source="espa", config=cfg)
    ids: set[str] = set()
    for n in range(100_000):
        payload = b'{"address": "%d", "call_type": "2"}' % n
        (signal,) = decoder.decode(f"espa/line1/{n}", payload, NIGHT)
        assert signal.kind == "unknown_call_point"
        out = engine.handle_signal(signal, NIGHT)
        ids.update(t.alert.id for t in out.transitions)
    assert len(ids) == 100_000  # still one alert, with its own id, per call point
    sizes = engine.table_sizes()
    assert sizes["last_seen"] <= len(cfg.devices)
    assert sizes["generations"] == 1
    assert engine.changed_generations() == {"*unconfigured": 100_000}


def test_a_configured_device_keeps_its_own_alert_id_counter() -> None:
    """Ids of configured devices are derived as before: per key, so a redelivery re-creates them."""
    engine = Engine(config(), now=NIGHT, salt="s")
    signal = Signal("s1", "test", "cord-102", "102", "pull_cord", SignalState.RAISED, NIGHT)
    (raised, *_) = engine.handle_signal(signal, NIGHT).transitions
    assert engine.changed_generations() == {"cord-102:pull_cord": 1}
    again = Engine(config(), now=NIGHT, salt="s")
    assert again.handle_signal(signal, NIGHT).transitions[0].alert.id == raised.alert.id


def test_a_restart_sends_a_rate_limit_batch_it_cut_short() -> None:
    """Batches were kept in memory only: after a restart the handset never got the waiting
    alert (nor could accept it) until it escalated. It goes out as a batch at once."""
    cfg = config("rate_limit: {max: 2, per: 300}\n")
    c = Clocked(cfg)
    c.signal("cord-101")
    c.signal("cord-102")
    c.signal("bed-101", kind="water_leak")  # over n-ost's budget: waits in a batch
    assert c.events("a3") == ["raised", "ringing", "batched"]
    alert = c.engine.alert("a3")
    assert alert is not None
    fresh = Clocked(cfg, start=c.start, first_id=100)
    fresh.engine.restore(alert, [], 0, timeline=journaled(c, "a3"))
    fresh.at(1)
    batches = [d for d in fresh.out.deliveries if d.action == "batch"]
    assert [(d.handset, [a["alert_id"] for a in d.payload["alerts"]]) for d in batches] == [
        ("n-ost", ["a3"])
    ]
    assert fresh.respond("n-ost", "a3").rejected is None
    fresh.at(300)
    assert fresh.rings() == []  # accepted: it did not escalate


def test_repeats_of_unanswered_calls_do_not_spend_the_budget_of_new_ones() -> None:
    """Two calls repeating at the failsafe step, then a new call: it rings at once.

    Every repeat counted against the handsets' budget, so the new call waited for a batch.
    """
    c = Clocked(config("rate_limit: {max: 4, per: 300}\n"))
    c.signal("cord-101")
    c.signal("cord-201")
    c.at(400)  # both repeated at the failsafe step every minute since 120 s
    assert "batched" not in c.events("a1") + c.events("a2")
    c.signal("cord-102")
    assert ("n-ost", "pull_cord") in {(h, k) for t, h, k in c.rings() if t == 400}
    assert "batched" not in c.events("a3")


def test_a_ring_to_an_offline_handset_over_its_budget_still_moves_the_call_on() -> None:
    """Over budget and offline: not batched (that held the call for the step) but failed."""
    c = Clocked(config("rate_limit: {max: 1, per: 300}\n"))
    c.signal("cord-102")
    c.respond("n-ost", "a1")  # n-ost's budget is spent
    offline(c, "n-ost")
    c.at(30)
    c.signal("cord-101")
    events = c.events("a2")
    assert "batched" not in events
    assert (30, "n-vest", "pull_cord") in c.rings()


def test_a_batch_leaves_out_an_alert_a_colleague_accepted() -> None:
    """n-ost's batch at 300 s no longer lists the call n-vest took at 70 s."""
    c = Clocked(config("rate_limit: {max: 1, per: 300}\n"))
    c.signal("cord-102")
    c.respond("n-ost", "a1")
    c.signal("cord-101")  # batched for n-ost
    c.at(70)
    c.respond("n-vest", "a2")
    c.at(400)
    assert [d for d in c.out.deliveries if d.action == "batch"] == []


def test_an_accepter_giving_back_tells_everyone_still_showing_it_taken() -> None:
    """n-vest accepted at step 1, then says busy: n-ost (rung before) hears it is open again."""
    c = Clocked(config())
    c.signal("cord-101")
    c.at(70)
    c.respond("n-vest", "a1")
    c.at(100)
    given = c.respond("n-vest", "a1", "reject")
    assert ("vakt", "ring") in {(d.handset, d.action) for d in given.deliveries}
    updates = {d.handset: d.payload for d in given.deliveries if d.action == "update"}
    assert set(updates) == {"n-ost", "n-vest"}
    assert updates["n-ost"]["state"] == "active"


def test_a_restart_does_not_resend_a_batch_that_went_out() -> None:
    """A batch sent before the restart is not sent again; those still waiting are."""
    cfg = config("rate_limit: {max: 1, per: 300}\n")
    c = Clocked(cfg)
    c.signal("cord-101")
    c.signal("cord-102")
    c.signal("bed-101", kind="water_leak")
    c.at(30)  # n-ost's budget is spent until 300 s: the batch goes out then
    c.respond("n-ost", "a1")
    c.respond("n-ost", "a2")
    c.at(301)
    assert "batch_sent" in c.events("a3")
    alert = c.engine.alert("a3")
    assert alert is not None
    fresh = Clocked(cfg, start=c.start, first_id=100)
    fresh.now = c.now
    fresh.engine.restore(alert, ["n-ost", "n-vest", "vakt"], 9, timeline=journaled(c, "a3"))
    fresh.at(302)
    # n-ost's batch went out at 300 s; the failsafe step's repeats to n-vest and vakt, over
    # their budgets of one (spent on its first rings), were still waiting for theirs.
    resent = [d.handset for d in fresh.out.deliveries if d.action == "batch"]
    assert sorted(resent) == ["n-vest", "vakt"]


def test_a_step_after_zero_rings_the_next_step_at_once() -> None:
    """`after: 0` on a step means "and the next step too, now"; the last step paces itself.

    It used to wait 5 s on ordinary steps (and 0 s on a critical alarm's first step).
    """
    steps = "[{to: primary, after: 60}, {to: all_on_duty, after: 60}, {to: failsafe, after: 60}]"
    zero = "[{to: primary, after: 0}, {to: all_on_duty, after: 60}, {to: failsafe, after: 0}]"
    assert YAML.count(steps) == 1
    c = Clocked(config(base=YAML.replace(steps, zero)))
    c.signal("cord-102")
    c.at(0)
    assert c.rings() == [(0, "n-ost", "pull_cord"), (0, "n-vest", "pull_cord")]
    c.at(70)
    # The failsafe at 60 s; with `after: 0` it rings again every LAST_STEP_REPEAT (5 s).
    assert [t for t, h, _ in c.rings() if h == "vakt"] == [60, 65, 70]


RESTLESS = YAML.replace(
    "hold_off: 1200}",
    "hold_off: 1200,\n     repeat: {count: 3, within: 1800, text: 'Restless {room}: up {count}x'}}",
)


def short_exit(c: Clocked, device: str, at: float, back_after: float = 60) -> Outcome:
    """A resident up at `at` seconds and back in bed `back_after` later (within the hold-off)."""
    c.at(at)
    raised = c.signal(device)
    c.at(at + back_after)
    c.signal(device, "cleared")
    return raised


def test_a_third_short_bed_exit_within_the_window_rings_at_once() -> None:
    """Two exits the 20-minute hold-off cancelled, then a third within 30 min: it rings now."""
    c = Clocked(config(base=RESTLESS))
    short_exit(c, "bed-102", 0)
    short_exit(c, "bed-102", 600)
    assert c.rings() == []
    c.at(1200)
    third = c.signal("bed-102")
    assert c.rings() == [(1200, "n-ost", "bed_exit")]
    ring = third.deliveries[0]
    assert ring.payload["text"] == "Restless 102: up 3x"
    assert ring.payload["count"] == 3
    assert c.events(ring.alert_id) == ["raised", "hold_off_skipped", "ringing"]
    detail = [(t.detail, t.reason) for t in third.transitions if t.event == "hold_off_skipped"]
    assert detail == [("raise 3 in 1800s", "bed-night")]


def test_short_exits_spread_wider_than_the_window_never_ring() -> None:
    """Three short exits over more than 30 minutes are a normal night: none rings."""
    c = Clocked(config(base=RESTLESS))
    short_exit(c, "bed-102", 0)
    short_exit(c, "bed-102", 1000)
    short_exit(c, "bed-102", 1900)  # the first cancel (at 60 s) is outside the window now
    c.at(5000)
    assert c.rings() == []
    # Another device's exits are counted on their own: room 201 is in another zone.
    short_exit(c, "bed-201", 5000)
    short_exit(c, "bed-201", 5100)
    short_exit(c, "bed-102", 5200)
    c.at(9000)
    assert c.rings() == []


def test_a_restless_ring_latches_until_someone_accepts() -> None:
    """Back in bed right after the ring does not cancel it: the pattern is the news."""
    c = Clocked(config(base=RESTLESS))
    short_exit(c, "bed-102", 0)
    short_exit(c, "bed-102", 300)
    c.at(600)
    alert_id = c.signal("bed-102").deliveries[0].alert_id
    c.at(610)
    cleared = c.signal("bed-102", "cleared")
    assert [t.event for t in cleared.transitions] == ["condition_cleared"]
    assert not any(d.action == "cancel" for d in cleared.deliveries)
    c.at(700)  # no accept within the step's 60 s: it escalates, still ringing
    assert "escalated" in c.events(alert_id)
    assert c.engine.alert(alert_id) is not None
    c.respond("n-ost", alert_id)
    assert c.engine.alert(alert_id) is None  # the acknowledgement ends a latched alarm


def test_a_plain_bed_exit_still_ends_when_the_resident_is_back() -> None:
    """Without `repeat`'s ring, a bed exit that rang after its hold-off ends with its clear."""
    c = Clocked(config(base=RESTLESS))
    c.signal("bed-102")
    c.at(1230)
    assert c.rings() == [(1200, "n-ost", "bed_exit")]
    cleared = c.signal("bed-102", "cleared")
    assert [t.event for t in cleared.transitions] == ["cleared"]


def test_a_ring_starts_the_restless_count_again() -> None:
    """After a ring (restless or held to the end) the short exits before it count no more."""
    c = Clocked(config(base=RESTLESS))
    short_exit(c, "bed-102", 0)
    c.at(100)
    c.signal("bed-102")  # a long absence: the hold-off ends ringing at 1300
    c.at(1330)
    c.signal("bed-102", "cleared")
    assert c.rings() == [(1300, "n-ost", "bed_exit")]
    short_exit(c, "bed-102", 1500)  # one short exit since the ring: not yet three
    c.at(1700)
    c.signal("bed-102")
    assert c.rings() == [(1300, "n-ost", "bed_exit")]


def test_a_restart_keeps_the_restless_count_and_the_latch() -> None:
    """The short exits are journaled with the conditions; the latch comes from the timeline."""
    cfg = config(base=RESTLESS)
    c = Clocked(cfg)
    short_exit(c, "bed-102", 0)
    short_exit(c, "bed-102", 300)
    c.journaled = c.engine.changed_conditions()
    assert len([n for n in c.journaled if "short:" in n]) == 1
    fresh = restarted(c, cfg)
    fresh.at(600)
    ring = fresh.signal("bed-102").deliveries
    assert [d.action for d in ring] == ["ring"]
    # The journal drops the count once it rang: a second restart starts from zero.
    changed = fresh.engine.changed_conditions()
    assert [v for k, v in changed.items() if "short:" in k] == [None]
    # The latch survives a restart too: the restored alert's timeline says why it rang.
    alert_id = ring[0].alert_id
    again = restored(fresh, alert_id)
    cleared = again.signal("bed-102", "cleared")
    assert [t.event for t in cleared.transitions] == ["condition_cleared"]


def test_a_clock_step_moves_the_restless_window_with_it() -> None:
    """An NTP step of an hour between short exits neither drops nor ages the earlier ones."""
    c = Clocked(config(base=RESTLESS))
    short_exit(c, "bed-102", 0)
    short_exit(c, "bed-102", 300)
    c.step(3600)
    c.at(600)
    assert [d.action for d in c.signal("bed-102").deliveries] == ["ring"]


@pytest.mark.parametrize(
    ("rule", "problem"),
    [
        ("{name: r, match: {kinds: [bed_exit]}, repeat: {count: 3, within: 600}}", "set hold_off"),
        (
            "{name: r, match: {kinds: [bed_exit]}, action: suppress,"
            " repeat: {count: 3, within: 600}}",
            "a suppressing rule holds nothing off",
        ),
        (
            "{name: r, match: {kinds: [bed_exit]}, hold_off: 60, repeat: {count: 1, within: 600}}",
            "rules[0].repeat.count",
        ),
        (
            "{name: r, match: {kinds: [bed_exit]}, hold_off: 60, repeat: {count: 3}}",
            "rules[0].repeat",
        ),
        (
            "{name: r, match: {kinds: [bed_exit]}, hold_off: 60,"
            " repeat: {count: 3, within: 600, text: '{resident}'}}",
            "rules[0].repeat.text",
        ),
    ],
)
def test_config_refuses_a_repeat_that_cannot_work(rule: str, problem: str) -> None:
    """`repeat` needs a hold-off to count, a count of at least 2, a window and a good text."""
    base = YAML.split("rules:\n", maxsplit=1)[0] + "rules:\n  - " + rule + "\n"
    with pytest.raises(ConfigError) as err:
        config(base=base)
    assert problem in str(err.value)


def offline(c: Clocked, handset: str, online: bool = False) -> Outcome:
    """A handset app's status (retained, or its last will) says it stopped or runs."""
    result = c.engine.handset_status(handset, online, c.now)
    c.out.extend(result)
    return result


def test_a_ring_to_an_offline_handset_moves_on_at_once() -> None:
    """The primary's app is offline: the call still goes to it, and to the next step now."""
    c = Clocked(config())
    offline(c, "n-ost")  # within its alarm's grace: the call moves on all the same
    c.out = Outcome()
    c.signal("cord-101")
    assert c.rings() == [(0, "n-ost", "pull_cord"), (0, "n-vest", "pull_cord")]
    failed = [(t.event, t.detail, t.reason) for t in c.out.transitions if t.alert.id == "a1"]
    assert ("delivery_failed", "n-ost", "handset offline") in failed
    assert ("escalated", "to step 1", "delivery_failed") in failed


def test_an_app_going_offline_while_ringing_moves_the_call_on() -> None:
    """Rung, then the app's last will says offline: the next step rings without waiting."""
    c = Clocked(config())
    c.signal("cord-101")
    c.at(10)
    offline(c, "n-ost")
    assert [(t, h) for t, h, k in c.rings() if k == "pull_cord"] == [(0, "n-ost"), (10, "n-vest")]


def test_an_on_duty_handset_offline_rings_the_failsafe_until_it_is_back() -> None:
    """Someone on duty hears nothing: the failsafe group and the others on duty are told."""
    c = Clocked(config())
    assert offline(c, "n-ost").deliveries == []  # its 30 s grace (offline_grace)
    c.at(29)
    assert c.out.deliveries == []
    c.at(30)
    went = c.out
    assert sorted((d.handset, d.payload["kind"]) for d in went.deliveries) == [
        ("n-vest", "handset_offline"),
        ("vakt", "handset_offline"),
    ]
    assert went.deliveries[0].payload["text"] == "Handset n-ost offline"
    assert offline(c, "n-ost").deliveries == []  # said again: no news
    back = offline(c, "n-ost", online=True)
    assert sorted((d.handset, d.action) for d in back.deliveries) == [
        ("n-vest", "cancel"),
        ("vakt", "cancel"),
    ]


def test_the_handset_offline_alarm_repeats_to_those_it_rang_never_the_offline_one() -> None:
    """At its reminder time it rings the failsafe group and the others again, not the dead app.

    A repeat that rang only handsets new to the alarm rang just the offline one, about itself.
    """
    c = Clocked(config())
    offline(c, "n-ost")  # the alarm rings at 30 s, after its grace
    c.at(629)
    assert sorted(h for _, h, _ in c.rings()) == ["n-vest", "vakt"]
    c.at(1300)
    again = [(t, h) for t, h, k in c.rings() if k == "handset_offline" and t >= 600]
    # Repeated at the reminder time (600 s here), not every minute all night.
    assert sorted(again) == [(630, "n-vest"), (630, "vakt"), (1230, "n-vest"), (1230, "vakt")]


def test_the_handset_offline_alarm_repeats_past_a_spent_rate_limit_budget() -> None:
    """Like the no-staff alarm, it is never held back in a batch."""
    c = Clocked(config("rate_limit: {max: 1, per: 3600}\n"))
    c.signal("cord-201")  # spends n-vest's budget
    c.respond("n-vest", "a1")
    offline(c, "n-ost")
    c.at(700)
    again = {h for t, h, k in c.rings() if k == "handset_offline" and t == 630}
    assert again == {"n-vest", "vakt"}


def test_the_failsafe_handset_going_offline_is_an_alarm_day_and_night() -> None:
    """Every ladder ends at vakt: its flat phone is told to whoever is on duty."""
    c = Clocked(config())
    offline(c, "vakt")
    c.at(30)
    assert sorted((d.handset, d.payload["kind"]) for d in c.out.deliveries) == [
        ("n-ost", "handset_offline"),
        ("n-vest", "handset_offline"),
    ]
    day = Clocked(config(), start=DAY)
    offline(day, "vakt")
    day.at(30)
    assert sorted(d.handset for d in day.out.deliveries) == ["d-2", "d-ost"]
    day.at(3 * 3600)  # the once-a-minute duty check does not end it: vakt is always relied on
    assert [d.action for d in day.out.deliveries if d.action == "cancel"] == []


def test_a_last_step_rung_again_rings_everyone_there_not_only_newcomers() -> None:
    """A call at the failsafe step over the 07:00 shift change: vakt hears the repeat too."""
    c = Clocked(config())
    start = 7 * 3600 + 57 * 60 + 30  # 06:57:30
    c.at(start)
    c.signal("cord-101")
    c.at(start + 150)  # primary, all on duty, failsafe: n-ost, n-vest, vakt
    assert [h for _, h, _ in c.rings()] == ["n-ost", "n-vest", "vakt"]
    c.at(start + 185)  # 07:00:35: the last step times out on the day shift
    assert sorted(h for t, h, _ in c.rings() if t == start + 180) == ["d-2", "d-ost", "vakt"]


def test_an_off_duty_handset_going_offline_is_no_alarm() -> None:
    """The day phone switched off at night: nobody needs to hear of it."""
    c = Clocked(config())
    assert offline(c, "d-ost").deliveries == []
    assert offline(c, "d-ost").transitions == []


def test_everyone_offline_at_the_last_step_rings_again_at_its_pace_not_in_a_loop() -> None:
    """No handset can hear: the alert stays at the last step, rung again every step time."""
    c = Clocked(config())
    for h in ("n-ost", "n-vest", "vakt"):
        offline(c, h)
    c.out = Outcome()
    c.signal("cord-101")
    alert_id = c.out.deliveries[0].alert_id
    first = [h for t, h, k in c.rings() if k == "pull_cord"]
    assert first == ["n-ost", "n-vest", "vakt"]
    c.at(59)
    assert len([1 for _, _, k in c.rings() if k == "pull_cord"]) == 3
    c.at(61)  # the last step's own timeout rings them all again
    assert len([1 for _, _, k in c.rings() if k == "pull_cord"]) == 6
    assert c.engine.alert(alert_id) is not None


def test_an_accepter_whose_app_goes_offline_keeps_the_alert() -> None:
    """A nurse on her way with a phone gone flat still goes: the alert is not given back."""
    c = Clocked(config())
    alert_id = c.signal("cord-101").deliveries[0].alert_id
    c.respond("n-ost", alert_id)
    offline(c, "n-ost")
    alert = c.engine.alert(alert_id)
    assert alert is not None
    assert alert.accepted_by == "n-ost"


def test_an_offline_handset_coming_on_duty_raises_its_alarm_at_the_shift_change() -> None:
    """The day phone off since the afternoon: at 07:00 it is on duty and deaf; at 22:00 moot.

    Both at the minute itself: shift changes were polled once a minute from the start.
    """
    early = dt.datetime(2026, 11, 25, 6, 30, 25, tzinfo=OSLO).timestamp()
    seven = 29 * 60 + 35  # 07:00, in seconds from the start
    c = Clocked(config(), start=early)
    assert offline(c, "d-ost").deliveries == []  # night: d-ost is off duty
    c.at(seven - 1)
    assert not [d for d in c.out.deliveries if d.payload.get("kind") == "handset_offline"]
    c.at(seven)  # the day shift starts, and the alarm with it
    told = {(t, h) for t, h, kind in c.rings() if kind == "handset_offline"}
    assert told == {(seven, "d-2"), (seven, "vakt")}
    c.at(seven + 15 * 3600 + 60)  # 22:01: off duty again; the alarm (rung all day) is cancelled
    ended = [
        t for t in c.out.transitions if t.alert.kind == "handset_offline" and t.event == "cleared"
    ]
    assert [(t.detail, t.ts - early) for t in ended] == [("off duty", seven + 15 * 3600)]
    cancels = {d.handset for d in c.out.deliveries if d.action == "cancel"}
    assert {"d-2", "vakt"} <= cancels


MORNING = dt.datetime(2026, 11, 25, 6, 50, tzinfo=OSLO).timestamp()  # night shift to 07:00


def test_an_alert_open_at_the_shift_change_is_handed_to_the_day_staff() -> None:
    """n-ost took a call at 06:51 and her shift ended at 07:00: from 07:00 it is the day's.

    The reminder went to her handset as she went home, and again every 10 minutes until two
    went unanswered; the day staff heard of the call 20 minutes late.
    """
    c = Clocked(config(), start=MORNING)
    c.signal("cord-101")
    c.at(60)
    c.respond("n-ost", "a1")
    c.out = Outcome()
    c.at(599)  # 06:59:59: still hers
    assert "reopened" not in c.events("a1")
    c.at(600)  # 07:00
    assert c.events("a1")[-3:] == ["reopened", "escalated", "ringing"]
    reopened, escalated = c.out.transitions[:2]
    assert reopened.detail == "handed over: n-ost off duty"
    assert (escalated.detail, escalated.reason) == ("to step 0", "shift_change")
    assert c.rings() == [(600, "d-ost", "pull_cord")]  # the day's primary, not n-ost
    told = [d for d in c.out.deliveries if d.handset == "n-ost"]
    assert [(d.action, d.payload["state"]) for d in told] == [("update", "active")]
    c.respond("d-ost", "a1")
    assert c.engine.alert("a1").accepted_by == "d-ost"  # type: ignore[union-attr]
    c.at(660)  # the day nurse's accept is not handed anywhere
    assert c.engine.alert("a1").accepted_by == "d-ost"  # type: ignore[union-attr]


def test_an_alert_is_handed_over_at_the_shift_change_without_reminders() -> None:
    """`reminder: 0` has no reminder to hand the alert over at: the shift change does it.

    Before, a call the night nurse accepted and never resolved stayed hers all day.
    """
    c = Clocked(config(base=YAML.replace("reminder: 600", "reminder: 0")), start=MORNING)
    c.signal("cord-101")
    c.respond("n-ost", "a1")
    c.at(600)
    assert c.events("a1")[-3:] == ["reopened", "escalated", "ringing"]
    assert c.rings()[-1] == (600, "d-ost", "pull_cord")


def test_a_critical_alarm_open_at_the_shift_change_rings_the_whole_day_team() -> None:
    """A fall accepted at 06:55 and not cleared: at 07:00 it rings the zone's day team."""
    c = Clocked(config(), start=MORNING)
    c.at(300)
    c.signal("fall-102")
    c.respond("n-ost", "a1")
    c.out = Outcome()
    c.at(600)
    assert {h for _, h, _ in c.rings()} == {"d-ost", "d-2"}
    assert "n-ost" not in {h for _, h, _ in c.rings()}
    # Staff in the room at 07:00 (the night nurse is still there): no hand-over, neither
    # at the shift change nor at the reminder.
    d = Clocked(config(), start=MORNING)
    d.at(300)
    d.signal("fall-102")
    d.respond("n-ost", "a1")
    d.signal("pres-102")
    d.at(600)
    d.at(300 + 600)
    assert "reopened" not in d.events("a1")


def test_a_call_repeated_after_the_accepters_shift_goes_to_the_day_staff() -> None:
    """The resident pulls again at 07:02, before the restarted daemon's first tick: the day
    staff hear it, not the nurse gone home."""
    c = Clocked(config(), start=MORNING)
    c.at(300)  # 06:55, reminder due 07:05
    c.signal("cord-101")
    c.respond("n-ost", "a1")
    c.at(480)  # 06:58: before 07:00 the accepter still has it (count update)
    c.signal("cord-101")
    assert [d.action for d in c.out.deliveries if d.handset == "n-ost"][-1] == "update"
    assert "reopened" not in c.events("a1")
    fresh = restored(c, "a1")
    fresh.now = fresh.start + 720  # 07:02
    fresh.signal("cord-101")
    assert fresh.events("a1")[-3:] == ["reopened", "escalated", "ringing"]
    assert fresh.rings()[-1] == (720, "d-ost", "pull_cord")
    # A restart reads the hand-over back: the alert is open, n-ost's accept is gone.
    live = restored(fresh, "a1").engine._live["a1"]
    assert live.alert.state is AlertState.ACTIVE
    assert live.alert.accepted_by is None


def test_a_restart_across_the_shift_change_hands_over_at_once() -> None:
    """Down from 06:58 to 07:03: the restored call n-ost accepted goes to the day staff at
    the first tick, not at her next reminder."""
    c = Clocked(config(), start=MORNING)
    c.signal("cord-101")
    c.respond("n-ost", "a1")
    c.at(480)  # 06:58: the daemon stops
    alert = c.engine.alert("a1")
    assert alert is not None
    fresh = Clocked(config(), start=MORNING + 780, first_id=100)  # 07:03: it is back
    fresh.engine.restore(alert, ["n-ost"], 1, timeline=journaled(c, "a1"))
    assert fresh.engine.alert("a1").state is AlertState.ACCEPTED  # type: ignore[union-attr]
    fresh.at(0)
    handed = [t for t in fresh.out.transitions if t.event == "reopened"]
    assert [t.detail for t in handed] == ["handed over: n-ost off duty"]
    assert fresh.rings() == [(0, "d-ost", "pull_cord")]


def test_a_reminder_an_offline_accepter_cannot_see_reopens_the_alert_at_once() -> None:
    """n-ost accepted the fall, then her app went offline: at the reminder, others hear it.

    The reminders went to her dead phone until two were unanswered: 20 minutes in which
    nobody who could hear it knew the fall was nobody's.
    """
    c = Clocked(config())
    c.signal("fall-102")
    c.respond("n-ost", "a1")
    offline(c, "n-ost")
    c.out = Outcome()
    c.at(605)
    reopened = [t for t in c.out.transitions if t.event == "reopened"]
    assert [t.detail for t in reopened] == ["accepter n-ost offline"]
    escalated = next(t for t in c.out.transitions if t.event == "escalated")
    assert escalated.reason == "accepter_offline"
    assert "n-vest" in {h for t, h, _ in c.rings() if t == 600}
    # Online again before the reminder: reminded as usual.
    d = Clocked(config())
    d.signal("fall-102")
    d.respond("n-ost", "a1")
    offline(d, "n-ost")
    offline(d, "n-ost", online=True)
    d.at(605)
    assert "reopened" not in d.events("a1")
    assert d.rings("n-ost")[-1] == (600, "n-ost", "fall")


def test_a_call_pressed_by_staff_in_the_room_is_an_assistance_call() -> None:
    """The nurse in room 101 pulls the cord: she needs a colleague, everyone on duty hears it.

    It was suppressed as a call staff in the room attend, and never came back: the one
    person asking for help was the nurse herself.
    """
    c = Clocked(config())
    c.signal("pres-101")
    c.out = Outcome()
    c.signal("cord-101")
    alert = c.engine.alert("a1")
    assert alert is not None
    assert (alert.text, alert.priority.name, alert.state) == (
        "ASSISTANCE room 101",
        "HIGH",
        AlertState.ACTIVE,
    )
    assert c.events("a1") == ["raised", "assistance", "ringing"]
    # The zone's primary may be the nurse who pulled it: all on duty ring at once.
    assert c.rings() == [(0, "n-ost", "pull_cord"), (0, "n-vest", "pull_cord")]
    c.respond("n-vest", "a1")
    assert c.engine.alert("a1").accepted_by == "n-vest"  # type: ignore[union-attr]
    # Unanswered, it climbs to the failsafe as any call does.
    d = Clocked(config())
    d.signal("pres-101")
    d.signal("cord-101")
    d.at(61)
    assert d.rings()[-1] == (60, "vakt", "pull_cord")
    # A bed exit or a door in the same room is still the staff's own to see.
    d.signal("door-101")
    assert d.events("a2") == ["raised", "suppressed"]
    # The restart reads it back: its rings are never batched.
    assert restored(d, "a1").engine._live["a1"].assistance


def test_an_assistance_call_ends_when_staff_reset_presence_not_when_it_times_out() -> None:
    """Presence off as the staff leave ends the assistance call; a presence timeout does not.

    It rang everyone on duty until someone tapped resolve, long after both nurses had left.
    """
    c = Clocked(config())
    c.signal("pres-101")
    c.signal("cord-101")
    c.at(20)
    c.signal("pres-101", "cleared")
    assert c.events("a1")[-1] == "resolved"
    assert c.engine.alert("a1") is None
    cancels = {d.handset for d in c.out.deliveries if d.action == "cancel"}
    assert cancels == {"n-ost", "n-vest"}
    # Presence timed out (nobody pressed it off): the nurse may still need help.
    d = Clocked(config("presence: {timeout: 600}\n"))
    d.signal("pres-101")
    d.signal("cord-101")
    d.at(601)
    assert d.engine.alert("a1") is not None
    assert "resolved" not in d.events("a1")


def test_an_assistance_call_is_never_batched_and_can_be_turned_off() -> None:
    """Over the rate-limit budget it still rings; `presence.assistance: false` suppresses it."""
    c = Clocked(config("rate_limit: {max: 1, per: 600}\n"))
    c.signal("cord-102")
    c.signal("cord-201")  # n-ost and n-vest have each heard of one call now
    c.signal("pres-101")
    c.out = Outcome()
    c.signal("cord-101")
    assert {h for _, h, _ in c.rings()} == {"n-ost", "n-vest"}
    assert "batched" not in c.events("a3")
    off = Clocked(config("presence: {assistance: false}\n"))
    off.signal("pres-101")
    off.signal("cord-101")
    assert off.events("a1") == ["raised", "suppressed"]
    assert off.rings() == []


def test_the_assistance_text_is_checked_like_a_kinds_text() -> None:
    """A bad template names its file, line and key path."""
    with pytest.raises(ConfigError) as err:
        config('presence: {assistance_text: "Help {bed}"}\n')
    assert "presence.assistance_text" in str(err.value)
    assert "engine.yaml:" in str(err.value)
    cfg = config('presence: {assistance_text: "Hjelp rom {room}"}\n')
    c = Clocked(cfg)
    c.signal("pres-101")
    c.signal("cord-101")
    assert c.engine.alert("a1").text == "Hjelp rom 101"  # type: ignore[union-attr]


def test_an_app_back_within_its_grace_raises_no_handset_offline_alarm() -> None:
    """A phone roaming between access points says offline for seconds: nobody is rung.

    Every such flap rang the failsafe and the others on duty, all night.
    """
    c = Clocked(config())
    for t in (0, 100, 200):
        c.at(t)
        offline(c, "n-ost")
        c.at(t + 20)
        offline(c, "n-ost", online=True)
    c.at(3600)
    assert c.out.deliveries == []
    assert c.out.transitions == []
    # Offline again and for good: the grace counts from this last offline.
    offline(c, "n-ost")
    c.at(3600 + 29)
    assert c.out.deliveries == []
    c.at(3600 + 30)
    assert {d.handset for d in c.out.deliveries} == {"n-vest", "vakt"}
    # `offline_grace: 0` raises it at once, as before.
    now = Clocked(
        config(
            base=YAML.replace(
                "n-ost: {channel: console}", "n-ost: {channel: console, offline_grace: 0}"
            )
        )
    )
    assert {d.handset for d in offline(now, "n-ost").deliveries} == {"n-vest", "vakt"}


def test_a_hold_off_ending_under_another_rule_rings_as_that_rule_says() -> None:
    """Held from 21:55 under the evening rule, it rings at 22:05 with the night's priority.

    It rang with the evening rule's low priority and slow ladder, in the middle of the night.
    """
    rules = """rules:
  - {name: bed-night, match: {kinds: [bed_exit], schedule: night}, hold_off: 1200,
     priority: critical, escalation: night}
  - {name: bed-day, match: {kinds: [bed_exit], schedule: day}, hold_off: 600, priority: low}
"""
    base = YAML[: YAML.index("rules:")] + rules + YAML[YAML.index("inhibit:") :]
    base = base.replace(
        "    reminder: 600\n",
        "    reminder: 600\n  night:\n"
        "    steps: [{to: primary, after: 30}, {to: failsafe, after: 30}]\n",
    )
    evening = dt.datetime(2026, 11, 24, 21, 55, tzinfo=OSLO).timestamp()
    c = Clocked(config(base=base), start=evening)
    c.signal("bed-102")
    c.at(599)
    assert c.rings() == []
    c.at(600)  # 22:05
    (ring,) = [d for d in c.out.deliveries if d.action == "ring"]
    assert (ring.handset, ring.payload["priority"]) == ("n-ost", "critical")
    alert = c.engine.alert("a1")
    assert alert is not None
    assert alert.rule == "bed-night"
    assert "rule_changed" in c.events("a1")
    c.at(631)  # the night ladder's 30 s, not the default's 60
    assert c.rings()[-1] == (630, "vakt", "bed_exit")


def test_a_group_window_counts_from_the_leaders_first_ring() -> None:
    """A door held 5 minutes rings at 300; the cord pulled at 350 joins it: one message.

    The window counted from the door's raise at 0, so the cord rang as a second message.
    """
    base = YAML.replace(
        "{name: door, match: {kinds: [door_open]}, group: 120}",
        "{name: door, match: {kinds: [door_open]}, group: 120, hold_off: 300}",
    )
    c = Clocked(config(base=base))
    c.signal("door-101")
    c.at(350)
    c.signal("cord-101")
    assert c.rings() == [(300, "n-ost", "door_open")]
    assert c.events("a2") == ["raised", "grouped"]
    # A restart reads the first ring back from the timeline.
    assert restored(c, "a1").engine._live["a1"].rang_at == c.start + 300
    d = Clocked(config(base=base))
    d.signal("door-101")
    d.at(300 + 121)
    d.signal("cord-101")  # past the window from the ring: its own message
    assert [(h, k) for t, h, k in d.rings() if t == 421] == [("n-ost", "pull_cord")]
    assert "grouped" not in d.events("a2")


def test_a_handset_whose_ring_waits_in_a_batch_is_sent_no_update_of_it() -> None:
    """Over its budget, n-ost's ring of a2 waits in a batch; n-vest takes a2 meanwhile.

    n-ost was sent an 'update: accepted by n-vest' of a call it had never been shown, and
    a 'cancel' of one that ended while waiting.
    """
    c = Clocked(config("rate_limit: {max: 1, per: 600}\n"))
    c.signal("cord-102")  # n-ost's budget
    c.signal("cord-101")  # batched for n-ost
    assert c.events("a2")[-1] == "batched"
    c.respond("n-ost", "a1")
    c.at(61)  # moves on to all on duty: n-vest rung
    c.respond("n-vest", "a2")
    shown = {(d.handset, d.action) for d in c.out.deliveries if d.alert_id == "a2"}
    assert shown == {("n-vest", "ring"), ("n-vest", "update")}
    c.signal("cord-102", "cleared")  # n-ost still has a1 on its screen: updated as ever
    c.signal("cord-101", "cleared")
    assert ("n-ost", "cancel") not in {
        (d.handset, d.action) for d in c.out.deliveries if d.alert_id == "a2"
    }
    c.at(700)
    assert [d for d in c.out.deliveries if d.action == "batch"] == []  # nothing left to send


def test_an_alert_the_technician_accepted_has_no_shift_to_end() -> None:
    """tech (on no shift) took an unknown call point's call: reminded, not handed over."""
    c = Clocked(config())
    sig = Signal(
        "u1", "nurse", "espa:ward:999", "", "unknown_call_point", SignalState.RAISED, c.now
    )
    c.out.extend(c.engine.handle_signal(sig, c.now))
    c.respond("tech", "a1")
    c.at(605)
    assert "reopened" not in c.events("a1")
    assert c.rings("tech")[-1] == (600, "tech", "unknown_call_point")


def test_an_alert_restored_late_is_superseded_by_a_live_one_of_its_key() -> None:
    """A journal opened late holds the call from before the start; memory has it again."""
    old = Clocked(config())
    old.signal("cord-102")
    old.signal("cord-101")
    stored = {a.device: a for a in old.engine.active}
    c = Clocked(config(), first_id=50)
    c.at(30)
    c.signal("cord-102")  # pulled again while the journal could not be read
    (newer,) = c.engine.active
    back = c.engine.restore_late(
        stored["cord-102"], ["n-ost"], 1, c.now, timeline=journaled(old, stored["cord-102"].id)
    )
    assert [(t.event, t.detail, t.reason) for t in back.transitions] == [
        ("cleared", f"by {newer.id}", "superseded")
    ]
    assert [(d.handset, d.action) for d in back.deliveries] == [("n-ost", "cancel")]
    other = stored["cord-101"]
    # Its queued ring was cancelled with the file's queue: it rings its step again.
    again = c.engine.restore_late(other, ["n-ost"], 1, c.now)
    assert [(t.event, t.detail) for t in again.transitions] == [
        ("ringing", "again, journal opened late: n-ost")
    ]
    assert [(d.handset, d.action) for d in again.deliveries] == [("n-ost", "ring")]
    assert {a.id for a in c.engine.active} == {newer.id, other.id}
    c.signal("cord-102", "cleared")  # the key is the live alert's
    assert {a.id for a in c.engine.active} == {other.id}


# -- found in review (2026-11-25) ------------------------------------------------------


def door_and_cord() -> tuple[Clocked, Alert, Alert]:
    """A door alarm in 101 ringing n-ost (a1), and a pull cord grouped under it (a2)."""
    old = Clocked(config())
    old.signal("door-101")
    old.at(20)
    old.signal("cord-101")
    assert old.events("a2") == ["raised", "grouped"]
    door, cord = old.engine.alert("a1"), old.engine.alert("a2")
    assert door is not None
    assert cord is not None
    return old, door, cord


def test_restore_late_supersede_of_a_group_leader_loses_the_pull_cord_joined_to_it() -> None:
    """The journal held door-101 (leader) with cord-101 grouped into it. The journal could
    not be read at start; the broker's retained door-open replay raised the door anew. When
    the file opens late, the old door is superseded, and the resident's pull cord must still
    reach a nurse: it must ring or escalate, not sit forever as a member of a dead group.
    """
    old, door, cord = door_and_cord()

    c = Clocked(config(), first_id=50)
    c.now = c.start + 30
    c.signal("door-101")  # retained replay on an empty memory: a new door alert
    c.out = Outcome()
    for stored in (door, cord):  # oldest first, as the journal lists them
        c.out.extend(
            c.engine.restore_late(stored, ["n-ost"], 2, c.now, timeline=journaled(old, stored.id))
        )
    # The old door ends; the cord leaves its group and joins the newer door's, as a cord
    # pulled beside an open door does: n-ost's screen shows the call, at its priority.
    assert c.events("a1")[-1] == "cleared"
    assert c.events("a2")[-2:] == ["ungrouped", "grouped"]
    assert c.engine.alert("a2").group == "a50"  # type: ignore[union-attr]
    (shown,) = [d for d in c.out.deliveries if d.alert_id == "a50" and d.action == "update"]
    assert [m["alert_id"] for m in shown.payload["members"]] == ["a2"]
    assert shown.payload["priority"] == "high"
    c.at(200)  # nobody takes the group: it escalates, the call with it
    assert ("a50", "escalated") in [(t.alert.id, t.event) for t in c.out.transitions]


def test_restore_late_supersede_by_a_held_replay_silences_a_ringing_bed_exit_for_its_hold_off() -> (
    None
):
    """bed-102 had rung since 1200 s and nobody took it (it is at the failsafe step). The
    daemon restarts with an unreadable journal; the retained bed level is replayed and held
    1200 s under bed-night. The journal opens 10 s later: the ringing alarm is cancelled on
    every handset and nothing rings for the next 20 minutes.
    """
    old = Clocked(config())
    old.signal("bed-102")
    old.at(1400)  # rang 1200 (n-ost), 1260 (n-vest), 1320 (vakt), rings the last step again
    bed = old.engine.alert("a1")
    assert bed is not None
    assert bed.state is AlertState.ACTIVE
    rung = sorted({h for _, h, _ in old.rings()})

    c = Clocked(config(), start=old.now, first_id=50)
    c.signal("bed-102")  # the retained level, on an empty memory: held 1200 s
    c.at(10)
    c.out.extend(c.engine.restore_late(bed, rung, 10, c.now, timeline=journaled(old, "a1")))
    events = [(t.alert.id, t.event, t.reason) for t in c.out.transitions]
    assert ("a50", "cancelled", "superseded") in events  # the held replay gives way
    assert c.engine.alert("a50") is None
    assert c.engine.alert("a1").state is AlertState.ACTIVE  # type: ignore[union-attr]
    assert sorted(h for t, h, _ in c.rings() if t == 10) == rung  # its last step again


def test_a_pull_cord_joined_to_a_group_waiting_in_a_rate_limit_batch_is_shown_as_the_door() -> None:
    """n-ost is over budget: the door in 101 waits in her batch; the resident then pulls the
    cord in 101, which joins the door's group. The batch that reaches her lists only
    "Door open room 101" at medium priority: the call (high) is nowhere on her screen.
    """
    c = Clocked(config("rate_limit: {max: 1, per: 600}\n"))
    c.signal("cord-102")  # a1: n-ost's budget
    c.signal("door-101")  # a2: batched for n-ost
    assert c.events("a2")[-1] == "batched"
    c.at(10)
    c.signal("cord-101")  # a3: joins the door's group
    assert c.events("a3") == ["raised", "grouped"]
    c.respond("n-ost", "a1")
    c.at(600)  # the batch goes out when n-ost's window ends
    batches = [d for d in c.out.deliveries if d.action == "batch" and d.handset == "n-ost"]
    assert batches
    payload = batches[0].payload
    kinds = {a["kind"] for a in payload["alerts"]}
    texts = " ".join(a["text"] for a in payload["alerts"]) + " " + payload["text"]
    assert "pull_cord" in kinds or "pull_cord" in texts or "Call" in texts, payload
    assert payload["priority"] == "high", payload


def test_a_group_window_is_not_moved_by_a_clock_step_back() -> None:
    """n-ost took the door alarm in 101 at 5 s; NTP steps the clock back an hour at 10 s;
    the resident pulls the cord at 600 s, far outside the 120 s group window. It must ring
    as its own call; instead it joins the door's group, already accepted, as a silent update.
    """
    c = Clocked(config())
    c.signal("door-101")  # a1 rings n-ost
    c.at(5)
    c.respond("n-ost", "a1")
    c.at(10)
    c.step(-3600)
    c.at(600)
    c.signal("cord-101")  # a2
    assert "grouped" not in c.events("a2")
    assert (600, "n-ost", "pull_cord") in c.rings()


def test_restore_late_rings_afresh_the_calls_whose_queued_rings_it_cancelled() -> None:
    """The journal's queued messages from before the start are marked cancelled when the
    file opens late, "the alerts they were for are rung afresh by this process". The
    engine's restore_late rings nothing: an unknown call point (no escalation timer) is
    never heard of again, and a fresh pull cord waits for its step timeout without ever
    reaching its primary again.
    """
    old = Clocked(config())
    sig = Signal(
        "u1", "nurse", "espa:ward:999", "", "unknown_call_point", SignalState.RAISED, old.now
    )
    old.out.extend(old.engine.handle_signal(sig, old.now))  # a1: rings everyone on duty
    old.signal("cord-102")  # a2: rings n-ost
    stored = [old.engine.alert("a1"), old.engine.alert("a2")]
    c = Clocked(config(), start=old.now, first_id=50)
    c.at(5)  # the file opens late; its queued rings were cancelled (journal.cancel_queued)
    for a in stored:
        assert a is not None
        rung = sorted({d.handset for d in old.out.deliveries if d.alert_id == a.id})
        c.out.extend(c.engine.restore_late(a, rung, 1, c.now, timeline=journaled(old, a.id)))
    c.at(3600)
    assert [h for _, h, k in c.rings() if k == "unknown_call_point"], "unknown call point lost"
    assert (5, "n-ost", "pull_cord") in c.rings()


def test_a_failed_ring_at_the_last_step_rings_the_last_step_again_at_once() -> None:
    """At the failsafe step every page fails (a paging transmitter fault): each round of
    failures rings the whole last step again at once, not at LAST_STEP_REPEAT's pace, so
    the handsets that do work are rung in a storm as fast as the channel reports failures.
    """
    c = Clocked(config())
    c.signal("cord-102")
    c.at(121)  # step 2: vakt rung
    for _ in range(3):
        for h in ("n-ost", "n-vest", "vakt"):
            c.out.extend(c.engine.handle_delivery_failed(h, "a1", c.now, why="fault"))
    at_121 = [h for t, h, _ in c.rings() if t == 121]
    assert len(at_121) <= 4, f"{len(at_121)} rings within one second: {at_121}"


def test_with_reminder_zero_a_fall_kept_by_presence_at_the_shift_change_is_never_handed_over() -> (
    None
):
    """reminder: 0. n-ost takes a fall in 102 at 06:55 and is in the room at 07:00, so the
    shift change leaves it hers; she leaves at 07:05 and goes home, the fall sensor still
    raised. No reminder ever comes (reminder 0) and no later shift change looks again before
    22:00: the day staff are never told of an open fall alarm accepted by an off-duty nurse.
    """
    c = Clocked(config(base=YAML.replace("reminder: 600", "reminder: 0")), start=MORNING)
    c.at(300)  # 06:55
    c.signal("fall-102")
    c.respond("n-ost", "a1")
    c.at(480)
    c.signal("pres-102")  # 06:58: she is with the resident
    c.at(900)  # 07:05: past the shift change, she leaves
    assert c.rings() == [(300, "n-ost", "fall")]  # 07:00: she is in the room, it stays hers
    c.signal("pres-102", "cleared")
    assert c.rings()[1:] == [(900, "d-ost", "fall"), (900, "d-2", "fall")]
    assert c.events("a1")[-3:] == ["reopened", "escalated", "ringing"]


def test_restore_late_brings_a_group_back_whole_in_either_order() -> None:
    """No newer alert: a member that comes back before its leader stays in its group, and
    the leader rings its step again (its queued ring was cancelled) with the call on it."""
    old, door, cord = door_and_cord()
    for first, second in ((door, cord), (cord, door)):
        c = Clocked(config(), start=old.now, first_id=50)
        c.at(5)
        for stored in (first, second):
            c.out.extend(
                c.engine.restore_late(
                    stored, ["n-ost"], 2, c.now, timeline=journaled(old, stored.id)
                )
            )
        assert c.engine.alert("a2").group == "a1"  # type: ignore[union-attr]
        assert "ungrouped" not in c.events("a2")
        sent = [(d.alert_id, d.handset, d.action) for d in c.out.deliveries]
        assert sent[0] == ("a1", "n-ost", "ring")
        last = c.out.deliveries[-1]  # the ring, or an update once the cord is back
        assert (last.alert_id, last.handset, last.payload["priority"]) == ("a1", "n-ost", "high")
        assert [m["alert_id"] for m in last.payload["members"]] == ["a2"]


def test_restore_late_releases_the_members_of_a_superseded_leader_restored_first() -> None:
    """The cord comes back before its door, which a newer door supersedes: the cord leaves
    the old group with it and joins the newer door's, not the grave of the old one."""
    old, door, cord = door_and_cord()
    c = Clocked(config(), start=old.now, first_id=50)
    c.signal("door-101")  # a50
    c.at(5)
    for stored in (cord, door):
        c.out.extend(
            c.engine.restore_late(stored, ["n-ost"], 2, c.now, timeline=journaled(old, stored.id))
        )
    assert c.engine.alert("a1") is None
    assert c.engine.alert("a2").group == "a50"  # type: ignore[union-attr]
    assert c.events("a2")[-2:] == ["ungrouped", "grouped"]


# -- a crash between sending and committing (2026-11-25) ------------------------------------


def _press(signal_id: str, state: str = "raised", device: str = "cord-101") -> Signal:
    dc = config().devices[device]
    return Signal(signal_id, "test", device, dc.room, dc.kind, SignalState(state), NIGHT)


def _derived(generations: dict[str, int]) -> Engine:
    """An engine deriving its ids, as the gateway builds it, from what the journal holds."""
    engine = Engine(config(), now=NIGHT, salt="site")
    engine.restore_generations(generations)
    return engine


def test_a_redelivered_signal_re_creates_its_alert_id_after_a_crash() -> None:
    """A QoS 1 raise sent again by the broker gets the id its first copy rang with."""
    before = _derived({}).handle_signal(_press("mqtt-7"), NIGHT).deliveries[0]
    # The crash lost the generation's commit: the restart starts from the journal's.
    again = _derived({}).handle_signal(_press("mqtt-7"), NIGHT + 5).deliveries[0]
    assert (again.alert_id, again.seq) == (before.alert_id, before.seq)


def test_another_press_after_a_crash_that_lost_the_first_gets_an_id_of_its_own() -> None:
    """A press nothing resends (QoS 0, an ESPA call) rang, then the crash lost its commit.

    The next press, identical bytes included, used to derive the same id and seq 1: the
    handset dropped the call as a repeat of the one it showed.
    """
    first = _derived({}).handle_signal(_press("same"), NIGHT, once=True).deliveries[0]
    second = _derived({}).handle_signal(_press("same"), NIGHT + 60, once=True).deliveries[0]
    assert second.alert_id != first.alert_id
    assert second.action == "ring"


def test_a_different_signal_on_the_same_generation_gets_another_id() -> None:
    """A QoS 1 press the broker lost with its session (a power cut) is not re-created by the
    next press, which carries another packet id."""
    first = _derived({}).handle_signal(_press("mqtt-7"), NIGHT).deliveries[0]
    other = _derived({}).handle_signal(_press("mqtt-8"), NIGHT + 60).deliveries[0]
    assert other.alert_id != first.alert_id


def test_a_restored_alert_numbers_its_messages_past_this_start() -> None:
    """An update sent but not committed before a crash must not share its seq with the
    cancel after the restart: the handset would drop the cancel and ring on."""
    c = Clocked(config())
    c.signal("cord-101")  # a1 rings n-ost, seq 1, committed
    c.at(10)
    c.respond("n-ost", "a1")  # the update showing her accept, seq 2, lost its commit
    assert [(d.action, d.seq) for d in c.out.deliveries] == [("ring", 1), ("update", 2)]
    alert = c.engine.alert("a1")
    assert alert is not None
    for start, seq in ((2, 2_000_001), (3, 3_000_001)):
        fresh = Engine(config(), now=c.now)
        fresh.use_start(start)
        fresh.restore(alert, ["n-ost"], 1)
        (cancel,) = fresh.handle_signal(_press("s9", "cleared"), c.now + 5).deliveries
        assert (cancel.action, cancel.seq, cancel.payload["seq"]) == ("cancel", seq, seq)


def test_a_digest_sent_with_the_journal_down_is_not_reused_after_a_restart() -> None:
    """Disk full: Tuesday's digest went out, never committed. After a restart (the same
    journaled generations) Wednesday's, with other items, took its id and seq 1, and the
    technician's handset dropped it as a repeat."""

    def digest(battery_at: float, digest_at: float, start: int) -> tuple[str, int]:
        engine = _derived({})
        engine.use_start(start)
        bed = config().devices["bed-102"]
        low = Signal(f"b{battery_at}", "test", "bed-102", bed.room, "battery_low",
                     SignalState.RAISED, battery_at)  # fmt: skip
        engine.handle_signal(low, battery_at, once=True)
        (sent,) = [d for d in engine.tick(digest_at).deliveries if d.action == "digest"]
        return sent.alert_id, sent.seq

    day = 86400.0
    tuesday = digest(NIGHT + 3600, NIGHT + 8.5 * 3600, 2)
    wednesday = digest(NIGHT + day + 3600, NIGHT + day + 8.5 * 3600, 3)
    assert wednesday != tuesday


@pytest.mark.parametrize(
    ("start", "last_seq", "expected"),
    [(3, 3_000_007, 4_000_008), (2, 5_000_003, 6_000_004)],
    ids=["ran-into-this-start-s-range", "journal-from-a-later-start"],
)
def test_a_restored_alert_that_ran_past_its_start_s_range_goes_further_still(
    start: int, last_seq: int, expected: int
) -> None:
    """A sensor chattering all night can take one alert past SEQ_STRIDE messages, into
    the next start's range (or a journal comes back from a backup): its seqs then jump a
    whole stride past its own, never to a base at or below them."""
    c = Clocked(config())
    c.signal("cord-101")
    alert = c.engine.alert("a1")
    assert alert is not None
    fresh = Engine(config(), now=c.now)
    fresh.use_start(start)
    fresh.restore(alert, ["n-ost"], last_seq)  # committed; more may have left uncommitted
    (cancel,) = fresh.handle_signal(_press("s9", "cleared"), c.now + 5).deliveries
    assert cancel.seq == expected
