"""Fault: the journal cannot be written (a full disk). Routing goes on; nothing is lost."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import time
from pathlib import Path

import pytest

from gateway.app import _START_EPOCH, Gateway
from gateway.journal import Journal
from tests.conftest import Broker, make_config, running, unique
from tests.integration.helpers import peer

pytestmark = pytest.mark.faults

ROUNDS = 30  # more than the broker sends unacknowledged (20 by default)
# Each fall here is raised and cleared at once and must be cancelled by its clear: a
# latching fall would wait for an accept (tests/test_engine.py covers latching).
UNLATCHED = "kinds:\n  fall: {priority: critical, critical: true, latching: false}\n"


async def fill_disk(gw: Gateway) -> None:
    """From now on no new page fits in the journal: commits fail with SQLITE_FULL."""
    db = gw.journal.db
    (pages,) = next(iter(await db.execute_fetchall("PRAGMA page_count")))
    await db.execute(f"PRAGMA max_page_count={pages}")


async def free_disk(gw: Gateway) -> None:
    """Space again: commits succeed."""
    await gw.journal.db.execute("PRAGMA max_page_count=1073741823")


async def until_recovered(gw: Gateway) -> None:
    """Wait until the journal has caught up with everything routed meanwhile."""
    sample = gw.metrics.registry.get_sample_value
    for _ in range(300):
        if sample("alertgw_journal_failing") == 0 and not gw._pending.signals:
            break
        await asyncio.sleep(0.05)
    assert sample("alertgw_journal_failing") == 0


def journaled(tmp_path: Path) -> tuple[set[str], list[str]]:
    """Signal ids in the journal, and the states of the journal's own alarm."""
    with sqlite3.connect(tmp_path / "journal.db") as conn:
        ids = {row[0] for row in conn.execute("SELECT id FROM signals")}
        alarm = [
            row[0] for row in conn.execute("SELECT state FROM alerts WHERE device = 'journal'")
        ]
    return ids, alarm


async def test_a_full_disk_keeps_ringing_and_commits_everything_when_space_returns(
    broker: Broker, tmp_path: Path
) -> None:
    """Commits fail (SQLITE_FULL); handsets still ring; the journal catches up afterwards."""
    prefix = unique("t")
    config = make_config(broker.port, tmp_path, prefix=prefix, extra=UNLATCHED)
    async with running(config) as r, peer(broker.port, prefix) as p:
        gw = r.gateway
        sample = gw.metrics.registry.get_sample_value
        await fill_disk(gw)
        for i in range(ROUNDS):
            pad = "x" * 3000  # kept as an attribute: every signal needs new pages
            await p.json_signal({"device": "fall-101", "id": f"f{i}", "pad": pad})
            await p.json_signal({"device": "fall-101", "state": "cleared", "id": f"c{i}"})
        # A fall rings both night handsets: every ring and cancel reached them while
        # nothing could be journaled.
        got = [(await p.next())[1] for _ in range(4 * ROUNDS)]
        assert sorted((m["type"], m["signal_id"]) for m in got if m["type"] == "ring") == sorted(
            [("ring", f"f{i}") for i in range(ROUNDS)] * 2
        )
        assert sum(m["type"] == "cancel" for m in got) == 2 * ROUNDS
        assert (sample("alertgw_journal_write_errors_total") or 0) >= 1
        assert sample("alertgw_journal_failing") == 1
        assert not r.task.done()
        await free_disk(gw)
        await until_recovered(gw)
    ids, journal_alarm = journaled(tmp_path)
    assert {f"f{i}" for i in range(ROUNDS)} | {f"c{i}" for i in range(ROUNDS)} <= ids
    # The failure was itself a technical alarm, cleared when commits worked again.
    assert journal_alarm == ["cleared"]


