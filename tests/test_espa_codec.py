"""Tests for the ESPA 4.4.4 codec and typed records (spec: shared/protocols/espa444.md)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.espa import (
    Ack,
    BadBlock,
    Block,
    Call,
    CallStatus,
    CallType,
    Decoder,
    Enq,
    Eot,
    Garbage,
    Header,
    InvalidBlock,
    MissingRecordError,
    Nak,
    Priority,
    Record,
    StatusOutcome,
    StatusReport,
    SystemStatus,
    TextEncoding,
    Token,
    compute_bcc,
    decode_text,
    encode_block,
    encode_enq,
    encode_nak,
    encode_text,
    sanitize_text,
    validate_block,
)
from gateway.espa.codec import EOT, ETX, RS, SOH, STX, US


def _decode(
    data: bytes, *, mask_high_bit: bool = False, max_block_length: int = 1024
) -> list[Token]:
    decoder = Decoder(mask_high_bit=mask_high_bit, max_block_length=max_block_length)
    decoder.feed(data)
    return decoder.tokens()


def _blocks(tokens: list[Token]) -> list[Block]:
    return [t for t in tokens if isinstance(t, Block)]


def _with_even_parity(data: bytes) -> bytes:
    return bytes(b | 0x80 if bin(b).count("1") % 2 else b for b in data)


# §6.1 and §6.2: (name, frame hex, header, records)
VECTORS: list[tuple[str, str, str, tuple[Record, ...]]] = [
    (
        "6.1 call 123, 3 transmissions, high priority",
        "01 31 02 31 1F 31 32 33 1E 35 1F 33 1E 36 1F 32 03 2C",
        "1",
        (("1", b"123"), ("5", b"3"), ("6", b"2")),
    ),
    ("minimal", "01 31 02 31 1F 41 03 5F", "1", (("1", b"A"),)),
    (
        "nordic ISO 646-NO",
        "01 31 02 31 1F 31 32 33 34 1E 32 1F 44 7C 72 20 7D 70 65 6E 20 72 6F 6D 20 31 32"
        " 1E 36 1F 32 03 33",
        "1",
        (("1", b"1234"), ("2", b"D|r }pen rom 12"), ("6", b"2")),
    ),
    (
        "status 1234 paged",
        "01 32 02 31 1F 31 32 33 34 1E 37 1F 33 03 1C",
        "2",
        (("1", b"1234"), ("7", b"3")),
    ),
    (
        "reset call 1234 (BCC = RS)",
        "01 31 02 31 1F 31 32 33 34 1E 34 1F 31 03 1E",
        "1",
        (("1", b"1234"), ("4", b"1")),
    ),
    (
        "spec example 2",
        "01 32 02 31 1F 31 32 33 1E 33 1F 31 1E 32 1F 34 35 36 37 1E 37 1F 33 03 18",
        "2",
        (("1", b"123"), ("3", b"1"), ("2", b"4567"), ("7", b"3")),
    ),
    (
        "full call",
        "01 31 02 31 1F 31 32 33 34 1E 32 1F 52 4F 4D 20 31 32 20 41 4C 41 52 4D 1E 33 1F 32"
        " 1E 34 1F 33 1E 36 1F 31 03 29",
        "1",
        (("1", b"1234"), ("2", b"ROM 12 ALARM"), ("3", b"2"), ("4", b"3"), ("6", b"1")),
    ),
]
VECTOR_IDS = [v[0] for v in VECTORS]


@pytest.mark.parametrize(("name", "frame_hex", "header", "records"), VECTORS, ids=VECTOR_IDS)
def test_vector_bcc(name: str, frame_hex: str, header: str, records: tuple[Record, ...]) -> None:
    """Each §6 vector's BCC is the XOR from the byte after SOH through ETX."""
    frame = bytes.fromhex(frame_hex)
    assert compute_bcc(frame[1:-1]) == frame[-1], name


