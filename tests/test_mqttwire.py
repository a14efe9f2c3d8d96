"""The hot-path MQTT 3.1.1 and 5 codec, checked against paho's own encoder and decoder."""

from __future__ import annotations

import contextlib

import paho.mqtt.client as paho
import pytest
from hypothesis import given
from hypothesis import strategies as st
from paho.mqtt import _packet
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.mqttwire import (
    Publish,
    decode_puback,
    decode_puback5,
    decode_publish,
    encode_puback,
    encode_publish,
    remaining_length,
)

topics = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00+#"),
    min_size=1,
    max_size=80,
)


# MQTT's UTF-8 strings exclude NUL and surrogates (1.5.4); paho's decoder checks that.
utf8 = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    max_size=20,
)


def split(packet: bytes) -> tuple[int, bytes]:
    """(fixed-header byte, body) of a whole packet."""
    i, length, mult = 1, 0, 1
    while True:
        byte = packet[i]
        length += (byte & 0x7F) * mult
        mult *= 128
        i += 1
        if not byte & 0x80:
            break
    body = packet[i:]
    assert len(body) == length
    return packet[0], body


@pytest.mark.parametrize(
    ("n", "encoded"),
    [
        (0, b"\x00"),
        (127, b"\x7f"),
        (128, b"\x80\x01"),
        (16_383, b"\xff\x7f"),
        (16_384, b"\x80\x80\x01"),
        (2_097_152, b"\x80\x80\x80\x01"),
        (268_435_455, b"\xff\xff\xff\x7f"),
    ],
)
def test_remaining_length_matches_the_spec_table(n: int, encoded: bytes) -> None:
    """MQTT 3.1.1 table 2.4: the boundaries of one to four length bytes."""
    assert remaining_length(n) == encoded


def test_remaining_length_out_of_range_is_refused() -> None:
    """Four bytes hold at most 268,435,455."""
    with pytest.raises(ValueError, match="out of range"):
        remaining_length(268_435_456)


@given(
    topic=topics,
    payload=st.binary(max_size=20_000),
    mid=st.integers(1, 65535),
    v5=st.booleans(),
)
def test_publish_is_byte_identical_to_paho(topic: str, payload: bytes, mid: int, v5: bool) -> None:
    """Our QoS 1 PUBLISH is the packet paho would have sent, in either protocol version."""
    ours = encode_publish(topic, payload, mid, v5=v5)
    protocol = paho.MQTTv5 if v5 else paho.MQTTv311
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, protocol=protocol)
    sent: list[bytes] = []
    client._packet_queue = lambda cmd, packet, *a, **k: sent.append(bytes(packet))  # type: ignore[method-assign]
    client._sock = object()  # type: ignore[assignment]  # "connected": paho encodes, we capture
    try:
        client._send_publish(mid, topic.encode(), payload, 1)
    finally:
        client._sock = None
    assert sent == [ours]


@given(
    topic=topics,
    payload=st.binary(max_size=2_000),
    mid=st.integers(1, 65535),
    flags=st.tuples(st.sampled_from([0, 1]), st.booleans(), st.booleans()),
)
def test_publish_round_trips_and_paho_agrees(
    topic: str, payload: bytes, mid: int, flags: tuple[int, bool, bool]
) -> None:
    """decode(encode(x)) == x, and paho's decoder reads the same fields."""
    qos, dup, retain = flags
    packet = encode_publish(topic, payload, mid, qos=qos, dup=dup, retain=retain)
    command, body = split(packet)
    got = decode_publish(command, body)
    assert got == Publish(topic, payload, mid if qos else 0, qos, dup, retain)
    theirs = _packet.decode_publish(command, bytearray(body), paho.MQTTv311)
    assert (theirs.topic.decode(), theirs.payload, theirs.qos) == (topic, payload, qos)


@given(body=st.binary(max_size=64), command=st.integers(0x30, 0x3F), v5=st.booleans())
def test_decode_publish_never_raises_anything_but_value_error(
    body: bytes, command: int, v5: bool
) -> None:
    """Arbitrary bodies are decoded or refused with ValueError, never another exception."""
    with contextlib.suppress(ValueError):
        decode_publish(command, body, v5=v5)


