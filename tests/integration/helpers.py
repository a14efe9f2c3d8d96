"""Test-side MQTT peers: sensors that publish and handsets that listen and answer."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import aiomqtt
import orjson

from drivers.mqtt import MqttLink
from gateway.config import MqttConfig
from gateway.journal import Journal, StoredAlert
from gateway.metrics import Metrics
from tests.conftest import unique


def bare_link(
    port: int,
    prefix: str,
    *,
    sources: dict[str, list[str]] | None = None,
    handsets: dict[str, str] | None = None,
    protocol: str | None = None,
) -> MqttLink:
    """An MQTT link alone (no gateway) on a fresh client id under `prefix`."""
    config = MqttConfig(port=port, client_id=unique("alertgw"), status_topic=f"{prefix}/s")
    if protocol is not None:
        config = dataclasses.replace(config, protocol=protocol)  # type: ignore[arg-type]
    return MqttLink(
        config=config, sources=sources or {}, handsets=handsets or {}, metrics=Metrics()
    )


async def latest_alert(path: str | Path) -> StoredAlert:
    """The most recently raised alert in the journal at `path`, with its timeline."""
    journal = Journal(path)
    await journal.open()
    try:
        (stored,) = await journal.recent_alerts(1)
    finally:
        await journal.close()
    return stored


class Peer:
    """A plain MQTT client standing in for sensors and handset apps."""

    def __init__(self, client: aiomqtt.Client, prefix: str) -> None:
        self.client = client
        self.prefix = prefix
        self.received: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()

    async def z2m(self, name: str, payload: dict[str, Any]) -> None:
        """Publish a Zigbee2MQTT state message for a friendly name."""
        await self.client.publish(f"{self.prefix}/z2m/{name}", orjson.dumps(payload), qos=1)

    async def json_signal(self, payload: dict[str, Any]) -> None:
        """Publish a generic integrator signal."""
        await self.client.publish(f"{self.prefix}/in/x", orjson.dumps(payload), qos=1)

    async def respond(self, handset: str, alert_id: str, response: str) -> None:
        """Answer an alert as a handset app would."""
        await self.client.publish(
            f"{self.prefix}/handset/{handset}/response",
            orjson.dumps({"alert_id": alert_id, "response": response}),
            qos=1,
        )

    async def next(self, timeout: float = 5.0) -> tuple[str, dict[str, Any]]:
        """Return the next handset message as (handset, payload)."""
        return await asyncio.wait_for(self.received.get(), timeout)

    async def nothing(self, within: float = 0.5) -> bool:
        """True when no handset message arrives within `within` seconds."""
        try:
            msg = await asyncio.wait_for(self.received.get(), within)
        except TimeoutError:
            return True
        self.received.put_nowait(msg)
        return False


@contextlib.asynccontextmanager
async def peer(
    port: int, prefix: str, *, listen: bool = True, handsets: Sequence[str] = ("+",)
) -> AsyncIterator[Peer]:
    """Connect a peer; when `listen`, collect the handset messages under the prefix.

    `handsets` names the handsets whose apps listen (default: all of them).
    """
    async with aiomqtt.Client("127.0.0.1", port) as client:
        p = Peer(client, prefix)
        if listen:
            for handset in handsets:
                await client.subscribe(f"{prefix}/handset/{handset}/alert", qos=1)

        async def pump() -> None:
            async for message in client.messages:
                handset = str(message.topic).split("/")[-2]
                assert isinstance(message.payload, bytes)
                p.received.put_nowait((handset, orjson.loads(message.payload)))

        task = asyncio.create_task(pump())
        try:
            yield p
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
