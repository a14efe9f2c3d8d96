"""Sans-IO decoders: Zigbee2MQTT levels, edges and availability; the generic JSON decoder."""

from __future__ import annotations

import json
import math
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.config import Config, parse_config
from gateway.decoders import (
    MAX_PAYLOAD,
    MAX_TOPIC,
    JsonDecoder,
    Zigbee2MqttDecoder,
    content_id,
    make_decoder,
)
from gateway.errors import DecodeError
from gateway.model import Signal, SignalState

NOW = 1_700_000_000.0

CONFIG_YAML = """\
mqtt: {host: 127.0.0.1}
sources:
  zigbee: {type: mqtt, decoder: zigbee2mqtt, topics: ["zigbee2mqtt/#"]}
  integrator: {type: mqtt, decoder: json, topics: ["in/#"]}
zones:
  east: {rooms: ["101", "102", "103", "104", "105"]}
  west: {rooms: ["201"]}
devices:
  bed-101: {room: "101", kind: bed_exit, name: rom101/seng}
  door-102: {room: "102", kind: door_open, name: avd2/rom12/dor, source: zigbee}
  cord-103: {room: "103", kind: pull_cord, name: rom103/snor}
  sos-104: {room: "104", kind: emergency, name: rom104/sos, raised: emergency}
  leak-105: {room: "105", kind: water_leak, alert_on_startup: true}
  epi-201: {room: "201", kind: epilepsy, name: rom201/epi}
  fall-101: {room: "101", kind: fall, source: integrator}
handsets:
  h1: {channel: console}
routing: [{handsets: [h1]}]
"""

CONFIG: Config = parse_config(CONFIG_YAML, filename="decoders.yaml")
Z = "zigbee2mqtt/"


def z2m() -> Zigbee2MqttDecoder:
    """A fresh Zigbee2MQTT decoder for the `zigbee` source."""
    return Zigbee2MqttDecoder(source="zigbee", config=CONFIG)


def jdec() -> JsonDecoder:
    """A fresh JSON decoder for the `integrator` source."""
    return JsonDecoder(source="integrator", config=CONFIG)


def send(dec: Zigbee2MqttDecoder | JsonDecoder, topic: str, body: Any) -> list[Signal]:  # noqa: ANN401
    """Decode `body` (JSON-encoded unless bytes) on `topic`."""
    payload = body if isinstance(body, bytes) else orjson.dumps(body)
    return dec.decode(topic, payload, NOW)


def states(signals: list[Signal]) -> list[tuple[str, SignalState]]:
    """(kind, state) of each signal, for compact assertions."""
    return [(s.kind, s.state) for s in signals]


def reason(dec: Zigbee2MqttDecoder | JsonDecoder, topic: str, payload: bytes) -> str:
    """Decode and return the DecodeError reason it must raise."""
    with pytest.raises(DecodeError) as info:
        dec.decode(topic, payload, NOW)
    return info.value.reason


R, C, P = SignalState.RAISED, SignalState.CLEARED, SignalState.REPORT


# --- Zigbee2MQTT: levels -------------------------------------------------------------------


def test_first_state_message_is_a_baseline() -> None:
    """An already-active level on first sight does not ring; it reports."""
    dec = z2m()
    assert states(send(dec, Z + "rom101/seng", {"occupancy": True})) == [("bed_exit", P)]


def test_first_message_of_a_critical_kind_rings() -> None:
    """A critical kind that is active on first sight rings at once."""
    dec = z2m()
    assert states(send(dec, Z + "rom201/epi", {"epilepsy": True})) == [("epilepsy", R)]


def test_first_message_rings_when_alert_on_startup_is_set() -> None:
    """`alert_on_startup` makes an active first level ring."""
    dec = z2m()
    assert states(send(dec, Z + "leak-105", {"water_leak": True})) == [("water_leak", R)]


