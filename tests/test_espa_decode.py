"""EspaDecoder: the ESPA driver's call payloads in, raised and cleared signals out."""

from __future__ import annotations

import orjson
import pytest

from gateway.config import Config, parse_config
from gateway.decoders import Decoder
from gateway.errors import DecodeError
from gateway.espa.decode import EspaDecoder
from gateway.model import SignalState

CONFIG = """
sources:
  nurse: {type: espa, decoder: espa, link: ward}
  other: {type: espa, decoder: espa, link: ward2}
espa:
  ward: {port: /dev/ttyUSB0}
  ward2: {port: /dev/ttyUSB1}
zones:
  east: {rooms: ["101", "102", "103"]}
devices:
  call-101: {room: "101", kind: pull_cord, name: "101", source: nurse}
  call-102: {room: "102", kind: emergency, name: "2102"}
  call-103: {room: "103", kind: pull_cord, name: "103", source: other}
  "104": {room: "103", kind: pull_cord}
handsets:
  h1: {channel: console}
routing:
  - {handsets: [h1]}
"""


@pytest.fixture(scope="module")
def config() -> Config:
    """A config with ESPA call points for two sources."""
    return parse_config(CONFIG, filename="test.yaml")


def payload(**over: object) -> bytes:
    """A driver payload for a standard call from address 101."""
    body: dict[str, object] = {
        "address": "101",
        "message": "Rom 101 toalett",
        "call_type": "3",
        "priority": "2",
        "beep": "1",
        "transmissions": None,
    }
    body.update(over)
    return orjson.dumps(body)


def test_satisfies_the_decoder_protocol(config: Config) -> None:
    """EspaDecoder is a Decoder and keeps no levels."""
    decoder: Decoder = EspaDecoder(source="nurse", config=config)
    assert decoder.levels() == {}
    decoder.restore({"x": 1})
    assert decoder.changed_levels() == {}


def test_standard_call_raises_the_device(config: Config) -> None:
    """A standard call from a known address is a raised signal for that device and room."""
    decoder = EspaDecoder(source="nurse", config=config)
    (sig,) = decoder.decode("espa/ward/101", payload(), 1000.0)
    assert sig.device == "call-101"
    assert sig.room == "101"
    assert sig.kind == "pull_cord"
    assert sig.state is SignalState.RAISED
    assert sig.source == "nurse"
    assert sig.ts == 1000.0
    assert sig.attrs == {"address": "101", "call_type": "3", "priority": "2", "beep": "1"}
    assert "message" not in sig.attrs  # nurse-call texts may name residents


def test_reset_call_clears(config: Config) -> None:
    """Call type '1' (reset) is a cleared signal for the same device."""
    (sig,) = EspaDecoder(source="nurse", config=config).decode(
        "espa/ward/101", payload(call_type="1"), 1.0
    )
    assert sig.state is SignalState.CLEARED
    assert sig.device == "call-101"


@pytest.mark.parametrize("call_type", [None, "2", "3"])
def test_speech_standard_and_missing_call_type_raise(config: Config, call_type: str | None) -> None:
    """Anything but a reset raises, including calls that omit record 4."""
    (sig,) = EspaDecoder(source="nurse", config=config).decode(
        "espa/ward/101", payload(call_type=call_type), 1.0
    )
    assert sig.state is SignalState.RAISED


def test_devices_of_any_source_and_id_fallback(config: Config) -> None:
    """Devices without a source match every ESPA source; a device id stands in for a name."""
    decoder = EspaDecoder(source="nurse", config=config)
    (sig,) = decoder.decode("espa/ward/2102", payload(address="2102"), 1.0)
    assert sig.device == "call-102"
    (sig,) = decoder.decode("espa/ward/104", payload(address="104"), 1.0)
    assert sig.device == "104"


def test_call_from_an_unknown_call_point_raises_a_technical_alarm(config: Config) -> None:
    """A call from an address naming no device of this source is an unknown_call_point alarm.

    The line has already ACKed it, so the nurse-call system believes it paged: dropping it
    with a counter left a person's call unanswered and nobody told. The alarm names the
    link and the call point address.
    """
    decoder = EspaDecoder(source="nurse", config=config)
    for address in ("999", "103"):
        (sig,) = decoder.decode(f"espa/ward/{address}", payload(address=address), 1.0)
        assert sig.kind == "unknown_call_point"
        assert sig.state is SignalState.RAISED
        assert sig.device == f"espa:ward:{address}"
        assert sig.source == "nurse"
        assert sig.room == ""
        assert sig.attrs == {"address": address, "call_type": "3"}
    assert config.kind("unknown_call_point").technical


def test_reset_from_an_unknown_call_point_is_rejected(config: Config) -> None:
    """A reset from an unknown call point clears nothing: it is rejected as unknown_device."""
    decoder = EspaDecoder(source="nurse", config=config)
    with pytest.raises(DecodeError) as err:
        decoder.decode("espa/ward/999", payload(address="999", call_type="1"), 1.0)
    assert err.value.reason == "unknown_device"


def test_repeated_identical_calls_get_distinct_ids(config: Config) -> None:
    """A nurse call repeats identical blocks; each received call is its own signal."""
    decoder = EspaDecoder(source="nurse", config=config)
    (a,) = decoder.decode("espa/ward/101", payload(), 1.0)
    (b,) = decoder.decode("espa/ward/101", payload(), 2.0)
    (c,) = decoder.decode("espa/ward/101", payload(), 1.0)
    assert a.id != b.id
    assert a.id == c.id


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "malformed_json"),
        (b"[1, 2]", "bad_shape"),
        (b'{"message": "x"}', "bad_field"),
        (payload(address=""), "bad_field"),
        (payload(address=101), "bad_field"),
        (payload(address="1" * 17), "bad_field"),
        (payload(call_type="9"), "bad_field"),
        (payload(priority=1), "bad_field"),
        (payload(beep=3), "bad_field"),
        (payload(transmissions="2"), "bad_field"),
        (payload(transmissions=True), "bad_field"),
        (b" " * 5000, "payload_too_large"),
    ],
)
def test_malformed_payloads_raise_decode_error(config: Config, raw: bytes, reason: str) -> None:
    """Malformed payloads raise DecodeError with a stable reason."""
    with pytest.raises(DecodeError) as err:
        EspaDecoder(source="nurse", config=config).decode("espa/ward/101", raw, 1.0)
    assert err.value.reason == reason