@pytest.mark.parametrize(("name", "frame_hex", "header", "records"), VECTORS, ids=VECTOR_IDS)
def test_vector_encode(name: str, frame_hex: str, header: str, records: tuple[Record, ...]) -> None:
    """Encoding each §6 vector's header and records yields exactly the spec bytes."""
    assert encode_block(header, records) == bytes.fromhex(frame_hex), name


@pytest.mark.parametrize(("name", "frame_hex", "header", "records"), VECTORS, ids=VECTOR_IDS)
def test_vector_decode(name: str, frame_hex: str, header: str, records: tuple[Record, ...]) -> None:
    """Decoding each §6 vector yields one Block with the spec header and records."""
    frame = bytes.fromhex(frame_hex)
    tokens = _decode(frame)
    assert tokens == [Block(header, records)], name
    block = tokens[0]
    assert isinstance(block, Block)
    assert block.raw == frame


def test_worked_example_running_xor() -> None:
    """§6.1 running XOR column: the intermediate values after header, STX and first record."""
    frame = bytes.fromhex("01 31 02 31 1F 31 32 33 1E 35 1F 33 1E 36 1F 32 03 2C")
    assert compute_bcc(frame[1:2]) == 0x31
    assert compute_bcc(frame[1:3]) == 0x33
    assert compute_bcc(frame[1:8]) == 0x2D
    assert compute_bcc(frame[1:-1]) == 0x2C
    assert len(frame) == 18


def test_worked_example_misprint_gives_2d() -> None:
    """§6.1 note: the 1984 example's '6' US '3' (normal priority) has BCC 0x2D."""
    frame = encode_block("1", [("1", b"123"), ("5", b"3"), ("6", b"3")])
    assert frame[-1] == 0x2D


def test_worked_example_from_typed_call() -> None:
    """A typed Call reproduces the §6.1 frame byte for byte."""
    call = Call(address="123", transmissions=3, priority=Priority.HIGH)
    assert call.to_block().encode() == bytes.fromhex(
        "01 31 02 31 1F 31 32 33 1E 35 1F 33 1E 36 1F 32 03 2C"
    )


def test_full_call_from_typed_call() -> None:
    """A typed Call with text, beep, call type and priority reproduces the §6.2 full-call frame."""
    call = Call(
        address="1234",
        message="ROM 12 ALARM",
        beep="2",
        call_type=CallType.STANDARD,
        priority=Priority.ALARM,
    )
    assert call.to_block().encode()[-1] == 0x29
    assert call.to_block().encode() == bytes.fromhex(VECTORS[6][1])


def test_nordic_call_from_typed_call() -> None:
    """ISO 646-NO maps ø→0x7C and å→0x7D, reproducing the §6.2 Nordic vector."""
    call = Call(address="1234", message="Dør åpen rom 12", priority=Priority.HIGH)
    frame = call.to_block(encoding=TextEncoding.ISO646_NO).encode()
    assert frame == bytes.fromhex(VECTORS[2][1])
    decoded = Call.from_block(_blocks(_decode(frame))[0])
    assert decoded.message == "Dør åpen rom 12"


def test_reset_vector_bcc_is_rs() -> None:
    """§6.2 reset call: the BCC equals RS (0x1E) and is still read as the BCC."""
    frame = Call(address="1234", call_type=CallType.RESET).to_block().encode()
    assert frame[-1] == RS
    [block] = _decode(frame)
    assert isinstance(block, Block)
    call = Call.from_block(block)
    assert call.is_reset
    assert call.address == "1234"


def test_status_vector_from_typed_report() -> None:
    """A typed StatusReport reproduces the §6.2 status vector, whose BCC 0x1C is a control code."""
    frame = StatusReport(address="1234", status=CallStatus.PAGED).to_block().encode()
    assert frame == bytes.fromhex(VECTORS[3][1])
    report = StatusReport.from_block(_blocks(_decode(frame))[0])
    assert report.status is CallStatus.PAGED
    assert report.outcome is StatusOutcome.DELIVERED


