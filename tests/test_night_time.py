"""How alertgw handles time on a night shift: DST, shift changes, clock steps.

Found by a review (2026-11-25); each test failed before its fix, as its docstring says.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import time
from pathlib import Path

from gateway.app import Gateway
from gateway.config import parse_config
from gateway.model import AlertState, Response, ResponseKind, Signal, SignalState
from tests.conftest import running
from tests.test_engine import OSLO, YAML, Clocked, config


def oslo(y: int, mo: int, d: int, h: int, mi: int = 0, *, s: int = 0) -> float:
    """Epoch of an Oslo wall time (fold 0: the first pass of a repeated hour)."""
    return dt.datetime(y, mo, d, h, mi, s, tzinfo=OSLO).timestamp()


# -- 1. a roster override whose boundary the spring jump skips ------------------------------


def test_an_override_starting_in_the_skipped_spring_hour_starts_at_the_jump() -> None:
    """29 March 2026, 02:00 CET -> 03:00 CEST. An override puts d-2 on zone ost from 02:30.

    02:30 does not exist that night, so by the README's rule (schedules and rosters follow
    local wall time; a boundary the spring change skips passes at the jump) d-2 is on duty
    from 03:00 CEST. A pull cord at 03:10 CEST rings n-ost, the nurse the override relieved:
    the override's naive time is read with the pre-jump offset (03:30 CEST), so it starts
    half an hour late, while a shift schedule's 02:30 on the same night turns at 03:00.
    """
    extra = (
        "  overrides: [{start: '2026-03-29T02:30', end: '2026-03-29T07:00', zone: ost,"
        " handsets: [d-2]}]\n"
    )
    base = YAML.replace("  failsafe: [vakt]\n", "  failsafe: [vakt]\n" + extra)
    jump = oslo(2026, 3, 29, 3, 0)  # 03:00 CEST, the instant 02:00 CET jumps to
    c = Clocked(config(base=base), start=jump + 600)  # 03:10 CEST
    c.signal("cord-101")
    assert c.rings() == [(0, "d-2", "pull_cord")], "the override is not on duty at 03:10"
    cal = c.engine.calendar
    roster = c.engine.config.roster
    assert roster is not None
    # The hand-over itself (shift change for accepted calls) is at the jump too.
    assert cal.next_roster_change(roster, oslo(2026, 3, 29, 1, 0)) == jump


# -- 2. an accept from a handset whose shift already ended ----------------------------------

MORNING = oslo(2026, 11, 25, 6, 59, s=30)  # 30 s before the night shift ends at 07:00


def test_a_call_accepted_by_the_leaving_nurse_after_her_shift_still_reaches_the_day_staff() -> None:
    """A pull cord rings n-ost at 06:59:30; at 07:00:10, already off duty, she taps accept.

    With `reminder: 0` the call then stays hers all day: no reminder, and the hand-over
    only runs at a shift change, which has passed. The day staff are never told, exactly
    what the README's hand-over exists to prevent ("a call the night nurse accepted and
    never resolved stayed hers all day"); an accept tapped a minute earlier is handed over.
    """
    c = Clocked(config(base=YAML.replace("reminder: 600", "reminder: 0")), start=MORNING)
    c.signal("cord-101")
    c.at(40)  # 07:00:10, the day shift is on
    c.respond("n-ost", "a1")
    c.at(40 + 120)  # two minutes later
    alert = c.engine.alert("a1")
    assert alert is not None
    day_rung = {h for _, h, _ in c.rings() if h in ("d-ost", "d-2")}
    assert day_rung, (
        f"still {alert.state} by {alert.accepted_by}; the day staff never heard of the call"
    )


def test_a_call_ringing_only_the_leaving_nurse_at_the_shift_change_rings_the_day_staff() -> None:
    """A pull cord at 06:59:30 rings n-ost alone (step 0, primary, 60 s). At 07:00 she is
    off duty, and until 07:00:30 the call rings nobody on duty: the day primary is not
    rung, and n-ost's handset is not told the call is no longer hers.

    An accepted call is handed over at 07:00 at once (README, *Shift change*); an
    unaccepted one, where nobody is going at all, waits out the leaving nurse's step. With
    a longer first step (`after: 300`) the day staff hear of it minutes late.
    """
    c = Clocked(config(), start=MORNING)
    c.signal("cord-101")
    c.at(35)  # 07:00:05
    assert {h for _, h, _ in c.rings()} & {"d-ost", "d-2"}, (
        f"rings so far: {c.rings()}; the day shift has not heard of the call"
    )


# -- 3. a forward wall-clock step while the router sleeps towards a wall-clock time ---------

GATEWAY_YAML = """
site: {{timezone: Europe/Oslo}}
zones:
  ost: {{rooms: ["101"]}}
devices:
  cord-101: {{room: "101", kind: pull_cord}}
handsets:
  natt: {{channel: console}}
  dag: {{channel: console}}
  vakt: {{channel: console}}
schedules:
  night: {{start: "22:00", end: "07:00"}}
  day: {{start: "07:00", end: "22:00"}}
