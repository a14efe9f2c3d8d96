"""ESPA 4.4.4 over serial: nurse-call calls in, DECT/pager calls out.

One `EspaLink` per `espa:` entry drives the sans-IO line core (`gateway.espa`) on a serial
port or a pyserial URL. The read loop feeds received bytes to the line; a timer handle
scheduled at the line's next deadline fires its timers. Both write what the line wants
sent and handle its events, so nothing waits on a poll interval to start a transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import termios
import time
import uuid
from collections.abc import Iterable, Mapping
from typing import Final, Literal

import orjson
import serial
import serial_asyncio
import structlog

from gateway.backoff import Backoff
from gateway.config import Config, EspaLinkConfig
from gateway.errors import ConfigError, DeliveryError, DriverError, PermanentDeliveryError
from gateway.espa import (
    AckHold,
    Block,
    BlockDelivered,
    BlockFailed,
    BlockReceived,
    Call,
    CallStatus,
    CallType,
    ControlStation,
    Event,
    Handle,
    Header,
    InvalidBlockReceived,
    LineConfig,
    LinkDown,
    LinkUp,
    MissingRecordError,
    Priority,
    ProtocolWarning,
    Station,
    StatusOutcome,
    StatusReport,
    SystemStatus,
    TextEncoding,
)
from gateway.metrics import Metrics
from gateway.model import Delivery, Response, ResponseKind, Signal, SignalState
from gateway.ports import DeliveryReport, HandsetChannel, Inbound, Put, Source

__all__ = ["EspaLink", "build_espa", "line_config", "open_port"]

log = structlog.get_logger("alertgw.espa")

READ_SIZE: Final = 1024
SEND_TIMEOUT: Final = 60.0
"""Upper bound for one call to be ACKed; the line itself retries busy selections forever."""
FAULT_AFTER: Final = 3
"""Calls failed in a row (NAKed, refused, never ACKed) that raise a paging_fault alarm."""
MAX_CALLS_PER_ADDRESS: Final = 32
"""Outstanding calls remembered per call address for status matching (oldest forgotten)."""

_PRIORITY: Final = {
    "critical": Priority.ALARM,
    "high": Priority.HIGH,
    "medium": Priority.NORMAL,
    "low": Priority.NORMAL,
}
# Record 3 meaning is system dependent (§5): one code per gateway priority lets the site map
# codes to ring patterns on the DECT/pager side.
_BEEP: Final = {"critical": "1", "high": "2", "medium": "3", "low": "4"}
# An update in one of these states means nobody else needs to be rung: clear the call.
_STOPS_RINGING: Final = frozenset({"accepted", "cleared", "cancelled", "resolved", "suppressed"})


def line_config(lc: EspaLinkConfig) -> LineConfig:
    """Return the line-procedure settings for one configured link."""
    return LineConfig(
        local_address=lc.local_address,
        remote_addresses=(lc.remote_address,),
        poll_interval=lc.poll_interval,
        reply_timeout=lc.reply_timeout,
        recovery_timeout=lc.recovery_timeout,
        max_retransmissions=lc.max_retransmissions,
        mask_high_bit=lc.mask_high_bit,
        link_down_after=lc.link_down_after,
        # The line core's default (60 s, from PBX practice) would hold an alarm for a minute
        # after a paging system comes back; a care home wants it tried every few seconds.
        offline_poll_interval=lc.offline_poll_interval,
        # A held call ACK must reach the sender well inside its reply timeout (ours is the
        # best guess at its), or it resends the call; half leaves room for a slow line.
        ack_hold_timeout=min(lc.reply_timeout, lc.recovery_timeout) / 2,
    )


async def open_port(
    url: str, *, baudrate: int, bytesize: int, parity: str, stopbits: int
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Open a device path, pty or pyserial URL (socket://host:port) as an asyncio stream pair."""
    # serial_for_url blocks (a socket:// URL connects with a 5 s timeout): open it off the
    # loop so an unreachable converter never stalls alert handling. This is what
    # serial_asyncio.open_serial_connection does, minus the blocking open.
    port = await asyncio.to_thread(
        serial.serial_for_url,
        url,
        baudrate=baudrate,
        bytesize=bytesize,
        parity=parity,
        stopbits=stopbits,
    )
    try:
        port.fileno()
    except (OSError, AttributeError):
        # loop:// and cp2110:// have no descriptor for the event loop to watch; without this
        # the failure surfaces later as a traceback inside asyncio's reader callback.
        port.close()
        raise serial.SerialException(
            "not a port the event loop can watch (use a device path, socket:// or rfc2217://)"
        ) from None
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=READ_SIZE * 64)
    protocol = asyncio.StreamReaderProtocol(reader)
    transport, _ = await serial_asyncio.connection_for_serial(loop, lambda: protocol, port)
    return reader, asyncio.StreamWriter(transport, protocol, reader, loop)


