"""Tests for the ESPA 4.4.4 line procedure (spec §4, §8, §9, §10), driven by injected time."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.espa import (
    AckHold,
    Block,
    BlockDelivered,
    BlockFailed,
    BlockReceived,
    Call,
    CallStatus,
    ControlStation,
    Event,
    Handle,
    InvalidBlockReceived,
    LineConfig,
    LineState,
    LinkDown,
    LinkUp,
    Priority,
    ProtocolWarning,
    Station,
    StatusReport,
    encode_block,
)

CALL = Call(address="1234", message="ROM 12 ALARM", priority=Priority.ALARM).to_block()
CALL_FRAME = CALL.encode()
STATUS = StatusReport(address="1234", status=CallStatus.PAGED).to_block()
STATUS_FRAME = STATUS.encode()

EOT, ACK, NAK = b"\x04", b"\x06", b"\x15"
CS_CONFIG = LineConfig(local_address="1", remote_addresses=("2",))
ST_CONFIG = LineConfig(local_address="2", remote_addresses=("1",))
HOLD_CALLS = frozenset({"1"})
ST_HOLD = replace(ST_CONFIG, hold_ack_headers=HOLD_CALLS)
CS_HOLD = replace(CS_CONFIG, hold_ack_headers=HOLD_CALLS)

Mangle = Callable[[bytes], bytes]


def _identity(data: bytes) -> bytes:
    return data


@dataclass
class Wire:
    """Two line machines back to back, with injectable corruption and a manual clock."""

    cs: ControlStation | Station
    st: ControlStation | Station
    now: float = 0.0
    to_st: Mangle = _identity
    to_cs: Mangle = _identity
    log: list[tuple[str, bytes]] = field(default_factory=list)
    cs_events: list[Event] = field(default_factory=list)
    st_events: list[Event] = field(default_factory=list)

    def start(self) -> None:
        """Start both machines at the current time."""
        self.st.start(self.now)
        self.cs.start(self.now)
        self.pump()

    def pump(self) -> None:
        """Deliver bytes both ways until both machines are quiet."""
        for _ in range(1000):
            self._collect()
            a, b = self.cs.data_to_send(), self.st.data_to_send()
            if not a and not b:
                return
            if a:
                self.log.append(("cs", a))
                self.st.receive(self.to_st(a), self.now)
            if b:
                self.log.append(("st", b))
                self.cs.receive(self.to_cs(b), self.now)
        raise AssertionError("line never went quiet")

    def run_until(self, end: float) -> None:
        """Advance the clock to `end`, firing every deadline on the way."""
        self.pump()
        for _ in range(100_000):
            pair = (self.cs.next_deadline(), self.st.next_deadline())
            deadlines = [d for d in pair if d is not None]
            due = min(deadlines, default=None)
            if due is None or due > end:
                break
            self.now = max(self.now, due)
            self.cs.timer(self.now)
            self.st.timer(self.now)
            self.pump()
        else:
            raise AssertionError("deadlines never settled")
        self.now = end
        self._collect()

    def run_for(self, seconds: float) -> None:
        """Advance the clock by `seconds`."""
        self.run_until(self.now + seconds)

    def sent(self, who: str) -> bytes:
        """All bytes `who` ('cs' or 'st') wrote so far."""
        return b"".join(data for side, data in self.log if side == who)

    def _collect(self) -> None:
        self.cs_events += self.cs.events()
        self.st_events += self.st.events()


_T = TypeVar("_T")


def _state(line: ControlStation | Station) -> LineState:
    """Read the state through a call so mypy does not narrow it across method calls."""
    return line.state


def _of(kind: type[_T], events: list[Event]) -> list[_T]:
    return [e for e in events if isinstance(e, kind)]


def _wire(*, to_st: Mangle = _identity, to_cs: Mangle = _identity) -> Wire:
    wire = Wire(ControlStation(CS_CONFIG), Station(ST_CONFIG), to_st=to_st, to_cs=to_cs)
    wire.start()
    return wire


def _started_station(config: LineConfig = ST_CONFIG) -> Station:
    station = Station(config)
    station.start(0.0)
    return station


def _selected_station(config: LineConfig = ST_CONFIG) -> Station:
    """A station that has just ACKed the CS self-poll + select (it is now Slave)."""
    station = _started_station(config)
    station.receive(b"\x31\x05\x32\x05", 0.0)
    assert station.data_to_send() == ACK
    assert _state(station) is LineState.RECEIVING
    return station


def _cs_waiting_block_ack(config: LineConfig = CS_CONFIG) -> tuple[ControlStation, Handle]:
    """A control station that has sent CALL after a successful select."""
    cs = ControlStation(config)
    cs.start(0.0)
    handle = cs.send_block(CALL)
    cs.timer(0.0)
    assert cs.data_to_send() == EOT + b"\x31\x05\x32\x05"
    cs.receive(ACK, 0.1)
    assert cs.data_to_send() == CALL_FRAME
    assert _state(cs) is LineState.WAIT_BLOCK_ACK
    return cs, handle


# --- §4.2 byte-level sequences ----------------------------------------------------------


def test_s1_idle_poll() -> None:
    """S1: the CS polls '2' ENQ and the station answers EOT when it has nothing."""
    wire = _wire()
    wire.run_for(0.5)
    assert wire.log == [("cs", EOT), ("cs", b"\x32\x05"), ("st", EOT)]
    assert _of(LinkUp, wire.cs_events) == [LinkUp("2")]
    assert _of(LinkUp, wire.st_events) == [LinkUp("1")]


def test_s2_cs_sends_call() -> None:
    """S2: self-poll + select, ACK, block, ACK, EOT; the station receives the call once."""
    wire = _wire()
    handle = wire.cs.send_block(CALL)
    wire.run_for(0.1)
    assert wire.log == [
        ("cs", EOT),
        ("cs", b"\x31\x05\x32\x05"),
        ("st", ACK),
        ("cs", CALL_FRAME),
        ("st", ACK),
        ("cs", EOT),
    ]
    assert _of(BlockDelivered, wire.cs_events) == [BlockDelivered(handle)]
    assert _of(BlockReceived, wire.st_events) == [BlockReceived(CALL, "1")]
    assert _state(wire.cs) is LineState.IDLE
    assert _state(wire.st) is LineState.IDLE


def test_s3_station_reports_status_when_polled() -> None:
    """S3: a polled station selects the CS and sends its status block."""
    wire = _wire()
    handle = wire.st.send_block(STATUS)
    wire.run_for(0.5)
    assert wire.log == [
        ("cs", EOT),
        ("cs", b"\x32\x05"),
        ("st", b"\x31\x05"),
        ("cs", ACK),
        ("st", STATUS_FRAME),
        ("cs", ACK),
        ("st", EOT),
    ]
    assert _of(BlockReceived, wire.cs_events) == [BlockReceived(STATUS, "2")]
    assert _of(BlockDelivered, wire.st_events) == [BlockDelivered(handle)]
    received = _of(BlockReceived, wire.cs_events)[0].block
    assert StatusReport.from_block(received).status is CallStatus.PAGED


def test_s4_select_refused_busy() -> None:
    """S4: '2' NAK to the select → EOT and the message stays queued."""
    wire = _wire()
    wire.st.accepting = False
    wire.cs.send_block(CALL)
    wire.run_for(0.1)
    assert wire.log[1:] == [("cs", b"\x31\x05\x32\x05"), ("st", b"\x32\x15"), ("cs", EOT)]
    assert wire.cs.pending == 1
    assert not _of(BlockFailed, wire.cs_events)


def test_s5_corrupted_block_recovered() -> None:
    """S5: '1' NAK to a corrupted block, the same block again, ACK, EOT."""
    corrupted: list[bool] = []

    def corrupt_first_block(data: bytes) -> bytes:
        if data.startswith(b"\x01") and not corrupted:
            corrupted.append(True)
            return data[:6] + b"9" + data[7:]
        return data

    wire = _wire(to_st=corrupt_first_block)
    handle = wire.cs.send_block(CALL)
    wire.run_for(0.1)
    assert wire.log[3:] == [
        ("cs", CALL_FRAME),
        ("st", b"\x31\x15"),
        ("cs", CALL_FRAME),
        ("st", ACK),
        ("cs", EOT),
    ]
    assert _of(BlockDelivered, wire.cs_events) == [BlockDelivered(handle)]
    assert len(_of(BlockReceived, wire.st_events)) == 1


def test_s6_retries_exhausted() -> None:
    """S6: after 1 + max_retransmissions NAKed sends the CS gives up with EOT."""
    cs, handle = _cs_waiting_block_ack()
    cs.receive(b"\x31\x15", 0.2)
    assert cs.data_to_send() == CALL_FRAME
    cs.receive(b"\x31\x15", 0.3)
    assert cs.data_to_send() == CALL_FRAME
    cs.receive(b"\x31\x15", 0.4)
    assert cs.data_to_send() == EOT
    assert BlockFailed(handle, "retries_exhausted") in cs.events()
    assert cs.pending == 0


def test_s7_line_recovery() -> None:
    """S7: the polled station became TM and went silent; 10 s later the CS sends EOT."""
    cs = ControlStation(CS_CONFIG)
    cs.start(0.0)
    cs.timer(0.5)
    assert cs.data_to_send() == EOT + b"\x32\x05"
    cs.receive(b"\x31\x05", 0.6)
    assert cs.data_to_send() == ACK
    assert cs.next_deadline() == pytest.approx(10.6)
    cs.timer(10.5)
    assert cs.data_to_send() == b""
    cs.timer(10.6)
    assert cs.data_to_send() == EOT
    assert _state(cs) is LineState.IDLE


# --- §10 edge cases (line side) ---------------------------------------------------------


def test_edge_01_bad_bcc_nak_then_resend_acked_once() -> None:
    """Edge 1: bad BCC → '1' NAK; the good resend is ACKed and reported exactly once."""
    station = _selected_station()
    bad = CALL_FRAME[:-1] + bytes((CALL_FRAME[-1] ^ 0x40,))
    station.receive(bad, 0.1)
    assert station.data_to_send() == b"\x31\x15"
    assert not _of(BlockReceived, station.events())
    station.receive(CALL_FRAME, 0.2)
    assert station.data_to_send() == ACK
    assert _of(BlockReceived, station.events()) == [BlockReceived(CALL, "1")]


def test_edge_02_bcc_equal_to_rs_acked_by_station() -> None:
    """Edge 2: the reset call whose BCC is RS is accepted by the line layer."""
    reset = encode_block("1", [("1", b"1234"), ("4", b"1")])
    assert reset[-1] == 0x1E
    station = _selected_station()
    station.receive(reset, 0.1)
    assert station.data_to_send() == ACK
    [event] = _of(BlockReceived, station.events())
    assert Call.from_block(event.block).is_reset


def test_edge_03_retries_exhausted_by_silence_then_queue_continues() -> None:
    """Edge 3: silence after every send → EOT, BlockFailed, and the next block still goes out."""
    cs, first = _cs_waiting_block_ack()
    second = cs.send_block(STATUS)
    cs.timer(2.1)
    assert cs.data_to_send() == CALL_FRAME
    cs.timer(4.1)
    assert cs.data_to_send() == CALL_FRAME
    cs.timer(6.1)
    assert cs.data_to_send() == EOT + b"\x31\x05\x32\x05"
    assert BlockFailed(first, "retries_exhausted") in cs.events()
    cs.receive(ACK, 6.2)
    assert cs.data_to_send() == STATUS_FRAME
    cs.receive(ACK, 6.3)
    assert cs.data_to_send() == EOT
    assert BlockDelivered(second) in cs.events()


def test_edge_04_lost_ack_resend_deduplicated() -> None:
    """Edge 4: a resend of a block we ACKed (ACK lost) is ACKed again without a second event."""
    station = _selected_station()
    station.receive(CALL_FRAME, 0.1)
    assert station.data_to_send() == ACK
    station.receive(CALL_FRAME, 2.1)
    assert station.data_to_send() == ACK
    events = station.events()
    assert len(_of(BlockReceived, events)) == 1
    assert ProtocolWarning("duplicate_block", "header 1") in events


def test_edge_04_genuine_repeat_after_transaction_not_suppressed() -> None:
    """Edge 4: the same call in a new transaction (after EOT) is reported again."""
    station = _selected_station()
    station.receive(CALL_FRAME, 0.1)
    station.receive(EOT + b"\x31\x05\x32\x05", 0.5)
    assert station.data_to_send() == ACK + ACK
    station.receive(CALL_FRAME, 0.6)
    assert station.data_to_send() == ACK
    assert len(_of(BlockReceived, station.events())) == 2


def test_edge_04_repeat_outside_window_not_suppressed() -> None:
    """Edge 4: an identical block more than dedup_window after our ACK is a new block."""
    station = _selected_station(replace(ST_CONFIG, dedup_window=1.0))
    station.receive(CALL_FRAME, 0.1)
    station.receive(CALL_FRAME, 1.5)
    assert len(_of(BlockReceived, station.events())) == 2


def test_edge_05_busy_requeues_and_waits_retry_delay() -> None:
    """Edge 5: busy '2' NAK on select → EOT, requeue, no new select before retry_delay."""
    wire = _wire()
    wire.st.accepting = False
    handle = wire.cs.send_block(CALL)
    wire.run_for(0.1)
    assert wire.sent("cs").count(b"\x31\x05\x32\x05") == 1
    wire.st.accepting = True
    wire.run_until(0.99)
    assert wire.sent("cs").count(b"\x31\x05\x32\x05") == 1  # only polls meanwhile
    wire.run_until(1.2)
    assert wire.sent("cs").count(b"\x31\x05\x32\x05") == 2
    assert _of(BlockDelivered, wire.cs_events) == [BlockDelivered(handle)]
    assert len(_of(BlockReceived, wire.st_events)) == 1


def test_edge_06_bare_nak_treated_as_transmission_error() -> None:
    """Edge 6: a bare NAK to a block makes the CS resend it like '1' NAK."""
    cs, handle = _cs_waiting_block_ack()
    cs.receive(NAK, 0.2)
    assert cs.data_to_send() == CALL_FRAME
    cs.receive(ACK, 0.3)
    assert cs.data_to_send() == EOT
    assert BlockDelivered(handle) in cs.events()


def test_edge_06_bare_nak_on_select_requeues() -> None:
    """Edge 6: a bare NAK to a select is a refusal to retry later, not a rejection."""
    cs = ControlStation(CS_CONFIG)
    cs.start(0.0)
    cs.send_block(CALL)
    cs.timer(0.0)
    cs.data_to_send()
    cs.receive(NAK, 0.1)
    assert cs.data_to_send() == EOT
    assert cs.pending == 1
    assert not _of(BlockFailed, cs.events())


def test_edge_07_garbage_around_poll_ignored() -> None:
    """Edge 7: CR/LF/NUL/high bytes around a poll are ignored and the poll is still answered."""
    station = _started_station()
    station.receive(b"\r\n\x00\xff\x32\x05\r", 0.0)
    assert station.data_to_send() == EOT
    assert any(e.code == "garbage" for e in _of(ProtocolWarning, station.events()))


def test_edge_07_garbage_after_poll_does_not_end_wait() -> None:
    """Edge 7: an extra CR before the station's EOT does not count as a poll failure."""
    cs = ControlStation(CS_CONFIG)
    cs.start(0.0)
    cs.timer(0.5)
    cs.data_to_send()
    cs.receive(b"\r", 0.6)
    assert _state(cs) is LineState.WAIT_POLL_REPLY
    cs.receive(EOT, 0.7)
    assert _state(cs) is LineState.IDLE
    assert cs.data_to_send() == b""