def test_first_inactive_message_never_rings() -> None:
    """An inactive first level is a baseline even for critical kinds."""
    dec = z2m()
    assert states(send(dec, Z + "rom201/epi", {"epilepsy": False})) == [("epilepsy", P)]
    assert states(send(dec, Z + "leak-105", {"water_leak": False})) == [("water_leak", P)]


def test_a_transition_rings_once_and_repeats_only_report() -> None:
    """false→true rings once; same-level full-state repeats only report; true→false clears."""
    dec = z2m()
    topic = Z + "rom101/seng"
    send(dec, topic, {"occupancy": False, "battery": 90})
    assert states(send(dec, topic, {"occupancy": True, "battery": 90})) == [("bed_exit", R)]
    assert states(send(dec, topic, {"occupancy": True, "battery": 89})) == [("bed_exit", P)]
    assert states(send(dec, topic, {"occupancy": True, "linkquality": 40})) == [("bed_exit", P)]
    assert states(send(dec, topic, {"occupancy": False})) == [("bed_exit", C)]
    assert states(send(dec, topic, {"occupancy": False})) == [("bed_exit", P)]


def test_message_without_the_field_is_a_report_and_keeps_the_level() -> None:
    """A battery-only message reports and does not disturb the remembered level."""
    dec = z2m()
    topic = Z + "rom101/seng"
    send(dec, topic, {"occupancy": False})
    assert states(send(dec, topic, {"battery": 50})) == [("bed_exit", P)]
    assert states(send(dec, topic, {"occupancy": True})) == [("bed_exit", R)]


def test_contact_false_means_door_open() -> None:
    """contact:false is the active (open) state; contact:true clears it."""
    dec = z2m()
    topic = Z + "avd2/rom12/dor"
    assert states(send(dec, topic, {"contact": True})) == [("door_open", P)]
    assert states(send(dec, topic, {"contact": False})) == [("door_open", R)]
    assert states(send(dec, topic, {"contact": True})) == [("door_open", C)]


def test_signal_fields_come_from_the_device_config() -> None:
    """A signal names the device id (not the friendly name), room, source and times."""
    dec = z2m()
    send(dec, Z + "avd2/rom12/dor", {"contact": True})
    (sig,) = send(dec, Z + "avd2/rom12/dor", {"contact": False, "battery": 97, "temperature": 21})
    assert sig.device == "door-102"
    assert sig.room == "102"
    assert sig.source == "zigbee"
    assert sig.ts == sig.received_at == NOW
    assert dict(sig.attrs) == {"contact": False, "battery": 97}


# --- Zigbee2MQTT: actions ------------------------------------------------------------------


def test_action_is_an_edge_every_press_rings() -> None:
    """Each `action` message rings; none ever clears; a report without action only reports."""
    dec = z2m()
    topic = Z + "rom103/snor"
    for _ in range(3):
        assert states(send(dec, topic, {"action": "single", "battery": 80})) == [("pull_cord", R)]
    assert states(send(dec, topic, {"battery": 80})) == [("pull_cord", P)]
    assert states(send(dec, topic, {"action": ""})) == [("pull_cord", P)]
    assert dec.changed_levels() == {}


def test_action_value_filter_rings_only_on_the_configured_value() -> None:
    """With `raised: emergency`, only action=emergency rings."""
    dec = z2m()
    topic = Z + "rom104/sos"
    assert states(send(dec, topic, {"action": "single"})) == [("emergency", P)]
    (sig,) = send(dec, topic, {"action": "emergency"})
    assert (sig.kind, sig.state, sig.attrs["action"]) == ("emergency", R, "emergency")


# --- Zigbee2MQTT: availability and bridge --------------------------------------------------


@pytest.mark.parametrize(
    ("online", "offline"),
    [(b'{"state":"online"}', b'{"state":"offline"}'), (b"online", b"offline")],
    ids=["json-2.x", "plain-1.x"],
)
def test_availability_raises_and_clears_device_offline(online: bytes, offline: bytes) -> None:
    """Availability online→offline raises device_offline; back online clears it."""
    dec = z2m()
    topic = Z + "avd2/rom12/dor/availability"
    assert dec.decode(topic, online, NOW) == []  # baseline
    (down,) = dec.decode(topic, offline, NOW)
    assert (down.kind, down.state, down.device, down.room) == (
        "device_offline",
        R,
        "door-102",
        "102",
    )
    assert dec.decode(topic, offline, NOW) == []  # retained repeat
    assert states(dec.decode(topic, online, NOW)) == [("device_offline", C)]


