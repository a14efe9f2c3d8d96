"""The SQLite journal and outbox, on real database files."""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.engine import Transition
from gateway.errors import JournalError
from gateway.journal import _OPEN, Journal
from gateway.model import (
    Alert,
    AlertState,
    Delivery,
    DeliveryState,
    Priority,
    Signal,
    SignalState,
)

T0 = 1_700_000_000.0


def signal(sid: str, *, received_at: float = T0) -> Signal:
    """A fall signal received at `received_at`."""
    return Signal(
        id=sid,
        source="zigbee",
        device="fall-101",
        room="101",
        kind="fall",
        state=SignalState.RAISED,
        ts=received_at,
        attrs={"battery": 90},
        received_at=received_at,
    )


def alert(aid: str, state: AlertState = AlertState.ACTIVE, *, raised_at: float = T0) -> Alert:
    """A critical fall alert in room 101."""
    return Alert(
        id=aid,
        key=f"fall-101/{aid}",
        kind="fall",
        room="101",
        zone="east",
        device="fall-101",
        priority=Priority.CRITICAL,
        critical=True,
        state=state,
        raised_at=raised_at,
        signal_id=f"sig-{aid}",
        text="FALL room 101",
    )


def ring(aid: str, handset: str, seq: int, action: str = "ring") -> Delivery:
    """A queued delivery of alert `aid` to `handset`."""
    return Delivery(alert_id=aid, handset=handset, seq=seq, action=action, payload={"id": aid})


def rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    """Read rows through a separate connection (proves the data is committed)."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        return db.execute(sql).fetchall()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """Where the journal lives (in a subdirectory the journal must create)."""
    return tmp_path / "var" / "journal.db"


@pytest.fixture
async def journal(db_path: Path) -> AsyncIterator[Journal]:
    """An open journal on a fresh file."""
    j = Journal(db_path)
    await j.open()
    yield j
    await j.close()


async def test_open_creates_the_file_in_wal_mode(journal: Journal, db_path: Path) -> None:
    """Opening creates the directory and database, with WAL journaling on."""
    assert db_path.exists()
    assert list(await journal.db.execute_fetchall("PRAGMA journal_mode")) == [("wal",)]
    assert rows(db_path, "PRAGMA journal_mode") == [("wal",)]  # persistent in the file


@pytest.mark.parametrize(("mode", "level"), [("full", 2), ("normal", 1)])
async def test_synchronous_setting_is_applied(db_path: Path, mode: str, level: int) -> None:
    """`synchronous` from the config reaches the connection (FULL=2, NORMAL=1)."""
    j = Journal(db_path, synchronous=mode)
    await j.open()
    try:
        assert list(await j.db.execute_fetchall("PRAGMA synchronous")) == [(level,)]
    finally:
        await j.close()


async def test_commit_batch_writes_every_table_and_numbers_deliveries(
    journal: Journal, db_path: Path
) -> None:
    """One batch lands signals, alert, events, outbox and levels; deliveries get outbox ids."""
    a = alert("a1")
    stored = await journal.commit_batch(
        [signal("s1")],
        [Transition(a, "raised", T0, "from s1"), Transition(a, "delivered", T0 + 1, "night1")],
        [ring("a1", "night1", 1), ring("a1", "night2", 1)],
        {"fall-101/fall": True},
    )
    assert [d.id for d in stored] == [1, 2]
    assert [dataclasses.replace(d, id=None) for d in stored] == [
        ring("a1", "night1", 1),
        ring("a1", "night2", 1),
    ]
    assert rows(db_path, "SELECT id, device, state, attrs FROM signals") == [
        ("s1", "fall-101", "raised", '{"battery":90}')
    ]
    assert rows(db_path, "SELECT id, state, priority, critical FROM alerts") == [
        ("a1", "active", 4, 1)
    ]
    assert rows(db_path, "SELECT alert_id, ts, event, detail FROM events ORDER BY rowid") == [
        ("a1", T0, "raised", "from s1"),
        ("a1", T0 + 1, "delivered", "night1"),
    ]
    assert rows(db_path, "SELECT id, handset, state, payload FROM outbox ORDER BY id") == [
        (1, "night1", "queued", '{"id":"a1"}'),
        (2, "night2", "queued", '{"id":"a1"}'),
    ]
    assert await journal.levels() == {"fall-101/fall": True}


async def test_alert_rows_are_upserted_to_their_latest_state(
    journal: Journal, db_path: Path
) -> None:
    """Several transitions of one alert keep one row holding the last state."""
    a = alert("a1")
    await journal.commit_batch([], [Transition(a, "raised", T0)], [])
    accepted = a.with_state(AlertState.ACCEPTED, accepted_by="night1", count=3)
    await journal.commit_batch([], [Transition(accepted, "accepted", T0 + 5, "night1")], [])
    assert rows(db_path, "SELECT id, state, accepted_by, count FROM alerts") == [
        ("a1", "accepted", "night1", 3)
    ]
    (stored,) = await journal.recent_alerts()
    assert stored.alert == accepted
    assert [e[1] for e in stored.events] == ["raised", "accepted"]


async def test_failed_batch_is_rolled_back_and_not_committed_by_the_next(
    journal: Journal, db_path: Path
) -> None:
    """A batch that fails midway leaves nothing behind, even after a later successful batch."""
    (first,) = await journal.commit_batch([], [], [ring("a0", "night1", 1)])
    clash = dataclasses.replace(ring("a1", "night1", 1), id=first.id)  # its outbox row exists
    with pytest.raises(sqlite3.IntegrityError):
        await journal.commit_batch([signal("s1")], [Transition(alert("a1"), "raised", T0)], [clash])
    await journal.commit_batch([signal("s2")], [], [])
    assert rows(db_path, "SELECT id FROM signals") == [("s2",)]
    assert rows(db_path, "SELECT COUNT(*) FROM alerts") == [(0,)]
    assert rows(db_path, "SELECT COUNT(*) FROM events") == [(0,)]
    assert not await journal.seen_signal("s1", 0)


async def test_a_value_orjson_cannot_write_is_stored_as_text(journal: Journal) -> None:
    """Decoders reject such input; should any slip through, it must not fail the batch."""
    odd = Delivery(alert_id="a1", handset="night1", seq=1, action="ring", payload={1: "x"})  # type: ignore[dict-item]  # orjson refuses int keys
    (stored,) = await journal.commit_batch([signal("s1")], [], [odd])
    assert stored.id is not None
    (pending,) = await journal.pending_deliveries()
    assert pending.payload == "{1: 'x'}"  # type: ignore[comparison-overlap]


async def test_pending_deliveries_are_queued_rows_in_order(journal: Journal) -> None:
    """pending_deliveries returns only queued rows, oldest first, with decoded payloads."""
    first = await journal.commit_batch([], [], [ring("a1", "night1", 1), ring("a1", "night2", 1)])
    second = await journal.commit_batch([], [], [ring("a2", "night1", 1)])
    ids = [d.id for d in first + second]
    assert [d.id for d in await journal.pending_deliveries()] == ids
    assert ids[0] is not None
    await journal.commit_batch([], [], [], sent=[(ids[0], DeliveryState.SENT)])
    pending = await journal.pending_deliveries()
    assert pending == [*first[1:], *second]
    assert pending[0].payload == {"id": "a1"}
    assert pending[0].state is DeliveryState.QUEUED


async def test_outbox_ids_continue_after_the_newest_row_without_a_sequence(
    db_path: Path,
) -> None:
    """The journal numbers outbox rows itself: no sqlite_sequence row per commit."""
    j = Journal(db_path)
    await j.open()
    try:
        first = await j.commit_batch([], [], [ring("a1", "n1", 1), ring("a1", "n2", 1)])
    finally:
        await j.close()
    assert rows(db_path, "SELECT name FROM sqlite_master WHERE name = 'sqlite_sequence'") == []
    j = Journal(db_path)
    await j.open()
    try:
        (later,) = await j.commit_batch([], [], [ring("a1", "n1", 2)])
    finally:
        await j.close()
    assert [d.id for d in first] == [1, 2]
    assert later.id == 3


async def test_sent_marks_record_state_and_attempts(journal: Journal, db_path: Path) -> None:
    """A batch's `sent` marks set the state and count an attempt per update."""
    (d,) = await journal.commit_batch([], [], [ring("a1", "night1", 1)])
    assert d.id is not None
    await journal.commit_batch([], [], [], sent=[(d.id, DeliveryState.FAILED)])
    await journal.commit_batch([], [], [], sent=[(d.id, DeliveryState.DELIVERED)])
    assert rows(db_path, "SELECT state, attempts FROM outbox") == [("delivered", 2)]
    assert await journal.pending_deliveries() == []


