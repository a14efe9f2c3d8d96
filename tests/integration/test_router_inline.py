"""Routing from the driver's callback: timers it sets, order with the router, its errors."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson
import pytest

from gateway.app import Gateway
from gateway.config import load_config
from gateway.ports import Inbound
from tests.conftest import Broker, make_config, running
from tests.integration.helpers import peer
from tests.integration.test_rules_mqtt import prefix_of, seed, write_config


async def test_a_timer_set_by_inline_routing_fires_without_a_kick(
    broker: Broker, tmp_path: Path
) -> None:
    """The router sleeps with nothing due; a bed exit routed inline must still ring on time."""
    path = write_config(tmp_path, broker.port, hold_off=1)
    async with running(load_config(path)) as r, peer(broker.port, prefix_of(path)) as p:
        await seed(p)
        await asyncio.sleep(0.2)
        due = r.gateway.engine.next_deadline()
        assert due is None or due > time.time() + 30  # nothing would wake the router soon
        await p.z2m("rom101/seng", {"occupancy": True})
        started = time.monotonic()
        handset, msg = await p.next(timeout=5)
        assert (handset, msg["type"], msg["kind"]) == ("n1", "ring", "bed_exit")
        assert time.monotonic() - started >= 0.9  # it waited out the hold-off first


def _inbound(payload: dict[str, object], *, dup: bool = False) -> Inbound:
    return Inbound("integrator", "t/in/x", orjson.dumps(payload), time.time(), dup=dup)


async def test_a_redelivery_is_routed_after_the_fresh_signals_before_it(
    broker: Broker, tmp_path: Path
) -> None:
    """Fresh items wait for a callback, a redelivery for the router: order must hold."""
    async with running(make_config(broker.port, tmp_path)) as r:
        gw = r.gateway
        gw.put(_inbound({"device": "cord-103", "state": "raised", "id": "a-1"}))
        gw.put(_inbound({"device": "cord-103", "state": "cleared", "id": "a-2"}, dup=True))
        for _ in range(100):
            await asyncio.sleep(0.01)
            if not gw._uncommitted_ids:  # both committed
                break
        assert gw.engine.active_count == 0  # raised, then cleared: nothing left open
        alerts = await gw.journal.recent_alerts()
        assert [a.alert.state.value for a in alerts] == ["cleared"]


async def test_an_error_while_routing_inline_stops_the_gateway(
    broker: Broker, tmp_path: Path
) -> None:
    """A routing bug in the driver's callback must not vanish: the supervisor sees it."""
    gw = Gateway(make_config(broker.port, tmp_path))

    def broken(*args: object, **kwargs: object) -> object:
        raise RuntimeError("engine bug")

    stop = asyncio.Event()
    task = asyncio.create_task(gw.run(stop.wait))
    await asyncio.wait_for(gw.ready.wait(), 10)
    gw.engine.handle_signal = broken  # type: ignore[method-assign]
    gw.put(_inbound({"device": "cord-103", "state": "raised"}))
    with pytest.raises(ExceptionGroup) as caught:
        await asyncio.wait_for(task, 10)
    assert caught.group_contains(RuntimeError, match="engine bug")