def test_availability_offline_on_first_sight_raises() -> None:
    """A sensor already offline at startup is reported: a dead sensor is never a baseline."""
    dec = z2m()
    assert states(dec.decode(Z + "rom101/seng/availability", b'{"state":"offline"}', NOW)) == [
        ("device_offline", R)
    ]
    assert states(dec.decode(Z + "rom101/seng/availability", b"online", NOW)) == [
        ("device_offline", C)
    ]


@pytest.mark.parametrize("payload", [b"maybe", b'{"state":"gone"}', b"[1]", b"\xff"])
def test_bad_availability_payload_is_bad_shape(payload: bytes) -> None:
    """An availability payload that is neither online nor offline is rejected as bad_shape."""
    assert reason(z2m(), Z + "rom101/seng/availability", payload) == "bad_shape"


def test_availability_of_an_unknown_device_is_rejected() -> None:
    """Availability for a name we do not know is unknown_device."""
    assert reason(z2m(), Z + "nobody/availability", b"online") == "unknown_device"


def test_bridge_offline_raises_and_clears_bridge_offline() -> None:
    """bridge/state offline raises bridge_offline for the source; online clears it."""
    dec = z2m()
    assert dec.decode(Z + "bridge/state", b'{"state":"online"}', NOW) == []
    (down,) = dec.decode(Z + "bridge/state", b'{"state":"offline"}', NOW)
    assert (down.kind, down.state, down.device, down.source) == (
        "bridge_offline",
        R,
        "zigbee:bridge",
        "zigbee",
    )
    assert states(dec.decode(Z + "bridge/state", b"online", NOW)) == [("bridge_offline", C)]
    assert reason(dec, Z + "bridge/state", b"rebooting") == "bad_shape"


@pytest.mark.parametrize(
    "rest",
    [
        "bridge/devices",
        "bridge/info",
        "bridge/event",
        "bridge/response/permit_join",
        "rom101/seng/set",
        "rom101/seng/get",
        "nobody/set",
    ],
)
def test_inventory_and_command_topics_give_no_signals(rest: str) -> None:
    """Inventory, events and our own commands are not observations, whatever their payload."""
    assert z2m().decode(Z + rest, b"[not json", NOW) == []


def test_custom_base_topic_is_honoured() -> None:
    """A base topic with a trailing slash matches, and the default base is then foreign."""
    dec = Zigbee2MqttDecoder(source="zigbee", config=CONFIG, base_topic="site/z2m/")
    assert states(send(dec, "site/z2m/rom201/epi", {"epilepsy": True})) == [("epilepsy", R)]
    assert reason(dec, Z + "rom201/epi", b"{}") == "foreign_topic"


# --- Zigbee2MQTT: rejects ------------------------------------------------------------------


def test_unknown_device_is_rejected() -> None:
    """A state topic for an unconfigured name is unknown_device."""
    assert reason(z2m(), Z + "rom999/seng", b"{}") == "unknown_device"


def test_device_of_another_source_is_unknown_here() -> None:
    """A device pinned to another source is not decoded by this one."""
    assert reason(z2m(), Z + "fall-101", b'{"fall": true}') == "unknown_device"