def test_spec_example_2_decodes_to_status_report() -> None:
    """§6.2 spec example 2 decodes to call 123, beep 1, text 4567, status paged."""
    block = _blocks(_decode(bytes.fromhex(VECTORS[5][1])))[0]
    report = StatusReport.from_block(block)
    assert report == StatusReport(address="123", beep="1", message="4567", status=CallStatus.PAGED)


# --- §10 edge cases (codec side) -------------------------------------------------------------


def _frame_with_bcc(target: int) -> bytes:
    """Return a valid header-1 frame whose BCC equals `target`, by choosing two data chars."""
    for first in range(0x20, 0x7F):
        for second in range(0x20, 0x7F):
            frame = encode_block("1", [("1", bytes((0x31, first, second)))])
            if frame[-1] == target:
                return frame
    raise AssertionError(f"no printable filler gives BCC {target:#x}")


@pytest.mark.parametrize(
    "control", [RS, EOT, SOH, ETX, 0x05], ids=["RS", "EOT", "SOH", "ETX", "ENQ"]
)
def test_edge_02_bcc_equal_to_control_code(control: int) -> None:
    """Edge 2: a BCC equal to RS/EOT/SOH/ETX/ENQ is the BCC, not framing."""
    frame = _frame_with_bcc(control)
    assert frame[-1] == control
    tokens = _decode(frame + bytes.fromhex("32 05"))
    assert tokens == [Block("1", (("1", frame[5:8]),)), Enq("2")]


def test_edge_02_bcc_split_across_feeds() -> None:
    """Edge 2: a control-code BCC arriving in its own chunk still completes the block."""
    frame = bytes.fromhex(VECTORS[4][1])
    decoder = Decoder()
    decoder.feed(frame[:-1])
    assert decoder.tokens() == []
    decoder.feed(frame[-1:])
    assert _blocks(decoder.tokens()) == [Block("1", (("1", b"1234"), ("4", b"1")))]


def test_edge_01_bad_bcc_gives_bad_block() -> None:
    """Edge 1: a wrong BCC yields BadBlock('bcc_mismatch'), never a Block."""
    frame = bytearray(bytes.fromhex(VECTORS[1][1]))
    frame[-1] ^= 0x01
    assert _decode(bytes(frame)) == [BadBlock("bcc_mismatch")]


def test_edge_01_corrupted_data_byte_gives_bad_block() -> None:
    """Edge 1: one corrupted data byte is caught by the BCC."""
    frame = bytearray(bytes.fromhex(VECTORS[0][1]))
    frame[6] = ord("9")
    assert _decode(bytes(frame)) == [BadBlock("bcc_mismatch")]


def test_edge_06_bare_nak_has_no_digit() -> None:
    """Edge 6: a bare NAK decodes as Nak(None), and error digits are kept."""
    assert _decode(bytes.fromhex("15 31 15 32 15 33 15")) == [
        Nak(None),
        Nak("1"),
        Nak("2"),
        Nak("3"),
    ]


def test_edge_07_garbage_before_and_between_frames() -> None:
    """Edge 7: CR, LF, NUL, noise and bytes >= 0x80 around frames become Garbage only."""
    frame = bytes.fromhex(VECTORS[1][1])
    data = b"\r\n\x00\xff" + frame + b"\r\n" + b"\x80\x7f" + frame + b"\x06"
    tokens = _decode(data)
    assert _blocks(tokens) == [Block("1", (("1", b"A"),))] * 2
    assert tokens[-1] == Ack()
    garbage = b"".join(t.data for t in tokens if isinstance(t, Garbage))
    assert garbage == b"\r\n\x00\xff\r\n\x80\x7f"


