"""ESPA 4.4.4 byte codec: characters, BCC, block encoding, a sans-IO decoder and text helpers."""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from functools import reduce
from typing import Final, Literal, TypeAlias

__all__ = [
    "ACK",
    "DEFAULT_MAX_BLOCK_LENGTH",
    "ENQ",
    "EOT",
    "ETX",
    "NAK",
    "RS",
    "SOH",
    "STX",
    "US",
    "Ack",
    "BadBlock",
    "BadBlockReason",
    "Block",
    "Decoder",
    "Enq",
    "Eot",
    "Garbage",
    "InvalidBlock",
    "InvalidBlockReason",
    "Nak",
    "Record",
    "TextEncoding",
    "Token",
    "compute_bcc",
    "decode_text",
    "encode_block",
    "encode_enq",
    "encode_nak",
    "encode_text",
    "sanitize_text",
]

SOH: Final = 0x01
STX: Final = 0x02
ETX: Final = 0x03
EOT: Final = 0x04
ENQ: Final = 0x05
ACK: Final = 0x06
NAK: Final = 0x15
US: Final = 0x1F
RS: Final = 0x1E

_DIGITS: Final = frozenset(range(0x30, 0x3A))

# Not fixed by the spec (§8): the largest legal call block is ~170 bytes (16 + 128 + small
# records), so 1 KiB leaves room for vendor records while bounding memory on a noisy line.
DEFAULT_MAX_BLOCK_LENGTH: Final = 1024

Record: TypeAlias = tuple[str, bytes]
"""One record: (data identifier, raw data bytes)."""


@dataclass(frozen=True, slots=True)
class Enq:
    """`<addr> ENQ` (poll or select, depending on line state) or a bare ENQ (`addr` None)."""

    addr: str | None


@dataclass(frozen=True, slots=True)
class Ack:
    """A positive answer."""


@dataclass(frozen=True, slots=True)
class Nak:
    """A negative answer with its error digit ('1', '2', '3', …) or None when bare."""

    error: str | None


@dataclass(frozen=True, slots=True)
class Eot:
    """End of transaction; resets every station to neutral."""


@dataclass(frozen=True, slots=True)
class Block:
    """A data block: one header and ordered (identifier, data) records."""

    header: str
    records: tuple[Record, ...]
    raw: bytes = field(default=b"", compare=False, repr=False)
    """The wire bytes SOH…BCC it was decoded from (empty for locally built blocks)."""

    def get(self, identifier: str) -> bytes | None:
        """Return the data of the last record with `identifier` (last wins, §10 #17)."""
        for ident, data in reversed(self.records):
            if ident == identifier:
                return data
        return None

    @property
    def duplicate_ids(self) -> tuple[str, ...]:
        """Identifiers that occur more than once, in first-seen order."""
        counts = Counter(ident for ident, _ in self.records)
        return tuple(ident for ident, n in counts.items() if n > 1)

    def encode(self) -> bytes:
        """Return the wire bytes SOH…ETX BCC of this block."""
        return encode_block(self.header, self.records)


BadBlockReason: TypeAlias = Literal["bcc_mismatch", "too_long"]
InvalidBlockReason: TypeAlias = Literal[
    "missing_stx", "empty_header", "bad_header", "record_without_us", "empty_identifier"
]


@dataclass(frozen=True, slots=True)
class BadBlock:
    """A block lost to a transmission error; the slave answers `'1' NAK`."""

    reason: BadBlockReason


@dataclass(frozen=True, slots=True)
class InvalidBlock:
    """A block with a correct BCC but malformed content (§9.1); payload is SOH…ETX exclusive."""

    reason: InvalidBlockReason
    payload: bytes


@dataclass(frozen=True, slots=True)
class Garbage:
    """Bytes that formed no token (noise, CR/LF, stray digits, discarded partial blocks)."""

    data: bytes


Token: TypeAlias = Enq | Ack | Nak | Eot | Block | BadBlock | InvalidBlock | Garbage


def compute_bcc(body: bytes | bytearray) -> int:
    """Return the XOR of `body`, which must run from the byte after SOH through ETX (§6)."""
    return reduce(lambda acc, b: acc ^ b, body, 0)


def _check_text(what: str, data: bytes, *, allow_empty: bool) -> None:
    if not data and not allow_empty:
        raise ValueError(f"ESPA {what} must not be empty")
    if any(b < 0x20 for b in data):
        raise ValueError(f"ESPA {what} contains a control character: {data!r}")


def encode_block(header: str, records: Iterable[Record]) -> bytes:
    """Return SOH header STX records ETX BCC; raise ValueError on control characters in fields."""
    head = header.encode("latin-1")
    _check_text("header", head, allow_empty=False)
    parts: list[bytes] = []
    for ident, data in records:
        raw_id = ident.encode("latin-1")
        _check_text("data identifier", raw_id, allow_empty=False)
        _check_text(f"data for identifier {ident!r}", data, allow_empty=True)
        parts.append(raw_id + bytes((US,)) + data)
    body = head + bytes((STX,)) + bytes((RS,)).join(parts) + bytes((ETX,))
    return bytes((SOH,)) + body + bytes((compute_bcc(body),))