def test_edge_08_eot_inside_block_aborts_without_ack() -> None:
    """Edge 8: EOT in the middle of a block → no ACK/NAK, station back to neutral."""
    station = _selected_station()
    station.receive(CALL_FRAME[:8] + EOT, 0.1)
    assert station.data_to_send() == b""
    assert _state(station) is LineState.IDLE
    assert not _of(BlockReceived, station.events())


def test_edge_08_soh_inside_block_restarts() -> None:
    """Edge 8: SOH mid-block restarts it; only the complete block is ACKed."""
    station = _selected_station()
    station.receive(CALL_FRAME[:8] + CALL_FRAME, 0.1)
    assert station.data_to_send() == ACK
    assert len(_of(BlockReceived, station.events())) == 1


def test_edge_09_partial_block_then_silence_no_reply() -> None:
    """Edge 9: a partial block is silently discarded after inter_char_timeout."""
    station = _selected_station()
    station.receive(CALL_FRAME[:10], 0.1)
    assert station.next_deadline() == pytest.approx(1.1)
    station.timer(1.1)
    station.receive(CALL_FRAME[10:], 1.5)
    assert station.data_to_send() == b""
    assert not _of(BlockReceived, station.events())
    assert _state(station) is LineState.RECEIVING


def test_edge_10_digit_without_enq_is_not_a_poll() -> None:
    """Edge 10: '2' followed by junk is garbage, not a poll; no answer is sent."""
    station = _started_station()
    station.receive(b"2X", 0.0)
    assert station.data_to_send() == b""
    assert _state(station) is LineState.IDLE


