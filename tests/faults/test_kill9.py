"""Fault (a): the daemon is SIGKILLed mid-stream and restarted; nothing lost, nothing rung twice."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO

import aiomqtt
import orjson
import pytest

from gateway.journal import Journal
from gateway.model import AlertState
from tests.conftest import Broker, unique
from tests.faults.helpers import (
    Handset,
    Sender,
    expected_rings,
    fault_config,
    sender,
    stream,
    tally,
)

pytestmark = pytest.mark.faults

SIGNALS = 600
# Kills at two steady-state points, and one the moment a restarted daemon is back online
# (it is then working through the backlog the broker queued while it was dead).
KILL_AT = (110, 470)
ROOT = Path(__file__).resolve().parents[2]


class Daemon:
    """`python -m gateway.cli run` as a child process, logging to a file."""

    def __init__(self, config_path: Path, log: IO[bytes]) -> None:
        self.config_path = config_path
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        """Start a fresh daemon process."""
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "run", str(self.config_path)],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.starts += 1

    def kill9(self) -> None:
        """SIGKILL the daemon: no drain, no offline status, no journal close."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def terminate(self) -> int:
        """SIGTERM the daemon and return its exit status."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)

    def cleanup(self) -> None:
        """Kill a daemon left running by a failed test."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


class StatusWatch:
    """Counts the gateway's retained `online` status messages."""

    def __init__(self) -> None:
        self.online = 0
        self.changed = asyncio.Event()

    async def wait_online(self, count: int, timeout: float = 20.0) -> None:
        """Wait until `count` online messages were seen."""
        async with asyncio.timeout(timeout):
            while self.online < count:
                self.changed.clear()
                await self.changed.wait()


@contextlib.asynccontextmanager
async def watch_status(port: int, topic: str) -> AsyncIterator[StatusWatch]:
    """Follow the gateway's status topic."""
    watch = StatusWatch()
    async with aiomqtt.Client("127.0.0.1", port) as client:
        await client.subscribe(topic, qos=1)

        async def pump() -> None:
            async for message in client.messages:
                assert isinstance(message.payload, bytes)
                if orjson.loads(message.payload).get("state") == "online":
                    watch.online += 1
                    watch.changed.set()

        task = asyncio.create_task(pump(), name="test.status")
        try:
            yield watch
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


@dataclasses.dataclass
class Site:
    """A daemon started once on a fresh persistent session, with its handset and sender."""

    daemon: Daemon
    handset: Handset
    status: StatusWatch
    sender: Sender
    log_path: Path


@contextlib.asynccontextmanager
async def site(
    broker: Broker, tmp_path: Path, config_path: Path, prefix: str
) -> AsyncIterator[Site]:
    """Start the handset, then the daemon, and wait until it is online; clean up after."""
    handset = Handset(broker.port, f"{prefix}/handset/+/alert", client_id=unique("h1"))
    log_path = tmp_path / "daemon.log"
    with log_path.open("wb") as log:
        daemon = Daemon(config_path, log)
        handset.start()
        try:
            await handset.wait_connected()
            async with (
                watch_status(broker.port, f"{prefix}/status") as status,
                sender(broker.port, f"{prefix}/in/x") as s,
            ):
                daemon.start()
                # The first start creates the persistent session; later ones find it queued.
                await status.wait_online(1)
                yield Site(daemon, handset, status, s, log_path)
        finally:
            daemon.cleanup()
            await handset.stop()


async def test_kill9_three_times_mid_stream_loses_nothing(broker: Broker, tmp_path: Path) -> None:
    """SIGKILL three times mid-stream: every raised signal rings exactly once, exit 0 at the end."""
    prefix = unique("f")
    _, config_path = fault_config(broker.port, tmp_path, prefix=prefix, client_id=unique("gw"))
    signals = stream(SIGNALS)
    expected = expected_rings(signals)
    async with site(broker, tmp_path, config_path, prefix) as st:
        daemon, status, s = st.daemon, st.status, st.sender
        t0 = time.monotonic()
        backlog_kill = False
        for i, sig in enumerate(signals):
            if i in KILL_AT:
                await asyncio.to_thread(daemon.kill9)
                daemon.start()
            elif not backlog_kill and status.online == 2:
                # The first restart is online and draining its queued backlog.
                backlog_kill = True
                await asyncio.to_thread(daemon.kill9)
                daemon.start()
            await s.send(sig)
            await asyncio.sleep(0.01)
        if not backlog_kill:  # a slow machine: the restart outlasted the stream
            await status.wait_online(2)
            await asyncio.to_thread(daemon.kill9)
            daemon.start()
        await st.handset.wait_for(expected, timeout=60)
        elapsed = time.monotonic() - t0
        rc = await asyncio.to_thread(daemon.terminate)
    handset, log_path = st.handset, st.log_path
    t = tally(handset.messages, expected)
    print(
        t.line(
            "kill9",
            SIGNALS,
            kills=daemon.starts - 1,
            starts=daemon.starts,
            seconds=round(elapsed, 1),
            exit=rc,
        )
    )
    assert daemon.starts == 1 + len(KILL_AT) + 1  # the scheduled kills and the backlog kill
    assert t.lost == 0, log_path.read_text()[-3000:]
    assert t.duplicate_rings == 0
    assert t.unexpected == 0
    assert rc == 0


