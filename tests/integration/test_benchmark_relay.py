"""The benchmark's paho relay (the Python floor) through a real Mosquitto."""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import signal
import threading

import paho.mqtt.client as paho

from benchmarks.hotpath import FLOOR_TOPIC, RELAY_TOPIC, connect, floor_plan, relay_main
from tests.conftest import Broker


def test_relay_republishes_each_message_unchanged_on_the_floor_topic(broker: Broker) -> None:
    """What goes in on the relay topic comes out on the floor topic, once, as sent."""
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    relay = ctx.Process(target=relay_main, args=(child, broker.port), daemon=True)
    relay.start()
    got: queue.Queue[bytes] = queue.Queue()
    subscribed = threading.Event()

    def on_message(_c: paho.Client, _u: object, msg: paho.MQTTMessage) -> None:
        got.put(msg.payload)

    client = connect(broker.port, "test-relay-peer")
    client.on_message = on_message
    client.on_subscribe = lambda *_: subscribed.set()
    client.loop_start()
    try:
        assert parent.poll(20)
        assert parent.recv() == "ready"
        client.subscribe(FLOOR_TOPIC, 1)
        assert subscribed.wait(5)
        plan = floor_plan(3, "relay-test", topic=RELAY_TOPIC)
        for topic, payload in zip(plan.topics, plan.payloads, strict=True):
            client.publish(topic, payload, qos=1).wait_for_publish(5)
        received = [got.get(timeout=5) for _ in plan.payloads]
        assert received == plan.payloads
        assert got.empty()
    finally:
        client.loop_stop()
        client.disconnect()
        if relay.pid is not None:
            os.kill(relay.pid, signal.SIGTERM)
        relay.join(5)