def _address_byte(addr: str) -> int:
    if len(addr) != 1 or ord(addr) not in _DIGITS:
        raise ValueError(f"ESPA address must be one digit '0'-'9', got {addr!r}")
    return ord(addr)


def encode_enq(addr: str) -> bytes:
    """Return `<addr> ENQ` (a poll or a select)."""
    return bytes((_address_byte(addr), ENQ))


def encode_nak(error: str | None) -> bytes:
    """Return `<error> NAK`, or a bare NAK when `error` is None."""
    if error is None:
        return bytes((NAK,))
    return bytes((_address_byte(error), NAK))


class _State(Enum):
    OUTSIDE = "outside"
    IN_BLOCK = "in_block"
    AWAIT_BCC = "await_bcc"
    OVERFLOW = "overflow"
    OVERFLOW_BCC = "overflow_bcc"


class Decoder:
    """Sans-IO ESPA framer: `feed()` bytes, then drain `tokens()`; never raises on input."""

    __slots__ = (
        "_buf",
        "_garbage",
        "_inter_char_timeout",
        "_last_byte_at",
        "_mask",
        "_max_len",
        "_pending_digit",
        "_state",
        "_tokens",
    )

    def __init__(
        self,
        *,
        mask_high_bit: bool = False,
        max_block_length: int = DEFAULT_MAX_BLOCK_LENGTH,
        inter_char_timeout: float = 1.0,
    ) -> None:
        if max_block_length < 4:
            raise ValueError("max_block_length must allow at least SOH header STX ETX")
        self._mask = mask_high_bit
        self._max_len = max_block_length
        self._inter_char_timeout = inter_char_timeout
        self._state = _State.OUTSIDE
        self._buf = bytearray()  # SOH … (ETX) of the block being collected
        self._pending_digit: int | None = None
        self._garbage = bytearray()
        self._tokens: list[Token] = []
        self._last_byte_at: float | None = None

    def feed(self, data: bytes, now: float | None = None) -> None:
        """Consume `data` received at `now`; a gap over the inter-char timeout drops partials."""
        if now is not None:
            self.expire(now)
        for byte in data:
            self._feed_byte(byte & 0x7F if self._mask else byte)
        self._flush_garbage()
        if now is not None and data:
            self._last_byte_at = now

    def expire(self, now: float) -> None:
        """Discard a partial block or a lone digit whose next byte is overdue (§8, §10 #9)."""
        deadline = self.deadline()
        if deadline is None or now < deadline:
            return
        if self._pending_digit is not None:
            self._garbage.append(self._pending_digit)
            self._pending_digit = None
        if self._state is not _State.OUTSIDE:
            self._garbage += self._buf
            self._buf.clear()
            self._state = _State.OUTSIDE
        self._flush_garbage()

    def deadline(self) -> float | None:
        """Return when a partial block or lone digit will be discarded, or None if none is held."""
        if self._last_byte_at is None or not self.in_progress:
            return None
        return self._last_byte_at + self._inter_char_timeout

    @property
    def in_progress(self) -> bool:
        """True while a block or a digit awaiting ENQ/NAK is partially received."""
        return self._state is not _State.OUTSIDE or self._pending_digit is not None

    def tokens(self) -> list[Token]:
        """Return and clear the tokens decoded so far."""
        out, self._tokens = self._tokens, []
        return out

    def reset(self) -> None:
        """Forget all partial input (e.g. after the port was reopened)."""
        self._state = _State.OUTSIDE
        self._buf.clear()
        self._pending_digit = None
        self._garbage.clear()
        self._last_byte_at = None

    def _emit(self, token: Token) -> None:
        self._flush_garbage()
        self._tokens.append(token)

    def _flush_garbage(self) -> None:
        if self._garbage:
            self._tokens.append(Garbage(bytes(self._garbage)))
            self._garbage.clear()

    def _feed_byte(self, byte: int) -> None:
        match self._state:
            case _State.OUTSIDE:
                self._outside(byte)
            case _State.IN_BLOCK:
                self._in_block(byte)
            case _State.AWAIT_BCC:
                self._finish_block(byte)
            case _State.OVERFLOW:
                self._overflow(byte)
            case _State.OVERFLOW_BCC:
                # The byte after ETX is the BCC whatever its value (§6.2); swallow it.
                self._state = _State.OUTSIDE
                self._emit(BadBlock("too_long"))

    def _outside(self, byte: int) -> None:
        digit, self._pending_digit = self._pending_digit, None
        if digit is not None:
            if byte == ENQ:
                self._emit(Enq(chr(digit)))
                return
            if byte == NAK:
                self._emit(Nak(chr(digit)))
                return
            self._garbage.append(digit)  # §10 #10: a digit not followed by ENQ/NAK
        if byte in _DIGITS:
            self._pending_digit = byte
        elif byte == SOH:
            self._flush_garbage()
            self._buf[:] = bytes((SOH,))
            self._state = _State.IN_BLOCK
        elif byte == EOT:
            self._emit(Eot())
        elif byte == ACK:
            self._emit(Ack())
        elif byte == ENQ:
            self._emit(Enq(None))
        elif byte == NAK:
            self._emit(Nak(None))
        else:
            self._garbage.append(byte)

    def _in_block(self, byte: int) -> None:
        if byte == SOH:
            self._garbage += self._buf  # §10 #8: restart on a new SOH
            self._buf[:] = bytes((SOH,))
        elif byte == EOT:
            self._garbage += self._buf  # §10 #8: EOT aborts the block
            self._buf.clear()
            self._state = _State.OUTSIDE
            self._emit(Eot())
        else:
            self._buf.append(byte)
            if byte == ETX:
                self._state = _State.AWAIT_BCC
            elif len(self._buf) > self._max_len:
                self._garbage += self._buf
                self._buf.clear()
                self._state = _State.OVERFLOW

    def _overflow(self, byte: int) -> None:
        if byte == ETX:
            self._state = _State.OVERFLOW_BCC
        elif byte == SOH:
            self._buf[:] = bytes((SOH,))
            self._state = _State.IN_BLOCK
        elif byte == EOT:
            self._state = _State.OUTSIDE
            self._emit(Eot())

    def _finish_block(self, bcc: int) -> None:
        frame = bytes(self._buf) + bytes((bcc,))
        self._buf.clear()
        self._state = _State.OUTSIDE
        if compute_bcc(frame[1:-1]) != bcc:
            self._emit(BadBlock("bcc_mismatch"))
            return
        self._emit(_parse_block(frame))