async def test_kill9_before_the_commit_keeps_a_handsets_accept(
    broker: Broker, tmp_path: Path
) -> None:
    """An accept is acknowledged to the broker only once journaled, so a crash keeps it.

    Review finding: answers were PUBACKed on arrival, so a SIGKILL within commit_delay
    lost the accept and, after the restart, the alert escalated past the nurse on her way.
    """
    prefix = unique("f")
    config_path = _longest_commit_config(broker, tmp_path, prefix)
    db = tmp_path / "journal.db"
    async with (
        site(broker, tmp_path, config_path, prefix) as st,
        aiomqtt.Client("127.0.0.1", broker.port) as app,
    ):
        await st.sender.send({"id": "cord-1", "device": "d0", "state": "raised"})
        _, ring = await st.handset.next()
        assert ring["type"] == "ring"
        await _until_journaled(db, "SELECT 1 FROM signals WHERE id = 'cord-1'")
        answer = {"alert_id": ring["alert_id"], "response": "accept"}
        await app.publish(f"{prefix}/handset/h1/response", orjson.dumps(answer), qos=1)
        _, update = await st.handset.next()
        # The accept was routed; its commit is still up to a second away.
        assert (update["type"], update["state"]) == ("update", "accepted")
        await asyncio.to_thread(st.daemon.kill9)
        st.daemon.start()
        await st.status.wait_online(2)
        # The broker redelivers the unacknowledged accept to the new daemon.
        _, again = await st.handset.next(timeout=15)
        assert (again["type"], again["state"]) == ("update", "accepted")
        rc = await asyncio.to_thread(st.daemon.terminate)
    assert rc == 0
    journal = Journal(db)
    await journal.open()
    try:
        (stored,) = await journal.recent_alerts(1)
    finally:
        await journal.close()
    assert stored.alert.state is AlertState.ACCEPTED, st.log_path.read_text()[-3000:]
    assert stored.alert.accepted_by == "h1"
    assert [e[1] for e in stored.events].count("accepted") == 1


async def test_kill9_before_the_commit_keeps_a_repeated_identical_press(
    broker: Broker, tmp_path: Path
) -> None:
    """A press with the same bytes as an earlier one, redelivered after a crash, still rings.

    Review finding: signal ids hashed topic and payload only, so the broker's redelivery
    (DUP) of a second identical press was found in the journal as the first press and
    dropped: the alert that had rung before the crash was gone after the restart.
    The MQTT packet id, which a redelivery keeps, now tells the two apart.
    """
    prefix = unique("f")
    config_path = _longest_commit_config(broker, tmp_path, prefix)
    db = tmp_path / "journal.db"
    press = {"device": "d0", "state": "raised"}  # no "id": the signal id is derived
    async with site(broker, tmp_path, config_path, prefix) as st:
        await st.sender.send(press)
        _, first = await st.handset.next()
        await st.sender.send({"device": "d0", "state": "cleared"})
        _, cancel = await st.handset.next()
        assert (first["type"], cancel["type"]) == ("ring", "cancel")
        await _until_journaled(db, "SELECT 1 FROM alerts WHERE state != 'active'")
        await st.sender.send(press)  # the resident pulls the cord again
        _, second = await st.handset.next()
        assert second["type"] == "ring"
        assert second["alert_id"] != first["alert_id"]
        await asyncio.to_thread(st.daemon.kill9)  # before the second press's commit
        st.daemon.start()
        await st.status.wait_online(2)
        _, again = await st.handset.next(timeout=15)
        assert (again["alert_id"], again["seq"]) == (second["alert_id"], second["seq"])
        rc = await asyncio.to_thread(st.daemon.terminate)
    assert rc == 0
    with contextlib.closing(sqlite3.connect(db)) as conn:
        alerts = conn.execute("SELECT id, state FROM alerts ORDER BY rowid").fetchall()
    assert [a[0] for a in alerts] == [first["alert_id"], second["alert_id"]], alerts
    assert alerts[1][1] == "active"