roster:
  shifts:
    - {{schedule: night, assign: {{ost: [natt]}}}}
    - {{schedule: day, assign: {{ost: [dag]}}}}
  failsafe: [vakt]
escalation:
  default:
    steps: [{{to: primary, after: 60}}, {{to: failsafe, after: 60}}]
    reminder: 0
journal: {{path: {db}}}
metrics: {{enabled: false}}
"""


def raise_signal(gw: Gateway, now: float, device: str, kind: str) -> None:
    """Hand the running gateway a raised signal from `device` in room 101."""
    signal = Signal(
        id="s1",
        source="test",
        device=device,
        room="101",
        kind=kind,
        state=SignalState.RAISED,
        ts=now,
        received_at=now,
    )
    gw.put(signal)


class SteppedClock:
    """The real wall clock plus an offset a test steps, as NTP would."""

    def __init__(self, offset: float) -> None:
        self.offset = offset

    def __call__(self) -> float:
        return time.time() + self.offset


async def test_a_forward_clock_step_past_the_shift_change_hands_over_at_once(
    tmp_path: Path,
) -> None:
    """The box's clock is 15 min slow: 06:50 on it. The night nurse accepted a call; NTP
    then steps the clock to 07:05 (the real time), past the 07:00 shift change.

    The README: a step "neither stalls nor fires the timers"; rosters and the digest keep
    following local wall time, so the hand-over is due at once. The router is asleep for the
    600 s it computed before the step towards 07:00, and only wall-clock deadlines (shift
    change, schedule boundary, digest) are left: it looks at the clock again only then, so
    the call stays with the nurse gone home until 07:15 (late by the step, up to hours
    after a restored RTC; supervision, if configured, bounds it to 10 s).
    """
    wall = oslo(2026, 11, 25, 6, 50)
    clock = SteppedClock(wall - time.time())
    cfg = parse_config(GATEWAY_YAML.format(db=tmp_path / "j.db"))
    async with running(cfg, clock=clock, elapsed=time.monotonic, console=io.StringIO()) as r:
        gw = r.gateway
        raise_signal(gw, clock(), "cord-101", "pull_cord")
        await asyncio.sleep(0.2)
        (alert,) = gw.engine.active
        gw.put(Response("natt", alert.id, ResponseKind.ACCEPT, clock()))
        await asyncio.sleep(0.2)
        assert gw.engine.alert(alert.id).accepted_by == "natt"  # type: ignore[union-attr]
        clock.offset += 15 * 60  # NTP: 06:50 -> 07:05
        await asyncio.sleep(1.5)  # no kick: nothing else arrives on a quiet night
        after = gw.engine.alert(alert.id)
        assert after is not None
        assert (after.state, after.accepted_by) != (AlertState.ACCEPTED, "natt"), (
            "07:05 and the call is still with the night nurse who went home at 07:00"
        )


STEP_YAML = """
site: {{timezone: Europe/Oslo}}
zones:
  ost: {{rooms: ["101"]}}
devices:
  bed-101: {{room: "101", kind: bed_exit}}
handsets:
  a: {{channel: console}}
routing: [{{handsets: [a]}}]
rules: [{{name: bed, match: {{kinds: [bed_exit]}}, hold_off: 45}}]
journal: {{path: {db}}}
metrics: {{enabled: false}}
"""


async def test_a_restart_after_a_backward_clock_step_keeps_the_moved_hold_off(
    tmp_path: Path,
) -> None:
    """A bed exit is held 45 s; NTP steps the clock back an hour and alertgw sees it (the
    hold-off is moved, as the README promises); then alertgw restarts (a crash, a
    `systemctl restart`) before the hold-off ends.

    The step moved the deadline in memory only: the journal still holds the deadline of the
    old, fast clock, so the restarted daemon holds the bed exit for another hour and 45 s.
    The resident out of bed rings an hour late. The same goes for escalation steps and
    reminders of any alert whose next transition had not come before the restart.
    """
    clock = SteppedClock(0.0)
    cfg = parse_config(STEP_YAML.format(db=tmp_path / "j.db"))
    async with running(cfg, clock=clock, elapsed=time.monotonic, console=io.StringIO()) as r:
        gw = r.gateway
        raise_signal(gw, clock(), "bed-101", "bed_exit")
        await asyncio.sleep(0.3)
        (alert,) = gw.engine.active
        assert alert.state is AlertState.HELD
        clock.offset -= 3600  # the clock was an hour fast: NTP steps it back
        gw.kick()
        await asyncio.sleep(0.3)
        moved = gw.engine.alert(alert.id)
        assert moved is not None
        assert moved.due is not None
        assert moved.due - clock() < 60, "the running daemon moved the hold-off"
    async with running(cfg, clock=clock, elapsed=time.monotonic, console=io.StringIO()) as r:
        restored = r.gateway.engine.alert(alert.id)
        assert restored is not None
        assert restored.state is AlertState.HELD
        assert restored.due is not None
        left = restored.due - clock()
        assert left < 60, f"after the restart the bed exit is held {left / 60:.0f} more minutes"
