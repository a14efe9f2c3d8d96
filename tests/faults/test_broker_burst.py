"""A 20,000-signal QoS 1 burst: none lost with the shipped broker settings, an alarm with stock."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiomqtt
import orjson
import pytest

from gateway.journal import Journal
from tests.conftest import Broker, free_port, make_config, running, unique
from tests.faults.helpers import (
    AS_ROOT,
    Handset,
    expected_rings,
    fault_config,
    stream,
    tally,
)
from tests.integration.helpers import peer

pytestmark = pytest.mark.faults

BURST = 20_000
IN_FLIGHT = 500
SHIPPED_CONF = Path(__file__).resolve().parents[2] / "config" / "mosquitto" / "alertgw.conf"
SYS_DROPPED = "$SYS/broker/publish/messages/dropped"


def shipped_conf() -> str:
    """The shipped broker settings on the test port, persisting under the test's directory."""
    text = SHIPPED_CONF.read_text(encoding="utf-8")
    assert "{" not in text, "the broker body is a format template"
    text, n = re.subn(r"(?m)^listener .*$", "listener {port} 127.0.0.1", text)
    assert n == 1, "the shipped config should have exactly one listener line"
    return (
        AS_ROOT
        + text
        + "\npersistence_location {workdir}/\n"
        + "log_dest file {workdir}/mosquitto.log\n"
    )


# Stock Mosquitto queue limits (1000 messages per client), $SYS every second.
STOCK_CONF = (
    AS_ROOT + "listener {port} 127.0.0.1\nallow_anonymous true\n"
    "max_queued_messages 1000\nsys_interval 1\nlog_dest file {workdir}/mosquitto.log\n"
)


@contextlib.contextmanager
def conf_broker(tmp_path: Path, settings: str) -> Iterator[Broker]:
    """A broker for one test from `shipped` or `stock` settings."""
    body = shipped_conf() if settings == "shipped" else STOCK_CONF
    b = Broker(port=free_port(), workdir=tmp_path / "mosquitto", body=body)
    b.start()
    try:
        yield b
    finally:
        b.stop()


async def burst(port: int, topic: str, signals: list[dict[str, str]]) -> float:
    """Publish every signal at QoS 1 with IN_FLIGHT awaiting PUBACK at once; return seconds."""
    payloads = iter([orjson.dumps(s) for s in signals])
    async with aiomqtt.Client("127.0.0.1", port, max_inflight_messages=IN_FLIGHT) as client:

        async def worker() -> None:
            # Taking the next payload and handing it to paho happen without an await between
            # them, so the broker receives the signals in stream order.
            for payload in payloads:
                await client.publish(topic, payload, qos=1, timeout=60)

        t0 = time.monotonic()
        async with asyncio.TaskGroup() as tg:
            for _ in range(IN_FLIGHT):
                tg.create_task(worker())
        return time.monotonic() - t0


class DropWatch:
    """The broker's $SYS drop counter as the test sees it."""

    def __init__(self) -> None:
        self.first: int | None = None
        self.last = 0


@contextlib.asynccontextmanager
async def watch_drops(port: int) -> AsyncIterator[DropWatch]:
    """Follow `$SYS/broker/publish/messages/dropped`."""
    watch = DropWatch()
    async with aiomqtt.Client("127.0.0.1", port) as client:
        await client.subscribe(SYS_DROPPED, qos=0)

        async def pump() -> None:
            async for message in client.messages:
                assert isinstance(message.payload, bytes)
                value = int(message.payload)
                if watch.first is None:
                    watch.first = value
                watch.last = value

        task = asyncio.create_task(pump(), name="test.sys")
        try:
            yield watch
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def test_shipped_broker_config_lets_alertgw_connect(tmp_path: Path) -> None:
    """As shipped (no user name, as config/example.yaml connects), not `not authorised`.

    Mosquitto 2.x refuses anonymous clients on a configured listener unless
    `allow_anonymous true` says otherwise: the file alone used to lock alertgw out.
    """
    with conf_broker(tmp_path, "shipped") as broker:
        async with aiomqtt.Client("127.0.0.1", broker.port, identifier=unique("anon")):
            pass


