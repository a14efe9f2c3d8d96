"""The pure routing engine: signals and handset responses in, alert changes and deliveries out.

No I/O and no clock reads: the caller passes `now`. The daemon, replay and rule tests all
drive this same class.
"""

from __future__ import annotations

import dataclasses
import itertools
import uuid
from collections.abc import Callable, Iterable

from gateway.config import Config
from gateway.model import (
    Alert,
    AlertState,
    Delivery,
    Response,
    ResponseKind,
    Signal,
    SignalState,
)


@dataclasses.dataclass(frozen=True, slots=True)
class Transition:
    """One entry of an alert's timeline, for the journal."""

    alert: Alert
    event: str
    ts: float
    detail: str = ""


@dataclasses.dataclass(slots=True)
class Outcome:
    """What the engine decided for one input."""

    transitions: list[Transition] = dataclasses.field(default_factory=list)
    deliveries: list[Delivery] = dataclasses.field(default_factory=list)
    rejected: str | None = None  # reason a response was refused
    merged: bool = False  # a signal merged into an active alert

    def extend(self, other: Outcome) -> None:
        """Append another outcome's results."""
        self.transitions.extend(other.transitions)
        self.deliveries.extend(other.deliveries)


def new_alert_id() -> str:
    """Return a fresh, globally unique alert id."""
    return uuid.uuid4().hex[:16]


@dataclasses.dataclass(slots=True)
class _Live:
    alert: Alert
    handsets: list[str]  # handsets rung, in order
    seq: itertools.count[int]


class Engine:
    """Routes signals to alerts and alerts to handsets for one config."""

    def __init__(self, config: Config, *, new_id: Callable[[], str] = new_alert_id) -> None:
        self._new_id = new_id
        self._live: dict[str, _Live] = {}  # by alert id
        self._by_key: dict[str, str] = {}  # alert key -> alert id
        self.config = config
        self._routes = self._compile_routes(config)

    def reconfigure(self, config: Config) -> None:
        """Swap in a new config; active alerts keep their state."""
        self.config = config
        self._routes = self._compile_routes(config)

    @property
    def active(self) -> list[Alert]:
        """Alerts that are not terminal."""
        return [live.alert for live in self._live.values()]

    def restore(self, alert: Alert, handsets: Iterable[str], last_seq: int) -> None:
        """Reload an active alert from the journal after a restart."""
        live = _Live(alert, list(handsets), itertools.count(last_seq + 1))
        self._live[alert.id] = live
        self._by_key[alert.key] = alert.id

    def handle_signal(self, signal: Signal, now: float) -> Outcome:
        """Decide what one signal means."""
        out = Outcome()
        if signal.state is SignalState.REPORT:
            return out
        key = f"{signal.device}:{signal.kind}"
        existing_id = self._by_key.get(key)
        if signal.state is SignalState.RAISED:
            if existing_id is not None:
                live = self._live[existing_id]
                alert = dataclasses.replace(live.alert, count=live.alert.count + 1)
                live.alert = alert
                out.transitions.append(Transition(alert, "repeated", now, signal.id))
                out.merged = True
                return out
            self._raise(signal, key, now, out)
            return out
        # CLEARED
        if existing_id is not None:
            self._finish(existing_id, AlertState.CLEARED, now, signal.id, out)
        return out

    def handle_response(self, response: Response, now: float) -> Outcome:
        """Apply a handset's accept, reject or resolve."""
        out = Outcome()
        live = self._live.get(response.alert_id)
        if live is None:
            out.rejected = "unknown_alert"
            return out
        if response.handset not in live.handsets:
            out.rejected = "not_delivered_to_handset"
            return out
        alert = live.alert
        if response.kind is ResponseKind.ACCEPT:
            if alert.state is AlertState.ACCEPTED:
                out.rejected = "already_accepted" if alert.accepted_by != response.handset else None
                return out
            alert = alert.with_state(AlertState.ACCEPTED, accepted_by=response.handset)
            live.alert = alert
            out.transitions.append(Transition(alert, "accepted", now, response.handset))
            for handset in live.handsets:
                out.deliveries.append(self._delivery(live, handset, "update", now))
        elif response.kind is ResponseKind.REJECT:
            out.transitions.append(
                Transition(alert, "rejected", now, f"{response.handset} {response.reason}".strip())
            )
        else:
            self._finish(alert.id, AlertState.RESOLVED, now, response.handset, out)
        return out

    def _compile_routes(
        self, config: Config
    ) -> list[tuple[frozenset[str], frozenset[str], tuple[str, ...]]]:
        return [(frozenset(r.kinds), frozenset(r.zones), r.handsets) for r in config.routing]

    def _targets(self, kind: str, zone: str, critical: bool) -> list[str]:
        """Handsets for an alert: first matching route; every matching route if critical."""
        out: list[str] = []
        for kinds, zones, handsets in self._routes:
            if ("*" in kinds or kind in kinds) and ("*" in zones or zone in zones):
                out.extend(h for h in handsets if h not in out)
                if not critical:
                    break
        return out

    def _raise(self, signal: Signal, key: str, now: float, out: Outcome) -> None:
        cfg = self.config
        kc = cfg.kind(signal.kind)
        zone = cfg.zone_of(signal.room)
        text = kc.text.format(
            kind=signal.kind, room=signal.room, device=signal.device, zone=zone, count=1
        )
        alert = Alert(
            id=self._new_id(),
            key=key,
            kind=signal.kind,
            room=signal.room,
            zone=zone,
            device=signal.device,
            priority=cfg.priority(signal.kind),
            critical=kc.critical,
            state=AlertState.ACTIVE,
            raised_at=now,
            signal_id=signal.id,
            text=text,
        )
        targets = self._targets(signal.kind, zone, kc.critical)
        live = _Live(alert, targets, itertools.count(1))
        out.transitions.append(Transition(alert, "raised", now, signal.id))
        if not targets:
            out.transitions.append(Transition(alert, "unrouted", now, "no route matches"))
        self._live[alert.id] = live
        self._by_key[key] = alert.id
        for handset in targets:
            out.deliveries.append(self._delivery(live, handset, "ring", now))

    def _finish(
        self, alert_id: str, state: AlertState, now: float, detail: str, out: Outcome
    ) -> None:
        live = self._live.pop(alert_id)
        if self._by_key.get(live.alert.key) == alert_id:
            del self._by_key[live.alert.key]
        alert = live.alert.with_state(state)
        live.alert = alert
        out.transitions.append(Transition(alert, state.value, now, detail))
        for handset in live.handsets:
            out.deliveries.append(self._delivery(live, handset, "cancel", now))

    def _delivery(self, live: _Live, handset: str, action: str, now: float) -> Delivery:
        alert = live.alert
        seq = next(live.seq)
        payload = {
            "type": action,
            "alert_id": alert.id,
            "seq": seq,
            "signal_id": alert.signal_id,
            "kind": alert.kind,
            "room": alert.room,
            "zone": alert.zone,
            "priority": alert.priority.name.lower(),
            "critical": alert.critical,
            "state": alert.state.value,
            "text": alert.text,
            "count": alert.count,
            "raised_at": alert.raised_at,
            "sent_at": now,
        }
        if alert.accepted_by:
            payload["accepted_by"] = alert.accepted_by
        return Delivery(alert_id=alert.id, handset=handset, seq=seq, action=action, payload=payload)