def test_edge_08_soh_in_block_restarts() -> None:
    """Edge 8: an SOH inside a block discards the partial and decodes the restarted block."""
    frame = bytes.fromhex(VECTORS[1][1])
    tokens = _decode(b"\x01\x31\x02\x31\x1f\x39" + frame)
    assert _blocks(tokens) == [Block("1", (("1", b"A"),))]
    assert Garbage(b"\x01\x31\x02\x31\x1f\x39") in tokens


def test_edge_08_eot_in_block_aborts() -> None:
    """Edge 8: an EOT inside a block aborts it and is reported as Eot."""
    tokens = _decode(b"\x01\x31\x02\x31\x1f\x39\x04")
    assert not _blocks(tokens)
    assert tokens[-1] == Eot()


def test_edge_09_partial_block_discarded_after_inter_char_timeout() -> None:
    """Edge 9: a partial block is dropped once inter_char_timeout passes without bytes."""
    frame = bytes.fromhex(VECTORS[1][1])
    decoder = Decoder(inter_char_timeout=1.0)
    decoder.feed(frame[:4], now=10.0)
    assert decoder.deadline() == 11.0
    decoder.expire(10.5)
    assert decoder.tokens() == []
    decoder.expire(11.0)
    assert decoder.tokens() == [Garbage(frame[:4])]
    assert decoder.deadline() is None
    decoder.feed(frame[4:], now=11.5)
    assert not _blocks(decoder.tokens())


def test_edge_09_gap_detected_on_feed() -> None:
    """Edge 9: a late continuation is not glued to a stale partial even without expire()."""
    frame = bytes.fromhex(VECTORS[1][1])
    decoder = Decoder(inter_char_timeout=1.0)
    decoder.feed(frame[:4], now=0.0)
    decoder.feed(frame[4:], now=5.0)
    tokens = decoder.tokens()
    assert not _blocks(tokens)
    assert tokens[0] == Garbage(frame[:4])


def test_edge_09_slow_but_steady_block_survives() -> None:
    """Edge 9: bytes arriving within inter_char_timeout of each other still form a block."""
    frame = bytes.fromhex(VECTORS[1][1])
    decoder = Decoder(inter_char_timeout=1.0)
    for i, byte in enumerate(frame):
        decoder.feed(bytes((byte,)), now=i * 0.9)
    assert _blocks(decoder.tokens()) == [Block("1", (("1", b"A"),))]


def test_edge_10_digit_not_followed_by_enq_or_nak() -> None:
    """Edge 10: a digit followed by anything but ENQ/NAK is garbage."""
    assert _decode(b"2X3\x06") == [Garbage(b"2X3"), Ack()]
    assert _decode(b"12\x05") == [Garbage(b"1"), Enq("2")]


def test_edge_10_digit_waits_across_chunks() -> None:
    """Edge 10: a digit at a chunk end waits for the next byte before being judged."""
    decoder = Decoder()
    decoder.feed(b"2")
    assert decoder.tokens() == []
    assert decoder.in_progress
    decoder.feed(b"\x05")
    assert decoder.tokens() == [Enq("2")]


def test_edge_15_unknown_header_and_identifiers_kept_raw() -> None:
    """Edge 15: header '9' and unknown ids decode, validate, and survive in Call.extra."""
    frame = encode_block("9", [("1", b"55"), ("12", b"x"), ("9", b"abc")])
    [block] = _decode(frame)
    assert isinstance(block, Block)
    assert block.header == "9"
    assert validate_block(block) is None
    call = Call.from_block(block)
    assert call.extra == (("12", b"x"), ("9", b"abc"))
    assert call.to_records()[-2:] == (("12", b"x"), ("9", b"abc"))


def test_edge_16_missing_call_address_is_invalid() -> None:
    """Edge 16: a header-1 block without record 1 fails validation and Call parsing."""
    block = Block("1", (("2", b"text"),))
    assert validate_block(block) == "missing_call_address"
    with pytest.raises(MissingRecordError, match="call address"):
        Call.from_block(block)


