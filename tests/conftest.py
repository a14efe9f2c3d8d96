"""Shared fixtures: a real Mosquitto broker on a free loopback port, and config builders."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from gateway.app import Gateway
from gateway.config import Config, MqttConfig, parse_config


def free_port() -> int:
    """Return a loopback TCP port that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def mosquitto_binary() -> str:
    """Find the broker binary (Debian puts it in /usr/sbin)."""
    found = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
    )
    if found is None:
        pytest.fail("mosquitto is not installed: run `make test`, which installs it")
    return found


@dataclasses.dataclass
class Broker:
    """A Mosquitto process owned by the test session."""

    port: int
    workdir: Path
    extra: str = ""
    body: str | None = None  # a whole config instead of the default ({port}, {workdir})
    proc: subprocess.Popen[bytes] | None = None
    host: str = "127.0.0.1"

    @property
    def conf(self) -> Path:
        """The broker's config file."""
        return self.workdir / "mosquitto.conf"

    def start(self) -> None:
        """Start the broker and wait until it accepts connections."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.body is not None:
            self.conf.write_text(self.body.format(port=self.port, workdir=self.workdir))
        else:
            self._write_default()
        self._launch()

    def _write_default(self) -> None:
        self.conf.write_text(
            # As root Mosquitto drops to user `mosquitto`, which cannot write pytest's 0700
            # tmp dirs: its persistence file (and so a restart's queued messages) would be lost.
            ("user root\n" if os.geteuid() == 0 else "") + f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "set_tcp_nodelay true\n"
            "persistence true\n"
            f"persistence_location {self.workdir}/\n"
            "max_queued_messages 100000\n"
            f"log_dest file {self.workdir}/mosquitto.log\n" + self.extra
        )

    def _launch(self) -> None:
        self.proc = subprocess.Popen(
            [mosquitto_binary(), "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError(f"mosquitto exited: {err}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2),
            ):
                return
            time.sleep(0.05)
        raise RuntimeError("mosquitto did not start listening")

    def stop(self) -> None:
        """Stop the broker (SIGTERM, so it writes its persistence file)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            if self.proc.stderr is not None:
                self.proc.stderr.close()
        self.proc = None

    def restart(self) -> None:
        """Stop and start again on the same port, keeping persisted sessions."""
        self.stop()
        self.start()


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
