"""Technician tool for ESPA lines: `monitor` live traffic, `send` one test call.

Both take a device path or a pyserial URL (`socket://10.0.0.5:4001`). `monitor` only
listens, so it suits a sniffer tap or a converter's monitor port; it names the sender of
each token where the line procedure makes it known. `send` plays the control station.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import termios
import time
from collections.abc import Sequence
from typing import Final, TextIO

from drivers.espa_serial import open_port
from gateway.closedpipe import stop_quietly_on_closed_stdout
from gateway.espa.codec import (
    Ack,
    BadBlock,
    Block,
    Decoder,
    Enq,
    Eot,
    Garbage,
    InvalidBlock,
    Nak,
    TextEncoding,
    Token,
    decode_text,
)
from gateway.espa.line import (
    BlockDelivered,
    BlockFailed,
    BlockReceived,
    ControlStation,
    LineConfig,
    LinkDown,
)
from gateway.espa.records import (
    Call,
    CallType,
    Header,
    MissingRecordError,
    Priority,
    StatusOutcome,
    StatusReport,
)

__all__ = ["main"]

_NAK_MEANING: Final = {"1": "transmission error", "2": "busy", "3": "invalid message"}
_HEADERS: Final = {
    "1": "call",
    "2": "status",
    "3": "status request",
    "4": "subscriber call",
    "5": "other",
}
_PRIORITIES: Final = {
    "critical": Priority.ALARM,
    "high": Priority.HIGH,
    "normal": Priority.NORMAL,
    "1": Priority.ALARM,
    "2": Priority.HIGH,
    "3": Priority.NORMAL,
}


def main(argv: Sequence[str]) -> int:
    """Run `monitor` or `send`; return the process exit code."""
    parser = argparse.ArgumentParser(prog="alertgw espa", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_mon = sub.add_parser("monitor", help="decode and print live line traffic until Ctrl-C")
    _port_args(p_mon)
    p_mon.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    p_send = sub.add_parser("send", help="act as control station and send one test call")
    _port_args(p_send)
    p_send.add_argument("--address", required=True, help="call address (pager/handset number)")
    p_send.add_argument("--text", default="Test", help="display message")
    p_send.add_argument("--priority", choices=sorted(_PRIORITIES), default="normal")
    p_send.add_argument("--beep", default=None, help="beep coding 1-9 (system dependent)")
    p_send.add_argument("--reset", action="store_true", help="send a reset (cancel) call")
    p_send.add_argument("--local", default="1", help="our station address")
    p_send.add_argument("--remote", default="2", help="the paging system's station address")
    p_send.add_argument("--poll-interval", type=float, default=0.5)
    p_send.add_argument("--reply-timeout", type=float, default=2.0)
    p_send.add_argument("--timeout", type=float, default=15.0, help="give up waiting for ACK")
    p_send.add_argument(
        "--status-wait",
        type=float,
        default=5.0,
        help="after the ACK, keep polling this long for a status report",
    )
    args = parser.parse_args(argv)
    try:
        if args.command == "monitor":
            # Live traffic has no end: `| head` must not blame the port for the closed pipe.
            # (Monitoring only reads the port, so a broken pipe here is standard output's.)
            return stop_quietly_on_closed_stdout(lambda: asyncio.run(_monitor(args, sys.stdout)))
        return asyncio.run(_send(args, sys.stdout))
    except KeyboardInterrupt:
        return 0 if args.command == "monitor" else 130
    # SerialException is an OSError; termios.error: the port refused the line settings
    except (OSError, termios.error) as exc:
        print(f"alertgw espa: {args.port}: {exc}", file=sys.stderr)
        return 1


def _port_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("port", help="device path or pyserial URL, e.g. socket://10.0.0.5:4001")
    parser.add_argument("--baud", type=int, default=9600)
    parser.add_argument("--bytesize", type=int, choices=(7, 8), default=7)
    parser.add_argument("--parity", choices=("N", "E", "O"), default="E")
    parser.add_argument("--stopbits", type=int, choices=(1, 2), default=2)
    parser.add_argument(
        "--encoding", choices=[e.value for e in TextEncoding], default=TextEncoding.ISO646_NO.value
    )
    parser.add_argument(
        "--mask-high-bit", action="store_true", help="7E1 peer on an 8-bit port: drop bit 7"
    )


async def _open(args: argparse.Namespace) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await open_port(
        args.port,
        baudrate=args.baud,
        bytesize=args.bytesize,
        parity=args.parity,
        stopbits=args.stopbits,
    )


def _stamp() -> str:
    now = time.time()
    return time.strftime("%H:%M:%S", time.localtime(now)) + f".{int(now % 1 * 1000):03d}"


# --- monitor --------------------------------------------------------------------------------


class Narrator:
    """Names each token and, where the line procedure tells, who sent it (§4)."""

    def __init__(self, encoding: TextEncoding) -> None:
        self.encoding = encoding
        self._phase = "poll"  # poll → answer → select_reply → data → block_reply → data …
        self._polled: str | None = None
        self._tm: str | None = None
        self._slave: str | None = None

    def describe(self, token: Token) -> tuple[str, str]:
        """Return (direction, text) for one token; direction is '' when unknown."""
        match token:
            case Eot():
                self._phase = "poll"
                self._tm = self._slave = self._polled = None
                return "", "EOT"
            case Enq(addr=None):
                return "", "ENQ (no address)"
            case Enq(addr=addr):
                if self._phase == "answer" and self._polled is not None:
                    # the polled station (or the CS polling itself) selects `addr`
                    self._tm, self._slave = self._polled, addr
                    self._phase = "select_reply"
                    return f"{self._tm}->{addr}", f"select {addr}"
                self._polled = addr
                self._phase = "answer"
                return f"CS->{addr}", f"poll {addr}"
            case Ack():
                direction = self._reply_direction()
                if self._phase in ("select_reply", "block_reply"):
                    self._phase = "data"
                return direction, "ACK"
            case Nak(error=error):
                direction = self._reply_direction()
                meaning = _NAK_MEANING.get(error or "1", "unknown")
                return direction, f"NAK {error or '(bare)'} {meaning}"
            case Block():
                direction = f"{self._tm}->{self._slave}" if self._tm and self._slave else ""
                self._phase = "block_reply"
                return direction, describe_block(token, self.encoding)
            case BadBlock(reason=reason):
                self._phase = "block_reply"
                return "", f"block BAD ({reason})"
            case InvalidBlock(reason=reason, payload=payload):
                self._phase = "block_reply"
                return "", f"block INVALID ({reason}) {payload!r}"
            case Garbage(data=data):
                return "", f"garbage {len(data)} bytes: {data[:32].hex(' ')}"

    def _reply_direction(self) -> str:
        if self._phase in ("select_reply", "block_reply") and self._tm and self._slave:
            return f"{self._slave}->{self._tm}"
        return ""


def describe_block(block: Block, encoding: TextEncoding) -> str:
    """Return a one-line decoding of a block's header and records."""
    name = _HEADERS.get(block.header, "vendor")
    try:
        if block.header in (Header.CALL, Header.STATUS_REQUEST, Header.SUBSCRIBER_CALL):
            call = Call.from_block(block, encoding=encoding)
            fields = _fields(
                address=call.address,
                message=call.message,
                beep=call.beep,
                call_type=call.call_type.name.lower() if call.call_type else None,
                transmissions=call.transmissions,
                priority=call.priority.name.lower() if call.priority else None,
            )
        elif block.header == Header.STATUS:
            report = StatusReport.from_block(block, encoding=encoding)
            fields = _fields(
                address=report.address,
                message=report.message,
                status=report.status.name.lower() if report.status else None,
                system=report.system_status.name.lower() if report.system_status else None,
            )
        else:
            fields = " ".join(f"{i}={decode_text(d, encoding)!r}" for i, d in block.records)
    except MissingRecordError:
        fields = "(no call address) " + " ".join(
            f"{i}={decode_text(d, encoding)!r}" for i, d in block.records
        )
    return f"block header {block.header} ({name}) {fields}".rstrip()


