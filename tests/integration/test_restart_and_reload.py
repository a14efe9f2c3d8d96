"""Restarts and reloads against the state the journal kept (in-process, real journal file)."""

from __future__ import annotations

import asyncio
import io
import os
import signal as signals
import sqlite3
import time
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from gateway.app import Gateway
from gateway.cli import main
from gateway.config import Config, load_config
from gateway.engine import Transition
from gateway.journal import Journal
from gateway.model import AlertState
from gateway.pidlock import PidLock
from gateway.ports import Inbound, RawResponse
from gateway.reloadstatus import read_status, status_path
from tests.test_journal import alert, signal

YAML = """
site: {{name: T, timezone: Europe/Oslo}}
sources:
  zigbee: {{type: mqtt, decoder: zigbee2mqtt, topics: ["z/#"], base_topic: z}}
  integrator: {{type: mqtt, decoder: json, topics: ["in/#"]}}
mqtt: {{host: 127.0.0.1, port: {port}, client_id: gw-{port}, status_topic: s/status}}
zones:
  east: {{rooms: ["101"]}}
devices:
  bed-101: {{room: "101", kind: bed_exit, name: bed101, source: zigbee}}
  door-101: {{room: "101", kind: door_open, name: door101, source: zigbee}}
  fall-101: {{room: "101", kind: fall, source: integrator}}
handsets:
{handsets}
routing:
  - {{kinds: ['*'], handsets: [{routed}]}}
journal: {{path: "{db}"}}
metrics: {{enabled: false}}
"""


def write(tmp_path: Path, handsets: list[str], port: int = 1) -> Path:
    """A console-handset site; MQTT points at a closed port (items are put in directly)."""
    path = tmp_path / "alertgw.yaml"
    path.write_text(
        YAML.format(
            port=port,
            handsets="\n".join(f"  {h}: {{channel: console}}" for h in handsets),
            routed=", ".join(handsets),
            db=tmp_path / "journal.db",
        ),
        encoding="utf-8",
    )
    return path


async def start(path: Path) -> tuple[Gateway, asyncio.Event, asyncio.Task[None], io.StringIO]:
    """Run a gateway on `path` with a captured console."""
    out = io.StringIO()
    gw = Gateway(load_config(path), console=out, serve_metrics=False, drain_timeout=2.0)
    stop = asyncio.Event()
    task = asyncio.create_task(gw.run(stop.wait))
    await asyncio.wait_for(gw.ready.wait(), 10)
    return gw, stop, task, out


def fall(state: str, sid: str) -> Inbound:
    """A generic JSON fall signal as the MQTT source would hand it over."""
    body = f'{{"device": "fall-101", "state": "{state}", "id": "{sid}"}}'.encode()
    return Inbound("integrator", "in/x", body, time.time())


async def settle() -> None:
    """Let the router and the journal task run (commit_delay is 10 ms)."""
    await asyncio.sleep(0.3)


async def test_a_handset_removed_while_its_alert_is_open_does_not_stop_routing(
    tmp_path: Path,
) -> None:
    """An alert rang h1 and h2; h2 is removed and alertgw restarted; the clear still routes."""

    def unlatched(path: Path) -> Path:
        # The sensor's clear must end the alert here (a latching fall waits for an accept).
        with path.open("a", encoding="utf-8") as f:
            f.write("kinds:\n  fall: {priority: critical, critical: true, latching: false}\n")
        return path

    gw, stop, task, _ = await start(unlatched(write(tmp_path, ["h1", "h2"])))
    gw.put(fall("raised", "s1"))
    await settle()
    stop.set()
    await asyncio.wait_for(task, 10)

    gw, stop, task, out = await start(unlatched(write(tmp_path, ["h1", "h3"])))
    gw.put(fall("cleared", "s2"))
    await settle()
    assert not task.done()  # the cancel for h2 had raised KeyError out of the router
    gw.put(fall("raised", "s3"))
    await settle()
    assert not task.done()
    stop.set()
    await asyncio.wait_for(task, 10)
    lines = out.getvalue().splitlines()
    assert any("h1" in line and "CANCEL" in line for line in lines)
    assert any("h3" in line and "RING" in line for line in lines)
    with sqlite3.connect(tmp_path / "journal.db") as conn:
        states = [row[0] for row in conn.execute("SELECT state FROM alerts ORDER BY rowid")]
        failed = conn.execute("SELECT handset FROM outbox WHERE state = 'failed'").fetchall()
    assert states == ["cleared", "active"]
    assert failed == [("h2",)]  # its cancel, marked failed instead of lost from view


