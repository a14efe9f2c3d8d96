"""Seams of the restart path against a real daemon and broker (SIGKILL, a late journal).

The engine and journal cases behind them are in tests/test_restart_seams.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path

import aiomqtt
import orjson
import pytest

from tests.conftest import Broker, unique
from tests.faults.test_kill9 import _longest_commit_config, site

pytestmark = pytest.mark.faults


async def test_kill9_beside_an_uncommitted_raise_keeps_the_cancel_apart(
    broker: Broker, tmp_path: Path
) -> None:
    """A QoS 1 press and a QoS 0 accept in one commit window, then SIGKILL.

    The broker redelivers the press and the restarted daemon re-creates the alert and its
    ring (seq 1, a repeat the handset drops); the accept is gone. Its update had taken seq
    2, and so did the cancel after the restart: the handset dropped the cancel as a repeat
    and showed the call open for good.
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
        answer = orjson.dumps({"alert_id": ring["alert_id"], "response": "accept"})
        await app.publish(f"{prefix}/handset/h1/response", answer, qos=0)
        _, update = await st.handset.next()
        await asyncio.to_thread(st.daemon.kill9)  # commit_delay is 1 s: before the commit
        with contextlib.closing(sqlite3.connect(db)) as conn:
            assert conn.execute("SELECT COUNT(*) FROM alerts").fetchone() == (0,)
        st.daemon.start()
        await st.status.wait_online(2)
        _, again = await st.handset.next(timeout=15)  # the broker's redelivery, re-created
        await st.sender.send({"device": "d0", "state": "cleared"})
        _, cancel = await st.handset.next(timeout=15)
        rc = await asyncio.to_thread(st.daemon.terminate)
    assert rc == 0
    assert (update["type"], update["alert_id"]) == ("update", ring["alert_id"])
    assert (again["type"], again["alert_id"], again["seq"]) == ("ring", ring["alert_id"], 1)
    assert (cancel["type"], cancel["alert_id"]) == ("cancel", ring["alert_id"])
    assert cancel["seq"] > update["seq"], (ring, update, cancel)
