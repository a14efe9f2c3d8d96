"""Sans-IO ESPA 4.4.4 line procedure for the control station and a non-control station (§4, §9)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import Enum
from typing import Final, Literal, NewType, TypeAlias

from gateway.espa.codec import (
    ACK,
    DEFAULT_MAX_BLOCK_LENGTH,
    EOT,
    Ack,
    BadBlock,
    Block,
    Decoder,
    Enq,
    Eot,
    Garbage,
    InvalidBlock,
    Nak,
    Token,
    encode_enq,
    encode_nak,
)
from gateway.espa.records import validate_block

__all__ = [
    "AckHold",
    "BlockDelivered",
    "BlockFailed",
    "BlockReceived",
    "ControlStation",
    "Event",
    "FailureReason",
    "Handle",
    "InvalidBlockReceived",
    "LineConfig",
    "LineState",
    "LinkDown",
    "LinkDownReason",
    "LinkUp",
    "ProtocolWarning",
    "Station",
    "WarningCode",
]

Handle = NewType("Handle", int)
"""Identifies one block passed to `send_block`."""

AckHold = NewType("AckHold", int)
"""Identifies one received block whose ACK waits for `release_ack`."""

FailureReason: TypeAlias = Literal["rejected", "retries_exhausted"]
LinkDownReason: TypeAlias = Literal["no_answer", "no_poll", "connection_lost"]
WarningCode: TypeAlias = Literal[
    "garbage",
    "both_control_stations",
    "unexpected_reply",
    "duplicate_identifiers",
    "duplicate_block",
    "ack_hold_expired",
    "ack_hold_dropped",
]

_EOT: Final = bytes((EOT,))
_ACK: Final = bytes((ACK,))
_NAK_TRANSMISSION: Final = encode_nak("1")
_NAK_BUSY: Final = encode_nak("2")
_NAK_INVALID: Final = encode_nak("3")


@dataclass(frozen=True, slots=True)
class BlockReceived:
    """A valid block was received; `source` is the sending station's address.

    It is acknowledged already, unless `hold` is set: then the ACK waits for
    `release_ack(hold, now)` or, at the latest, `ack_hold_timeout`.
    """

    block: Block
    source: str | None
    hold: AckHold | None = None


@dataclass(frozen=True, slots=True)
class InvalidBlockReceived:
    """A block with unusable content arrived; ACKed in lenient mode, `'3' NAK`ed in strict mode."""

    reason: str
    payload: bytes
    source: str | None
    acknowledged: bool


@dataclass(frozen=True, slots=True)
class BlockDelivered:
    """The selected station ACKed the block (accepted, not yet seen by a person, §7)."""

    handle: Handle


@dataclass(frozen=True, slots=True)
class BlockFailed:
    """The block was given up: NAK '3', or every send was NAKed or unanswered."""

    handle: Handle
    reason: FailureReason


@dataclass(frozen=True, slots=True)
class LinkUp:
    """The peer at `address` answers (control station) or polls us (station)."""

    address: str


@dataclass(frozen=True, slots=True)
class LinkDown:
    """The peer at `address` stopped answering or polling, or the port was lost."""

    address: str
    reason: LinkDownReason


@dataclass(frozen=True, slots=True)
class ProtocolWarning:
    """Something on the line worth logging that needs no action from the caller."""

    code: WarningCode
    detail: str


Event: TypeAlias = (
    BlockReceived
    | InvalidBlockReceived
    | BlockDelivered
    | BlockFailed
    | LinkUp
    | LinkDown
    | ProtocolWarning
)


class LineState(Enum):
    """Line-procedure state (§9.2, §9.3); IDLE is NEUTRAL for a non-control station."""

    STOPPED = "stopped"
    IDLE = "idle"
    WAIT_POLL_REPLY = "wait_poll_reply"
    EXPECT_SELECT = "expect_select"
    WAIT_SELECT_ACK = "wait_select_ack"
    WAIT_BLOCK_ACK = "wait_block_ack"
    RECEIVING = "receiving"
    HOLD_ACK = "hold_ack"
    PASSIVE = "passive"


def _is_address(addr: str) -> bool:
    return len(addr) == 1 and "0" <= addr <= "9"


@dataclass(frozen=True, slots=True, kw_only=True)
class LineConfig:
    """Addresses, timers (seconds) and policies for one ESPA line (§8)."""

    local_address: str
    remote_addresses: tuple[str, ...]
    """Stations the control station polls; a station sends to the first (the CS) by default."""
    poll_interval: float = 0.5
    reply_timeout: float = 2.0
    inter_char_timeout: float = 1.0
    recovery_timeout: float = 10.0
    retry_delay: float = 1.0
    max_retransmissions: int = 2
    link_down_after: float = 30.0
    offline_poll_interval: float = 60.0
    dedup_window: float = 5.0
    strict: bool = False
    accepted_headers: frozenset[str] = frozenset({"1", "2", "3", "4", "5"})
    """In strict mode, blocks with other headers are answered `'3' NAK`."""
    mask_high_bit: bool = False
    max_block_length: int = DEFAULT_MAX_BLOCK_LENGTH
    hold_ack_headers: frozenset[str] = frozenset()
    """Valid blocks with these headers are ACKed only on `release_ack` (none by default)."""
    ack_hold_timeout: float = 1.0
    """A held ACK is sent anyway this long after its block; below reply_timeout when used."""

    def __post_init__(self) -> None:
        """Reject addresses and timers the line procedure cannot work with."""
        if not _is_address(self.local_address):
            raise ValueError(f"local_address must be one digit, got {self.local_address!r}")
        if not self.remote_addresses:
            raise ValueError("remote_addresses must name at least one station")
        for addr in self.remote_addresses:
            if not _is_address(addr) or addr == self.local_address:
                raise ValueError(f"remote address {addr!r} must be a digit other than local")
        if len(set(self.remote_addresses)) != len(self.remote_addresses):
            raise ValueError("remote_addresses must be unique")
        timers = (
            self.poll_interval,
            self.reply_timeout,
            self.inter_char_timeout,
            self.recovery_timeout,
            self.retry_delay,
            self.link_down_after,
            self.offline_poll_interval,
            self.ack_hold_timeout,
        )
        if min(timers) <= 0 or self.dedup_window < 0:
            raise ValueError("ESPA timers must be positive")
        if self.hold_ack_headers and self.ack_hold_timeout >= min(
            self.reply_timeout, self.recovery_timeout
        ):
            # The sender resends or gives up after its reply timeout: a later ACK is no use.
            raise ValueError("ack_hold_timeout must be below reply_timeout and recovery_timeout")
        if self.max_retransmissions < 0:
            raise ValueError("max_retransmissions must be >= 0")


@dataclass(slots=True)
class _Outgoing:
    handle: Handle
    dest: str
    frame: bytes
    sends: int = 0
    withdrawn: bool = False  # cancelled while in flight: finish the transaction without it


@dataclass(slots=True)
class _Link:
    last_heard: float
    up: bool | None = None


@dataclass(slots=True)
class _Received:
    block: Block
    at: float


_MAX_TIMER_STEPS: Final = 16


class _Line:
    """Behaviour shared by both roles: framing, the TM sending path and the Slave path."""

    def __init__(self, config: LineConfig) -> None:
        self._config = config
        self._decoder = Decoder(
            mask_high_bit=config.mask_high_bit,
            max_block_length=config.max_block_length,
            inter_char_timeout=config.inter_char_timeout,
        )
        self._out = bytearray()
        self._events: list[Event] = []
        self._queue: deque[_Outgoing] = deque()
        self._next_handle = 1
        self._state = LineState.STOPPED
        self._deadline: float | None = None
        self._current: _Outgoing | None = None
        self._tm: str | None = None  # the station that selected us (source of blocks)
        self._last_received: _Received | None = None
        self._hold: AckHold | None = None  # the block in HOLD_ACK
        self._next_hold = 1
        self._tx_hold: dict[str, float] = {}
        self._links: dict[str, _Link] = {}
        self.accepting = True
        """Set False to refuse selections with `'2' NAK` (busy, §3)."""

    # --- public API ---------------------------------------------------------------------

    @property
    def config(self) -> LineConfig:
        """The configuration this line was built with."""
        return self._config

    @property
    def state(self) -> LineState:
        """The current line-procedure state."""
        return self._state

    @property
    def pending(self) -> int:
        """Blocks queued or in flight (a withdrawn block finishing its transaction is not)."""
        current = self._current
        return len(self._queue) + (current is not None and not current.withdrawn)

    def start(self, now: float) -> None:
        """Begin (or, after `connection_lost`, resume) the line procedure at time `now`."""
        self._decoder.reset()
        self._links = {addr: _Link(last_heard=now) for addr in self._link_addresses()}
        self._tx_hold.clear()
        self._go_idle(now)

    def receive(self, data: bytes, now: float) -> None:
        """Process bytes read from the port at `now`; input while STOPPED is discarded."""
        if self._state is LineState.STOPPED:
            return
        self._decoder.feed(data, now)
        self._dispatch(now)

    def timer(self, now: float) -> None:
        """Fire every deadline that is due at `now`."""
        if self._state is LineState.STOPPED:
            return
        self._decoder.expire(now)
        self._dispatch(now)
        for _ in range(_MAX_TIMER_STEPS):
            deadline = self._state_deadline()
            if deadline is None or now < deadline:
                break
            self._on_deadline(now)
        self._check_links(now)

    def next_deadline(self) -> float | None:
        """Return when `timer` must next be called, or None if nothing is scheduled."""
        if self._state is LineState.STOPPED:
            return None
        candidates = [self._decoder.deadline(), self._state_deadline(), self._link_deadline()]
        present = [c for c in candidates if c is not None]
        return min(present) if present else None

    def data_to_send(self) -> bytes:
        """Return and clear the bytes to write to the port."""
        out = bytes(self._out)
        self._out.clear()
        return out

    def events(self) -> list[Event]:
        """Return and clear the events produced so far."""
        out, self._events = self._events, []
        return out

    def release_ack(self, hold: AckHold, now: float) -> bool:
        """ACK the block held as `hold`; False, sending nothing, if that hold has ended.

        A hold ends with its ACK (released or timed out), an EOT, or `connection_lost`;
        releasing it again, or late, is harmless.
        """
        if self._state is not LineState.HOLD_ACK or hold != self._hold:
            return False
        self._send_held_ack(now)
        return True

    def send_block(self, block: Block, *, dest: str | None = None) -> Handle:
        """Queue `block` for `dest` (default: the first remote address); raise on bad fields."""
        target = self._config.remote_addresses[0] if dest is None else dest
        if not _is_address(target) or target == self._config.local_address:
            raise ValueError(f"ESPA destination must be a remote digit address, got {target!r}")
        frame = block.encode()
        handle = Handle(self._next_handle)
        self._next_handle += 1
        self._queue.append(_Outgoing(handle, target, frame))
        return handle

    def cancel(self, handle: Handle) -> bool:
        """Withdraw a queued or in-flight block; return False if it is unknown or finished.

        A block being selected or sent is never sent (again): a select answered with ACK
        gets EOT, a NAK or timeout ends the transaction instead of resending, and no
        event is reported for it. A block already on the wire may still have been taken.
        """
        current = self._current
        if current is not None and current.handle == handle and not current.withdrawn:
            current.withdrawn = True
            return True
        for item in self._queue:
            if item.handle == handle:
                self._queue.remove(item)
                return True
        return False

    def connection_lost(self, now: float) -> None:
        """Note the port is gone: requeue the block in flight, report links down, stop."""
        del now  # part of the uniform call shape; nothing here depends on time
        if self._current is not None and not self._current.withdrawn:
            self._queue.appendleft(self._current)
        self._current = None
        for addr, link in self._links.items():
            if link.up is not False:
                link.up = False
                self._events.append(LinkDown(addr, "connection_lost"))
        self._out.clear()
        self._decoder.reset()
        self._state = LineState.STOPPED
        self._deadline = None
        self._last_received = None
        self._hold = None

    # --- role hooks ---------------------------------------------------------------------

    def _link_addresses(self) -> tuple[str, ...]:
        raise NotImplementedError

    def _go_idle(self, now: float) -> None:
        raise NotImplementedError

    def _on_idle_token(self, token: Token, now: float) -> None:
        raise NotImplementedError

    def _on_role_token(self, token: Token, now: float) -> None:
        raise NotImplementedError

    def _on_role_deadline(self, now: float) -> None:
        raise NotImplementedError

    def _on_line_silent(self, now: float) -> None:
        raise NotImplementedError

    def _idle_deadline(self) -> float | None:
        raise NotImplementedError

    def _link_deadline(self) -> float | None:
        raise NotImplementedError

    def _check_links(self, now: float) -> None:
        raise NotImplementedError

    # --- dispatch -----------------------------------------------------------------------

    def _state_deadline(self) -> float | None:
        if self._state is LineState.IDLE:
            return self._idle_deadline()
        return self._deadline

    def _dispatch(self, now: float) -> None:
        for token in self._decoder.tokens():
            self._on_token(token, now)

    def _on_token(self, token: Token, now: float) -> None:
        if isinstance(token, Garbage):
            # §10 #7: never act on garbage, and it is not "valid traffic" for recovery.
            # Only the size: a discarded partial block may hold display text (personal data).
            self._events.append(ProtocolWarning("garbage", f"{len(token.data)} bytes"))
            return
        if isinstance(token, Eot):
            self._on_eot(now)
            return
        match self._state:
            case LineState.IDLE:
                self._on_idle_token(token, now)
            case LineState.WAIT_SELECT_ACK:
                self._on_select_reply(token, now)
            case LineState.WAIT_BLOCK_ACK:
                self._on_block_reply(token, now)
            case LineState.RECEIVING:
                self._deadline = now + self._config.recovery_timeout
                self._on_incoming(token, now)
            case LineState.HOLD_ACK:
                self._on_while_holding(token)
            case LineState.PASSIVE:
                self._deadline = now + self._config.recovery_timeout
            case _:
                self._on_role_token(token, now)

    def _on_eot(self, now: float) -> None:
        """Any EOT returns us to neutral (§4.1 [OURS]); a transmission cut short is retried."""
        if self._state is LineState.WAIT_POLL_REPLY and self._tm is not None:
            self._heard(self._tm, now)
        if self._current is not None:
            self._requeue(self._current, now)
            self._current = None
        if self._state is LineState.HOLD_ACK:
            # The sender gave up before our ACK: it will likely send the block again.
            self._events.append(ProtocolWarning("ack_hold_dropped", "EOT before the ACK"))
            self._hold = None
        self._go_idle(now)

    def _on_deadline(self, now: float) -> None:
        match self._state:
            case LineState.IDLE:
                self._on_role_deadline(now)
            case LineState.WAIT_SELECT_ACK:
                assert self._current is not None
                self._missed(self._current.dest, now)
                self._requeue(self._current, now)
                self._current = None
                self._end_transaction(now)
            case LineState.WAIT_BLOCK_ACK:
                assert self._current is not None
                self._missed(self._current.dest, now)
                self._resend_or_fail(now)
            case LineState.HOLD_ACK:
                # Never stall the line on the caller: ACK anyway and say so.
                self._events.append(
                    ProtocolWarning("ack_hold_expired", f"{self._config.ack_hold_timeout:g} s")
                )
                self._send_held_ack(now)
            case LineState.RECEIVING | LineState.PASSIVE:
                self._on_line_silent(now)
            case _:
                self._on_role_deadline(now)

    # --- temporary master: select, send, retry (§9.2 WAIT_SELECT_ACK / WAIT_BLOCK_ACK) ----

    def _take_ready(self, now: float) -> _Outgoing | None:
        for item in self._queue:
            if self._tx_hold.get(item.dest, now) <= now:
                self._queue.remove(item)
                return item
        return None

    def _start_selection(self, item: _Outgoing, now: float, *, self_poll: bool) -> None:
        self._current = item
        if self_poll:
            # §4.1 rule 7: the CS becomes temporary master by polling itself; nobody answers.
            self._out += encode_enq(self._config.local_address)
        self._out += encode_enq(item.dest)
        self._state = LineState.WAIT_SELECT_ACK
        self._deadline = now + self._config.reply_timeout

    def _on_select_reply(self, token: Token, now: float) -> None:
        item = self._current
        assert item is not None
        if isinstance(token, Ack) and item.withdrawn:
            self._heard(item.dest, now)
            self._current = None
            self._end_transaction(now)  # selected, but nothing to send any more
            return
        if isinstance(token, Ack):
            self._heard(item.dest, now)
            self._transmit(item, now)
            return
        if isinstance(token, Nak):
            self._heard(item.dest, now)
            if token.error == "3":
                self._fail(item, "rejected")
            else:
                self._requeue(item, now)  # §10 #5: busy (or bare/'1' NAK) → retry later
        else:
            self._events.append(
                ProtocolWarning("unexpected_reply", f"{type(token).__name__} to select")
            )
            self._requeue(item, now)
        self._current = None
        self._end_transaction(now)

    def _on_block_reply(self, token: Token, now: float) -> None:
        item = self._current
        assert item is not None
        if isinstance(token, Ack):
            self._heard(item.dest, now)
            if not item.withdrawn:
                self._events.append(BlockDelivered(item.handle))
            self._current = None
            self._end_transaction(now)  # one block per selection (§4.2 [OURS])
        elif isinstance(token, Nak):
            self._heard(item.dest, now)
            if token.error == "3":
                # '3' = invalid message (§3): resending identical bytes cannot succeed.
                self._fail(item, "rejected")
                self._current = None
                self._end_transaction(now)
            else:
                self._resend_or_fail(now)  # §10 #6: a bare NAK counts as '1'
        # Anything else may be a mangled ACK; the reply timeout decides.

    def _transmit(self, item: _Outgoing, now: float) -> None:
        item.sends += 1
        self._out += item.frame
        self._state = LineState.WAIT_BLOCK_ACK
        self._deadline = now + self._config.reply_timeout

    def _resend_or_fail(self, now: float) -> None:
        item = self._current
        assert item is not None
        if item.sends <= self._config.max_retransmissions and not item.withdrawn:
            self._transmit(item, now)
            return
        self._fail(item, "retries_exhausted")  # §10 #3
        self._current = None
        self._end_transaction(now)

    def _fail(self, item: _Outgoing, reason: FailureReason) -> None:
        if not item.withdrawn:
            self._events.append(BlockFailed(item.handle, reason))

    def _requeue(self, item: _Outgoing, now: float) -> None:
        if item.withdrawn:
            return  # its owner gave up on it: drop it instead of trying again
        self._queue.appendleft(item)
        link = self._links.get(item.dest)
        down = link is not None and link.up is False
        delay = self._config.offline_poll_interval if down else self._config.retry_delay
        self._tx_hold[item.dest] = now + delay

    def _end_transaction(self, now: float) -> None:
        self._out += _EOT
        self._go_idle(now)

    # --- slave: receive blocks (§9.2 RECEIVING, §9.3 RECEIVING) ---------------------------

    def _enter_receiving(self, source: str | None, now: float) -> None:
        self._tm = source
        self._out += _ACK
        self._state = LineState.RECEIVING
        self._deadline = now + self._config.recovery_timeout

    def _on_incoming(self, token: Token, now: float) -> None:
        if isinstance(token, BadBlock):
            self._out += _NAK_TRANSMISSION  # §10 #1
        elif isinstance(token, InvalidBlock):
            self._reject_or_accept(token.reason, token.payload)
        elif isinstance(token, Block):
            self._on_block(token, now)

    def _on_block(self, block: Block, now: float) -> None:
        last = self._last_received
        if last is not None and last.block == block and now - last.at <= self._config.dedup_window:
            # §10 #4: our ACK was lost and the TM resent; ACK again without a second event.
            self._out += _ACK
            self._events.append(ProtocolWarning("duplicate_block", f"header {block.header}"))
            return
        reason = validate_block(block)
        strict = self._config.strict
        if reason is None and strict and block.header not in self._config.accepted_headers:
            reason = "unsupported_header"
        if reason is not None:
            self._reject_or_accept(reason, block.raw[1:-2])
            return
        self._last_received = _Received(block, now)
        if block.header in self._config.hold_ack_headers:
            # The caller ACKs once it has made the block safe (journaled it): a sender that
            # saw our ACK earlier would believe a block delivered that a crash then lost.
            self._hold = AckHold(self._next_hold)
            self._next_hold += 1
            self._state = LineState.HOLD_ACK
            self._deadline = now + self._config.ack_hold_timeout
            self._events.append(BlockReceived(block, self._tm, self._hold))
        else:
            self._out += _ACK
            self._events.append(BlockReceived(block, self._tm))
        if block.duplicate_ids:
            # §10 #17: consumers take the last occurrence; tell the caller so it can log.
            ids = ",".join(block.duplicate_ids)
            self._events.append(ProtocolWarning("duplicate_identifiers", ids))

    def _on_while_holding(self, token: Token) -> None:
        # The sender waits for our reply to the held block (§4.2), so nothing should come.
        # A resend of it (a sender with a shorter reply timeout) gets the one held ACK;
        # answering anything else now would be taken as the answer to the held block.
        last = self._last_received
        if isinstance(token, Block) and last is not None and token == last.block:
            self._events.append(ProtocolWarning("duplicate_block", f"header {token.header}"))
        else:
            self._events.append(
                ProtocolWarning("unexpected_reply", f"{type(token).__name__} while ACK held")
            )

    def _send_held_ack(self, now: float) -> None:
        self._out += _ACK
        self._hold = None
        self._state = LineState.RECEIVING
        self._deadline = now + self._config.recovery_timeout  # the sender's EOT follows our ACK

    def _reject_or_accept(self, reason: str, payload: bytes) -> None:
        strict = self._config.strict
        self._out += _NAK_INVALID if strict else _ACK
        self._events.append(InvalidBlockReceived(reason, payload, self._tm, not strict))

    # --- link supervision -----------------------------------------------------------------

    def _heard(self, addr: str, now: float) -> None:
        link = self._links.get(addr)
        if link is None:
            return
        link.last_heard = now
        if link.up is not True:
            if link.up is False:
                self._tx_hold.pop(addr, None)  # back from offline back-off: send at once
            link.up = True
            self._events.append(LinkUp(addr))

    def _missed(self, addr: str, now: float) -> None:
        del addr, now  # only the control station judges silence per answer


class ControlStation(_Line):
    """The station that owns the line: polls, selects by self-poll and recovers (§9.2)."""

    def __init__(self, config: LineConfig) -> None:
        super().__init__(config)
        self._next_poll_at = 0.0
        self._idle_since = 0.0
        self._poll_hold: dict[str, float] = {}
        self._rr = 0

    def start(self, now: float) -> None:
        """Send the start-up EOT (§4.1 [OURS]) and begin polling."""
        self._poll_hold.clear()
        super().start(now)
        self._out += _EOT

    def _link_addresses(self) -> tuple[str, ...]:
        return self._config.remote_addresses

    def _go_idle(self, now: float) -> None:
        self._state = LineState.IDLE
        self._deadline = None
        self._tm = None
        self._last_received = None  # §10 #4: repeats after the transaction are genuine
        self._idle_since = now
        # §4.1 rule 1: a poll always follows an EOT; pace polls by poll_interval.
        self._next_poll_at = now + self._config.poll_interval

    def _idle_deadline(self) -> float | None:
        times = [
            max(self._tx_hold.get(i.dest, self._idle_since), self._idle_since) for i in self._queue
        ]
        poll_ready = min(
            self._poll_hold.get(a, self._next_poll_at) for a in self._config.remote_addresses
        )
        times.append(max(self._next_poll_at, poll_ready))
        return min(times)

    def _on_role_deadline(self, now: float) -> None:
        if self._state is LineState.WAIT_POLL_REPLY:
            polled = self._tm
            assert polled is not None
            self._missed(polled, now)
            self._end_transaction(now)  # §9.2: timeout after poll → EOT → IDLE
            return
        item = self._take_ready(now)
        if item is not None:
            self._start_selection(item, now, self_poll=True)
            return
        if now < self._next_poll_at:
            return
        addrs = self._config.remote_addresses
        for offset in range(len(addrs)):
            addr = addrs[(self._rr + offset) % len(addrs)]
            if self._poll_hold.get(addr, now) <= now:
                self._rr = (self._rr + offset + 1) % len(addrs)
                self._poll(addr, now)
                return

    def _poll(self, addr: str, now: float) -> None:
        self._out += encode_enq(addr)
        self._tm = addr
        self._state = LineState.WAIT_POLL_REPLY
        self._deadline = now + self._config.reply_timeout

    def _on_idle_token(self, token: Token, now: float) -> None:
        del now
        if isinstance(token, Enq) and token.addr == self._config.local_address:
            # §10 #14: another control station is polling us; keep the line moving.
            self._events.append(
                ProtocolWarning("both_control_stations", "polled while configured as CS")
            )
            self._out += _EOT

    def _on_role_token(self, token: Token, now: float) -> None:
        if self._state is not LineState.WAIT_POLL_REPLY:
            return
        polled = self._tm
        assert polled is not None
        self._heard(polled, now)
        if isinstance(token, Enq) and token.addr == self._config.local_address:
            if self.accepting:
                self._enter_receiving(polled, now)
            else:
                self._out += _NAK_BUSY
                self._state = LineState.PASSIVE
                self._deadline = now + self._config.recovery_timeout
        elif isinstance(token, Enq) and token.addr is not None:
            self._state = LineState.PASSIVE  # multi-drop: the TM selected someone else
            self._deadline = now + self._config.recovery_timeout
        else:
            self._events.append(
                ProtocolWarning("unexpected_reply", f"{type(token).__name__} to poll")
            )
            self._end_transaction(now)

    def _on_line_silent(self, now: float) -> None:
        # §4.1 rule 6 / §10 #13: no valid traffic for recovery_timeout → EOT, take the line back.
        self._end_transaction(now)

    def _missed(self, addr: str, now: float) -> None:
        link = self._links.get(addr)
        if link is None:
            return
        if link.up is False:
            self._poll_hold[addr] = now + self._config.offline_poll_interval
        elif now - link.last_heard >= self._config.link_down_after:
            link.up = False
            self._poll_hold[addr] = now + self._config.offline_poll_interval
            self._events.append(LinkDown(addr, "no_answer"))  # §10 #12

    def _heard(self, addr: str, now: float) -> None:
        self._poll_hold.pop(addr, None)
        super()._heard(addr, now)

    def _link_deadline(self) -> float | None:
        return None  # judged on each unanswered poll or select

    def _check_links(self, now: float) -> None:
        del now


class Station(_Line):
    """A non-control station (e.g. the paging side): answers polls and selections (§9.3)."""

    def _link_addresses(self) -> tuple[str, ...]:
        return self._config.remote_addresses[:1]

    def _go_idle(self, now: float) -> None:
        del now
        self._state = LineState.IDLE
        self._deadline = None
        self._tm = None
        self._last_received = None

    def _idle_deadline(self) -> float | None:
        return None

    def _on_idle_token(self, token: Token, now: float) -> None:
        if not isinstance(token, Enq) or token.addr is None:
            return
        if token.addr == self._config.local_address:
            # A poll for us: we are temporary master (§4.1 rule 2).
            self._polled(now)
            item = self._take_ready(now)
            if item is None:
                self._out += _EOT
            else:
                self._start_selection(item, now, self_poll=False)
        else:
            # §10 #11: a poll for someone else (or the CS self-poll): stay quiet, await select.
            self._tm = token.addr
            self._state = LineState.EXPECT_SELECT
            self._deadline = now + self._config.reply_timeout

    def _on_role_token(self, token: Token, now: float) -> None:
        if self._state is not LineState.EXPECT_SELECT:
            return
        if not isinstance(token, Enq) or token.addr is None:
            return
        if token.addr == self._config.local_address:
            self._polled(now)
            if self.accepting:
                self._enter_receiving(self._tm, now)
            else:
                self._out += _NAK_BUSY
                self._go_idle(now)
        else:
            self._state = LineState.PASSIVE
            self._deadline = now + self._config.recovery_timeout

    def _on_role_deadline(self, now: float) -> None:
        if self._state is LineState.EXPECT_SELECT:
            self._go_idle(now)  # the next `own ENQ` is a poll again

    def _on_line_silent(self, now: float) -> None:
        # Only the CS may send the recovery EOT (§4.1 rule 6); we just return to neutral.
        self._go_idle(now)

    def _polled(self, now: float) -> None:
        self._heard(self._config.remote_addresses[0], now)

    def _link_deadline(self) -> float | None:
        link = self._links.get(self._config.remote_addresses[0])
        if link is None or link.up is False:
            return None
        return link.last_heard + self._config.link_down_after

    def _check_links(self, now: float) -> None:
        addr = self._config.remote_addresses[0]
        link = self._links.get(addr)
        deadline = self._link_deadline()
        if link is not None and deadline is not None and now >= deadline:
            link.up = False
            self._events.append(LinkDown(addr, "no_poll"))
