"""Fault: the journal cannot be opened at start (a full disk, a damaged file).

Exiting would be a systemd restart loop in which no alarm reaches a handset: the daemon
routes from memory instead, says so loudly, and journals everything once the file opens.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from gateway.errors import JournalError
from gateway.journal import Journal
from tests.conftest import Broker, make_config, running, unique
from tests.faults.helpers import journal_unreadable_until
from tests.faults.test_journal_failing import UNLATCHED, journaled, until_recovered
from tests.integration.helpers import peer

pytestmark = pytest.mark.faults

DAMAGED = b"not sqlite at all, but long enough to have a header" * 8


async def rings(p: object, count: int) -> list[dict[str, object]]:
    """The next `count` handset messages (payloads)."""
    return [(await p.next())[1] for _ in range(count)]  # type: ignore[attr-defined]


async def test_a_damaged_journal_routes_from_memory_until_it_is_moved_aside(
    broker: Broker, tmp_path: Path
) -> None:
    """Start on a file that is no journal: rings, alarms, and journals once it is moved aside."""
    prefix = unique("t")
    config = make_config(broker.port, tmp_path, prefix=prefix, extra=UNLATCHED)
    db = tmp_path / "journal.db"
    db.write_bytes(DAMAGED)
    async with peer(broker.port, prefix) as p, running(config) as r:
        gw = r.gateway
        sample = gw.metrics.registry.get_sample_value
        assert sample("alertgw_journal_failing") == 1
        # The journal's own technical alarm is live (for the technical handsets, which
        # this site has none of) ...
        for _ in range(100):
            if any(a.device == "journal" for a in gw.engine.active):
                break
            await asyncio.sleep(0.02)
        assert any(a.device == "journal" for a in gw.engine.active)
        # ... and a fall rings the night handsets.
        await p.json_signal({"device": "fall-101", "id": "f1"})
        got = await rings(p, 2)
        assert [(m["type"], m["signal_id"]) for m in got] == [("ring", "f1")] * 2
        assert not r.task.done()
        # The technician moves the damaged file aside: the next retry creates a journal.
        db.rename(tmp_path / "journal.db.damaged")
        await until_recovered(gw)
        assert gw.journal.is_open
    assert (tmp_path / "journal.db.damaged").read_bytes() == DAMAGED  # never written to
    ids, journal_alarm = journaled(tmp_path)
    assert "f1" in ids
    assert journal_alarm == ["cleared"]


async def test_a_journal_that_only_reads_restores_its_alerts_and_numbers_after_its_rows(
    broker: Broker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk at start: open alerts come back from a read-only look; nothing collides."""
    prefix = unique("t")
    config = make_config(broker.port, tmp_path, prefix=prefix)
    async with peer(broker.port, prefix) as p:
        async with running(config):
            await p.json_signal({"device": "fall-101", "id": "f1"})  # latching: stays open
            first = await rings(p, 2)
        fall = str(first[0]["alert_id"])
        with sqlite3.connect(tmp_path / "journal.db") as conn:
            (rows_before,) = conn.execute("SELECT MAX(id) FROM outbox").fetchone()

        writable = False
        open_journal = Journal.open

        async def full_disk(self: Journal) -> None:
            if not writable:
                raise JournalError("cannot open the journal: database or disk is full")
            await open_journal(self)

        monkeypatch.setattr(Journal, "open", full_disk)
        async with running(config) as r:
            gw = r.gateway
            sample = gw.metrics.registry.get_sample_value
            assert sample("alertgw_journal_failing") == 1
            assert fall in {a.id for a in gw.engine.active}  # restored, read only
            # New messages while the file is out of reach: the journal alarm and a cord.
            await p.json_signal({"device": "cord-103", "id": "c1"})
            cord = await rings(p, 1)
            assert [(m["kind"], m["signal_id"]) for m in cord] == [("pull_cord", "c1")]
            # The restored fall still takes its accept.
            await p.respond("night1", fall, "accept")
            for _ in range(100):
                restored = gw.engine.alert(fall)
                if restored is not None and restored.state.value == "accepted":
                    break
                await asyncio.sleep(0.05)
            assert restored is not None
            assert restored.state.value == "accepted"
            writable = True
            await until_recovered(gw)
    with sqlite3.connect(tmp_path / "journal.db") as conn:
        ids = [row[0] for row in conn.execute("SELECT id FROM outbox ORDER BY id")]
        (state,) = conn.execute("SELECT state FROM alerts WHERE id = ?", (fall,)).fetchone()
        cord = conn.execute(
            "SELECT o.id FROM outbox o JOIN alerts a ON a.id = o.alert_id"
            " WHERE a.kind = 'pull_cord'"
        ).fetchall()
    assert len(ids) == len(set(ids))
    assert cord
    assert all(row[0] > rows_before for row in cord)  # after the file's own rows
    assert state == "accepted"
    journal_ids, journal_alarm = journaled(tmp_path)
    assert "c1" in journal_ids
    assert journal_alarm == ["cleared"]


