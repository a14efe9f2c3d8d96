"""Fault (b): the broker restarts mid-stream; nothing is lost and no alert rings twice."""

from __future__ import annotations

import asyncio
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