def test_edge_11_poll_for_other_station_stays_silent() -> None:
    """Edge 11: a poll of another address (or the CS self-poll) gets no reply; a select does."""
    station = _started_station()
    station.receive(b"\x31\x05", 0.0)
    assert station.data_to_send() == b""
    assert _state(station) is LineState.EXPECT_SELECT
    station.receive(b"\x32\x05", 0.1)
    assert station.data_to_send() == ACK


def test_edge_11_multidrop_select_of_other_station_stays_passive() -> None:
    """Edge 11: a select for another station → passive; its blocks are not answered."""
    config = LineConfig(local_address="3", remote_addresses=("1",))
    station = _started_station(config)
    station.receive(b"\x31\x05\x32\x05", 0.0)
    assert _state(station) is LineState.PASSIVE
    station.receive(ACK + CALL_FRAME + ACK, 0.1)
    assert station.data_to_send() == b""
    station.receive(EOT, 0.2)
    assert _state(station) is LineState.IDLE
    assert not _of(BlockReceived, station.events())


def test_edge_11_expect_select_times_out_to_neutral() -> None:
    """Edge 11: with no select within reply_timeout, the next own ENQ is a poll again."""
    station = _started_station()
    station.receive(b"\x31\x05", 0.0)
    station.timer(2.0)
    assert _state(station) is LineState.IDLE
    station.receive(b"\x32\x05", 2.5)
    assert station.data_to_send() == EOT


