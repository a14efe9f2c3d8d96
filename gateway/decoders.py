"""Sans-IO payload decoders: MQTT topic + bytes in, signals out.

Decoders keep the little state they need (last level per device and field) so that
Zigbee2MQTT's repeated full-state messages ring once per transition, not once per report.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import orjson

from gateway.config import BUILTIN_KINDS, Config, DeviceConfig
from gateway.errors import DecodeError
from gateway.model import Signal, SignalState

MAX_PAYLOAD = 64 * 1024
MAX_TOPIC = 512
MAX_DEPTH = 32
IdFactory = Callable[[str, bytes, float], str]


def content_id(topic: str, payload: bytes, ts: float) -> str:
    """Return a signal id derived from content, so a broker redelivery maps to the same id."""
    digest = hashlib.blake2b(topic.encode() + b"\0" + payload, digest_size=10)
    return digest.hexdigest()


def _id_topic(topic: str, packet_id: int) -> str:
    """The topic a content id is derived from, with the MQTT packet id when there is one.

    A broker redelivery keeps its packet id, so it still maps to its first copy's id. A new
    message with the same bytes (the same Zigbee press an hour later) gets another packet
    id, so it is not taken for a redelivery of the first and dropped.
    """
    return f"{topic}\0{packet_id}" if packet_id else topic


class Decoder(Protocol):
    """Turns one MQTT message into zero or more signals."""

    def decode(
        self,
        topic: str,
        payload: bytes,
        now: float,
        *,
        retained: bool = False,
        packet_id: int = 0,
    ) -> list[Signal]:
        """Decode a message; raise DecodeError with a stable reason when it is malformed.

        `retained` marks a message the broker replays because we subscribed (MQTT retain
        flag): it is the source's last state, not something that just happened.
        `packet_id` is the MQTT packet identifier (0 for none), part of derived signal ids.
        """
        ...

    def levels(self) -> Mapping[str, Any]:
        """Return the remembered levels, to persist across restarts."""
        ...

    def restore(self, levels: Mapping[str, Any]) -> None:
        """Restore remembered levels saved by `levels()`."""
        ...

    def changed_levels(self) -> dict[str, Any]:
        """Return levels changed since the last call (to journal with the batch)."""
        ...


def _parse_json(payload: bytes) -> Any:  # noqa: ANN401 - JSON is untyped
    if len(payload) > MAX_PAYLOAD:
        raise DecodeError("payload_too_large", f"{len(payload)} bytes")
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise DecodeError("malformed_json", str(exc)[:80]) from None
    # orjson reads 1,024 levels but writes only 254: a payload nested between the two
    # would route, then fail its journal write on every redelivery. Fewer brackets than
    # MAX_DEPTH cannot nest deeper, so the walk runs only for payloads that might.
    if payload.count(b"[") + payload.count(b"{") > MAX_DEPTH and _deeper_than(data, MAX_DEPTH):
        raise DecodeError("too_deep", f"nested over {MAX_DEPTH} levels")
    return data


def _deeper_than(value: object, limit: int) -> bool:
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            node = list(node.values())
        if isinstance(node, list):
            if depth > limit:
                return True
            stack.extend((child, depth + 1) for child in node)
    return False


def _ts(value: Any, now: float) -> float:  # noqa: ANN401 - JSON value
    if value is None:
        return now
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise DecodeError("bad_field", "ts must be epoch seconds")
    if value > 1e11:  # milliseconds, as many integrators send
        value = value / 1000.0
    if not 0 < value < 4e9:
        raise DecodeError("bad_field", "ts out of range")
    return float(value)


class StatelessDecoder:
    """Base for decoders whose every message stands alone (no levels to remember)."""

    def levels(self) -> Mapping[str, Any]:
        """Nothing to remember."""
        return {}

    def restore(self, levels: Mapping[str, Any]) -> None:
        """Nothing to restore."""

    def changed_levels(self) -> dict[str, Any]:
        """Nothing changes."""
        return {}


class LevelMemory:
    """Base for decoders that remember a level per key, journaled across restarts.

    A restart restores them, so a transition while alertgw was down still rings and a
    replayed (retained) state that is no news does not.
    """

    def __init__(self, restore_prefix: str = "") -> None:
        self._restore_prefix = restore_prefix
        self._levels: dict[str, bool] = {}
        self._dirty: set[str] = set()

    def levels(self) -> Mapping[str, Any]:
        """Return the last known level per key."""
        return dict(self._levels)

    def restore(self, levels: Mapping[str, Any]) -> None:
        """Restore this decoder's levels saved before a restart."""
        prefix = self._restore_prefix
        self._levels.update({k: bool(v) for k, v in levels.items() if k.startswith(prefix)})

    def changed_levels(self) -> dict[str, Any]:
        """Return and forget the levels changed since the last call."""
        if not self._dirty:  # asked once per routed batch, of every decoder
            return {}
        out = {k: self._levels[k] for k in self._dirty}
        self._dirty.clear()
        return out

    def _set_level(self, key: str, active: bool) -> bool | None:
        """Record `active` for `key`; return the level before (None: never seen)."""
        previous = self._levels.get(key)
        if previous != active:
            self._levels[key] = active
            self._dirty.add(key)
        return previous


