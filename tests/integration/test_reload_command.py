"""`alertgw reload` against an `alertgw run` process on a real broker: the outcome comes back."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from gateway.reloadstatus import ReloadStatus, read_status
from tests.conftest import Broker, base_text
from tests.test_cli import alertgw_process

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
HOT = "  - {zones: [west], handsets: [night2]}\n"  # routing: a reload applies it


@contextlib.contextmanager
def daemon(path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`alertgw run PATH` until the block ends; yields once its pid file names it."""
    with (path.parent / "daemon.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "run", str(path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=path.parent,
            env=ENV,
        )
        try:
            pidfile = path.parent / "journal.db.pid"
            # Read, never lock-probe: a probe as the daemon locks would make it exit 1.
            for _ in range(400):
                if proc.poll() is not None:
                    raise AssertionError((path.parent / "daemon.log").read_text())
                with contextlib.suppress(OSError):
                    if pidfile.read_text().strip() == str(proc.pid):
                        break
                time.sleep(0.05)
            else:
                raise AssertionError("the daemon never wrote its pid file")
            yield proc
        finally:
            proc.send_signal(signal.SIGCONT)  # in case a test left it stopped
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def answer(tmp_path: Path, seq: int) -> ReloadStatus:
    """Wait for the daemon's status entry number `seq`."""
    for _ in range(400):
        entry = read_status(tmp_path / "journal.db.reload")
        if entry is not None and entry.seq >= seq:
            return entry
        time.sleep(0.05)
    raise AssertionError(f"no reload status {seq}")


def site(broker: Broker, tmp_path: Path) -> Path:
    """The standard MQTT test site, its journal in tmp_path."""
    path = tmp_path / "alertgw.yaml"
    text = base_text(broker.port, tmp_path)
    assert HOT in text
    assert "backoff_max: 0.5" in text
    path.write_text(text, encoding="utf-8")
    return path


def test_reload_exits_0_when_the_daemon_applies_the_file(broker: Broker, tmp_path: Path) -> None:
    """A routing change is applied, and the command says which daemon read which file."""
    path = site(broker, tmp_path)
    with daemon(path) as proc:
        path.write_text(path.read_text().replace(HOT, ""), encoding="utf-8")
        result = alertgw_process("reload", str(path))
        assert (result.returncode, result.stderr) == (0, ""), result.stderr
        assert result.stdout == f"alertgw (pid {proc.pid}) reloaded {path}\n"
        assert proc.poll() is None
    assert '"config_reloaded"' in (tmp_path / "daemon.log").read_text()


def test_reload_exits_1_with_the_problem_when_the_daemon_refuses(
    broker: Broker, tmp_path: Path
) -> None:
    """A valid file that changes `mqtt` needs a restart: the command fails and says so.

    The daemon keeps running its old config, and the next valid change is applied.
    """
    path = site(broker, tmp_path)
    with daemon(path) as proc:
        good = path.read_text()
        path.write_text(good.replace("backoff_max: 0.5", "backoff_max: 0.7"), encoding="utf-8")
        result = alertgw_process("reload", str(path))
        assert result.returncode == 1
        assert result.stdout == ""
        assert result.stderr.splitlines() == [
            f"{path}: mqtt changed; restart to apply",
            f"alertgw: pid {proc.pid} refused the new config and keeps running the old one",
        ]
        path.write_text(good.replace(HOT, ""), encoding="utf-8")
        result = alertgw_process("reload", str(path))
        assert result.returncode == 0, result.stderr
        assert proc.poll() is None


def test_reload_exits_1_when_the_daemon_does_not_answer_in_time(
    broker: Broker, tmp_path: Path
) -> None:
    """A daemon that cannot act on the signal (here: stopped) fails the command; it says so.

    Its answer, given once it runs again, is not taken for the next command's.
    """
    path = site(broker, tmp_path)
    with daemon(path) as proc:
        proc.send_signal(signal.SIGSTOP)
        result = alertgw_process("reload", str(path), "--timeout", "0.5")
        proc.send_signal(signal.SIGCONT)
        assert result.returncode == 1
        assert result.stderr.startswith(
            f"alertgw: no answer from alertgw (pid {proc.pid}) within 0.5 s"
        )
        late = answer(tmp_path, seq=1)  # given once the daemon runs again
        assert (late.pid, late.outcome) == (proc.pid, "applied")
        path.write_text(path.read_text().replace("backoff_max: 0.5", "backoff_max: 0.7"))
        result = alertgw_process("reload", str(path))
        assert result.returncode == 1  # this command's own answer: the mqtt change is refused
        assert "mqtt changed; restart to apply" in result.stderr
