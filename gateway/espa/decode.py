"""Sans-IO decoder for the ESPA driver's Inbound payloads: one received call in, a signal out.

The driver (`drivers.espa_serial`) turns each header-1 call block into JSON
`{"address", "message", "call_type", "priority", "beep", "transmissions"}` on topic
`espa/<link>/<address>`. The call address names the device (`DeviceConfig.name`, else the
device id); call type '1' (reset) clears the alert, anything else raises it (§7). A call
from an address naming no device raises the technical `unknown_call_point` alarm.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any, Final

import orjson

from gateway.config import Config, DeviceConfig
from gateway.decoders import StatelessDecoder
from gateway.errors import DecodeError
from gateway.espa.records import MAX_CALL_ADDRESS_LENGTH, CallType, Priority
from gateway.model import Signal, SignalState

__all__ = ["EspaDecoder", "espa_signal_id"]

MAX_PAYLOAD: Final = 4096  # a legal call block is ~170 bytes; JSON adds little
_CALL_TYPES: Final = frozenset(t.value for t in CallType)
_PRIORITIES: Final = frozenset(p.value for p in Priority)


def espa_signal_id(topic: str, payload: bytes, now: float) -> str:
    """Return a signal id unique per received call: a nurse call repeats identical blocks."""
    digest = hashlib.blake2b(
        topic.encode() + b"\0" + payload + b"\0" + repr(now).encode(), digest_size=10
    )
    return digest.hexdigest()


class EspaDecoder(StatelessDecoder):
    """Decodes ESPA calls received by the serial driver into raised or cleared signals."""

    def __init__(
        self,
        *,
        source: str,
        config: Config,
        new_id: Callable[[str, bytes, float], str] = espa_signal_id,
    ) -> None:
        self.source = source
        self._new_id = new_id
        self._by_address: dict[str, tuple[str, DeviceConfig]] = {}
        for dev_id, dc in config.devices.items():
            if dc.source in (None, source):
                self._by_address[dc.name or dev_id] = (dev_id, dc)

    def decode(
        self,
        topic: str,
        payload: bytes,
        now: float,
        *,
        retained: bool = False,
        packet_id: int = 0,
    ) -> list[Signal]:
        """Decode one received call; raise DecodeError on malformed input or unknown address.

        ESPA calls are never redelivered: their ids are unique per call, `packet_id` unused.
        """
        if len(payload) > MAX_PAYLOAD:
            raise DecodeError("payload_too_large", f"{len(payload)} bytes")
        try:
            data = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            raise DecodeError("malformed_json", str(exc)[:80]) from None
        if not isinstance(data, dict):
            raise DecodeError("bad_shape", "expected a JSON object")
        address = data.get("address")
        if not isinstance(address, str) or not address or len(address) > MAX_CALL_ADDRESS_LENGTH:
            raise DecodeError("bad_field", "address must be a call address of 1-16 characters")
        call_type = _optional(data, "call_type", _CALL_TYPES)
        priority = _optional(data, "priority", _PRIORITIES)
        beep = data.get("beep")
        if beep is not None and not isinstance(beep, str):
            raise DecodeError("bad_field", "beep must be a string")
        transmissions = data.get("transmissions")
        if transmissions is not None and (
            isinstance(transmissions, bool) or not isinstance(transmissions, int)
        ):
            raise DecodeError("bad_field", "transmissions must be an integer")
        entry = self._by_address.get(address)
        state = SignalState.CLEARED if call_type == CallType.RESET else SignalState.RAISED
        if entry is None:
            if state is SignalState.CLEARED:
                raise DecodeError("unknown_device", address)
            # The line has ACKed it: the nurse-call system believes it paged. A call point
            # missing from `devices:` (or a misspelt name) must reach a technician.
            return [self._unknown_call_point(topic, payload, now, address, call_type)]
        dev_id, dc = entry
        attrs: dict[str, Any] = {"address": address}
        # The display message is kept out of attrs: nurse-call texts may name residents.
        for key, value in (
            ("call_type", call_type),
            ("priority", priority),
            ("beep", beep),
            ("transmissions", transmissions),
        ):
            if value is not None:
                attrs[key] = value
        return [
            Signal(
                id=self._new_id(topic, payload, now),
                source=self.source,
                device=dev_id,
                room=dc.room,
                kind=dc.kind,
                state=state,
                ts=now,
                attrs=attrs,
                received_at=now,
            )
        ]

    def _unknown_call_point(
        self, topic: str, payload: bytes, now: float, address: str, call_type: str | None
    ) -> Signal:
        attrs: dict[str, Any] = {"address": address}
        if call_type is not None:
            attrs["call_type"] = call_type
        return Signal(
            id=self._new_id(topic, payload, now),
            source=self.source,
            device=f"espa:{_link_of(topic)}:{address}",
            room="",
            kind="unknown_call_point",
            state=SignalState.RAISED,
            ts=now,
            attrs=attrs,
            received_at=now,
        )


def call_address(device: str, config: Config) -> str | None:
    """The call address a device's ESPA calls come from (None: not a device of `config`)."""
    if device.startswith("espa:"):  # an unknown call point: espa:<link>:<address>
        parts = device.split(":", 2)
        return parts[2] if len(parts) == 3 else None
    dc = config.devices.get(device)
    return None if dc is None else (dc.name or device)


def _link_of(topic: str) -> str:
    """The link name of an `espa/<link>/<address>` topic."""
    parts = topic.split("/", 2)
    return parts[1] if len(parts) == 3 and parts[0] == "espa" else topic


def _optional(data: dict[str, Any], key: str, allowed: frozenset[str]) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or value not in allowed:
        raise DecodeError("bad_field", f"{key} must be one of {', '.join(sorted(allowed))}")
    return value