def test_edge_12_silent_peer_link_down_then_up() -> None:
    """Edge 12: unanswered polls → EOT each; LinkDown after link_down_after; LinkUp on reply."""
    silent = [True]

    def maybe_drop(data: bytes) -> bytes:
        return b"" if silent[0] else data

    wire = _wire(to_cs=maybe_drop)
    wire.run_for(29.0)
    assert not _of(LinkDown, wire.cs_events)
    assert wire.sent("cs").count(EOT) > 5
    wire.run_for(5.0)
    assert _of(LinkDown, wire.cs_events) == [LinkDown("2", "no_answer")]
    polls_while_down = wire.sent("cs").count(b"\x32\x05")
    wire.run_for(30.0)
    assert wire.sent("cs").count(b"\x32\x05") - polls_while_down <= 1  # offline back-off
    silent[0] = False
    wire.run_for(60.0)
    assert _of(LinkUp, wire.cs_events)[-1] == LinkUp("2")
    assert _state(wire.cs) is LineState.IDLE


def test_edge_12_silent_select_requeues() -> None:
    """Edge 12: no answer to a select → EOT after reply_timeout and the block stays queued."""
    cs = ControlStation(CS_CONFIG)
    cs.start(0.0)
    cs.send_block(CALL)
    cs.timer(0.0)
    cs.data_to_send()
    cs.timer(2.0)
    assert cs.data_to_send() == EOT
    assert cs.pending == 1


def test_edge_12_station_reports_link_down_without_polls() -> None:
    """Edge 12: a station that is not polled for link_down_after reports LinkDown, then LinkUp."""
    station = _started_station()
    assert station.next_deadline() == 30.0
    station.timer(30.0)
    assert station.events() == [LinkDown("1", "no_poll")]
    station.receive(b"\x32\x05", 31.0)
    assert station.events() == [LinkUp("1")]


def test_edge_13_cs_recovers_when_tm_vanishes_mid_transfer() -> None:
    """Edge 13: a TM that stops after one block is cut off by the CS's EOT after 10 s."""
    cs = ControlStation(CS_CONFIG)
    cs.start(0.0)
    cs.timer(0.5)
    cs.receive(b"\x31\x05", 0.6)
    cs.receive(STATUS_FRAME, 1.0)
    assert cs.data_to_send() == EOT + b"\x32\x05" + ACK + ACK
    cs.timer(10.9)
    assert cs.data_to_send() == b""
    cs.timer(11.0)
    assert cs.data_to_send() == EOT
    assert _state(cs) is LineState.IDLE


def test_edge_13_station_returns_to_neutral_without_sending() -> None:
    """Edge 13: a station Slave whose TM vanished goes neutral silently (only the CS sends EOT)."""
    station = _selected_station()
    station.timer(10.0)
    assert _state(station) is LineState.IDLE
    assert station.data_to_send() == b""


def test_edge_14_both_sides_control_station() -> None:
    """Edge 14: a CS polled for its own address warns and answers EOT."""
    cs = ControlStation(CS_CONFIG)
    cs.start(0.0)
    cs.data_to_send()
    cs.receive(b"\x31\x05", 0.1)
    assert cs.data_to_send() == EOT
    assert [e.code for e in _of(ProtocolWarning, cs.events())] == ["both_control_stations"]


def test_edge_15_unknown_header_acked_and_kept() -> None:
    """Edge 15: header '9' with unknown ids is ACKed (lenient) and delivered with raw records."""
    block = encode_block("9", [("1", b"7"), ("42", b"vendor")])
    station = _selected_station()
    station.receive(block, 0.1)
    assert station.data_to_send() == ACK
    [event] = _of(BlockReceived, station.events())
    assert event.block.records == (("1", b"7"), ("42", b"vendor"))


def test_edge_15_unknown_header_strict_nak_3() -> None:
    """Edge 15: in strict mode a header outside accepted_headers gets '3' NAK."""
    config = replace(ST_CONFIG, strict=True, accepted_headers=frozenset({"1"}))
    station = _selected_station(config)
    station.receive(STATUS_FRAME, 0.1)
    assert station.data_to_send() == b"\x33\x15"
    [event] = _of(InvalidBlockReceived, station.events())
    assert event == InvalidBlockReceived(
        "unsupported_header", STATUS_FRAME[1:-2], "1", acknowledged=False
    )


def test_edge_16_missing_call_address_lenient_ack_and_drop() -> None:
    """Edge 16: a header-1 block without call address is ACKed but not delivered (lenient)."""
    station = _selected_station()
    station.receive(encode_block("1", [("2", b"text")]), 0.1)
    assert station.data_to_send() == ACK
    events = station.events()
    assert not _of(BlockReceived, events)
    [invalid] = _of(InvalidBlockReceived, events)
    assert invalid.reason == "missing_call_address"
    assert invalid.acknowledged


def test_edge_16_missing_call_address_strict_nak_3() -> None:
    """Edge 16: the same block gets '3' NAK in strict mode."""
    station = _selected_station(replace(ST_CONFIG, strict=True))
    station.receive(encode_block("1", [("2", b"text")]), 0.1)
    assert station.data_to_send() == b"\x33\x15"
    assert not _of(BlockReceived, station.events())


def test_edge_16_malformed_block_content() -> None:
    """§9.1: a record without US behind a correct BCC is InvalidBlockReceived, ACKed leniently."""
    body = b"1\x02123\x03"
    frame = b"\x01" + body + bytes((0x31 ^ 0x02 ^ 0x31 ^ 0x32 ^ 0x33 ^ 0x03,))
    station = _selected_station()
    station.receive(frame, 0.1)
    assert station.data_to_send() == ACK
    assert [e.reason for e in _of(InvalidBlockReceived, station.events())] == ["record_without_us"]


def test_edge_17_duplicate_identifiers_warned() -> None:
    """Edge 17: duplicate identifiers are accepted and reported with a warning."""
    station = _selected_station()
    station.receive(encode_block("1", [("1", b"1"), ("1", b"2")]), 0.1)
    assert station.data_to_send() == ACK
    events = station.events()
    [received] = _of(BlockReceived, events)
    assert Call.from_block(received.block).address == "2"
    assert ProtocolWarning("duplicate_identifiers", "1") in events


def test_edge_18_trailing_rs_accepted() -> None:
    """Edge 18: a block with a trailing RS before ETX is ACKed."""
    body = b"1\x021\x1f55\x1e\x03"
    bcc = 0
    for b in body:
        bcc ^= b
    station = _selected_station()
    station.receive(b"\x01" + body + bytes((bcc,)), 0.1)
    assert station.data_to_send() == ACK
    [event] = _of(BlockReceived, station.events())
    assert event.block.records == (("1", b"55"),)