async def test_kill9_before_the_commit_keeps_the_next_qos0_press_from_looking_like_a_repeat(
    broker: Broker, tmp_path: Path
) -> None:
    """A QoS 0 press (Zigbee2MQTT's default) rang, then a SIGKILL beat its commit.

    Review finding: nothing resends a QoS 0 press, so the restarted daemon never heard of
    it, and the next press of that cord derived the same alert id with seq 1: the handset
    dropped the new call as a repeat of the one on its screen.
    """
    prefix = unique("f")
    config_path = _longest_commit_config(broker, tmp_path, prefix)
    db = tmp_path / "journal.db"
    press = orjson.dumps({"device": "d0", "state": "raised"})
    async with (
        site(broker, tmp_path, config_path, prefix) as st,
        aiomqtt.Client("127.0.0.1", broker.port) as zigbee,
    ):
        await zigbee.publish(f"{prefix}/in/x", press, qos=0)
        _, first = await st.handset.next()
        await asyncio.to_thread(st.daemon.kill9)  # commit_delay is 1 s: before the commit
        with contextlib.closing(sqlite3.connect(db)) as conn:
            assert conn.execute("SELECT COUNT(*) FROM alerts").fetchone() == (0,)
        st.daemon.start()
        await st.status.wait_online(2)
        await zigbee.publish(f"{prefix}/in/x", press, qos=0)  # the same bytes, a new call
        _, second = await st.handset.next(timeout=15)
        rc = await asyncio.to_thread(st.daemon.terminate)
    assert rc == 0
    assert (first["type"], first["seq"]) == ("ring", 1)
    assert second["type"] == "ring"
    assert second["alert_id"] != first["alert_id"]


@pytest.mark.parametrize("raise_committed", [True, False], ids=["raise-committed", "beside-raise"])
async def test_kill9_before_the_commit_of_a_message_keeps_the_next_one_apart(
    broker: Broker, tmp_path: Path, raise_committed: bool
) -> None:
    """An update left before its commit; after the restart the cancel must not take its
    seq, or the handset drops the cancel as a repeat and shows a call that ended as open.

    The update answers an accept sent at QoS 0, which nothing resends (as an ESPA
    status is not): the restarted daemon never hears of it.

    `beside-raise`: the QoS 1 press and the accept share one commit window. The broker
    redelivers the press and the restarted daemon re-creates the alert and its ring (seq
    1, a repeat the handset drops). Its update had taken seq 2, and so did the cancel
    after the restart, until a new alert's later messages went past the start's base.
    """
    prefix = unique("f")
    config_path = _longest_commit_config(broker, tmp_path, prefix)
    db = tmp_path / "journal.db"
    async with (
        site(broker, tmp_path, config_path, prefix) as st,
        aiomqtt.Client("127.0.0.1", broker.port) as app,
    ):
        await st.sender.send({"device": "d0", "state": "raised"})
        _, ring = await st.handset.next()
        if raise_committed:
            await _until_journaled(db, "SELECT 1 FROM alerts")
        answer = orjson.dumps({"alert_id": ring["alert_id"], "response": "accept"})
        await app.publish(f"{prefix}/handset/h1/response", answer, qos=0)
        _, update = await st.handset.next()  # its commit is a second away
        await asyncio.to_thread(st.daemon.kill9)
        if not raise_committed:
            with contextlib.closing(sqlite3.connect(db)) as conn:
                assert conn.execute("SELECT COUNT(*) FROM alerts").fetchone() == (0,)
        st.daemon.start()
        await st.status.wait_online(2)
        if not raise_committed:
            _, again = await st.handset.next(timeout=15)  # the broker's redelivery
            assert (again["type"], again["alert_id"], again["seq"]) == (
                "ring",
                ring["alert_id"],
                1,
            )
        await st.sender.send({"device": "d0", "state": "cleared"})
        _, cancel = await st.handset.next(timeout=15)
        rc = await asyncio.to_thread(st.daemon.terminate)
    assert rc == 0
    # After its raise's ring, an alert's messages go past its start's base (1,000,000),
    # and the second start's past 2,000,000 (Engine.use_start).
    assert (ring["seq"], update["type"], update["seq"]) == (1, "update", 1_000_001)
    assert (cancel["type"], cancel["alert_id"]) == ("cancel", ring["alert_id"])
    assert cancel["seq"] > update["seq"]
    if raise_committed:
        assert cancel["seq"] == 2_000_001


def _longest_commit_config(broker: Broker, tmp_path: Path, prefix: str) -> Path:
    """The fault config with the longest gathering window, so a kill lands before a commit."""
    _, path = fault_config(broker.port, tmp_path, prefix=prefix, client_id=unique("gw"))
    text = path.read_text(encoding="utf-8")
    longest = text.replace("synchronous: full}", "synchronous: full, commit_delay: 1}")
    path.write_text(longest, encoding="utf-8")
    return path


async def _until_journaled(db: Path, query: str, timeout: float = 10.0) -> None:
    """Wait until `query` finds a row in the running daemon's journal."""
    async with asyncio.timeout(timeout):
        while True:
            with contextlib.closing(sqlite3.connect(db)) as conn:
                if conn.execute(query).fetchone():
                    return
            await asyncio.sleep(0.05)