class JsonDecoder(LevelMemory):
    """The generic integrator payload: {"device", "state", "kind"?, "id"?, "ts"?, ...}.

    It remembers the last raised/cleared state per device and kind, only so that a retained
    message replayed at every (re)subscription rings when it is news, not every time.
    """

    def __init__(self, *, source: str, config: Config, new_id: IdFactory = content_id) -> None:
        self.source = source
        self._devices = {
            name: dc for name, dc in config.devices.items() if dc.source in (None, source)
        }
        self._new_id = new_id
        self._prefix = f"json:{source}:"
        super().__init__(restore_prefix=self._prefix)

    def decode(
        self,
        topic: str,
        payload: bytes,
        now: float,
        *,
        retained: bool = False,
        packet_id: int = 0,
    ) -> list[Signal]:
        """Decode one integrator message (a retained one rings only if its state is news)."""
        if len(topic) > MAX_TOPIC:
            raise DecodeError("topic_too_long", f"{len(topic)} chars")
        data = _parse_json(payload)
        if not isinstance(data, dict):
            raise DecodeError("bad_shape", "expected a JSON object")
        device = data.get("device")
        if not isinstance(device, str) or not device or len(device) > 128:
            raise DecodeError("bad_field", "device must be a non-empty string")
        dc = self._devices.get(device)
        if dc is None:
            raise DecodeError("unknown_device", device)
        state_raw = data.get("state", "raised")
        # A dict lookup: SignalState(value) goes through the enum machinery (0.3 us).
        state = _STATES.get(state_raw) if isinstance(state_raw, str) else None
        if state is None:
            raise DecodeError("bad_field", "state must be raised, cleared or report")
        kind = data.get("kind", dc.kind)
        if not isinstance(kind, str) or not kind or len(kind) > 64:
            raise DecodeError("bad_field", "kind must be a string")
        sid = data.get("id")
        if sid is not None and (not isinstance(sid, str | int) or len(str(sid)) > 128):
            raise DecodeError("bad_field", "id must be a short string")
        ts = _ts(data.get("ts"), now)
        # Most payloads carry only the known keys: no comprehension to find no extras.
        attrs = (
            {}
            if data.keys() <= _JSON_KEYS
            else {k: v for k, v in data.items() if k not in _JSON_KEYS}
        )
        if state is not SignalState.REPORT:
            active = state is SignalState.RAISED
            if self._set_level(f"{self._prefix}{device}/{kind}", active) == active and retained:
                state = SignalState.REPORT  # the broker replaying what we already know
        return [
            Signal(
                id=str(sid)
                if sid is not None
                else self._new_id(_id_topic(topic, packet_id), payload, now),
                source=self.source,
                device=device,
                room=dc.room,
                kind=kind,
                state=state,
                ts=ts,
                attrs=attrs,
                received_at=now,
            )
        ]


_JSON_KEYS = frozenset({"id", "device", "kind", "state", "ts"})
_STATES = {s.value: s for s in SignalState}


