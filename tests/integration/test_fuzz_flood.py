"""Hostile input through a real Mosquitto: 100,000 malformed payloads, then a flood."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

import aiomqtt
import orjson
import pytest

from tests.conftest import Broker, make_config, running, unique
from tests.integration.helpers import peer


def garbage(rng: random.Random, i: int) -> tuple[str, bytes]:
    """One hostile (topic suffix, payload) pair; the mix covers every reject reason."""
    kind = i % 10
    if kind == 0:
        return "z2m/rom101/seng", rng.randbytes(rng.randint(0, 64))
    if kind == 1:
        return "in/x", b'{"device": "fall-101", "state": "raised", "ts": NaN}'
    if kind == 2:
        return "in/x", b"[" * 5000 + b"]" * 5000
    if kind == 3:
        return "in/x", b'{"device": "fall-101", "ts": 1' + b"0" * 400 + b"}"
    if kind == 4:
        return f"z2m/ghost-{rng.randint(0, 999)}", b'{"occupancy": true}'
    if kind == 5:
        return "in/x", b'{"device": ' + str(rng.random()).encode() + b"}"
    if kind == 6:
        return "in/x", b'{"device": "\xff\xfe"}'
    if kind == 7:
        return "in/x", orjson.dumps({"device": "fall-101", "state": "maybe"})
    if kind == 8:
        return "z2m/rom102/dor", b"not json at all"
    return "in/x", b'{"device": "cord-103", "kind": ' + b'"x' * 40 + b'"}'


@pytest.mark.timeout(300)
async def test_fuzz_100k_then_a_critical_alert_still_routes(broker: Broker, tmp_path: Path) -> None:
    """100,000 malformed payloads are counted and skipped; a fall then still rings at once."""
    prefix = unique("f")
    config = make_config(broker.port, tmp_path, prefix=prefix)
    rng = random.Random(4)
    thrown = 100_000
    async with running(config) as r, peer(broker.port, prefix) as p:
        async with aiomqtt.Client("127.0.0.1", broker.port, max_queued_outgoing_messages=0) as c:
            for i in range(thrown):
                suffix, payload = garbage(rng, i)
                await c.publish(f"{prefix}/{suffix}", payload, qos=0)
                if i % 2000 == 0:
                    await asyncio.sleep(0)  # let the gateway's loop breathe
            await c.publish(f"{prefix}/in/x", b"x" * 70_000, qos=1)  # oversized
        gw = r.gateway
        async with asyncio.timeout(240):
            while True:
                seen = sum(
                    s.value
                    for s in gw.metrics.rejects.collect()[0].samples
                    if s.name.endswith("_total")
                )
                seen += sum(
                    s.value
                    for s in gw.metrics.signals.collect()[0].samples
                    if s.name.endswith("_total")
                )
                if seen >= thrown * 0.99 and gw._inbox.empty():
                    break
                await asyncio.sleep(0.2)
        while not await p.nothing(0.2):
            await p.next()  # drop rings the garbage legitimately caused (the one valid cord)
        start = time.monotonic()
        await p.json_signal({"id": "real-fall", "device": "fall-101", "state": "raised"})
        handset, msg = await p.next(10)
        took = time.monotonic() - start
        rejects = {
            s.labels["reason"]: int(s.value)
            for s in gw.metrics.rejects.collect()[0].samples
            if s.name.endswith("_total")
        }
        print(
            f"FUZZ thrown={thrown + 1} rejected_by_reason={rejects} "
            f"critical_after_fuzz_ms={took * 1000:.1f}"
        )
        assert (msg["kind"], msg["signal_id"], msg["critical"]) == ("fall", "real-fall", True)
        assert handset == "night1"
        for reason in ("malformed_json", "unknown_device", "bad_field", "payload_too_large"):
            assert rejects.get(reason, 0) > 0, reason


async def test_babbling_sensor_is_coalesced_and_critical_passes(
    broker: Broker, tmp_path: Path
) -> None:
    """A flapping door sensor is coalesced to its newest state; an epilepsy alarm still rings."""
    prefix = unique("b")
    config = make_config(broker.port, tmp_path, prefix=prefix)
    async with running(config) as r, peer(broker.port, prefix) as p:
        await p.z2m("rom201/epi", {"epilepsy": False})
        async with aiomqtt.Client("127.0.0.1", broker.port) as c:
            for i in range(20_000):
                # Open, closed, open, …: the last message (i = 19,999) says closed.
                body = {"contact": i % 2 == 1, "battery": 80}
                await c.publish(f"{prefix}/z2m/rom102/dor", orjson.dumps(body), qos=0)
            start = time.monotonic()
            await p.z2m("rom201/epi", {"epilepsy": True})
            rings: list[tuple[str, dict[str, object]]] = []
            async with asyncio.timeout(30):
                while not any(m["kind"] == "epilepsy" for _, m in rings):
                    rings.append(await p.next(30))
            took = time.monotonic() - start
        limited = r.gateway.metrics.rejects.labels("zigbee", "rate_limited")._value.get()
        door_rings = sum(1 for _, m in rings if m["kind"] == "door_open" and m["type"] == "ring")
        print(
            f"FLOOD babbling=20000 rate_limited={int(limited)} door_rings={door_rings} "
            f"critical_ms={took * 1000:.1f}"
        )
        assert limited > 10_000
        gw = r.gateway
        door = gw.metrics.alert_count("door_open", "raised")._value.get()
        assert door >= 1  # the admitted share of the flapping did reach the engine
        # The parked newest message (closed) is released once the topic's bucket refills:
        # the door ends closed, with no alert left open, however the flood was cut.
        async with asyncio.timeout(10):
            while any(a.kind == "door_open" and a.room == "102" for a in gw.engine.active):
                await asyncio.sleep(0.05)
        # Every door ring came from an admitted message, never from a coalesced one.
        assert door <= 20_000 - limited


async def test_hostile_handset_answers_are_refused_and_routing_goes_on(
    broker: Broker, tmp_path: Path
) -> None:
    """An answer nested 1,000 lists deep once stopped the daemon (RecursionError in str())."""
    prefix = unique("t")
    config = make_config(broker.port, tmp_path, prefix=prefix)
    deep = b'{"alert_id": "x", "response": ' + b"[" * 1000 + b"]" * 1000
    answers = [
        deep + b"}",
        b'{"alert_id": "x", "response": ["accept"]}',
        b'{"alert_id": "x", "response": "accept", "reason": "' + b"x" * 70_000 + b'"}',
    ]
    async with running(config) as r, peer(broker.port, prefix) as p:
        for answer in answers:
            await p.client.publish(f"{prefix}/handset/night1/response", answer, qos=1)
        sample = r.gateway.metrics.registry.get_sample_value
        labels = {"source": "handsets", "reason": "malformed_response"}
        for _ in range(100):
            if sample("alertgw_input_rejected_total", labels) == len(answers):
                break
            await asyncio.sleep(0.02)
        assert sample("alertgw_input_rejected_total", labels) == len(answers)
        await p.json_signal({"device": "fall-101", "id": "f1"})
        _, ring = await p.next()
        assert (ring["type"], ring["signal_id"]) == ("ring", "f1")
        # An answer whose reason is not text still counts; only the reason is dropped.
        await p.respond("night1", ring["alert_id"], "accept")
        await p.client.publish(
            f"{prefix}/handset/night1/response",
            orjson.dumps({"alert_id": ring["alert_id"], "response": "resolve", "reason": 0}),
            qos=1,
        )
        while (msg := (await p.next())[1])["type"] != "cancel":
            pass
        assert msg["alert_id"] == ring["alert_id"]
        assert not r.task.done()
