"""The hot-path MQTT 3.1.1 codec, checked against paho's own encoder and decoder."""

from __future__ import annotations

import contextlib

import paho.mqtt.client as paho
import pytest
from hypothesis import given
from hypothesis import strategies as st
from paho.mqtt import _packet

from gateway.mqttwire import (
    Publish,
    decode_puback,
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


@given(topic=topics, payload=st.binary(max_size=20_000), mid=st.integers(1, 65535))
def test_publish_is_byte_identical_to_paho(topic: str, payload: bytes, mid: int) -> None:
    """Our QoS 1 PUBLISH is the packet paho would have sent."""
    ours = encode_publish(topic, payload, mid)
    client = paho.Client(paho.CallbackAPIVersion.VERSION2)
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


@given(body=st.binary(max_size=64), command=st.integers(0x30, 0x3F))
def test_decode_publish_never_raises_anything_but_value_error(body: bytes, command: int) -> None:
    """Arbitrary bodies are decoded or refused with ValueError, never another exception."""
    with contextlib.suppress(ValueError):
        decode_publish(command, body)


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


def test_puback_round_trips() -> None:
    """PUBACK is four bytes: type, length 2, packet id."""
    assert encode_puback(0x1234) == b"\x40\x02\x12\x34"
    assert decode_puback(encode_puback(65535)[2:]) == 65535
    with pytest.raises(ValueError, match="packet id"):
        encode_puback(0)
    with pytest.raises(ValueError, match="2 bytes"):
        decode_puback(b"\x00\x01\x00")