def build_espa(config: Config, metrics: Metrics) -> tuple[list[Source], dict[str, HandsetChannel]]:
    """Build one link per `espa:` entry; return its sources and its handsets' channels."""
    sources: list[Source] = []
    channels: dict[str, HandsetChannel] = {}
    for name, lc in config.espa.items():
        named_by = [s for s, sc in config.sources.items() if sc.type == "espa" and sc.link == name]
        if len(named_by) > 1:
            raise ConfigError(
                [f"espa.{name}: named by more than one source ({', '.join(sorted(named_by))})"]
            )
        handsets = {
            h: hc.address
            for h, hc in config.handsets.items()
            if hc.channel == "espa" and hc.link == name and hc.address
        }
        source = named_by[0] if named_by else None
        if source is None and not handsets:
            log.info("espa_link_unused", driver="espa", link=name, port=lc.port)
            continue
        link = EspaLink(name=name, config=lc, metrics=metrics, source=source, handsets=handsets)
        if handsets:
            for handset in handsets:
                channels[handset] = link
            if source is not None:
                sources.append(_DrivenByChannel(source))
        else:
            sources.append(link)
    return sources, channels


class _PortUnusableError(DriverError):
    """pyserial refused the port's URL or settings: retrying unchanged will not help."""


class _DrivenByChannel:
    """The source face of a link that also carries handsets: the channel task runs the port."""

    def __init__(self, name: str) -> None:
        self.name = name

    async def run(self, put: Put) -> None:
        """Wait forever; the link's `run` (started as a channel) puts this source's items."""
        del put
        await asyncio.Event().wait()