@pytest.mark.parametrize(
    ("topic", "payload", "expected"),
    [
        (Z + "rom101/seng", b"{occupancy: true", "malformed_json"),
        (Z + "rom101/seng", b"\xff\xfe", "malformed_json"),
        (Z + "rom101/seng", b"", "malformed_json"),
        (Z + "rom101/seng", b"[true]", "bad_shape"),
        (Z + "rom101/seng", b'"occupancy"', "bad_shape"),
        (Z + "rom101/seng", b" " * (MAX_PAYLOAD + 1), "payload_too_large"),
        (Z + "rom101/seng", b'{"battery": ' + b"[" * 300 + b"]" * 300 + b"}", "too_deep"),
        (Z + "x" * MAX_TOPIC, b"{}", "topic_too_long"),
        ("other/rom101/seng", b"{}", "foreign_topic"),
    ],
)
def test_malformed_messages_raise_stable_reasons(topic: str, payload: bytes, expected: str) -> None:
    """Malformed, non-object, oversized or misplaced messages raise DecodeError(reason)."""
    assert reason(z2m(), topic, payload) == expected


# --- Zigbee2MQTT: battery_low and levels ---------------------------------------------------


def test_battery_low_transitions_raise_and_clear() -> None:
    """battery_low false→true raises battery_low, true→false clears; the first is a baseline."""
    dec = z2m()
    topic = Z + "avd2/rom12/dor"
    assert states(send(dec, topic, {"contact": True, "battery_low": False})) == [("door_open", P)]
    assert states(send(dec, topic, {"contact": True, "battery_low": True})) == [("battery_low", R)]
    assert states(send(dec, topic, {"contact": False, "battery_low": True})) == [("door_open", R)]
    assert states(send(dec, topic, {"contact": False, "battery_low": False})) == [
        ("battery_low", C)
    ]


def test_battery_low_active_on_first_sight_does_not_ring() -> None:
    """A battery already low at startup is a baseline (it is not a safety condition)."""
    dec = z2m()
    assert states(send(dec, Z + "rom201/epi", {"battery_low": True})) == [("epilepsy", P)]


def test_transition_and_battery_low_in_one_message_give_two_signals_with_distinct_ids() -> None:
    """One message may carry two changes; each signal gets its own id."""
    dec = z2m()
    topic = Z + "avd2/rom12/dor"
    send(dec, topic, {"contact": True, "battery_low": False})
    signals = send(dec, topic, {"contact": False, "battery_low": True})
    assert states(signals) == [("door_open", R), ("battery_low", R)]
    assert signals[0].id != signals[1].id


def test_changed_levels_returns_only_changed_keys_once() -> None:
    """changed_levels() returns keys whose level changed since the last call, then forgets them."""
    dec = z2m()
    send(dec, Z + "rom101/seng", {"occupancy": False})
    send(dec, Z + "avd2/rom12/dor", {"contact": True, "battery_low": False})
    assert dec.changed_levels() == {
        "bed-101/occupancy": False,
        "door-102/contact": False,
        "door-102/battery_low": False,
    }
    assert dec.changed_levels() == {}
    send(dec, Z + "rom101/seng", {"occupancy": False})  # same level
    send(dec, Z + "avd2/rom12/dor", {"contact": False, "battery_low": False})
    assert dec.changed_levels() == {"door-102/contact": True}
    assert dec.levels()["bed-101/occupancy"] is False


def test_restore_makes_a_transition_while_down_ring() -> None:
    """After restore(), a level that changed while the gateway was down rings, not baselines."""
    before = z2m()
    send(before, Z + "avd2/rom12/dor", {"contact": True})
    saved = before.levels()
    after = z2m()
    after.restore(saved)
    assert states(send(after, Z + "avd2/rom12/dor", {"contact": False})) == [("door_open", R)]
    assert after.changed_levels() == {"door-102/contact": True}
    fresh = z2m()
    assert states(send(fresh, Z + "avd2/rom12/dor", {"contact": False})) == [("door_open", P)]


def test_z2m_ids_are_content_derived_and_stable() -> None:
    """The same message on a fresh decoder yields the same id (broker redelivery dedupes)."""
    a, b = z2m(), z2m()
    (sig_a,) = a.decode(Z + "rom103/snor", b'{"action":"single"}', NOW)
    (sig_b,) = b.decode(Z + "rom103/snor", b'{"action":"single"}', NOW + 5)
    assert sig_a.id == sig_b.id
    (other,) = b.decode(Z + "rom103/snor", b'{"action":"double"}', NOW)
    assert other.id != sig_a.id


