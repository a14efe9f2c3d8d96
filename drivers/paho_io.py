"""Fewer syscalls for a connected paho client driven by the asyncio loop.

paho reads every packet with three `recv` calls (fixed header byte, length bytes, body),
and writes every packet with its own `send`. Through aiomqtt each write also costs a
self-pipe wake-up and an `add_writer`/`remove_writer` pair. On the hot path that was a
third of alertgw's CPU per signal. This adapter keeps paho as the protocol engine and
changes only how bytes move:

- reads: one `recv` fills a buffer that whole packets are cut from (paho reads each
  packet with three `recv` calls: the type byte, the length bytes, the body);
- writes: every packet queued in one loop iteration goes out in a single `send`, flushed by
  `call_soon`; only a full socket buffer falls back to `add_writer`;
- the packets every signal crosses (an inbound PUBLISH, our QoS 1 PUBLISH to a handset and
  its PUBACK) are coded by `gateway.mqttwire` instead of paho's per-packet objects (a
  message, an info with its own Condition, Properties and a ReasonCode even under 3.1.1),
  in either protocol version; an MQTT 5 PUBACK's reason code settles its future through
  `refusal`.

paho still owns the session: CONNECT, SUBSCRIBE, keep-alive, TLS, the will, and every
other packet. The adapter hooks paho's private `_packet_read` and `_packet_write` and
calls its `_sock_recv` and `_packet_handle` (stable from paho 1.x to 2.2); `install`
checks they are there and leaves the client untouched otherwise, so a paho release that
moves them costs speed, never correctness.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.exception import MalformedPacket

from gateway.mqttwire import (
    PUBACK,
    PUBLISH,
    Publish,
    decode_puback,
    decode_puback5,
    decode_publish,
    encode_puback,
    encode_publish,
)

RECV_SIZE = 65536
_DISCONNECT = 0xE0
_NEEDED = (
    "_sock_recv",
    "_packet_read",
    "_packet_write",
    "_packet_handle",
    "_loop_rc_handle",
    "_registered_write",
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
        after_read: Callable[[], None] | None = None,
        refusal: Callable[[int], BaseException | None] = lambda code: None,
    ) -> None:
        """`on_publish` gets inbound PUBLISHes; `acks` maps our packet ids to futures.

        `after_read` runs once a read's packets are all handed over: a consumer that
        collects them can act on the whole read there, and what it queues for the
        socket leaves in the same callback. `refusal` turns an MQTT 5 PUBACK's non-zero
        reason code into the error its future fails with (None: it succeeded).
        """
        self._client = client
        self._on_publish = on_publish
        self._after_read = after_read
        self._acks = acks
        self._refusal = refusal
        self._fast_packets = False
        self._v5 = False
        self._loop = loop
        self._thread = threading.get_ident()
        self._rbuf = bytearray()
        self._wbuf = bytearray()  # bytes for the socket, in order: paho's packets and ours
        self._flush_handle: asyncio.Handle | None = None
        self._writer_fd: int | None = None
        self._installed = False
        self._body_len = 0
        self._stock_recv: Any = None
        self._stock_read: Any = None
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
        self._stock_read = client._packet_read
        self._stock_write = client._packet_write
        self._stock_handle = client._packet_handle
        self._stock_loop_read = client.loop_read
        # Instance attributes shadow paho's methods; aiomqtt's reader calls loop_read.
        client._packet_read = self._read  # type: ignore[method-assign]
        client._packet_write = self._write  # type: ignore[method-assign]
        client.loop_read = self._loop_read  # type: ignore[method-assign]
        self._v5 = client._protocol == paho.MQTTv5
        # MQTT 3 (3.1) packets may carry what the codec does not check; 3.1.1 and 5 only.
        self._fast_packets = client._protocol in (paho.MQTTv311, paho.MQTTv5)
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

    def _loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        """paho's `loop_read`: one `recv`, then every whole packet in the buffer."""
        client = self._client
        if client._sock is None:
            return paho.MQTT_ERR_NO_CONN
        if client._in_packet["command"]:
            rc: MQTTErrorCode = self._stock_loop_read(max_packets)  # paho was mid-packet
            return rc
        rc = self._fill()
        if rc == paho.MQTT_ERR_SUCCESS:
            with client._msgtime_mutex:
                client._last_bytes_received = paho.time_func()
        elif rc != paho.MQTT_ERR_AGAIN:
            return self._lost(rc)
        while (end := self._complete()) and client._sock is not None:
            if end < 0:
                return self._lost(paho.MQTT_ERR_PROTOCOL)
            rc = self._take(end)
            if rc > 0:
                return self._lost(rc)
        if self._after_read is not None:
            self._after_read()
        if self._flush_handle is not None:
            # Replies to this read (handset messages, PUBACKs) go now, not one loop
            # iteration later behind whatever else is ready.
            self._flush_handle.cancel()
            self._flush()
        return paho.MQTT_ERR_SUCCESS

    def _lost(self, rc: MQTTErrorCode) -> MQTTErrorCode:
        handled: MQTTErrorCode = self._client._loop_rc_handle(rc)
        return handled

    def _fill(self) -> MQTTErrorCode:
        """One `recv` into the buffer (plus what TLS holds decrypted already)."""
        try:
            data = self._stock_recv(RECV_SIZE)
        except BlockingIOError:
            return paho.MQTT_ERR_AGAIN
        except OSError:
            return paho.MQTT_ERR_CONN_LOST
        if not data:
            return paho.MQTT_ERR_CONN_LOST  # the broker closed the connection
        buf = self._rbuf
        buf += data
        pending = getattr(self._client._sock, "pending", None)
        # TLS: decrypted bytes can wait inside OpenSSL with the socket not readable.
        while pending is not None and (more := pending()) > 0:
            buf += self._stock_recv(more)
        return paho.MQTT_ERR_SUCCESS

    def _read(self) -> MQTTErrorCode:
        """paho's `_packet_read`: one whole packet, from the buffer or one `recv` into it."""
        client = self._client
        if client._in_packet["command"]:
            rc: MQTTErrorCode = self._stock_read()  # paho was mid-packet at install
            return rc
        end = self._complete()
        if not end:
            rc = self._fill()
            if rc != paho.MQTT_ERR_SUCCESS:
                return rc
            end = self._complete()
            if not end:
                return paho.MQTT_ERR_AGAIN
        if end < 0:
            return paho.MQTT_ERR_PROTOCOL
        with client._msgtime_mutex:
            client._last_bytes_received = paho.time_func()
        return self._take(end)

    def _take(self, end: int) -> MQTTErrorCode:
        """Handle the buffer's first packet, which ends at `end`."""
        buf = self._rbuf
        command = buf[0]
        body = bytes(buf[end - self._body_len : end])
        del buf[:end]  # O(1): a bytearray drops its head without moving the rest
        return self._handle(command, body)

    def _complete(self) -> int:
        """End offset of the first whole packet in the buffer; 0 if none yet, -1 if bad."""
        buf = self._rbuf
        n = len(buf)
        length, mult, i = 0, 1, 1
        while True:
            if i >= n:
                return 0
            byte = buf[i]
            length += (byte & 0x7F) * mult
            i += 1
            if not byte & 0x80:
                break
            mult *= 128
            if i > 4:  # at most four length bytes (MQTT 3.1.1, 2.2.3)
                return -1
        self._body_len = length
        return i + length if n >= i + length else 0

    def _handle(self, command: int, body: bytes) -> MQTTErrorCode:
        kind = command & 0xF0
        if self._fast_packets:
            if kind == PUBACK:
                try:
                    mid, reason = decode_puback5(body) if self._v5 else (decode_puback(body), 0)
                except ValueError:
                    return paho.MQTT_ERR_PROTOCOL  # paho drops the session, as it would
                fut = self._acks.pop(mid, None)
                if fut is not None:
                    if not fut.done():
                        error = self._refusal(reason) if reason else None
                        if error is None:
                            fut.set_result(None)
                        else:
                            fut.set_exception(error)
                    return paho.MQTT_ERR_SUCCESS
            elif kind == PUBLISH and (command >> 1) & 0x03 < 2:  # QoS 2 goes to paho
                try:
                    message = decode_publish(command, body, v5=self._v5)
                except ValueError:
                    return paho.MQTT_ERR_PROTOCOL
                self._on_publish(message)
                return paho.MQTT_ERR_SUCCESS
        client = self._client
        client._in_packet = _in_packet(command, bytearray(body))
        try:
            rc: MQTTErrorCode = self._stock_handle()
        except MalformedPacket:
            rc = paho.MQTT_ERR_PROTOCOL
        finally:
            client._in_packet = _in_packet(0, bytearray())
        return rc

    def publish(self, topic: str, payload: bytes) -> int:
        """Queue a QoS 1 PUBLISH; return its packet id (its PUBACK settles `acks[id]`).

        Only when installed with the fast packets; otherwise use paho's `publish`.
        """
        client = self._client
        mid = client._mid_generate()
        while mid in self._acks:  # 65,535 ids; skip one still awaiting its PUBACK
            mid = client._mid_generate()
        self._wbuf += encode_publish(topic, payload, mid, v5=self._v5)
        self._schedule()
        return mid

    def ack(self, mid: int) -> None:
        """Queue the PUBACK of an inbound QoS 1 PUBLISH (manual acknowledgement)."""
        self._wbuf += encode_puback(mid)
        self._schedule()

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
        # With the socket full, the writer flushes once it drains. Flushing sooner only
        # meets EAGAIN, on which paho asks for a write again (`_register`): a flush every
        # loop iteration, at full CPU, for as long as the broker does not read.
        if self._flush_handle is None and self._writer_fd is None:
            self._flush_handle = self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_handle = None
        client = self._client
        if client._sock is None:
            self.close()
            return
        # paho asks for a write only while this flag is down (its loop_write lowers it).
        client._registered_write = False
        rc = self._write()
        if rc > 0:
            self._lost(rc)
            return
        if self._wbuf or client._out_packet:
            if self._writer_fd is None:
                # The socket buffer is full: wait for it to drain.
                self._writer_fd = client._sock.fileno()
                self._loop.add_writer(self._writer_fd, self._flush)
        elif self._writer_fd is not None:
            self.close()

    def _write(self) -> MQTTErrorCode:
        """paho's `_packet_write`: paho's queued packets and ours, in one `send`."""
        client = self._client
        out: deque[dict[str, Any]] = client._out_packet  # type: ignore[assignment]
        buf = self._wbuf
        while out:
            packet = out[0]
            command = packet["command"] & 0xF0
            if command == _DISCONNECT or (command == PUBLISH and packet["qos"] == 0):
                # paho runs callbacks after these; leave them to its own writer, once
                # everything before them is out.
                if buf and (rc := self._send()) != paho.MQTT_ERR_SUCCESS:
                    return rc
                stock: MQTTErrorCode = self._stock_write()
                return stock
            buf += packet["packet"][packet["pos"] :]
            out.popleft()
        return self._send() if buf else paho.MQTT_ERR_SUCCESS

    def _send(self) -> MQTTErrorCode:
        client = self._client
        buf = self._wbuf
        try:
            sent = client._sock_send(buf)
        except BlockingIOError:
            return paho.MQTT_ERR_AGAIN
        except (AttributeError, ValueError):
            return paho.MQTT_ERR_SUCCESS  # socket gone; paho notices on its next read
        except OSError:
            return paho.MQTT_ERR_CONN_LOST
        del buf[:sent]
        with client._msgtime_mutex:
            client._last_msg_out = paho.time_func()
        return paho.MQTT_ERR_AGAIN if buf else paho.MQTT_ERR_SUCCESS


def _in_packet(command: int, body: bytearray) -> Any:  # noqa: ANN401 - paho's _InPacket
    """paho's record of the packet being read, holding one whole packet."""
    return {
        "command": command,
        "have_remaining": 1 if command else 0,
        "remaining_count": [],
        "remaining_mult": 1,
        "remaining_length": len(body),
        "packet": body,
        "to_process": 0,
        "pos": 0,
    }