async def test_a_reload_during_a_duplicate_lookup_keeps_the_level_change(tmp_path: Path) -> None:
    """Level changes decoded before a reload swapped the decoders still reach the journal."""
    gw, stop, task, _ = await start(write(tmp_path, ["h1"]))

    def z(name: str, body: bytes, *, dup: bool = False) -> Inbound:
        return Inbound("zigbee", f"z/{name}", body, time.time(), dup=dup)

    gw.put(z("bed101", b'{"occupancy": true}'))
    gw.put(z("door101", b'{"contact": true}'))
    await settle()  # baselines: in bed, door closed
    lookup = gw.journal.seen_signal

    async def slow_lookup(signal_id: str, since: float) -> bool:
        await asyncio.sleep(0.3)
        return await lookup(signal_id, since)

    gw.journal.seen_signal = slow_lookup  # type: ignore[method-assign]
    # One router batch: the resident leaves the bed, then a broker redelivery (a lookup).
    gw.put(z("bed101", b'{"occupancy": false}', dup=True))
    gw.put(z("door101", b'{"contact": false}', dup=True))
    await asyncio.sleep(0.1)
    assert gw.reload()  # SIGHUP lands while the router awaits the lookup
    await asyncio.sleep(0.6)
    stop.set()
    await asyncio.wait_for(task, 10)
    with sqlite3.connect(tmp_path / "journal.db") as conn:
        (level,) = conn.execute("SELECT value FROM levels WHERE key = 'bed-101/occupancy'")
    assert level == ("false",)


async def test_an_unwritable_record_file_fails_the_start_and_frees_the_journal(
    tmp_path: Path,
) -> None:
    """A start that cannot open its capture file exits with the error and lets go of the lock."""
    path = write(tmp_path, ["h1"])
    (tmp_path / "capture").mkdir()  # the record path names a directory: open() fails
    text = path.read_text(encoding="utf-8")
    path.write_text(text + f'record: {{path: "{tmp_path / "capture"}"}}\n', encoding="utf-8")
    gw = Gateway(load_config(path), console=io.StringIO(), serve_metrics=False)
    with pytest.raises(IsADirectoryError):
        await gw.run(asyncio.Event().wait)
    lock = PidLock(gw.pidfile)
    lock.acquire()  # the failed start released the pid lock and closed the journal
    lock.release()


async def test_a_restart_keeps_a_bed_exit_that_staff_presence_muted(tmp_path: Path) -> None:
    """Muted by staff in the room before a restart, the bed exit rings when they leave after it.

    The bed's level is journaled, so the restarted daemon sees no new edge: only the
    journaled muted condition (and the room's presence) can bring the bed exit back.
    """
    path = write(tmp_path, ["h1"])
    text = path.read_text(encoding="utf-8")
    path.write_text(
        text.replace(
            "  fall-101:",
            '  pres-101: {room: "101", kind: presence, source: integrator}\n  fall-101:',
        ),
        encoding="utf-8",
    )

    def z(body: bytes) -> Inbound:
        return Inbound("zigbee", "z/bed101", body, time.time())

    def presence(state: str) -> Inbound:
        body = f'{{"device": "pres-101", "state": "{state}"}}'.encode()
        return Inbound("integrator", "in/x", body, time.time())

    gw, stop, task, out = await start(path)
    gw.put(z(b'{"occupancy": false}'))  # baseline: no exit (Z2M occupancy raises bed_exit)
    gw.put(presence("raised"))  # the night round comes in
    await settle()
    gw.put(z(b'{"occupancy": true}'))  # the resident gets up with staff there: muted
    await settle()
    stop.set()
    await asyncio.wait_for(task, 10)
    assert "RING" not in out.getvalue()

    gw, stop, task, out = await start(path)
    gw.put(presence("cleared"))  # staff leave; the bed is still empty
    await settle()
    stop.set()
    await asyncio.wait_for(task, 10)
    rings = [line for line in out.getvalue().splitlines() if "RING" in line]
    assert len(rings) == 1, out.getvalue()
    assert "Out of bed room 101" in rings[0]