def test_make_decoder_picks_the_class() -> None:
    """make_decoder builds the decoder a source config names."""
    assert isinstance(
        make_decoder("zigbee", "zigbee2mqtt", "zigbee2mqtt", CONFIG), Zigbee2MqttDecoder
    )
    assert isinstance(make_decoder("integrator", "json", "", CONFIG), JsonDecoder)


# --- JSON decoder --------------------------------------------------------------------------


def test_json_documented_fields_are_decoded() -> None:
    """id, device, kind, state and ts (seconds) map onto the signal."""
    body = {"id": "ev-1", "device": "fall-101", "kind": "fall", "state": "cleared", "ts": 1.7e9}
    (sig,) = send(jdec(), "in/nursecall", body)
    assert sig == Signal(
        id="ev-1",
        source="integrator",
        device="fall-101",
        room="101",
        kind="fall",
        state=C,
        ts=1.7e9,
        attrs={},
        received_at=NOW,
    )


def test_json_defaults_state_kind_ts_and_id() -> None:
    """Without optional fields: state raised, the device's kind, ts now, a content id."""
    payload = b'{"device": "fall-101"}'
    (sig,) = jdec().decode("in/x", payload, NOW)
    assert (sig.state, sig.kind, sig.ts) == (R, "fall", NOW)
    assert sig.id == content_id("in/x", payload, NOW)


def test_json_millisecond_timestamps_are_converted() -> None:
    """A ts in milliseconds is read as seconds."""
    (sig,) = send(jdec(), "in/x", {"device": "fall-101", "ts": 1_700_000_000_123})
    assert sig.ts == pytest.approx(1_700_000_000.123)


def test_json_integer_id_becomes_a_string() -> None:
    """A numeric id is kept as its string form."""
    (sig,) = send(jdec(), "in/x", {"device": "fall-101", "id": 42})
    assert sig.id == "42"


def test_json_nesting_up_to_the_limit_is_kept_and_journalable() -> None:
    """32 levels (brackets inside strings included) pass, and orjson can write them back."""
    nested: object = "deep [[[[ {{{{ string"
    for _ in range(31):
        nested = [nested]
    (sig,) = send(jdec(), "in/x", {"device": "fall-101", "x": nested, "s": "[" * 40})
    assert orjson.loads(orjson.dumps(dict(sig.attrs))) == {"x": nested, "s": "[" * 40}


def test_json_extra_keys_are_kept_in_attrs() -> None:
    """Keys beyond the documented ones travel in attrs; documented ones do not."""
    body = {"device": "fall-101", "state": "raised", "bed": "A", "nested": {"x": [1, 2]}}
    (sig,) = send(jdec(), "in/x", body)
    assert dict(sig.attrs) == {"bed": "A", "nested": {"x": [1, 2]}}


def test_json_content_id_is_stable_for_topic_and_payload() -> None:
    """The derived id depends on topic and payload only, not on the receive time."""
    payload = b'{"device": "fall-101"}'
    first = jdec().decode("in/x", payload, NOW)[0].id
    assert jdec().decode("in/x", payload, NOW + 60)[0].id == first
    assert jdec().decode("in/y", payload, NOW)[0].id != first
    assert jdec().decode("in/x", payload + b" ", NOW)[0].id != first


