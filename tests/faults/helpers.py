"""Fault-injection helpers: a stream of JSON signals, a retrying sender, a durable handset."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiomqtt
import orjson
import paho.mqtt.client as paho
import pytest

from gateway.config import Config, load_config
from gateway.errors import JournalError
from gateway.journal import Journal

DEVICES = 30
# Started as root, Mosquitto drops to user `mosquitto`, which cannot write into pytest's
# 0700 tmp dirs: persistence and the log then fail silently. Stay root in that case.
AS_ROOT = "user root\n" if os.geteuid() == 0 else ""

FAULT_YAML = """
site: {{name: Fault unit, timezone: Europe/Oslo}}
mqtt:
  host: 127.0.0.1
  port: {port}
  client_id: {client_id}
  status_topic: {prefix}/status
  backoff_initial: 0.05
  backoff_max: 0.5
sources:
  integrator: {{type: mqtt, decoder: json, topics: ["{prefix}/in/#"]}}
zones:
  east: {{rooms: [{rooms}]}}
devices:
{devices}
handsets:
  h1: {{channel: mqtt, address: {prefix}/handset/h1}}
routing:
  - {{kinds: ['*'], handsets: [h1]}}
journal: {{path: {db}, synchronous: full}}
metrics: {{enabled: false}}
"""


def fault_config(
    port: int, tmp_path: Path, *, prefix: str, client_id: str, devices: int = DEVICES
) -> tuple[Config, Path]:
    """Write the fault-test config (one MQTT handset `h1`, json sources) and load it."""
    text = FAULT_YAML.format(
        port=port,
        client_id=client_id,
        prefix=prefix,
        rooms=", ".join(f'"r{k}"' for k in range(devices)),
        devices="\n".join(f'  d{k}: {{room: "r{k}", kind: pull_cord}}' for k in range(devices)),
        db=tmp_path / "journal.db",
    )
    path = tmp_path / "alertgw.yaml"
    path.write_text(text, encoding="utf-8")
    return load_config(path), path


def stream(n: int, devices: int = DEVICES) -> list[dict[str, str]]:
    """`n` signals `s<i>` on `d<i % devices>`, raised and cleared in turn per device."""
    return [
        {
            "id": f"s{i}",
            "device": f"d{i % devices}",
            "state": "raised" if (i // devices) % 2 == 0 else "cleared",
        }
        for i in range(n)
    ]


def expected_rings(signals: list[dict[str, str]]) -> set[str]:
    """Signal ids that must each ring the handset exactly once."""
    return {s["id"] for s in signals if s["state"] == "raised"}


@dataclasses.dataclass(frozen=True, slots=True)
class Tally:
    """What the handset saw, against what it should have seen."""

    expected: int
    arrived: int
    lost: int
    duplicate_rings: int
    idempotent_repeats: int
    unexpected: int

    def line(self, name: str, sent: int, **extra: object) -> str:
        """One line of figures for the test log."""
        more = "".join(f" {k}={v}" for k, v in extra.items())
        return (
            f"FAULT {name}: sent={sent} expected_alerts={self.expected} arrived={self.arrived} "
            f"lost={self.lost} duplicate_rings={self.duplicate_rings} "
            f"idempotent_repeats={self.idempotent_repeats} unexpected={self.unexpected}{more}"
        )


def tally(messages: list[dict[str, Any]], expected: set[str]) -> Tally:
    """Count rings by signal id; the same (alert_id, seq) twice is an allowed repeat."""
    seen: set[tuple[str, int]] = set()
    repeats = 0
    rings: Counter[str] = Counter()
    for msg in messages:
        pair = (str(msg["alert_id"]), int(msg["seq"]))
        if pair in seen:
            repeats += 1
            continue
        seen.add(pair)
        if msg.get("type") == "ring":
            rings[str(msg.get("signal_id"))] += 1
    arrived = expected & set(rings)
    return Tally(
        expected=len(expected),
        arrived=len(arrived),
        lost=len(expected - arrived),
        duplicate_rings=sum(c - 1 for s, c in rings.items() if s in expected),
        idempotent_repeats=repeats,
        unexpected=sum(c for s, c in rings.items() if s not in expected),
    )


class Handset:
    """A handset app on a persistent QoS 1 session that records every message it acks.

    Messages are recorded in paho's callback, before paho sends the PUBACK, so stopping the
    app can never lose a message the broker already considers delivered.
    """

    def __init__(self, port: int, topic: str, *, client_id: str) -> None:
        self.port = port
        self.topic = topic
        self.client_id = client_id
        self.messages: list[dict[str, Any]] = []
        self.handsets: list[str] = []  # the handset each message was addressed to
        self.rung: set[str] = set()  # signal ids that rang at least once
        self._read = 0
        self.changed = asyncio.Event()
        self.connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Connect (and keep reconnecting) in the background."""
        assert self._task is None
        self._task = asyncio.create_task(self._session_loop(), name="test.handset")

    async def stop(self) -> None:
        """Disconnect cleanly; the broker keeps the session and queues for it."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.connected.clear()

    async def wait_connected(self, timeout: float = 10.0) -> None:
        """Return once the session is up."""
        async with asyncio.timeout(timeout):
            await self.connected.wait()

    def rings(self) -> int:
        """How many ring messages arrived (repeats included)."""
        return sum(1 for m in self.messages if m.get("type") == "ring")

    async def next(self, timeout: float = 5.0) -> tuple[str, dict[str, Any]]:
        """Return the next message not yet read as (handset, payload)."""
        async with asyncio.timeout(timeout):
            while self._read >= len(self.messages):
                self.changed.clear()
                await self.changed.wait()
        self._read += 1
        return self.handsets[self._read - 1], self.messages[self._read - 1]

    async def nothing(self, within: float = 0.5) -> bool:
        """True when no unread message arrives within `within` seconds."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                while self._read >= len(self.messages):
                    self.changed.clear()
                    await self.changed.wait()
        return self._read >= len(self.messages)

    async def wait_for(self, done: set[str], timeout: float) -> None:
        """Wait until a ring for every signal id in `done` arrived, or the timeout passes."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while not done <= self.rung:
                    self.changed.clear()
                    await self.changed.wait()

    async def _session_loop(self) -> None:
        while True:
            try:
                await self._session()
            except aiomqtt.MqttError:
                self.connected.clear()
                await asyncio.sleep(0.1)

    async def _session(self) -> None:
        client = aiomqtt.Client(
            "127.0.0.1", self.port, identifier=self.client_id, clean_session=False, timeout=5
        )
        paho_client: paho.Client = client._client

        def on_message(c: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:  # noqa: ANN401
            payload = orjson.loads(msg.payload)
            self.messages.append(payload)
            if payload.get("type") == "ring":
                self.rung.add(str(payload.get("signal_id")))
            self.handsets.append(msg.topic.split("/")[-2])
            self.changed.set()

        paho_client.on_message = on_message
        async with client:
            await client.subscribe(self.topic, qos=1)
            self.connected.set()
            # Messages never reach aiomqtt's queue (recorded above); this waits for the end.
            async for _ in client.messages:
                pass


class Sender:
    """Publishes signals at QoS 1, retrying each until the broker acknowledges it."""

    def __init__(self, port: int, topic: str) -> None:
        self.port = port
        self.topic = topic
        self.retries = 0
        self._client: aiomqtt.Client | None = None
        self._stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> Sender:
        """Connect once."""
        await self._connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Disconnect."""
        await self._stack.aclose()

    async def _connect(self) -> None:
        self._stack = contextlib.AsyncExitStack()
        client = aiomqtt.Client("127.0.0.1", self.port, timeout=2, max_inflight_messages=1000)
        await self._stack.enter_async_context(client)
        self._client = client

    async def send(self, payload: dict[str, str], *, deadline: float = 30.0) -> None:
        """Publish one signal; on any failure reconnect and publish it again."""
        async with asyncio.timeout(deadline):
            while True:
                try:
                    if self._client is None:
                        await self._connect()
                    assert self._client is not None
                    await self._client.publish(self.topic, orjson.dumps(payload), qos=1)
                except aiomqtt.MqttError:
                    self.retries += 1
                    self._client = None
                    with contextlib.suppress(aiomqtt.MqttError):
                        await self._stack.aclose()
                    await asyncio.sleep(0.1)
                    continue
                return


@contextlib.asynccontextmanager
async def sender(port: int, topic: str) -> AsyncIterator[Sender]:
    """A connected retrying sender."""
    async with Sender(port, topic) as s:
        yield s


def journal_unreadable_until(monkeypatch: pytest.MonkeyPatch, readable: asyncio.Event) -> None:
    """The journal can be neither opened nor read (disk I/O errors) until `readable`."""
    open_journal = Journal.open

    async def unreadable(self: Journal) -> None:
        if not readable.is_set():
            raise JournalError("cannot open the journal: disk I/O error")
        await open_journal(self)

    async def no_look(cls: type[Journal], path: object) -> Journal:
        raise JournalError("cannot open the journal: disk I/O error")

    monkeypatch.setattr(Journal, "open", unreadable)
    monkeypatch.setattr(Journal, "open_readonly", classmethod(no_look))