async def test_marks_for_rows_of_the_same_batch_are_written_with_the_insert(
    journal: Journal, db_path: Path
) -> None:
    """A PUBACK that beats its batch's commit: the row is stored sent, not queued then sent."""
    old, fresh, other = journal.number(
        [ring("a0", "night1", 1), ring("a1", "night1", 1), ring("a2", "night2", 1)]
    )
    assert old.id is not None
    assert fresh.id is not None
    await journal.commit_batch([], [], [old])
    await journal.commit_batch(
        [],
        [],
        [fresh, other],
        sent=[
            (old.id, DeliveryState.SENT),
            (fresh.id, DeliveryState.FAILED),
            (fresh.id, DeliveryState.SENT),
        ],
    )
    assert rows(db_path, "SELECT alert_id, state, attempts FROM outbox ORDER BY id") == [
        ("a0", "sent", 1),
        ("a1", "sent", 2),
        ("a2", "queued", 0),
    ]
    assert [d.alert_id for d in await journal.pending_deliveries()] == ["a2"]


async def test_active_alerts_restore_handsets_and_last_seq(journal: Journal) -> None:
    """Unfinished alerts come back with the handsets rung (first-rung first) and the last seq."""
    a1 = alert("a1", raised_at=T0 + 10)
    a2 = alert("a2", AlertState.HELD, raised_at=T0)
    done = alert("a3", AlertState.RESOLVED, raised_at=T0 + 20)
    await journal.commit_batch(
        [],
        [Transition(a1, "raised", T0 + 10), Transition(a2, "held", T0), Transition(done, "x", 1)],
        [ring("a1", "night2", 1), ring("a1", "night1", 1), ring("a3", "night1", 1)],
    )
    await journal.commit_batch([], [], [ring("a1", "night2", 2), ring("a1", "night2", 3, "update")])
    restored = await journal.active_alerts()
    assert [s.alert.id for s in restored] == ["a2", "a1"]  # by raised_at
    held, active = restored
    assert held.alert == a2
    assert (held.handsets, held.last_seq) == ((), 0)
    assert active.alert == a1
    assert active.handsets == ("night2", "night1")
    assert active.last_seq == 3
    assert active.events == ((T0 + 10, "raised", ""),)


async def test_active_alerts_cover_every_non_terminal_state(journal: Journal) -> None:
    """HELD, ACTIVE and ACCEPTED are restored; every terminal state is not."""
    transitions = [
        Transition(alert(f"a-{state.value}", state, raised_at=T0 + i), "x", T0)
        for i, state in enumerate(AlertState)
    ]
    await journal.commit_batch([], transitions, [])
    restored = {s.alert.state for s in await journal.active_alerts()}
    assert restored == {s for s in AlertState if not s.terminal}
    assert restored == {AlertState.HELD, AlertState.ACTIVE, AlertState.ACCEPTED}


async def test_recent_alerts_are_newest_first_and_limited(journal: Journal) -> None:
    """recent_alerts orders by raised_at descending and honours the limit."""
    transitions = [Transition(alert(f"a{i}", raised_at=T0 + i), "raised", T0 + i) for i in range(5)]
    await journal.commit_batch([], transitions, [])
    assert [s.alert.id for s in await journal.recent_alerts(3)] == ["a4", "a3", "a2"]


async def test_levels_round_trip_and_overwrite(journal: Journal, db_path: Path) -> None:
    """Levels saved with batches are read back, the latest value per key winning, across reopen."""
    await journal.commit_batch([], [], [], {"door-102/contact": True, "bed-101/occupancy": False})
    await journal.commit_batch([], [], [], {"door-102/contact": False})
    await journal.commit_batch([], [], [], {})
    expected = {"door-102/contact": False, "bed-101/occupancy": False}
    assert await journal.levels() == expected
    await journal.close()
    again = Journal(db_path)
    await again.open()
    try:
        assert await again.levels() == expected
    finally:
        await again.close()


async def test_seen_signal_honours_the_window(journal: Journal) -> None:
    """seen_signal is true only for an id received at or after `since`."""
    await journal.commit_batch([signal("s1", received_at=T0)], [], [])
    assert await journal.seen_signal("s1", T0 - 60)
    assert await journal.seen_signal("s1", T0)
    assert not await journal.seen_signal("s1", T0 + 0.001)
    assert not await journal.seen_signal("other", 0)


