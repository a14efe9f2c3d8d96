"""The MQTT session's life through a real Mosquitto: reconnects, retained messages, SUBACK."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import orjson

from tests.conftest import Broker, make_config, running, unique
from tests.integration.helpers import peer


async def test_retained_press_does_not_ring_again_after_a_reconnect(
    broker: Broker, tmp_path: Path
) -> None:
    """A retained Z2M press (device option `retain: true`) rings once, not at every reconnect.

    Review finding 7: alertgw subscribes again on every session, so the broker re-sends
    every retained message (MQTT 3.1.1, 3.8.4); an old, resolved press rang again.
    """
    prefix = unique("t")
    config = make_config(broker.port, tmp_path, prefix=prefix)
    topic = f"{prefix}/z2m/rom103/snor"
    async with running(config) as r, peer(broker.port, prefix) as p:
        await p.client.publish(topic, orjson.dumps({"action": "single"}), qos=1, retain=True)
        _, ring = await p.next()
        assert ring["type"] == "ring"
        await p.respond("night1", ring["alert_id"], "resolve")
        _, cancel = await p.next()
        assert cancel["type"] == "cancel"
        link = r.gateway.link
        assert link is not None
        assert link._paho is not None
        link._paho.disconnect()  # the broker restarts, Wi-Fi drops, keep-alive runs out...
        await asyncio.sleep(0.3)
        await asyncio.wait_for(link.wait_connected(), 10)
        phantom = None
        with contextlib.suppress(TimeoutError):
            _, phantom = await p.next(timeout=1.5)
        replays = r.gateway.metrics.rejects.labels("zigbee", "retained_press")._value.get()
        await p.client.publish(topic, b"", qos=1, retain=True)  # clear the retained message
    assert phantom is None, f"a resolved press rang again after a reconnect: {phantom}"
    assert replays == 1


async def test_retained_press_published_while_down_still_rings(
    broker: Broker, tmp_path: Path
) -> None:
    """A press published (retained) while alertgw is stopped is queued news, and rings."""
    prefix = unique("t")
    config = make_config(broker.port, tmp_path, prefix=prefix, client_id=unique("gw"))
    topic = f"{prefix}/z2m/rom103/snor"
    async with peer(broker.port, prefix) as p:
        async with running(config):
            pass  # the persistent session and its subscriptions exist from here on
        await p.client.publish(topic, orjson.dumps({"action": "single"}), qos=1, retain=True)
        try:
            async with running(config):
                _, ring = await p.next()
        finally:
            await p.client.publish(topic, b"", qos=1, retain=True)
    assert ring["type"] == "ring"
    assert ring["kind"] == "pull_cord"
