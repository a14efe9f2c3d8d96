"""One daemon per journal: the pid-file lock."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gateway.errors import JournalError
from gateway.pidlock import PidLock


def test_a_second_holder_is_refused_naming_the_first(tmp_path: Path) -> None:
    first = PidLock(tmp_path / "state" / "journal.db.pid")
    first.acquire()
    assert first.path.read_text() == f"{os.getpid()}\n"
    with pytest.raises(JournalError, match=rf"another alertgw \(pid {os.getpid()}\)"):
        PidLock(first.path).acquire()
    # The refused attempt left the holder's pid in place.
    assert first.path.read_text() == f"{os.getpid()}\n"
    first.release()


def test_release_removes_the_file_and_frees_the_lock(tmp_path: Path) -> None:
    path = tmp_path / "journal.db.pid"
    path.write_text("99999999\n")  # stale, from a daemon killed with -9
    lock = PidLock(path)
    lock.acquire()
    assert path.read_text() == f"{os.getpid()}\n"
    lock.release()
    assert not path.exists()
    again = PidLock(path)
    again.acquire()
    again.release()
    lock.release()  # a second release is harmless


def test_a_pid_that_cannot_be_written_keeps_the_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk: the lock still keeps a second daemon out; only the pid is missing."""
    path = tmp_path / "journal.db.pid"
    lock = PidLock(path)

    def full(_fd: int, _data: bytes) -> int:
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as m:
        m.setattr(os, "write", full)
        lock.acquire()
    assert lock.locked
    assert "No space left on device" in lock.unwritten
    with pytest.raises(JournalError, match="another alertgw"):
        PidLock(path).acquire()
    lock.release()
    assert not lock.locked
