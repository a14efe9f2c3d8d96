"""The seams between the core and its drivers: small Protocols and the types they pass."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Literal, Protocol

from gateway.model import Delivery, Response, Signal, fast_init


@fast_init
@dataclasses.dataclass(frozen=True, slots=True)
class Inbound:
    """Raw bytes from a source, not yet decoded; `ack` tells the source it is journaled."""

    source: str
    topic: str
    payload: bytes
    received_at: float
    dup: bool = False
    ack: Callable[[], None] | None = None
    # The source sends it again if it is never acknowledged (MQTT QoS 1), so it may be
    # dropped during a shutdown; an ESPA call may not: its sender retries only for seconds.
    redeliverable: bool = False
    # Replayed by the broker because we subscribed (MQTT retain flag): last state, not news.
    retain: bool = False
    # The MQTT packet identifier (0 for none): a redelivery keeps it, a new message does not.
    packet_id: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class RawResponse:
    """A handset's answer as bytes, not yet validated; `ack` once its outcome is journaled."""

    handset: str
    payload: bytes
    received_at: float
    ack: Callable[[], None] | None = None
    dup: bool = False  # the broker sent it before (MQTT DUP): maybe journaled already
    packet_id: int = 0  # the MQTT packet id (0: QoS 0, or not MQTT), kept by a redelivery
    # The broker's stored copy, sent because alertgw subscribed: an answer long applied.
    retain: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class DeliveryReport:
    """A channel's word on one delivery beyond its own ACK (e.g. ESPA status: paged, fault)."""

    handset: str
    alert_id: str
    status: Literal["delivered", "failed"]
    ts: float
    detail: str = ""
    action: str = "ring"  # of the message it reports on: only a failed ring moves an alert


@dataclasses.dataclass(frozen=True, slots=True)
class HandsetStatus:
    """A handset app's own word on whether it is running (its retained status or will)."""

    handset: str
    payload: bytes
    received_at: float


Item = Inbound | RawResponse | Response | Signal | DeliveryReport | HandsetStatus
Put = Callable[[Item], None]


class Source(Protocol):
    """A long-lived producer of inbound messages; handles its own reconnects."""

    name: str

    async def run(self, put: Put) -> None:
        """Run forever, calling `put` for every message received."""
        ...


class HandsetChannel(Protocol):
    """Reaches handsets; `send` returns once the channel confirmed the message."""

    name: str

    async def run(self, put: Put) -> None:
        """Run forever: keep the link up and pass handset responses to `put`."""
        ...

    async def send(self, delivery: Delivery) -> None:
        """Deliver one message; raise DeliveryError when the link is down."""
        ...
