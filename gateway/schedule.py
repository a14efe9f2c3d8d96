"""Wall-clock questions in the site's time zone, answered correctly across DST changes."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterable
from zoneinfo import ZoneInfo

from gateway.config import Config, OverrideConfig, RosterConfig, ScheduleConfig, parse_hhmm

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class Calendar:
    """Answers 'is schedule X active at t' and 'when is the next HH:MM' for one time zone."""

    def __init__(self, config: Config) -> None:
        self.tz = ZoneInfo(config.site.timezone)
        self._schedules = {
            name: (parse_hhmm(sc.start), parse_hhmm(sc.end), frozenset(sc.days))
            for name, sc in config.schedules.items()
        }

    def local(self, ts: float) -> dt.datetime:
        """The local wall-clock time at epoch `ts`."""
        return dt.datetime.fromtimestamp(ts, tz=self.tz)

    def active(self, name: str, ts: float) -> bool:
        """True when schedule `name` covers epoch `ts` (local wall time, so DST-safe)."""
        (sh, sm), (eh, em), days = self._schedules[name]
        local = self.local(ts)
        while local.fold:
            # The repeated hour of an autumn DST change (its second pass): a boundary in it
            # passed on the first pass and must not pass again, or a 02:30 handover would
            # hand alerts back to the leaving shift for half an hour. Schedules stand as at
            # the end of the first pass (at most an hour of one-minute steps, once a year).
            ts -= 60
            local = self.local(ts)
        minute = local.hour * 60 + local.minute
        start, end = sh * 60 + sm, eh * 60 + em
        if start == end:  # 24 h from `start`: "07:00"-"07:00" on sat runs to Sunday 07:00
            inside = True
            day = local.weekday() if minute >= start else (local.weekday() - 1) % 7
        elif start < end:
            inside = start <= minute < end
            day = local.weekday()
        else:  # crosses midnight: the early-morning part belongs to the previous day's window
            inside = minute >= start or minute < end
            day = local.weekday() if minute >= start else (local.weekday() - 1) % 7
        return inside and (not days or _DAYS[day] in days)

    def next_time(self, hhmm: str, after: float) -> float:
        """Epoch of the next local HH:MM strictly after `after`."""
        return self._next(*parse_hhmm(hhmm), after)

    def next_boundary(self, names: Iterable[str], after: float) -> float | None:
        """Epoch of the next start or end of any of the named schedules after `after`."""
        times = [self._next(h, m, after) for name in names for h, m in self._schedules[name][:2]]
        return min(times, default=None)

    def _next(self, h: int, m: int, after: float) -> float:
        local = self.local(after)
        for add in range(3):
            day = local.date() + dt.timedelta(days=add)
            candidate = dt.datetime(day.year, day.month, day.day, h, m, tzinfo=self.tz)
            ts = wall_epoch(candidate)
            if ts > after:
                return ts
        raise AssertionError("unreachable: a day always has a next HH:MM")

    def next_roster_change(self, roster: RosterConfig, after: float) -> float | None:
        """Epoch of the next start or end of any roster shift or override after `after`.

        A shift's HH:MM on a day it does not run is a boundary too: a spare look, no harm.
        """
        times = [
            t for ov in roster.overrides for t in _bounds(ov.start, ov.end, self.tz) if t > after
        ]
        shift = self.next_boundary({s.schedule for s in roster.shifts}, after)
        if shift is not None:
            times.append(shift)
        return min(times, default=None)

    def within(self, override: OverrideConfig, ts: float) -> bool:
        """True when a roster override covers epoch `ts`."""
        start, end = _bounds(override.start, override.end, self.tz)
        return start <= ts < end


def wall_epoch(wall: dt.datetime) -> float:
    """Epoch of an aware local time; one the spring-forward jump skips (02:30) is the jump.

    A window it bounds turns at the jump (`active` reads 03:00 as past 02:30); zoneinfo
    would put the skipped time an hour on (03:30). A repeated autumn time is its first pass.
    """
    ts = wall.timestamp()
    naive = wall.replace(tzinfo=None)
    if dt.datetime.fromtimestamp(ts, tz=wall.tzinfo).replace(tzinfo=None) == naive:
        return ts
    # The jump lies between the instants the offsets before and after it give; to the second.
    lo, hi = int(wall.replace(fold=1).timestamp()), int(ts)
    while hi - lo > 1:  # local wall time at lo is before `wall`, at hi past it
        mid = (lo + hi) // 2
        if dt.datetime.fromtimestamp(mid, tz=wall.tzinfo).replace(tzinfo=None) >= naive:
            hi = mid
        else:
            lo = mid
    return float(hi)


@functools.lru_cache(maxsize=256)
def _bounds(start: str, end: str, tz: ZoneInfo) -> tuple[float, float]:
    def parse(text: str) -> float:
        value = dt.datetime.fromisoformat(text)
        if value.tzinfo is None:
            return wall_epoch(value.replace(tzinfo=tz))  # a skipped time starts at the jump
        return value.timestamp()

    return parse(start), parse(end)


__all__ = ["Calendar", "ScheduleConfig", "wall_epoch"]
