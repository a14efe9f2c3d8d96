"""Command output into a reader that goes away early, as in `alertgw history CONFIG | head -3`."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from typing import Final

# What a shell reports for a tool that SIGPIPE killed (`yes | head`): the output was cut
# short, which `set -o pipefail` scripts see the same way. Not 0, which says "all printed".
EX_SIGPIPE: Final = 128 + signal.SIGPIPE


def stop_quietly_on_closed_stdout(command: Callable[[], int]) -> int:
    """Run `command`; if standard output's reader has gone, stop without a word: EX_SIGPIPE."""
    try:
        code = command()
        sys.stdout.flush()  # into a pipe the last lines are still buffered: fail here, not later
    except BrokenPipeError:
        _point_stdout_at_devnull()
        return EX_SIGPIPE
    return code


def _point_stdout_at_devnull() -> None:
    # Any later write to stdout (a summary line, the flush at interpreter exit) would
    # raise again, past the handler: send it nowhere instead.
    try:
        fd = sys.stdout.fileno()
    except (OSError, ValueError):  # not a file descriptor (a test's capture): nothing to do
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)
