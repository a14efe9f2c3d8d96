"""Roster gaps: zones and times of the week with nobody on duty."""

from __future__ import annotations

import pytest

from gateway.config import parse_config
from gateway.coverage import roster_gaps, roster_overlaps

BASE = """
site: {timezone: Europe/Oslo}
zones:
  ost: {rooms: ["101"]}
  vest: {rooms: ["201"]}
handsets:
  a: {channel: console}
  b: {channel: console}
  vakt: {channel: console}
schedules:
  day: {start: "07:00", end: "21:00"}
  night: {start: "22:00", end: "07:00"}
  full_day: {start: "07:00", end: "22:00"}
  weeknight: {start: "22:00", end: "07:00", days: [mon, tue, wed, thu, fri]}
  evening: {start: "15:00", end: "23:00"}
"""
SUFFIX = " (an alert there raises no_staff_on_duty and rings the failsafe group)"


def gaps(shifts: str) -> list[str]:
    """The gap lines of BASE with these roster shifts."""
    return roster_gaps(
        parse_config(BASE + f"roster:\n  shifts:\n{shifts}  failsafe: [vakt]\n", filename="r.yaml")
    )


def test_a_fully_staffed_roster_has_no_gaps() -> None:
    """Day and night shifts that meet leave no gap."""
    shifts = (
        "    - {schedule: full_day, assign: {ost: [a], vest: [b]}}\n"
        "    - {schedule: night, assign: {ost: [b], vest: [b]}}\n"
    )
    assert gaps(shifts) == []


def test_an_hour_between_shifts_is_a_daily_gap() -> None:
    """Shifts 07-21 and 22-07 leave 21:00-22:00 unstaffed every day."""
    shifts = (
        "    - {schedule: day, assign: {ost: [a], vest: [b]}}\n"
        "    - {schedule: night, assign: {ost: [b], vest: [b]}}\n"
    )
    assert gaps(shifts) == [
        "roster: zone ost has nobody on duty 21:00-22:00 every day" + SUFFIX,
        "roster: zone vest has nobody on duty 21:00-22:00 every day" + SUFFIX,
    ]


@pytest.mark.parametrize(
    ("vest", "expected"),
    [
        ("", "at any time"),  # vest is in no shift's assign
        ("vest: [], ", "at any time"),  # assigned to nobody
    ],
)
def test_a_zone_nobody_is_assigned_to_is_never_staffed(vest: str, expected: str) -> None:
    """A zone missing from every shift, or assigned an empty list, is a gap all week."""
    shifts = (
        f"    - {{schedule: full_day, assign: {{{vest}ost: [a]}}}}\n"
        f"    - {{schedule: night, assign: {{{vest}ost: [b]}}}}\n"
    )
    assert gaps(shifts) == [f"roster: zone vest has nobody on duty {expected}" + SUFFIX]


def test_a_weekday_night_shift_leaves_the_weekend_nights_open() -> None:
    """Nights staffed Monday to Friday only: Saturday and Sunday nights are gaps."""
    shifts = (
        "    - {schedule: full_day, assign: {ost: [a], vest: [a]}}\n"
        "    - {schedule: weeknight, assign: {ost: [b], vest: [b]}}\n"
    )
    assert gaps(shifts)[0] == "roster: zone ost has nobody on duty 22:00-07:00 on sat, sun" + SUFFIX


def test_static_routing_without_a_roster_reports_nothing() -> None:
    """Without a roster there are no shifts to leave gaps."""
    assert roster_gaps(parse_config(BASE + "routing: [{handsets: [a]}]\n")) == []


def test_a_zone_covered_by_routes_for_some_kinds_has_gaps_only_for_the_others() -> None:
    """A night-only roster plus a day route for bed sensors: the cords are the day's gap."""
    config = parse_config(
        BASE
        + """
devices:
  bed-101: {room: "101", kind: bed_exit}
  cord-101: {room: "101", kind: pull_cord}
  battery-101: {room: "101", kind: battery_low}
roster:
  shifts:
    - {schedule: night, assign: {ost: [b], vest: [b]}}
  failsafe: [vakt]
routing:
  - {kinds: [bed_exit], zones: [ost], handsets: [a]}
""",
        filename="r.yaml",
    )
    assert roster_gaps(config) == [
        "roster: zone ost has nobody on duty for pull_cord 07:00-22:00 every day" + SUFFIX,
        "roster: zone vest has nobody on duty 07:00-22:00 every day" + SUFFIX,
    ]


def overlaps(shifts: str) -> list[str]:
    """The overlap lines of BASE with these roster shifts."""
    return roster_overlaps(
        parse_config(BASE + f"roster:\n  shifts:\n{shifts}  failsafe: [vakt]\n", filename="r.yaml")
    )


def test_shifts_that_meet_do_not_overlap() -> None:
    """07-22 and 22-07 hand over at 22:00: no minute has two shifts."""
    shifts = (
        "    - {schedule: full_day, assign: {ost: [a], vest: [b]}}\n"
        "    - {schedule: night, assign: {ost: [b], vest: [b]}}\n"
    )
    assert overlaps(shifts) == []


def test_a_handover_overlap_names_the_shift_that_is_not_on_duty() -> None:
    """The engine takes the first listed shift: the other one rings nobody in the overlap."""
    shifts = (
        "    - {name: natt, schedule: night, assign: {ost: [b]}}\n"
        "    - {schedule: full_day, assign: {ost: [a], vest: [a]}}\n"
        "    - {name: kveld, schedule: evening, assign: {ost: [b], vest: [b]}}\n"
    )
    assert overlaps(shifts) == [
        "roster: zone ost has 2 shifts 15:00-22:00 every day, roster.shifts[1] (full_day) and"
        " kveld (evening); the first listed is on duty then, not kveld",
        "roster: zone ost has 2 shifts 22:00-23:00 every day, natt (night) and kveld (evening);"
        " the first listed is on duty then, not kveld",
        "roster: zone vest has 2 shifts 15:00-22:00 every day, roster.shifts[1] (full_day) and"
        " kveld (evening); the first listed is on duty then, not kveld",
    ]