class Zigbee2MqttDecoder(LevelMemory):
    """Zigbee2MQTT device state, action and availability messages."""

    def __init__(
        self,
        *,
        source: str,
        config: Config,
        base_topic: str = "zigbee2mqtt",
        new_id: IdFactory = content_id,
    ) -> None:
        self.source = source
        self._base = base_topic.rstrip("/") + "/"
        self._new_id = new_id
        self._config = config
        # Index by Zigbee2MQTT friendly name once; names may contain '/', so topics are
        # matched against the whole name rather than split.
        self._by_name: dict[str, tuple[str, DeviceConfig]] = {}
        for dev_id, dc in config.devices.items():
            if dc.source in (None, source):
                self._by_name[dc.name or dev_id] = (dev_id, dc)
        super().__init__()

    def decode(
        self,
        topic: str,
        payload: bytes,
        now: float,
        *,
        retained: bool = False,
        packet_id: int = 0,
    ) -> list[Signal]:
        """Decode one Zigbee2MQTT message.

        A retained message is state sync: levels ring only on a change from the remembered
        level, and a retained press (`action`) is old news and never rings.
        """
        if len(topic) > MAX_TOPIC:
            raise DecodeError("topic_too_long", f"{len(topic)} chars")
        if not topic.startswith(self._base):
            raise DecodeError("foreign_topic", topic[:80])
        rest = topic[len(self._base) :]
        id_topic = _id_topic(topic, packet_id)  # `_signal` derives ids from it
        if rest.startswith("bridge/"):
            return self._bridge(rest, id_topic, payload, now)
        if rest.endswith("/availability"):
            return self._availability(id_topic, rest[: -len("/availability")], payload, now)
        if rest.endswith(("/set", "/get")):
            return []  # commands to Z2M, not observations
        entry = self._by_name.get(rest)
        if entry is None:
            raise DecodeError("unknown_device", rest[:80])
        data = _parse_json(payload)
        if not isinstance(data, dict):
            raise DecodeError("bad_shape", "expected a JSON object")
        return self._state(id_topic, payload, entry, data, now, retained=retained)

    def _signal(
        self,
        *,
        topic: str,
        payload: bytes,
        dev_id: str,
        dc: DeviceConfig,
        kind: str,
        state: SignalState,
        now: float,
        attrs: Mapping[str, Any],
    ) -> Signal:
        return Signal(
            id=self._new_id(topic + "#" + kind, payload, now),
            source=self.source,
            device=dev_id,
            room=dc.room,
            kind=kind,
            state=state,
            ts=now,
            attrs=attrs,
            received_at=now,
        )

    def _state(
        self,
        topic: str,
        payload: bytes,
        entry: tuple[str, DeviceConfig],
        data: dict[str, Any],
        now: float,
        *,
        retained: bool,
    ) -> list[Signal]:
        dev_id, dc = entry
        out: list[Signal] = []
        attrs = {k: data[k] for k in _KEEP_ATTRS if k in data}

        def emit(kind: str, state: SignalState) -> None:
            out.append(
                self._signal(
                    topic=topic,
                    payload=payload,
                    dev_id=dev_id,
                    dc=dc,
                    kind=kind,
                    state=state,
                    now=now,
                    attrs=attrs,
                )
            )

        field = dc.field or _default_field(dc.kind)
        stale_press = False
        if field == "action":
            action = data.get("action")
            # `action` is never cached by Z2M: it appears only in the press's own message.
            pressed = action not in (None, "") and (
                dc.raised in (None, True) or action == dc.raised
            )
            # A retained press is replayed at every subscription: it happened long ago.
            stale_press = pressed and retained
            if pressed and not retained:
                emit(dc.kind, SignalState.RAISED)
        elif field in data:
            # contact: true means closed, so a door is "active" when contact is false.
            raised = dc.raised if dc.raised is not None else field != "contact"
            active = data[field] == raised
            change = self._transition(f"{dev_id}/{field}", active, dc)
            if change is not None:
                emit(dc.kind, change)
        battery_low = data.get("battery_low")
        if isinstance(battery_low, bool):
            change = self._transition(f"{dev_id}/battery_low", battery_low, None)
            if change is not None:
                emit("battery_low", change)
        if stale_press and not out:
            raise DecodeError("retained_press", "a retained press is old news; not rung")
        if not out:
            # A pure report (battery, link quality, repeated state): proof of life only.
            emit(dc.kind, SignalState.REPORT)
        return out

    def _transition(
        self, key: str, active: bool, dc: DeviceConfig | None, *, baseline_raises: bool = False
    ) -> SignalState | None:
        previous = self._set_level(key, active)
        if previous is None:
            # First sight of this device: take the level as a baseline, unless it is a
            # safety-critical kind or the installer asked to alert on startup.
            if active and baseline_raises:
                return SignalState.RAISED  # a sensor or bridge already offline is a problem
            if (
                active
                and dc is not None
                and (
                    dc.alert_on_startup
                    or BUILTIN_KINDS.get(dc.kind, _NONCRIT).critical
                    or self._config.kind(dc.kind).critical
                )
            ):
                return SignalState.RAISED
            return None
        if previous == active:
            return None
        return SignalState.RAISED if active else SignalState.CLEARED

    def _availability(self, topic: str, name: str, payload: bytes, now: float) -> list[Signal]:
        entry = self._by_name.get(name)
        if entry is None:
            raise DecodeError("unknown_device", name[:80])
        dev_id, dc = entry
        state = _online_state(payload)
        if state is None:
            raise DecodeError("bad_shape", "availability must be online or offline")
        change = self._transition(f"{dev_id}/offline", not state, None, baseline_raises=True)
        if change is None:
            return []
        return [
            self._signal(
                topic=topic,
                payload=payload,
                dev_id=dev_id,
                dc=dc,
                kind="device_offline",
                state=change,
                now=now,
                attrs={},
            )
        ]

    def _bridge(self, rest: str, topic: str, payload: bytes, now: float) -> list[Signal]:
        if rest != "bridge/state":
            return []  # info, devices, events, responses: inventory, not alerts
        state = _online_state(payload)
        if state is None:
            raise DecodeError("bad_shape", "bridge state must be online or offline")
        change = self._transition(
            f"{self.source}:bridge/offline", not state, None, baseline_raises=True
        )
        if change is None:
            return []
        bridge = DeviceConfig(room="", kind="bridge_offline")
        return [
            self._signal(
                topic=topic,
                payload=payload,
                dev_id=f"{self.source}:bridge",
                dc=bridge,
                kind="bridge_offline",
                state=change,
                now=now,
                attrs={},
            )
        ]


