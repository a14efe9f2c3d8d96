"""Fault (d): the handset app is down while alerts are due; they all arrive when it returns."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from tests.conftest import Broker, running, unique
from tests.faults.helpers import Handset, expected_rings, fault_config, sender, stream, tally

pytestmark = pytest.mark.faults

SIGNALS = 600
DOWN_AT = 150
UP_AT = 420


async def test_handset_down_mid_stream_gets_every_ring_on_return(
    broker: Broker, tmp_path: Path
) -> None:
    """Rings due while the handset app is offline reach it when it reconnects (same client id)."""
    prefix = unique("f")
    config, _ = fault_config(broker.port, tmp_path, prefix=prefix, client_id=unique("alertgw"))
    signals = stream(SIGNALS)
    expected = expected_rings(signals)
    handset = Handset(broker.port, f"{prefix}/handset/+/alert", client_id=unique("h1"))
    handset.start()
    await handset.wait_connected()
    at_up = 0  # messages the handset had when it came back
    try:
        async with running(config), sender(broker.port, f"{prefix}/in/x") as s:
            t0 = time.monotonic()
            for i, sig in enumerate(signals):
                if i == DOWN_AT:
                    await handset.stop()
                elif i == UP_AT:
                    at_up = len(handset.messages)
                    handset.start()
                await s.send(sig)
                await asyncio.sleep(0.01)
            await handset.wait_for(expected, timeout=30)
            elapsed = time.monotonic() - t0
    finally:
        await handset.stop()
    t = tally(handset.messages, expected)
    # Rings for the signals sent while the app was away arrived after it returned: the
    # broker held them on the persistent session, and alertgw did not give up on them.
    while_down = expected_rings(signals[DOWN_AT:UP_AT])
    after_return = {str(m.get("signal_id")) for m in handset.messages[at_up:]}
    late = while_down - after_return
    print(
        t.line(
            "handset_down",
            SIGNALS,
            down_for_signals=UP_AT - DOWN_AT,
            rings_while_down=len(while_down),
            seconds=round(elapsed, 1),
        )
    )
    assert while_down
    assert not late, sorted(late)[:5]
    assert t.lost == 0
    assert t.duplicate_rings == 0
    assert t.unexpected == 0
