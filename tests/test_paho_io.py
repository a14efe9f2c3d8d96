"""drivers/paho_io.py's write path on a socket pair, without a broker."""

from __future__ import annotations

import asyncio
import socket

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from drivers.paho_io import PahoLoopIO
from gateway.mqttwire import encode_publish


async def test_a_full_socket_waits_for_the_writer_instead_of_spinning() -> None:
    """A broker that stops reading leaves the loop idle, and gets every byte once it reads.

    Each flush into a full socket met EAGAIN, on which paho asks for a write again: the
    adapter scheduled the next flush at once, so the loop spun at full CPU for as long
    as the socket stayed full (until keep-alive dropped the session).
    """
    loop = asyncio.get_running_loop()
    ours, broker = socket.socketpair()
    ours.setblocking(False)
    broker.setblocking(False)
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv311)
    client._sock = ours
    io = PahoLoopIO(client, loop, on_publish=lambda _: None, acks={})
    assert io.install()
    flushes = 0
    flush = io._flush

    def counted() -> None:
        nonlocal flushes
        flushes += 1
        flush()

    io._flush = counted  # type: ignore[method-assign]
    try:
        mids = [io.publish("t/x", b"x" * 1000) for _ in range(300)]  # more than fits
        for _ in range(5):
            await asyncio.sleep(0)
        assert io._wbuf, "the socket took it all: nothing to test"
        flushes = 0
        mids += [io.publish("t/x", b"late"), io.publish("t/x", b"later")]
        io.ack(7)
        for _ in range(1000):
            await asyncio.sleep(0)
        assert flushes <= 2, f"{flushes} flushes into a full socket"
        expected = b"".join(
            encode_publish("t/x", b"x" * 1000, mid) for mid in mids[:300]
        ) + b"".join(
            [
                encode_publish("t/x", b"late", mids[300]),
                encode_publish("t/x", b"later", mids[301]),
                bytes((0x40, 2, 0, 7)),
            ]
        )
        got = bytearray()
        async with asyncio.timeout(30):
            while len(got) < len(expected):
                try:
                    got += broker.recv(65536)
                except BlockingIOError:
                    await asyncio.sleep(0.01)
        assert bytes(got) == expected
        assert not io._wbuf
    finally:
        io.close()
        ours.close()
        broker.close()