_NONCRIT = BUILTIN_KINDS["presence"]
_KEEP_ATTRS = ("battery", "linkquality", "voltage", "action", "contact", "occupancy")
_DEFAULT_FIELDS = {
    "bed_exit": "occupancy",
    "motion": "occupancy",
    "presence": "occupancy",
    "door_open": "contact",
    "water_leak": "water_leak",
    "smoke": "smoke",
    "pull_cord": "action",
    "emergency": "action",
    "fall": "fall",
    "epilepsy": "epilepsy",
}


def _default_field(kind: str) -> str:
    return _DEFAULT_FIELDS.get(kind, "state")


def _online_state(payload: bytes) -> bool | None:
    text = payload.strip()
    if text in (b"online", b"offline"):  # Zigbee2MQTT 1.x plain strings
        return text == b"online"
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    if isinstance(data, dict) and data.get("state") in ("online", "offline"):
        return bool(data["state"] == "online")
    return None


def make_decoder(name: str, decoder: str, base_topic: str, config: Config) -> Decoder:
    """Build the decoder a source config names."""
    if decoder == "zigbee2mqtt":
        return Zigbee2MqttDecoder(source=name, config=config, base_topic=base_topic)
    if decoder == "espa":
        from gateway.espa.decode import EspaDecoder  # noqa: PLC0415 - espa imports decoders

        return EspaDecoder(source=name, config=config)
    return JsonDecoder(source=name, config=config)