def test_edge_19_oversized_fields_accepted_on_receive() -> None:
    """Edge 19: a 200-char display message is ACKed and delivered intact."""
    station = _selected_station()
    station.receive(encode_block("1", [("1", b"1" * 20), ("2", b"x" * 200)]), 0.1)
    assert station.data_to_send() == ACK
    [event] = _of(BlockReceived, station.events())
    assert Call.from_block(event.block).message == "x" * 200


def test_edge_20_mask_high_bit_on_line() -> None:
    """Edge 20: with mask_high_bit a station understands a 7E1 peer's parity-marked poll."""
    parity_poll = bytes(b | 0x80 if bin(b).count("1") % 2 else b for b in b"\x32\x05")
    assert parity_poll != b"\x32\x05"
    station = _started_station(replace(ST_CONFIG, mask_high_bit=True))
    station.receive(parity_poll, 0.0)
    assert station.data_to_send() == EOT
    unmasked = _started_station()
    unmasked.receive(parity_poll, 0.0)
    assert unmasked.data_to_send() == b""


def test_edge_21_connection_lost_requeues_and_reports() -> None:
    """Edge 21: losing the port reports LinkDown and requeues the block in flight."""
    cs = ControlStation(CS_CONFIG)
    cs.start(0.0)
    cs.timer(0.5)
    cs.receive(EOT, 0.6)
    cs.events()
    handle = cs.send_block(CALL)
    cs.timer(0.6)
    cs.data_to_send()
    cs.receive(ACK, 0.7)
    cs.connection_lost(0.8)
    assert cs.events() == [LinkDown("2", "connection_lost")]
    assert _state(cs) is LineState.STOPPED
    assert cs.data_to_send() == b""
    assert cs.pending == 1
    assert cs.next_deadline() is None
    cs.start(5.0)
    cs.timer(5.0)
    assert cs.data_to_send() == EOT + b"\x31\x05\x32\x05"
    cs.receive(ACK, 5.1)
    assert cs.data_to_send() == CALL_FRAME
    cs.receive(ACK, 5.2)
    assert cs.events() == [LinkUp("2"), BlockDelivered(handle)]


def test_edge_22_display_text_sanitised_before_send() -> None:
    """Edge 22: control characters in display text never reach the wire."""
    block = Call(address="12", message="A\x1eB\x1fC\x04D\r\nE").to_block()
    wire = _wire()
    wire.cs.send_block(block)
    wire.run_for(0.1)
    [event] = _of(BlockReceived, wire.st_events)
    assert Call.from_block(event.block).message == "ABCD  E"


# --- further line behaviour --------------------------------------------------------------


def test_nak_3_on_block_rejects_without_resend() -> None:
    """'3' NAK (invalid message) to a block fails it at once instead of resending."""
    cs, handle = _cs_waiting_block_ack()
    cs.receive(b"\x33\x15", 0.2)
    assert cs.data_to_send() == EOT
    assert BlockFailed(handle, "rejected") in cs.events()


def test_nak_3_on_select_rejects() -> None:
    """'3' NAK to a select drops the message as rejected (§9.2)."""
    cs = ControlStation(CS_CONFIG)
    cs.start(0.0)
    handle = cs.send_block(CALL)
    cs.timer(0.0)
    cs.data_to_send()
    cs.receive(b"\x33\x15", 0.1)
    assert cs.data_to_send() == EOT
    assert BlockFailed(handle, "rejected") in cs.events()
    assert cs.pending == 0


def test_cs_busy_refuses_station_select() -> None:
    """A CS that is not accepting answers the polled station's select with '2' NAK."""
    cs = ControlStation(CS_CONFIG)
    cs.start(0.0)
    cs.accepting = False
    cs.timer(0.5)
    cs.receive(b"\x31\x05", 0.6)
    assert cs.data_to_send() == EOT + b"\x32\x05" + b"\x32\x15"
    cs.receive(EOT, 0.7)
    assert _state(cs) is LineState.IDLE


def test_station_busy_on_select() -> None:
    """A station that is not accepting answers a select with '2' NAK and stays neutral."""
    station = _started_station()
    station.accepting = False
    station.receive(b"\x31\x05\x32\x05", 0.0)
    assert station.data_to_send() == b"\x32\x15"
    assert _state(station) is LineState.IDLE


def test_eot_from_cs_requeues_station_transmission() -> None:
    """An EOT while the station is TM aborts the transfer and keeps the status queued."""
    station = _started_station()
    station.send_block(STATUS)
    station.receive(b"\x32\x05", 0.0)
    assert station.data_to_send() == b"\x31\x05"
    station.receive(EOT, 0.5)
    assert _state(station) is LineState.IDLE
    assert station.pending == 1


def test_cancel_queued_block() -> None:
    """cancel() removes a queued block so it is never sent."""
    cs = ControlStation(CS_CONFIG)
    cs.start(0.0)
    handle = cs.send_block(CALL)
    assert cs.cancel(handle)
    assert not cs.cancel(handle)
    cs.timer(0.5)
    assert cs.data_to_send() == EOT + b"\x32\x05"


def test_cancel_of_a_block_being_selected_stops_it() -> None:
    """cancel() withdraws the block whose select is unanswered: it is never retried."""
    cs = ControlStation(CS_CONFIG)
    cs.start(0.0)
    cs.data_to_send()
    handle = cs.send_block(CALL)
    cs.timer(0.0)
    assert _state(cs) is LineState.WAIT_SELECT_ACK
    cs.data_to_send()
    assert cs.cancel(handle)
    assert cs.pending == 0
    sent = b""
    t = 0.0
    for _ in range(40):  # the select times out, then the line only polls
        t += 0.5
        cs.timer(t)
        sent += cs.data_to_send()
    assert b"\x01" not in sent
    assert b"\x31\x05\x32\x05" not in sent
    assert not cs.cancel(handle)
    assert cs.events() == []


def test_cancel_while_selected_ends_the_transaction_without_the_block() -> None:
    """A select ACKed after cancel() gets EOT, not the block; the line then goes on polling."""
    cs = ControlStation(CS_CONFIG)
    cs.start(0.0)
    handle = cs.send_block(CALL)
    cs.timer(0.0)
    cs.data_to_send()
    assert cs.cancel(handle)
    cs.receive(ACK, 0.1)
    assert cs.data_to_send() == EOT
    assert _state(cs) is LineState.IDLE
    assert cs.pending == 0


