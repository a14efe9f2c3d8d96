"""Shared fixtures: a real Mosquitto broker on a free loopback port, and config builders."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from gateway.app import Gateway
from gateway.config import Config, MqttConfig, parse_config
from tests.mosquitto import Broker, free_port


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """A Mosquitto broker for the whole session (never the system service)."""
    b = Broker(port=free_port(), workdir=tmp_path_factory.mktemp("mosquitto"))
    b.start()
    yield b
    b.stop()


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[Broker]:
    """A Mosquitto broker for one test that may stop or restart it."""
    b = Broker(port=free_port(), workdir=tmp_path / "mosquitto")
    b.start()
    yield b
    b.stop()


def unique(prefix: str) -> str:
    """Return a short unique id (client ids and topics must not collide across tests)."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


BASE_YAML = """
site: {{name: Test unit, timezone: Europe/Oslo}}
mqtt:
  host: 127.0.0.1
  port: {port}
  client_id: {client_id}
  status_topic: {prefix}/status
  protocol: "{protocol}"
  backoff_initial: 0.05
  backoff_max: 0.5
sources:
  zigbee: {{type: mqtt, decoder: zigbee2mqtt, topics: ["{prefix}/z2m/#"], base_topic: {prefix}/z2m}}
  integrator: {{type: mqtt, decoder: json, topics: ["{prefix}/in/#"]}}
zones:
  east: {{rooms: ["101", "102", "103"]}}
  west: {{rooms: ["201"]}}
devices:
  bed-101: {{room: "101", kind: bed_exit, name: rom101/seng, tags: [fall_risk]}}
  door-102: {{room: "102", kind: door_open, name: rom102/dor}}
  cord-103: {{room: "103", kind: pull_cord, name: rom103/snor}}
  epi-201: {{room: "201", kind: epilepsy, name: rom201/epi}}
  fall-101: {{room: "101", kind: fall}}
handsets:
  night1: {{channel: mqtt, address: {prefix}/handset/night1}}
  night2: {{channel: mqtt, address: {prefix}/handset/night2}}
routing:
  - {{zones: [east], handsets: [night1]}}
  - {{zones: [west], handsets: [night2]}}
  - {{kinds: ['*'], handsets: [night1, night2]}}
journal: {{path: {db}}}
metrics: {{enabled: false}}
"""


# Both MQTT versions alertgw speaks; key tests through the broker run under each.
PROTOCOLS = ("5", "3.1.1")


def base_text(
    broker_port: int,
    tmp_path: Path,
    *,
    prefix: str | None = None,
    client_id: str | None = None,
    protocol: str | None = None,
) -> str:
    """The standard test config's YAML (MQTT `protocol` or the default)."""
    return BASE_YAML.format(
        protocol=protocol or MqttConfig().protocol,
        port=broker_port,
        client_id=client_id or unique("alertgw"),
        prefix=prefix or unique("t"),
        db=tmp_path / "journal.db",
    )


def make_config(
    broker_port: int,
    tmp_path: Path,
    *,
    prefix: str | None = None,
    client_id: str | None = None,
    extra: str = "",
    protocol: str | None = None,
) -> Config:
    """Build the standard test config against a broker port."""
    text = base_text(broker_port, tmp_path, prefix=prefix, client_id=client_id, protocol=protocol)
    return parse_config(text + extra, filename="test.yaml")


@dataclasses.dataclass
class Running:
    """A gateway running in-process, stopped by `stop()`."""

    gateway: Gateway
    task: asyncio.Task[None]
    stop_event: asyncio.Event

    async def stop(self) -> None:
        """Trigger a clean shutdown and wait for it."""
        self.stop_event.set()
        await asyncio.wait_for(self.task, 15)


@contextlib.asynccontextmanager
async def running(config: Config, **kwargs: object) -> AsyncIterator[Running]:
    """Run a gateway until the block ends; wait until its MQTT session is up."""
    gw = Gateway(config, **kwargs)  # type: ignore[arg-type]
    stop = asyncio.Event()
    task = asyncio.create_task(gw.run(stop.wait), name="test.gateway")
    await asyncio.wait_for(gw.ready.wait(), 10)
    if gw.link is not None:
        await asyncio.wait_for(gw.link.wait_connected(), 10)
    r = Running(gw, task, stop)
    try:
        yield r
    finally:
        if not task.done():
            await r.stop()
