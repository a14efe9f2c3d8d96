"""Frozen types that cross layer boundaries: signals in, alerts and deliveries out."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

_C = TypeVar("_C", bound=type)
# How long a QoS 1 redelivery's first copy is looked for: the broker redelivers what it sent
# on an earlier connection and never saw acknowledged.
DUP_WINDOW = 3600.0
_FACTORY = object()  # marks a field left to its default factory


def fast_init(cls: _C) -> _C:
    """Give a frozen, slotted dataclass an __init__ that stores through its slots' descriptors.

    The dataclass's own calls object.__setattr__(self, name, value) per field, which finds
    the slot's descriptor by name each time; calling the descriptor directly does the same
    store for 60 % of the cost. A signal builds about five of these; an Alert has 18 fields.
    Same parameters, defaults and default factories; a dataclass using anything else
    (__post_init__, InitVar, init=False, keyword-only fields) is refused.
    """
    fields = dataclasses.fields(cls)
    if hasattr(cls, "__post_init__") or any(f.kw_only or not f.init for f in fields):
        raise TypeError(f"fast_init does not handle {cls.__name__}")
    scope: dict[str, Any] = {"FACTORY": _FACTORY}
    params, body = [], []
    for f in fields:
        n = f.name
        scope[f"set_{n}"] = getattr(cls, n).__set__
        value = n
        if f.default is not dataclasses.MISSING:
            scope[f"default_{n}"] = f.default
            params.append(f"{n}=default_{n}")
        elif f.default_factory is not dataclasses.MISSING:
            scope[f"factory_{n}"] = f.default_factory
            params.append(f"{n}=FACTORY")
            value = f"factory_{n}() if {n} is FACTORY else {n}"
        else:
            params.append(n)
        body.append(f"    set_{n}(self, {value})")
    code = f"def __init__(self, {', '.join(params)}):\n" + "\n".join(body) + "\n"
    exec(code, scope)  # noqa: S102 - source built from the dataclass's field names only
    init = scope["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    init.__annotations__ = vars(cls)["__init__"].__annotations__  # for inspect.signature
    cls.__init__ = init  # type: ignore[misc]
    return cls


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


@fast_init
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


@fast_init
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
        # The engine does this several times per signal: fill a draft with plain stores
        # (see _drafts), not dataclasses.replace, which re-runs __init__ through keywords.
        new = _draft_alert(self)
        new.state = state
        for name, value in changes.items():
            if name not in _ALERT_FIELDS:
                raise TypeError(f"Alert has no field {name!r}")
            setattr(new, name, value)
        new.__class__ = Alert
        return new  # type: ignore[no-any-return]


_ALERT_FIELDS = frozenset(f.name for f in dataclasses.fields(Alert))


def _drafts(cls: type) -> Callable[[Any], Any]:
    """A function copying a `cls` instance into a draft that takes plain attribute stores.

    A frozen dataclass sets each field through object.__setattr__, five times the cost of a
    plain store: copying an Alert took 1.5 us. A draft is an instance of a plain class
    with `cls`'s __slots__; the caller changes what it needs, then sets `__class__` to
    `cls`, which Python allows between classes of the same __slots__ (the same layout).
    From then on it is a `cls` like any other, as frozen. The copy has one statement per
    slot (a loop of getattr calls cost twice as much), built from the dataclass's own field
    names, so a new field is copied without anyone editing this.
    """
    slots = tuple(f.name for f in dataclasses.fields(cls))
    draft = type(f"_{cls.__name__}Draft", (), {"__slots__": slots})
    body = "\n".join(f"    new.{n} = old.{n}" for n in slots)
    code = f"def copy(old):\n    new = draft_()\n{body}\n    return new\n"
    scope: dict[str, Any] = {"draft_": draft}
    exec(code, scope)  # noqa: S102 - source built from the dataclass's field names only
    copy: Callable[[Any], Any] = scope["copy"]
    return copy


_draft_alert = _drafts(Alert)


@fast_init
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

    def numbered(self, outbox_id: int) -> Delivery:
        """Return a copy with its outbox id (see _drafts)."""
        new = _draft_delivery(self)
        new.id = outbox_id
        new.__class__ = Delivery
        return new  # type: ignore[no-any-return]


_draft_delivery = _drafts(Delivery)


@dataclasses.dataclass(frozen=True, slots=True)
class Response:
    """A handset's answer to an alert."""

    handset: str
    alert_id: str
    kind: ResponseKind
    ts: float
    reason: str = ""
