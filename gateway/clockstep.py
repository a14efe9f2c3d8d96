"""Tell a stepped wall clock (NTP correction, a restored RTC) apart from elapsed time."""

from __future__ import annotations

import ctypes
import time
from collections.abc import Callable

# NTP slews at most 500 ppm (under 2 s an hour); anything larger between two reads is a step.
STEP_THRESHOLD = 2.0


def elapsed_clock() -> float:
    """Seconds since boot, never stepped; counts through a suspend where the OS can."""
    # CLOCK_BOOTTIME (Linux) keeps counting while suspended, as the wall clock does, so a
    # suspend is not mistaken for a forward step; elsewhere fall back to the monotonic clock.
    if _BOOTTIME is not None:
        return time.clock_gettime(_BOOTTIME)
    return time.monotonic()


_BOOTTIME: int | None = getattr(time, "CLOCK_BOOTTIME", None)


_TIME_ERROR = 5  # adjtimex(2): the clock is not synchronised


def clock_synchronized() -> bool:
    """True when the kernel says an NTP client keeps the wall clock synchronised.

    adjtimex(2) with no modes only reads (no privilege needed); this is what
    `timedatectl` shows as "System clock synchronized". False where it cannot be asked.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        # struct timex is ~208 bytes on 64-bit Linux; zeroed `modes` asks for nothing.
        buf = ctypes.create_string_buffer(512)
        state = int(libc.adjtimex(buf))
    except (OSError, AttributeError):
        return False
    return 0 <= state != _TIME_ERROR


class ClockWatch:
    """Reads the wall clock and says how far it was stepped since the previous read."""

    __slots__ = ("_elapsed", "_offset", "_threshold", "_wall")

    def __init__(
        self,
        wall: Callable[[], float],
        elapsed: Callable[[], float],
        *,
        threshold: float = STEP_THRESHOLD,
    ) -> None:
        self._wall = wall
        self._elapsed = elapsed
        self._threshold = threshold
        self._offset = wall() - elapsed()

    def read(self) -> tuple[float, float]:
        """Return (wall time, step): step is 0.0 unless the wall clock jumped by the threshold."""
        now = self._wall()
        offset = now - self._elapsed()
        step, self._offset = offset - self._offset, offset
        return now, step if abs(step) >= self._threshold else 0.0