def test_cancel_of_a_naked_block_stops_its_resends() -> None:
    """A block cancelled while awaiting its ACK is not resent after a NAK or a timeout."""
    for reply in (b"\x31\x15", b""):
        cs, handle = _cs_waiting_block_ack()
        assert cs.cancel(handle)
        assert cs.pending == 0
        if reply:
            cs.receive(reply, 0.2)
        else:
            cs.timer(0.1 + CS_CONFIG.reply_timeout)
        assert cs.data_to_send() == EOT
        cs.timer(10.0)
        assert CALL_FRAME not in cs.data_to_send()
        assert _of(BlockFailed, cs.events()) == []


def test_cancelled_block_is_dropped_when_the_port_is_lost() -> None:
    """connection_lost() requeues the block in flight, but not one its owner withdrew."""
    cs, handle = _cs_waiting_block_ack()
    cs.cancel(handle)
    cs.connection_lost(0.5)
    cs.start(1.0)
    cs.timer(2.0)
    assert b"\x31\x05\x32\x05" not in cs.data_to_send()
    assert cs.pending == 0


def test_send_block_validates_destination() -> None:
    """send_block refuses our own or a non-digit destination."""
    cs = ControlStation(CS_CONFIG)
    with pytest.raises(ValueError, match="destination"):
        cs.send_block(CALL, dest="1")
    with pytest.raises(ValueError, match="destination"):
        cs.send_block(CALL, dest="x")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"local_address": "A", "remote_addresses": ("2",)}, "local_address"),
        ({"local_address": "1", "remote_addresses": ()}, "at least one"),
        ({"local_address": "1", "remote_addresses": ("1",)}, "other than local"),
        ({"local_address": "1", "remote_addresses": ("2", "2")}, "unique"),
        ({"local_address": "1", "remote_addresses": ("2",), "reply_timeout": 0}, "positive"),
        (
            {"local_address": "1", "remote_addresses": ("2",), "ack_hold_timeout": 0},
            "positive",
        ),
        (
            {
                "local_address": "1",
                "remote_addresses": ("2",),
                "hold_ack_headers": HOLD_CALLS,
                "ack_hold_timeout": 2.0,
            },
            "ack_hold_timeout",
        ),
    ],
)
def test_line_config_rejects_bad_values(kwargs: dict[str, object], match: str) -> None:
    """LineConfig rejects addresses and timers the procedure cannot use."""
    with pytest.raises(ValueError, match=match):
        LineConfig(**kwargs)  # type: ignore[arg-type]


def test_ack_hold_timeout_is_unchecked_while_nothing_is_held() -> None:
    """Without hold_ack_headers a short reply_timeout needs no matching ack_hold_timeout."""
    config = LineConfig(local_address="1", remote_addresses=("2",), reply_timeout=0.5)
    assert config.ack_hold_timeout == 1.0


def test_input_before_start_is_ignored() -> None:
    """Bytes received before start() are discarded and produce no reply."""
    station = Station(ST_CONFIG)
    station.receive(b"\x32\x05", 0.0)
    assert station.data_to_send() == b""
    assert station.next_deadline() is None


def test_multidrop_cs_polls_round_robin() -> None:
    """A CS with several stations polls them in turn."""
    cs = ControlStation(LineConfig(local_address="1", remote_addresses=("2", "3")))
    cs.start(0.0)
    cs.timer(0.5)
    cs.receive(EOT, 0.6)
    cs.timer(1.1)
    cs.receive(EOT, 1.2)
    cs.timer(1.7)
    assert cs.data_to_send() == EOT + b"\x32\x05" + b"\x33\x05" + b"\x32\x05"


def test_multidrop_cs_passive_while_stations_talk() -> None:
    """A polled station selecting another station puts the CS in PASSIVE until EOT."""
    cs = ControlStation(LineConfig(local_address="1", remote_addresses=("2", "3")))
    cs.start(0.0)
    cs.timer(0.5)
    cs.receive(b"\x33\x05", 0.6)
    assert _state(cs) is LineState.PASSIVE
    cs.receive(ACK + CALL_FRAME + ACK, 0.7)
    assert cs.data_to_send() == EOT + b"\x32\x05"
    assert not _of(BlockReceived, cs.events())
    cs.receive(EOT, 0.8)
    assert _state(cs) is LineState.IDLE


# --- held ACK: the caller ACKs a call once it has journaled it ----------------------------


def _held_call(config: LineConfig = ST_HOLD) -> tuple[Station, AckHold]:
    """A station holding the ACK of CALL, received at 0.1."""
    station = _selected_station(config)
    station.receive(CALL_FRAME, 0.1)
    assert station.data_to_send() == b""
    [event] = _of(BlockReceived, station.events())
    assert event.block == CALL
    assert event.hold is not None
    assert _state(station) is LineState.HOLD_ACK
    return station, event.hold


def test_held_call_is_acked_only_on_release() -> None:
    """A held call is reported at once and ACKed on release_ack, once; the line goes on."""
    station, hold = _held_call()
    station.timer(0.5)
    assert station.data_to_send() == b""
    assert station.release_ack(hold, 0.5)
    assert station.data_to_send() == ACK
    assert _state(station) is LineState.RECEIVING
    assert not station.release_ack(hold, 0.6)
    assert station.data_to_send() == b""
    assert station.events() == []
    station.receive(EOT, 0.7)
    assert _state(station) is LineState.IDLE


def test_blocks_with_other_headers_are_acked_at_once() -> None:
    """Only the configured headers are held: a status block is ACKed on receipt."""
    station = _selected_station(ST_HOLD)
    station.receive(STATUS_FRAME, 0.1)
    assert station.data_to_send() == ACK
    assert _of(BlockReceived, station.events()) == [BlockReceived(STATUS, "1")]


def test_calls_are_acked_at_once_without_hold_headers() -> None:
    """The default line ACKs a call on receipt and reports it without a hold."""
    station = _selected_station()
    station.receive(CALL_FRAME, 0.1)
    assert station.data_to_send() == ACK
    assert _of(BlockReceived, station.events()) == [BlockReceived(CALL, "1")]