async def test_prune_removes_only_old_finished_history(journal: Journal, db_path: Path) -> None:
    """prune drops old signals, finished alerts with their events and old sent rows only."""
    old_done = alert("old-done", AlertState.RESOLVED)
    old_active = alert("old-active", AlertState.ACCEPTED)
    new_done = alert("new-done", AlertState.CLEARED)
    await journal.commit_batch(
        [
            signal("s-old", received_at=T0),
            signal("s-new", received_at=T0 + 1000),
            signal("sig-old-active", received_at=T0),  # the open alert's signal
        ],
        [
            Transition(old_done, "resolved", T0),
            Transition(old_active, "accepted", T0),
            Transition(new_done, "cleared", T0),
        ],
        [
            ring("old-done", "night1", 1),  # will be sent
            ring("old-active", "night1", 1),  # stays queued
            ring("new-done", "night1", 1),  # will be sent, recently
        ],
    )
    await journal.commit_batch([], [], [], sent=[(1, DeliveryState.SENT), (3, DeliveryState.SENT)])
    # Age the rows: updated_at comes from the wall clock.
    with contextlib.closing(sqlite3.connect(db_path)) as db, db:
        db.execute("UPDATE alerts SET updated_at = ? WHERE id != 'new-done'", (T0,))
        db.execute("UPDATE alerts SET updated_at = ? WHERE id = 'new-done'", (T0 + 1000,))
        db.execute("UPDATE outbox SET updated_at = ? WHERE id IN (1, 2)", (T0,))
        db.execute("UPDATE outbox SET updated_at = ? WHERE id = 3", (T0 + 1000,))

    removed = await journal.prune(T0 + 500)

    assert removed == 4  # s-old, the old-done event, old-done's sent row, the old-done alert
    # An open alert keeps its signal: a restart looks its source up there.
    assert rows(db_path, "SELECT id FROM signals ORDER BY id") == [("s-new",), ("sig-old-active",)]
    assert await journal.signal_sources(["sig-old-active"]) == {"sig-old-active": "zigbee"}
    assert rows(db_path, "SELECT id FROM alerts ORDER BY id") == [("new-done",), ("old-active",)]
    assert rows(db_path, "SELECT alert_id FROM events ORDER BY alert_id") == [
        ("new-done",),
        ("old-active",),
    ]
    assert rows(db_path, "SELECT id, state FROM outbox ORDER BY id") == [
        (2, "queued"),
        (3, "sent"),
    ]
    assert [s.alert.id for s in await journal.active_alerts()] == ["old-active"]
    assert await journal.prune(T0 + 500) == 0


async def test_prune_in_small_chunks_keeps_the_database_bounded(
    journal: Journal, db_path: Path
) -> None:
    """A backlog larger than one chunk is pruned completely, a few rows per transaction."""
    for i in range(30):
        done = alert(f"a{i}", AlertState.CLEARED)
        await journal.commit_batch(
            [signal(f"s{i}", received_at=T0)], [Transition(done, "cleared", T0)], []
        )
    with contextlib.closing(sqlite3.connect(db_path)) as db, db:
        db.execute("UPDATE alerts SET updated_at = ?", (T0,))
    removed = await journal.prune(T0 + 1, chunk=7)
    assert removed == 90  # 30 signals, 30 events, 30 alerts
    assert rows(db_path, "SELECT COUNT(*) FROM alerts") == [(0,)]
    assert rows(db_path, "SELECT COUNT(*) FROM signals") == [(0,)]


async def test_close_is_idempotent_and_a_closed_journal_refuses_use(db_path: Path) -> None:
    """close() twice is fine; using a closed journal raises RuntimeError."""
    j = Journal(db_path)
    await j.open()
    await j.close()
    await j.close()
    with pytest.raises(RuntimeError, match="not open"):
        await j.pending_deliveries()


async def test_events_point_at_their_alert_row_which_grows_with_time(
    journal: Journal, db_path: Path
) -> None:
    """Each event carries its alert's rowid; later alerts get larger rowids (appending)."""
    first, second = alert("zz-first"), alert("aa-second")  # ids sort against raise order
    await journal.commit_batch([], [Transition(first, "raised", T0)], [])
    await journal.commit_batch(
        [],
        [
            Transition(second, "raised", T0 + 1),
            Transition(dataclasses.replace(first, state=AlertState.CLEARED), "cleared", T0 + 2),
        ],
        [],
    )
    assert rows(db_path, "SELECT rowid, id FROM alerts ORDER BY rowid") == [
        (1, "zz-first"),
        (2, "aa-second"),
    ]
    assert rows(db_path, "SELECT alert_id, event, alert_row FROM events ORDER BY rowid") == [
        ("zz-first", "raised", 1),
        ("aa-second", "raised", 2),
        ("zz-first", "cleared", 1),
    ]
    (stored,) = [s for s in await journal.recent_alerts() if s.alert.id == "zz-first"]
    assert [e[1] for e in stored.events] == ["raised", "cleared"]


