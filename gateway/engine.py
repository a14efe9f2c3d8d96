"""The pure routing engine: signals, responses and time in; alert changes and deliveries out.

No I/O and no clock reads: every call takes `now` (epoch seconds). The daemon, `replay` and
`test-rules` all drive this same class, so what a technician replays is what runs at night.

Order of decisions for a raised signal: presence kinds mark rooms; repeats merge (dedup);
critical kinds skip every rule and ring the zone's whole on-duty team at once; otherwise the
first matching rule decides suppress / hold-off / grouping, then presence and inhibition may
mute it, then the escalation ladder rings step by step until someone accepts.
"""

from __future__ import annotations

import dataclasses
import hashlib
import heapq
import math
import secrets
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

from gateway.config import (
    Config,
    DeviceConfig,
    InhibitConfig,
    LadderConfig,
    RuleConfig,
    StepConfig,
)
from gateway.model import (
    Alert,
    AlertState,
    Delivery,
    Priority,
    Response,
    ResponseKind,
    Signal,
    SignalState,
    fast_init,
)
from gateway.schedule import Calendar

DEFAULT_LADDER = LadderConfig(
    steps=(StepConfig("zone", 90.0), StepConfig("all_on_duty", 90.0), StepConfig("failsafe", 90.0)),
    reminder=900.0,
)
SUPERVISION_PERIOD = 10.0
LAST_STEP_REPEAT = 5.0  # the last step rings again no faster than this, whatever its `after`
# One generation counter for the alert keys of devices not in config (ESPA addresses no
# device names): a babbling nurse-call system's random addresses must not grow a counter
# each, in memory and in the journal. No alert key can equal it: alert keys hold a colon.
_UNCONFIGURED = "*unconfigured"
# Each start numbers an alert's messages past start * SEQ_STRIDE (see `use_start`): one
# start's messages for one alert stay far below a million.
SEQ_STRIDE = 1_000_000


@fast_init
@dataclasses.dataclass(frozen=True, slots=True)
class Transition:
    """One entry of an alert's timeline, for the journal, metrics and load reports."""

    alert: Alert
    event: str
    ts: float
    detail: str = ""
    reason: str = ""


@dataclasses.dataclass(slots=True)
class Outcome:
    """What the engine decided for one input."""

    transitions: list[Transition] = dataclasses.field(default_factory=list)
    deliveries: list[Delivery] = dataclasses.field(default_factory=list)
    rejected: str | None = None  # why a response was refused

    def extend(self, other: Outcome) -> None:
        """Append another outcome's results."""
        self.transitions.extend(other.transitions)
        self.deliveries.extend(other.deliveries)


# Technical alarms behind which a person is waiting: never only in a digest.
_SOMEONE_CALLING = frozenset({"unknown_call_point"})
# Alarms about equipment that ring the night staff: staff in the room do not mend them (a
# visit resolved a dead epilepsy sensor's alarm for as long as the presence lasted).
_EQUIPMENT = frozenset({"safety_sensor_silent"})
# Alarms about who is missing: they never ring a handset whose app says it hears nothing.
_STAFFING = frozenset({"no_staff_on_duty", "handset_offline"})
# A dead safety sensor or who is missing rings at once, never in a rate-limit batch.
_NEVER_BATCHED = _EQUIPMENT | _STAFFING
# `accepted_by` of a critical alarm that staff presence stopped: "presence:<room>".
_PRESENCE = "presence:"
# Journal keys (levels table) of what the engine remembers beyond its alerts.
CONDITION_PREFIX = "engine:"
_ARMED_KEY = CONDITION_PREFIX + "armed:"
_SHORT_KEY = CONDITION_PREFIX + "short:"
_SEEN_KEY = CONDITION_PREFIX + "silent_for"  # device -> seconds unheard, for supervision
SEEN_SNAPSHOT_PERIOD = 300.0  # how often that is journaled: at most this much is forgotten
SHORT_EVENT = "hold_off_skipped"  # the timeline's mark of a ring a rule's `repeat` started
_PRESENT_KEY = CONDITION_PREFIX + "present:"
# When the last technical digest went out: a finished alert queued after it is still owed.
DIGEST_SENT_KEY = CONDITION_PREFIX + "digest_sent_at"


def _by_presence(alert: Alert) -> bool:
    return alert.accepted_by is not None and alert.accepted_by.startswith(_PRESENCE)


TEXT_LIMIT = 120
_SHORT_SWEEP = 4096  # keys with short raises before a sweep drops the expired ones
_TEXT_CACHE = 4096  # alert texts and routes kept formatted; past this they start again
_CONTROL = dict.fromkeys([*range(0x20), 0x7F, *range(0x80, 0xA0)], " ")


def safe_text(text: str, limit: int = TEXT_LIMIT) -> str:
    """Display text without control characters (they would break ESPA framing), length-capped."""
    cleaned = " ".join(text.translate(_CONTROL).split())
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"


class _Tracked(dict[str, Any]):
    """A dict that notes which of its keys changed, so only those are journaled."""

    def __init__(self, dirty: set[str], prefix: str) -> None:
        super().__init__()
        self._dirty = dirty
        self._prefix = prefix

    def __setitem__(self, key: str, value: Any) -> None:  # noqa: ANN401 - any value
        self._dirty.add(self._prefix + key)
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        self._dirty.add(self._prefix + key)
        super().__delitem__(key)

    def pop(self, key: str, *default: Any) -> Any:  # noqa: ANN401 - any value
        """Remove `key` (noting it) and return its value."""
        if key in self:  # every clear pops its key: one never set changes nothing to journal
            self._dirty.add(self._prefix + key)
        return super().pop(key, *default)


@dataclasses.dataclass(slots=True)
class _Live:
    _alert: Alert
    handsets: list[str]  # rung so far, in order
    seq: int  # last delivery sequence used for this alert
    ladder: LadderConfig
    timers: list[tuple[float, str]]  # the engine's deadline heap, fed when `due` changes
    members: list[str] = dataclasses.field(default_factory=list)  # when a group leader
    condition_cleared: bool = False  # leader whose own condition ended while members remain
    rejected_by: set[str] = dataclasses.field(default_factory=set)
    source: str | None = None  # its signal's source, for rules when it is raised again
    # Rejecters not rung and not accepting since their reject: a repeat of it is no news.
    declined: set[str] = dataclasses.field(default_factory=set)
    reminders: int = 0  # reminders sent since the accept, none answered (see `_remind`)
    # Handsets the current step rang: only their refusal moves the alert on at once.
    step_rung: list[str] = dataclasses.field(default_factory=list)
    # Handsets whose ring failed and that were not rung since: unreachable this round.
    failed: set[str] = dataclasses.field(default_factory=set)
    # Rung by a rule's `repeat` (restlessness): the pattern, not the bed, is the news, so
    # the resident back in bed does not end it before someone accepts (it latches).
    restless: bool = False
    # An assistance call (staff in the room pressed it): never batched by the rate limit.
    assistance: bool = False
    rang_at: float | None = None  # its first ring (a group window counts from it)
    # Handsets it waits for in a rate-limit batch and was never sent: they cannot answer it.
    unseen: set[str] = dataclasses.field(default_factory=set)

    def __post_init__(self) -> None:
        if self._alert.due is not None:
            heapq.heappush(self.timers, (self._alert.due, self._alert.id))

    @property
    def alert(self) -> Alert:
        """The alert as it stands."""
        return self._alert

    @alert.setter
    def alert(self, value: Alert) -> None:
        # A heap entry per new deadline; stale entries are skipped when popped.
        if value.due is not None and value.due != self._alert.due:
            heapq.heappush(self.timers, (value.due, value.id))
        self._alert = value


@dataclasses.dataclass(frozen=True, slots=True)
class _Rule:
    """A rule with its match precompiled into sets at config load."""

    cfg: RuleConfig
    kinds: frozenset[str]
    states: frozenset[str]
    devices: frozenset[str]
    rooms: frozenset[str]
    zones: frozenset[str]
    tags: frozenset[str]
    not_tags: frozenset[str]
    sources: frozenset[str]

    @classmethod
    def compile(cls, cfg: RuleConfig) -> _Rule:
        m = cfg.match
        return cls(
            cfg,
            frozenset(k for k in m.kinds if k != "*"),
            frozenset(m.states),
            frozenset(m.devices),
            frozenset(m.rooms),
            frozenset(m.zones),
            frozenset(m.tags),
            frozenset(m.not_tags),
            frozenset(m.sources),
        )


@dataclasses.dataclass(slots=True)
class _ReadBack:
    """What a restored alert's journaled timeline says beyond its row (see `_read_back`)."""

    rejected_by: set[str] = dataclasses.field(default_factory=set)
    # Rejecters not rung and not accepting since their reject.
    declined: set[str] = dataclasses.field(default_factory=set)
    step_rung: list[str] = dataclasses.field(default_factory=list)  # the latest "ringing"
    failed: set[str] = dataclasses.field(default_factory=set)  # failed rings not rung since
    reminders: int = 0  # since the last accept or reopen
    # Handsets with "batched" and no "batch_sent" since (insertion-ordered).
    batches: dict[str, None] = dataclasses.field(default_factory=dict)
    # Handsets sent it inside a batch: the outbox row carries the first alert's id only.
    batch_sent: dict[str, None] = dataclasses.field(default_factory=dict)
    restless: bool = False  # rung by a rule's `repeat`
    assistance: bool = False  # an assistance call
    rang_at: float | None = None  # its first "ringing"
    digest_since: float | None = None  # queued for a technical digest not sent since


# The detail of the "reopened" event an accepter's reject writes (see `_give_back`).
_GIVEN_BACK: Final = "rejected by "


def _read_back(timeline: Iterable[tuple[float, str, str]]) -> _ReadBack:
    """Read an alert's state back from the timeline this module writes, in one pass.

    A "rejected", "batched" or "batch_sent" event's detail starts with the handset (the
    journal appends the reason), a "ringing" event's detail ends in ": h1,h2", an
    "accepted" one is the handset. Handset ids hold no spaces, commas or parentheses
    (config checks them).
    """
    got = _ReadBack()
    for ts, event, detail in timeline:
        if event == "rejected":
            handset = detail.split(" ", 1)[0]
            got.rejected_by.add(handset)
            got.declined.add(handset)
        elif event == "ringing" and ": " in detail:
            if got.rang_at is None:
                got.rang_at = ts
            got.step_rung = [h for h in detail.rsplit(": ", 1)[1].split(",") if h]
            got.declined.difference_update(got.step_rung)
            got.failed.difference_update(got.step_rung)
        elif event == "delivery_failed":
            got.failed.add(detail.split(" ", 1)[0])
        elif event == "accepted":
            got.declined.discard(detail)
            got.reminders = 0
        elif event == "reopened":
            # Nobody's again: a new round, in which an earlier "busy" counts no more...
            got.reminders = 0
            got.rejected_by.clear()
            got.declined.clear()
            if detail.startswith(_GIVEN_BACK):
                # ...but the accepter's own "no" that reopened it (journaled before the
                # reopen) stands for this round, as `_give_back` keeps it.
                handset = detail.removeprefix(_GIVEN_BACK)
                got.rejected_by.add(handset)
                got.declined.add(handset)
        elif event == "attended":
            got.reminders = 0
        elif event == "reminder":
            got.reminders += 1
        elif event == "batched":
            got.batches[detail.split(" ", 1)[0]] = None
        elif event == "batch_sent":
            handset = detail.split(" ", 1)[0]
            got.batches.pop(handset, None)
            got.batch_sent[handset] = None
        elif event == SHORT_EVENT:
            got.restless = True
        elif event == "assistance":
            got.assistance = True
        elif event == "digest":
            got.digest_since = ts
        elif event == "digest_sent":
            got.digest_since = None
    return got