def test_held_ack_is_sent_at_the_hold_timeout_with_a_warning() -> None:
    """An unreleased hold is ACKed at ack_hold_timeout (a deadline) with ack_hold_expired."""
    station, hold = _held_call()
    due = 0.1 + ST_HOLD.ack_hold_timeout
    assert station.next_deadline() == due
    station.timer(due - 0.01)
    assert station.data_to_send() == b""
    station.timer(due)
    assert station.data_to_send() == ACK
    assert station.events() == [ProtocolWarning("ack_hold_expired", "1 s")]
    assert _state(station) is LineState.RECEIVING
    assert not station.release_ack(hold, due + 0.1)
    assert station.data_to_send() == b""


def test_resend_while_held_is_answered_by_the_one_held_ack() -> None:
    """A resend of the held block is not reported again nor ACKed twice."""
    station, hold = _held_call()
    station.receive(CALL_FRAME, 0.5)
    assert station.data_to_send() == b""
    assert station.events() == [ProtocolWarning("duplicate_block", "header 1")]
    assert station.release_ack(hold, 0.6)
    assert station.data_to_send() == ACK


def test_other_input_while_held_gets_no_answer() -> None:
    """A corrupt block while the ACK is held is not NAKed: that would answer the held block."""
    station, hold = _held_call()
    station.receive(CALL_FRAME[:-1] + b"\x00", 0.5)
    assert station.data_to_send() == b""
    assert [e.code for e in _of(ProtocolWarning, station.events())] == ["unexpected_reply"]
    assert station.release_ack(hold, 0.6)
    assert station.data_to_send() == ACK


def test_resend_after_release_is_acked_again_without_a_second_event() -> None:
    """Edge 4 with a hold: a resend after the released ACK (lost) is ACKed at once."""
    station, hold = _held_call()
    station.release_ack(hold, 0.2)
    assert station.data_to_send() == ACK
    station.receive(CALL_FRAME, 2.1)
    assert station.data_to_send() == ACK
    assert station.events() == [ProtocolWarning("duplicate_block", "header 1")]


def test_eot_while_held_drops_the_hold() -> None:
    """An EOT ends the hold without an ACK: neither a late release nor the deadline sends one."""
    station, hold = _held_call()
    station.receive(EOT, 0.3)
    assert _state(station) is LineState.IDLE
    assert station.events() == [ProtocolWarning("ack_hold_dropped", "EOT before the ACK")]
    assert not station.release_ack(hold, 0.4)
    station.timer(5.0)
    assert station.data_to_send() == b""
    assert _state(station) is LineState.IDLE


def test_connection_lost_while_held_drops_the_hold() -> None:
    """A lost port ends the hold: after the restart a late release sends nothing."""
    station, hold = _held_call()
    station.connection_lost(0.3)
    assert not station.release_ack(hold, 0.4)
    station.start(1.0)
    assert not station.release_ack(hold, 1.1)
    station.timer(3.0)
    assert station.data_to_send() == b""


def test_late_release_does_not_ack_a_later_call() -> None:
    """Releasing an expired hold never ACKs the next held call, which is not journaled yet."""
    station, first = _held_call()
    station.timer(2.0)
    assert station.data_to_send() == ACK
    station.receive(EOT + b"\x31\x05\x32\x05", 2.5)
    assert station.data_to_send() == ACK
    other = Call(address="77", message="ROM 7").to_block()
    station.receive(other.encode(), 2.6)
    [event] = _of(BlockReceived, station.events())
    assert event.hold is not None
    assert not station.release_ack(first, 2.7)
    assert station.data_to_send() == b""
    assert station.release_ack(event.hold, 2.8)
    assert station.data_to_send() == ACK


def test_control_station_holds_a_call_from_a_polled_station() -> None:
    """A CS receiving a call from the station it polled holds the ACK the same way."""
    cs = ControlStation(CS_HOLD)
    cs.start(0.0)
    cs.timer(0.5)
    cs.receive(b"\x31\x05", 0.6)
    assert cs.data_to_send() == EOT + b"\x32\x05" + ACK
    cs.receive(CALL_FRAME, 0.7)
    assert cs.data_to_send() == b""
    [event] = _of(BlockReceived, cs.events())
    assert event.source == "2"
    assert event.hold is not None
    assert cs.next_deadline() == 0.7 + CS_HOLD.ack_hold_timeout
    assert cs.release_ack(event.hold, 0.8)
    assert cs.data_to_send() == ACK
    cs.receive(EOT, 0.9)
    assert _state(cs) is LineState.IDLE


def test_back_to_back_sender_waits_for_the_released_ack() -> None:
    """The sending station sees its call delivered only after the release, and sends it once."""
    wire = Wire(ControlStation(CS_HOLD), Station(ST_CONFIG))
    wire.start()
    handle = wire.st.send_block(CALL)
    wire.run_for(0.6)
    [event] = _of(BlockReceived, wire.cs_events)
    assert event.hold is not None
    assert not _of(BlockDelivered, wire.st_events)
    assert wire.cs.release_ack(event.hold, wire.now)
    wire.run_for(0.1)
    assert _of(BlockDelivered, wire.st_events) == [BlockDelivered(handle)]
    assert wire.sent("st").count(CALL_FRAME) == 1


def test_back_to_back_unreleased_hold_is_acked_before_the_sender_resends() -> None:
    """A caller that never releases still gets the call delivered, once, by the hold timeout."""
    wire = Wire(ControlStation(CS_CONFIG), Station(ST_HOLD))
    wire.start()
    handle = wire.cs.send_block(CALL)
    wire.run_for(3.0)
    assert _of(BlockDelivered, wire.cs_events) == [BlockDelivered(handle)]
    assert not _of(BlockFailed, wire.cs_events)
    assert wire.sent("cs").count(CALL_FRAME) == 1
    assert len(_of(BlockReceived, wire.st_events)) == 1
    assert ProtocolWarning("ack_hold_expired", "1 s") in wire.st_events


# --- back-to-back conversations ----------------------------------------------------------


def test_back_to_back_calls_and_status_both_ways() -> None:
    """Deployment A: the CS sends calls, the station answers with status when polled."""
    wire = _wire()
    handles = [wire.cs.send_block(CALL), wire.cs.send_block(Block("1", (("1", b"9"),)))]
    wire.run_for(1.0)
    received = _of(BlockReceived, wire.st_events)
    assert [Call.from_block(e.block).address for e in received] == ["1234", "9"]
    for event in received:
        call = Call.from_block(event.block)
        wire.st.send_block(StatusReport(address=call.address, status=CallStatus.PAGED).to_block())
    wire.run_for(2.0)
    statuses = [StatusReport.from_block(e.block) for e in _of(BlockReceived, wire.cs_events)]
    assert [(s.address, s.status) for s in statuses] == [
        ("1234", CallStatus.PAGED),
        ("9", CallStatus.PAGED),
    ]
    assert [e.handle for e in _of(BlockDelivered, wire.cs_events)] == handles
    assert wire.cs.pending == wire.st.pending == 0


