"""The journal and outbox: every decision and delivery, in SQLite (WAL)."""

from __future__ import annotations

import asyncio
import dataclasses
import math
import sqlite3
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Self, TypeVar

import aiosqlite
import orjson

from gateway.engine import Transition
from gateway.errors import JournalError
from gateway.model import Alert, AlertState, Delivery, DeliveryState, Priority, Signal, SignalState

_T = TypeVar("_T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS signals (
    rowid INTEGER PRIMARY KEY,
    id TEXT NOT NULL, source TEXT NOT NULL, device TEXT NOT NULL, room TEXT NOT NULL,
    kind TEXT NOT NULL, state TEXT NOT NULL, ts REAL NOT NULL, received_at REAL NOT NULL,
    attrs TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS signals_id ON signals (id);
CREATE INDEX IF NOT EXISTS signals_received ON signals (received_at);
CREATE TABLE IF NOT EXISTS alerts (
    id TEXT PRIMARY KEY, key TEXT NOT NULL, kind TEXT NOT NULL, room TEXT NOT NULL,
    zone TEXT NOT NULL, device TEXT NOT NULL, priority INTEGER NOT NULL, critical INTEGER NOT NULL,
    state TEXT NOT NULL, raised_at REAL NOT NULL, signal_id TEXT NOT NULL, text TEXT NOT NULL,
    count INTEGER NOT NULL, accepted_by TEXT, updated_at REAL NOT NULL,
    rule TEXT NOT NULL DEFAULT '', step INTEGER NOT NULL DEFAULT 0, due REAL, grp TEXT
);
CREATE TABLE IF NOT EXISTS events (
    rowid INTEGER PRIMARY KEY, alert_id TEXT NOT NULL, ts REAL NOT NULL, event TEXT NOT NULL,
    detail TEXT NOT NULL, alert_row INTEGER
);
CREATE INDEX IF NOT EXISTS events_alert_row ON events (alert_row);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY, alert_id TEXT NOT NULL, handset TEXT NOT NULL,
    seq INTEGER NOT NULL, action TEXT NOT NULL, payload TEXT NOT NULL, state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL, updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS levels (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS responses (
    rowid INTEGER PRIMARY KEY, id TEXT NOT NULL, handset TEXT NOT NULL, alert_id TEXT NOT NULL,
    response TEXT NOT NULL, received_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS responses_id ON responses (id);
"""

_ACTIVE_STATES = tuple(s.value for s in AlertState if not s.terminal)
# The states in SQL, as literals: a partial index serves a query only when the query
# repeats the index's WHERE term, and SQLite cannot see through a bound parameter.
_OPEN = "(" + ", ".join(f"'{s}'" for s in _ACTIVE_STATES) + ")"

# The outbox numbers its rows itself (Journal.number, after the file's MAX(id)), so
# AUTOINCREMENT, which journals before 2026-11-24 have, bought nothing and cost a
# sqlite_sequence read and write per row and a page per commit. Those files keep it:
# dropping it means copying the table.

# Partial indexes: each holds only the rows its queries look for. The full indexes on
# alerts (state), alerts (updated_at) and outbox (state) they replace took an entry per row
# ever written and a page or two per commit each; these are small (open alerts, queued
# messages) or only appended to (an alert enters alerts_finished once, when it finishes).
# Checked at every open against sqlite_master, so a changed definition (a new alert
# state) is rebuilt, and an older alertgw's full indexes are dropped (it recreates them
# if it is started again: the schema version is unchanged).
_INDEXES = {
    # active_alerts, and prune's "still open" subqueries
    "alerts_open": f"CREATE INDEX alerts_open ON alerts (raised_at) WHERE state IN {_OPEN}",
    # finished_in_digest and prune
    "alerts_finished": (
        f"CREATE INDEX alerts_finished ON alerts (updated_at) WHERE state NOT IN {_OPEN}"
    ),
    # pending_deliveries
    "outbox_queued": "CREATE INDEX outbox_queued ON outbox (id) WHERE state = 'queued'",
}
_REPLACED_INDEXES = ("alerts_state", "alerts_updated", "outbox_state")

# Version 1 finds an alert's events by the alert's rowid, not its id. Alert ids are
# hashes, so an index on them took a random page per event (a third of the pages a
# commit wrote); alert rowids grow with time, so the index on them appends.
SCHEMA_VERSION = 1
_MIGRATE_0_TO_1 = """
ALTER TABLE events ADD COLUMN alert_row INTEGER;
UPDATE events SET alert_row = (SELECT rowid FROM alerts WHERE alerts.id = events.alert_id);
CREATE INDEX events_alert_row ON events (alert_row);
DROP INDEX IF EXISTS events_alert;
"""

# Levels-table key of the wall time the last prune went by, and how far one prune may move
# it on when the clock is not known good (pruning runs hourly).
PRUNE_CLOCK_KEY = "journal:prune_clock"
PRUNE_STEP = 2 * 3600.0


# A handset answer as journaled: (id, handset, alert id, response, received at).
StoredResponse = tuple[str, str, str, str, float]


@dataclasses.dataclass(frozen=True, slots=True)
class StoredAlert:
    """An alert row with its timeline, for `alertgw history` and restarts."""

    alert: Alert
    updated_at: float
    events: tuple[tuple[float, str, str], ...]
    handsets: tuple[str, ...]
    last_seq: int


class Journal:
    """Async SQLite journal; one writer connection in WAL mode."""

    def __init__(self, path: str | Path, *, synchronous: str = "full") -> None:
        self.path = Path(path)
        self._sync = synchronous.upper()
        self._db: aiosqlite.Connection | None = None
        # A write spans several awaits; without the lock a concurrent commit could make half
        # a batch durable, and a redelivery of its signals would then be taken for a duplicate.
        self._lock = asyncio.Lock()
        self._next_outbox_id = 1  # the only writer numbers outbox rows, so it can do it early
        # Outbox ids handed out before the file could be opened (a start on a full disk)
        # are moved past the file's own when it opens at last: ids in [_shift_from,
        # _shift_end) are written as id + _shift. _known_max is the file's newest id as
        # far as this process knows.
        self._known_max = 0
        self.opened_last_id = 0  # the file's newest outbox id when it opened
        self._shift = 0
        self._shift_from = self._shift_end = 0
        # Rows this version cannot read (bit rot, a hand edit, a newer alertgw's values):
        # left out of what is returned, named here so the caller says so loudly.
        self.unreadable: list[str] = []

    def _probe(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        sqlite3.connect(self.path).close()

    async def open(self) -> None:
        """Open (creating if needed) the database."""
        try:
            # Probe first: a failed aiosqlite.connect leaves its worker thread to report to
            # a loop that `run` has closed by then (a traceback after the one clear line).
            await asyncio.to_thread(self._probe)
            db = await aiosqlite.connect(self.path)
        except (OSError, sqlite3.Error) as exc:
            # A directory, a read-only place, no permission: one line, not a traceback.
            raise JournalError(f"cannot open the journal: {exc}") from exc
        try:
            # Incremental auto-vacuum (only takes effect on a new file) lets pruning give
            # pages back.
            await db.execute("PRAGMA auto_vacuum=INCREMENTAL")
            # Before WAL mode, which rewrites the header: a newer alertgw's file stays as it was.
            await _refuse_newer(db)
            await db.execute("PRAGMA journal_mode=WAL")
            await db.execute(f"PRAGMA synchronous={self._sync}")
            await db.execute("PRAGMA busy_timeout=5000")
            await self._migrate(db)
            await db.executescript(SCHEMA)
            await _ensure_indexes(db)
            await db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            await db.commit()
            rows = await db.execute_fetchall("SELECT COALESCE(MAX(id), 0) FROM outbox")
        except BaseException as exc:
            # Closed, or its worker thread (not a daemon thread) keeps the process alive
            # after `run` returns: `alertgw run` printed its one line and then hung for
            # good, deaf to SIGTERM, and systemd waited out its start timeout each time.
            await db.close()
            if isinstance(exc, sqlite3.Error):
                # Not a database, a read-only mount, a full disk: one line, as above.
                raise JournalError(f"cannot open the journal: {exc}") from exc
            raise
        self.opened_last_id = int(next(iter(rows))[0])
        self._number_after(self.opened_last_id)
        self._db = db

    @property
    def is_open(self) -> bool:
        """Whether the writer connection is open."""
        return self._db is not None

    def resume_numbering(self, last_id: int) -> None:
        """Number outbox rows after `last_id`, the newest id a read-only look found."""
        if self._next_outbox_id == 1:
            self._known_max, self._next_outbox_id = last_id, last_id + 1

    def _number_after(self, last_id: int) -> None:
        handed = self._next_outbox_id - 1 - self._known_max
        if handed <= 0:
            self._next_outbox_id = last_id + 1
        elif last_id > self._known_max:
            # Ids were handed out (and sent with handset messages' rows still to write)
            # while the file was out of reach, and it holds newer ones than we knew.
            self._shift = last_id - self._known_max
            self._shift_from, self._shift_end = self._known_max + 1, self._next_outbox_id
            self._next_outbox_id += self._shift
        self._known_max = self._next_outbox_id - 1

    def _row_id(self, outbox_id: int) -> int:
        if self._shift_from <= outbox_id < self._shift_end:
            return outbox_id + self._shift
        return outbox_id

    async def last_outbox_id(self) -> int:
        """The newest outbox id in the file (0: none)."""
        rows = await self.db.execute_fetchall("SELECT COALESCE(MAX(id), 0) FROM outbox")
        return int(next(iter(rows))[0])

    @classmethod
    async def open_readonly(cls, path: str | Path) -> Self:
        """Open an existing journal to read only: no PRAGMA, no migration, no file written.

        For `alertgw history`, which may run as root beside a daemon running as its own
        user. Raises JournalError for a file that is missing, not a journal, or of a schema
        other than this alertgw's (only the daemon migrates).
        """
        journal = cls(path)
        uri = _readonly_uri(journal.path)
        try:
            # Probe first, as `open` does: a failed aiosqlite.connect outlives the loop.
            await asyncio.to_thread(lambda: sqlite3.connect(uri, uri=True).close())
            db = await aiosqlite.connect(uri, uri=True)
        except (OSError, sqlite3.Error) as exc:
            raise JournalError(f"cannot open the journal: {exc}") from exc
        try:
            await _check_readable(db)
        except BaseException:
            await db.close()
            raise
        journal._db = db
        return journal

    @staticmethod
    async def _migrate(db: aiosqlite.Connection) -> None:
        """Bring a journal written by an older alertgw up to SCHEMA_VERSION."""
        rows = await db.execute_fetchall("PRAGMA user_version")
        version = int(next(iter(rows))[0])
        tables = await db.execute_fetchall(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'events'"
        )
        if not tables:
            return  # a new file: SCHEMA creates the current shape
        if version > SCHEMA_VERSION:
            raise _newer_schema(version)
        if version == 0:
            # One transaction: a crash half way leaves version 0, and the next start redoes it.
            await db.executescript(f"BEGIN;{_MIGRATE_0_TO_1}PRAGMA user_version=1;COMMIT;")

    async def close(self) -> None:
        """Close the database; idempotent."""
        if self._db is not None:
            db, self._db = self._db, None
            await db.close()

    @property
    def db(self) -> aiosqlite.Connection:
        """The open connection."""
        if self._db is None:
            raise RuntimeError("journal is not open")
        return self._db

    def number(self, deliveries: Sequence[Delivery]) -> list[Delivery]:
        """Give deliveries their outbox ids now, before the batch that stores them commits."""
        first = self._next_outbox_id
        self._next_outbox_id += len(deliveries)
        return [d.numbered(first + i) for i, d in enumerate(deliveries)]

    async def commit_batch(
        self,
        signals: Sequence[Signal],
        transitions: Sequence[Transition],
        deliveries: Sequence[Delivery],
        levels: Mapping[str, Any] | None = None,
        sent: Sequence[tuple[int, DeliveryState]] = (),
        *,
        responses: Sequence[StoredResponse] = (),
        cancel_queued_up_to: int = 0,
    ) -> list[Delivery]:
        """Write one batch in one transaction; return deliveries with their outbox ids.

        Deliveries without an id are numbered here (see `number`); `sent` folds
        confirmations of earlier deliveries into the same transaction. `responses` are
        the handset answers the batch acted on, by id, so a redelivery is known again.
        `cancel_queued_up_to`: mark the file's queued rows up to this id cancelled, for a
        file opened late whose rows the batch sends afresh or as copies.
        """
        numbered = [d for d in deliveries if d.id is not None]
        if len(numbered) != len(deliveries):
            deliveries = self.number(deliveries)
        rows = _batch_rows(signals, transitions, levels, time.time())
        if sent and deliveries:
            # At care-home rates a message's PUBACK comes back before its batch commits:
            # insert its row as sent instead of inserting it and then updating it.
            rows.marks = _fold_marks(deliveries, sent)
            sent = [(row, state) for row, state in sent if row not in rows.marks]
        rows.responses = list(responses)
        rows.cancel_up_to = cancel_queued_up_to
        async with self._lock:
            await self._run(self._write, rows, deliveries, sent)
        return list(deliveries)

    async def _run(self, fn: Callable[..., _T], *args: Any) -> _T:  # noqa: ANN401
        # aiosqlite's worker thread costs one round trip per call; a batch is one transaction,
        # so it runs as one function there instead of a dozen awaited statements.
        return await self.db._execute(fn, *args)  # type: ignore[no-untyped-call,no-any-return]  # noqa: SLF001

    def _write(
        self,
        rows: _BatchRows,
        deliveries: Sequence[Delivery],
        sent: Sequence[tuple[int, DeliveryState]],
    ) -> None:
        """Run on the database thread: one transaction, rolled back whole on any error."""
        conn: sqlite3.Connection = self.db._conn  # noqa: SLF001 - we are on its own thread
        now = rows.now or time.time()
        row_id = self._row_id
        try:
            if rows.signals:
                conn.executemany(_INSERT_SIGNAL, rows.signals)
            if rows.alerts:
                conn.executemany(_UPSERT_ALERT, rows.alerts)
                conn.executemany(_INSERT_EVENT, rows.events)
            if rows.cancel_up_to:
                # Before the batch's own rows, which all have larger ids anyway.
                conn.execute(
                    "UPDATE outbox SET state=?, updated_at=? WHERE state='queued' AND id<=?",
                    (DeliveryState.CANCELLED.value, now, rows.cancel_up_to),
                )
            if deliveries:
                marks = rows.marks
                conn.executemany(
                    _INSERT_OUTBOX,
                    [
                        (
                            row_id(d.id) if d.id is not None else None,
                            d.alert_id,
                            d.handset,
                            d.seq,
                            d.action,
                            _dumps(d.payload),
                            *(marks.get(d.id) or (d.state.value, 0)),
                            now,
                            now,
                        )
                        for d in deliveries
                    ],
                )
            if rows.levels:
                conn.executemany(_UPSERT_LEVEL, rows.levels)
            if rows.responses:
                conn.executemany(_INSERT_RESPONSE, rows.responses)
            if sent:
                conn.executemany(
                    "UPDATE outbox SET state=?, attempts=attempts+1, updated_at=? WHERE id=?",
                    [(state.value, now, row_id(row)) for row, state in sent],
                )
            conn.commit()
        except BaseException:
            # Otherwise the next commit would make this failed batch's first half durable.
            conn.rollback()
            raise

    async def pending_deliveries(self) -> list[Delivery]:
        """Outbox rows not yet confirmed by their channel, oldest first."""
        rows = await self.db.execute_fetchall(
            "SELECT id, alert_id, handset, seq, action, payload, state FROM outbox"
            " WHERE state = 'queued' ORDER BY id"
        )
        out = []
        for r in rows:
            try:
                out.append(_delivery_of(r))
            except (ValueError, TypeError) as exc:  # orjson's decode error is a ValueError
                # Bit rot or a hand edit: one bad message must not stop every start.
                self.unreadable.append(f"outbox row {r[0]}: {exc}")
        return out

    async def levels(self) -> dict[str, Any]:
        """Decoder levels saved by earlier runs."""
        rows = await self.db.execute_fetchall("SELECT key, value FROM levels")
        return {r[0]: orjson.loads(r[1]) for r in rows}

    async def seen_signal(self, signal_id: str, since: float) -> bool:
        """True when a signal with this id was journaled after `since`."""
        rows = await self.db.execute_fetchall(
            "SELECT 1 FROM signals WHERE id = ? AND received_at >= ? LIMIT 1", (signal_id, since)
        )
        return bool(rows)

    async def newest_input(self) -> float | None:
        """When the newest journaled signal or handset answer was received (None: none)."""
        rows = await self.db.execute_fetchall(
            "SELECT MAX(t) FROM (SELECT MAX(received_at) AS t FROM signals"
            " UNION ALL SELECT MAX(received_at) FROM responses)"
        )
        value = next(iter(rows))[0]
        return None if value is None else float(value)

    async def seen_response(self, response_id: str, since: float) -> bool:
        """True when a handset answer with this id was journaled after `since`."""
        rows = await self.db.execute_fetchall(
            "SELECT 1 FROM responses WHERE id = ? AND received_at >= ? LIMIT 1",
            (response_id, since),
        )
        return bool(rows)

    async def signal_sources(self, signal_ids: Sequence[str]) -> dict[str, str]:
        """The source of each journaled signal among `signal_ids` (pruned ones are missing)."""
        out: dict[str, str] = {}
        for i in range(0, len(signal_ids), 500):  # SQLite's bound-parameter limit
            chunk = signal_ids[i : i + 500]
            marks = ",".join("?" * len(chunk))
            rows = await self.db.execute_fetchall(
                f"SELECT id, source FROM signals WHERE id IN ({marks})",  # noqa: S608
                tuple(chunk),
            )
            out.update({str(r[0]): str(r[1]) for r in rows})
        return out

    async def active_alerts(self) -> list[StoredAlert]:
        """Alerts that were not finished when the daemon last stopped."""
        return await self._alerts(f"WHERE state IN {_OPEN} ORDER BY raised_at", ())

    async def finished_in_digest(self, since: float) -> list[StoredAlert]:
        """Finished alerts updated since `since` whose timeline queued them for a digest."""
        return await self._alerts(
            # Only our own state literals are formatted in; every value is bound.
            f"WHERE updated_at >= ? AND state NOT IN {_OPEN} AND EXISTS (SELECT 1 FROM events"  # noqa: S608
            " WHERE alert_row = alerts.rowid AND event = 'digest') ORDER BY raised_at",
            (since,),
        )

    async def recent_alerts(self, limit: int = 20) -> list[StoredAlert]:
        """The most recently raised alerts with their timelines."""
        return await self._alerts("ORDER BY raised_at DESC LIMIT ?", (limit,))

    async def _alerts(self, where: str, args: Sequence[Any]) -> list[StoredAlert]:
        # The clause is one of this module's constants; values are bound, never formatted.
        rows = await self.db.execute_fetchall(
            "SELECT id, key, kind, room, zone, device, priority, critical, state, raised_at,"  # noqa: S608
            " signal_id, text, count, accepted_by, updated_at, rule, step, due, grp, rowid"
            f" FROM alerts {where}",
            args,
        )
        out: list[StoredAlert] = []
        for r in rows:
            try:
                alert = _alert_of(r)
            except (ValueError, TypeError) as exc:
                self.unreadable.append(f"alert {r[0]!r}: {exc}")
                continue
            events = await self.db.execute_fetchall(
                "SELECT ts, event, detail FROM events WHERE alert_row = ? ORDER BY rowid", (r[19],)
            )
            sent = await self.db.execute_fetchall(
                "SELECT handset, MAX(seq) FROM outbox WHERE alert_id = ? GROUP BY handset"
                " ORDER BY MIN(id)",
                (r[0],),
            )
            timeline = []
            for ts, event, detail in events:
                if _is_time(ts) and isinstance(event, str) and isinstance(detail, str):
                    timeline.append((float(ts), event, detail))
                else:
                    self.unreadable.append(f"alert {alert.id}: event {event!r} at {ts!r}")
            out.append(
                StoredAlert(
                    alert=alert,
                    updated_at=r[14] if _is_time(r[14]) else alert.raised_at,
                    events=tuple(timeline),
                    handsets=tuple(s[0] for s in sent),
                    last_seq=max((s[1] for s in sent), default=0),
                )
            )
        return out

    async def prune_clock(self, now: float, *, step: float = PRUNE_STEP) -> float | None:
        """The wall time to prune by when the clock is not known good: at most `step` on.

        A wall clock set far ahead (an RTC that lost its battery, a wrong manual setting)
        must not make one hourly prune delete the whole audit trail. Without NTP there is
        no telling that from a long power-off, so the prune's clock moves at most `step`
        past the last prune's: a clock years ahead eats into the kept history by an hour
        an hour, loudly, and a journal back from a long power-off catches up as slowly.
        A journal pruned for the first time starts from its newest row; an empty one has
        no time line to go by (None), and nothing a prune could take.
        """
        rows = list(
            await self.db.execute_fetchall(
                "SELECT value FROM levels WHERE key = ?", (PRUNE_CLOCK_KEY,)
            )
        )
        if not rows:
            rows = list(
                await self.db.execute_fetchall(
                    "SELECT MAX(t) FROM (SELECT MAX(received_at) AS t FROM signals"
                    " UNION ALL SELECT MAX(updated_at) FROM alerts)"
                )
            )
        if not rows or rows[0][0] is None:
            return None
        return min(now, float(rows[0][0]) + step)

    async def prune(self, before: float, *, clock: float | None = None, chunk: int = 2000) -> int:
        """Delete finished history older than `before`; return rows removed.

        Deletes in small transactions and lets go of the write lock between them, so a
        large backlog never holds up the router's commits for long. `clock`, the wall
        time `before` was reckoned from, is remembered for `prune_clock`.
        """
        # Each statement deletes at most `chunk` rows; values are bound, clauses are ours
        # (the state literals must be literals, for the partial indexes).
        statements = [
            (
                # The signal of an alert still open says its source, which rules match on
                # when the alert is restored and muted or raised again.
                "DELETE FROM signals WHERE rowid IN (SELECT rowid FROM signals"  # noqa: S608
                " WHERE received_at < ? AND id NOT IN"
                f" (SELECT signal_id FROM alerts WHERE state IN {_OPEN}) LIMIT ?)",
                (before, chunk),
            ),
            (
                "DELETE FROM responses WHERE rowid IN (SELECT rowid FROM responses"
                " WHERE received_at < ? LIMIT ?)",
                (before, chunk),
            ),
            (
                "DELETE FROM events WHERE rowid IN (SELECT rowid FROM events WHERE alert_row IN"  # noqa: S608
                f" (SELECT rowid FROM alerts WHERE updated_at < ? AND state NOT IN {_OPEN})"
                " LIMIT ?)",
                (before, chunk),
            ),
            (
                # Rows of a still-active alert say which handsets rang: a restart needs them.
                "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE updated_at < ?"  # noqa: S608
                " AND state != 'queued' AND alert_id NOT IN"
                f" (SELECT id FROM alerts WHERE state IN {_OPEN}) LIMIT ?)",
                (before, chunk),
            ),
            (
                "DELETE FROM alerts WHERE rowid IN (SELECT a.rowid FROM alerts a"  # noqa: S608
                f" WHERE a.updated_at < ? AND a.state NOT IN {_OPEN} AND NOT EXISTS"
                " (SELECT 1 FROM events e WHERE e.alert_row = a.rowid) LIMIT ?)",
                (before, chunk),
            ),
        ]
        removed = 0
        for sql, args in statements:
            while True:
                async with self._lock:
                    cur = await self.db.execute(sql, args)
                    await self.db.commit()
                removed += max(cur.rowcount, 0)
                if cur.rowcount < chunk:
                    break
                await asyncio.sleep(0)  # let a waiting commit in
        async with self._lock:
            if clock is not None:
                await self.db.execute(
                    "INSERT INTO levels (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE"
                    " SET value = max(CAST(value AS REAL), CAST(excluded.value AS REAL))",
                    (PRUNE_CLOCK_KEY, _dumps(clock)),
                )
            await self.db.execute("PRAGMA incremental_vacuum(2000)")
            await self.db.commit()
        return removed


def _readonly_uri(path: Path) -> str:
    """A read-only SQLite URI for `path`: immutable when no connection has the file open."""
    uri = f"file://{urllib.parse.quote(str(path.absolute()))}?mode=ro"
    # A read-only connection to a WAL database creates the -wal and -shm files when they
    # are missing, and cannot remove them on close. A running daemon always has its -wal
    # (a kill -9 leaves it too, with commits the main file lacks), so without one the main
    # file holds every commit: read it as immutable and create nothing. A daemon starting
    # meanwhile writes to a new -wal; the main file changes only at a later checkpoint.
    # With a -wal, the reader may have to create the -shm (SQLite gives it the database
    # file's owner when run as root). A hot rollback journal is read the plain way too.
    beside = [path.with_name(path.name + suffix) for suffix in ("-wal", "-journal")]
    if not any(p.exists() for p in beside):
        uri += "&immutable=1"
    return uri


async def _check_readable(db: aiosqlite.Connection) -> None:
    """Raise JournalError unless `db` has this alertgw's schema, which a reader cannot migrate."""
    try:
        rows = await db.execute_fetchall("PRAGMA user_version")
        version = int(next(iter(rows))[0])
        tables = await db.execute_fetchall(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'events'"
        )
    except sqlite3.Error as exc:  # e.g. "file is not a database"
        raise JournalError(f"cannot read the journal: {exc}") from exc
    if version > SCHEMA_VERSION:
        raise _newer_schema(version)
    if not tables:
        raise JournalError("no alertgw journal in this file (is journal.path right?)")
    if version < SCHEMA_VERSION:
        raise JournalError(
            f"journal schema version {version} is older than this alertgw's"
            f" ({SCHEMA_VERSION}); start the daemon once to migrate it, then retry"
        )


async def _ensure_indexes(db: aiosqlite.Connection) -> None:
    """Create the partial indexes as defined here; drop the full ones they replace."""
    rows = await db.execute_fetchall("SELECT name, sql FROM sqlite_master WHERE type = 'index'")
    have: dict[str, str | None] = {str(r[0]): r[1] for r in rows}
    for name, sql in _INDEXES.items():
        if have.get(name) != sql:
            await db.execute(f"DROP INDEX IF EXISTS {name}")
            await db.execute(sql)
    for name in _REPLACED_INDEXES:
        if name in have:
            await db.execute(f"DROP INDEX {name}")


async def _refuse_newer(db: aiosqlite.Connection) -> None:
    rows = await db.execute_fetchall("PRAGMA user_version")
    if (version := int(next(iter(rows))[0])) > SCHEMA_VERSION:
        raise _newer_schema(version)


def _newer_schema(version: int) -> JournalError:
    return JournalError(
        f"journal schema version {version} is newer than this alertgw's"
        f" ({SCHEMA_VERSION}); upgrade alertgw or move the journal aside"
    )


_INSERT_SIGNAL = (
    "INSERT INTO signals (id, source, device, room, kind, state, ts, received_at, attrs)"
    " VALUES (?,?,?,?,?,?,?,?,?)"
)
_UPSERT_ALERT = (
    "INSERT INTO alerts (id, key, kind, room, zone, device, priority, critical, state,"
    " raised_at, signal_id, text, count, accepted_by, updated_at, rule, step, due, grp)"
    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET"
    " state=excluded.state, count=excluded.count, accepted_by=excluded.accepted_by,"
    " text=excluded.text, updated_at=excluded.updated_at, step=excluded.step,"
    " due=excluded.due, grp=excluded.grp"
)
# The alert's row is upserted earlier in the same transaction, so the lookup always finds
# it; a new alert's rowid is the largest so far, which keeps events_alert_row appending.
_INSERT_EVENT = (
    "INSERT INTO events (alert_id, ts, event, detail, alert_row)"
    " VALUES (?1, ?2, ?3, ?4, (SELECT rowid FROM alerts WHERE id = ?1))"
)
_INSERT_OUTBOX = (
    "INSERT INTO outbox (id, alert_id, handset, seq, action, payload, state, attempts,"
    " created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?)"
)
_INSERT_RESPONSE = (
    "INSERT INTO responses (id, handset, alert_id, response, received_at) VALUES (?,?,?,?,?)"
)
_UPSERT_LEVEL = (
    "INSERT INTO levels (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET"
    " value=excluded.value"
)


@dataclasses.dataclass(slots=True)
class _BatchRows:
    """A batch turned into row tuples on the loop, so the database thread only writes."""

    signals: list[tuple[Any, ...]] = dataclasses.field(default_factory=list)
    alerts: list[tuple[Any, ...]] = dataclasses.field(default_factory=list)
    events: list[tuple[Any, ...]] = dataclasses.field(default_factory=list)
    levels: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    responses: list[StoredResponse] = dataclasses.field(default_factory=list)
    now: float = 0.0
    # outbox id -> (state, attempts) for rows confirmed before they were first written
    marks: dict[int | None, tuple[str, int]] = dataclasses.field(default_factory=dict)
    cancel_up_to: int = 0  # queued rows up to this id are cancelled (see commit_batch)


def _fold_marks(
    deliveries: Sequence[Delivery], sent: Sequence[tuple[int, DeliveryState]]
) -> dict[int | None, tuple[str, int]]:
    """Marks in `sent` for rows of `deliveries`: the last state and how many marks."""
    fresh = {d.id for d in deliveries}
    marks: dict[int | None, tuple[str, int]] = {}
    for row, state in sent:
        if row in fresh:
            marks[row] = (state.value, marks.get(row, ("", 0))[1] + 1)
    return marks


def _batch_rows(
    signals: Sequence[Signal],
    transitions: Sequence[Transition],
    levels: Mapping[str, Any] | None,
    now: float,
) -> _BatchRows:
    latest: dict[str, Alert] = {}
    for t in transitions:
        latest[t.alert.id] = t.alert
    return _BatchRows(
        signals=[
            (
                s.id,
                s.source,
                s.device,
                s.room,
                s.kind,
                s.state.value,
                s.ts,
                s.received_at,
                _dumps(s.attrs),
            )
            for s in signals
        ],
        alerts=[
            (
                a.id,
                a.key,
                a.kind,
                a.room,
                a.zone,
                a.device,
                int(a.priority),
                int(a.critical),
                a.state.value,
                a.raised_at,
                a.signal_id,
                a.text,
                a.count,
                a.accepted_by,
                now,
                a.rule,
                a.step,
                a.due,
                a.group,
            )
            for a in latest.values()
        ],
        # The reason goes with the detail ("n-ost (busy)", "to step 1 (timeout)"): an auditor
        # must tell a nurse's reject from a timeout without a schema change.
        events=[
            (t.alert.id, t.ts, t.event, f"{t.detail} ({t.reason})" if t.reason else t.detail)
            for t in transitions
        ],
        levels=[(k, _dumps(v)) for k, v in (levels or {}).items()],
        now=now,
    )


def _dumps(value: Any) -> str:  # noqa: ANN401 - JSON-able data
    try:
        return orjson.dumps(value, default=str).decode()
    except orjson.JSONEncodeError:
        # Decoders reject what orjson cannot write; should anything slip through, one odd
        # value must not fail the batch (and with it every commit after it).
        return orjson.dumps(repr(value)[:1000]).decode()


__all__ = ["Journal", "SignalState", "StoredAlert"]


def _is_time(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _text(value: object, column: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{column} {value!r} is not text")
    return value


def _delivery_of(r: Sequence[Any]) -> Delivery:
    """A queued message from its outbox row (the columns `pending_deliveries` selects);
    ValueError/TypeError if unreadable."""
    payload = orjson.loads(r[5])  # a str too: what orjson could not write is kept as text
    if not all(isinstance(v, str) for v in (r[1], r[2], r[4])):
        raise TypeError("not a handset message")
    if isinstance(r[3], bool) or not isinstance(r[3], int):
        raise TypeError(f"seq {r[3]!r}")
    return Delivery(
        id=r[0],
        alert_id=r[1],
        handset=r[2],
        seq=r[3],
        action=r[4],
        payload=payload,
        state=DeliveryState(r[6]),
    )


def _alert_of(r: Sequence[Any]) -> Alert:
    """An alert from its row (the columns `_alerts` selects); ValueError/TypeError if unreadable."""
    if not _is_time(r[9]):
        raise TypeError(f"raised_at {r[9]!r} is not a time")
    if r[17] is not None and not _is_time(r[17]):
        raise TypeError(f"due {r[17]!r} is not a time")
    for column, i in (("critical", 7), ("count", 12), ("step", 16)):
        if not isinstance(r[i], int):
            raise TypeError(f"{column} {r[i]!r} is not a whole number")
    for column, i in (("accepted_by", 13), ("grp", 18)):
        if r[i] is not None:
            _text(r[i], column)
    return Alert(
        id=_text(r[0], "id"),
        key=_text(r[1], "key"),
        kind=_text(r[2], "kind"),
        room=_text(r[3], "room"),
        zone=_text(r[4], "zone"),
        device=_text(r[5], "device"),
        priority=Priority(r[6]),
        critical=bool(r[7]),
        state=AlertState(r[8]),
        raised_at=float(r[9]),
        signal_id=_text(r[10], "signal_id"),
        text=_text(r[11], "text"),
        count=r[12],
        accepted_by=r[13],
        rule=_text(r[15], "rule"),
        step=r[16],
        due=None if r[17] is None else float(r[17]),
        group=r[18],
    )