# The journal as alertgw wrote it before schema version 1 (events found by alert id).
_SCHEMA_0 = """
CREATE TABLE signals (
    rowid INTEGER PRIMARY KEY,
    id TEXT NOT NULL, source TEXT NOT NULL, device TEXT NOT NULL, room TEXT NOT NULL,
    kind TEXT NOT NULL, state TEXT NOT NULL, ts REAL NOT NULL, received_at REAL NOT NULL,
    attrs TEXT NOT NULL
);
CREATE INDEX signals_id ON signals (id);
CREATE INDEX signals_received ON signals (received_at);
CREATE TABLE alerts (
    id TEXT PRIMARY KEY, key TEXT NOT NULL, kind TEXT NOT NULL, room TEXT NOT NULL,
    zone TEXT NOT NULL, device TEXT NOT NULL, priority INTEGER NOT NULL, critical INTEGER NOT NULL,
    state TEXT NOT NULL, raised_at REAL NOT NULL, signal_id TEXT NOT NULL, text TEXT NOT NULL,
    count INTEGER NOT NULL, accepted_by TEXT, updated_at REAL NOT NULL,
    rule TEXT NOT NULL DEFAULT '', step INTEGER NOT NULL DEFAULT 0, due REAL, grp TEXT
);
CREATE INDEX alerts_state ON alerts (state);
CREATE INDEX alerts_updated ON alerts (updated_at);
CREATE TABLE events (
    rowid INTEGER PRIMARY KEY, alert_id TEXT NOT NULL, ts REAL NOT NULL, event TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX events_alert ON events (alert_id);
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT, alert_id TEXT NOT NULL, handset TEXT NOT NULL,
    seq INTEGER NOT NULL, action TEXT NOT NULL, payload TEXT NOT NULL, state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL, updated_at REAL NOT NULL
);
CREATE INDEX outbox_state ON outbox (state);
CREATE TABLE levels (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO alerts VALUES ('old-a', 'k', 'fall', '101', 'east', 'fall-101', 3, 1, 'active',
    1700000000.0, 'sig-old-a', 'FALL room 101', 1, NULL, 1700000000.0, '', 0, NULL, NULL);
INSERT INTO alerts VALUES ('old-b', 'k2', 'fall', '102', 'east', 'fall-102', 3, 1, 'cleared',
    1700000000.0, 'sig-old-b', 'FALL room 102', 1, NULL, 1700000000.0, '', 0, NULL, NULL);
INSERT INTO events (alert_id, ts, event, detail) VALUES ('old-a', 1700000000.0, 'raised', '');
INSERT INTO events (alert_id, ts, event, detail) VALUES ('old-b', 1700000000.0, 'raised', '');
INSERT INTO events (alert_id, ts, event, detail) VALUES ('old-a', 1700000001.0, 'delivered', 'n1');
INSERT INTO events (alert_id, ts, event, detail) VALUES ('old-b', 1700000002.0, 'cleared', '');
"""


async def test_a_journal_from_before_version_1_is_migrated_in_place(db_path: Path) -> None:
    """Old events get their alert's rowid, the hashed-id index goes, history still reads."""
    db_path.parent.mkdir(parents=True)
    with contextlib.closing(sqlite3.connect(db_path)) as db:
        db.executescript(_SCHEMA_0)
    j = Journal(db_path)
    await j.open()
    try:
        assert rows(db_path, "PRAGMA user_version") == [(1,)]
        indexes = {r[0] for r in rows(db_path, "SELECT name FROM sqlite_master WHERE type='index'")}
        assert "events_alert_row" in indexes
        assert "events_alert" not in indexes
        assert rows(db_path, "SELECT alert_id, alert_row FROM events ORDER BY rowid") == [
            ("old-a", 1),
            ("old-b", 2),
            ("old-a", 1),
            ("old-b", 2),
        ]
        (active,) = await j.active_alerts()
        assert active.alert.id == "old-a"
        assert [e[1] for e in active.events] == ["raised", "delivered"]
        # New alerts continue after the old rows, and old finished history still prunes.
        await j.commit_batch([], [Transition(alert("new"), "raised", T0 + 5)], [])
        assert rows(db_path, "SELECT alert_row FROM events WHERE alert_id = 'new'") == [(3,)]
        assert await j.prune(T0 + 1) == 3  # old-b's two events and its alert
        assert rows(db_path, "SELECT id FROM alerts ORDER BY rowid") == [("old-a",), ("new",)]
    finally:
        await j.close()
    reopened = Journal(db_path)  # a second open finds version 1 and changes nothing
    await reopened.open()
    await reopened.close()
    assert rows(db_path, "SELECT COUNT(*) FROM events") == [(3,)]