def _parse_block(frame: bytes) -> Block | InvalidBlock:
    """Parse a BCC-verified frame SOH…ETX BCC into records (§5, §9.1)."""
    payload = frame[1:-2]
    stx = payload.find(STX)
    if stx < 0:
        return InvalidBlock("missing_stx", payload)
    head = payload[:stx]
    if not head:
        return InvalidBlock("empty_header", payload)
    if any(b < 0x20 for b in head):
        return InvalidBlock("bad_header", payload)
    records: list[Record] = []
    for piece in payload[stx + 1 :].split(bytes((RS,))):
        if not piece:
            continue  # §10 #18: trailing RS / empty record
        us = piece.find(US)
        if us < 0:
            return InvalidBlock("record_without_us", payload)
        if us == 0:
            return InvalidBlock("empty_identifier", payload)
        records.append((piece[:us].decode("latin-1"), piece[us + 1 :]))
    return Block(head.decode("latin-1"), tuple(records), raw=frame)


class TextEncoding(StrEnum):
    """Character set for display text (§11); a site setting."""

    ISO646_NO = "iso646-no"
    ISO646_SE = "iso646-se"
    ASCII = "ascii"
    LATIN1 = "latin-1"


_NATIONAL_POSITIONS: Final = (0x5B, 0x5C, 0x5D, 0x7B, 0x7C, 0x7D)
_NATIONAL_LETTERS: Final = {
    TextEncoding.ISO646_NO: "ÆØÅæøå",
    TextEncoding.ISO646_SE: "ÄÖÅäöå",
}


def _char_to_byte(encoding: TextEncoding, char: str) -> int:
    code = ord(char)
    letters = _NATIONAL_LETTERS.get(encoding)
    if letters is not None:
        index = letters.find(char)
        if index >= 0:
            return _NATIONAL_POSITIONS[index]
        # In ISO 646 national variants these ASCII positions hold the letters, so the
        # original brackets cannot be sent.
        if code < 0x80 and code not in _NATIONAL_POSITIONS:
            return code
        return ord("?")
    limit = 0x100 if encoding is TextEncoding.LATIN1 else 0x80
    return code if code < limit else ord("?")


def encode_text(text: str, encoding: TextEncoding = TextEncoding.ISO646_NO) -> bytes:
    """Encode `text` one byte per character; unmappable characters become '?' (§11)."""
    text = unicodedata.normalize("NFC", text)
    return bytes(_char_to_byte(encoding, char) for char in text)


def decode_text(data: bytes, encoding: TextEncoding = TextEncoding.ISO646_NO) -> str:
    """Decode received bytes; bytes outside the character set become '?'."""
    letters = _NATIONAL_LETTERS.get(encoding)
    if letters is not None:
        table = dict(zip(_NATIONAL_POSITIONS, letters, strict=True))
        return "".join(table.get(b, chr(b) if b < 0x80 else "?") for b in data)
    if encoding is TextEncoding.LATIN1:
        return data.decode("latin-1")
    return "".join(chr(b) if b < 0x80 else "?" for b in data)


def sanitize_text(text: str, limit: int | None = None) -> str:
    """NFC-normalise, turn whitespace controls into spaces, drop other controls, then truncate."""
    out: list[str] = []
    for char in unicodedata.normalize("NFC", text):
        if char in "\t\r\n\v\f":
            out.append(" ")
        elif unicodedata.category(char) != "Cc":
            out.append(char)
    clean = "".join(out)
    return clean if limit is None else clean[:limit]