class EspaLink:
    """One ESPA line: a Source of nurse-call calls and a HandsetChannel to a paging system."""

    def __init__(
        self,
        *,
        name: str,
        config: EspaLinkConfig,
        metrics: Metrics,
        source: str | None = None,
        handsets: Mapping[str, str] | None = None,
        line: LineConfig | None = None,
    ) -> None:
        self.name = f"espa[{name}]"
        self.link = name
        self._cfg = config
        self._source = source
        self._handsets = dict(handsets or {})
        self._by_address: dict[str, list[str]] = {}
        for handset, address in self._handsets.items():
            self._by_address.setdefault(address, []).append(handset)
        self._encoding = TextEncoding(config.encoding)
        settings = line or line_config(config)
        if source is not None:
            # Calls become signals here: ACK each only once it is journaled (`_on_call`).
            settings = dataclasses.replace(settings, hold_ack_headers=frozenset({Header.CALL}))
        self._line: ControlStation | Station = (
            ControlStation(settings) if config.role == "control_station" else Station(settings)
        )
        self._backoff = Backoff(initial=config.backoff_initial, maximum=config.backoff_max)
        self._gauge = metrics.connected.labels(driver=self.name)
        self._rejects = metrics.rejects
        self._log = log.bind(driver="espa", link=name, port=config.port)
        self._put: Put | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._pending: dict[Handle, tuple[asyncio.Future[None], str]] = {}
        # call address -> alert id -> display texts (record 2 as sent) of its calls there.
        # A status names its call by address and text (§7), never "the last call paged".
        self._calls: dict[str, dict[str, set[bytes]]] = {}
        self._incoming: dict[str, bool] = {}  # active received call -> journaled by the core
        self._peer_up = False
        self._peer_down = False  # the line reported the peer silent (not just unknown)
        self._signalled_down = False  # a link_down signal is raised and not yet cleared
        self._faults: set[str] = set()  # causes of the raised paging_fault signal
        self._failures = 0  # calls failed in a row since the last ACKed one
        self._failed_calls = metrics.espa_calls_failed
        self._unjournaled = metrics.espa_calls_acked_unjournaled.labels(name)
        self._outage = False  # a WARNING was logged for the current outage
        self._warned: set[str] = set()

    @property
    def source(self) -> str | None:
        """The source name this line's calls come in as (None: it only pages)."""
        return self._source

    def resume_calls(self, addresses: Iterable[str]) -> None:
        """Calls the journal holds open at a start: a status request for one says paged.

        Answering "terminated" for a call alertgw still routes would tell the nurse-call
        system that nobody handles it.
        """
        for address in addresses:
            self._incoming[address] = True

    # --- Source / HandsetChannel -----------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True while the port is open and the peer answers (or polls us)."""
        return self._writer is not None and self._peer_up

    async def run(self, put: Put) -> None:
        """Keep the port open forever, reopening with back-off when it vanishes."""
        self._put = put
        self._gauge.set(0)
        loop = asyncio.get_running_loop()
        while True:
            try:
                await self._session(loop)
            except asyncio.CancelledError:
                self._close(loop, report=False)
                raise
            # SerialException is an OSError; termios.error is not (settings the port refuses)
            except (OSError, termios.error, DriverError) as exc:
                error: Exception = exc
            self._close(loop, report=True)
            unusable = isinstance(error, _PortUnusableError)
            delay = self._backoff.fail(fatal=unusable)
            self._raise_link_down("port_config" if unusable else "port")
            if self._outage:
                self._log.debug("espa_port_failed", error=str(error), retry_in=round(delay, 2))
            else:
                self._outage = True
                # A port pyserial cannot even parse will not heal by itself: say so louder.
                level = self._log.error if unusable else self._log.warning
                level("espa_port_failed", error=str(error), retry_in=round(delay, 2))
            await asyncio.sleep(delay)

    async def send(self, delivery: Delivery) -> None:
        """Send one call for `delivery`; return once the paging system ACKed the block."""
        handset = delivery.handset
        address = self._handsets.get(handset)
        if address is None:
            raise DeliveryError(f"handset {handset} is not on espa link {self.link}")
        if self._writer is None or self._peer_down:
            raise DeliveryError(
                f"espa handset {handset}: link {self.link} on {self._cfg.port} is down"
            )
        call = self._call_for(delivery, address)
        oversized = call.oversized_fields(display_limit=self._cfg.display_limit)
        if oversized:
            self._log.info("espa_text_truncated", alert_id=delivery.alert_id, fields=oversized)
        block = call.to_block(encoding=self._encoding, display_limit=self._cfg.display_limit)
        text = block.get("2") or b""
        if not call.is_reset:
            # Known before the ACK: the DECT may report "paged" in the next poll.
            self._remember_call(address, delivery.alert_id, text)
        loop = asyncio.get_running_loop()
        handle = self._line.send_block(block)
        done: asyncio.Future[None] = loop.create_future()
        self._pending[handle] = (done, handset)
        self._service()
        try:
            async with asyncio.timeout(SEND_TIMEOUT):
                await done
        except TimeoutError:
            self._call_failed("no_ack")
            raise DeliveryError(
                f"espa handset {handset}: no ACK from {self._cfg.port} within {SEND_TIMEOUT:g} s"
            ) from None
        finally:
            self._pending.pop(handle, None)
            self._line.cancel(handle)
        if call.is_reset:
            self._forget_call(address, delivery.alert_id)

    # --- port session ----------------------------------------------------------------------

    async def _session(self, loop: asyncio.AbstractEventLoop) -> None:
        cfg = self._cfg
        try:
            reader, self._writer = await open_port(
                cfg.port,
                baudrate=cfg.baudrate,
                bytesize=cfg.bytesize,
                parity=cfg.parity,
                stopbits=cfg.stopbits,
            )
        except ValueError as exc:
            # pyserial: an unknown URL scheme or a setting it refuses. `check` catches the
            # usual ones; here it must not end the link task, which would end the daemon.
            raise _PortUnusableError(f"espa port {cfg.port}: {exc}") from exc
        self._warned.clear()
        self._line.start(loop.time())
        self._log.info("espa_port_opened", role=cfg.role)
        self._service()
        while True:
            data = await reader.read(READ_SIZE)
            if not data:
                raise DriverError(f"espa port {cfg.port} closed")
            self._line.receive(data, loop.time())
            self._service()

    def _close(self, loop: asyncio.AbstractEventLoop, *, report: bool) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        writer, self._writer = self._writer, None
        if writer is not None:
            self._line.connection_lost(loop.time())
            with contextlib.suppress(OSError, RuntimeError):
                writer.close()
        events = self._line.events()
        self._peer_up = False
        self._gauge.set(0)
        if report:
            for event in events:
                self._handle(event)
        self._fail_pending("port closed")

    def _service(self) -> None:
        """Fire due timers, write what the line wants sent, handle events, re-arm the timer."""
        writer = self._writer
        if writer is None:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        self._line.timer(now)
        for event in self._line.events():
            self._handle(event)
        # After the events: a handler may answer on the line (a call with nothing to journal
        # is ACKed at once).
        out = self._line.data_to_send()
        if out:
            writer.write(out)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = self._line.next_deadline()
        if deadline is not None:
            # never re-arm in the past: a stuck deadline must not spin the loop
            self._timer = loop.call_at(max(deadline, now + 0.001), self._service)

    # --- events ----------------------------------------------------------------------------

    def _handle(self, event: Event) -> None:
        match event:
            case BlockReceived(block=block, hold=hold):
                self._on_block(block, hold)
            case BlockDelivered(handle=handle):
                self._failures = 0
                if "calls_failing" in self._faults:
                    self._log.info("espa_calls_recovered")
                    self._fault("calls_failing", active=False, why="call_accepted")
                entry = self._pending.pop(handle, None)
                if entry is not None and not entry[0].done():
                    entry[0].set_result(None)
            case BlockFailed(handle=handle, reason=reason):
                self._call_failed(reason)
                entry = self._pending.pop(handle, None)
                if entry is not None and not entry[0].done():
                    # '3' NAK: the paging system called the message invalid; the same bytes
                    # can never succeed, so the lane must fail it rather than retry it.
                    error = PermanentDeliveryError if reason == "rejected" else DeliveryError
                    entry[0].set_exception(
                        error(
                            f"espa handset {entry[1]}: call not accepted by {self._cfg.port} "
                            f"({reason})"
                        )
                    )
            case LinkUp(address=address):
                self._peer_up = True
                self._peer_down = False
                self._gauge.set(1)
                self._backoff.reset()
                self._outage = False
                self._log.info("espa_link_up", peer=address)
                if self._signalled_down:
                    self._signalled_down = False
                    self._signal(SignalState.CLEARED, "up", kind="link_down")
            case LinkDown(address=address, reason=reason):
                self._peer_up = False
                self._gauge.set(0)
                if reason != "connection_lost":
                    self._peer_down = True
                    if not self._outage:
                        self._outage = True
                        self._log.warning("espa_link_down", peer=address, reason=reason)
                    self._fail_pending(f"peer {address} silent")
                self._raise_link_down(reason)
            case InvalidBlockReceived(reason=reason, acknowledged=acknowledged):
                self._rejects.labels(self.name, f"espa_{reason}").inc()
                # never the payload: it may hold display text (personal data)
                self._log.warning("espa_invalid_block", reason=reason, acknowledged=acknowledged)
            case ProtocolWarning(code="ack_hold_expired"):
                # The journal did not confirm the call in time; the line ACKed it anyway so
                # it does not stall. A crash before the commit now loses this call.
                self._unjournaled.inc()
                self._log.warning(
                    "espa_ack_released_unjournaled",
                    hold_timeout=self._line.config.ack_hold_timeout,
                )
            case ProtocolWarning(code=code, detail=detail):
                self._rejects.labels(self.name, f"espa_{code}").inc()
                if code in ("garbage", "duplicate_block") or code in self._warned:
                    self._log.debug("espa_protocol_warning", code=code, detail=detail)
                else:
                    self._warned.add(code)
                    self._log.warning("espa_protocol_warning", code=code, detail=detail)

    def _on_block(self, block: Block, hold: AckHold | None) -> None:
        """Act on one received block; a held ACK goes out now unless a journal commit sends it."""
        try:
            match block.header:
                case Header.CALL:
                    call = Call.from_block(block, encoding=self._encoding)
                    if self._on_call(call, hold):
                        hold = None
                case Header.STATUS:
                    report = StatusReport.from_block(block, encoding=self._encoding)
                    self._on_status(report, block.get("2"))
                case Header.STATUS_REQUEST:
                    self._on_status_request(Call.from_block(block, encoding=self._encoding))
                case _:
                    self._log.info("espa_block_ignored", header=block.header)
        except MissingRecordError:
            self._log.warning("espa_invalid_block", reason="missing_call_address")
        if hold is not None:
            # Nothing to journal: ACK at once (`_service` writes it after the events).
            self._line.release_ack(hold, asyncio.get_running_loop().time())

    def _on_call(self, call: Call, hold: AckHold | None) -> bool:
        """Put the call for routing; True if its `ack` callback releases `hold`."""
        if self._source is None or self._put is None:
            self._log.info("espa_call_ignored", reason="no source on this link")
            return False
        address = call.address
        if call.is_reset:
            self._incoming.pop(address, None)
        else:
            self._incoming[address] = False
        body = {
            "address": address,
            "message": call.message,
            "call_type": None if call.call_type is None else call.call_type.value,
            "priority": None if call.priority is None else call.priority.value,
            "beep": call.beep,
            "transmissions": call.transmissions,
        }
        incoming = self._incoming

        def journaled() -> None:
            # Called after the commit that holds the signal, or at once while the journal
            # is down (routing from memory then, as for MQTT: a stalled line helps nobody).
            if address in incoming:
                incoming[address] = True
            if hold is not None:
                self._release_ack(hold)

        self._log.debug("espa_call_received", reset=call.is_reset)
        self._put(
            Inbound(
                source=self._source,
                topic=f"espa/{self.link}/{address}",
                payload=orjson.dumps(body),
                received_at=time.time(),
                ack=journaled,
            )
        )
        return True

    def _release_ack(self, hold: AckHold) -> None:
        """Send the held ACK of a journaled call (nothing if the line dropped the hold)."""
        if self._line.release_ack(hold, asyncio.get_running_loop().time()):
            self._service()  # write it now and re-arm the timer without the hold deadline

    def _on_status_request(self, request: Call) -> None:
        # §7: answer with a header-2 block, sent when the control station next polls us.
        state = self._incoming.get(request.address)
        if state is None:
            status = CallStatus.TERMINATED  # never seen, or reset since
        elif state:
            status = CallStatus.PAGED  # the gateway journaled it and routes it
        else:
            status = CallStatus.IN_QUEUE
        report = StatusReport(address=request.address, message=request.message, status=status)
        self._line.send_block(
            report.to_block(encoding=self._encoding, display_limit=self._cfg.display_limit)
        )
        self._log.debug("espa_status_request_answered", status=status.value)

    def _on_status(self, report: StatusReport, text: bytes | None) -> None:
        address = report.address
        outcome = report.outcome
        if report.system_status is SystemStatus.TRANSMITTER_FAILURE:
            # The paging system is up but cannot reach its handsets: calls we hand it are
            # ACKed and then go nowhere. Nobody on a night shift can see that; raise it.
            if "transmitter_failure" not in self._faults:
                self._log.warning("espa_transmitter_failure")
                self._fault("transmitter_failure", active=True)
        elif "transmitter_failure" in self._faults and outcome in (
            StatusOutcome.DELIVERED,
            StatusOutcome.ACKNOWLEDGED,
        ):
            # ESPA has no "transmitter OK" record; a call that reached a handset proves it.
            self._log.info("espa_transmitter_recovered")
            self._fault("transmitter_failure", active=False, why="call_delivered")
        if address is None or outcome is None:
            return
        handsets = self._by_address.get(address, [])
        if not handsets or self._put is None:
            if outcome in (
                StatusOutcome.PENDING,
                StatusOutcome.TERMINATED,
                StatusOutcome.SPEECH_OPEN,
            ):
                self._log.debug("espa_status_unmatched", outcome=outcome.value, reason="no_handset")
                return
            # A carer's acknowledgement for an address no handset has (a typo in a handset's
            # `address`, or the DECT numbers it differently) never accepts anything: say so.
            self._rejects.labels(self.name, "espa_status_unmatched").inc()
            self._log.warning(
                "espa_status_unmatched", outcome=outcome.value, reason="no_handset", address=address
            )
            return
        alert_ids = self._match_status(address, text, outcome)
        now = time.time()
        for handset, alert_id in ((h, a) for a in alert_ids for h in handsets):
            item: DeliveryReport | Response | None = None
            match outcome:
                case StatusOutcome.DELIVERED:
                    item = DeliveryReport(handset, alert_id, "delivered", now, "paged")
                case StatusOutcome.ACKNOWLEDGED:
                    item = Response(handset, alert_id, ResponseKind.ACCEPT, now)
                case StatusOutcome.ABSENT:
                    item = Response(handset, alert_id, ResponseKind.REJECT, now, "absent")
                case StatusOutcome.FAILED:
                    item = DeliveryReport(handset, alert_id, "failed", now, "fault")
                case _:
                    pass  # pending, terminated, speech open: nothing for the core
            self._log.info(
                "espa_status_received", handset=handset, alert_id=alert_id, outcome=outcome.value
            )
            if item is not None:
                self._put(item)

    def _match_status(self, address: str, text: bytes | None, outcome: StatusOutcome) -> list[str]:
        """The alerts a status for `address` (with display `text`, if any) is about.

        Without text the address alone must name one call. A status that would accept or
        confirm a call must name exactly one alert; absent and fault move every candidate
        on, since ringing someone more is safe and a missed escalation is not.
        """
        calls = self._calls.get(address, {})
        if text is None:
            found = list(calls)
        else:
            found = [alert_id for alert_id, texts in calls.items() if text in texts]
        if len(found) == 1 or (found and outcome in (StatusOutcome.ABSENT, StatusOutcome.FAILED)):
            return found
        if outcome in (StatusOutcome.PENDING, StatusOutcome.TERMINATED, StatusOutcome.SPEECH_OPEN):
            return []  # nothing for the core either way
        reason = "ambiguous" if found else "unmatched"
        self._rejects.labels(self.name, f"espa_status_{reason}").inc()
        self._log.warning(
            f"espa_status_{reason}",
            outcome=outcome.value,
            candidates=len(found),
            with_text=text is not None,
        )
        return []

    def _remember_call(self, address: str, alert_id: str, text: bytes) -> None:
        calls = self._calls.setdefault(address, {})
        texts = calls.pop(alert_id, set())  # re-inserted last: the newest call
        texts.add(text)
        calls[alert_id] = texts
        while len(calls) > MAX_CALLS_PER_ADDRESS:
            del calls[next(iter(calls))]

    def _forget_call(self, address: str, alert_id: str) -> None:
        calls = self._calls.get(address)
        if calls is not None:
            calls.pop(alert_id, None)
            if not calls:
                del self._calls[address]

    # --- helpers ---------------------------------------------------------------------------

    def _call_for(self, delivery: Delivery, address: str) -> Call:
        payload = delivery.payload
        action = str(payload.get("type", delivery.action))
        level = "critical" if payload.get("critical") else str(payload.get("priority", "medium"))
        reset = action == "cancel" or (
            action == "update" and payload.get("state") in _STOPS_RINGING
        )
        return Call(
            address=address,
            message=str(payload.get("text") or ""),
            beep=_BEEP.get(level, _BEEP["medium"]),
            call_type=CallType.RESET if reset else CallType.STANDARD,
            priority=_PRIORITY.get(level, Priority.NORMAL),
        )

    def _fail_pending(self, why: str) -> None:
        for handle, (done, handset) in list(self._pending.items()):
            self._line.cancel(handle)
            if not done.done():
                done.set_exception(
                    DeliveryError(f"espa handset {handset}: {why} on {self._cfg.port}")
                )
        self._pending.clear()

    def _call_failed(self, reason: str) -> None:
        """Count a call the paging system did not take; raise paging_fault after FAULT_AFTER."""
        self._failed_calls.labels(self.link, reason).inc()
        self._failures += 1
        if self._failures >= FAULT_AFTER and "calls_failing" not in self._faults:
            # The peer answers polls, so the link looks up, yet no page goes out.
            self._log.warning("espa_calls_failing", failures=self._failures, last=reason)
            self._fault("calls_failing", active=True)

    def _fault(self, cause: str, *, active: bool, why: str = "") -> None:
        """Raise one paging_fault while any cause holds; clear it when the last one ends."""
        was = bool(self._faults)
        if active:
            self._faults.add(cause)
        else:
            self._faults.discard(cause)
        if self._faults and not was:
            self._signal(SignalState.RAISED, cause, kind="paging_fault")
        elif was and not self._faults:
            self._signal(SignalState.CLEARED, why or cause, kind="paging_fault")

    def _raise_link_down(self, reason: str) -> None:
        if not self._signalled_down:
            self._signalled_down = True
            self._signal(SignalState.RAISED, reason, kind="link_down")

    def _signal(
        self,
        state: Literal[SignalState.RAISED, SignalState.CLEARED],
        why: str,
        *,
        kind: Literal["link_down", "paging_fault"],
    ) -> None:
        """A technical alarm about this link (its device is `espa:<link>`)."""
        if self._put is None:
            return
        now = time.time()
        self._put(
            Signal(
                id=f"espa:{self.link}:{kind}:{uuid.uuid4().hex[:12]}",
                source=self._source or self.name,
                device=f"espa:{self.link}",
                room="",
                kind=kind,
                state=state,
                ts=now,
                attrs={"reason": why},
                received_at=now,
            )
        )