# What each journal query must find through an index, whatever the journal holds.
_PLANS = {
    "active_alerts": (
        f"SELECT * FROM alerts WHERE state IN {_OPEN} ORDER BY raised_at",
        (),
        "alerts_open",
    ),
    "finished_in_digest": (
        f"SELECT * FROM alerts WHERE updated_at >= ? AND state NOT IN {_OPEN}",
        (T0,),
        "alerts_finished",
    ),
    "pending_deliveries": (
        "SELECT * FROM outbox WHERE state = 'queued' ORDER BY id",
        (),
        "outbox_queued",
    ),
    "prune, open alerts' signals": (
        f"SELECT signal_id FROM alerts WHERE state IN {_OPEN}",
        (),
        "alerts_open",
    ),
    "prune, finished alerts": (
        f"SELECT rowid FROM alerts WHERE updated_at < ? AND state NOT IN {_OPEN}",
        (T0,),
        "alerts_finished",
    ),
}


def _index_used(path: Path, sql: str, args: tuple[object, ...]) -> str:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return " ".join(r[3] for r in db.execute(f"EXPLAIN QUERY PLAN {sql}", args))


async def test_the_partial_indexes_serve_the_queries_that_need_them(
    journal: Journal, db_path: Path
) -> None:
    """Open alerts, finished alerts and queued messages are found through their indexes.

    The indexes hold only those rows, so the queries must repeat the indexes' WHERE terms
    literally: a bound parameter there would make SQLite scan the whole table.
    """
    for what, (sql, args, index) in _PLANS.items():
        assert f"USING INDEX {index}" in _index_used(db_path, sql, args), what


async def test_the_indexes_hold_only_open_alerts_and_queued_messages(
    journal: Journal, db_path: Path
) -> None:
    """A finished alert leaves alerts_open for alerts_finished; a sent message leaves the queue."""
    await journal.commit_batch(
        [], [Transition(alert("a1"), "raised", T0), Transition(alert("a2"), "raised", T0)], []
    )
    (d1, d2) = await journal.commit_batch([], [], [ring("a1", "n1", 1), ring("a2", "n1", 1)])
    assert d1.id is not None
    await journal.commit_batch(
        [],
        [Transition(alert("a1", AlertState.CLEARED), "cleared", T0 + 1)],
        [],
        sent=[(d1.id, DeliveryState.SENT)],
    )
    with contextlib.closing(sqlite3.connect(db_path)) as db:
        assert db.execute(
            f"SELECT COUNT(*) FROM alerts INDEXED BY alerts_open WHERE state IN {_OPEN}"
        ).fetchall() == [(1,)]
        assert db.execute(
            "SELECT id FROM alerts INDEXED BY alerts_finished"
            f" WHERE updated_at > 0 AND state NOT IN {_OPEN}"
        ).fetchall() == [("a1",)]
        assert db.execute(
            "SELECT id FROM outbox INDEXED BY outbox_queued WHERE state = 'queued'"
        ).fetchall() == [(d2.id,)]
    assert [s.alert.id for s in await journal.active_alerts()] == ["a2"]
    assert [d.id for d in await journal.pending_deliveries()] == [d2.id]


async def test_a_journal_with_the_full_indexes_gets_the_partial_ones(db_path: Path) -> None:
    """The full state and time indexes of earlier versions go; the data reads the same.

    The schema version stays: an older alertgw started on the file again recreates its
    own indexes (CREATE INDEX IF NOT EXISTS), and this one replaces them again.
    """
    db_path.parent.mkdir(parents=True)
    with contextlib.closing(sqlite3.connect(db_path)) as db:
        db.executescript(_SCHEMA_0)
        db.execute(
            "INSERT INTO outbox (alert_id, handset, seq, action, payload, state,"
            " created_at, updated_at) VALUES ('old-a', 'n1', 1, 'ring', '{}', 'queued',"
            " 1700000000.0, 1700000000.0)"
        )
        db.commit()
    for _ in range(2):  # the second open finds everything in place
        j = Journal(db_path)
        await j.open()
        try:
            indexes = {
                r[0] for r in rows(db_path, "SELECT name FROM sqlite_master WHERE type='index'")
            }
            assert {"alerts_open", "alerts_finished", "outbox_queued"} <= indexes
            assert not indexes & {"alerts_state", "alerts_updated", "outbox_state"}
            assert [s.alert.id for s in await j.active_alerts()] == ["old-a"]
            assert [d.alert_id for d in await j.pending_deliveries()] == ["old-a"]
            for what, (sql, args, index) in _PLANS.items():
                assert f"USING INDEX {index}" in _index_used(db_path, sql, args), what
        finally:
            await j.close()