def test_json_devices_without_a_source_are_shared_and_pinned_ones_are_not() -> None:
    """A device with no source is decodable by any source; one pinned elsewhere is unknown."""
    (sig,) = send(jdec(), "in/x", {"device": "bed-101"})
    assert sig.room == "101"
    assert reason(jdec(), "in/x", b'{"device": "door-102"}') == "unknown_device"
    assert reason(jdec(), "in/x", b'{"device": "nobody"}') == "unknown_device"


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b'{"device": "fall-101", "ts": NaN}', "malformed_json"),
        (b'{"device": "fall-101", "ts": 1e400}', "malformed_json"),
        (b'{"device": "fall-101", "ts": 1e300}', "bad_field"),
        (b'{"device": "fall-101", "ts": 99999999999999999999999}', "bad_field"),
        (b'{"device": "fall-101", "ts": -5}', "bad_field"),
        (b'{"device": "fall-101", "ts": 0}', "bad_field"),
        (b'{"device": "fall-101", "ts": true}', "bad_field"),
        (b'{"device": "fall-101", "ts": "2024-01-01"}', "bad_field"),
        (b'{"device": 101}', "bad_field"),
        (b'{"device": ""}', "bad_field"),
        (b'{"device": null}', "bad_field"),
        (b"{}", "bad_field"),
        (b'{"device": "fall-101", "state": "open"}', "bad_field"),
        (b'{"device": "fall-101", "state": ["raised"]}', "bad_field"),
        (b'{"device": "fall-101", "state": null}', "bad_field"),
        (b'{"device": "fall-101", "kind": 5}', "bad_field"),
        (b'{"device": "fall-101", "kind": ""}', "bad_field"),
        (b'{"device": "fall-101", "id": [1]}', "bad_field"),
        (b'{"device": "fall-101", "id": "' + b"x" * 129 + b'"}', "bad_field"),
        (b'["fall-101"]', "bad_shape"),
        (b"null", "bad_shape"),
        (b"not json", "malformed_json"),
        (b'{"device": "fall-101", "pad": "' + b"x" * MAX_PAYLOAD + b'"}', "payload_too_large"),
        # Deeper than orjson writes (254) but not than it reads (1,024): it would route and
        # then fail its journal write on every redelivery.
        (b'{"device": "fall-101", "x": ' + b"[" * 300 + b"]" * 300 + b"}", "too_deep"),
        (b'{"device": "fall-101", "x": ' + b"[" * 33 + b"]" * 33 + b"}", "too_deep"),
    ],
)
def test_json_bad_payloads_raise_stable_reasons(payload: bytes, expected: str) -> None:
    """Bad types, shapes and sizes are rejected with a stable reason."""
    assert reason(jdec(), "in/x", payload) == expected


def test_json_decoder_keeps_only_its_own_states() -> None:
    """The JSON decoder saves its last state per device and kind, and restores only those."""
    dec = jdec()
    dec.restore({"a": True, "json:other:fall-101/fall": True})
    assert dec.levels() == {}
    assert dec.changed_levels() == {}
    send(dec, "in/x", {"device": "fall-101", "state": "raised"})
    assert dec.changed_levels() == {"json:integrator:fall-101/fall": True}
    send(dec, "in/x", {"device": "fall-101", "state": "raised"})
    assert dec.changed_levels() == {}


# --- retained messages (the broker replays them at every subscription) ---------------------


def retained(dec: Zigbee2MqttDecoder | JsonDecoder, topic: str, body: Any) -> list[Signal]:  # noqa: ANN401
    """Decode `body` as a retained message."""
    return dec.decode(topic, orjson.dumps(body), NOW, retained=True)


def test_retained_press_never_rings() -> None:
    """A retained Z2M press is old news, replayed at every (re)subscription: rejected, not rung.

    Review finding 7: a pull cord's retained press rang the night staff again after every
    broker blip or restart.
    """
    dec = z2m()
    with pytest.raises(DecodeError) as info:
        retained(dec, Z + "rom103/snor", {"action": "single", "battery": 90})
    assert info.value.reason == "retained_press"
    assert states(send(dec, Z + "rom103/snor", {"action": "single"})) == [("pull_cord", R)]


def test_retained_press_still_carries_its_battery_low_change() -> None:
    """A retained press with news besides (battery low) gives that news, never the press."""
    dec = z2m()
    send(dec, Z + "rom103/snor", {"battery_low": False})
    out = retained(dec, Z + "rom103/snor", {"action": "single", "battery_low": True})
    assert states(out) == [("battery_low", R)]


