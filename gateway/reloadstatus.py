"""The outcome of each config reload, in a small JSON file beside the pid file.

SIGHUP carries no answer: the daemon writes one entry per reload attempt, and `alertgw
reload` waits for the entry after its signal, so a refused reload fails the command (and
`systemctl reload`) instead of printing "ok" while the daemon logs config_reload_failed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from pathlib import Path
from typing import Literal, get_args

import orjson
import structlog

log = structlog.get_logger("alertgw")
Outcome = Literal["applied", "failed", "skipped"]
_OUTCOMES: dict[object, Outcome] = {o: o for o in get_args(Outcome)}


@dataclasses.dataclass(frozen=True, slots=True)
class ReloadStatus:
    """One reload attempt: `seq` grows by one per attempt, also across restarts."""

    seq: int
    pid: int
    outcome: Outcome
    problems: tuple[str, ...] = ()
    file: str = ""
    time: float = 0.0


def status_path(journal_path: str | os.PathLike[str]) -> Path:
    """The status file of the daemon on this journal (beside `JOURNAL.pid`)."""
    return Path(f"{os.fspath(journal_path)}.reload")


def read_status(path: Path) -> ReloadStatus | None:
    """The last entry; None when there is none or the file is not an entry.

    Any other OSError (e.g. no permission) is raised: it is not the same as no answer.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    seq, pid, outcome = data.get("seq"), data.get("pid"), data.get("outcome")
    problems, file, at = data.get("problems", []), data.get("file", ""), data.get("time", 0.0)
    if (
        not isinstance(seq, int)
        or not isinstance(pid, int)
        or outcome not in _OUTCOMES
        or not isinstance(problems, list)
        or not all(isinstance(p, str) for p in problems)
        or not isinstance(file, str)
        or not isinstance(at, int | float)
    ):
        return None
    return ReloadStatus(seq, pid, _OUTCOMES[outcome], tuple(problems), file, float(at))


def write_status(path: Path, status: ReloadStatus) -> None:
    """Replace the file atomically: a reader sees the previous entry or this one, never half."""
    tmp = path.with_name(f"{path.name}.tmp")
    try:
        # No fsync: a status lost in a power cut answers nobody anyway (the waiter times out).
        tmp.write_bytes(orjson.dumps(dataclasses.asdict(status)))
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


class ReloadReporter:
    """The daemon's side: number each attempt and write it down; never raises."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seq: int | None = None

    def report(self, outcome: Outcome, problems: list[str] | None = None, file: str = "") -> None:
        """Write this attempt's outcome; a failure to write is logged, not raised."""
        error = self._write(outcome, problems or [], file)
        if error:
            log.error(
                "reload_status_write_failed", path=str(self.path), outcome=outcome, error=error
            )

    def _write(self, outcome: Outcome, problems: list[str], file: str) -> str:
        try:
            if self._seq is None:
                # Continue the previous daemon's numbering, so an entry of ours is never
                # mistaken for one a waiter saw before its signal. Read once: only the pid
                # lock's holder writes here.
                last = read_status(self.path)
                self._seq = last.seq if last is not None else 0
            self._seq += 1
            status = ReloadStatus(
                seq=self._seq,
                pid=os.getpid(),
                outcome=outcome,
                problems=tuple(problems),
                file=file,
                time=time.time(),
            )
            write_status(self.path, status)
        except Exception as exc:  # noqa: BLE001 - an unwritten status must never stop routing
            return f"{type(exc).__name__}: {exc}"
        return ""
