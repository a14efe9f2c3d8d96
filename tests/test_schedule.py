"""Schedules in the site's time zone, including both DST change nights in Europe/Oslo."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from gateway.config import parse_config
from gateway.schedule import Calendar

OSLO = ZoneInfo("Europe/Oslo")
CFG = parse_config(
    """
site: {timezone: Europe/Oslo}
schedules:
  night: {start: "22:00", end: "07:00"}
  day: {start: "07:00", end: "22:00"}
  weekend_night: {start: "22:00", end: "07:00", days: [fri, sat]}
"""
)


def ts(y: int, mo: int, d: int, h: int, mi: int = 0) -> float:
    """Epoch of a local Oslo wall time."""
    return dt.datetime(y, mo, d, h, mi, tzinfo=OSLO).timestamp()


def test_night_crosses_midnight() -> None:
    """A 22:00-07:00 window covers late evening and early morning, not the afternoon."""
    cal = Calendar(CFG)
    assert cal.active("night", ts(2026, 11, 24, 23, 30))
    assert cal.active("night", ts(2026, 11, 25, 6, 59))
    assert not cal.active("night", ts(2026, 11, 25, 7, 0))
    assert not cal.active("night", ts(2026, 11, 24, 15, 0))
    assert cal.active("day", ts(2026, 11, 24, 15, 0))


def test_spring_forward_night_is_an_hour_shorter() -> None:
    """On 29 March 2026 (02:00 -> 03:00) the night window is 8 real hours, not 9."""
    cal = Calendar(CFG)
    start = ts(2026, 3, 28, 22, 0)
    inside = [start + m * 60 for m in range(11 * 60) if cal.active("night", start + m * 60)]
    assert len(inside) == 8 * 60
    # 02:30 does not exist that night; one hour after 01:30 local is 03:30 local.
    assert cal.local(ts(2026, 3, 29, 1, 30) + 3600).hour == 3


def test_fall_back_night_is_an_hour_longer() -> None:
    """On 25 October 2026 (03:00 -> 02:00) the night window is 10 real hours."""
    cal = Calendar(CFG)
    start = ts(2026, 10, 24, 22, 0)
    inside = [start + m * 60 for m in range(12 * 60) if cal.active("night", start + m * 60)]
    assert len(inside) == 10 * 60


def test_days_filter_counts_early_morning_to_the_previous_day() -> None:
    """Saturday 03:00 belongs to Friday's night, Monday 03:00 to Sunday's (not listed)."""
    cal = Calendar(CFG)
    assert cal.active("weekend_night", ts(2026, 11, 28, 3, 0))  # Saturday early = Friday night
    assert not cal.active("weekend_night", ts(2026, 11, 30, 3, 0))  # Monday early = Sunday


def test_next_time_across_dst() -> None:
    """The next 07:30 after a DST night is 07:30 local wall time, whatever the offset."""
    cal = Calendar(CFG)
    for day in ((2026, 3, 28), (2026, 10, 24)):
        nxt = cal.next_time("07:30", ts(*day, 23, 0))
        local = cal.local(nxt)
        assert (local.hour, local.minute) == (7, 30)
        assert local.date() == dt.date(day[0], day[1], day[2] + 1)


def test_next_boundary_is_the_nearest_start_or_end() -> None:
    """The next change of any named schedule: 22:00 from 21:55, 07:00 from 23:00."""
    cal = Calendar(CFG)
    assert cal.next_boundary(["night", "day"], ts(2026, 11, 24, 21, 55)) == ts(2026, 11, 24, 22)
    assert cal.next_boundary(["night"], ts(2026, 11, 24, 23)) == ts(2026, 11, 25, 7)
    assert cal.next_boundary([], ts(2026, 11, 24, 23)) is None


def test_a_24_hour_shift_with_days_runs_from_its_start_to_the_next_day() -> None:
    """07:00-07:00 on [sat] covers Saturday 07:00 to Sunday 07:00, not Saturday 00-24."""
    cfg = parse_config('schedules:\n  weekend: {start: "07:00", end: "07:00", days: [sat]}\n')
    cal = Calendar(cfg)
    assert cal.active("weekend", ts(2026, 11, 28, 12))  # Saturday noon
    assert cal.active("weekend", ts(2026, 11, 29, 3))  # Sunday 03:00, inside the 24 h
    assert not cal.active("weekend", ts(2026, 11, 28, 3))  # Saturday 03:00: Friday's night
    assert not cal.active("weekend", ts(2026, 11, 29, 7))  # Sunday 07:00: over


def test_a_boundary_inside_the_repeated_hour_happens_once() -> None:
    """25 October 2026: a 02:30 handover is passed at the first 02:30 and stays passed.

    02:00-03:00 runs twice that night. On the second pass the early shift must not come
    back until 02:30 again: alerts would go to the carers who had already left.
    """
    cal = Calendar(
        parse_config(
            """