def _fields(**values: object) -> str:
    return " ".join(f"{k}={v!r}" for k, v in values.items() if v is not None)


async def _monitor(args: argparse.Namespace, out: TextIO) -> int:
    reader, writer = await _open(args)
    encoding = TextEncoding(args.encoding)
    decoder = Decoder(mask_high_bit=args.mask_high_bit)
    narrator = Narrator(encoding)
    loop = asyncio.get_running_loop()
    stop_at = None if args.duration is None else loop.time() + args.duration
    print(f"monitoring {args.port} (Ctrl-C to stop)", file=out, flush=True)
    try:
        while stop_at is None or loop.time() < stop_at:
            deadlines = [d for d in (decoder.deadline(), stop_at) if d is not None]
            try:
                async with asyncio.timeout_at(min(deadlines) if deadlines else None):
                    data = await reader.read(1024)
            except TimeoutError:
                decoder.expire(loop.time())
            else:
                if not data:
                    print(f"{_stamp()}  port closed", file=out, flush=True)
                    return 1
                decoder.feed(data, loop.time())
            for token in decoder.tokens():
                direction, text = narrator.describe(token)
                print(f"{_stamp()}  {direction:<5} {text}", file=out, flush=True)
    finally:
        writer.close()
    return 0


# --- send -----------------------------------------------------------------------------------