def test_edge_17_duplicate_identifiers_last_wins() -> None:
    """Edge 17: with duplicate identifiers the last value wins and the duplicate is reported."""
    [block] = _decode(encode_block("1", [("1", b"100"), ("2", b"a"), ("1", b"200")]))
    assert isinstance(block, Block)
    assert block.duplicate_ids == ("1",)
    assert block.get("1") == b"200"
    assert Call.from_block(block).address == "200"


def test_edge_18_trailing_rs_and_empty_record_accepted() -> None:
    """Edge 18: a trailing RS before ETX and empty records are accepted."""
    body = b"1\x021\x1f55\x1e\x1e2\x1fhi\x1e\x03"
    frame = bytes((SOH,)) + body + bytes((compute_bcc(body),))
    assert _decode(frame) == [Block("1", (("1", b"55"), ("2", b"hi")))]


def test_edge_19_oversized_fields_accepted_on_receive_truncated_on_send() -> None:
    """Edge 19: >16/>128 char fields decode intact but are truncated when encoded."""
    long_addr, long_text = "1" * 20, "x" * 200
    [block] = _decode(encode_block("1", [("1", long_addr.encode()), ("2", long_text.encode())]))
    assert isinstance(block, Block)
    call = Call.from_block(block)
    assert call.address == long_addr
    assert call.message == long_text
    assert call.oversized_fields() == ("1", "2")
    records = dict(call.to_records())
    assert records["1"] == b"1" * 16
    assert records["2"] == b"x" * 128
    assert dict(call.to_records(display_limit=32))["2"] == b"x" * 32


def test_edge_20_mask_high_bit_recovers_7e1_bytes() -> None:
    """Edge 20: with mask_high_bit, parity-bit-laden bytes from a 7E1 peer decode correctly."""
    wire = _with_even_parity(bytes.fromhex(VECTORS[0][1]) + b"\x32\x05")
    assert any(b >= 0x80 for b in wire)
    assert _decode(wire, mask_high_bit=True) == [
        Block("1", (("1", b"123"), ("5", b"3"), ("6", b"2"))),
        Enq("2"),
    ]
    assert not _blocks(_decode(wire))


def test_edge_22_display_text_control_chars_stripped() -> None:
    """Edge 22: control chars (incl. RS/US) in display text are replaced or removed before send."""
    call = Call(address="12", message="Rom\t12\r\nfall\x1e\x1f\x07!")
    message = dict(call.to_records())["2"]
    assert message == b"Rom 12  fall!"
    assert not any(b < 0x20 for b in call.to_block().encode()[3:-2] if b not in (US, RS))
    assert sanitize_text("a\x00b\x7fc\x85d", 3) == "abc"


# --- framing details -------------------------------------------------------------------------


def test_enq_ack_eot_tokens() -> None:
    """Poll/select, ACK, EOT and a bare ENQ decode to their tokens."""
    assert _decode(b"\x32\x05\x31\x05\x06\x04\x05") == [
        Enq("2"),
        Enq("1"),
        Ack(),
        Eot(),
        Enq(None),
    ]


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"1\x1f55", "missing_stx"),
        (b"\x021\x1f55", "empty_header"),
        (b"1\x0255", "record_without_us"),
        (b"1\x02\x1f55", "empty_identifier"),
        (b"\x00\x021\x1f5", "bad_header"),
    ],
)
def test_malformed_content_gives_invalid_block(payload: bytes, reason: str) -> None:
    """§9.1: a correct BCC over malformed content yields InvalidBlock with the reason."""
    body = payload + bytes((ETX,))
    frame = bytes((SOH,)) + body + bytes((compute_bcc(body),))
    assert _decode(frame) == [InvalidBlock(reason, payload)]  # type: ignore[arg-type]


