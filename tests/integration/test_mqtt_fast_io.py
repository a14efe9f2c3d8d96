"""The MQTT link's byte path (drivers/paho_io.py) against a real Mosquitto."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from drivers.paho_io import PahoLoopIO
from gateway.model import Delivery
from gateway.ports import Item
from tests.conftest import PROTOCOLS, Broker, make_config, running, unique
from tests.integration.helpers import bare_link, peer


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_burst_larger_than_the_socket_buffer_arrives_whole_and_in_order(
    broker: Broker, protocol: str
) -> None:
    """3,000 handset messages of 1 kB queued in one loop iteration: every PUBACK comes back.

    3 MB overflows the socket buffer, so the coalesced write goes out in pieces and the
    writer waits for the socket to drain; the handset sees every message once, in order.
    """
    prefix = unique("t")
    link = bare_link(
        broker.port, prefix, handsets={"h1": f"{prefix}/handset/h1"}, protocol=protocol
    )
    items: list[Item] = []
    task = asyncio.create_task(link.run(items.append))
    try:
        async with peer(broker.port, prefix) as p:
            await asyncio.wait_for(link.wait_connected(), 10)
            assert link._io is not None
            assert link._io.fast
            pad = "x" * 1000
            futures = [
                link.submit(Delivery(f"a{i}", "h1", 1, "ring", {"n": i, "pad": pad}))
                for i in range(3000)
            ]
            await asyncio.wait_for(asyncio.gather(*futures), 60)
            got = [(await p.next(10))[1]["n"] for _ in range(3000)]
        assert got == list(range(3000))
        assert link._acks == {}
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_without_the_fast_path_paho_carries_the_session_alone(
    broker: Broker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If a paho release moves the internals the adapter hooks, alertgw still rings."""
    monkeypatch.setattr(PahoLoopIO, "supported", staticmethod(lambda client: False))
    prefix = unique("t")
    config = make_config(broker.port, tmp_path, prefix=prefix)
    async with running(config) as r, peer(broker.port, prefix) as p:
        assert r.gateway.link is not None
        assert r.gateway.link._io is None
        await p.z2m("rom103/snor", {"action": "single"})
        handset, ring = await p.next()
        await p.respond(handset, ring["alert_id"], "accept")
        _, update = await p.next()
    assert ring["type"] == "ring"
    assert update["state"] == "accepted"


async def test_after_read_sees_each_read_whole_and_its_replies_leave_in_the_same_callback(
    broker: Broker,
) -> None:
    """The hook runs once a read's messages are all handed over; what it queues is sent
    before the loop runs anything else (no extra iteration between signal and handset)."""
    prefix = unique("t")
    link = bare_link(
        broker.port,
        prefix,
        sources={"integrator": [f"{prefix}/in/#"]},
        handsets={"h1": f"{prefix}/handset/h1"},
    )
    loop = asyncio.get_running_loop()
    items: list[Item] = []
    answered = 0
    unsent_after_hook: list[int] = []

    def after_read() -> None:
        nonlocal answered
        io = link._io
        if answered < len(items) and io is not None:
            # Queued ahead of the link's own flush callback: it runs right after the
            # reader returns, so it sees the replies still waiting unless they left in it.
            loop.call_soon(lambda: unsent_after_hook.append(len(io._wbuf)))
        for n in range(answered, len(items)):
            link.submit(Delivery(f"a{n}", "h1", 1, "ring", {"n": n}))
        answered = len(items)

    task = asyncio.create_task(link.run(items.append, after_read=after_read))
    try:
        async with peer(broker.port, prefix) as p:
            await asyncio.wait_for(link.wait_connected(), 10)
            assert link._io is not None
            assert link._io.fast
            for n in range(5):
                await p.json_signal({"device": "cord-103", "state": "raised", "id": f"s{n}"})
            got = sorted([(await p.next(10))[1]["n"] for _ in range(5)])
        assert got == [0, 1, 2, 3, 4]
        assert len(items) == 5
        assert answered == 5  # every message was seen by a hook call after its read
        assert unsent_after_hook
        assert set(unsent_after_hook) == {0}
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