async def _send(args: argparse.Namespace, out: TextIO) -> int:
    encoding = TextEncoding(args.encoding)
    try:
        line = ControlStation(
            LineConfig(
                local_address=args.local,
                remote_addresses=(args.remote,),
                poll_interval=args.poll_interval,
                reply_timeout=args.reply_timeout,
                mask_high_bit=args.mask_high_bit,
            )
        )
    except ValueError as exc:
        print(f"alertgw espa: {exc}", file=out)
        return 2
    call = Call(
        address=args.address,
        message=args.text,
        beep=args.beep,
        call_type=CallType.RESET if args.reset else CallType.STANDARD,
        priority=_PRIORITIES[args.priority],
    )
    reader, writer = await _open(args)
    loop = asyncio.get_running_loop()
    line.start(loop.time())
    handle = line.send_block(call.to_block(encoding=encoding))
    print(f"sending call to {args.address} via station {args.remote} on {args.port}", file=out)
    acked: bool | None = None
    status: StatusReport | None = None
    give_up = loop.time() + args.timeout
    try:
        while True:
            now = loop.time()
            if acked is None and now >= give_up:
                print(f"FAILED: no ACK within {args.timeout:g} s", file=out)
                return 1
            if acked and (status is not None or now >= give_up):
                break
            deadlines = [d for d in (line.next_deadline(), give_up) if d is not None]
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(min(deadlines)):
                    data = await reader.read(1024)
                    if not data:
                        print("FAILED: port closed", file=out)
                        return 1
                    line.receive(data, loop.time())
            line.timer(loop.time())
            writer.write(line.data_to_send())
            for event in line.events():
                match event:
                    case BlockDelivered(handle=h) if h == handle:
                        acked = True
                        print("ACK: the paging system accepted the call", file=out, flush=True)
                        give_up = loop.time() + args.status_wait
                    case BlockFailed(handle=h, reason=reason) if h == handle:
                        print(f"FAILED: call not accepted ({reason})", file=out)
                        return 1
                    case BlockReceived(block=block) if block.header == Header.STATUS:
                        try:
                            report = StatusReport.from_block(block, encoding=encoding)
                        except MissingRecordError:
                            continue
                        print(f"status: {describe_block(block, encoding)}", file=out, flush=True)
                        if report.address == args.address and report.status is not None:
                            status = report
                    case LinkDown(reason=reason):
                        print(f"link down ({reason})", file=out, flush=True)
                    case _:
                        pass
    finally:
        writer.write(b"\x04")  # leave the line neutral for the real control station
        writer.close()
    if status is None:
        print(f"no status report within {args.status_wait:g} s", file=out)
        return 0
    outcome = status.outcome
    print(f"STATUS: {outcome.value if outcome else 'unknown'}", file=out)
    return 1 if outcome is StatusOutcome.FAILED else 0
