"""The `alertgw` command line: check, history and exit codes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.config import EX_CONFIG
from gateway.engine import Transition
from gateway.journal import Journal
from gateway.pidlock import PidLock
from gateway.reloadstatus import ReloadStatus, status_path, write_status
from tests.test_journal import T0, alert

REPO = Path(__file__).resolve().parent.parent

VALID = """\
site: {name: CLI home, timezone: Europe/Oslo}
sources:
  sim: {type: simulator, decoder: zigbee2mqtt}
zones:
  east: {rooms: ["101"]}
devices:
  fall-101: {room: "101", kind: fall}
  cord-101: {room: "101", kind: pull_cord}
handsets:
  night1: {channel: console}
routing:
  - {handsets: [night1]}
technical: {handsets: [night1]}
journal: {path: JOURNAL}
metrics: {enabled: false}
"""


def alertgw_process(*args: str) -> subprocess.CompletedProcess[str]:
    """`python -m gateway.cli ARGS` in a process of its own, from the repository root."""
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=REPO,
    )


def alertgw_into_closed_pipe(*args: str) -> subprocess.CompletedProcess[str]:
    """`python -m gateway.cli ARGS` printing into a pipe whose reader has already gone."""
    return python_into_closed_pipe("-m", "gateway.cli", *args)


def python_into_closed_pipe(*args: str) -> subprocess.CompletedProcess[str]:
    """`python ARGS` from the repository root, its stdout a pipe nobody reads any more."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run(
            [sys.executable, *args],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
            cwd=REPO,
        )
    finally:
        os.close(write_end)


def write_config(tmp_path: Path, text: str = VALID) -> Path:
    """Write a config into tmp_path with its journal inside tmp_path too."""
    path = tmp_path / "alertgw.yaml"
    path.write_text(text.replace("JOURNAL", str(tmp_path / "journal.db")), encoding="utf-8")
    return path


