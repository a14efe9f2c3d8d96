"""An independent ESPA 4.4.4 peer for tests, on the master side of a real pty pair.

It frames, checks BCCs and answers with its own few lines of code (never `gateway.espa`),
so a bug shared by the gateway's encoder and decoder cannot hide. `NurseCall` plays a
nurse-call control station ('1') talking to the gateway as paging side ('2'); `Dect`
plays a DECT/pager system ('2') answering the gateway as control station ('1').
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import tty
from collections import deque
from pathlib import Path

SOH, STX, ETX, EOT, ENQ, ACK, NAK, US, RS = 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x15, 0x1F, 0x1E
GARBAGE = b"\r\n\x00\xff\x80 7"


def bcc(body: bytes) -> int:
    """XOR of every byte after SOH through ETX."""
    out = 0
    for b in body:
        out ^= b
    return out


def frame(header: str, records: list[tuple[str, bytes]]) -> bytes:
    """Encode SOH header STX id US data {RS id US data} ETX BCC."""
    body = header.encode() + bytes([STX])
    body += bytes([RS]).join(i.encode() + bytes([US]) + d for i, d in records)
    body += bytes([ETX])
    return bytes([SOH]) + body + bytes([bcc(body)])


@dataclasses.dataclass
class Tok:
    """One token seen on the line."""

    kind: str  # eot | ack | nak | enq | block | garbage
    arg: str | None = None  # enq address / nak error digit
    header: str = ""
    records: dict[str, bytes] = dataclasses.field(default_factory=dict)
    ok: bool = True  # block BCC correct


class Parser:
    """A deliberately small framer: enough for well-formed gateway output."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._block: bytearray | None = None
        self._await_bcc = False
        self._digit: str | None = None

    def feed(self, data: bytes) -> list[Tok]:
        """Return the tokens completed by `data`."""
        out: list[Tok] = []
        for b in data:
            if self._block is not None:
                if self._await_bcc:
                    out.append(self._finish(b))
                    continue
                self._block.append(b)
                if b == ETX:
                    self._await_bcc = True
                continue
            digit, self._digit = self._digit, None
            if digit is not None and b in (ENQ, NAK):
                out.append(Tok("enq" if b == ENQ else "nak", digit))
            elif 0x30 <= b <= 0x39:
                self._digit = chr(b)
            elif b == SOH:
                self._block = bytearray()
            elif b == EOT:
                out.append(Tok("eot"))
            elif b == ACK:
                out.append(Tok("ack"))
            elif b == NAK:
                out.append(Tok("nak"))
            else:
                out.append(Tok("garbage"))
        return out

    def _finish(self, check: int) -> Tok:
        body = bytes(self._block or b"")
        self._block = None
        self._await_bcc = False
        head, _, rest = body[:-1].partition(bytes([STX]))
        records: dict[str, bytes] = {}
        for piece in rest.split(bytes([RS])):
            ident, _, data = piece.partition(bytes([US]))
            if ident:
                records[ident.decode()] = data
        return Tok("block", header=head.decode(), records=records, ok=bcc(body) == check)


class PtyPeer:
    """The master end of a pty pair; the driver opens `path` (the slave)."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)  # no echo or line editing before the driver configures it
        os.set_blocking(self.master, False)
        self.path = os.ttyname(self.slave)
        self.tokens: asyncio.Queue[Tok] = asyncio.Queue()
        self.received = bytearray()
        self._parser = Parser()
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self.master, self._readable)
        self.closed = False

    def _readable(self) -> None:
        try:
            data = os.read(self.master, 4096)
        except BlockingIOError:
            return
        except OSError:  # EIO: nobody holds the slave open
            data = b""
        if not data:
            self._loop.remove_reader(self.master)
            return
        self.received += data
        for tok in self._parser.feed(data):
            self.tokens.put_nowait(tok)

    def write(self, data: bytes) -> None:
        """Write raw bytes towards the driver."""
        os.write(self.master, data)

    async def next(self, timeout: float = 3.0) -> Tok:
        """Return the next non-garbage token."""
        async with asyncio.timeout(timeout):
            while True:
                tok = await self.tokens.get()
                if tok.kind != "garbage":
                    return tok

    def close(self) -> None:
        """Close both ends: to the driver the port vanishes."""
        if self.closed:
            return
        self.closed = True
        self._loop.remove_reader(self.master)
        os.close(self.master)
        os.close(self.slave)


def link_to(peer: PtyPeer, link: Path) -> None:
    """Point the symlink `link` at the peer's slave path (atomically)."""
    tmp = link.with_name(link.name + ".new")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    tmp.symlink_to(peer.path)
    tmp.replace(link)