def test_max_block_length_guard_and_resync() -> None:
    """An over-long block yields BadBlock('too_long') at its BCC; the next block decodes."""
    long_block = encode_block("1", [("2", b"x" * 100)])
    good = bytes.fromhex(VECTORS[1][1])
    tokens = _decode(long_block + good, max_block_length=64)
    assert tokens[-2:] == [BadBlock("too_long"), Block("1", (("1", b"A"),))]


def test_max_block_length_overflow_aborted_by_eot() -> None:
    """An over-long partial block aborted by EOT yields Eot and no BadBlock."""
    tokens = _decode(b"\x011\x02" + b"x" * 100 + b"\x04", max_block_length=64)
    assert tokens[-1] == Eot()
    assert not any(isinstance(t, BadBlock) for t in tokens)


def test_stx_in_record_data_is_data() -> None:
    """Only the first STX separates the header; a later one stays in the record data."""
    body = b"5\x021\x1fa\x02b\x03"
    frame = bytes((SOH,)) + body + bytes((compute_bcc(body),))
    assert _decode(frame) == [Block("5", (("1", b"a\x02b"),))]


def test_encode_rejects_control_characters() -> None:
    """encode_block refuses fields that would break framing."""
    with pytest.raises(ValueError, match="control character"):
        encode_block("1", [("1", b"12\x1e3")])
    with pytest.raises(ValueError, match="empty"):
        encode_block("", [("1", b"1")])
    with pytest.raises(ValueError, match="empty"):
        encode_block("1", [("", b"1")])


def test_encode_enq_and_nak() -> None:
    """encode_enq/encode_nak build `<digit> ENQ` and `<digit> NAK` / bare NAK."""
    assert encode_enq("2") == b"\x32\x05"
    assert encode_nak("2") == b"\x32\x15"
    assert encode_nak(None) == b"\x15"
    with pytest.raises(ValueError, match="one digit"):
        encode_enq("12")


def test_decoder_reset_forgets_partial() -> None:
    """reset() drops a partial block so the next frame decodes cleanly."""
    decoder = Decoder()
    decoder.feed(b"\x011\x021\x1f")
    decoder.reset()
    decoder.feed(bytes.fromhex(VECTORS[1][1]))
    assert _blocks(decoder.tokens()) == [Block("1", (("1", b"A"),))]


# --- text encodings (§11) ---------------------------------------------------------------------


def test_iso646_no_round_trip() -> None:
    """ISO 646-NO maps ÆØÅæøå onto [ \\ ] { | } and back."""
    assert encode_text("ÆØÅæøå", TextEncoding.ISO646_NO) == b"[\\]{|}"
    assert decode_text(b"[\\]{|}", TextEncoding.ISO646_NO) == "ÆØÅæøå"


def test_iso646_se_round_trip() -> None:
    """ISO 646-SE maps ÄÖÅäöå onto [ \\ ] { | } and back."""
    assert encode_text("ÄÖÅäöå", TextEncoding.ISO646_SE) == b"[\\]{|}"
    assert decode_text(b"[\\]{|}", TextEncoding.ISO646_SE) == "ÄÖÅäöå"


def test_iso646_unmappable_becomes_question_mark() -> None:
    """§11: unmappable characters, including the displaced brackets, encode as '?'."""
    assert encode_text("a[b]é€", TextEncoding.ISO646_NO) == b"a?b???"
    assert decode_text(b"\xe9", TextEncoding.ISO646_NO) == "?"


def test_latin1_and_ascii_encodings() -> None:
    """Latin-1 keeps 8-bit letters; ASCII replaces them with '?'."""
    assert encode_text("Dør", TextEncoding.LATIN1) == b"D\xf8r"
    assert decode_text(b"D\xf8r", TextEncoding.LATIN1) == "Dør"
    assert encode_text("Dør€", TextEncoding.ASCII) == b"D?r?"
    assert decode_text(b"D\xf8r", TextEncoding.ASCII) == "D?r"