class Engine:
    """Routes signals to alerts and alerts to handsets for one config."""

    def __init__(
        self,
        config: Config,
        *,
        new_id: Callable[[], str] | None = None,
        now: float = 0.0,
        salt: str = "",
        unsupervised: frozenset[str] = frozenset(),
    ) -> None:
        # Alert ids are derived from (salt, key, generation) unless a test injects its own:
        # a signal redelivered after a crash then re-creates the *same* alert id, so a
        # handset drops the repeated ring by (alert_id, seq) instead of ringing twice.
        self._injected_id = new_id
        self._salt = salt
        self._seq_base = 0  # see use_start
        # In the ids of alerts raised by inputs nothing sends again: new with each start.
        self._nonce = secrets.token_hex(6)
        self._once = False  # the input being handled is one nothing will send again
        self._texts: dict[tuple[str, str, str, str, str, int], str] = {}
        self._generation: dict[str, int] = {}
        self._gen_dirty: set[str] = set()
        self._timers: list[tuple[float, str]] = []  # (due, alert id) heap, lazily cleaned
        self._live: dict[str, _Live] = {}  # by alert id
        self._by_key: dict[str, str] = {}  # alert key -> live alert id
        # Names of journaled conditions (armed keys, rooms with staff) changed since the last
        # changed_conditions(): it runs for every routed batch, so it looks at these only.
        self._cond_dirty: set[str] = set()
        self._present: dict[str, float] = _Tracked(self._cond_dirty, _PRESENT_KEY)
        # Old alerts `restore_late` ended as superseded: members coming back after them
        # leave their group.
        self._superseded_late: set[str] = set()
        # Keys `restore` brought back more than one open alert for (their ids, oldest
        # first): the next tick keeps one (see `_one_per_key`).
        self._doubled: dict[str, list[str]] = {}
        # Level conditions muted by staff presence or inhibition that are still active (bed
        # still empty), by alert key: raised afresh when the staff leave or the inhibiting
        # alert ends, so neither drops one for good.
        self._armed: dict[str, Alert] = _Tracked(self._cond_dirty, _ARMED_KEY)
        # Armed keys a schedule-bound rule suppressed (bed exit by day): raised afresh at the
        # next start or end of a rule's schedule, so the night rule sees a bed still empty.
        self._at_boundary: set[str] = set()
        self._boundary_due: float | None = None
        # armed key -> its signal's source
        self._armed_source: dict[str, str] = _Tracked(self._cond_dirty, _ARMED_KEY)
        # Alert key -> when its held alerts were cancelled by their own clear (a resident
        # back in bed within the hold-off), for rules with `repeat`. Journaled like the
        # conditions: a restart must not reset a restless night's count.
        self._short: dict[str, tuple[float, ...]] = _Tracked(self._cond_dirty, _SHORT_KEY)
        self._journaled_conditions: dict[str, Any] = {}  # as of the last changed_conditions()
        self._last_seen: dict[str, float] = {}  # device -> last signal of any kind
        self._silent: set[str] = set()  # devices flagged silent
        self._offline: set[str] = set()  # handsets whose app says it is not running
        self._offline_since: dict[str, float] = {}  # for each, when it said so
        # While any is offline: the end of the soonest grace (shift changes are timed apart).
        self._next_duty_check = math.inf
        # Devices a rule scenario does not simulate: their silence would be the scenario's.
        self._unsupervised = unsupervised
        self._ring_log: dict[str, deque[float]] = {}  # handset -> recent ring times
        self._batch: dict[str, list[str]] = {}  # handset -> alert ids waiting for a batch
        self._batch_due: dict[str, float] = {}
        # Technical alerts since the last digest: text -> id -> the alert (a flapping
        # sensor is one line with a count, not a line per flap). A finished alert keeps its
        # final state here, so the digest can mark it sent in the journal too.
        self._digest: dict[str, dict[str, Alert]] = {}
        self._digest_due: float | None = None
        self._digest_sent_at: float | None = None
        self._next_supervision = now + SUPERVISION_PERIOD
        self._next_seen_snapshot = now + SEEN_SNAPSHOT_PERIOD
        self._started = now
        self._now = now  # the latest time any input carried
        self.reconfigure(config)

    # -- configuration -------------------------------------------------------------------

    def reconfigure(self, config: Config, now: float | None = None) -> None:
        """Swap in a new config; active alerts keep their state, timers and handsets."""
        if now is not None:
            self._now = max(self._now, now)
        # A device a reload adds is supervised from the reload, not from the engine's start
        # (which would call a sensor installed hours later silent at once).
        for dev in config.devices:
            self._last_seen.setdefault(dev, self._now)
        for dev in [d for d in self._last_seen if d not in config.devices]:
            del self._last_seen[dev]  # removed: no longer supervised
        old = getattr(self, "config", None)
        if old is not None and config.inhibit != old.inhibit:
            # A condition an inhibition muted comes back when its inhibitor ends, under the
            # inhibit rules of that moment: one a reload no longer mutes would never ring.
            # Decided again at the next tick, as a reload does for rule-suppressed ones.
            for key, armed in self._armed.items():
                if armed.room not in self._present:
                    self._at_boundary.add(key)
                    self._cond_dirty.add(_ARMED_KEY + key)
        self.config = config
        self.calendar = Calendar(config)
        self._rules = [_Rule.compile(r) for r in config.rules]
        self._rules_by_name = {r.name: r for r in config.rules}
        # Short raises older than every rule's `repeat` window can count for nothing.
        self._short_horizon = max(
            (r.repeat.within for r in config.rules if r.repeat is not None), default=0.0
        )
        self._prune_short(self._now)
        self._rule_schedules = {r.match.schedule for r in config.rules if r.match.schedule}
        # Looked at once now (a restart or a reload may have crossed a shift change, or
        # changed the roster or the routing), then at every shift change.
        self._handover_due: float | None = None if config.roster is None else self._now
        # Alerts whose deadlines a clock step moved: the next tick journals them (their
        # timeline says so), or a restart would bring back the deadlines of the old clock.
        self._stepped: dict[str, float] = {}
        self._next_duty_check = self._now
        if self._at_boundary:
            self._boundary_due = self._now  # the next tick decides them under the new rules
        self._routes = [
            (frozenset(r.kinds), frozenset(r.zones), r.handsets) for r in config.routing
        ]
        self._routed_cache: dict[tuple[str, str, bool], tuple[str, ...]] = {}
        self._devices = config.devices
        digest_at = config.technical.digest_at
        if self._digest and digest_at != getattr(self, "_digest_at", digest_at):
            # Keep what is queued for the digest; only its time moves.
            self._digest_due = self.calendar.next_time(digest_at, self._now)
        self._digest_at = digest_at
        for live in self._live.values():
            live.ladder = self._ladder(live.alert.rule, critical=live.alert.critical)

    def _ladder(self, rule_name: str, *, critical: bool = False) -> LadderConfig:
        if critical and "critical" in self.config.escalation:
            return self.config.escalation["critical"]
        rule = self._rules_by_name.get(rule_name)
        name = rule.escalation if rule is not None and rule.escalation else "default"
        return self.config.escalation.get(name, DEFAULT_LADDER)

    # -- queries --------------------------------------------------------------------------

    @property
    def active_count(self) -> int:
        """How many alerts are not terminal."""
        return len(self._live)

    @property
    def active(self) -> list[Alert]:
        """Alerts that are not terminal."""
        return [live.alert for live in self._live.values()]

    def alert(self, alert_id: str) -> Alert | None:
        """The live alert with this id, if any."""
        live = self._live.get(alert_id)
        return live.alert if live else None

    def table_sizes(self) -> dict[str, int]:
        """Entries in the engine's per-device and per-key tables, for tests and diagnostics."""
        return {
            "last_seen": len(self._last_seen),
            "silent": len(self._silent),
            "generations": len(self._generation),
            "armed": len(self._armed),
            "present": len(self._present),
            "ring_log": len(self._ring_log),
            "batch": len(self._batch),
        }

    def next_deadline(self) -> float | None:
        """The earliest time `tick` has work to do."""
        timers = self._timers
        while timers and self._stale(*timers[0]):
            heapq.heappop(timers)
        dues = [timers[0][0]] if timers else []
        dues.extend(self._batch_due.values())
        dues.extend(self._present.values())
        if self._doubled:
            dues.append(self._now)
        if self._digest_due is not None:
            dues.append(self._digest_due)
        if self._boundary_due is not None:
            dues.append(self._boundary_due)
        if self._handover_due is not None:
            dues.append(self._handover_due)
        if self._supervised():
            dues.append(self._next_supervision)
        if self._offline and self._next_duty_check < math.inf:
            dues.append(self._next_duty_check)
        return min(dues) if dues else None

    def team(self, kind: str, zone: str, now: float) -> list[str]:
        """Handsets on duty for a zone (primary first), from the roster or static routing."""
        roster = self.config.roster
        if roster is not None:
            for ov in roster.overrides:
                if ov.zone == zone and self.calendar.within(ov, now):
                    return list(ov.handsets)
            for shift in roster.shifts:
                if zone in shift.assign and self.calendar.active(shift.schedule, now):
                    return list(shift.assign[zone])
            if self._routes:
                return self._routed(kind, zone, first_only=True)
            return []
        return self._routed(kind, zone, first_only=True)

    def on_duty(self, kind: str, now: float) -> list[str]:
        """Every handset on duty anywhere."""
        out: list[str] = []
        zones = list(self.config.zones) or [""]
        for zone in zones:
            out.extend(h for h in self.team(kind, zone, now) if h not in out)
        if not out:
            out.extend(h for h in self._routed(kind, "", first_only=False) if h not in out)
        return out

    def _routed(self, kind: str, zone: str, *, first_only: bool) -> list[str]:
        # Asked twice per ring step, and the answer only changes with the config.
        key = (kind, zone, first_only)
        found = self._routed_cache.get(key)
        if found is None:
            out: list[str] = []
            for kinds, zones, handsets in self._routes:
                if ("*" in kinds or kind in kinds) and ("*" in zones or zone in zones or not zone):
                    out.extend(h for h in handsets if h not in out)
                    if first_only:
                        break
            if len(self._routed_cache) > _TEXT_CACHE:
                self._routed_cache.clear()
            found = self._routed_cache[key] = tuple(out)
        return list(found)

    def _failsafe(self, kind: str, now: float) -> list[str]:
        roster = self.config.roster
        group = list(roster.failsafe) if roster is not None else []
        on_duty = self.on_duty(kind, now)
        return [*on_duty, *(h for h in group if h not in on_duty)]

    def _stale(self, due: float, alert_id: str) -> bool:
        live = self._live.get(alert_id)
        return live is None or live.alert.due != due

    def _next_id(self, key: str, *, configured: bool = True, signal_id: str | None = None) -> str:
        """A new alert id for `key`; `configured`: its device is one the config names.

        `signal_id`: the signal that raised it. A redelivery keeps its id (MQTT packet id
        and bytes), so it re-creates the alert; another press, after a crash lost the
        first one's uncommitted generation, does not, and is not dropped as a repeat.
        """
        if self._injected_id is not None:
            return self._injected_id()
        counter = key if configured else _UNCONFIGURED
        gen = self._generation.get(counter, 0) + 1
        self._generation[counter] = gen
        self._gen_dirty.add(counter)
        # The key stays in the digest, so a shared count still gives each key its own ids;
        # "*" keeps them apart from a per-key count an older journal holds for the key.
        mark = "" if configured else "*"
        text = f"{self._salt}|{key}|{mark}{gen}"
        if signal_id is not None:
            text += f"|{signal_id}"
        if self._once:
            # Nothing sends this input again (QoS 0, an ESPA call): an identical press
            # after a restart is a new call and must get an id of its own.
            text += f"|{self._nonce}"
        return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()

    def use_salt(self, salt: str) -> None:
        """Set the installation's salt for derived alert ids (kept in the journal)."""
        self._salt = salt

    def use_start(self, start: int) -> None:
        """Number this start of the daemon (journaled, one more each start) for seqs.

        Handset messages leave before their commit, so an earlier start may have sent a
        restored alert seqs past its journaled one: its messages now go past `start *
        SEQ_STRIDE`, so a handset never drops a cancel as a repeat. So do a new alert's
        after those of its raise, which a redelivery re-creates (see `_raise`).
        """
        self._seq_base = start * SEQ_STRIDE

    def restore_generations(self, generations: Mapping[str, int]) -> None:
        """Reload how many alerts each key has had (persisted with each batch)."""
        self._generation.update(generations)

    def changed_generations(self) -> dict[str, int]:
        """Generations changed since the last call, to journal with the batch."""
        if not self._gen_dirty:
            return {}
        out = {k: self._generation[k] for k in self._gen_dirty}
        self._gen_dirty.clear()
        return out

    def changed_conditions(self) -> dict[str, Any]:
        """Muted conditions and staff presence changed since the last call, to journal.

        A bed still empty that presence, an inhibition or a day rule muted comes back when
        that ends; a restart in between must not forget it, or it never rings: the sensor's
        level was journaled, so no new edge comes either. Removed entries map to None.
        """
        if not self._cond_dirty:
            return {}
        changed: dict[str, Any] = {}
        journaled = self._journaled_conditions
        for name in self._cond_dirty:
            value = self._condition(name)
            if journaled.get(name) != value:
                changed[name] = value
                if value is None:
                    del journaled[name]
                else:
                    journaled[name] = value
        self._cond_dirty.clear()
        return changed

    def _condition(self, name: str) -> Any:  # noqa: ANN401 - a JSON value
        """The journaled form of one condition, None when there is none."""
        if name.startswith(_PRESENT_KEY):
            return self._present.get(name[len(_PRESENT_KEY) :])
        if name == _SEEN_KEY:
            return self._silent_for()
        if name == DIGEST_SENT_KEY:
            return self._digest_sent_at
        if name.startswith(_SHORT_KEY):
            times = self._short.get(name[len(_SHORT_KEY) :])
            return None if times is None else list(times)
        key = name[len(_ARMED_KEY) :]
        a = self._armed.get(key)
        if a is None:
            return None
        return {
            "id": a.id,
            "kind": a.kind,
            "room": a.room,
            "zone": a.zone,
            "device": a.device,
            "priority": a.priority.value,
            "critical": a.critical,
            "raised_at": a.raised_at,
            "signal_id": a.signal_id,
            "text": a.text,
            "rule": a.rule,
            "source": self._armed_source.get(key),
            "boundary": key in self._at_boundary,
        }

    def restore_conditions(self, saved: Mapping[str, Any]) -> None:
        """Reload what `changed_conditions` journaled; conditions of removed devices lapse.

        Conditions a schedule-bound rule muted are decided again at the next tick: a rule's
        schedule may have started or ended while the daemon was down.
        """
        for name, value in saved.items():
            if value is None:
                continue
            if name.startswith(_PRESENT_KEY) and isinstance(value, int | float):
                self._present[name[len(_PRESENT_KEY) :]] = float(value)
            elif name == _SEEN_KEY and isinstance(value, dict):
                # Silence heard before the restart still counts; the time the daemon was
                # down does not (it heard nothing, which is no evidence of a dead sensor).
                for dev, silent_for in value.items():
                    if dev in self._devices and isinstance(silent_for, int | float):
                        self._last_seen[dev] = min(
                            self._last_seen.get(dev, self._now), self._now - float(silent_for)
                        )
            elif name == DIGEST_SENT_KEY and isinstance(value, int | float):
                self._digest_sent_at = float(value)
            elif name.startswith(_SHORT_KEY) and isinstance(value, list):
                times = tuple(float(t) for t in value if isinstance(t, int | float))
                if times:
                    self._short[name[len(_SHORT_KEY) :]] = times
            elif name.startswith(_ARMED_KEY) and isinstance(value, dict):
                key = name[len(_ARMED_KEY) :]
                try:
                    alert = Alert(
                        id=str(value["id"]),
                        key=key,
                        kind=str(value["kind"]),
                        room=str(value["room"]),
                        zone=str(value["zone"]),
                        device=str(value["device"]),
                        priority=Priority(value["priority"]),
                        critical=bool(value["critical"]),
                        state=AlertState.RESOLVED,
                        raised_at=float(value["raised_at"]),
                        signal_id=str(value["signal_id"]),
                        text=str(value["text"]),
                        rule=str(value["rule"]),
                    )
                except (KeyError, TypeError, ValueError):
                    continue  # written by another version: a lost mute beats a crash loop
                if alert.device not in self._devices:
                    continue
                self._armed[key] = alert
                if value.get("source") is not None:
                    self._armed_source[key] = str(value["source"])
                if value.get("boundary"):
                    self._at_boundary.add(key)
                    self._boundary_due = self._now
        self._prune_short(self._now)
        self.changed_conditions()  # what was just restored is journaled already
        if self._digest_sent_at is None:
            # A journal from before digests were marked on finished alerts: what it queued
            # is taken as sent, so nothing goes out twice; from now on it is exact.
            self._digest_sent_at = self._now
            self._cond_dirty.add(DIGEST_SENT_KEY)

    @property
    def last_digest(self) -> float | None:
        """When the last technical digest went out (as restored), None before any."""
        return self._digest_sent_at

    def restore_finished(self, alert: Alert, timeline: Iterable[tuple[float, str, str]]) -> None:
        """Queue a technical alert that finished before a restart but is still owed a digest.

        A battery low that cleared at 02:00 and a restart at 03:00: the technician must still
        read it at 07:30. Its timeline says `digest` without a later `digest_sent`.
        """
        since = _read_back(timeline).digest_since
        if since is None or not alert.state.terminal:
            return
        if self._digest_sent_at is not None and since < self._digest_sent_at:
            return  # a digest before the restart listed it (journaled before the marks)
        self._queue_digest(alert, since)

    # -- inputs ---------------------------------------------------------------------------

    def restore(
        self,
        alert: Alert,
        handsets: Iterable[str],
        last_seq: int,
        *,
        condition_cleared: bool = False,
        source: str | None = None,
        timeline: Iterable[tuple[float, str, str]] = (),
    ) -> None:
        """Reload an active alert from the journal after a restart; its timer resumes.

        `condition_cleared`: a group leader whose own condition ended while members remain
        (its timeline has `condition_cleared`): it ends with its last member, and a new
        raise of its key is a new alert. `source` is its signal's, for rules matching on
        `sources` when presence or an inhibition brings the condition back. `timeline` is
        its journaled (ts, event, detail) events, oldest first: who said no, which
        handsets the current step rang, how many reminders went unanswered since the
        accept and which rate-limit batches it still waited in come back from it.
        """
        seq = last_seq
        if self._seq_base:
            # Past what an earlier start may have sent without committing (see use_start):
            # this start's range, or beyond an alert's own seqs if it ran into that range
            # (a sensor chattering all night past SEQ_STRIDE messages).
            seq = self._seq_base if last_seq < self._seq_base else last_seq + SEQ_STRIDE
        got = _read_back(timeline)
        shown = list(handsets)
        shown += [h for h in got.batch_sent if h not in shown]
        live = _Live(
            alert,
            shown,
            seq,
            self._ladder(alert.rule, critical=alert.critical),
            self._timers,
        )
        live.rejected_by, live.declined, live.step_rung, live.failed = (
            got.rejected_by,
            got.declined,
            got.step_rung,
            got.failed,
        )
        live.restless = got.restless
        live.assistance = got.assistance
        live.rang_at = got.rang_at
        if got.digest_since is not None and alert.state is AlertState.ACTIVE:
            # Queued for a digest a restart cut short: it still goes out, at once if its
            # time passed while the daemon was down (the technician was never told).
            self._queue_digest(alert, got.digest_since)
        if alert.state is AlertState.ACCEPTED:
            live.reminders = got.reminders
        elif alert.state is AlertState.ACTIVE:
            # Batches live in memory only: one a restart cut short goes out at the first
            # tick, or the handset would never hear of the alert until it escalated.
            for handset in got.batches:
                if handset not in self.config.handsets:
                    continue
                if handset not in live.handsets:
                    live.handsets.append(handset)
                    live.unseen.add(handset)
                batch = self._batch.setdefault(handset, [])
                if alert.id not in batch:
                    batch.append(alert.id)
                self._batch_due.setdefault(handset, self._now)
        live.source = source
        self._live[alert.id] = live
        if condition_cleared:
            live.condition_cleared = True
        else:
            prior = self._by_key.get(alert.key)
            if prior is not None and prior != alert.id:
                # An older journal holds the condition twice (see `_one_per_key`).
                self._doubled.setdefault(alert.key, [prior]).append(alert.id)
            self._by_key[alert.key] = alert.id
            if alert.key == f"{alert.device}:silent":
                # Flagged before the restart: the sensor's next report clears it, and
                # supervision does not raise it a second time meanwhile.
                self._silent.add(alert.device)
        if alert.group is not None and alert.group in self._live:
            self._live[alert.group].members.append(alert.id)
        elif alert.group is None:
            # Alerts come back in the order they were raised, and a held alert joins its
            # group only when its hold-off ends: its leader may come back after it.
            live.members.extend(
                other.alert.id for other in self._live.values() if other.alert.group == alert.id
            )

    def restore_late(
        self,
        alert: Alert,
        handsets: Iterable[str],
        last_seq: int,
        now: float,
        *,
        condition_cleared: bool = False,
        source: str | None = None,
        timeline: Iterable[tuple[float, str, str]] = (),
    ) -> Outcome:
        """Bring back an alert the journal held open but could not show at start-up.

        It comes back as `restore` brings it back, unless its key has a live alert: that
        is the same condition, raised again while the journal could not be read. The one
        further along is kept: the newer one, unless it is still held (a ringing alarm
        must not fall silent for a replay's hold-off). The other ends (`superseded`) and
        its handsets are told; calls grouped under an old leader that ends ring on their
        own. A kept alert that was ringing rings its current step again, in place of
        the file's queued messages for it (the gateway cancels those, and sends the
        queued messages of alerts this tells nothing).
        """
        out = Outcome()
        self._now = max(self._now, now)
        if alert.id in self._live:
            return out
        newer_id = None if condition_cleared else self._by_key.get(alert.key)
        self.restore(
            alert,
            handsets,
            last_seq,
            condition_cleared=condition_cleared,
            source=source,
            timeline=timeline,
        )
        live = self._live[alert.id]
        newer = None if newer_id is None else self._live.get(newer_id)
        if newer is not None and newer.alert.state is not AlertState.HELD:
            self._by_key[alert.key] = newer.alert.id
            self._superseded_late.add(alert.id)
            released = self._ungroup(live, now, out, f"leader {alert.id} superseded")
            self._finish(
                live, AlertState.CLEARED, now, f"by {newer.alert.id}", out, reason="superseded"
            )
            for member in released:
                self._activate(member, now, out)
            return out
        if newer is not None:
            self._finish(
                newer, AlertState.CANCELLED, now, f"by {alert.id}", out, reason="superseded"
            )
        if alert.group in self._superseded_late:
            # Its leader ended above (superseded) before it came back: it rings on its own.
            self._leave_group(live, now, out, f"leader {alert.group} superseded")
            self._activate(live, now, out)
        elif alert.group is not None and (leader := self._live.get(alert.group)) is not None:
            # Back after its leader, which rang (or showed) without it: show the group whole.
            for h in self._shown(leader):
                out.deliveries.append(self._delivery(leader, h, "update", now))
        elif live.alert.state is AlertState.ACTIVE and live.alert.group is None:
            ringing = [h for h in live.step_rung or live.handsets if h in self.config.handsets]
            if ringing:
                out.transitions.append(
                    Transition(
                        live.alert,
                        "ringing",
                        now,
                        f"again, journal opened late: {','.join(ringing)}",
                    )
                )
                live.step_rung = ringing
                for h in ringing:
                    self._ring(live, h, now, out, rate_limited=False)
        return out

    def _one_per_key(self, now: float, out: Outcome) -> None:
        """End all but one of the open alerts `restore` brought back for one key.

        A journal an alertgw before 2026-11-25 opened late, or a crash between a late
        open's commits, holds a condition raised again meanwhile twice. Both rang on, and
        the key named only the newer: the sensor's clear ended that one, and the other
        escalated and reminded until someone resolved it by hand. As `restore_late`
        decides, the newest is kept unless it is still held (a ringing alarm must not fall
        silent for a hold-off); the others end, superseded, their handsets told, and calls
        grouped under one that ends ring on their own.
        """
        doubled, self._doubled = self._doubled, {}
        for key, ids in doubled.items():
            lives = [
                live
                for i in ids
                if (live := self._live.get(i)) is not None and not live.condition_cleared
            ]
            if len(lives) < 2:
                continue  # a late open decided already
            ringing = [live for live in lives if live.alert.state is not AlertState.HELD]
            keep = ringing[-1] if ringing else lives[0]
            self._by_key[key] = keep.alert.id
            for live in lives:
                if live is keep:
                    continue
                released = self._ungroup(live, now, out, f"leader {live.alert.id} superseded")
                state = (
                    AlertState.CANCELLED
                    if live.alert.state is AlertState.HELD
                    else AlertState.CLEARED
                )
                self._finish(live, state, now, f"by {keep.alert.id}", out, reason="superseded")
                for member in released:
                    self._activate(member, now, out)

    def _ungroup(self, leader: _Live, now: float, out: Outcome, detail: str) -> list[_Live]:
        """Take `leader`'s members out of its group, before it ends for a reason of its own."""
        released = [self._live[m] for m in leader.members if m in self._live]
        for member in released:
            self._leave_group(member, now, out, detail)
        leader.members = []
        return released

    @staticmethod
    def _leave_group(member: _Live, now: float, out: Outcome, detail: str) -> None:
        """A member on its own again: open, and nobody's until it rings (`_activate`)."""
        member.alert = member.alert.with_state(AlertState.ACTIVE, group=None, accepted_by=None)
        out.transitions.append(Transition(member.alert, "ungrouped", now, detail))

    def handset_status(self, handset: str, online: bool, now: float) -> Outcome:
        """A handset app said it stopped or runs again (its retained status, or its will).

        Its rings still go out (the broker keeps them for the app), but count as failed at
        once: a phone with a flat battery must not hold a call for a step's whole timeout.
        An on-duty or failsafe handset going offline rings the failsafe group and whoever
        is on duty until it is back.
        """
        out = Outcome()
        self._now = now
        key = f"handset:{handset}:offline"
        if online:
            self._offline.discard(handset)
            self._offline_since.pop(handset, None)
            self._clear_key(key, now, "back online", out)
            return out
        if handset in self._offline:
            return out
        self._offline.add(handset)
        self._offline_since[handset] = now
        for live in list(self._live.values()):
            if live.alert.state is AlertState.ACTIVE and handset in live.step_rung:
                self._offline_ring(live, handset, now, out)
        if key not in self._by_key and self._relied_on(handset, now):
            grace = self._offline_grace(handset)
            if grace > 0:
                # Back within the grace (an app reconnecting): no alarm; see _offline_duty.
                self._next_duty_check = min(self._next_duty_check, now + grace)
            else:
                self._handset_offline_alarm(handset, key, now, out)
        self._offline_rings(out, now)
        return out

    def _offline_grace(self, handset: str) -> float:
        hc = self.config.handsets.get(handset)
        return hc.offline_grace if hc is not None else 0.0

    def _relied_on(self, handset: str, now: float) -> bool:
        """On duty anywhere, or in the failsafe group (which every ladder ends at)."""
        roster = self.config.roster
        if roster is not None and handset in roster.failsafe:
            return True
        kinds = {dc.kind for dc in self._devices.values()} or {"pull_cord"}
        return any(handset in self.on_duty(k, now) for k in kinds)

    def _offline_duty(self, now: float, out: Outcome) -> None:
        """An offline handset's grace ended or its shift started (alarm), or its shift ended
        (its alarm is moot). The caller set the next check; a grace ending sooner moves it."""
        for handset in sorted(self._offline):
            key = f"handset:{handset}:offline"
            on_duty = self._relied_on(handset, now)
            if on_duty and key not in self._by_key:
                due = self._offline_since.get(handset, now) + self._offline_grace(handset)
                if due <= now:
                    self._handset_offline_alarm(handset, key, now, out)
                else:
                    self._next_duty_check = min(self._next_duty_check, due)
            elif not on_duty and key in self._by_key:
                self._clear_key(key, now, "off duty", out)

    def _offline_rings(self, out: Outcome, now: float) -> None:
        """Count the rings in `out` to handsets whose app is offline as failed.

        Those that move an alert on ring others, which are looked at too; the last step
        is never left this way (it rings its people again at its own pace).
        """
        i = 0
        while i < len(out.deliveries):
            d = out.deliveries[i]
            i += 1
            if d.action in ("ring", "batch") and d.handset in self._offline:
                live = self._live.get(d.alert_id)
                if live is not None and live.alert.state is AlertState.ACTIVE:
                    self._offline_ring(live, d.handset, now, out)

    def _offline_ring(self, live: _Live, handset: str, now: float, out: Outcome) -> None:
        if handset in live.failed:
            return
        live.failed.add(handset)
        out.transitions.append(
            Transition(live.alert, "delivery_failed", now, handset, "handset offline")
        )
        last = live.alert.step >= len(live.ladder.steps) - 1
        if not last and self._step_refused(live, handset):
            self._give_back(live, handset, now, out, why="delivery_failed")

    def _handset_offline_alarm(self, handset: str, key: str, now: float, out: Outcome) -> None:
        """Tell the failsafe group and the others on duty that `handset` hears nothing."""
        self._staffing_alarm(
            key,
            "handset_offline",
            now,
            out,
            device=handset,
            zone="",
            signal_id=f"offline-{handset}-{int(now)}",
            detail=handset,
        )

    def handle_signal(self, signal: Signal, now: float, *, once: bool = False) -> Outcome:
        """Decide what one signal means; `once`: nothing sends its input again."""
        self._once = once
        try:
            out = self._handle_signal(signal, now)
        finally:
            self._once = False
        if self._offline:
            self._offline_rings(out, now)
        return out

    def _handle_signal(self, signal: Signal, now: float) -> Outcome:
        out = Outcome()
        self._now = now
        gone = signal.kind == "device_offline" and signal.state is SignalState.RAISED
        if gone:
            # The bridge saying a sensor is gone is no sign of life, nor the end of its
            # silence alarm; a safety sensor gone is that alarm, now (not at supervision's).
            dc = self._devices.get(signal.device)
            if (
                dc is not None
                and signal.device not in self._silent
                and self.config.kind(dc.kind).critical
            ):
                last = self._last_seen.get(signal.device, self._started)
                self._flag_silent(signal.device, dc, now, out, last)
        elif signal.device in self._devices:  # only they are supervised: no table of strangers
            self._last_seen[signal.device] = now
        if signal.device in self._silent and not gone:
            self._silent.discard(signal.device)
            # Presence may have armed the silence alarm to come back when staff leave; the
            # sensor reports again, so there is nothing to come back.
            self._armed.pop(f"{signal.device}:silent", None)
            self._clear_key(f"{signal.device}:silent", now, "reporting again", out)
        if signal.state is SignalState.REPORT:
            return out
        kc = self.config.kind(signal.kind)
        if kc.role == "presence":
            self._presence(signal, now, out)
            return out
        key = f"{signal.device}:{signal.kind}"
        if signal.state is SignalState.CLEARED:
            self._armed.pop(key, None)
            self._armed_source.pop(key, None)
            self._clear_key(key, now, signal.id, out)
            return out
        existing = self._by_key.get(key)
        if existing is not None:
            self._repeat(self._live[existing], signal, now, out)
            return out
        self._raise(signal, key, now, out)
        return out

    def handle_response(self, response: Response, now: float) -> Outcome:
        """Apply a handset's accept, reject or resolve."""
        out = self._handle_response(response, now)
        if self._offline:
            self._offline_rings(out, now)
        return out

    def _handle_response(self, response: Response, now: float) -> Outcome:
        out = Outcome()
        live = self._live.get(response.alert_id)
        if live is None:
            out.rejected = "unknown_alert"
            return out
        if response.handset not in live.handsets or response.handset in live.unseen:
            out.rejected = "not_delivered_to_handset"
            return out
        leader = None if live.alert.group is None else self._live.get(live.alert.group)
        if (
            leader is not None
            and response.kind is not ResponseKind.RESOLVE
            and response.handset in leader.handsets
        ):
            # A tap on one line of a grouped message (its member's id): the nurse takes or
            # gives back the room's group, which rings and escalates as one.
            live = leader
        alert = live.alert
        if response.kind is ResponseKind.ACCEPT:
            if alert.state is AlertState.ACCEPTED and not _by_presence(alert):
                if alert.accepted_by != response.handset:
                    out.rejected = "already_accepted"
                elif live.reminders:
                    if live.ladder.reminder > 0:
                        due = now + live.ladder.reminder
                        live.alert = alert.with_state(AlertState.ACCEPTED, due=due)
                    self._attended(live, now, out, "accepted", response.handset, reason="reminder")
                    # Her phone (or pager) rings the reminder until it hears the alert is
                    # hers: tell it, as the first accept did.
                    out.deliveries.append(self._delivery(live, response.handset, "update", now))
                return out
            # A handset may take over a critical alarm that staff presence stopped.
            self._accept(live, response.handset, now, out)
            detail = f"accepted by {response.handset}"
            for member_id in list(live.members):
                member = self._live.get(member_id)
                if member is not None and member.condition_cleared:
                    # A latched member: no clear of its key will come to end it. Its last
                    # one out takes a leader whose own condition ended with it (_finish).
                    self._finish(member, AlertState.CLEARED, now, detail, out)
            if live.condition_cleared and not live.members and live.alert.id in self._live:
                # A latched alarm whose condition had ended: the acknowledgement ends it,
                # as the accepter's own condition clearing would have.
                self._finish(live, AlertState.CLEARED, now, detail, out)
            elif self.config.roster is not None and live.alert.id in self._live:
                # Tapped by a nurse whose shift has ended (an accept at 07:00:10): the shift
                # change passed, so only now can the call go to the staff on duty.
                self._shift_change(now, out, room=live.alert.room)
        elif response.kind is ResponseKind.REJECT:
            if response.handset in live.declined:
                # Declined and neither rung nor accepting since: a broker redelivery of the
                # same answer (acked only after its commit) or a double tap, not news.
                return out
            if (
                alert.state is AlertState.ACCEPTED
                and alert.accepted_by != response.handset
                and not _by_presence(alert)
            ):
                # A late "busy" on an alert a colleague took: moot, and it must not keep
                # this handset from the alert if it is ever nobody's again.
                out.rejected = "already_accepted"
                return out
            live.declined.add(response.handset)
            live.rejected_by.add(response.handset)
            out.transitions.append(
                Transition(alert, "rejected", now, response.handset, response.reason)
            )
            # The accepter's no gives the alert back; anyone else's moves it on only when
            # it completes the current step's refusal. Otherwise it is noted (that handset
            # is skipped from now on) and moves nothing: a late no from an earlier step must
            # not take the current step's time away, nor one no the others' chance.
            handset = response.handset
            gives_back = alert.state is AlertState.ACCEPTED and alert.accepted_by == handset
            if gives_back or self._step_refused(live, handset):
                self._give_back(live, handset, now, out, why="rejected")
        else:
            self._finish(live, AlertState.RESOLVED, now, response.handset, out)
        return out

    def handle_delivery_failed(
        self, handset: str, alert_id: str, now: float, *, why: str = "", action: str = "ring"
    ) -> Outcome:
        """A channel reported that a handset could not be reached: move the alert on, if
        nobody else the current step rang can take it.

        Unlike a reject this does not exclude the handset: a paging transmitter that failed
        once is rung again at the last step, when it may well work again. `why` goes into
        the timeline (e.g. "refused", or a paging system's fault). As for a reject, one
        failed ring among a step's handsets leaves the others their time: the alert moves
        on when the step's last handset said no or could not be reached, or at `after`.

        Only a ring (or batch) moves the alert: a refused `update` (the confirmation of an
        accept) is only noted as "update_failed". The accepter is on her way; her next
        reminder is a ring, and its refusal reopens the call then.
        """
        out = Outcome()
        live = self._live.get(alert_id)
        if live is None or handset not in live.handsets:
            return out
        if action not in ("ring", "batch"):
            out.transitions.append(Transition(live.alert, f"{action}_failed", now, handset, why))
            return out
        live.failed.add(handset)
        out.transitions.append(Transition(live.alert, "delivery_failed", now, handset, why))
        alert = live.alert
        gives_back = alert.state is AlertState.ACCEPTED and alert.accepted_by == handset
        # The last step is not left this way: it rings its people again at its own pace
        # (at least LAST_STEP_REPEAT). Ringing it again on every failure rang the handsets
        # that work as fast as a faulty transmitter reported the others.
        last = alert.step >= len(live.ladder.steps) - 1
        if gives_back or (not last and self._step_refused(live, handset)):
            self._give_back(live, handset, now, out, why="delivery_failed")
        return out

    @staticmethod
    def _step_refused(live: _Live, handset: str) -> bool:
        """`handset` was rung at the current step and everyone rung there has now said no
        (or could not be reached).

        An alert restored without a "ringing" event (an unknown call point, a no-staff
        alarm an older alertgw journaled) counts every handset it rang as its current step.
        """
        rung = live.step_rung or live.handsets
        out = live.declined | live.failed
        return handset in rung and all(h in out for h in rung)

    def _give_back(self, live: _Live, handset: str, now: float, out: Outcome, *, why: str) -> None:
        """`handset` cannot take the alert: ring the next step (reopening it if they had it)."""
        alert = live.alert
        if alert.state is AlertState.ACCEPTED and alert.accepted_by == handset:
            # The accepter can't go after all: the alert is open again and moves on, and
            # every handset still showing it taken is told it is open (or rung anew).
            self._reopen(
                live,
                now,
                out,
                f"{_GIVEN_BACK}{handset}" if why == "rejected" else f"{why} by {handset}",
            )
            if why == "rejected":
                # Her own "no" stands for this round (the reopen forgot earlier ones): she is
                # not rung again at once with the call she just handed back.
                live.rejected_by.add(handset)
                live.declined.add(handset)
            start = len(out.deliveries)
            self._escalate(live, now, out, why=why)
            self._tell_open(live, start, now, out)
        elif alert.state is AlertState.ACTIVE:
            self._escalate(live, now, out, why=why)

    def _reopen(self, live: _Live, now: float, out: Outcome, detail: str) -> None:
        """An accepted alert (and its group members) is nobody's again."""
        live.alert = live.alert.with_state(AlertState.ACTIVE, accepted_by=None)
        live.reminders = 0
        # A "busy" was an answer to the round just ended, not a standing refusal: the
        # nurse of the resident's own wing must hear the alert that came back to nobody.
        live.rejected_by.clear()
        live.declined.clear()
        out.transitions.append(Transition(live.alert, "reopened", now, detail))
        for member_id in live.members:
            member = self._live.get(member_id)
            if member is not None:
                member.alert = member.alert.with_state(AlertState.ACTIVE, accepted_by=None)

    def note(self, alert_id: str, event: str, detail: str, now: float) -> Outcome:
        """Record a timeline event for a live alert (e.g. a channel's `delivered`)."""
        out = Outcome()
        live = self._live.get(alert_id)
        if live is not None:
            out.transitions.append(Transition(live.alert, event, now, detail))
        return out

    def shift(self, delta: float) -> None:
        """The wall clock was stepped by `delta` s: move every elapsed-time deadline with it.

        Hold-offs, escalation and reminders, presence, rate-limit windows, group windows and
        sensor supervision measure elapsed seconds, so an NTP correction or a restored RTC
        must neither stall them by the step nor fire them all at once. Schedules, rosters
        and the digest follow local wall time and are not moved.
        """
        if not delta:
            return
        self._timers.clear()  # rebuilt below: each live alert pushes its moved deadline
        for alert_id, live in self._live.items():
            self._stepped[alert_id] = self._stepped.get(alert_id, 0.0) + delta
            a = live.alert
            due = None if a.due is None else a.due + delta
            live.alert = a.with_state(a.state, raised_at=a.raised_at + delta, due=due)
            if live.rang_at is not None:
                live.rang_at += delta  # the group window counts from it
        for key, a in self._armed.items():
            self._armed[key] = a.with_state(a.state, raised_at=a.raised_at + delta)
        for table in (self._present, self._last_seen, self._batch_due, self._offline_since):
            for name in table:
                table[name] += delta
        for handset, log in self._ring_log.items():
            self._ring_log[handset] = deque(t + delta for t in log)
        for key, times in self._short.items():
            self._short[key] = tuple(t + delta for t in times)
        self._next_supervision += delta
        self._next_seen_snapshot += delta
        self._next_duty_check += delta
        if self._handover_due is not None:
            # Shift changes are wall-clock times: a step back over one must not skip it.
            self._handover_due = self._now + delta
        self._started += delta
        self._now += delta

    def tick(self, now: float) -> Outcome:
        """Fire every timer due at `now`."""
        out = self._tick(now)
        if self._offline:
            self._offline_rings(out, now)
        return out

    def _tick(self, now: float) -> Outcome:
        out = Outcome()
        self._now = now
        if self._doubled:
            self._one_per_key(now, out)  # before the timers: an old one must not ring first
        if self._stepped:
            for alert_id, delta in self._stepped.items():
                live = self._live.get(alert_id)
                if live is not None:  # its current state: later transitions may have come
                    detail = f"deadlines moved {delta:+.1f} s"
                    out.transitions.append(Transition(live.alert, "clock_stepped", now, detail))
            self._stepped.clear()
        timers = self._timers
        while timers and timers[0][0] <= now:
            due, alert_id = heapq.heappop(timers)
            if self._stale(due, alert_id):
                continue
            live = self._live[alert_id]
            state = live.alert.state
            if state is AlertState.HELD:
                self._end_hold_off(live, now, out)
            elif state is AlertState.ACTIVE:
                self._escalate(live, now, out, why="timeout")
            elif state is AlertState.ACCEPTED:
                self._remind(live, now, out)
        for room, until in list(self._present.items()):
            if until <= now:
                del self._present[room]
                self._rearm(room, now, out)
        for handset, due in list(self._batch_due.items()):
            if due <= now:
                self._flush_batch(handset, now, out)
        if self._digest_due is not None and self._digest_due <= now:
            self._send_digest(now, out)
        if self._boundary_due is not None and self._boundary_due <= now:
            self._boundary_due = None
            self._schedule_changed(now, out)
        roster_changed = self._handover_due is not None and self._handover_due <= now
        if self._offline and (roster_changed or self._next_duty_check <= now):
            self._next_duty_check = math.inf  # _offline_duty sets the next grace's end
            self._offline_duty(now, out)
        if roster_changed:
            roster = self.config.roster
            self._handover_due = (
                None if roster is None else self.calendar.next_roster_change(roster, now)
            )
            self._shift_change(now, out)
        if self._supervised() and self._next_supervision <= now:
            self._supervise(now, out)
            self._next_supervision = now + SUPERVISION_PERIOD
            if self._next_seen_snapshot <= now:
                self._next_seen_snapshot = now + SEEN_SNAPSHOT_PERIOD
                self._cond_dirty.add(_SEEN_KEY)
        return out

    # -- raising --------------------------------------------------------------------------

    def _match(self, signal: Signal, zone: str, now: float) -> RuleConfig | None:
        dc = self._devices.get(signal.device)
        tags = frozenset(dc.tags) if dc is not None else frozenset()
        for r in self._rules:
            if (
                (not r.kinds or signal.kind in r.kinds)
                and (not r.states or signal.state.value in r.states)
                and (not r.devices or signal.device in r.devices)
                and (not r.rooms or signal.room in r.rooms)
                and (not r.zones or zone in r.zones)
                and (not r.sources or signal.source in r.sources)
                and r.tags <= tags
                and not (r.not_tags & tags)
                and (
                    r.cfg.match.schedule is None or self.calendar.active(r.cfg.match.schedule, now)
                )
            ):
                return r.cfg
        return None

    def _raise(self, signal: Signal, key: str, now: float, out: Outcome) -> None:
        cfg = self.config
        kc = cfg.kind(signal.kind)
        zone = cfg.zone_of(signal.room)
        # Critical kinds never consult rules: nothing may delay, group or silence them.
        rule = None if kc.critical else self._match(signal, zone, now)
        priority = (
            Priority[(rule.priority or kc.priority).upper()] if rule else cfg.priority(signal.kind)
        )
        # A call button pressed by staff already in the room: they need a colleague.
        assist = (
            kc.edge
            and not kc.critical
            and not kc.technical
            and signal.room in self._present
            and cfg.presence.assistance
            and not (rule is not None and rule.action == "suppress")
        )
        if assist:
            priority = max(priority, Priority.HIGH)
        alert = Alert(
            id=self._next_id(key, configured=signal.device in self._devices, signal_id=signal.id),
            key=key,
            kind=signal.kind,
            room=signal.room,
            zone=zone,
            device=signal.device,
            priority=priority,
            critical=kc.critical,
            state=AlertState.ACTIVE,
            raised_at=now,
            signal_id=signal.id,
            text=self._text(
                cfg.presence.assistance_text if assist else kc.text,
                kind=signal.kind,
                room=signal.room,
                device=signal.device,
                zone=zone,
                count=1,
            ),
            rule=rule.name if rule else "",
        )
        out.transitions.append(Transition(alert, "raised", now, signal.id))
        if rule is not None and rule.action == "suppress":
            self._suppress(alert, now, "rule", rule.name, out)
            # Decided again at the next schedule boundary and at a reload, even when this
            # rule has no schedule: a scheduled rule above it (first match wins) may take
            # the bed still empty at 22:00, or a reload may drop the catch-all.
            self._arm_until_boundary(alert, signal.source, now)
            return
        if (
            not kc.critical
            and not kc.technical
            and not assist
            and signal.room in self._present
            and signal.kind not in _EQUIPMENT
        ):
            # Care staff in the room attend the resident, not a battery: a technical alarm
            # still reaches the technician (or the digest) at once.
            self._suppress(alert, now, "presence", f"staff in room {signal.room}", out)
            self._arm(alert, signal.source)
            return
        inhibitor = None if kc.critical else self._inhibitor(alert)
        if inhibitor is not None:
            self._suppress(alert, now, "inhibited", inhibitor, out)
            self._arm(alert, signal.source)
            return
        live = _Live(alert, [], 0, self._ladder(alert.rule, critical=alert.critical), self._timers)
        live.source = signal.source
        self._live[alert.id] = live
        self._by_key[key] = alert.id
        if kc.technical:
            self._technical(live, now, out)
        elif assist:
            self._assistance(live, now, out)
        elif rule is None or rule.hold_off <= 0:
            self._activate(live, now, out)
        elif rule.repeat is None or not self._restless(live, rule, now, out):
            live.alert = alert.with_state(AlertState.HELD, step=-1, due=now + rule.hold_off)
            out.transitions.append(
                Transition(live.alert, "held", now, f"{rule.hold_off:g}s", rule.name)
            )
        # The raise's own messages are what a broker redelivery after a crash re-creates,
        # seqs and all, for handsets to drop as repeats. Any later one goes past this
        # start's base (see use_start): an input nothing sends again (a QoS 0 accept, an
        # ESPA status) in the raise's commit window would otherwise leave its seq to the
        # re-created alert's next message, and a handset would drop that cancel or ring.
        live.seq = max(live.seq, self._seq_base)

    def _assistance(self, live: _Live, now: float, out: Outcome) -> None:
        """Ring an assistance call to everyone on duty at once: no hold-off, no group.

        Its zone's primary may be the nurse in the room who pressed it, so it starts at the
        ladder's first step that rings everyone on duty (or at the failsafe step).
        """
        alert = live.alert
        live.assistance = True
        out.transitions.append(Transition(alert, "assistance", now, f"staff in room {alert.room}"))
        steps = live.ladder.steps
        index = next((i for i, s in enumerate(steps) if s.to == "all_on_duty"), len(steps) - 1)
        live.alert = alert.with_state(AlertState.ACTIVE, step=index, due=None)
        self._mute_targets(live.alert, now, out)
        self._ring_step(live, index, now, out)

    def _assistance_ended(self, room: str, now: float, out: Outcome) -> None:
        """Staff reset presence in `room` as they left: the help they called for is over.

        Only an explicit reset: a presence timeout says nothing about the nurse who asked
        for help, so her call rings on until someone accepts or resolves it.
        """
        for live in list(self._live.values()):
            a = live.alert
            if live.assistance and a.room == room and a.group is None:
                detail = f"staff left room {room}"
                self._finish(live, AlertState.RESOLVED, now, detail, out, reason="presence")

    def _restless(self, live: _Live, rule: RuleConfig, now: float, out: Outcome) -> bool:
        """Ring at once if this raise is the `repeat.count`-th within `repeat.within`.

        The earlier raises are those the hold-off cancelled (back in bed in time). The
        count starts again after the ring, as it does after a hold-off that ended ringing.
        """
        repeat = rule.repeat
        assert repeat is not None
        alert = live.alert
        since = now - repeat.within
        count = 1 + sum(1 for t in self._short.get(alert.key, ()) if t > since)
        if count < repeat.count:
            return False
        self._short.pop(alert.key, None)
        text = self._text(
            repeat.text or self.config.kind(alert.kind).text,
            kind=alert.kind,
            room=alert.room,
            device=alert.device,
            zone=alert.zone,
            count=count,
        )
        live.alert = alert.with_state(alert.state, count=count, text=text)
        live.restless = True
        out.transitions.append(
            Transition(
                live.alert, SHORT_EVENT, now, f"raise {count} in {repeat.within:g}s", rule.name
            )
        )
        self._activate(live, now, out)
        return True

    def _note_short(self, alert: Alert, now: float) -> None:
        """Count a hold-off its own clear cancelled, for its rule's `repeat`."""
        rule = self._rules_by_name.get(alert.rule)
        if rule is None or rule.repeat is None:
            return
        since = now - self._short_horizon
        # Bounded: more than `count` raises within the window ring, which empties it.
        kept = [t for t in self._short.get(alert.key, ()) if t > since][-rule.repeat.count :]
        self._short[alert.key] = (*kept, now)
        if len(self._short) > _SHORT_SWEEP:
            self._prune_short(now)

    def _prune_short(self, now: float) -> None:
        """Forget short raises no rule's `repeat` window reaches any more."""
        since = now - self._short_horizon
        for key, times in list(self._short.items()):
            kept = tuple(t for t in times if t > since)
            if not kept:
                del self._short[key]
            elif kept != times:
                self._short[key] = kept

    def _end_hold_off(self, live: _Live, now: float, out: Outcome) -> None:
        """A hold-off ended: ring, unless the rules in force now suppress the alert.

        A bed exit held 20 minutes from 06:50 ends under the day's rules, which suppress
        bed exits: it is suppressed as if raised now, armed until the next boundary like
        any condition a schedule mutes. Any other rule now first does not restart a
        hold-off (that could hold an alert across every boundary), but its priority,
        ladder and group are the ones the alert rings with: a bed exit held from 21:55
        under an evening rule rings at 22:05 as the night rule says.
        """
        alert = live.alert
        signal = Signal(
            id=alert.signal_id,
            source=live.source or "",
            device=alert.device,
            room=alert.room,
            kind=alert.kind,
            state=SignalState.RAISED,
            ts=alert.raised_at,
        )
        rule = self._match(signal, alert.zone, now)
        if rule is not None and rule.action == "suppress":
            live.alert = dataclasses.replace(alert, rule=rule.name)
            self._finish(live, AlertState.SUPPRESSED, now, rule.name, out, reason="rule")
            self._arm_until_boundary(live.alert, live.source, now)
            return
        name = rule.name if rule is not None else ""
        if name != alert.rule:
            kc = self.config.kind(alert.kind)
            priority = (
                Priority[(rule.priority or kc.priority).upper()]
                if rule is not None
                else self.config.priority(alert.kind)
            )
            live.alert = dataclasses.replace(alert, rule=name, priority=priority)
            live.ladder = self._ladder(name)
            out.transitions.append(
                Transition(live.alert, "rule_changed", now, f"{alert.rule or '-'} -> {name or '-'}")
            )
        # Rung after all: the short raises before it are answered by this ring.
        if alert.key in self._short:
            del self._short[alert.key]
        self._activate(live, now, out)

    def _activate(self, live: _Live, now: float, out: Outcome) -> None:
        """Start ringing: join a room group if one is open, else ring the first step."""
        alert = live.alert.with_state(AlertState.ACTIVE, step=0, due=None)
        live.alert = alert
        rule = self._rules_by_name.get(alert.rule)
        if rule is not None and rule.group > 0:
            leader = self._group_leader(alert, rule.group, now)
            if leader is not None:
                self._join_group(leader, live, now, out)
                return
        self._mute_targets(alert, now, out)
        if alert.critical:
            self._ring_critical(live, now, out)
        else:
            self._ring_step(live, 0, now, out)

    def _ring_critical(self, live: _Live, now: float, out: Outcome) -> None:
        alert = live.alert
        team = self.team(alert.kind, alert.zone, now)
        # Every route that names this kind rings too: a critical alarm errs towards more ears.
        team += [h for h in self._routed(alert.kind, alert.zone, first_only=False) if h not in team]
        if not team:
            self._no_staff(alert, now, out)
            team = self._failsafe(alert.kind, now)
        live.alert = alert.with_state(
            AlertState.ACTIVE, step=0, due=now + live.ladder.steps[0].after
        )
        out.transitions.append(
            Transition(live.alert, "ringing", now, "critical: " + ",".join(team))
        )
        live.step_rung = list(team)
        for handset in team:
            self._ring(live, handset, now, out, rate_limited=False)
        if not team:
            out.transitions.append(Transition(live.alert, "unrouted", now, "no handset at all"))

    def _targets(self, step: StepConfig, alert: Alert, now: float) -> list[str]:
        team = self.team(alert.kind, alert.zone, now)
        if step.to == "primary":
            return team[:1]
        if step.to == "zone":
            return team
        if step.to == "all_on_duty":
            return self.on_duty(alert.kind, now)
        return self._failsafe(alert.kind, now)

    def _ring_step(
        self, live: _Live, index: int, now: float, out: Outcome, *, again: str | None = None
    ) -> None:
        """Ring step `index` of the ladder, skipping steps that add nobody new.

        `again`: the accepter of a reopened alert. The step then rings all its people (not
        only those new to the alert: their handsets show it taken) and the accepter too.
        """
        steps = live.ladder.steps
        alert = live.alert
        staffing = alert.kind in _STAFFING
        # A staffing alarm is about who is missing: it never raises one about itself.
        unstaffed = not staffing and not self.team(alert.kind, alert.zone, now)
        if index == 0 and unstaffed:
            self._no_staff(alert, now, out)
            index = len(steps) - 1
        # The last step rung again (it timed out): everyone there hears it again, not only
        # whoever joined it since (ringing just the newcomer left the rest in silence).
        repeat = again is None and index == alert.step == len(steps) - 1
        while True:
            step = steps[index]
            everyone = self._targets(step, alert, now)
            if staffing and self._offline:
                everyone = [h for h in everyone if h not in self._offline]
            targets = [h for h in everyone if h not in live.rejected_by]
            if again is not None:
                if again in self.config.handsets and again not in targets:
                    targets.append(again)
                new = targets
            else:
                new = [h for h in targets if h not in live.handsets]
            last = index == len(steps) - 1
            if last and not targets:
                # Everyone at the last step said no: the alert is still nobody's, so it
                # rings them all again rather than nobody.
                targets = everyone
            if new or last:
                break
            index += 1
        ringing = new if new and not repeat else targets  # the last step rings its people again
        # `after: 0` rings the next step at once, as written; only the last step, which
        # rings its people again when it times out, waits at least LAST_STEP_REPEAT.
        wait = max(step.after, LAST_STEP_REPEAT) if last else step.after
        if staffing and live.ladder.reminder > 0:
            # A flat phone or an empty roster can last all night: its alarm is repeated at
            # the reminder time, not every minute, or it would bury the calls it protects.
            wait = live.ladder.reminder
        live.alert = alert.with_state(AlertState.ACTIVE, step=index, due=now + wait)
        out.transitions.append(
            Transition(live.alert, "ringing", now, f"step {index} {step.to}: {','.join(ringing)}")
        )
        if live.rang_at is None:
            live.rang_at = now
        live.step_rung = list(ringing)
        for handset in ringing:
            # A zone with nobody on duty is never batched: its calls go to whoever can go;
            # nor is news of who is missing.
            self._ring(live, handset, now, out, rate_limited=not (unstaffed or staffing))
        if not ringing:
            nobody = "no handset online" if staffing else "no handset at all"
            out.transitions.append(Transition(live.alert, "unrouted", now, nobody))

    def _escalate(
        self, live: _Live, now: float, out: Outcome, *, why: str, again: str | None = None
    ) -> None:
        alert = live.alert
        if why == "rejected" and not self._care(alert):
            # Technical alarms stay with the technicians (all rung at once): a reject leaves
            # it open to them, never on the night staff's ladder. A page that failed does
            # climb it: a fault nobody can be told about must reach someone.
            if alert.step == 0 and alert.due is not None:
                # Given back by the technician who accepted it: the reminder's deadline is
                # no escalation timer, or it would climb the ladder when it fell due.
                live.alert = alert.with_state(alert.state, due=None)
            return
        if alert.critical and alert.step == 0:
            # Critical alerts rang the whole team at step 0; move on to everyone, then failsafe.
            index = 1 if len(live.ladder.steps) > 1 else 0
        else:
            index = min(alert.step + 1, len(live.ladder.steps) - 1)
        out.transitions.append(Transition(alert, "escalated", now, f"to step {index}", why))
        self._ring_step(live, index, now, out, again=again)

    def _accept(
        self, live: _Live, handset: str, now: float, out: Outcome, *, due: float | None = None
    ) -> None:
        if due is None and live.ladder.reminder > 0:
            due = now + live.ladder.reminder
        live.alert = live.alert.with_state(AlertState.ACCEPTED, accepted_by=handset, due=due)
        live.declined.discard(handset)
        live.reminders = 0
        out.transitions.append(Transition(live.alert, "accepted", now, handset))
        for h in self._shown(live):
            out.deliveries.append(self._delivery(live, h, "update", now))
        for member_id in live.members:
            member = self._live.get(member_id)
            if member is not None:
                member.alert = member.alert.with_state(AlertState.ACCEPTED, accepted_by=handset)
                out.transitions.append(Transition(member.alert, "accepted", now, handset))

    def _attended(
        self, live: _Live, now: float, out: Outcome, event: str, detail: str, *, reason: str = ""
    ) -> None:
        """The accepter answered a reminder, or staff came: unanswered reminders start over.

        Otherwise a nurse who taps accept on each reminder, or a visit between two, still
        had the alert taken from her at `reopen_after`.
        """
        live.reminders = 0
        out.transitions.append(Transition(live.alert, event, now, detail, reason))

    def _remind(self, live: _Live, now: float, out: Outcome) -> None:
        alert = live.alert
        reminder = live.ladder.reminder
        if reminder <= 0 and not _by_presence(alert) and alert.accepted_by in self.config.handsets:
            live.alert = alert.with_state(AlertState.ACCEPTED, due=None)  # reloaded to none
            return
        present_until = self._present.get(alert.room)
        if present_until is not None:
            # Staff are in the room: nobody needs reminding.
            due = present_until if _by_presence(alert) else now + reminder
            live.alert = alert.with_state(AlertState.ACCEPTED, due=max(due, now + 5.0))
            if live.reminders and not _by_presence(alert):
                self._attended(live, now, out, "attended", f"staff in room {alert.room}")
            return
        if _by_presence(alert):
            # Its presence ended unseen (a restart forgets presence): as when staff leave.
            self._presence_ended(live, now, out)
            return
        if alert.accepted_by not in self.config.handsets:
            # A reload removed the accepter: nobody has the alert any more.
            self._reopen(live, now, out, f"{alert.accepted_by} removed")
            self._escalate(live, now, out, why="accepter_removed")
            return
        accepter = alert.accepted_by or ""
        care = self._care(alert)
        if care and self._shift_ended(accepter, now):
            # Her shift ended with the alert still open: reminding a nurse on her way home
            # helps nobody, so the staff now on duty get it.
            self._hand_over(live, accepter, now, out)
            return
        reopen_after = live.ladder.reopen_after
        offline = accepter in self._offline
        if care and (offline or (reopen_after > 0 and live.reminders >= reopen_after)):
            # Accepted, reminded and still not attended (no resolve, no clear, no staff in
            # the room): the nurse may be stuck elsewhere, so the alert is nobody's again
            # and climbs on from the step it was accepted at, its accepter rung with it.
            # A reminder her app cannot show (offline) cannot be answered: that is at once.
            # Technical alarms stay with the technicians, reminded as before.
            why = (
                f"accepter {accepter} offline"
                if offline
                else f"not attended after {live.reminders} reminders ({accepter})"
            )
            self._reopen(live, now, out, why)
            self._escalate(
                live,
                now,
                out,
                why="accepter_offline" if offline else "not_attended",
                again=accepter,
            )
            return
        live.reminders += 1
        live.alert = alert.with_state(
            AlertState.ACCEPTED, due=now + reminder if reminder > 0 else None
        )
        out.transitions.append(Transition(live.alert, "reminder", now, alert.accepted_by or ""))
        if alert.accepted_by:
            out.deliveries.append(
                self._delivery(live, alert.accepted_by, "ring", now, reminder=True)
            )

    def _shift_change(self, now: float, out: Outcome, room: str | None = None) -> None:
        """A shift or override began or ended: open calls its leaving staff accepted go to
        the staff on duty now, as at their next reminder (which `reminder: 0` never has).

        With `room`, staff just left that room: its calls that their presence kept with an
        accepter gone off duty meanwhile are handed over now.
        """
        for live in list(self._live.values()):
            alert = live.alert
            accepter = alert.accepted_by
            if (
                (room is None or alert.room == room)
                and alert.state is AlertState.ACCEPTED
                and alert.group is None  # members go with their leader
                and accepter is not None
                and accepter in self.config.handsets
                and alert.room not in self._present  # staff in the room: it stays hers
                and self._care(alert)
                and self._shift_ended(accepter, now)
            ):
                self._hand_over(live, accepter, now, out)
            elif (
                room is None
                and alert.state is AlertState.ACTIVE
                and alert.group is None
                and self._care(alert)
                and live.step_rung
                and all(self._shift_ended(h, now) for h in live.step_rung)
            ):
                # Ringing only staff who just went off duty: nobody on duty would hear of
                # it until their step timed out. The step rings the shift on duty now.
                out.transitions.append(
                    Transition(alert, "escalated", now, f"to step {alert.step}", "shift_change")
                )
                if alert.critical:
                    self._ring_critical(live, now, out)
                else:
                    self._ring_step(live, alert.step, now, out)

    def _care(self, alert: Alert) -> bool:
        """A call for care staff: not a technical alarm, unless a person waits behind it."""
        return not self.config.kind(alert.kind).technical or alert.kind in _SOMEONE_CALLING

    def _shift_ended(self, handset: str, now: float) -> bool:
        """A roster handset that is on duty nowhere now (and not in the failsafe group).

        A handset no shift names (the technician's) has no shift to end.
        """
        roster = self.config.roster
        if roster is None or self._relied_on(handset, now):
            return False
        return any(handset in hs for shift in roster.shifts for hs in shift.assign.values()) or any(
            handset in ov.handsets for ov in roster.overrides
        )

    def _hand_over(self, live: _Live, accepter: str, now: float, out: Outcome) -> None:
        """The accepter went off duty with the alert open: ring it to the shift on duty now.

        It starts over at the ladder's first step (a critical alarm at its whole team), and
        the former accepter's handset is told the alert is no longer hers.
        """
        self._reopen(live, now, out, f"handed over: {accepter} off duty")
        alert = live.alert
        out.transitions.append(Transition(alert, "escalated", now, "to step 0", "shift_change"))
        start = len(out.deliveries)
        if alert.critical:
            self._ring_critical(live, now, out)
        else:
            self._ring_step(live, 0, now, out)
        self._tell_open(live, start, now, out)

    def _tell_open(self, live: _Live, start: int, now: float, out: Outcome) -> None:
        """An `update` that the reopened alert is open to every handset that showed it and
        was not rung with it since `out.deliveries[start]`."""
        rung = {d.handset for d in out.deliveries[start:] if d.alert_id == live.alert.id}
        for h in self._shown(live):
            if h not in rung:
                out.deliveries.append(self._delivery(live, h, "update", now))

    def _presence_ended(self, live: _Live, now: float, out: Outcome) -> None:
        """Staff left a room whose critical alarm their presence had stopped.

        A button alarm (edge kind), or a sensor alarm whose sensor cleared meanwhile, was
        attended, so it is resolved; a sensor alarm whose sensor has not cleared rings its
        whole team again: it is nobody's until accepted.
        """
        alert = live.alert
        if self.config.kind(alert.kind).edge or live.condition_cleared:
            self._finish(
                live,
                AlertState.RESOLVED,
                now,
                f"attended in room {alert.room}",
                out,
                reason="presence",
            )
            return
        self._reopen(live, now, out, f"staff left room {alert.room}, sensor still raised")
        self._ring_critical(live, now, out)

    # -- muting ---------------------------------------------------------------------------

    def _suppress(self, alert: Alert, now: float, reason: str, detail: str, out: Outcome) -> None:
        done = alert.with_state(AlertState.SUPPRESSED)
        out.transitions.append(Transition(done, "suppressed", now, detail, reason))

    def _inhibitor(self, alert: Alert) -> str | None:
        for i, inh in enumerate(self.config.inhibit):
            if alert.kind not in inh.target_kinds and "*" not in inh.target_kinds:
                continue
            for live in self._live.values():
                src = live.alert
                if (
                    src.state in (AlertState.ACTIVE, AlertState.ACCEPTED)
                    and (src.kind in inh.source_kinds or "*" in inh.source_kinds)
                    and src.id != alert.id
                    and all(getattr(src, lab) == getattr(alert, lab) for lab in inh.equal)
                ):
                    return inh.name or f"inhibit[{i}]"
        return None

    def _mute_targets(self, source: Alert, now: float, out: Outcome) -> None:
        """A newly ringing alert mutes open alerts it inhibits (e.g. a fall mutes a bed exit)."""
        for i, inh in enumerate(self.config.inhibit):
            if source.kind not in inh.source_kinds and "*" not in inh.source_kinds:
                continue

            def covers(t: Alert, inh: InhibitConfig = inh) -> bool:
                return (
                    t.id != source.id
                    and not t.critical
                    and (t.kind in inh.target_kinds or "*" in inh.target_kinds)
                    and all(getattr(t, lab) == getattr(source, lab) for lab in inh.equal)
                )

            for live in list(self._live.values()):
                t = live.alert
                if t.id not in self._live or not covers(t):
                    continue  # (a member muted with its leader above is gone already)
                members = [m for m in map(self._live.get, live.members) if m is not None]
                if not all(covers(m.alert) for m in members):
                    # The group carries a call this inhibition does not cover (a pull cord
                    # that joined a door): muting the group would silence the call with it.
                    continue
                name = inh.name or f"inhibit[{i}]"
                state = AlertState.CANCELLED if t.state is AlertState.HELD else AlertState.RESOLVED
                for member in members:  # muted with their leader: a bed still empty comes back
                    if not member.condition_cleared:
                        self._arm(member.alert, member.source)
                self._finish(
                    live, state, now, f"inhibited by {source.kind}", out, reason=f"inhibited:{name}"
                )
                if not live.condition_cleared:
                    self._arm(t, live.source)

    def _uninhibit(self, source: Alert, now: float, out: Outcome) -> None:
        """A source that stops ringing raises again the level targets it muted (Alertmanager)."""
        for inh in self.config.inhibit:
            if source.kind not in inh.source_kinds and "*" not in inh.source_kinds:
                continue
            for key, t in list(self._armed.items()):
                if (
                    key not in self._by_key
                    and key in self._armed
                    and (t.kind in inh.target_kinds or "*" in inh.target_kinds)
                    and all(getattr(t, lab) == getattr(source, lab) for lab in inh.equal)
                ):
                    self._raise_armed(key, "inhibit", now, out)

    def _presence(self, signal: Signal, now: float, out: Outcome) -> None:
        room = signal.room
        if signal.state is SignalState.CLEARED:
            if self._present.pop(room, None) is not None:
                self._assistance_ended(room, now, out)
                self._rearm(room, now, out)
            return
        self._present[room] = now + self.config.presence.timeout
        for live in list(self._live.values()):
            alert = live.alert
            if (
                alert.room != room
                or alert.group is not None
                or self.config.kind(alert.kind).technical
                or alert.kind in _EQUIPMENT
            ):
                continue  # members go with their leader; a technical alarm is no call
            if alert.critical and not live.condition_cleared:
                if alert.state is not AlertState.ACCEPTED:
                    # Staff are in the room: stop escalating until they leave (see
                    # `_presence_ended`); the alarm's timer is the presence's expiry.
                    self._accept(live, _PRESENCE + room, now, out, due=self._present[room])
                elif live.reminders and not _by_presence(alert):
                    self._attended(live, now, out, "attended", f"staff in room {room}")
                continue
            state = AlertState.CANCELLED if alert.state is AlertState.HELD else AlertState.RESOLVED
            if not live.condition_cleared:  # a leader whose door closed is no condition
                self._arm(live.alert, live.source)
            for member_id in live.members:  # finished with it: a door still open comes back
                member = self._live.get(member_id)
                if member is not None and not member.condition_cleared:  # latched: ended
                    self._arm(member.alert, member.source)
            self._finish(live, state, now, f"staff in room {room}", out, reason="presence")

    def _arm(self, alert: Alert, source: str | None = None) -> None:
        """Remember a level condition presence or inhibition muted, to raise it again after.

        Its sensor's CLEARED disarms it; an edge kind (a pressed button) is not a condition.
        `source` is the signal's, so rules matching on `sources` still match it then.
        """
        if not self.config.kind(alert.kind).edge and alert.device in self._devices:
            self._armed[alert.key] = alert
            if source is None:
                self._armed_source.pop(alert.key, None)
            else:
                self._armed_source[alert.key] = source

    def _arm_until_boundary(self, alert: Alert, source: str | None, now: float) -> None:
        """Arm a level condition a rule suppressed until a rule's schedule changes."""
        self._arm(alert, source)
        if alert.key not in self._armed:
            return  # an edge kind (a button press) is not a condition: it does not come back
        self._at_boundary.add(alert.key)
        self._cond_dirty.add(_ARMED_KEY + alert.key)
        # Once set, the next boundary is known (a reload re-decides at once): no zoneinfo
        # work for every signal the day rule suppresses.
        if self._boundary_due is None:
            self._boundary_due = self.calendar.next_boundary(self._rule_schedules, now)

    def _schedule_changed(self, now: float, out: Outcome) -> None:
        """A rule's schedule started or ended: raise the conditions it suppressed afresh."""
        keys, self._at_boundary = self._at_boundary, set()
        self._cond_dirty.update(_ARMED_KEY + key for key in keys)
        for key in keys:
            if key in self._armed and key not in self._by_key:
                self._raise_armed(key, "schedule", now, out)

    def _raise_armed(self, key: str, why: str, now: float, out: Outcome) -> None:
        alert = self._armed[key]
        signal = Signal(
            id=alert.signal_id,
            source=self._armed_source.get(key, why),
            device=alert.device,
            room=alert.room,
            kind=alert.kind,
            state=SignalState.RAISED,
            ts=alert.raised_at,
        )
        if alert.rule and not alert.critical:
            rule = self._match(signal, alert.zone, now)
            if rule is not None and rule.action == "suppress" and rule.name == alert.rule:
                # The rule that muted it still does: no news, so no new alert in the
                # journal at every boundary, reload or staff visit; decided again later.
                self._arm_until_boundary(alert, self._armed_source.get(key), now)
                return
        del self._armed[key]
        self._armed_source.pop(key, None)
        self._raise(signal, key, now, out)

    def _rearm(self, room: str, now: float, out: Outcome) -> None:
        marker = _PRESENCE + room
        for live in list(self._live.values()):
            if live.alert.state is AlertState.ACCEPTED and live.alert.accepted_by == marker:
                self._presence_ended(live, now, out)
        for key, alert in list(self._armed.items()):
            if alert.room == room and key not in self._by_key and key in self._armed:
                self._raise_armed(key, "presence", now, out)
        if self.config.roster is not None:
            # The shift change left a call with the nurse in the room; if she has gone
            # off duty since, it is the day staff's now (no reminder may ever come).
            self._shift_change(now, out, room)

    # -- grouping and repeats -------------------------------------------------------------

    def _group_leader(self, alert: Alert, window: float, now: float) -> _Live | None:
        for live in self._live.values():
            a = live.alert
            if (
                a.id != alert.id
                and a.room == alert.room
                and a.group is None
                and not a.critical
                # A call must never hide in a technical alarm that rings only the technician.
                and not self.config.kind(a.kind).technical
                and a.state in (AlertState.ACTIVE, AlertState.ACCEPTED)
                and live.handsets
                # From its first ring: a bed exit held 20 minutes then rung is as new to
                # the staff as the pull cord pulled a minute later.
                and now - (a.raised_at if live.rang_at is None else live.rang_at) <= window
            ):
                return live
        return None

    def _join_group(self, leader: _Live, live: _Live, now: float, out: Outcome) -> None:
        live.alert = live.alert.with_state(
            leader.alert.state,
            group=leader.alert.id,
            due=None,
            accepted_by=leader.alert.accepted_by,
        )
        live.handsets = list(leader.handsets)
        leader.members.append(live.alert.id)
        out.transitions.append(Transition(live.alert, "grouped", now, leader.alert.id, "group"))
        for h in self._shown(leader):
            out.deliveries.append(self._delivery(leader, h, "update", now))

    def _repeat(self, live: _Live, signal: Signal, now: float, out: Outcome) -> None:
        alert = dataclasses.replace(live.alert, count=live.alert.count + 1)
        live.alert = alert
        out.transitions.append(Transition(alert, "repeated", now, signal.id, "dedup"))
        accepter = alert.accepted_by if alert.state is AlertState.ACCEPTED else None
        if accepter is not None and accepter in self.config.handsets:
            if alert.room in self._present:
                return  # staff are in the room already
            if self._care(alert) and self._shift_ended(accepter, now):
                # Asked again after the accepter's shift ended: the shift on duty hears it.
                self._hand_over(live, accepter, now, out)
                return
            # The accepter has not got there yet and the resident asks again: a critical
            # alarm rings the accepter again, anything else shows them the new count.
            action = "ring" if alert.critical else "update"
            out.deliveries.append(
                self._delivery(live, accepter, action, now, reminder=alert.critical)
            )
            if not alert.critical:
                return
        if alert.critical:
            # A repeat of a critical alarm is never absorbed silently: handsets see the count.
            for h in self._shown(live):
                if h != accepter:
                    out.deliveries.append(self._delivery(live, h, "update", now))
        elif alert.kind in _SOMEONE_CALLING and accepter is None:
            # No ladder escalates it and nothing clears it: a second call rings them again.
            for h in live.handsets:
                out.deliveries.append(self._delivery(live, h, "ring", now, reminder=True))

    # -- finishing ------------------------------------------------------------------------

    def _clear_key(self, key: str, now: float, detail: str, out: Outcome) -> None:
        alert_id = self._by_key.get(key)
        if alert_id is None:
            return
        live = self._live[alert_id]
        if live.alert.state is AlertState.HELD:
            self._note_short(live.alert, now)
            self._finish(live, AlertState.CANCELLED, now, detail, out, reason="auto_cancel")
            return
        if live.members or self._latches(live):
            # A leader ends with its last member; a latching alarm nobody accepted yet
            # keeps ringing and escalating. A new raise of the key is a new alert.
            live.condition_cleared = True
            del self._by_key[key]
            out.transitions.append(Transition(live.alert, "condition_cleared", now, detail))
            return
        self._finish(live, AlertState.CLEARED, now, detail, out)

    def _latches(self, live: _Live) -> bool:
        """A latching alarm that rang and that no one has acknowledged (IEC 60601-1-8).

        One that rang nobody (a technical kind in the digest) could never be acknowledged.
        """
        return (
            live.alert.state is AlertState.ACTIVE
            and bool(live.handsets)
            and (live.restless or self.config.kind(live.alert.kind).latches)
        )

    def _finish(
        self,
        live: _Live,
        state: AlertState,
        now: float,
        detail: str,
        out: Outcome,
        *,
        reason: str = "",
    ) -> None:
        alert_id = live.alert.id
        self._live.pop(alert_id, None)
        if self._by_key.get(live.alert.key) == alert_id:
            del self._by_key[live.alert.key]
        live.alert = live.alert.with_state(state, due=None)
        queued = self._digest.get(live.alert.text) if self._digest else None
        if queued is not None and alert_id in queued:
            queued[alert_id] = live.alert  # its final state, for the digest_sent mark
        out.transitions.append(Transition(live.alert, state.value, now, detail, reason))
        for member_id in list(live.members):
            member = self._live.get(member_id)
            if member is not None:
                member.members = []
                self._finish(member, state, now, f"group {alert_id}", out, reason=reason)
        leader_id = live.alert.group
        if leader_id is not None:
            leader = self._live.get(leader_id)
            if leader is not None and alert_id in leader.members:
                leader.members.remove(alert_id)
                if leader.condition_cleared and not leader.members and not self._latches(leader):
                    self._finish(leader, AlertState.CLEARED, now, "group cleared", out)
                else:
                    for h in self._shown(leader):
                        out.deliveries.append(self._delivery(leader, h, "update", now))
            return
        for h in self._shown(live):
            out.deliveries.append(self._delivery(live, h, "cancel", now))
        for handset, ids in self._batch.items():
            if alert_id in ids:
                ids.remove(alert_id)
                if not ids:
                    self._batch_due.pop(handset, None)
        if self._armed and self.config.inhibit:
            self._uninhibit(live.alert, now, out)

    # -- delivery -------------------------------------------------------------------------

    def _shown(self, live: _Live) -> list[str]:
        """The handsets that were sent the alert: not those where it waits in a batch.

        An update or cancel of an alert a handset never saw is noise on its screen; the
        batch carries the alert's state when it goes (or leaves out one that ended).
        """
        if not self._batch:
            return live.handsets
        alert_id = live.alert.id
        return [h for h in live.handsets if alert_id not in self._batch.get(h, ())]

    def _ring(
        self, live: _Live, handset: str, now: float, out: Outcome, *, rate_limited: bool
    ) -> None:
        known = handset in live.handsets
        if not known:
            live.handsets.append(handset)
        live.declined.discard(handset)
        live.failed.discard(handset)
        limit = self.config.rate_limit
        if (
            rate_limited
            and limit is not None
            and not live.alert.critical
            and live.alert.kind not in _NEVER_BATCHED
            and not live.assistance
            # An offline app's ring fails at once and moves the call on (_offline_rings);
            # in a batch it would hold the call for the whole step instead.
            and handset not in self._offline
        ):
            log = self._ring_log.setdefault(handset, deque())
            while log and log[0] <= now - limit.per:
                log.popleft()
            if len(log) >= limit.max or handset in self._batch_due:
                batch = self._batch.setdefault(handset, [])
                if live.alert.id not in batch:
                    batch.append(live.alert.id)
                self._batch_due.setdefault(handset, log[0] + limit.per if log else now)
                if not known:
                    live.unseen.add(handset)
                out.transitions.append(
                    Transition(live.alert, "batched", now, handset, "rate_limit")
                )
                return
            if not known:
                # The budget counts alerts a handset hears of, not how often an unanswered
                # one is rung again: two calls repeating at the failsafe step used it up,
                # and every new call after them waited for a batch.
                log.append(now)
        out.deliveries.append(self._delivery(live, handset, "ring", now))

    def _flush_batch(self, handset: str, now: float, out: Outcome) -> None:
        # One a colleague accepted meanwhile is no longer waiting for anyone.
        ids = [
            i
            for i in self._batch.pop(handset, [])
            if i in self._live and self._live[i].alert.state is AlertState.ACTIVE
        ]
        self._batch_due.pop(handset, None)
        if not ids:
            return
        lives = [self._live[i] for i in ids]
        items: list[dict[str, Any]] = []
        for lv in lives:
            item: dict[str, Any] = {
                "alert_id": lv.alert.id,
                "kind": lv.alert.kind,
                "room": lv.alert.room,
                "text": lv.alert.text,
                "priority": lv.alert.priority.name.lower(),
            }
            if lv.members:
                # A pull cord that joined a door waiting here is on her screen, as a call.
                self._show_group(lv, item)
            items.append(item)
        first = lives[0]
        first.seq += 1
        self._ring_log.setdefault(handset, deque()).append(now)
        out.deliveries.append(
            Delivery(
                alert_id=first.alert.id,
                handset=handset,
                seq=first.seq,
                action="batch",
                payload={
                    "type": "batch",
                    "alert_id": first.alert.id,
                    "seq": first.seq,
                    "alerts": items,
                    "text": f"{len(items)} alerts waiting",
                    "sent_at": now,
                    "priority": max(self._top_priority(lv) for lv in lives).name.lower(),
                },
            )
        )
        for lv in lives:
            lv.unseen.discard(handset)
            out.transitions.append(Transition(lv.alert, "batch_sent", now, handset))

    def _delivery(
        self, live: _Live, handset: str, action: str, now: float, *, reminder: bool = False
    ) -> Delivery:
        alert = live.alert
        live.seq += 1
        live.unseen.discard(handset)
        payload: dict[str, Any] = {
            "type": action,
            "alert_id": alert.id,
            "seq": live.seq,
            "signal_id": alert.signal_id,
            "kind": alert.kind,
            "room": alert.room,
            "zone": alert.zone,
            "priority": alert.priority.name.lower(),
            "critical": alert.critical,
            "state": alert.state.value,
            "text": alert.text,
            "count": alert.count,
            "step": alert.step,
            "raised_at": alert.raised_at,
            "sent_at": now,
        }
        if alert.accepted_by:
            payload["accepted_by"] = alert.accepted_by
        if live.condition_cleared:
            payload["condition_cleared"] = True
        if reminder:
            payload["reminder"] = True
        if live.members:
            self._show_group(live, payload)
        return Delivery(alert.id, handset, live.seq, action, payload)

    def _show_group(self, live: _Live, payload: dict[str, Any]) -> None:
        """Show a group leader's members in `payload`: their list, text and top priority."""
        alert = live.alert
        members = [self._live[m].alert for m in live.members if m in self._live]
        payload["members"] = [
            {"alert_id": m.id, "kind": m.kind, "text": m.text, "count": m.count} for m in members
        ]
        kinds = ", ".join(dict.fromkeys([alert.kind, *(m.kind for m in members)]))
        payload["text"] = f"Room {alert.room}: {kinds}"
        payload["priority"] = self._top_priority(live).name.lower()

    def _top_priority(self, live: _Live) -> Priority:
        """A call that joined a door left open is still a call: the group is as urgent
        as its most urgent member (a pager beeps and a handset sorts by it)."""
        members = [self._live[m].alert.priority for m in live.members if m in self._live]
        return max([live.alert.priority, *members])

    # -- technical, supervision, nobody on duty -------------------------------------------

    def _technical(self, live: _Live, now: float, out: Outcome) -> None:
        tech = self.config.technical
        alert = live.alert
        if alert.kind in _SOMEONE_CALLING:
            # A person pressed a call button alertgw cannot place: it is a technical fault,
            # but it must not wait for a digest. Everyone on duty and the technician.
            live.step_rung = list(dict.fromkeys([*self._failsafe(alert.kind, now), *tech.handsets]))
            for h in live.step_rung:
                self._ring(live, h, now, out, rate_limited=False)
            live.alert = live.alert.with_state(AlertState.ACTIVE, due=None)
            return
        if not tech.handsets:
            out.transitions.append(Transition(alert, "logged", now, "no technical handsets"))
            return
        if tech.digest and not alert.critical:
            self._queue_digest(alert, now)
            out.transitions.append(Transition(alert, "digest", now, tech.digest_at, "technical"))
            return
        live.step_rung = list(tech.handsets)
        for h in tech.handsets:
            self._ring(live, h, now, out, rate_limited=False)
        live.alert = live.alert.with_state(AlertState.ACTIVE, due=None)

    def _queue_digest(self, alert: Alert, since: float) -> None:
        """Put a technical alert in the next digest, the one due after `since`."""
        self._digest.setdefault(alert.text, {})[alert.id] = alert
        tech = self.config.technical
        # A digest switched off meanwhile (a reload, a restart) still sends what it holds.
        due = self.calendar.next_time(tech.digest_at, since) if tech.digest else since
        if self._digest_due is None or due < self._digest_due:
            self._digest_due = due

    def _send_digest(self, now: float, out: Outcome) -> None:
        queued, self._digest = self._digest, {}
        self._digest_due = None
        if not queued:
            return
        items = [text if len(ids) == 1 else f"{text} ({len(ids)}x)" for text, ids in queued.items()]
        total = sum(len(ids) for ids in queued.values())
        # Its time in the id: a restart with the journal down (the generation not
        # committed) must not give tomorrow's digest today's id and seq.
        digest_id = self._next_id("technical:digest", signal_id=f"digest-{now}")
        # Marked on each alert, open or finished, so a restart after the digest does not
        # send it again; the time marks what older journals queued as sent.
        for ids in queued.values():
            for alert_id, alert in ids.items():
                live = self._live.get(alert_id)
                out.transitions.append(
                    Transition(alert if live is None else live.alert, "digest_sent", now, digest_id)
                )
        self._digest_sent_at = now
        self._cond_dirty.add(DIGEST_SENT_KEY)
        for h in self.config.technical.handsets:
            out.deliveries.append(
                Delivery(
                    digest_id,
                    h,
                    1,
                    "digest",
                    {
                        "type": "digest",
                        "alert_id": digest_id,
                        "seq": 1,
                        "items": items,
                        "text": f"Technical digest: {total} alarm(s)",
                        "sent_at": now,
                        "priority": "low",
                    },
                )
            )

    def _supervised(self) -> bool:
        sup = self.config.supervision
        return bool(sup.kinds) or sup.default is not None

    def _silent_for(self) -> dict[str, int] | None:
        """How long each supervised device has gone unheard, for a restart to resume from."""
        sup = self.config.supervision
        seen = {
            dev: int(self._now - self._last_seen.get(dev, self._started))
            for dev, dc in self._devices.items()
            if dev not in self._silent and sup.kinds.get(dc.kind, sup.default) is not None
        }
        return seen or None

    def _supervise(self, now: float, out: Outcome) -> None:
        sup = self.config.supervision
        for dev_id, dc in self._devices.items():
            interval = sup.kinds.get(dc.kind, sup.default)
            if interval is None or dev_id in self._silent or dev_id in self._unsupervised:
                continue
            last = self._last_seen.get(dev_id, self._started)
            if now - last < interval:
                continue
            self._flag_silent(dev_id, dc, now, out, last)

    def _flag_silent(
        self, dev_id: str, dc: DeviceConfig, now: float, out: Outcome, last: float
    ) -> None:
        """Raise a device's silence alarm: a safety sensor's rings the night staff."""
        self._silent.add(dev_id)
        critical = self.config.kind(dc.kind).critical
        kind = "safety_sensor_silent" if critical else "device_silent"
        signal = Signal(
            id=f"silent-{dev_id}-{int(now)}",
            source="supervision",
            device=dev_id,
            room=dc.room,
            kind=kind,
            state=SignalState.RAISED,
            ts=now,
            attrs={"silent_for": round(now - last)},
        )
        self._raise(signal, f"{dev_id}:silent", now, out)

    def _no_staff(self, alert: Alert, now: float, out: Outcome) -> None:
        key = f"zone:{alert.zone}:no_staff"
        if key in self._by_key:
            return
        self._staffing_alarm(
            key,
            "no_staff_on_duty",
            now,
            out,
            device=f"zone:{alert.zone}",
            zone=alert.zone,
            signal_id=f"nostaff-{alert.zone}-{int(now)}",
            detail=f"for alert {alert.id}",
        )

    def _staffing_alarm(
        self,
        key: str,
        kind: str,
        now: float,
        out: Outcome,
        *,
        device: str,
        zone: str,
        signal_id: str,
        detail: str,
    ) -> None:
        """Ring the failsafe group and everyone on duty (whose app is not offline) about who
        is missing: nobody on duty for a zone, or an on-duty handset that hears nothing.
        """
        alarm = Alert(
            id=self._next_id(key, signal_id=signal_id),
            key=key,
            kind=kind,
            room="",
            zone=zone,
            device=device,
            priority=Priority.HIGH,
            critical=False,
            state=AlertState.ACTIVE,
            raised_at=now,
            signal_id=signal_id,
            text=self._text(
                self.config.kind(kind).text, kind=kind, room="", device=device, zone=zone, count=1
            ),
        )
        live = _Live(alarm, [], 0, self._ladder(""), self._timers)
        self._live[alarm.id] = live
        self._by_key[key] = alarm.id
        out.transitions.append(Transition(alarm, "raised", now, detail))
        # The last step at once, as its repeats: offline handsets left out, rung again
        # after the reminder time (a ladder without reminders: its last step's).
        self._ring_step(live, len(live.ladder.steps) - 1, now, out)

    def _text(
        self, template: str, *, kind: str, room: str, device: str, zone: str, count: int
    ) -> str:
        # Every raise writes one; a bed's text is the same each night: formatted once.
        key = (template, kind, room, device, zone, count)
        text = self._texts.get(key)
        if text is None:
            if len(self._texts) > _TEXT_CACHE:
                self._texts.clear()
            formatted = template.format(kind=kind, room=room, device=device, zone=zone, count=count)
            text = self._texts[key] = safe_text(formatted)
        return text
