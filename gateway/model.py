"""Frozen types that cross layer boundaries: signals in, alerts and deliveries out."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Mapping
from typing import Any


class SignalState(enum.StrEnum):
    """What a signal says about its condition."""

    RAISED = "raised"
    CLEARED = "cleared"
    REPORT = "report"  # battery, link quality, heartbeat: no condition changes


class AlertState(enum.StrEnum):
    """Lifecycle of an alert, after the IHE ACM alarm states."""

    HELD = "held"  # waiting out a hold-off; may auto-cancel
    ACTIVE = "active"  # delivered (or being delivered) to handsets, nobody has accepted
    ACCEPTED = "accepted"  # a handset took responsibility
    CLEARED = "cleared"  # the condition went away (terminal)
    CANCELLED = "cancelled"  # auto-cancelled before it ever rang (terminal)
    RESOLVED = "resolved"  # closed by staff (terminal)
    SUPPRESSED = "suppressed"  # a rule decided it must not ring (terminal)

    @property
    def terminal(self) -> bool:
        """True when the alert can no longer change."""
        return self in _TERMINAL


_TERMINAL = frozenset(
    {AlertState.CLEARED, AlertState.CANCELLED, AlertState.RESOLVED, AlertState.SUPPRESSED}
)


class DeliveryState(enum.StrEnum):
    """Lifecycle of one alert message to one handset."""

    QUEUED = "queued"
    SENT = "sent"  # the channel confirmed (PUBACK, ESPA ACK)
    DELIVERED = "delivered"  # the handset confirmed it rings
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Priority(enum.IntEnum):
    """Alert priority; higher is more urgent."""

    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4


class ResponseKind(enum.StrEnum):
    """What a handset answered."""

    ACCEPT = "accept"
    REJECT = "reject"
    RESOLVE = "resolve"


@dataclasses.dataclass(frozen=True, slots=True)
class Signal:
    """One decoded observation from a sensor or nurse-call system."""

    id: str
    source: str
    device: str
    room: str
    kind: str
    state: SignalState
    ts: float
    attrs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    received_at: float = 0.0


@dataclasses.dataclass(frozen=True, slots=True)
class Alert:
    """A condition that may need staff, as routed by the engine."""

    id: str
    key: str
    kind: str
    room: str
    zone: str
    device: str
    priority: Priority
    critical: bool
    state: AlertState
    raised_at: float
    signal_id: str
    text: str
    count: int = 1
    accepted_by: str | None = None
    rule: str = ""  # the rule that decided its treatment ("" = defaults)
    step: int = 0  # escalation step reached; -1 while held or batched
    due: float | None = None  # next timer: hold-off end, escalation, or reminder
    group: str | None = None  # id of the alert this one is grouped into

    def with_state(self, state: AlertState, **changes: Any) -> Alert:  # noqa: ANN401 - field values
        """Return a copy in `state`, with any other fields changed."""
        # dataclasses.replace re-runs __init__ through keyword handling; the engine does this
        # several times per signal, so copy the slots directly (an unrolled copy, built below).
        new = _copy_alert(self)
        setattr_ = object.__setattr__
        setattr_(new, "state", state)
        for name, value in changes.items():
            if name not in _ALERT_FIELDS:
                raise TypeError(f"Alert has no field {name!r}")
            setattr_(new, name, value)
        return new


_ALERT_SLOTS = tuple(f.name for f in dataclasses.fields(Alert))
_ALERT_FIELDS = frozenset(_ALERT_SLOTS)


def _unrolled_copy(cls: type, slots: tuple[str, ...]) -> Callable[[Any], Any]:
    """A function copying every slot of a `cls` instance, one statement per slot.

    A loop of getattr calls cost twice as much; the source is built from the dataclass's own
    field names, so a new field is copied without anyone editing this.
    """
    body = "\n".join(f"    s(new, {n!r}, old.{n})" for n in slots)
    code = f"def copy(old):\n    new = new_(cls)\n    s = set_\n{body}\n    return new\n"
    scope: dict[str, Any] = {"new_": object.__new__, "set_": object.__setattr__, "cls": cls}
    exec(code, scope)  # noqa: S102 - source built from the dataclass's field names only
    copy: Callable[[Any], Any] = scope["copy"]
    return copy


_copy_alert: Callable[[Alert], Alert] = _unrolled_copy(Alert, _ALERT_SLOTS)


@dataclasses.dataclass(frozen=True, slots=True)
class Delivery:
    """One message for one handset about one alert."""

    alert_id: str
    handset: str
    seq: int
    action: str  # "ring" | "cancel" | "update"
    payload: Mapping[str, Any]
    state: DeliveryState = DeliveryState.QUEUED
    id: int | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Response:
    """A handset's answer to an alert."""

    handset: str
    alert_id: str
    kind: ResponseKind
    ts: float
    reason: str = ""