def test_decomposed_letters_are_composed_before_encoding() -> None:
    """A decomposed å (a + ring) still maps to 0x7D."""
    assert encode_text("a\u030a", TextEncoding.ISO646_NO) == b"}"


# --- typed records ------------------------------------------------------------------------


def test_call_round_trip_through_records() -> None:
    """Call.to_records → Call.from_records reproduces the call."""
    call = Call(
        address="4711",
        message="Fall i rom 3 € Åse",
        beep="2",
        call_type=CallType.SPEECH,
        transmissions=2,
        priority=Priority.NORMAL,
    )
    again = Call.from_records(call.to_records())
    assert again == Call(
        address="4711",
        message="Fall i rom 3 ? Åse",
        beep="2",
        call_type=CallType.SPEECH,
        transmissions=2,
        priority=Priority.NORMAL,
    )


def test_unknown_values_preserved_in_extra() -> None:
    """§5: values like priority '01' or status '9' are kept raw, not forced into the enums."""
    call = Call.from_records([("1", b"12"), ("6", b"01"), ("5", b"0")])
    assert call.priority is None
    assert call.transmissions is None
    assert call.extra == (("6", b"01"), ("5", b"0"))
    assert Call.from_records(call.to_records()) == call
    report = StatusReport.from_records([("1", b"12"), ("7", b"9")])
    assert report.status is None
    assert report.outcome is None
    assert report.extra == (("7", b"9"),)


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (CallStatus.BUSY, StatusOutcome.PENDING),
        (CallStatus.IN_QUEUE, StatusOutcome.PENDING),
        (CallStatus.PAGED, StatusOutcome.DELIVERED),
        (CallStatus.ABSENT, StatusOutcome.ABSENT),
        (CallStatus.TERMINATED, StatusOutcome.TERMINATED),
        (CallStatus.ACKNOWLEDGED, StatusOutcome.ACKNOWLEDGED),
        (CallStatus.SPEECH_OPEN, StatusOutcome.SPEECH_OPEN),
        (CallStatus.SPEECH_OPEN_PAGED, StatusOutcome.SPEECH_OPEN),
        (CallStatus.SPEECH_OPEN_ABSENT, StatusOutcome.SPEECH_OPEN),
        (CallStatus.FAULT, StatusOutcome.FAILED),
    ],
)
def test_call_status_outcomes(status: CallStatus, outcome: StatusOutcome) -> None:
    """§7: every record-7 value maps to its gateway outcome and survives a round trip."""
    assert status.outcome is outcome
    report = StatusReport(address="1", status=status)
    assert StatusReport.from_block(report.to_block()).status is status


def test_status_71_differs_from_7() -> None:
    """§5: '71' and '7' are different values."""
    report = StatusReport.from_records([("1", b"5"), ("7", b"71")])
    assert report.status is CallStatus.SPEECH_OPEN_PAGED


def test_system_status_without_address() -> None:
    """A transmitter-failure status needs no call address."""
    block = Block(Header.STATUS, (("8", b"1"),))
    assert validate_block(block) is None
    report = StatusReport.from_block(block)
    assert report.system_status is SystemStatus.TRANSMITTER_FAILURE
    assert report.address is None
    with pytest.raises(MissingRecordError, match="neither"):
        StatusReport.from_records([("7", b"3")])


def test_status_request_uses_header_3() -> None:
    """§7: a status request is the call's records under header '3'."""
    block = Call(address="1234", message="x").to_block(header=Header.STATUS_REQUEST)
    assert block.header == "3"
    assert block.encode()[1] == ord("3")


def test_validate_block_rejects_multi_char_header() -> None:
    """A header that is not one digit is reported as bad_header."""
    assert validate_block(Block("12", (("1", b"1"),))) == "bad_header"


# --- property tests -------------------------------------------------------------------------