class NurseCall:
    """A nurse-call control station '1' sending calls to the paging side '2' (the gateway)."""

    def __init__(self, port: PtyPeer, *, own: str = "1", remote: str = "2") -> None:
        self.port = port
        self.own = own
        self.remote = remote

    def _enq(self, addr: str) -> bytes:
        return addr.encode() + bytes([ENQ])

    async def call(
        self,
        records: list[tuple[str, bytes]],
        *,
        header: str = "1",
        corrupt_first: bool = False,
        noise: bytes = b"",
    ) -> list[Tok]:
        """Self-poll, select, send one block (optionally corrupted once); return the replies."""
        replies: list[Tok] = []
        self.port.write(noise + self._enq(self.own) + noise + self._enq(self.remote))
        replies.append(await self.port.next())
        if replies[-1].kind != "ack":
            self.port.write(bytes([EOT]))
            return replies
        block = frame(header, records)
        if corrupt_first:
            self.port.write(block[:-1] + bytes([block[-1] ^ 0x55]))
            replies.append(await self.port.next())
        self.port.write(noise + block)
        replies.append(await self.port.next())
        self.port.write(bytes([EOT]) + noise)
        return replies

    async def poll(self) -> Tok | None:
        """Poll the paging side; take a status block if it has one, else None."""
        self.port.write(self._enq(self.remote))
        tok = await self.port.next()
        if tok.kind == "eot":
            return None
        assert tok.kind == "enq", tok
        assert tok.arg == self.own, tok
        self.port.write(bytes([ACK]))
        block = await self.port.next()
        assert block.kind == "block", block
        self.port.write(bytes([ACK]))
        end = await self.port.next()
        assert end.kind == "eot", end
        return block


class Dect:
    """A DECT/pager system, station '2', answering the gateway as control station '1'."""

    def __init__(self, port: PtyPeer, *, own: str = "2", cs: str = "1") -> None:
        self.port = port
        self.own = own
        self.cs = cs
        self.calls: asyncio.Queue[Tok] = asyncio.Queue()
        self.statuses: deque[bytes] = deque()
        self.busy_selects = 0
        self.nak_blocks = 0
        self.reject_blocks = 0
        self.polls = 0

    def status(self, address: str, status: str, *, text: bytes | None = None) -> None:
        """Queue a header-2 status block for the next poll."""
        records = [("1", address.encode())]
        if text is not None:
            records.append(("2", text))
        records.append(("7", status.encode()))
        self.statuses.append(frame("2", records))

    def system_status(self, code: str = "1") -> None:
        """Queue a header-2 block with only record 8 (system status; '1' transmitter failure)."""
        self.statuses.append(frame("2", [("8", code.encode())]))

    async def run(self) -> None:
        """Answer polls and selections forever."""
        selected = False
        other_polled = False
        while True:
            tok = await self.port.tokens.get()
            if tok.kind == "eot":
                selected = other_polled = False
            elif tok.kind == "enq" and tok.arg != self.own:
                other_polled = True  # the CS self-poll: a select follows
            elif tok.kind == "enq" and other_polled:
                other_polled = False
                if self.busy_selects:
                    self.busy_selects -= 1
                    self.port.write(self.own.encode() + bytes([NAK]))
                else:
                    selected = True
                    self.port.write(bytes([ACK]))
            elif tok.kind == "enq":
                self.polls += 1
                await self._polled()
            elif tok.kind == "block" and selected:
                if not tok.ok or self.nak_blocks:
                    self.nak_blocks = max(0, self.nak_blocks - 1)
                    self.port.write(b"1" + bytes([NAK]))
                elif self.reject_blocks:
                    self.reject_blocks -= 1
                    self.port.write(b"3" + bytes([NAK]))
                else:
                    self.port.write(bytes([ACK]))
                    self.calls.put_nowait(tok)

    async def _polled(self) -> None:
        if not self.statuses:
            self.port.write(bytes([EOT]))
            return
        self.port.write(self.cs.encode() + bytes([ENQ]))
        tok = await self.port.next()
        if tok.kind != "ack":
            self.port.write(bytes([EOT]))
            return
        self.port.write(self.statuses[0])
        tok = await self.port.next()
        if tok.kind == "ack":
            self.statuses.popleft()
        self.port.write(bytes([EOT]))
