"""Typed ESPA 4.4.4 records: header-1 calls and header-2 status reports (§5, §7)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Final, Self, TypeVar

from gateway.espa.codec import Block, Record, TextEncoding, decode_text, encode_text, sanitize_text

__all__ = [
    "MAX_CALL_ADDRESS_LENGTH",
    "MAX_DISPLAY_LENGTH",
    "Call",
    "CallStatus",
    "CallType",
    "DataId",
    "Header",
    "MissingRecordError",
    "Priority",
    "StatusOutcome",
    "StatusReport",
    "SystemStatus",
    "validate_block",
]

MAX_CALL_ADDRESS_LENGTH: Final = 16
MAX_DISPLAY_LENGTH: Final = 128


class Header(StrEnum):
    """Block header digit (§5)."""

    CALL = "1"
    STATUS = "2"
    STATUS_REQUEST = "3"
    SUBSCRIBER_CALL = "4"
    OTHER = "5"


class DataId(StrEnum):
    """Record data identifier (§5)."""

    CALL_ADDRESS = "1"
    DISPLAY_MESSAGE = "2"
    BEEP_CODING = "3"
    CALL_TYPE = "4"
    TRANSMISSIONS = "5"
    PRIORITY = "6"
    CALL_STATUS = "7"
    SYSTEM_STATUS = "8"


class CallType(StrEnum):
    """Record 4 values."""

    RESET = "1"
    SPEECH = "2"
    STANDARD = "3"


class Priority(StrEnum):
    """Record 6 values."""

    ALARM = "1"
    HIGH = "2"
    NORMAL = "3"


class StatusOutcome(StrEnum):
    """What a call status means for the gateway (§7)."""

    DELIVERED = "delivered"
    ACKNOWLEDGED = "acknowledged"
    ABSENT = "absent"
    PENDING = "pending"
    TERMINATED = "terminated"
    SPEECH_OPEN = "speech_open"
    FAILED = "failed"


class CallStatus(StrEnum):
    """Record 7 values."""

    BUSY = "1"
    IN_QUEUE = "2"
    PAGED = "3"
    ABSENT = "4"
    TERMINATED = "5"
    ACKNOWLEDGED = "6"
    SPEECH_OPEN = "7"
    SPEECH_OPEN_PAGED = "71"
    SPEECH_OPEN_ABSENT = "72"
    FAULT = "8"

    @property
    def outcome(self) -> StatusOutcome:
        """Return the gateway-level meaning of this status."""
        return _OUTCOMES[self]


_OUTCOMES: Final = {
    CallStatus.BUSY: StatusOutcome.PENDING,
    CallStatus.IN_QUEUE: StatusOutcome.PENDING,
    CallStatus.PAGED: StatusOutcome.DELIVERED,
    CallStatus.ABSENT: StatusOutcome.ABSENT,
    CallStatus.TERMINATED: StatusOutcome.TERMINATED,
    CallStatus.ACKNOWLEDGED: StatusOutcome.ACKNOWLEDGED,
    CallStatus.SPEECH_OPEN: StatusOutcome.SPEECH_OPEN,
    CallStatus.SPEECH_OPEN_PAGED: StatusOutcome.SPEECH_OPEN,
    CallStatus.SPEECH_OPEN_ABSENT: StatusOutcome.SPEECH_OPEN,
    CallStatus.FAULT: StatusOutcome.FAILED,
}


class SystemStatus(StrEnum):
    """Record 8 values."""

    TRANSMITTER_FAILURE = "1"


class MissingRecordError(ValueError):
    """A block lacks a record its header requires (§10 #16)."""


def _last_wins(records: Iterable[Record]) -> dict[str, bytes]:
    # §10 #17: duplicate identifiers — the last occurrence wins.
    return dict(records)


def _ascii(data: bytes) -> str:
    return data.decode("latin-1")


_E = TypeVar("_E", bound=StrEnum)


def _enum_or_none(kind: type[_E], data: bytes | None) -> _E | None:
    if data is None:
        return None
    try:
        return kind(_ascii(data))
    except ValueError:
        return None


def _count_or_none(data: bytes | None) -> int | None:
    # §5: '0' is reserved and '1' ≠ '01', so only canonical numbers become ints.
    if data is None or not data.isdigit() or data.startswith(b"0"):
        return None
    return int(data)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Common:
    """Fields shared by calls and status reports (a status repeats the call's records, §7)."""

    address: str | None = None
    message: str | None = None
    beep: str | None = None
    call_type: CallType | None = None
    transmissions: int | None = None
    priority: Priority | None = None


_KNOWN_COMMON: Final = frozenset(
    {
        DataId.CALL_ADDRESS,
        DataId.DISPLAY_MESSAGE,
        DataId.BEEP_CODING,
        DataId.CALL_TYPE,
        DataId.TRANSMISSIONS,
        DataId.PRIORITY,
    }
)


def _parse_common(fields: dict[str, bytes], encoding: TextEncoding) -> tuple[_Common, list[str]]:
    """Return the typed common fields and the identifiers whose values were not understood."""
    raw_type = fields.get(DataId.CALL_TYPE)
    raw_prio = fields.get(DataId.PRIORITY)
    raw_count = fields.get(DataId.TRANSMISSIONS)
    raw_addr = fields.get(DataId.CALL_ADDRESS)
    raw_msg = fields.get(DataId.DISPLAY_MESSAGE)
    raw_beep = fields.get(DataId.BEEP_CODING)
    common = _Common(
        address=None if raw_addr is None else decode_text(raw_addr, encoding),
        message=None if raw_msg is None else decode_text(raw_msg, encoding),
        beep=None if raw_beep is None else _ascii(raw_beep),
        call_type=_enum_or_none(CallType, raw_type),
        transmissions=_count_or_none(raw_count),
        priority=_enum_or_none(Priority, raw_prio),
    )
    not_understood: list[str] = [
        str(ident)
        for ident, raw, parsed in (
            (DataId.CALL_TYPE, raw_type, common.call_type),
            (DataId.PRIORITY, raw_prio, common.priority),
            (DataId.TRANSMISSIONS, raw_count, common.transmissions),
        )
        if raw is not None and parsed is None
    ]
    return common, not_understood


def _extra(fields: dict[str, bytes], known: frozenset[str], keep: list[str]) -> tuple[Record, ...]:
    return tuple((i, d) for i, d in fields.items() if i not in known or i in keep)


def _common_records(common: _Common, encoding: TextEncoding, *, display_limit: int) -> list[Record]:
    out: list[Record] = []
    if common.address is not None:
        address = sanitize_text(common.address, MAX_CALL_ADDRESS_LENGTH)
        out.append((DataId.CALL_ADDRESS, encode_text(address, encoding)))
    if common.message is not None:
        message = sanitize_text(common.message, min(display_limit, MAX_DISPLAY_LENGTH))
        out.append((DataId.DISPLAY_MESSAGE, encode_text(message, encoding)))
    if common.beep is not None:
        out.append((DataId.BEEP_CODING, encode_text(sanitize_text(common.beep), encoding)))
    if common.call_type is not None:
        out.append((DataId.CALL_TYPE, common.call_type.encode("ascii")))
    if common.transmissions is not None:
        out.append((DataId.TRANSMISSIONS, str(common.transmissions).encode("ascii")))
    if common.priority is not None:
        out.append((DataId.PRIORITY, common.priority.encode("ascii")))
    return out


def _oversized(common: _Common, display_limit: int) -> tuple[str, ...]:
    over: list[str] = []
    if common.address is not None and len(common.address) > MAX_CALL_ADDRESS_LENGTH:
        over.append(DataId.CALL_ADDRESS)
    limit = min(display_limit, MAX_DISPLAY_LENGTH)
    if common.message is not None and len(common.message) > limit:
        over.append(DataId.DISPLAY_MESSAGE)
    return tuple(over)


@dataclass(frozen=True, slots=True, kw_only=True)
class Call(_Common):
    """A header-1 call (or, sent with header '3', a status request for that call)."""

    address: str
    extra: tuple[Record, ...] = ()
    """Records not modelled above (unknown ids or unparsed values), preserved raw."""

    @property
    def is_reset(self) -> bool:
        """True when this call cancels an earlier call with the same address (§7)."""
        return self.call_type is CallType.RESET

    @classmethod
    def from_records(
        cls, records: Iterable[Record], *, encoding: TextEncoding = TextEncoding.ISO646_NO
    ) -> Self:
        """Build from records; raise MissingRecordError without a call address."""
        fields = _last_wins(records)
        common, keep = _parse_common(fields, encoding)
        if not common.address:
            raise MissingRecordError("ESPA call block has no call address (record 1)")
        return cls(
            address=common.address,
            message=common.message,
            beep=common.beep,
            call_type=common.call_type,
            transmissions=common.transmissions,
            priority=common.priority,
            extra=_extra(fields, _KNOWN_COMMON, keep),
        )

    @classmethod
    def from_block(cls, block: Block, *, encoding: TextEncoding = TextEncoding.ISO646_NO) -> Self:
        """Build from a block's records (the header is not checked)."""
        return cls.from_records(block.records, encoding=encoding)

    def to_records(
        self,
        *,
        encoding: TextEncoding = TextEncoding.ISO646_NO,
        display_limit: int = MAX_DISPLAY_LENGTH,
    ) -> tuple[Record, ...]:
        """Return records 1-6 then extras; text is sanitised and truncated (§10 #19, #22)."""
        out = _common_records(self, encoding, display_limit=display_limit)
        out.extend(self.extra)
        return tuple(out)

    def to_block(
        self,
        *,
        header: Header = Header.CALL,
        encoding: TextEncoding = TextEncoding.ISO646_NO,
        display_limit: int = MAX_DISPLAY_LENGTH,
    ) -> Block:
        """Return a block ready for `send_block` (header '3' makes a status request)."""
        return Block(header, self.to_records(encoding=encoding, display_limit=display_limit))

    def oversized_fields(self, *, display_limit: int = MAX_DISPLAY_LENGTH) -> tuple[str, ...]:
        """Identifiers `to_records` will truncate, so the caller can log it (§10 #19)."""
        return _oversized(self, display_limit)


_KNOWN_STATUS: Final = _KNOWN_COMMON | {DataId.CALL_STATUS, DataId.SYSTEM_STATUS}


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusReport(_Common):
    """A header-2 status block: the call's identifying records plus records 7 and/or 8."""

    status: CallStatus | None = None
    system_status: SystemStatus | None = None
    extra: tuple[Record, ...] = ()
    """Records not modelled above (unknown ids or unparsed values), preserved raw."""

    @property
    def outcome(self) -> StatusOutcome | None:
        """Return what the call status means for the gateway, if a known status is present."""
        return None if self.status is None else self.status.outcome

    @classmethod
    def from_records(
        cls, records: Iterable[Record], *, encoding: TextEncoding = TextEncoding.ISO646_NO
    ) -> Self:
        """Build from records; raise MissingRecordError if neither record 1 nor 8 is present."""
        fields = _last_wins(records)
        common, keep = _parse_common(fields, encoding)
        raw_status = fields.get(DataId.CALL_STATUS)
        raw_system = fields.get(DataId.SYSTEM_STATUS)
        status = _enum_or_none(CallStatus, raw_status)
        system = _enum_or_none(SystemStatus, raw_system)
        if raw_status is not None and status is None:
            keep.append(DataId.CALL_STATUS)
        if raw_system is not None and system is None:
            keep.append(DataId.SYSTEM_STATUS)
        if not common.address and raw_system is None:
            raise MissingRecordError("ESPA status block has neither call address nor system status")
        return cls(
            address=common.address,
            message=common.message,
            beep=common.beep,
            call_type=common.call_type,
            transmissions=common.transmissions,
            priority=common.priority,
            status=status,
            system_status=system,
            extra=_extra(fields, _KNOWN_STATUS, keep),
        )

    @classmethod
    def from_block(cls, block: Block, *, encoding: TextEncoding = TextEncoding.ISO646_NO) -> Self:
        """Build from a block's records (the header is not checked)."""
        return cls.from_records(block.records, encoding=encoding)

    def to_records(
        self,
        *,
        encoding: TextEncoding = TextEncoding.ISO646_NO,
        display_limit: int = MAX_DISPLAY_LENGTH,
    ) -> tuple[Record, ...]:
        """Return records 1-8 then extras, sanitised and truncated like `Call.to_records`."""
        out = _common_records(self, encoding, display_limit=display_limit)
        if self.status is not None:
            out.append((DataId.CALL_STATUS, self.status.encode("ascii")))
        if self.system_status is not None:
            out.append((DataId.SYSTEM_STATUS, self.system_status.encode("ascii")))
        out.extend(self.extra)
        return tuple(out)

    def to_block(
        self,
        *,
        encoding: TextEncoding = TextEncoding.ISO646_NO,
        display_limit: int = MAX_DISPLAY_LENGTH,
    ) -> Block:
        """Return a header-2 block ready for `send_block`."""
        records = self.to_records(encoding=encoding, display_limit=display_limit)
        return Block(Header.STATUS, records)


def validate_block(block: Block) -> str | None:
    """Return why a block's content is unusable (§10 #16), or None when it is acceptable."""
    fields = _last_wins(block.records)
    if len(block.header) != 1 or not block.header.isdigit():
        return "bad_header"
    if block.header in (Header.CALL, Header.STATUS_REQUEST, Header.SUBSCRIBER_CALL):
        if not fields.get(DataId.CALL_ADDRESS):
            return "missing_call_address"
    elif block.header == Header.STATUS and not (
        fields.get(DataId.CALL_ADDRESS) or DataId.SYSTEM_STATUS in fields
    ):
        return "missing_call_address"
    return None