async def test_two_read_only_starts_in_a_row_do_not_reuse_a_restored_alert_s_seqs(
    broker: Broker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The disk fills and stays full across a restart (systemd, a crash, an admin).

    Neither start can write its number (daemon_start), so the journal's count would give
    both the same one, and the second start would reuse the seqs the first sent for a
    restored alert (never committed: nothing could be). The handset would drop the cancel
    as a repeat and show the fall open for good. They take the clock's number instead.
    """
    prefix = unique("t")
    config = make_config(broker.port, tmp_path, prefix=prefix)

    async def messages_of(p: object, alert_id: str) -> list[tuple[str, dict[str, object]]]:
        got = []
        with contextlib.suppress(TimeoutError):
            while True:
                got.append(await p.next(1.0))  # type: ignore[attr-defined]
        return [(h, m) for h, m in got if m["alert_id"] == alert_id]

    async def full_disk(self: Journal) -> None:
        raise JournalError("cannot open the journal: database or disk is full")

    async with peer(broker.port, prefix) as p:
        async with running(config):
            await p.json_signal({"device": "fall-101", "id": "f1"})  # latching: stays open
            fall = str((await rings(p, 2))[0]["alert_id"])
        monkeypatch.setattr(Journal, "open", full_disk)
        async with running(config) as r:  # start 2: read only
            assert fall in {a.id for a in r.gateway.engine.active}
            await p.respond("night1", fall, "accept")
            second = await messages_of(p, fall)
        # systemd restarts seconds apart (RestartSec); the clock's number counts seconds.
        later = int(time.time()) + 1
        while time.time() < later:
            await asyncio.sleep(0.05)
        async with running(config) as r:  # start 3: the disk is still full
            assert fall in {a.id for a in r.gateway.engine.active}
            await p.respond("night1", fall, "resolve")
            third = await messages_of(p, fall)
    with sqlite3.connect(tmp_path / "journal.db") as conn:
        start = conn.execute("SELECT value FROM levels WHERE key = 'daemon_start'").fetchone()
    assert start == ("1",)  # nothing of starts 2 and 3 reached the file
    assert [m["type"] for _, m in second] == ["update", "update"], second
    assert [m["type"] for _, m in third] == ["cancel", "cancel"], third
    seen = {(h, m["seq"]) for h, m in second}
    # A handset drops a pair it has seen: the cancel must not be one of them.
    assert not [(h, m["seq"]) for h, m in third if (h, m["seq"]) in seen], (second, third)
    assert all(isinstance(m["seq"], int) and m["seq"] < 2**53 for _, m in second + third)


async def test_alerts_an_unreadable_journal_held_come_back_when_it_opens(
    broker: Broker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file cannot even be read at start: its open alerts come back once it opens.

    They stayed in the file until the next start (weeks, perhaps), and a call raised again
    meanwhile then came back as two alerts for one condition. Now the fall rings again
    (its queued messages in the file were cancelled) and the old call is superseded by the
    new one, its handsets told.
    """
    prefix = unique("t")
    config = make_config(broker.port, tmp_path, prefix=prefix)
    async with peer(broker.port, prefix) as p:
        async with running(config):
            await p.json_signal({"device": "fall-101", "id": "f1"})  # latching: stays open
            await p.json_signal({"device": "cord-103", "id": "c1"})
            first = [await p.next() for _ in range(3)]
        fall = next(str(m["alert_id"]) for _, m in first if m["kind"] == "fall")
        cord_handset, old_cord = next(
            (h, str(m["alert_id"])) for h, m in first if m["kind"] == "pull_cord"
        )

        readable = asyncio.Event()
        journal_unreadable_until(monkeypatch, readable)
        async with running(config) as r:
            gw = r.gateway
            assert fall not in {a.id for a in gw.engine.active}  # memory starts empty
            await p.json_signal({"device": "cord-103", "id": "c2"})  # pulled again
            (cord,) = await rings(p, 1)
            new_cord = str(cord["alert_id"])
            assert new_cord != old_cord
            readable.set()
            await until_recovered(gw)
            active = {a.id for a in gw.engine.active}
            assert fall in active  # back, and ringing again as its timers say
            assert new_cord in active
            assert old_cord not in active
            # The file's queued messages were cancelled: the fall, still ringing, rings its
            # step again; the old call's handset is told it ended.
            after = [await p.next() for _ in range(3)]
            got = {(h, m["type"], m["alert_id"]) for h, m in after}
            assert (cord_handset, "cancel", old_cord) in got, after
            assert {m["alert_id"] for _, m in after if m["type"] == "ring"} == {fall}, after
            # Numbered past the file's own start (1), which may have sent them uncommitted.
            old_ones = [m["seq"] for _, m in after if m["alert_id"] in (fall, old_cord)]
            assert old_ones, after
            assert all(2_000_000 < s < 3_000_000 for s in old_ones), after
            for _ in range(100):
                if not gw._pending.transitions:
                    break
                await asyncio.sleep(0.05)
    with sqlite3.connect(tmp_path / "journal.db") as conn:
        (state,) = conn.execute("SELECT state FROM alerts WHERE id = ?", (old_cord,)).fetchone()
        events = conn.execute(
            "SELECT event, detail FROM events WHERE alert_id = ? ORDER BY rowid", (old_cord,)
        ).fetchall()
        queued = conn.execute("SELECT COUNT(*) FROM outbox WHERE state = 'queued'").fetchone()
        start = conn.execute("SELECT value FROM levels WHERE key = 'daemon_start'").fetchone()
    assert state == "cleared"
    assert start == ("2",)
    assert events[-1] == ("cleared", f"by {new_cord} (superseded)")
    assert queued == (0,)


async def test_an_unreadable_alert_row_does_not_stop_the_start(
    broker: Broker, tmp_path: Path
) -> None:
    """One open alert's row that this alertgw cannot read (bit rot, a hand edit).

    The start died on it, and systemd's restarts died on it again: nothing rang. The row is
    left out, named in an error, and the other open alert and new signals go on as ever.
    """
    prefix = unique("t")
    config = make_config(broker.port, tmp_path, prefix=prefix, extra=UNLATCHED)
    async with peer(broker.port, prefix) as p:
        async with running(config):
            await p.json_signal({"device": "fall-101", "id": "f1"})
            await p.z2m("rom103/snor", {"action": "single"})
            got = await rings(p, 3)  # the fall rings both night handsets, the cord one
        by_signal = {m["signal_id"]: m["alert_id"] for m in got}
        with contextlib.closing(sqlite3.connect(tmp_path / "journal.db")) as conn, conn:
            conn.execute("UPDATE alerts SET priority = 99 WHERE id = ?", (by_signal["f1"],))
        with capture_logs() as logs:
            async with running(config) as r:
                open_ids = {a.id for a in r.gateway.engine.active}
                await p.json_signal({"device": "epi-201", "id": "e1"})
                handset, ring = await p.next()
    assert (handset, ring["type"], ring["signal_id"]) == ("night2", "ring", "e1")
    assert by_signal["f1"] not in open_ids
    assert [a for a in by_signal.values() if a in open_ids] == [
        a for s, a in by_signal.items() if s != "f1"
    ]
    unreadable = [e for e in logs if e["event"] == "journal_rows_unreadable"]
    assert [(e["log_level"], e["count"]) for e in unreadable] == [("error", 1)]
    assert by_signal["f1"] in unreadable[0]["rows"][0]


async def test_an_unreadable_queued_message_does_not_stop_the_start(
    broker: Broker, tmp_path: Path
) -> None:
    """A handset message still queued in the outbox whose stored payload is no longer JSON
    (bit rot, a hand edit): the start died on it (`pending_deliveries`), every restart
    too. It is left out and named in `journal_rows_unreadable`; the other queued message
    still goes out, and new signals ring.
    """
    prefix = unique("t")
    config = make_config(broker.port, tmp_path, prefix=prefix, extra=UNLATCHED)
    async with peer(broker.port, prefix) as p:
        async with running(config):
            await p.json_signal({"device": "epi-201", "id": "e1"})
            await rings(p, 2)  # a seizure rings both night handsets
        with contextlib.closing(sqlite3.connect(tmp_path / "journal.db")) as conn, conn:
            rows = conn.execute("SELECT id, handset FROM outbox ORDER BY id").fetchall()
            (bad, _), (good, good_handset) = rows
            conn.execute("UPDATE outbox SET state = 'queued' WHERE id IN (?, ?)", (bad, good))
            conn.execute("UPDATE outbox SET payload = '{not json' WHERE id = ?", (bad,))
        with capture_logs() as logs:
            async with running(config):
                handset, again = await p.next()  # the readable queued message, sent again
                assert await p.nothing(within=0.3)
                await p.json_signal({"device": "fall-101", "id": "f1"})
                fresh = [m["signal_id"] for m in await rings(p, 2)]
    assert (handset, again["type"], again["signal_id"]) == (good_handset, "ring", "e1")
    assert fresh == ["f1", "f1"]
    unreadable = [e for e in logs if e["event"] == "journal_rows_unreadable"]
    assert [(e["log_level"], e["count"]) for e in unreadable] == [("error", 1)]
    assert unreadable[0]["rows"][0].startswith(f"outbox row {bad}:")