async def test_an_index_of_another_definition_is_rebuilt(db_path: Path) -> None:
    """A partial index written for other alert states (an older alertgw's) is made anew."""
    j = Journal(db_path)
    await j.open()
    await j.close()
    with contextlib.closing(sqlite3.connect(db_path)) as db:
        db.executescript(
            "DROP INDEX alerts_open;"
            "CREATE INDEX alerts_open ON alerts (raised_at) WHERE state IN ('active');"
        )
    j = Journal(db_path)
    await j.open()
    await j.close()
    (sql,) = rows(db_path, "SELECT sql FROM sqlite_master WHERE name = 'alerts_open'")
    assert sql == (f"CREATE INDEX alerts_open ON alerts (raised_at) WHERE state IN {_OPEN}",)


async def test_a_journal_from_a_newer_alertgw_is_refused(db_path: Path) -> None:
    """Downgrading alertgw must not write into a schema it does not know."""
    db_path.parent.mkdir(parents=True)
    with contextlib.closing(sqlite3.connect(db_path)) as db:
        db.executescript(_SCHEMA_0)
        db.execute("PRAGMA user_version = 99")
    j = Journal(db_path)
    with pytest.raises(JournalError, match="schema version 99 is newer"):
        await j.open()
    assert rows(db_path, "PRAGMA user_version") == [(99,)]


async def test_an_events_reason_is_kept_for_the_audit(journal: Journal) -> None:
    """A nurse's reject reason and an escalation's cause reach `history`, not only the logs."""
    a = alert("a1")
    await journal.commit_batch(
        [],
        [
            Transition(a, "raised", T0, "s1"),
            Transition(a, "rejected", T0 + 5, "night1", "busy"),
            Transition(a, "escalated", T0 + 5, "to step 1", "rejected"),
        ],
        [],
    )
    (stored,) = await journal.recent_alerts(1)
    assert [(event, detail) for _, event, detail in stored.events] == [
        ("raised", "s1"),
        ("rejected", "night1 (busy)"),
        ("escalated", "to step 1 (rejected)"),
    ]


async def test_prune_clock_moves_at_most_a_step_past_the_last_prune(
    journal: Journal, db_path: Path
) -> None:
    """A clock ten years ahead moves the prune on by one step a prune, never at once."""
    year, step = 365 * 86400.0, 7200.0
    assert await journal.prune_clock(T0 + 10 * year, step=step) is None  # empty: no time line
    await journal.prune(T0 + 10 * year - 90 * 86400, clock=None)  # remembers nothing
    await journal.commit_batch([signal("s1", received_at=T0)], [], [])
    first = await journal.prune_clock(T0 + 10 * year, step=step)
    assert first == T0 + step  # the first prune starts from the newest row
    await journal.prune(first - 90 * 86400, clock=first)
    assert await journal.prune_clock(T0 + 10 * year, step=step) == T0 + 2 * step
    # A clock behind prunes by itself, and does not move the remembered clock back.
    assert await journal.prune_clock(T0 - year, step=step) == T0 - year
    await journal.prune(T0 - year - 90 * 86400, clock=T0 - year)
    assert await journal.prune_clock(T0 + 10 * year, step=step) == T0 + 2 * step
    assert rows(db_path, "SELECT id FROM signals") == [("s1",)]


def snapshot(directory: Path) -> dict[str, tuple[bytes, int]]:
    """Every file in `directory` with its bytes and modification time."""
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in directory.iterdir()}


async def test_a_reader_sees_what_a_running_writer_committed(
    journal: Journal, db_path: Path
) -> None:
    """A read-only open beside the daemon's WAL connection reads its latest commits."""
    await journal.commit_batch([], [Transition(alert("a1"), "raised", T0)], [])
    reader = await Journal.open_readonly(db_path)
    try:
        await journal.commit_batch(
            [], [Transition(alert("a2", raised_at=T0 + 1), "raised", T0)], []
        )
        assert [s.alert.id for s in await reader.recent_alerts()] == ["a2", "a1"]
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            await reader.db.execute("DELETE FROM alerts")
    finally:
        await reader.close()
    assert rows(db_path, "SELECT COUNT(*) FROM alerts") == [(2,)]


async def test_a_reader_of_a_closed_journal_writes_and_creates_nothing(db_path: Path) -> None:
    """With no daemon running, reading leaves the directory byte for byte as it was."""
    writer = Journal(db_path)
    await writer.open()
    await writer.commit_batch([], [Transition(alert("a1"), "raised", T0)], [])
    await writer.close()
    before = snapshot(db_path.parent)
    assert set(before) == {"journal.db"}  # the last close removed the -wal and -shm
    reader = await Journal.open_readonly(db_path)
    try:
        assert [s.alert.id for s in await reader.recent_alerts()] == ["a1"]
    finally:
        await reader.close()
    assert snapshot(db_path.parent) == before