def test_check_valid_config_prints_summary_and_returns_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`check` on a valid file prints the summary on stdout and exits 0."""
    path = write_config(tmp_path)
    assert main(["check", str(path)]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert out.startswith(f"OK {path}: site 'CLI home' (Europe/Oslo)\n")
    assert "1 source(s), 2 device(s) in 1 room(s) / 1 zone(s)" in out
    assert "1 handset(s), 1 route(s); critical kinds: fall" in out
    assert "metrics off" in out
    assert "warning" not in out  # an absolute journal path, no roster


@pytest.mark.parametrize(
    ("journal", "relative"),
    [("journal: {path: state/journal.db}\n", "state/journal.db"), ("", "var/alertgw.db")],
    ids=["written", "default"],
)
def test_check_warns_about_a_relative_journal_path(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    journal: str,
    relative: str,
) -> None:
    """A relative journal.path depends on the working directory: `check` says where it lands."""
    path = write_config(tmp_path, VALID.replace("journal: {path: JOURNAL}\n", journal))
    monkeypatch.chdir(tmp_path)
    assert main(["check", str(path)]) == 0
    default = " (the default)" if not journal else ""
    assert capsys.readouterr().out.splitlines()[-1] == (
        f"warning: journal.path: {relative}{default} is relative, so each process resolves it"
        f" against its own working directory: from here it is {tmp_path / relative}, under"
        f" the shipped systemd unit /var/lib/alertgw/{relative}; `reload` and `history` run"
        " from another directory look elsewhere. Use an absolute path such as"
        " /var/lib/alertgw/alertgw.db"
    )


def test_check_says_where_a_relative_capture_lands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`record.path` relative: the capture a technician looks for is under the unit's directory."""
    path = write_config(tmp_path, VALID + "record: {path: night.jsonl}\n")
    monkeypatch.chdir(tmp_path)
    assert main(["check", str(path)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == (
        f"warning: record.path: night.jsonl is relative: from here it is"
        f" {tmp_path / 'night.jsonl'}, under the shipped systemd unit"
        " /var/lib/alertgw/night.jsonl"
    )


def test_check_warns_about_a_roster_gap_and_still_returns_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Shifts 07-21 and 22-07: `check` passes but warns that 21:00-22:00 has nobody on duty."""
    roster = (
        "schedules:\n"
        '  day: {start: "07:00", end: "21:00"}\n'
        '  night: {start: "22:00", end: "07:00"}\n'
        "roster:\n"
        "  shifts:\n"
        "    - {schedule: day, assign: {east: [night1]}}\n"
        "    - {schedule: night, assign: {east: [night1]}}\n"
        "  failsafe: [night1]\n"
    )
    path = write_config(tmp_path, VALID.replace("routing:\n  - {handsets: [night1]}\n", roster))
    assert main(["check", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("OK ")
    assert (
        "warning: roster: zone east has nobody on duty 21:00-22:00 every day (an alert there "
        "raises no_staff_on_duty and rings the failsafe group)\n"
    ) in out


def test_check_misspelled_key_returns_78_with_one_line_per_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A misspelled key exits 78 and prints file:line: key.path on stderr."""
    path = write_config(tmp_path, VALID.replace("kind: pull_cord", "knid: pull_cord"))
    assert main(["check", str(path)]) == EX_CONFIG == 78
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert lines[0].startswith(f"{path}:8: devices.cord-101.knid: unknown key")
    assert lines[1].startswith(f"{path}:8: devices.cord-101.kind: missing required key")
    assert lines[-1] == f"alertgw: 2 problem(s) in {path}"


def test_check_refuses_a_fall_only_the_technician_would_hear(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`fall: {critical: true, technical: true}` exits 78 naming the line and key path."""
    kinds = "kinds:\n  fall:\n    critical: true\n    technical: true\n"
    path = write_config(tmp_path, VALID + kinds)
    assert main(["check", str(path)]) == EX_CONFIG
    out, err = capsys.readouterr()
    assert out == ""
    line = (VALID + kinds).splitlines().index("    technical: true") + 1
    assert err.startswith(f"{path}:{line}: kinds.fall.technical: 'fall' is a critical kind:")
    assert err.splitlines()[-1] == f"alertgw: 1 problem(s) in {path}"


def test_check_missing_file_returns_78(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A file that cannot be read is a config error, not a traceback."""
    path = tmp_path / "nope.yaml"
    assert main(["check", str(path)]) == EX_CONFIG
    err = capsys.readouterr().err
    assert err.startswith(f"{path}: cannot read:")


def test_check_a_latin1_file_names_the_line_and_returns_78(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An editor that saved Latin-1 gets the line of the first bad byte, not a traceback."""
    path = tmp_path / "latin1.yaml"
    text = (REPO / "config" / "demo.yaml").read_text(encoding="utf-8")
    path.write_bytes(text.encode("utf-8") + "# Bærum\n".encode("latin-1"))
    assert main(["check", str(path)]) == EX_CONFIG
    err = capsys.readouterr().err
    line = text.count("\n") + 1
    assert err.startswith(f"{path}:{line}: not UTF-8 (byte 0xe6)")


def test_check_a_value_its_tag_cannot_hold_names_it_and_returns_78(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`!!timestamp x` made PyYAML raise AttributeError: `check` printed a traceback."""
    path = tmp_path / "tagged.yaml"
    text = (REPO / "config" / "demo.yaml").read_text(encoding="utf-8")
    path.write_text(text + "record: !!timestamp x\n", encoding="utf-8")
    assert main(["check", str(path)]) == EX_CONFIG
    err = capsys.readouterr().err
    line = text.count("\n") + 1
    assert err.startswith(f"{path}:{line}: record: invalid YAML: 'x' is not a valid timestamp\n")


def test_check_demo_config_passes(capsys: pytest.CaptureFixture[str]) -> None:
    """The shipped demo config is valid."""
    demo = REPO / "config" / "demo.yaml"
    assert main(["check", str(demo)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"OK {demo}: site 'Demo sykehjem'")
    assert "critical kinds: epilepsy, fall" in out


def test_history_on_an_empty_journal(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`history` with nothing journaled says so and exits 0."""
    path = write_config(tmp_path)
    asyncio.run(_create_journal(tmp_path / "journal.db"))
    assert main(["history", str(path)]) == 0
    assert capsys.readouterr().out == "no alerts journaled yet\n"


async def _create_journal(path: Path) -> None:
    journal = Journal(path)
    await journal.open()
    await journal.close()


def fall(n: int) -> Transition:
    """Fall alert number `n` being raised, n seconds after the first."""
    return Transition(alert(f"alert-{n:03d}", raised_at=T0 + n), "raised", T0 + n)


async def test_history_reads_beside_a_running_daemon_and_writes_nothing(tmp_path: Path) -> None:
    """`history` in a process of its own reads the daemon's latest commits through its WAL."""
    path = write_config(tmp_path)
    daemon = Journal(tmp_path / "journal.db")  # what the daemon holds open while it runs
    await daemon.open()
    try:
        await daemon.commit_batch([], [fall(1), fall(2)], [])
        journal_files = ("journal.db", "journal.db-wal")
        before = {n: (tmp_path / n).read_bytes() for n in journal_files}
        result = await asyncio.to_thread(alertgw_process, "history", str(path))
        assert result.returncode == 0, result.stderr
        assert [line.split()[2] for line in result.stdout.splitlines()[::2]] == [
            "alert-002",
            "alert-001",
        ]
        # The -shm is SQLite's shared memory, which readers write by design; the rest is not.
        assert {n: (tmp_path / n).read_bytes() for n in journal_files} == before
    finally:
        await daemon.close()


def test_history_of_a_journal_no_daemon_has_open_creates_no_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Run as root, new -wal and -shm files would be left beside the journal; none appear."""
    path = write_config(tmp_path)

    async def journal_two() -> None:
        daemon = Journal(tmp_path / "journal.db")
        await daemon.open()
        await daemon.commit_batch([], [fall(1), fall(2)], [])
        await daemon.close()

    asyncio.run(journal_two())
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert main(["history", str(path), "--limit", "1"]) == 0
    assert "alert-002" in capsys.readouterr().out
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_history_into_head_stops_quietly_with_141(tmp_path: Path) -> None:
    """`history | head -3` ends without a traceback, exiting as a tool SIGPIPE killed would."""
    path = write_config(tmp_path)

    async def journal_many() -> None:
        daemon = Journal(tmp_path / "journal.db")
        await daemon.open()
        # Far more than a pipe holds, so the writer is still writing when head exits.
        await daemon.commit_batch([], [fall(n) for n in range(3000)], [])
        await daemon.close()

    asyncio.run(journal_many())
    history = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "history", str(path), "--limit", "3000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=REPO,
    )
    assert history.stdout is not None
    head = subprocess.run(
        ["head", "-3"], stdin=history.stdout, capture_output=True, timeout=60, check=True
    )
    history.stdout.close()  # head holds the only reader now, and it has exited
    _, err = history.communicate(timeout=60)
    assert len(head.stdout.splitlines()) == 3
    assert err == b""
    assert history.returncode == 141


def test_history_into_a_closed_pipe_stops_quietly(tmp_path: Path) -> None:
    """A reader gone before the first line: the same quiet 141, even for "no alerts"."""
    path = write_config(tmp_path)
    asyncio.run(_create_journal(tmp_path / "journal.db"))
    result = alertgw_into_closed_pipe("history", str(path))
    assert (result.returncode, result.stderr) == (141, "")


def test_history_of_a_journal_not_yet_migrated_asks_for_a_daemon_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An older schema is one line saying how to migrate it, and the file stays as it was."""
    path = write_config(tmp_path)
    with contextlib.closing(sqlite3.connect(tmp_path / "journal.db")) as db:
        db.execute("CREATE TABLE events (rowid INTEGER PRIMARY KEY, alert_id TEXT)")
    before = (tmp_path / "journal.db").read_bytes()
    assert main(["history", str(path)]) == 1
    assert capsys.readouterr().err == (
        f"alertgw: {tmp_path / 'journal.db'}: journal schema version 0 is older than this"
        " alertgw's (1); start the daemon once to migrate it, then retry\n"
    )
    assert (tmp_path / "journal.db").read_bytes() == before


@pytest.mark.parametrize("limit", ["0", "-1", "x"])
def test_history_limit_must_be_a_positive_count(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], limit: str
) -> None:
    """`--limit 0` printed "no alerts journaled yet" over a full journal; -1 printed them all."""
    path = write_config(tmp_path)
    asyncio.run(_create_journal(tmp_path / "journal.db"))
    with pytest.raises(SystemExit) as info:
        main(["history", str(path), "--limit", limit])
    assert info.value.code == 2
    assert f"--limit: expected a whole number of alerts, at least 1, got {limit!r}" in (
        capsys.readouterr().err
    )


def test_history_without_a_journal_says_so_and_creates_none(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A mistyped journal path must not read as "nothing happened" to an auditor."""
    path = write_config(tmp_path)
    assert main(["history", str(path)]) == 1
    assert capsys.readouterr().err == f"alertgw: no journal at {tmp_path / 'journal.db'}\n"
    assert not (tmp_path / "journal.db").exists()


# A quick night: the simulator's first rings come within a second.
QUICK_NIGHT = VALID.replace("decoder: zigbee2mqtt}", "decoder: zigbee2mqtt, speed: 3000}")


class Daemon:
    """`alertgw run` in a process of its own; its output, read from a pipe, polled by tests.

    A pipe, not a file: a test limiting the daemon's file writes must not silence it.
    """

    def __init__(self, config: Path, **popen: object) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "run", str(config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            **popen,  # type: ignore[arg-type]
        )
        self._chunks: list[bytes] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._chunks.append(line)

    def output(self) -> str:
        """What the daemon printed so far."""
        return b"".join(self._chunks).decode(errors="replace")

    def wait_for(self, text: str, count: int = 1, timeout: float = 30.0) -> str:
        """Wait until `text` was printed `count` times; return the output."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = self.output()
            if out.count(text) >= count:
                return out
            assert self.proc.poll() is None, out
            time.sleep(0.05)
        raise AssertionError(f"no {count} x {text!r} within {timeout} s:\n{self.output()}")

    def stop(self) -> int:
        """SIGTERM and the exit status, once all output is read."""
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout=30)
        self._reader.join(10)
        return rc

    def close(self) -> None:
        """Kill a daemon a failed test left running; close the pipe."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._reader.join(10)
        assert self.proc.stdout is not None
        self.proc.stdout.close()


@contextlib.contextmanager
def daemon(config: Path, **popen: object) -> Iterator[Daemon]:
    """A running `alertgw run`, killed if the test leaves it running."""
    d = Daemon(config, **popen)
    try:
        yield d
    finally:
        d.close()


@pytest.mark.parametrize("damage", ["dangling_link", "not_a_database"])
def test_run_on_a_journal_that_cannot_be_opened_routes_from_memory(
    tmp_path: Path, damage: str
) -> None:
    """No journal (a link into a missing folder, a damaged file): ring anyway, say so, exit 0.

    Exiting instead was a systemd restart loop in which no alarm reached a handset.
    """
    path = write_config(tmp_path, QUICK_NIGHT)
    db = tmp_path / "journal.db"
    if damage == "dangling_link":
        db.symlink_to(tmp_path / "missing" / "journal.db")
    else:
        db.write_bytes(b"not sqlite at all, but long enough" * 8)
    before = db.read_bytes() if damage == "not_a_database" else b""
    with daemon(path) as d:
        out = d.wait_for("RING")
        assert "journal_open_failed" in out
        assert "cannot open the journal" in out
        assert d.stop() == 0
    out = d.output()
    assert "journal_unwritten_at_exit" in out  # what could not be kept is on record
    assert "Traceback" not in out
    if damage == "not_a_database":
        assert db.read_bytes() == before  # left for the technician as it was


def _no_file_writes() -> None:
    """In the daemon before exec: any write to a regular file fails, as on a full disk."""
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, resource.RLIM_INFINITY))


def test_run_on_a_full_disk_rings_and_journals_once_there_is_room(tmp_path: Path) -> None:
    """No byte fits at start (RLIMIT_FSIZE 0): rings; room again: everything is journaled."""
    path = write_config(tmp_path, QUICK_NIGHT)
    with daemon(path, preexec_fn=_no_file_writes) as d:
        out = d.wait_for("RING")
        assert "pid_file_unwritten" in out  # the lock holds; only its pid is missing
        assert "journal_open_failed" in out
        resource.prlimit(
            d.proc.pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY)
        )
        out = d.wait_for("journal_write_recovered")
        assert "journal_opened_late" in out
        decided = out.count("alert_transition")
        d.wait_for("alert_transition", count=decided + 1)  # and routing goes on
        assert d.stop() == 0
    assert "Traceback" not in d.output()
    with sqlite3.connect(tmp_path / "journal.db") as conn:
        signals = conn.execute("SELECT COUNT(*) FROM signals").fetchone()[0]
        rings = conn.execute("SELECT COUNT(*) FROM outbox WHERE action = 'ring'").fetchone()[0]
        alarm = conn.execute("SELECT state FROM alerts WHERE device = 'journal'").fetchall()
    assert signals >= 2
    assert rings >= 1  # the rings from before there was room are journaled too
    assert alarm == [("cleared",)]


def test_a_second_daemon_on_the_same_journal_is_refused(tmp_path: Path) -> None:
    """Two gateways on one journal would ring every alert twice: the second exits 1."""
    from gateway.app import Gateway  # noqa: PLC0415 - the daemon under test
    from gateway.config import load_config  # noqa: PLC0415

    path = write_config(tmp_path)

    async def scenario() -> subprocess.CompletedProcess[str]:
        gateway = Gateway(load_config(path))
        stop = asyncio.Event()

        async def trigger() -> None:
            await stop.wait()

        task = asyncio.create_task(gateway.run(trigger))
        await asyncio.wait_for(gateway.ready.wait(), 10)
        try:
            return await asyncio.to_thread(alertgw_process, "run", str(path))
        finally:
            stop.set()
            await task

    result = asyncio.run(scenario())
    assert result.returncode == 1
    assert result.stderr.startswith(
        f"alertgw: {tmp_path / 'journal.db'}: another alertgw (pid {os.getpid()}) is running"
    )
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "journal.db.pid").exists()  # the first one stopped cleanly


@contextlib.contextmanager
def sighup_held() -> Iterator[None]:
    """Block SIGHUP in this process while the block runs; drop one left pending."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
    try:
        yield
    finally:
        if signal.SIGHUP in signal.sigpending():
            signal.sigwait({signal.SIGHUP})
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})


def test_reload_signals_the_daemon_that_holds_the_pid_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`reload` sends SIGHUP to the lock holder; no answer within --timeout is a failure."""
    path = write_config(tmp_path)
    lock = PidLock(tmp_path / "journal.db.pid")
    lock.acquire()  # this process plays a daemon that never answers (SIGHUP held)
    try:
        with sighup_held():
            assert main(["reload", str(path), "--timeout", "0.2"]) == 1
            assert signal.SIGHUP in signal.sigpending()
    finally:
        lock.release()
    err = capsys.readouterr().err
    assert err.startswith(f"alertgw: no answer from alertgw (pid {os.getpid()}) within 0.2 s")
    assert "config_reload_failed" in err  # where to look instead


def test_reload_does_not_take_an_answer_given_before_its_signal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An entry already in the status file answers an earlier reload, not this one."""
    path = write_config(tmp_path)
    write_status(
        status_path(tmp_path / "journal.db"), ReloadStatus(3, os.getpid(), "applied", file="x")
    )
    lock = PidLock(tmp_path / "journal.db.pid")
    lock.acquire()
    try:
        with sighup_held():
            assert main(["reload", str(path), "--timeout", "0.2"]) == 1
    finally:
        lock.release()
    assert "no answer from alertgw" in capsys.readouterr().err


@contextlib.contextmanager
def answering_daemon(tmp_path: Path, started_with: str) -> Iterator[None]:
    """This process plays a daemon started with `started_with`: SIGHUP writes its answer."""
    lock = PidLock(tmp_path / "journal.db.pid")
    lock.acquire()

    def answer(signum: int, frame: object) -> None:
        status = ReloadStatus(1, os.getpid(), "applied", file=started_with)
        write_status(status_path(tmp_path / "journal.db"), status)

    previous = signal.signal(signal.SIGHUP, answer)
    try:
        yield
    finally:
        signal.signal(signal.SIGHUP, previous)
        lock.release()


def test_reload_exits_0_when_the_daemon_applied_the_checked_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Started as `alertgw run alertgw.yaml` from its directory: the same file, named apart."""
    path = write_config(tmp_path)
    monkeypatch.chdir(tmp_path)
    with answering_daemon(tmp_path, "alertgw.yaml"):
        assert main(["reload", str(path)]) == 0
    assert capsys.readouterr().out == f"alertgw (pid {os.getpid()}) reloaded alertgw.yaml\n"


def test_reload_of_a_file_the_daemon_does_not_run_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """SIGHUP re-reads the daemon's own file: checking another one and exiting 0 would say
    the technician's new file is running when it is not."""
    running = tmp_path / "site.yaml"
    path = write_config(tmp_path)  # alertgw.yaml, on the same journal
    running.write_text(path.read_text())
    with answering_daemon(tmp_path, str(running)):
        assert main(["reload", str(path)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        f"alertgw: pid {os.getpid()} runs {running}, not {path}: a reload re-reads the file"
        f" the daemon was started with (applied {running}). Copy {path} over {running} and"
        " reload again, or restart alertgw with it\n"
    )


@pytest.mark.parametrize("timeout", ["0", "-1", "x", "inf", "nan"])
def test_reload_timeout_must_be_seconds_above_zero(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], timeout: str
) -> None:
    """`--timeout 0` could never see an answer; it is a usage error, like a word."""
    path = write_config(tmp_path)
    with pytest.raises(SystemExit) as info:
        main(["reload", str(path), "--timeout", timeout])
    assert info.value.code == 2
    assert f"--timeout: expected a number of seconds above 0, got {timeout!r}" in (
        capsys.readouterr().err
    )


def test_reload_refuses_a_stale_pid_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A pid file no daemon holds (left by kill -9) names a reused pid: it is not signalled."""
    path = write_config(tmp_path)
    # A pid the kernel gave to another process since the daemon died: here, this one.
    (tmp_path / "journal.db.pid").write_text(f"{os.getpid()}\n")
    with sighup_held():
        assert main(["reload", str(path)]) == 1
        assert signal.SIGHUP not in signal.sigpending()
    err = capsys.readouterr().err
    assert "no running daemon was signalled" in err
    assert "stale" in err


def test_a_journal_from_a_newer_alertgw_is_one_clear_line_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`history` refuses a journal whose schema is newer, naming the file; `run` leaves it be.

    A rollback of alertgw without its journal must not stop the alarms: the daemon routes
    from memory, says why, and writes nothing into the newer file.
    """
    path = write_config(tmp_path, QUICK_NIGHT)
    with contextlib.closing(sqlite3.connect(tmp_path / "journal.db")) as db:
        db.execute("CREATE TABLE events (rowid INTEGER PRIMARY KEY)")
        db.execute("PRAGMA user_version = 7")
    before = (tmp_path / "journal.db").read_bytes()
    expected = f"alertgw: {tmp_path / 'journal.db'}: journal schema version 7 is newer"
    assert main(["history", str(path)]) == 1
    assert capsys.readouterr().err.startswith(expected)
    with daemon(path) as d:
        out = d.wait_for("RING")
        assert "journal schema version 7 is newer" in out
        assert d.stop() == 0
    assert "Traceback" not in d.output()
    assert (tmp_path / "journal.db").read_bytes() == before


def test_module_entry_point_exits_78_on_a_bad_config(tmp_path: Path) -> None:
    """`python -m gateway.cli check` exits with EX_CONFIG and names the line on stderr."""
    path = write_config(tmp_path, VALID.replace("routing:", "routnig:"))
    result = alertgw_process("check", str(path))
    assert result.returncode == EX_CONFIG
    assert result.stdout == ""
    assert f"{path}:11: routnig: unknown key" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """No subcommand is an argparse usage error (exit 2)."""
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2
    assert "usage: alertgw" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["run", "check", "history", "reload"])
def test_help_of_each_config_command_names_the_file_and_exit_status(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`alertgw CMD --help` tells a technician what CONFIG is and what the exit codes mean."""
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "the YAML config file" in out
    assert "Exit status: 0" in out
    assert "78" in out


LINGERING = """
import threading, time
from gateway.cli import leave_no_thread_behind
threading.Thread(target=time.sleep, args=(600,), name="stuck-journal-write").start()
threading.Thread(target=time.sleep, args=(0.2,), name="finishing").start()
leave_no_thread_behind(0, grace=1.0)
print("not reached")
"""


def test_a_thread_stuck_after_the_daemon_ends_does_not_keep_the_process() -> None:
    """A worker blocked on a dead disk (not a daemon thread) is logged and the process ends.

    Without it the interpreter waits for the thread at exit, deaf to SIGTERM, until SIGKILL.
    A thread that finishes within the grace is simply waited for.
    """
    result = subprocess.run(
        [sys.executable, "-c", LINGERING],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=REPO,
    )
    assert result.returncode == 1, result.stderr
    assert "exit_forced" in result.stdout
    assert "stuck-journal-write" in result.stdout
    assert "finishing" not in result.stdout
    assert "not reached" not in result.stdout


def test_no_lingering_thread_leaves_the_exit_status_alone() -> None:
    """After a clean run nothing lingers: the function returns and the process exits as it would."""
    code = "from gateway.cli import leave_no_thread_behind\nleave_no_thread_behind(0)\nprint('ok')"
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=REPO,
    )
    assert (result.returncode, result.stdout) == (0, "ok\n")


@pytest.mark.parametrize(
    ("corruption", "named"),
    [
        ("UPDATE alerts SET priority = 99 WHERE id = 'alert-001'", "99 is not a valid Priority"),
        ("UPDATE alerts SET state = 'weird' WHERE id = 'alert-001'", "'weird'"),
        ("UPDATE alerts SET raised_at = 'x' WHERE id = 'alert-001'", "raised_at 'x'"),
        ("UPDATE alerts SET raised_at = 1e20 WHERE id = 'alert-001'", "alert alert-001 at 1e+20"),
        ("UPDATE events SET ts = 'x' WHERE alert_id = 'alert-001'", "event 'raised' at 'x'"),
    ],
)
def test_history_names_the_rows_it_cannot_read_and_shows_the_rest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], corruption: str, named: str
) -> None:
    """Bit rot or a hand edit in one row ended the audit in a traceback, showing nothing."""
    path = write_config(tmp_path)
    db = tmp_path / "journal.db"

    async def journal_two() -> None:
        daemon = Journal(db)
        await daemon.open()
        await daemon.commit_batch([], [fall(1), fall(2)], [])
        await daemon.close()

    asyncio.run(journal_two())
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        conn.execute(corruption)
    assert main(["history", str(path)]) == 1
    out, err = capsys.readouterr()
    assert "alert-002" in out  # the readable rows are still shown
    assert err.startswith(f"{db}: could not read 1 row:\n")
    assert named in err
    assert "Traceback" not in err


def test_check_into_a_closed_pipe_stops_quietly(tmp_path: Path) -> None:
    """`alertgw check CFG | head -1` showed a BrokenPipeError traceback."""
    path = write_config(tmp_path)
    result = alertgw_into_closed_pipe("check", str(path))
    assert (result.returncode, result.stderr) == (141, "")


def test_check_warns_of_a_password_variable_unset_here(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not an error (systemd's environment is not the shell's), but worth a second look."""
    monkeypatch.delenv("ALERTGW_TEST_UNSET_PW", raising=False)
    text = VALID.replace(
        "sources:", "mqtt: {username: gw, password_env: ALERTGW_TEST_UNSET_PW}\nsources:"
    )
    path = write_config(tmp_path, text)
    assert main(["check", str(path)]) == 0
    warnings = [x for x in capsys.readouterr().out.splitlines() if x.startswith("warning:")]
    assert warnings == [
        "warning: mqtt.password_env: ALERTGW_TEST_UNSET_PW is not set here; the daemon needs"
        " it in its own environment (systemd: EnvironmentFile=)",
    ]
    monkeypatch.setenv("ALERTGW_TEST_UNSET_PW", "x")
    assert main(["check", str(path)]) == 0
    assert "warning" not in capsys.readouterr().out


def test_check_warns_when_no_handset_hears_technical_alarms(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without `technical.handsets` a paging fault is only journaled: valid, but worth a
    second look (found by the README audit: check said nothing)."""
    path = write_config(tmp_path, VALID.replace("technical: {handsets: [night1]}\n", ""))
    assert main(["check", str(path)]) == 0
    warnings = [x for x in capsys.readouterr().out.splitlines() if x.startswith("warning:")]
    assert warnings == [
        "warning: technical.handsets: none, so technical alarms (a low battery, a sensor or"
        " bridge offline, a link down, a paging fault) ring no handset: they are only"
        " journaled and logged"
    ]