def test_back_to_back_gateway_as_paging_side() -> None:
    """Deployment B: the gateway is station '2' receiving nurse-call calls from CS '1'."""
    wire = _wire()
    wire.cs.send_block(Call(address="301", message="Bad rom 301").to_block())
    wire.run_for(0.2)
    [event] = _of(BlockReceived, wire.st_events)
    assert event.source == "1"
    assert Call.from_block(event.block).message == "Bad rom 301"


def test_back_to_back_with_garbage_injected() -> None:
    """Noise prepended to every transmission is ignored; the call still arrives once."""
    wire = _wire(to_st=lambda d: b"\r\n\x00" + d, to_cs=lambda d: b"\xff\r" + d)
    handle = wire.cs.send_block(CALL)
    wire.run_for(1.0)
    assert _of(BlockDelivered, wire.cs_events) == [BlockDelivered(handle)]
    assert len(_of(BlockReceived, wire.st_events)) == 1


def test_back_to_back_bad_bcc_then_retry() -> None:
    """A block corrupted on the wire is NAKed '1' and the retry is delivered exactly once."""
    hits: list[int] = []

    def flip_bcc_once(data: bytes) -> bytes:
        if data.startswith(b"\x01") and not hits:
            hits.append(1)
            return data[:-1] + bytes((data[-1] ^ 0x11,))
        return data

    wire = _wire(to_st=flip_bcc_once)
    handle = wire.cs.send_block(CALL)
    wire.run_for(0.5)
    assert (("st", b"\x31\x15")) in wire.log
    assert _of(BlockDelivered, wire.cs_events) == [BlockDelivered(handle)]
    assert len(_of(BlockReceived, wire.st_events)) == 1


def test_back_to_back_busy_then_accept() -> None:
    """A busy station delays delivery until it accepts again; nothing is lost."""
    wire = _wire()
    wire.st.accepting = False
    handle = wire.cs.send_block(CALL)
    wire.run_for(5.0)
    assert wire.cs.pending == 1
    assert wire.sent("st").count(b"\x32\x15") >= 3
    wire.st.accepting = True
    wire.run_for(2.0)
    assert _of(BlockDelivered, wire.cs_events) == [BlockDelivered(handle)]


def test_back_to_back_lost_ack_deduplicated() -> None:
    """The station's ACK to the block is lost; the CS resends and the station reports once."""
    dropped: list[int] = []

    def drop_second_ack(data: bytes) -> bytes:
        if data == ACK:
            dropped.append(1)
            if len(dropped) == 2:
                return b""
        return data

    wire = _wire(to_cs=drop_second_ack)
    handle = wire.cs.send_block(CALL)
    wire.run_for(3.0)
    assert wire.sent("cs").count(CALL_FRAME) == 2
    assert _of(BlockDelivered, wire.cs_events) == [BlockDelivered(handle)]
    assert len(_of(BlockReceived, wire.st_events)) == 1


def test_back_to_back_silent_peer_fails_then_recovers() -> None:
    """A dead paging side: blocks wait, LinkDown fires; when it returns the call goes out."""
    alive = [False]
    wire = _wire(to_st=lambda d: d if alive[0] else b"")
    handle = wire.cs.send_block(CALL)
    wire.run_for(40.0)
    assert _of(LinkDown, wire.cs_events) == [LinkDown("2", "no_answer")]
    assert wire.cs.pending == 1
    assert not _of(BlockFailed, wire.cs_events)
    alive[0] = True
    wire.run_for(61.0)
    assert _of(BlockDelivered, wire.cs_events) == [BlockDelivered(handle)]
    assert _of(LinkUp, wire.cs_events)[-1] == LinkUp("2")


def test_back_to_back_station_transmission_retries_on_silence() -> None:
    """A status block whose ACK never comes is resent, then failed with EOT to the CS."""
    wire = _wire(to_cs=lambda d: b"" if d.startswith(b"\x01") else d)
    handle = wire.st.send_block(STATUS)
    wire.run_for(8.0)
    assert wire.sent("st").count(STATUS_FRAME) == 3
    assert BlockFailed(handle, "retries_exhausted") in wire.st_events


# --- property tests ----------------------------------------------------------------------

_line_bytes = st.lists(
    st.tuples(
        st.one_of(
            st.binary(max_size=40),
            st.sampled_from([EOT, ACK, NAK, b"\x31\x05", b"\x32\x05", b"\x31\x15", CALL_FRAME]),
        ),
        st.floats(min_value=0.0, max_value=15.0),
    ),
    max_size=25,
)


@settings(max_examples=200, deadline=None)
@given(
    script=_line_bytes,
    role=st.sampled_from(["cs", "station"]),
    strict=st.booleans(),
    release=st.sampled_from([None, "at_once", "next_step"]),
)
def test_property_line_never_raises(
    script: list[tuple[bytes, float]], role: str, strict: bool, release: str | None
) -> None:
    """Arbitrary input never makes either role raise, leave a deadline due, or send 8-bit bytes.

    With `release` set, calls are held and released at once or after the next input.
    """
    config = replace(CS_CONFIG if role == "cs" else ST_CONFIG, strict=strict)
    if release is not None:
        config = replace(config, hold_ack_headers=HOLD_CALLS)
    line: ControlStation | Station = ControlStation(config) if role == "cs" else Station(config)
    line.start(0.0)
    line.send_block(CALL)
    now = 0.0
    held: list[AckHold] = []
    for data, gap in script:
        now += gap
        line.receive(data, now)
        line.timer(now)
        for hold in held:
            line.release_ack(hold, now)
        held = [e.hold for e in _of(BlockReceived, line.events()) if e.hold is not None]
        if release == "at_once":
            for hold in held:
                line.release_ack(hold, now)
        deadline = line.next_deadline()
        assert deadline is None or deadline > now
        sent = line.data_to_send()
        assert all(b < 0x80 for b in sent)
        line.events()
    assert _state(line) is not LineState.STOPPED