def test_retained_level_rings_only_when_it_differs_from_the_remembered_level() -> None:
    """A retained level is the device's current state: a change rings, a repeat reports."""
    dec = z2m()
    send(dec, Z + "rom101/seng", {"occupancy": False})
    assert states(retained(dec, Z + "rom101/seng", {"occupancy": False})) == [("bed_exit", P)]
    assert states(retained(dec, Z + "rom101/seng", {"occupancy": True})) == [("bed_exit", R)]
    restarted = z2m()
    restarted.restore(dec.levels())
    assert states(retained(restarted, Z + "rom101/seng", {"occupancy": True})) == [("bed_exit", P)]


def test_retained_json_signal_rings_only_when_its_state_is_news() -> None:
    """A retained integrator signal rings once; replays of the same state only report."""
    dec = jdec()
    body = {"id": "nc-1", "device": "fall-101", "state": "raised"}
    assert states(retained(dec, "in/x", body)) == [("fall", R)]
    assert states(retained(dec, "in/x", body)) == [("fall", P)]
    restarted = jdec()
    restarted.restore(dec.levels())
    assert states(retained(restarted, "in/x", body)) == [("fall", P)]
    assert states(send(restarted, "in/x", body)) == [("fall", R)]  # a fresh one always rings
    cleared = {"device": "fall-101", "state": "cleared"}
    assert states(retained(restarted, "in/x", cleared)) == [("fall", C)]


# --- properties ----------------------------------------------------------------------------

PROPS = settings(max_examples=150, deadline=None, database=None)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
# Integers orjson reads back exactly (beyond 64 bits it reads a float).
exact_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
DEVICES = [*sorted(CONFIG.devices), "nobody", ""]
signal_like = st.fixed_dictionaries(
    {},
    optional={
        "device": st.sampled_from(DEVICES) | json_values,
        "state": st.sampled_from(["raised", "cleared", "report", "open"]) | json_values,
        "kind": st.sampled_from(["fall", "smoke"]) | json_values,
        "id": json_values,
        "ts": st.sampled_from([1.7e9, 1.7e12, 0, -1, 1e300, math.pi]) | json_values,
        "occupancy": json_values,
        "contact": json_values,
        "action": json_values,
        "battery_low": json_values,
        "epilepsy": json_values,
    },
)
Z2M_TOPICS = [
    Z + "rom101/seng",
    Z + "avd2/rom12/dor",
    Z + "rom103/snor",
    Z + "rom104/sos",
    Z + "rom201/epi",
    Z + "rom201/epi/availability",
    Z + "bridge/state",
    Z + "bridge/devices",
    Z + "unknown",
    "elsewhere/x",
]


def attempt(
    dec: Zigbee2MqttDecoder | JsonDecoder, topic: str, payload: bytes
) -> list[Signal] | DecodeError:
    """Decode, returning the DecodeError instead of raising it (anything else propagates)."""
    try:
        return dec.decode(topic, payload, NOW)
    except DecodeError as exc:
        return exc


def _json_bytes(value: Any) -> bytes:  # noqa: ANN401 - any JSON value
    # The standard library writes integers of any size, which orjson's writer refuses.
    return json.dumps(value).encode()


@PROPS
@given(topic=st.sampled_from(Z2M_TOPICS) | st.text(max_size=40), payload=st.binary(max_size=200))
def test_z2m_only_raises_decode_error_on_arbitrary_bytes(topic: str, payload: bytes) -> None:
    """Arbitrary bytes on any topic decode to signals or raise DecodeError, nothing else."""
    dec = z2m()
    for _ in range(2):  # twice: the second decode sees the first one's levels
        out = attempt(dec, topic, payload)
        if isinstance(out, DecodeError):
            assert out.reason
        else:
            assert all(isinstance(s, Signal) for s in out)


