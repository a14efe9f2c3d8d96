"""Seams of the restart path against a real daemon and broker (SIGKILL, a late journal).

The engine and journal cases behind them are in tests/test_restart_seams.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from tests.conftest import Broker, make_config, running, unique
from tests.faults.helpers import journal_unreadable_until
from tests.faults.test_journal_failing import until_recovered
from tests.integration.helpers import peer

pytestmark = pytest.mark.faults


async def test_a_journal_opened_late_still_sends_the_cancel_of_a_call_that_ended(
    broker: Broker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A call ended while the broker was away: its cancel waited in the outbox. The next
    start cannot read the journal; once the file opens, the late open marked every queued
    row cancelled and rang only the alerts it restored. The ended call is not one of them:
    its cancel never went and the handset showed the call for good.
    """
    prefix = unique("t")
    config = make_config(broker.port, tmp_path, prefix=prefix)
    db = tmp_path / "journal.db"
    async with peer(broker.port, prefix) as p:
        async with running(config):
            await p.json_signal({"device": "cord-103", "id": "c1"})
            _, ring = await p.next()
            await p.json_signal({"device": "cord-103", "id": "c2", "state": "cleared"})
            handset, cancel = await p.next()
        assert (ring["type"], cancel["type"]) == ("ring", "cancel")
        # As an outage leaves it (the broker never sent the PUBACK): still queued at the
        # stop, for the next start to send.
        with contextlib.closing(sqlite3.connect(db)) as conn, conn:
            conn.execute("UPDATE outbox SET state = 'queued' WHERE action = 'cancel'")
        readable = asyncio.Event()
        journal_unreadable_until(monkeypatch, readable)
        async with running(config) as r:
            assert r.gateway.engine.active_count <= 1  # the journal's own alarm at most
            readable.set()
            await until_recovered(r.gateway)
            sent_to, again = await p.next()
            for _ in range(100):  # the copy's PUBACK is committed after the late open's
                states = _cancel_rows(db)
                if states[-1] == "sent":
                    break
                await asyncio.sleep(0.05)
    assert (sent_to, again["type"], again["alert_id"]) == (handset, "cancel", ring["alert_id"])
    assert again["seq"] == cancel["seq"]  # the message itself, which no one had seen
    assert states == ["cancelled", "sent"]  # the file's row, then its copy


def _cancel_rows(db: Path) -> list[str]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return [r[0] for r in conn.execute("SELECT state FROM outbox WHERE action = 'cancel'")]


_COLUMNS = (
    "key, kind, room, zone, device, priority, critical, state, signal_id, text, count,"
    " accepted_by, updated_at, rule, step, due, grp"
)


def _pulled_again(db: Path, alert_id: str, newer: str) -> None:
    """Make the journal hold `alert_id`'s call a second time, as `newer`, a minute later:
    the file an alertgw before 2026-11-25 left when it opened late (its alerts stayed in
    the file, the call pulled meanwhile was a new alert), or a crash between a late
    open's commits leaves today."""
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        conn.execute(
            f"INSERT INTO alerts (id, raised_at, {_COLUMNS})"
            f" SELECT ?, raised_at + 60, {_COLUMNS} FROM alerts WHERE id = ?",
            (newer, alert_id),
        )
        conn.execute(
            "INSERT INTO events (alert_id, ts, event, detail, alert_row)"
            " SELECT ?, ts + 60, event, detail, (SELECT rowid FROM alerts WHERE id = ?)"
            " FROM events WHERE alert_id = ? ORDER BY rowid",
            (newer, newer, alert_id),
        )
        conn.execute(
            "INSERT INTO outbox (alert_id, handset, seq, action, payload, state, attempts,"
            " created_at, updated_at) SELECT ?, handset, seq, action, payload, state,"
            " attempts, created_at, updated_at FROM outbox WHERE alert_id = ?",
            (newer, alert_id),
        )


async def test_a_start_on_a_journal_holding_a_call_twice_keeps_one_alert(
    broker: Broker, tmp_path: Path
) -> None:
    """Both came back and rang on; the key named the newer only, so the cord's reset
    ended that one and the older was left to escalate and remind all night."""
    prefix = unique("t")
    config = make_config(broker.port, tmp_path, prefix=prefix)
    db = tmp_path / "journal.db"
    newer = "0123456789abcdef"
    async with peer(broker.port, prefix) as p:
        async with running(config):
            await p.json_signal({"device": "cord-103", "id": "c1"})
            _, ring = await p.next()
        older = str(ring["alert_id"])
        _pulled_again(db, older, newer)
        with capture_logs() as logs:
            async with running(config) as r:
                _, told = await p.next()  # the first tick: the older one ends
                await p.json_signal({"device": "cord-103", "id": "c2", "state": "cleared"})
                _, cancel = await p.next()
                active = [a.id for a in r.gateway.engine.active if a.device == "cord-103"]
    assert (told["type"], told["alert_id"]) == ("cancel", older)
    assert (cancel["type"], cancel["alert_id"]) == ("cancel", newer)
    assert active == []
    doubled = [e for e in logs if e["event"] == "journal_alerts_doubled"]
    assert [(e["count"], e["keys"]) for e in doubled] == [(1, ["cord-103:pull_cord"])]
    with contextlib.closing(sqlite3.connect(db)) as conn:
        states = dict(conn.execute("SELECT id, state FROM alerts WHERE device = 'cord-103'"))
        (last,) = conn.execute(
            "SELECT event, detail FROM events WHERE alert_id = ? ORDER BY rowid DESC LIMIT 1",
            (older,),
        ).fetchall()
    assert states == {older: "cleared", newer: "cleared"}
    assert last == ("cleared", f"by {newer} (superseded)")