@pytest.mark.parametrize(
    ("command", "body", "why"),
    [
        (0x20, b"\x00\x01a", "not a PUBLISH"),
        (0x36, b"\x00\x01a\x00\x01", "qos 3"),
        (0x32, b"\x00", "topic length"),
        (0x32, b"\x00\x05ab", "shorter than its topic"),
        (0x32, b"\x00\x01a\x00", "shorter than its topic"),
        (0x32, b"\x00\x01a\x00\x00", "packet id 0"),
        (0x30, b"\x00\x02\xff\xfe", "not UTF-8"),
    ],
)
def test_malformed_publish_is_refused(command: int, body: bytes, why: str) -> None:
    """Each way a PUBLISH can be cut short or lie is named."""
    with pytest.raises(ValueError, match=why):
        decode_publish(command, body)


@given(
    topic=topics,
    payload=st.binary(max_size=2_000),
    mid=st.integers(1, 65535),
    qos=st.sampled_from([0, 1]),
    user=st.lists(st.tuples(utf8, utf8), max_size=3),
    expiry=st.one_of(st.none(), st.integers(0, 2**32 - 1)),
)
def test_v5_publish_skips_its_properties_and_paho_agrees(
    *,
    topic: str,
    payload: bytes,
    mid: int,
    qos: int,
    user: list[tuple[str, str]],
    expiry: int | None,
) -> None:
    """A sensor's MQTT 5 properties (user properties, expiry) never leak into the payload."""
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    if user:
        props.UserProperty = user
    if expiry is not None:
        props.MessageExpiryInterval = expiry
    name = topic.encode()
    body = len(name).to_bytes(2, "big") + name
    if qos:
        body += mid.to_bytes(2, "big")
    body += props.pack() + payload  # type: ignore[no-untyped-call]
    command = 0x30 | (qos << 1)
    got = decode_publish(command, body, v5=True)
    assert got == Publish(topic, payload, mid if qos else 0, qos)
    theirs = _packet.decode_publish(command, bytearray(body), paho.MQTTv5)
    assert (theirs.topic.decode(), theirs.payload) == (topic, payload)
    # Our own v5 encoding (no properties) decodes the same way.
    packet = encode_publish(topic, payload, mid, qos=qos, v5=True)
    assert decode_publish(*split(packet), v5=True) == got


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"\x00\x01a\x00\x01", "bad variable byte integer"),  # no property length
        (b"\x00\x01a\x00\x01\x05\x01", "shorter than its properties"),
        (b"\x00\x01a\x00\x01\xff\xff\xff\xff\x01", "bad variable byte integer"),
    ],
)
def test_malformed_v5_publish_is_refused(body: bytes, why: str) -> None:
    """A property length that is cut short or runs past the packet is named."""
    with pytest.raises(ValueError, match=why):
        decode_publish(0x32, body, v5=True)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"\x12\x34", (0x1234, 0x00)),  # success may omit the reason code (3.4.2.1)
        (b"\x12\x34\x00", (0x1234, 0x00)),
        (b"\x12\x34\x10", (0x1234, 0x10)),  # no matching subscribers
        (b"\x12\x34\x87\x00", (0x1234, 0x87)),  # not authorised, empty properties
        (b"\x00\x01\x87\x06\x1f\x00\x03acl", (1, 0x87)),  # with a reason string
    ],
)
def test_v5_puback_gives_packet_id_and_reason(body: bytes, expected: tuple[int, int]) -> None:
    """Every form MQTT 5 allows a PUBACK to take."""
    assert decode_puback5(body) == expected


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"\x00", "shorter than its packet id"),
        (b"\x00\x01\x87\x05\x1f", "do not fill"),
        (b"\x00\x01\x87\x00\x00", "do not fill"),
        (b"\x00\x01\x87\x80", "bad variable byte integer"),
    ],
)
def test_malformed_v5_puback_is_refused(body: bytes, why: str) -> None:
    """A PUBACK cut short, or with bytes its properties do not account for, is named."""
    with pytest.raises(ValueError, match=why):
        decode_puback5(body)


@given(body=st.binary(max_size=16))
def test_decode_puback5_never_raises_anything_but_value_error(body: bytes) -> None:
    """Arbitrary PUBACK bodies are decoded or refused with ValueError."""
    with contextlib.suppress(ValueError):
        mid, reason = decode_puback5(body)
        assert 0 <= mid <= 0xFFFF
        assert 0 <= reason <= 0xFF


def test_puback_round_trips() -> None:
    """PUBACK is four bytes: type, length 2, packet id."""
    assert encode_puback(0x1234) == b"\x40\x02\x12\x34"
    assert decode_puback(encode_puback(65535)[2:]) == 65535
    with pytest.raises(ValueError, match="packet id"):
        encode_puback(0)
    with pytest.raises(ValueError, match="2 bytes"):
        decode_puback(b"\x00\x01\x00")