async def test_a_bed_exit_open_across_a_restart_keeps_its_source_for_the_rules(
    tmp_path: Path,
) -> None:
    """Rang before a restart, muted by a staff round after it: it comes back as a Zigbee bed.

    The review fix "live alerts keep their source" holds only in memory: a restored alert
    has no source, so presence arms it without one and it comes back as source "presence".
    The Zigbee-only rule no longer matches, the catch-all suppress below it takes the bed
    still empty, and it never rings again.
    """
    path = write(tmp_path, ["h1"])
    text = path.read_text(encoding="utf-8")
    text = text.replace(
        "  fall-101:",
        '  pres-101: {room: "101", kind: presence, source: integrator}\n  fall-101:',
    )
    text += (
        "rules:\n"
        "  - {name: bed-zigbee, match: {kinds: [bed_exit], sources: [zigbee]}}\n"
        "  - {name: bed-other, match: {kinds: [bed_exit]}, action: suppress}\n"
    )
    path.write_text(text, encoding="utf-8")

    def z(body: bytes) -> Inbound:
        return Inbound("zigbee", "z/bed101", body, time.time())

    def presence(state: str) -> Inbound:
        body = f'{{"device": "pres-101", "state": "{state}"}}'.encode()
        return Inbound("integrator", "in/x", body, time.time())

    gw, stop, task, out = await start(path)
    gw.put(z(b'{"occupancy": false}'))  # baseline
    await settle()
    gw.put(z(b'{"occupancy": true}'))  # out of bed: bed-zigbee rings h1
    await settle()
    stop.set()
    await asyncio.wait_for(task, 10)
    assert sum("RING" in line for line in out.getvalue().splitlines()) == 1, out.getvalue()

    gw, stop, task, out = await start(path)
    gw.put(presence("raised"))  # the night round resolves it; the bed is still empty
    await settle()
    gw.put(presence("cleared"))  # staff leave
    await settle()
    stop.set()
    await asyncio.wait_for(task, 10)
    rings = [line for line in out.getvalue().splitlines() if "RING" in line]
    assert len(rings) == 1, out.getvalue()
    with sqlite3.connect(tmp_path / "journal.db") as conn:
        rules = [r[0] for r in conn.execute("SELECT rule FROM alerts ORDER BY rowid")]
    assert rules == ["bed-zigbee", "bed-zigbee"]


async def test_a_clock_years_ahead_does_not_prune_the_audit_trail(tmp_path: Path) -> None:
    """The RTC comes back ten years out: history past retention goes, the rest stays.

    With the kernel's word that NTP keeps the clock (`clock_synced`), the same clock is
    trusted and everything older than the retention goes at once.
    """
    path = write(tmp_path, ["h1"])
    now, day = time.time(), 86400.0
    journal = Journal(tmp_path / "journal.db")
    await journal.open()
    try:
        # Signals and finished alerts from 200, 80 and 1 days ago (retention: 90 days).
        for age in (200, 80, 1):
            done = alert(f"a{age}", AlertState.RESOLVED, raised_at=now - age * day)
            await journal.commit_batch(
                [signal(f"s{age}", received_at=now - age * day)],
                [Transition(done, "resolved", now - age * day)],
                [],
            )
    finally:
        await journal.close()
    with sqlite3.connect(tmp_path / "journal.db") as conn:
        conn.execute("UPDATE alerts SET updated_at = raised_at")

    def kept() -> list[str]:
        with sqlite3.connect(tmp_path / "journal.db") as conn:
            return [r[0] for r in conn.execute("SELECT id FROM signals ORDER BY received_at")]

    ahead = now + 10 * 365 * day
    for synced, expected in ((False, ["s80", "s1"]), (True, [])):
        gw = Gateway(
            load_config(path),
            clock=lambda: ahead,
            clock_synced=lambda synced=synced: synced,
            console=io.StringIO(),
            serve_metrics=False,
            drain_timeout=2.0,
        )
        stop = asyncio.Event()
        task = asyncio.create_task(gw.run(stop.wait))
        await asyncio.wait_for(gw.ready.wait(), 10)
        for _ in range(100):  # the first prune runs at start
            if kept() == expected:
                break
            await asyncio.sleep(0.05)
        lag = gw.metrics.journal_prune_lag._value.get()
        stop.set()
        await asyncio.wait_for(task, 10)
        assert kept() == expected
        if synced:
            assert lag == 0
        else:
            assert lag > 9 * 365 * day  # the clock's lead, exported for an alert rule


