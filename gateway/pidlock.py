"""One daemon per journal: an exclusive `flock` on the pid file beside it.

Two gateways on one journal would both ring every alert and interleave their outbox ids.
The kernel drops the lock when the process dies, so a `kill -9` leaves no stale lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from gateway.errors import JournalError


class PidLock:
    """Hold `path` locked and holding our pid until `release`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self.unwritten = ""  # why our pid could not be written into the locked file

    def acquire(self) -> None:
        """Lock and write our pid; raise JournalError naming the holder if another has it.

        Any other OSError (no folder, no permission, a read-only mount) is raised as is.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_pid(fd)
                os.close(fd)
                who = f"pid {holder}" if holder else "another process"
                raise JournalError(
                    f"another alertgw ({who}) is running on this journal; "
                    f"two gateways would both ring every alert (lock: {self.path})"
                ) from None
            except OSError:
                os.close(fd)
                raise
            # The holder may have unlinked the file between our open and our lock: then we
            # hold a lock on a name nobody will look at again, so open the new file.
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        self._fd = fd
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError as exc:
            # A full disk: the lock is what keeps a second daemon out, and it holds. Only
            # `alertgw reload` loses its way to us (systemd's MAINPID still has it).
            self.unwritten = str(exc)

    @property
    def locked(self) -> bool:
        """Whether we hold the lock."""
        return self._fd is not None

    def release(self) -> None:
        """Remove the pid file, then drop the lock (so a waiting start sees a fresh file)."""
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            self.path.unlink()
        os.close(self._fd)
        self._fd = None


def holder(path: Path) -> int | None:
    """The pid of the daemon holding `path` locked, or None when no process holds it.

    A pid file nobody holds was left by a daemon that died (kill -9, power cut); its pid may
    belong to another process by now, which a SIGHUP would kill. Probing takes a shared lock
    for an instant, so a daemon starting in that instant exits 1 and systemd starts it again.
    """
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_pid(fd)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _read_pid(fd: int) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        return int(os.pread(fd, 32, 0).decode().strip())
    return None
