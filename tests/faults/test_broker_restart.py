"""Fault (b): the broker restarts mid-stream; nothing is lost and no alert rings twice."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest

from tests.conftest import Broker, running, unique
from tests.faults.helpers import (
    Handset,
    expected_rings,
    fault_config,
    sender,
    stream,
    tally,
)

pytestmark = pytest.mark.faults


def test_own_broker_fixture_persists_across_restart(own_broker: Broker) -> None:
    """The per-test broker writes its persistence file on restart (fault (b) relies on it)."""
    own_broker.restart()
    assert (own_broker.workdir / "mosquitto.db").exists()


@pytest.mark.parametrize(
    ("signals", "pause"), [(600, 0.01), (3000, 0.0)], ids=["100_per_s", "full_speed"]
)
async def test_broker_restart_mid_stream_loses_nothing(
    own_broker: Broker, tmp_path: Path, signals: int, pause: float
) -> None:
    """A Mosquitto restart mid-stream loses no alert and rings none twice."""
    prefix = unique("f")
    config, _ = fault_config(own_broker.port, tmp_path, prefix=prefix, client_id=unique("gw"))
    sent = stream(signals)
    expected = expected_rings(sent)
    handset = Handset(own_broker.port, f"{prefix}/handset/+/alert", client_id=unique("h1"))
    handset.start()
    await handset.wait_connected()
    restart: asyncio.Task[None] | None = None
    try:
        async with running(config) as r, sender(own_broker.port, f"{prefix}/in/x") as s:
            t0 = time.monotonic()
            for i, sig in enumerate(sent):
                if i == len(sent) // 2:
                    restart = asyncio.create_task(asyncio.to_thread(own_broker.restart))
                await s.send(sig)
                await asyncio.sleep(pause)
            assert restart is not None
            await restart
            assert (own_broker.workdir / "mosquitto.db").exists()
            await handset.wait_for(expected, timeout=30)
            elapsed = time.monotonic() - t0
            duplicates = r.gateway.metrics.duplicates.labels("integrator")._value.get()
            retries = r.gateway.metrics.deliveries.labels("h1", "ring", "retry")._value.get()
    finally:
        await handset.stop()
    t = tally(handset.messages, expected)
    print(
        t.line(
            "broker_restart",
            signals,
            sender_retries=s.retries,
            dup_signals_dropped=int(duplicates),
            gateway_ring_retries=int(retries),
            seconds=round(elapsed, 1),
        )
    )
    assert t.lost == 0
    assert t.duplicate_rings == 0
    assert t.unexpected == 0


async def test_messages_failed_in_an_outage_are_resent_together_when_the_broker_returns(
    tmp_path: Path,
) -> None:
    """One retry round per outage, not one backoff sleep per failed message.

    One at a time, 30 door messages that failed while the broker was away held a fall
    raised just after it returned for about 5 s behind their retries.
    """
    from gateway.model import Signal, SignalState  # noqa: PLC0415
    from tests.conftest import free_port, make_config  # noqa: PLC0415
    from tests.integration.helpers import peer  # noqa: PLC0415

    b = Broker(port=free_port(), workdir=tmp_path / "mosquitto")
    b.start()
    try:
        prefix = unique("t")
        config = make_config(b.port, tmp_path, prefix=prefix, client_id=unique("gw"))
        async with running(config) as r:
            gw = r.gateway
            assert gw.link is not None

            def signal(sid: str, device: str, kind: str, state: SignalState) -> Signal:
                now = time.time()
                room = device.split("-")[1]
                return Signal(sid, "integrator", device, room, kind, state, now, {}, now)

            b.stop()
            for _ in range(100):
                if not gw.link.connected:
                    break
                await asyncio.sleep(0.02)
            for i in range(30):  # door opens and closes while the broker is away
                state = SignalState.RAISED if i % 2 == 0 else SignalState.CLEARED
                gw.put(signal(f"door-{i}", "door-102", "door_open", state))
            await asyncio.sleep(1.0)
            b.start()
            await asyncio.wait_for(gw.link.wait_connected(), 10)
            async with peer(b.port, prefix) as p:
                gw.put(signal("fall-after", "fall-101", "fall", SignalState.RAISED))
                got = []
                while not any(m.get("signal_id") == "fall-after" for h, m in got if h == "night1"):
                    got.append(await p.next(timeout=10))
            retries = sum(
                s.value
                for s in gw.metrics.deliveries.collect()[0].samples
                if s.name.endswith("_total")
                and s.labels["handset"] == "night1"
                and s.labels["outcome"] == "retry"
            )
    finally:
        b.stop()
    # Every failed message went out again in one round when the link came back (a second
    # round only if the reconnect raced the first resend), not one round per message.
    assert 1 <= retries <= 2


async def test_a_broker_out_of_reach_is_a_link_down_alarm_cleared_on_reconnect(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Like an ESPA line or the journal, a lost broker is a technical alarm, not only a log."""
    import gateway.app  # noqa: PLC0415 - the threshold under test
    from tests.conftest import free_port, make_config  # noqa: PLC0415

    monkeypatch.setattr(gateway.app, "BROKER_DOWN_ALARM_AFTER", 1.0)
    b = Broker(port=free_port(), workdir=tmp_path / "mosquitto")
    b.start()
    device = f"mqtt:127.0.0.1:{b.port}"
    try:
        config = make_config(b.port, tmp_path, prefix=unique("t"), client_id=unique("gw"))
        async with running(config) as r:
            engine = r.gateway.engine

            async def alarm_is(active: bool) -> bool:
                for _ in range(200):
                    if any(a.device == device for a in engine.active) == active:
                        return True
                    await asyncio.sleep(0.05)
                return False

            await asyncio.sleep(1.5)
            assert await alarm_is(False)  # connected: no alarm
            b.stop()
            assert await alarm_is(True)
            (alarm,) = [a for a in engine.active if a.device == device]
            assert alarm.kind == "link_down"
            b.start()
            assert await alarm_is(False)
    finally:
        b.stop()
    with sqlite3.connect(tmp_path / "journal.db") as conn:
        states = [
            row[0] for row in conn.execute("SELECT state FROM alerts WHERE device = ?", (device,))
        ]
    assert states == ["cleared"]