_ids = st.text(alphabet="0123456789", min_size=1, max_size=3)
_data = st.binary(max_size=40).map(lambda b: bytes(x for x in b if x >= 0x20))
_records = st.lists(st.tuples(_ids, _data), max_size=6)
_headers = st.sampled_from("123459")


@st.composite
def _valid_blocks(draw: st.DrawFn) -> Block:
    return Block(draw(_headers), tuple(draw(_records)))


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


@st.composite
def _noisy_streams(draw: st.DrawFn) -> bytes:
    pieces: list[bytes] = []
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(["valid", "flipped", "noise", "control"]))
        if kind == "noise":
            pieces.append(draw(st.binary(max_size=30)))
        elif kind == "control":
            pieces.append(
                bytes(
                    draw(
                        st.lists(
                            st.sampled_from(b"\x01\x02\x03\x04\x05\x06\x15\x1e\x1f0123"),
                            max_size=10,
                        )
                    )
                )
            )
        else:
            frame = bytearray(draw(_valid_blocks()).encode())
            if kind == "flipped":
                pos = draw(st.integers(0, len(frame) - 1))
                frame[pos] ^= draw(st.integers(1, 255))
            pieces.append(bytes(frame))
    return b"".join(pieces)


@settings(max_examples=300, deadline=None)
@given(
    data=st.one_of(st.binary(max_size=300), _noisy_streams()), cuts=st.lists(st.integers(0, 400))
)
def test_property_decoder_never_raises_nor_emits_bad_bcc(data: bytes, cuts: list[int]) -> None:
    """Any byte stream, in any chunking, decodes without raising; every Block's BCC was right."""
    decoder = Decoder(max_block_length=128)
    for chunk in _split(data, cuts):
        decoder.feed(chunk)
    for token in decoder.tokens():
        if isinstance(token, Block):
            assert token.raw in data
            assert token.raw[0] == SOH
            assert token.raw[-2] == ETX
            assert compute_bcc(token.raw[1:-1]) == token.raw[-1]


@settings(max_examples=300, deadline=None)
@given(
    block=_valid_blocks(),
    cuts=st.lists(st.integers(0, 400)),
    prefix=st.sampled_from([b"", b"\r\n", b"\x00", b"7"]),
)
def test_property_encode_feed_round_trip(block: Block, cuts: list[int], prefix: bytes) -> None:
    """encode → feed (split at arbitrary chunk boundaries, after noise) returns the same block."""
    frame = block.encode()
    decoder = Decoder()
    for chunk in _split(prefix + frame, cuts):
        decoder.feed(chunk)
    assert _blocks(decoder.tokens()) == [block]


@settings(max_examples=100, deadline=None)
@given(block=_valid_blocks())
def test_property_masked_round_trip_with_parity(block: Block) -> None:
    """With mask_high_bit, a 7E1-parity stream of a 7-bit block decodes to the same block."""
    seven_bit = Block(
        block.header,
        tuple((i, bytes(b & 0x7F for b in d if b & 0x7F >= 0x20)) for i, d in block.records),
    )
    wire = _with_even_parity(seven_bit.encode())
    assert _blocks(_decode(wire, mask_high_bit=True)) == [seven_bit]


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=200), encoding=st.sampled_from(list(TextEncoding)))
def test_property_sanitised_text_always_encodes(text: str, encoding: TextEncoding) -> None:
    """Any sanitised text encodes to printable bytes that encode_block accepts."""
    data = encode_text(sanitize_text(text, 128), encoding)
    assert len(data) <= 128
    frame = encode_block("1", [("1", b"1"), ("2", data)])
    assert _blocks(_decode(frame)) == [Block("1", (("1", b"1"), ("2", data)))]


def test_character_constants_match_spec() -> None:
    """§3 character table values are what the codec uses."""
    assert (SOH, STX, ETX, EOT, US, RS) == (0x01, 0x02, 0x03, 0x04, 0x1F, 0x1E)