async def test_burst_through_shipped_broker_config_loses_nothing(tmp_path: Path) -> None:
    """20,000 signals as fast as possible through the shipped broker settings: every raise rings."""
    prefix = unique("burst")
    signals = stream(BURST)
    expected = expected_rings(signals)
    with conf_broker(tmp_path, "shipped") as broker:
        config, _ = fault_config(broker.port, tmp_path, prefix=prefix, client_id=unique("gw"))
        handset = Handset(broker.port, f"{prefix}/handset/+/alert", client_id=unique("h1"))
        handset.start()
        try:
            await handset.wait_connected()
            async with running(config) as r:
                t0 = time.monotonic()
                published = await burst(broker.port, f"{prefix}/in/x", signals)
                await handset.wait_for(expected, timeout=90)
                total = time.monotonic() - t0
                alarms = r.gateway.metrics.alerts.labels("broker_dropping", "raised")._value.get()
        finally:
            await handset.stop()
    t = tally(handset.messages, expected)
    print(
        t.line(
            "burst_shipped",
            BURST,
            publish_per_s=round(BURST / published),
            rings_per_s=round(t.arrived / total),
            seconds=round(total, 1),
            broker_dropping_alarms=int(alarms),
        )
    )
    assert t.lost == 0
    assert t.duplicate_rings == 0
    assert t.unexpected == 0
    assert alarms == 0


async def test_burst_through_stock_broker_raises_broker_dropping(tmp_path: Path) -> None:
    """With stock queue limits and the handset offline the broker drops; alertgw alarms on it."""
    prefix = unique("burst")
    signals = stream(BURST)
    expected = expected_rings(signals)
    with conf_broker(tmp_path, "stock") as broker:
        config, _ = fault_config(broker.port, tmp_path, prefix=prefix, client_id=unique("gw"))
        handset = Handset(broker.port, f"{prefix}/handset/+/alert", client_id=unique("h1"))
        handset.start()
        await handset.wait_connected()
        await handset.stop()  # subscribed, persistent, and now offline: the broker queues
        async with watch_drops(broker.port) as drops, running(config) as r:
            metric = r.gateway.metrics.alerts.labels("broker_dropping", "raised")
            t0 = time.monotonic()
            published = await burst(broker.port, f"{prefix}/in/x", signals)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(30):
                    while metric._value.get() < 1:
                        await asyncio.sleep(0.1)
            alarms = metric._value.get()
            signals_in = sum(
                r.gateway.metrics.signals.labels("integrator", "pull_cord", state)._value.get()
                for state in ("raised", "cleared")
            )
            await asyncio.sleep(1.5)  # one more $SYS interval for the test's own reading
        handset.start()
        try:
            await handset.wait_connected()
            await handset.wait_for(expected, timeout=3)  # what little the broker kept
        finally:
            await handset.stop()
    journal = Journal(config.journal.path)
    await journal.open()
    try:
        cursor = await journal.db.execute(
            "SELECT count(*) FROM alerts WHERE kind = 'broker_dropping'"
        )
        row = await cursor.fetchone()
    finally:
        await journal.close()
    t = tally(handset.messages, expected)
    dropped = drops.last - (drops.first or 0)
    print(
        t.line(
            "burst_stock",
            BURST,
            publish_per_s=round(BURST / published),
            seconds=round(time.monotonic() - t0, 1),
            gateway_signals_in=int(signals_in),
            broker_dropped=dropped,
            broker_dropping_alarms=int(alarms),
            journaled_alarms=row[0] if row else 0,
        )
    )
    assert dropped > 0
    assert alarms >= 1
    assert row is not None
    assert row[0] >= 1  # the alarm is in the journal, for the audit


async def test_a_qos0_press_while_alertgw_restarts_rings_after_it(tmp_path: Path) -> None:
    """Zigbee2MQTT publishes at QoS 0 by default; the shipped broker queues it for alertgw.

    Stock Mosquitto queues only QoS 1 for an offline persistent session: every press during
    a restart (which any handset or source change needs) was lost without a word.
    """
    with conf_broker(tmp_path, "shipped") as b:
        prefix = unique("t")
        config = make_config(b.port, tmp_path, prefix=prefix, client_id=unique("gw"))
        async with running(config):
            pass  # the first start creates the persistent session and its subscriptions
        async with aiomqtt.Client("127.0.0.1", b.port) as z2m:
            await z2m.publish(f"{prefix}/z2m/rom103/snor", b'{"action": "single"}', qos=0)
        async with peer(b.port, prefix) as p, running(config):
            _, ring = await p.next(timeout=5.0)
    assert (ring["type"], ring["kind"], ring["room"]) == ("ring", "pull_cord", "103")
