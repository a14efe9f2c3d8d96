"""Where a roster leaves a zone with nobody on duty: a week swept minute by minute."""

from __future__ import annotations

import datetime as dt

from gateway.config import Config
from gateway.engine import Engine

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DAY = 24 * 60
_WEEK = 7 * _DAY


def roster_gaps(config: Config) -> list[str]:
    """One line per zone and uncovered stretch of a week; empty when always staffed."""
    if config.roster is None:
        return []
    engine = Engine(config)  # the run-time answer to "who is on duty", overrides aside
    # A week without a DST change, so each minute of the week is one local wall time.
    monday = dt.datetime(2026, 1, 5, tzinfo=engine.calendar.tz).timestamp()
    lines: list[str] = []
    for zone in config.zones:
        # Per kind: a zone the roster leaves by day may be covered by a route for its
        # bed sensors (`routing:` next to `roster:`), and not for its pull cords.
        kinds = sorted(
            {
                dc.kind
                for dc in config.devices.values()
                if config.zone_of(dc.room) == zone
                and config.kind(dc.kind).role == "alert"
                and not config.kind(dc.kind).technical  # the technician's, not the roster's
            }
        ) or ["*"]
        by_stretch: dict[tuple[bool, ...], list[str]] = {}
        for kind in kinds:
            uncovered = tuple(not engine.team(kind, zone, monday + 60 * m) for m in range(_WEEK))
            if any(uncovered):
                by_stretch.setdefault(uncovered, []).append(kind)
        for uncovered, left in by_stretch.items():
            what = "" if left == kinds else " for " + ", ".join(left)
            lines.extend(
                f"roster: zone {zone} has nobody on duty{what} {when} (an alert there raises "
                "no_staff_on_duty and rings the failsafe group)"
                for when in _describe(list(uncovered))
            )
    return lines


def roster_overlaps(config: Config) -> list[str]:
    """One line per zone and stretch of a week that two shifts assign: the first one wins.

    The engine takes the first listed shift whose schedule is active for the zone, so a
    handover overlap (day to 15:30, evening from 15:00) does not ring both teams.
    """
    if config.roster is None:
        return []
    engine = Engine(config)
    monday = dt.datetime(2026, 1, 5, tzinfo=engine.calendar.tz).timestamp()
    shifts = config.roster.shifts
    active = {
        schedule: [engine.calendar.active(schedule, monday + 60 * m) for m in range(_WEEK)]
        for schedule in {shift.schedule for shift in shifts}
    }
    names = [shift.name or f"roster.shifts[{i}]" for i, shift in enumerate(shifts)]
    lines: list[str] = []
    for zone in config.zones:
        assigning = [i for i, shift in enumerate(shifts) if zone in shift.assign]
        by_pair: dict[tuple[int, ...], list[bool]] = {}
        for m in range(_WEEK):
            on = tuple(i for i in assigning if active[shifts[i].schedule][m])
            if len(on) > 1:
                by_pair.setdefault(on, [False] * _WEEK)[m] = True
        for on, minutes in by_pair.items():
            listed = [f"{names[i]} ({shifts[i].schedule})" for i in on]
            both = ", ".join(listed[:-1]) + f" and {listed[-1]}"
            left_out = " and ".join(names[i] for i in on[1:])
            lines.extend(
                f"roster: zone {zone} has {len(on)} shifts {when}, {both}; the first listed is"
                f" on duty then, not {left_out}"
                for when in _describe(minutes)
            )
    return lines


def _describe(uncovered: list[bool]) -> list[str]:
    if all(uncovered):
        return ["at any time"]
    first = uncovered.index(False)  # start on a staffed minute, so no gap wraps the scan
    runs: list[tuple[int, int]] = []
    for i in range(first, first + _WEEK):
        minute = i % _WEEK
        if not uncovered[minute]:
            continue
        if runs and (runs[-1][0] + runs[-1][1]) % _WEEK == minute:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((minute, 1))
    daily: dict[str, list[str]] = {}
    out: list[str] = []
    for start, length in runs:
        end = (start + length) % _WEEK
        if length > _DAY:
            out.append(f"from {_at(start, day=True)} to {_at(end, day=True)}")
        else:
            daily.setdefault(f"{_at(start)}-{_at(end)}", []).append(_DAYS[start // _DAY])
    for hours, days in daily.items():
        on = "every day" if len(days) == len(_DAYS) else "on " + ", ".join(days)
        out.append(f"{hours} {on}")
    return out


def _at(minute: int, *, day: bool = False) -> str:
    text = f"{minute % _DAY // 60:02d}:{minute % 60:02d}"
    return f"{_DAYS[minute // _DAY]} {text}" if day else text