async def start_with_a_fall(path: Path) -> tuple[Gateway, asyncio.Event, asyncio.Task[None], str]:
    """Run a gateway on `path` with one fall raised and journaled; its alert id last."""
    gw, stop, task, _ = await start(path)
    gw.put(fall("raised", "s1"))
    await settle()
    with sqlite3.connect(path.parent / "journal.db") as conn:
        (alert_id,) = conn.execute("SELECT id FROM alerts").fetchone()
    return gw, stop, task, str(alert_id)


async def test_a_handset_answer_redelivered_after_a_restart_is_not_applied_twice(
    tmp_path: Path,
) -> None:
    """The broker resends (DUP) answers whose ack a crash lost: known ones are dropped.

    Applied again, h1's reject then accept would reopen the alert h1 had taken and ring
    the next step. A DUP answer the journal does not hold (the crash came before its
    commit) is applied as new.
    """
    path = write(tmp_path, ["h1", "h2"])
    gw, stop, task, alert_id = await start_with_a_fall(path)
    acked: list[int] = []

    def answer(kind: str, packet_id: int, *, dup: bool = False) -> RawResponse:
        body = f'{{"alert_id": "{alert_id}", "response": "{kind}"}}'.encode()
        return RawResponse("h1", body, time.time(), lambda: acked.append(packet_id), dup, packet_id)

    def timeline() -> list[str]:
        with sqlite3.connect(tmp_path / "journal.db") as conn:
            return [r[0] for r in conn.execute("SELECT event FROM events ORDER BY rowid")]

    gw.put(answer("reject", 7))
    gw.put(answer("accept", 8))
    gw.put(answer("accept", 8, dup=True))  # resent before its first copy committed
    await settle()
    assert acked == [7, 8, 8]
    stop.set()
    await asyncio.wait_for(task, 10)
    before = timeline()
    assert before.count("accepted") == 1

    gw, stop, task, _ = await start(path)
    gw.put(answer("reject", 7, dup=True))
    gw.put(answer("accept", 8, dup=True))
    await settle()
    assert acked == [7, 8, 8, 7, 8]  # acknowledged, so the broker forgets them
    assert timeline() == before
    assert gw.metrics.duplicates.labels("handsets")._value.get() == 2
    gw.put(answer("reject", 9, dup=True))  # never journaled: the nurse hands it back
    await settle()
    stop.set()
    await asyncio.wait_for(task, 10)
    assert timeline()[len(before) :][:2] == ["rejected", "reopened"]
    assert acked[-1] == 9


async def test_a_restart_remembers_who_declined_an_alert(tmp_path: Path) -> None:
    """A second reject tapped after a restart is no news, as it is without the restart.

    Who declined lived only in memory: after a restart the same nurse's second tap (a new
    message, not a broker redelivery) counted as a new reject and moved the alert on again.
    """
    path = write(tmp_path, ["h1", "h2"])
    gw, stop, task, alert_id = await start_with_a_fall(path)

    def reject(packet_id: int) -> RawResponse:
        body = f'{{"alert_id": "{alert_id}", "response": "reject"}}'.encode()
        return RawResponse("h1", body, time.time(), None, False, packet_id)

    def timeline() -> list[tuple[str, str]]:
        with sqlite3.connect(tmp_path / "journal.db") as conn:
            return list(conn.execute("SELECT event, detail FROM events ORDER BY rowid"))

    gw.put(reject(7))
    await settle()
    stop.set()
    await asyncio.wait_for(task, 10)
    before = timeline()
    assert [d for e, d in before if e == "rejected"] == ["h1"]

    gw, stop, task, _ = await start(path)
    gw.put(reject(8))  # the nurse taps "reject" again: a new message
    await settle()
    after = timeline()
    gw.put(
        RawResponse(
            "h1",
            f'{{"alert_id": "{alert_id}", "response": "accept"}}'.encode(),
            time.time(),
            None,
            False,
            9,
        )
    )
    gw.put(reject(10))  # accepted since, so this reject hands it back and counts
    await settle()
    stop.set()
    await asyncio.wait_for(task, 10)
    assert after == before
    assert [e for e, _ in timeline()[len(before) :]][:3] == ["accepted", "rejected", "reopened"]