async def test_a_long_outage_keeps_alerts_but_caps_the_signal_records_in_memory(
    broker: Broker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the cap the oldest signal records go, counted; every alert is still journaled."""
    import gateway.app  # noqa: PLC0415 - the cap under test

    monkeypatch.setattr(gateway.app, "UNWRITTEN_SIGNALS_CAP", 4)
    prefix = unique("t")
    config = make_config(broker.port, tmp_path, prefix=prefix, extra=UNLATCHED)
    async with running(config) as r, peer(broker.port, prefix) as p:
        gw = r.gateway
        sample = gw.metrics.registry.get_sample_value
        await fill_disk(gw)
        for i in range(5):
            pad = "x" * 3000
            await p.json_signal({"device": "fall-101", "id": f"f{i}", "pad": pad})
            await p.json_signal({"device": "fall-101", "state": "cleared", "id": f"c{i}"})
        got = [(await p.next())[1] for _ in range(4 * 5)]
        assert sum(m["type"] == "ring" for m in got) == 10
        for _ in range(300):  # the cap applies at each retry: after 0.5 s, then less often
            if any(s.id == "c4" for s in gw._pending.signals) and len(gw._pending.signals) <= 4:
                break
            await asyncio.sleep(0.05)
        assert [s.id for s in gw._pending.signals] == ["f3", "c3", "f4", "c4"]
        dropped = sample("alertgw_journal_signals_dropped_total")
        assert dropped
        await free_disk(gw)
        await until_recovered(gw)
    ids, _ = journaled(tmp_path)
    with sqlite3.connect(tmp_path / "journal.db") as conn:
        falls = conn.execute("SELECT COUNT(*) FROM alerts WHERE kind = 'fall'").fetchone()[0]
    # Whatever fitted before the disk filled, then the newest 4, and the journal's own
    # raised and cleared alarm: nothing else is missing but what was counted as dropped.
    assert {"f3", "c3", "f4", "c4"} <= ids
    assert len(ids) == 10 + 2 - dropped
    assert falls == 5  # every alert and its timeline made it


async def test_a_hung_write_is_reported_and_does_not_stop_intake(
    broker: Broker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A commit that never returns (a dying SD card): alarm, and new signals still ring."""
    import gateway.app  # noqa: PLC0415 - the stall threshold under test

    monkeypatch.setattr(gateway.app, "JOURNAL_STALL_AFTER", 0.3)
    prefix = unique("t")
    config = make_config(broker.port, tmp_path, prefix=prefix, extra=UNLATCHED)
    async with running(config) as r, peer(broker.port, prefix) as p:
        gw = r.gateway
        sample = gw.metrics.registry.get_sample_value
        commit_batch = gw.journal.commit_batch
        disk = asyncio.Event()

        async def hung_commit(*args: object, **kwargs: object) -> None:
            await disk.wait()  # the write returns only when the "disk" does
            await commit_batch(*args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(gw.journal, "commit_batch", hung_commit)
        for i in range(ROUNDS):
            await p.json_signal({"device": "fall-101", "id": f"f{i}"})
            await p.json_signal({"device": "fall-101", "state": "cleared", "id": f"c{i}"})
        got = [(await p.next())[1] for _ in range(4 * ROUNDS)]
        assert sum(m["type"] == "ring" for m in got) == 2 * ROUNDS
        assert sample("alertgw_journal_failing") == 1
        assert any(a.device == "journal" for a in gw.engine.active)  # the technical alarm
        disk.set()
        await until_recovered(gw)
    ids, journal_alarm = journaled(tmp_path)
    assert {f"f{i}" for i in range(ROUNDS)} | {f"c{i}" for i in range(ROUNDS)} <= ids
    assert journal_alarm == ["cleared"]


async def test_a_redelivery_is_routed_when_the_journal_cannot_answer_if_it_saw_it(
    broker: Broker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The duplicate lookup shares the database: a failing one must not stop routing."""
    from gateway.ports import Inbound  # noqa: PLC0415

    prefix = unique("t")
    config = make_config(broker.port, tmp_path, prefix=prefix, extra=UNLATCHED)
    async with running(config) as r:
        gw = r.gateway

        async def failing_lookup(*_: object) -> bool:
            raise sqlite3.OperationalError("disk I/O error")

        monkeypatch.setattr(gw.journal, "seen_signal", failing_lookup)
        item = Inbound(
            "integrator", f"{prefix}/in/x", b'{"device": "fall-101", "id": "f-dup"}', 0.0, dup=True
        )
        assert [s.id for s in await gw._decode(item)] == ["f-dup"]
        gw._journal_down = True  # a hung or failing journal: no lookup at all
        item = dataclasses.replace(item, payload=b'{"device": "fall-101", "id": "f-dup2"}')
        assert [s.id for s in await gw._decode(item)] == ["f-dup2"]
        gw._journal_down = False


async def test_a_long_outage_caps_the_handset_answers_kept_in_memory(
    broker: Broker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A handset app sending answers in a loop while the disk is full cannot fill memory."""
    import gateway.app  # noqa: PLC0415 - the cap under test
    from gateway.ports import RawResponse  # noqa: PLC0415

    monkeypatch.setattr(gateway.app, "UNWRITTEN_SIGNALS_CAP", 4)
    prefix = unique("t")
    config = make_config(broker.port, tmp_path, prefix=prefix, extra=UNLATCHED)
    async with running(config) as r, peer(broker.port, prefix) as p:
        gw = r.gateway
        sample = gw.metrics.registry.get_sample_value
        await p.json_signal({"device": "fall-101", "id": "f1"})
        _, ring = await p.next()
        commit_batch = gw.journal.commit_batch
        full = True

        async def failing_commit(*args: object, **kwargs: object) -> object:
            if full:  # answer rows are small: a full disk as such would still take them
                raise sqlite3.OperationalError("database or disk is full")
            return await commit_batch(*args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(gw.journal, "commit_batch", failing_commit)
        body = f'{{"alert_id": "{ring["alert_id"]}", "response": "accept"}}'.encode()
        for mid in range(1, 11):
            gw.put(RawResponse("night1", body, time.time(), None, False, mid))
        for _ in range(300):  # the cap applies at each retry of the failing commit
            if sample("alertgw_journal_failing") == 1 and len(gw._pending.responses) <= 4:
                break
            await asyncio.sleep(0.05)
        assert len(gw._pending.responses) == 4
        assert len(gw._uncommitted_responses) == 4
        assert (sample("alertgw_journal_signals_dropped_total") or 0) >= 6
        full = False
        await until_recovered(gw)
    with sqlite3.connect(tmp_path / "journal.db") as conn:
        kept = [r[0] for r in conn.execute("SELECT COUNT(*) FROM responses")]
    assert kept == [4]  # the newest four answers, written once the journal works again


async def test_a_write_failing_right_after_the_open_still_starts_routing(
    broker: Broker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The journal opens but its first write (the start's number) fails, SQLITE_FULL.

    Review finding: that write was unguarded, so the daemon exited instead of routing
    from memory, and under systemd that is a restart loop that rings nobody. The number
    now goes with the first commit that succeeds.
    """
    prefix = unique("t")
    config = make_config(broker.port, tmp_path, prefix=prefix)
    async with running(config):
        pass  # a journal with its salt, as after any first start
    commit = Journal.commit_batch
    calls = 0

    async def full_once(self: Journal, *args: object, **kwargs: object) -> object:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise sqlite3.OperationalError("database or disk is full")
        return await commit(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Journal, "commit_batch", full_once)
    before = int(time.time())
    async with peer(broker.port, prefix) as p, running(config):
        await p.json_signal({"device": "fall-101", "id": "f1"})
        got = [await p.next() for _ in range(2)]
    after = int(time.time())
    assert [m["type"] for _, m in got] == ["ring", "ring"]
    with sqlite3.connect(tmp_path / "journal.db") as conn:
        (start,) = conn.execute("SELECT value FROM levels WHERE key = 'daemon_start'").fetchone()
    # Written with the first commit that succeeded. Unwritten until then, the number is
    # the clock's (seconds since 2026), not the count's 2 that a second such start shares.
    assert before - _START_EPOCH <= int(start) <= after - _START_EPOCH
