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