async def test_a_reader_finds_commits_a_killed_daemon_left_in_its_wal(
    journal: Journal, db_path: Path, tmp_path: Path
) -> None:
    """After a kill -9 the newest commits are only in the -wal: the reader must not skip it."""
    await journal.commit_batch([], [Transition(alert("a1"), "raised", T0)], [])
    crashed = tmp_path / "crashed"  # the files as a killed daemon leaves them
    crashed.mkdir()
    for name in ("journal.db", "journal.db-wal"):
        shutil.copyfile(db_path.parent / name, crashed / name)
    reader = await Journal.open_readonly(crashed / "journal.db")
    try:
        assert [s.alert.id for s in await reader.recent_alerts()] == ["a1"]
    finally:
        await reader.close()


async def test_a_reader_refuses_a_journal_the_daemon_has_not_migrated(db_path: Path) -> None:
    """Only the daemon migrates: a reader names the old version and leaves the file as it is."""
    db_path.parent.mkdir(parents=True)
    with contextlib.closing(sqlite3.connect(db_path)) as db:
        db.executescript(_SCHEMA_0)
    before = snapshot(db_path.parent)
    with pytest.raises(JournalError, match=r"schema version 0 is older.*start the daemon once"):
        await Journal.open_readonly(db_path)
    assert snapshot(db_path.parent) == before


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "cannot open the journal: unable to open database file"),
        (b"not sqlite at all, but long enough to have a header" * 4, "file is not a database"),
        (b"", "no alertgw journal in this file"),
    ],
)
async def test_a_reader_refuses_what_is_not_a_journal(
    db_path: Path, content: bytes | None, problem: str
) -> None:
    """A missing file, another kind of file or an empty one is a JournalError, never created."""
    db_path.parent.mkdir(parents=True)
    if content is not None:
        db_path.write_bytes(content)
    with pytest.raises(JournalError, match=problem):
        await Journal.open_readonly(db_path)
    assert [p.name for p in db_path.parent.iterdir()] == ([] if content is None else ["journal.db"])


async def test_ids_handed_out_before_the_file_opened_move_past_its_rows(db_path: Path) -> None:
    """A start on a full disk numbers messages from 1; the file, once open, has rows 1..3.

    The early ids are written past the file's own, their marks follow them, and ids
    handed out after the open continue beyond.
    """
    earlier = Journal(db_path)
    await earlier.open()
    await earlier.commit_batch([], [], [ring("old", "night1", k) for k in (1, 2, 3)])
    await earlier.close()
    journal = Journal(db_path)  # not open: the disk was full at start
    early = journal.number([ring("a1", "night1", 1), ring("a1", "night2", 1)])
    assert [d.id for d in early] == [1, 2]
    await journal.open()
    late = journal.number([ring("a2", "night1", 1)])
    assert late[0].id == 6
    try:
        await journal.commit_batch([], [], [*early, *late], sent=[(2, DeliveryState.SENT)])
        await journal.commit_batch([], [], [], sent=[(1, DeliveryState.DELIVERED)])
    finally:
        await journal.close()
    assert rows(db_path, "SELECT id, alert_id, handset, state FROM outbox ORDER BY id") == [
        (1, "old", "night1", "queued"),
        (2, "old", "night1", "queued"),
        (3, "old", "night1", "queued"),
        (4, "a1", "night1", "delivered"),
        (5, "a1", "night2", "sent"),
        (6, "a2", "night1", "queued"),
    ]


async def test_numbering_after_a_read_only_look_needs_no_move(db_path: Path) -> None:
    """Ids numbered after the newest row a read-only restore saw are written as they are."""
    earlier = Journal(db_path)
    await earlier.open()
    await earlier.commit_batch([], [], [ring("old", "night1", 1)])
    await earlier.close()
    reader = await Journal.open_readonly(db_path)
    try:
        last = await reader.last_outbox_id()
    finally:
        await reader.close()
    journal = Journal(db_path)
    journal.resume_numbering(last)
    early = journal.number([ring("a1", "night1", 1)])
    await journal.open()
    try:
        await journal.commit_batch([], [], early)
        assert journal.number([ring("a1", "night1", 2)])[0].id == 3
    finally:
        await journal.close()
    assert rows(db_path, "SELECT id, alert_id FROM outbox ORDER BY id") == [(1, "old"), (2, "a1")]