@PROPS
@given(
    topic=st.sampled_from(Z2M_TOPICS),
    values=st.lists(signal_like | json_values, min_size=1, max_size=4),
)
def test_z2m_only_raises_decode_error_on_arbitrary_json(topic: str, values: list[Any]) -> None:
    """Any sequence of JSON values decodes to signals or raises DecodeError, nothing else."""
    dec = z2m()
    for value in values:
        out = attempt(dec, topic, _json_bytes(value))
        if isinstance(out, DecodeError):
            assert out.reason
        else:
            assert all(s.state in SignalState for s in out)
    assert all(isinstance(v, bool) for v in dec.changed_levels().values())


@PROPS
@given(payload=st.binary(max_size=200))
def test_json_only_raises_decode_error_on_arbitrary_bytes(payload: bytes) -> None:
    """Arbitrary bytes decode to one signal or raise DecodeError, nothing else."""
    out = attempt(jdec(), "in/x", payload)
    if isinstance(out, DecodeError):
        assert out.reason
    else:
        assert len(out) == 1


@PROPS
@given(value=signal_like | json_values)
def test_json_only_raises_decode_error_on_arbitrary_json(value: Any) -> None:  # noqa: ANN401
    """Any JSON value decodes to one well-typed signal or raises DecodeError, nothing else."""
    out = attempt(jdec(), "in/x", _json_bytes(value))
    if isinstance(out, DecodeError):
        assert out.reason in {"bad_field", "bad_shape", "unknown_device", "malformed_json"}
    else:
        (sig,) = out
        assert isinstance(sig.device, str)
        assert isinstance(sig.kind, str)
        assert isinstance(sig.id, str)
        assert 0 < sig.ts < 4e9


@settings(
    max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(
    device=st.sampled_from(["fall-101", "bed-101", "cord-103"]),
    state=st.sampled_from(SignalState),
    kind=st.text(min_size=1, max_size=64),
    sid=st.text(min_size=1, max_size=128),
    ts=st.floats(min_value=1.0, max_value=3.9e9),
    extra=st.dictionaries(
        st.text(max_size=8).filter(lambda k: k not in {"id", "device", "kind", "state", "ts"}),
        exact_values,
        max_size=3,
    ),
)
def test_valid_json_signals_round_trip(
    *, device: str, state: SignalState, kind: str, sid: str, ts: float, extra: dict[str, Any]
) -> None:
    """A valid integrator message keeps device, state, kind, id, ts and extra keys."""
    body = {**extra, "device": device, "state": state.value, "kind": kind, "id": sid, "ts": ts}
    (sig,) = jdec().decode("in/x", _json_bytes(body), NOW)
    assert (sig.device, sig.state, sig.kind, sig.id, sig.ts) == (device, state, kind, sid, ts)
    assert sig.room == CONFIG.devices[device].room
    assert dict(sig.attrs) == extra


def test_the_packet_id_tells_a_new_identical_press_from_a_redelivery() -> None:
    """Same bytes, same packet id: the same signal; another packet id: another signal."""
    dec = z2m()
    press = b'{"action": "single"}'
    (first,) = dec.decode(Z + "rom103/snor", press, NOW, packet_id=7)
    (redelivered,) = dec.decode(Z + "rom103/snor", press, NOW + 5, packet_id=7)
    (again,) = dec.decode(Z + "rom103/snor", press, NOW + 60, packet_id=9)
    assert first.id == redelivered.id
    assert again.id != first.id
    (unnumbered,) = dec.decode(Z + "rom103/snor", press, NOW)  # QoS 0: no packet id
    assert len({first.id, again.id, unnumbered.id}) == 3
    j = jdec()
    body = b'{"device": "fall-101"}'
    assert j.decode("in/x", body, NOW, packet_id=3)[0].id == (
        j.decode("in/x", body, NOW, packet_id=3)[0].id
    )
    assert j.decode("in/x", body, NOW, packet_id=3)[0].id != (
        j.decode("in/x", body, NOW, packet_id=4)[0].id
    )
    # An integrator's own id is its own dedup key, whatever the packet.
    own = b'{"device": "fall-101", "id": "f-1"}'
    assert j.decode("in/x", own, NOW, packet_id=3)[0].id == "f-1"
    assert j.decode("in/x", own, NOW, packet_id=4)[0].id == "f-1"