site: {timezone: Europe/Oslo}
schedules:
  early: {start: "22:00", end: "02:30"}
  late: {start: "02:30", end: "07:00"}
"""
        )
    )
    first = ts(2026, 10, 25, 2, 0)  # 02:00 CEST, the first pass
    minutes = [first + m * 60 for m in range(3 * 60)]  # to 04:00 CET
    early = [m for m in minutes if cal.active("early", m)]
    late = [m for m in minutes if cal.active("late", m)]
    assert early == minutes[:30]  # 02:00-02:29 CEST only
    assert late == minutes[30:]  # from the first 02:30 on, through the repeated hour
    # No second 02:30 boundary either: the next one is the late shift's end.
    assert cal.next_boundary(["early", "late"], first + 30 * 60) == ts(2026, 10, 25, 7, 0)


def test_a_boundary_the_spring_jump_skips_is_when_the_clock_jumps() -> None:
    """29 March 2026: 02:00 CET becomes 03:00 CEST, so a 02:30 handover happens at the jump.

    `active` hands over at 03:00 CEST; the next boundary used to be 03:30 CEST (zoneinfo's
    reading of the skipped 02:30), so what a rule suppressed until the handover was decided
    again half an hour after it.
    """
    cal = Calendar(
        parse_config(
            """
site: {timezone: Europe/Oslo}
schedules:
  early: {start: "22:00", end: "02:30"}
  late: {start: "02:30", end: "07:00"}
"""
        )
    )
    before = ts(2026, 3, 29, 1, 0)  # 01:00 CET
    jump = ts(2026, 3, 29, 3, 0)  # 03:00 CEST: one hour later in real time
    assert jump - before == 3600
    assert [cal.active("early", jump - 1), cal.active("late", jump - 1)] == [True, False]
    assert [cal.active("early", jump), cal.active("late", jump)] == [False, True]
    assert cal.next_boundary(["early", "late"], before) == jump
    assert cal.next_time("02:30", before) == jump
    # A boundary that exists is unchanged; the day after has its 02:30 again.
    assert cal.next_boundary(["early", "late"], jump) == ts(2026, 3, 29, 7, 0)
    assert cal.next_time("02:30", jump) == ts(2026, 3, 30, 2, 30)


def test_the_next_roster_change_is_a_shift_edge_or_an_override_edge() -> None:
    """Shift changes are each shift schedule's start and end; an override adds its two."""
    cfg = parse_config(
        """
site: {timezone: Europe/Oslo}
handsets: {a: {channel: console}, b: {channel: console}}
zones: {ost: {rooms: ["101"]}}
schedules:
  night: {start: "22:00", end: "07:00"}
  day: {start: "07:00", end: "22:00"}
roster:
  shifts:
    - {schedule: night, assign: {ost: [a]}}
    - {schedule: day, assign: {ost: [b]}}
  overrides: [{start: "2026-11-25T02:30", end: "2026-11-25T04:00", zone: ost, handsets: [b]}]
  failsafe: [b]
"""
    )
    cal = Calendar(cfg)
    roster = cfg.roster
    assert roster is not None
    assert cal.next_roster_change(roster, ts(2026, 11, 24, 23, 0)) == ts(2026, 11, 25, 2, 30)
    assert cal.next_roster_change(roster, ts(2026, 11, 25, 2, 30)) == ts(2026, 11, 25, 4, 0)
    assert cal.next_roster_change(roster, ts(2026, 11, 25, 4, 0)) == ts(2026, 11, 25, 7, 0)
    assert cal.next_roster_change(roster, ts(2026, 11, 25, 7, 0)) == ts(2026, 11, 25, 22, 0)
