"""Fewer syscalls for a connected paho client driven by the asyncio loop.

paho reads every packet with three `recv` calls (fixed header byte, length bytes, body),
and writes every packet with its own `send`. Through aiomqtt each write also costs a
self-pipe wake-up and an `add_writer`/`remove_writer` pair. On the hot path that was a
third of alertgw's CPU per signal. This adapter keeps paho as the protocol engine and
changes only how bytes move:

- reads: one `recv` fills a buffer that paho's per-field reads are served from;
- writes: every packet queued in one loop iteration goes out in a single `send`, flushed by
  `call_soon`; only a full socket buffer falls back to `add_writer`;
- the packets every signal crosses (an inbound PUBLISH, our QoS 1 PUBLISH to a handset and
  its PUBACK) are coded by `gateway.mqttwire` instead of paho's per-packet objects (a
  message, an info with its own Condition, Properties and a ReasonCode even under 3.1.1).

paho still owns the session: CONNECT, SUBSCRIBE, keep-alive, TLS, the will, and every
other packet. The adapter hooks paho's private `_sock_recv`, `_packet_write` and
`_packet_handle` (stable from paho 1.x to 2.2); `install` checks they are there and leaves
the client untouched otherwise, so a paho release that moves them costs speed, never
correctness.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode

from gateway.mqttwire import PUBACK, PUBLISH, Publish, decode_publish, encode_publish

RECV_SIZE = 65536
_DISCONNECT = 0xE0
_NEEDED = (
    "_sock_recv",
    "_packet_write",
    "_packet_handle",
    "_packet_queue",
    "_mid_generate",
    "_in_packet",
    "_out_packet",
    "_sock",
    "_msgtime_mutex",
    "_protocol",
)


class PahoLoopIO:
    """Buffered reads and coalesced writes for one connected paho client."""

    def __init__(
        self,
        client: paho.Client,
        loop: asyncio.AbstractEventLoop,
        *,
        on_publish: Callable[[Publish], None],
        acks: dict[int, asyncio.Future[None]],
    ) -> None:
        """`on_publish` gets inbound PUBLISHes; `acks` maps our packet ids to futures."""
        self._client = client
        self._on_publish = on_publish
        self._acks = acks
        self._fast_packets = False
        self._loop = loop
        self._thread = threading.get_ident()
        self._rbuf = bytearray()
        self._flush_scheduled = False
        self._writer_fd: int | None = None
        self._installed = False
        self._stock_recv: Any = None
        self._stock_write: Any = None
        self._stock_handle: Any = None
        self._stock_loop_read: Any = None

    @staticmethod
    def supported(client: paho.Client) -> bool:
        """True when this paho exposes the internals the adapter hooks."""
        return all(hasattr(client, name) for name in _NEEDED)

    def install(self) -> bool:
        """Hook the client (call on the loop thread once connected); False if unsupported."""
        client = self._client
        if self._installed or not self.supported(client):
            return False
        self._stock_recv = client._sock_recv
        self._stock_write = client._packet_write
        self._stock_handle = client._packet_handle
        self._stock_loop_read = client.loop_read
        # Instance attributes shadow paho's methods; aiomqtt's reader calls loop_read.
        client._sock_recv = self._recv  # type: ignore[method-assign]
        client._packet_write = self._write  # type: ignore[method-assign]
        client.loop_read = self._loop_read  # type: ignore[method-assign]
        # The hand-coded packets are MQTT 3.1.1 shapes; v5 adds properties.
        self._fast_packets = client._protocol != paho.MQTTv5
        if self._fast_packets:
            client._packet_handle = self._handle  # type: ignore[method-assign]
        # aiomqtt's hooks add a writer through the self-pipe; ours flush in this iteration.
        sock = client.socket()
        if sock is not None:
            self._loop.remove_writer(sock.fileno())
        client.on_socket_register_write = self._register
        client.on_socket_unregister_write = self._unregister
        self._installed = True
        if client.want_write():
            self._schedule()
        return True

    def close(self) -> None:
        """Drop the fallback writer, if any (the session ended)."""
        if self._writer_fd is not None:
            self._loop.remove_writer(self._writer_fd)
            self._writer_fd = None

    # -- reads ----------------------------------------------------------------------------

    def _recv(self, bufsize: int) -> bytes:
        buf = self._rbuf
        if not buf:
            data = self._stock_recv(RECV_SIZE)  # raises BlockingIOError when empty
            if not data:
                return b""  # the broker closed the connection
            buf += data
            pending = getattr(self._client._sock, "pending", None)
            # TLS: decrypted bytes can wait inside OpenSSL with the socket not readable.
            while pending is not None and (more := pending()) > 0:
                buf += self._stock_recv(more)
        chunk = bytes(buf[:bufsize])
        del buf[:bufsize]
        return chunk

    def _loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        rc: MQTTErrorCode = self._stock_loop_read(max_packets)
        # paho stops after max_packets; what is left in the buffer raises no readiness.
        while self._rbuf and rc == paho.MQTT_ERR_SUCCESS and self._client._sock is not None:
            rc = self._stock_loop_read(max_packets)
        return rc

    def _handle(self) -> MQTTErrorCode:
        packet = self._client._in_packet
        command = packet["command"]
        kind = command & 0xF0
        body = packet["packet"]
        if kind == PUBACK and len(body) == 2:  # a 3.1.1 PUBACK (v5 may add a reason)
            fut = self._acks.pop((body[0] << 8) | body[1], None)
            if fut is not None:
                if not fut.done():
                    fut.set_result(None)
                return paho.MQTT_ERR_SUCCESS
        elif kind == PUBLISH and (command >> 1) & 0x03 < 2:  # QoS 2 goes to paho
            try:
                message = decode_publish(command, body)
            except ValueError:
                return paho.MQTT_ERR_PROTOCOL  # paho drops the session, as it would
            self._on_publish(message)
            return paho.MQTT_ERR_SUCCESS
        rc: MQTTErrorCode = self._stock_handle()
        return rc

    def publish(self, topic: str, payload: bytes) -> int:
        """Queue a QoS 1 PUBLISH; return its packet id (its PUBACK settles `acks[id]`).

        Only when installed with the fast packets; otherwise use paho's `publish`.
        """
        client = self._client
        mid = client._mid_generate()
        while mid in self._acks:  # 65,535 ids; skip one still awaiting its PUBACK
            mid = client._mid_generate()
        client._packet_queue(PUBLISH | 0x02, encode_publish(topic, payload, mid), mid, 1)
        return mid

    @property
    def fast(self) -> bool:
        """True when inbound PUBLISH/PUBACK and `publish` bypass paho's packet objects."""
        return self._installed and self._fast_packets

    # -- writes ---------------------------------------------------------------------------

    def _register(self, client: paho.Client, userdata: Any, sock: Any) -> None:  # noqa: ANN401
        if threading.get_ident() == self._thread:
            self._schedule()
        else:
            self._loop.call_soon_threadsafe(self._schedule)

    def _unregister(self, client: paho.Client, userdata: Any, sock: Any) -> None:  # noqa: ANN401
        if threading.get_ident() == self._thread:
            self.close()
        else:
            self._loop.call_soon_threadsafe(self.close)

    def _schedule(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        client = self._client
        if client._sock is None:
            self.close()
            return
        client.loop_write()
        if client.want_write() and self._writer_fd is None:
            # The socket buffer is full: wait for it to drain.
            self._writer_fd = client._sock.fileno()
            self._loop.add_writer(self._writer_fd, self._flush)

    def _write(self) -> MQTTErrorCode:
        client = self._client
        out: deque[dict[str, Any]] = client._out_packet  # type: ignore[assignment]
        if not out:
            return paho.MQTT_ERR_SUCCESS
        for packet in out:
            command = packet["command"] & 0xF0
            if command == _DISCONNECT or (command == PUBLISH and packet["qos"] == 0):
                # paho runs callbacks after these; leave them to its own writer.
                rc: MQTTErrorCode = self._stock_write()
                return rc
        data = b"".join(p["packet"][p["pos"] :] if p["pos"] else p["packet"] for p in out)
        try:
            sent = client._sock_send(data)
        except BlockingIOError:
            return paho.MQTT_ERR_AGAIN
        except (AttributeError, ValueError):
            return paho.MQTT_ERR_SUCCESS  # socket gone; paho notices on its next read
        except OSError:
            return paho.MQTT_ERR_CONN_LOST
        while out and sent > 0:
            packet = out[0]
            step = min(sent, packet["to_process"])
            packet["pos"] += step
            packet["to_process"] -= step
            sent -= step
            if packet["to_process"] == 0:
                out.popleft()
        with client._msgtime_mutex:
            client._last_msg_out = paho.time_func()
        return paho.MQTT_ERR_AGAIN if out else paho.MQTT_ERR_SUCCESS
