"""MQTT PUBLISH and PUBACK on the wire: a pure codec for the hot path.

paho-mqtt keeps the session (CONNECT, SUBSCRIBE, keep-alive, TLS, the will); these three
packet shapes are the ones every signal crosses, so they skip paho's per-packet objects
(see drivers/paho_io.py). Spec: MQTT 3.1.1, sections 2.2 and 3.3-3.4; MQTT 5 adds
properties to PUBLISH (3.3.2.3) and a reason code to PUBACK (3.4.2).
"""

from __future__ import annotations

import dataclasses

PUBLISH = 0x30
PUBACK = 0x40
MAX_REMAINING = 268_435_455  # four length bytes


@dataclasses.dataclass(frozen=True, slots=True)
class Publish:
    """An inbound PUBLISH."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    dup: bool = False
    retain: bool = False


def remaining_length(n: int) -> bytes:
    """The variable-length 'remaining length' field."""
    if not 0 <= n <= MAX_REMAINING:
        raise ValueError(f"remaining length {n} out of range")
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        if n:
            out.append(digit | 0x80)
        else:
            out.append(digit)
            return bytes(out)


def encode_publish(
    topic: str,
    payload: bytes,
    mid: int,
    *,
    qos: int = 1,
    retain: bool = False,
    dup: bool = False,
    v5: bool = False,
) -> bytes:
    """A whole PUBLISH packet. QoS 0 has no packet id; QoS 1 and 2 need 1..65535.

    `v5`: the MQTT 5 shape, with an empty property list.
    """
    if qos not in (0, 1, 2):
        raise ValueError(f"qos {qos}")
    name = topic.encode()
    if not name or len(name) > 0xFFFF:
        raise ValueError("topic must be 1..65535 bytes")
    header = PUBLISH | (0x08 if dup else 0) | (qos << 1) | (0x01 if retain else 0)
    head = len(name).to_bytes(2, "big") + name
    if qos:
        if not 0 < mid <= 0xFFFF:
            raise ValueError(f"packet id {mid}")
        head += mid.to_bytes(2, "big")
    if v5:
        head += b"\x00"  # property length 0
    return bytes((header,)) + remaining_length(len(head) + len(payload)) + head + payload


def encode_puback(mid: int) -> bytes:
    """A PUBACK for packet id `mid`."""
    if not 0 < mid <= 0xFFFF:
        raise ValueError(f"packet id {mid}")
    return bytes((PUBACK, 2)) + mid.to_bytes(2, "big")


def decode_publish(command: int, body: bytes | bytearray, *, v5: bool = False) -> Publish:
    """A PUBLISH from its fixed-header byte and its body (after the remaining length).

    `v5`: the MQTT 5 shape; its properties are skipped (alertgw never asks for topic
    aliases, and what a sensor's properties say is not part of a signal).
    Raises ValueError on a malformed packet (the session must then be dropped).
    """
    if command & 0xF0 != PUBLISH:
        raise ValueError("not a PUBLISH")
    qos = (command >> 1) & 0x03
    if qos == 3:
        raise ValueError("qos 3")
    if len(body) < 2:
        raise ValueError("PUBLISH shorter than its topic length")
    n = (body[0] << 8) | body[1]
    end = 2 + n
    if len(body) < end + (2 if qos else 0):
        raise ValueError("PUBLISH shorter than its topic")
    try:
        topic = bytes(body[2:end]).decode()
    except UnicodeDecodeError:
        raise ValueError("topic is not UTF-8") from None
    mid = 0
    if qos:
        mid = (body[end] << 8) | body[end + 1]
        end += 2
        if mid == 0:
            raise ValueError("packet id 0")
    if v5:
        size, end = _varint(body, end)
        end += size
        if end > len(body):
            raise ValueError("PUBLISH shorter than its properties")
    return Publish(topic, bytes(body[end:]), mid, qos, bool(command & 0x08), bool(command & 0x01))


def decode_puback(body: bytes | bytearray) -> int:
    """The packet id of a 3.1.1 PUBACK body."""
    if len(body) != 2:
        raise ValueError("PUBACK body must be 2 bytes")
    return (body[0] << 8) | body[1]


def decode_puback5(body: bytes | bytearray) -> tuple[int, int]:
    """(packet id, reason code) of an MQTT 5 PUBACK body.

    Two bytes mean success (0x00); a reason code may follow, then properties (a reason
    string for people; alertgw names the code itself).
    """
    n = len(body)
    if n < 2:
        raise ValueError("PUBACK shorter than its packet id")
    mid = (body[0] << 8) | body[1]
    if n == 2:
        return mid, 0x00
    if n > 3:
        size, end = _varint(body, 3)
        if end + size != n:
            raise ValueError("PUBACK properties do not fill the packet")
    return mid, body[2]


def _varint(data: bytes | bytearray, at: int) -> tuple[int, int]:
    """A variable byte integer (MQTT 5, 1.5.5) at `at`: (value, offset after it)."""
    value, mult = 0, 1
    for i in range(at, min(at + 4, len(data))):
        byte = data[i]
        value += (byte & 0x7F) * mult
        if not byte & 0x80:
            return value, i + 1
        mult *= 128
    raise ValueError("bad variable byte integer")