async def test_a_reload_that_fails_while_applying_keeps_the_running_config(
    tmp_path: Path,
) -> None:
    """A bug while swapping a valid file in (injected here) is a failed reload, not a crash.

    The engine gets the old config back whole, the answer says why, and routing goes on.
    """
    path = write(tmp_path, ["h1"])
    gw, stop, task, out = await start(path)
    running = gw.config
    real = gw.engine.reconfigure

    def broken(config: Config, now: float | None = None) -> None:
        real(config, now)
        if config is not running:
            raise RuntimeError("injected")

    gw.engine.reconfigure = broken  # type: ignore[method-assign]
    path.write_text(path.read_text() + "rate_limit: {max: 3, per: 60}\n")
    try:
        assert gw.reload() is False
        status = read_status(status_path(tmp_path / "journal.db"))
        assert status is not None
        assert status.outcome == "failed"
        assert status.problems == (f"{path}: applying it failed: RuntimeError: injected",)
        assert gw.config is running
        assert gw.engine.config is running
        gw.put(fall("raised", "s1"))
        await settle()
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    assert "RING" in out.getvalue()


@pytest.mark.parametrize(
    ("old", "new", "at", "problem"),
    [
        (
            "routing:",
            "routnig:",
            "routnig:",
            "routnig: unknown key (expected one of: devices, escalation, espa, handsets, inhibit,"
            " journal, kinds, logging, metrics, mqtt, presence, rate_limit, record, roster,"
            " routing, rules, schedules, site, sources, supervision, technical, zones)",
        ),
        (  # a syntax error names its key path too, and where the `{` left open is
            '  east: {rooms: ["101"]}',
            '  east: {rooms: ["101"]',
            "devices:",
            "zones.east: invalid YAML: expected ',' or '}}', but got '<scalar>'"
            " (in the {{ }} mapping that starts on line {opened})",
        ),
    ],
)
async def test_a_refused_reload_logs_that_the_running_config_is_kept(
    tmp_path: Path, old: str, new: str, at: str, problem: str
) -> None:
    """A broken file on SIGHUP logs config_reload_failed saying the running config stays."""
    path = write(tmp_path, ["h1"])
    gw, stop, task, _ = await start(path)
    path.write_text(path.read_text().replace(old, new), encoding="utf-8")
    with capture_logs() as logs:
        assert gw.reload() is False
    stop.set()
    await asyncio.wait_for(task, 10)
    failed = [e for e in logs if e["event"] == "config_reload_failed"]
    lines = path.read_text().splitlines()
    assert [e["problem"] for e in failed] == [
        f"{path}:{lines.index(at) + 1}: {problem.format(opened=lines.index(new) + 1)}"
    ]
    assert all(e["running_config"] == "kept" for e in failed)
    assert gw.config.routing  # still the running config's route


async def test_a_sighup_while_the_daemon_starts_is_applied_once_it_is_ready(
    tmp_path: Path,
) -> None:
    """`alertgw reload` can find the pid file before routing starts: SIGHUP must not kill it."""
    heard: list[int] = []
    # Without a handler of the daemon's own, SIGHUP's default action ends the process; this
    # one (replaced by the daemon's) only notes that the daemon did not take it.
    previous = signals.signal(signals.SIGHUP, lambda signum, _frame: heard.append(signum))
    try:
        gw = Gateway(load_config(write(tmp_path, ["h1"])), serve_metrics=False)
        restore = gw._restore  # the start-up step while the pid file exists

        async def restore_then_hup(*args: object, **kwargs: object) -> None:
            assert (tmp_path / "journal.db.pid").exists()
            signals.raise_signal(signals.SIGHUP)
            await restore(*args, **kwargs)  # type: ignore[arg-type]

        gw._restore = restore_then_hup  # type: ignore[method-assign]
        stop = asyncio.Event()
        task = asyncio.create_task(gw.run(stop.wait))
        await asyncio.wait_for(gw.ready.wait(), 10)
        reloads = gw.metrics.config_reloads.labels("ok")
        for _ in range(100):
            if reloads._value.get():  # prometheus_client has no public getter
                break
            await asyncio.sleep(0.02)
        stop.set()
        await asyncio.wait_for(task, 10)
    finally:
        signals.signal(signals.SIGHUP, previous)
    assert heard == []
    assert reloads._value.get() == 1


def hear_sighup(gw: Gateway) -> asyncio.Event:
    """Wrap the daemon's SIGHUP handler (before `run` installs it); the event says it ran."""
    heard = asyncio.Event()
    on_sighup = gw._on_sighup

    def handler() -> None:
        on_sighup()
        heard.set()

    gw._on_sighup = handler  # type: ignore[method-assign]
    return heard


async def reload_command(path: Path, heard: asyncio.Event) -> asyncio.Task[int]:
    """Start `alertgw reload PATH` in a thread; return once the daemon has had its SIGHUP."""
    task = asyncio.create_task(asyncio.to_thread(main, ["reload", str(path)]))
    await asyncio.wait_for(heard.wait(), 10)
    return task


async def test_reload_during_start_answers_once_the_deferred_reload_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`alertgw reload` while the daemon starts waits for the reload done once it is ready."""
    path = write(tmp_path, ["h1"])
    gw = Gateway(load_config(path), console=io.StringIO(), serve_metrics=False)
    heard = hear_sighup(gw)
    restore = gw._restore  # the start-up step while the pid file exists
    command: list[asyncio.Task[int]] = []

    async def restore_after_a_reload_command(*args: object, **kwargs: object) -> None:
        command.append(await reload_command(path, heard))
        assert gw._reload_pending  # deferred, not answered yet
        await restore(*args, **kwargs)  # type: ignore[arg-type]

    gw._restore = restore_after_a_reload_command  # type: ignore[method-assign]
    stop = asyncio.Event()
    task = asyncio.create_task(gw.run(stop.wait))
    await asyncio.wait_for(gw.ready.wait(), 10)
    assert await asyncio.wait_for(command[0], 15) == 0
    stop.set()
    await asyncio.wait_for(task, 10)
    out = capsys.readouterr().out.splitlines()  # the daemon's own log lines are there too
    assert f"alertgw (pid {os.getpid()}) reloaded {path}" in out
    answer = read_status(tmp_path / "journal.db.reload")
    assert answer is not None
    assert (answer.seq, answer.outcome) == (1, "applied")


async def test_reload_while_the_daemon_stops_fails_saying_nothing_was_reloaded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A SIGHUP after routing ended is skipped; `alertgw reload` says so and exits 1."""
    path = write(tmp_path, ["h1"])
    gw, stop, task, _ = await start(path)
    heard = hear_sighup(gw)
    gw._install_reload_handler()  # again: `start` installed the unwrapped handler
    close = gw.journal.close  # the last step before the pid file goes
    command: list[asyncio.Task[int]] = []

    async def close_after_a_reload_command() -> None:
        command.append(await reload_command(path, heard))
        await close()

    gw.journal.close = close_after_a_reload_command  # type: ignore[method-assign]
    stop.set()
    await asyncio.wait_for(task, 10)
    assert await asyncio.wait_for(command[0], 15) == 1
    assert capsys.readouterr().err.splitlines() == [
        "alertgw is stopping; nothing was reloaded",
        f"alertgw: pid {os.getpid()} did not reload",
    ]


async def test_a_reload_deferred_by_a_start_that_fails_is_answered(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """SIGHUP while starting, then the start fails: the waiting command hears why at once."""
    path = write(tmp_path, ["h1"])
    (tmp_path / "capture").mkdir()  # the record path names a directory: the start fails
    text = path.read_text(encoding="utf-8")
    path.write_text(text + f'record: {{path: "{tmp_path / "capture"}"}}\n', encoding="utf-8")
    gw = Gateway(load_config(path), console=io.StringIO(), serve_metrics=False)
    heard = hear_sighup(gw)
    open_journal = gw.journal.open
    command: list[asyncio.Task[int]] = []

    async def open_after_a_reload_command() -> None:
        command.append(await reload_command(path, heard))
        await open_journal()

    gw.journal.open = open_after_a_reload_command  # type: ignore[method-assign]
    with pytest.raises(IsADirectoryError):
        await gw.run(asyncio.Event().wait)
    assert await asyncio.wait_for(command[0], 15) == 1
    assert capsys.readouterr().err.splitlines() == [
        "alertgw stopped before it was ready; nothing was reloaded",
        f"alertgw: pid {os.getpid()} did not reload",
    ]
