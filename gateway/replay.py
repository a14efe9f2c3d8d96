"""Replay a capture through the rule engine on a virtual clock and report the load on staff.

Pure code, no asyncio: capture lines are decoded by the decoders the config names and fed to
the same `Engine` the daemon runs. Simulated staff accept every ring `accept_after` seconds
later, so a 9-hour night replays in well under a second per thousand messages.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import heapq
import math
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from gateway.config import Config
from gateway.decoders import Decoder, JsonDecoder, Zigbee2MqttDecoder
from gateway.engine import Engine, Outcome
from gateway.errors import DecodeError, GatewayError
from gateway.espa.decode import EspaDecoder
from gateway.model import DUP_WINDOW, Response, ResponseKind, SignalState

TAIL = 3600.0  # keep ticking this long after the last message, so held alerts play out
INTERRUPTING = frozenset({"ring", "batch", "digest"})
_TERMINAL_EVENTS = frozenset({"suppressed", "cancelled", "resolved", "cleared"})
_MAX_STUCK_TICKS = 100
# Kinds the engine raises itself when a device goes quiet. Raised after the capture's last
# message they measure the end of the recording, not a sensor, so the report leaves them out.
_SILENCE_KINDS = frozenset({"safety_sensor_silent", "device_silent"})


class CaptureError(GatewayError):
    """A capture line is malformed; the message names the file and line."""


@dataclasses.dataclass(frozen=True, slots=True)
class MissedSituation:
    """A situation that needed staff but rang no handset, with what happened to its alerts."""

    situation: str
    label: str
    at: float  # seconds after the replay start
    fates: tuple[str, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class LoadReport:
    """What a capture would have cost the staff under one config."""

    config: str
    timezone: str
    accept_after: float | None
    start: float
    end: float
    messages: int
    decode_errors: Mapping[str, int]
    unmatched_topics: int
    duplicates: int  # QoS 1 redeliveries of a message already played, dropped as the daemon does
    signals_in: int
    raised_signals: int
    naive_interruptions: int  # forward every raised (non-presence) signal
    alerts_raised: int
    alerts_rung: int
    interruptions: int
    interruptions_by_handset: Mapping[str, int]
    deliveries: Mapping[str, int]  # by action
    suppressed: Mapping[tuple[str, str], int]  # (reason, rule) -> count
    cancelled: Mapping[tuple[str, str], int]
    resolved: Mapping[tuple[str, str], int]
    escalations: int
    escalations_by_reason: Mapping[str, int]
    critical_alerts: int
    critical_delays: tuple[float, ...]  # first ring - raise, per critical alert that rang
    critical_unrung: int
    ignored_after_end: int  # sensor-silent alerts raised only because the capture ended
    situations: int | None  # None: the capture carries no situation labels
    situations_needing_staff: int | None
    missed: tuple[MissedSituation, ...]

    @property
    def hours(self) -> float:
        """Length of the capture in hours (first to last message)."""
        return (self.end - self.start) / 3600.0

    @property
    def interruptions_per_hour(self) -> dict[str, float]:
        """Interruptions per handset per hour of capture."""
        hours = self.hours
        return {
            h: (n / hours if hours > 0 else float(n))
            for h, n in sorted(self.interruptions_by_handset.items())
        }

    @property
    def critical_delay_max(self) -> float | None:
        """The longest critical delivery delay (None when no critical alert rang)."""
        return max(self.critical_delays) if self.critical_delays else None

    @property
    def situations_missed(self) -> int | None:
        """How many situations needing staff rang nobody (None without labels)."""
        return None if self.situations_needing_staff is None else len(self.missed)

    @property
    def interruptions_per_needed_situation(self) -> float | None:
        """Interruptions divided by situations needing staff (None without labels or needs)."""
        if not self.situations_needing_staff:
            return None
        return self.interruptions / self.situations_needing_staff


def topic_matches(pattern: str, topic: str) -> bool:
    """True when MQTT topic filter `pattern` matches `topic` (`+` one level, `#` the rest)."""
    if topic.startswith("$") and pattern[:1] in ("+", "#"):
        return False  # MQTT 3.1.1 §4.7.2: wildcards at the first level skip $SYS topics
    levels = topic.split("/")
    parts = pattern.split("/")
    for i, part in enumerate(parts):
        if part == "#":
            return True  # also matches the parent level: "a/#" matches "a"
        if i >= len(levels) or (part not in ("+", levels[i])):
            return False
    return len(parts) == len(levels)


def load_capture(path: str | Path) -> list[dict[str, Any]]:
    """Read a JSON-lines capture; raise CaptureError naming the line of any malformed record."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise CaptureError(f"{p}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise CaptureError(f"{p}: not UTF-8 text ({exc.reason})") from None
    records: list[dict[str, Any]] = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise CaptureError(f"{p}:{n}: invalid JSON: {str(exc)[:80]}") from None
        problem = _record_problem(value)
        if problem is not None:
            raise CaptureError(f"{p}:{n}: {problem}")
        records.append(value)
    return records


def replay(
    events: Iterable[Mapping[str, Any]],
    config: Config,
    *,
    accept_after: float | None = 30.0,
    start: float | None = None,
) -> LoadReport:
    """Feed capture records through the engine on a virtual clock; staff accept after N s."""
    tz = ZoneInfo(config.site.timezone)
    parsed = [_parse(n, raw, tz) for n, raw in enumerate(events, 1)]
    parsed.sort(key=lambda e: (e.ts, e.line))
    begin = start if start is not None else (parsed[0].ts if parsed else 0.0)
    parsed = [e for e in parsed if e.ts >= begin]
    run = _Run(config, start=begin, accept_after=accept_after)
    for event in parsed:
        run.advance(event.ts)
        run.message(event)
    end = parsed[-1].ts if parsed else begin
    run.ended = True
    run.advance(end + TAIL)
    return run.report(end=end, labelled=any(e.situation is not None for e in parsed))


def render(report: LoadReport) -> str:
    """Format a report as a readable table."""
    r = report
    accept = "nobody answers" if r.accept_after is None else f"accept after {r.accept_after:g} s"
    span = f"{_local(r.start, r.timezone)} to {_local(r.end, r.timezone)}"
    lines = [
        f"Replay of {r.config}: {span} ({r.hours:.1f} h), staff {accept}",
        "",
        _row("messages", r.messages),
        _row("decode errors", sum(r.decode_errors.values()), _inline(r.decode_errors)),
        _row("unmatched topics", r.unmatched_topics),
        _row("redeliveries dropped", r.duplicates),
        _row("signals in", r.signals_in),
        _row("raised signals", r.raised_signals),
        _row("alerts raised", r.alerts_raised),
        _row("alerts that rang", r.alerts_rung),
        _row("handset interruptions", r.interruptions),
        _row("naive: forward every raised signal", r.naive_interruptions),
    ]
    per_hour = r.interruptions_per_hour
    for handset, count in sorted(r.interruptions_by_handset.items()):
        lines.append(_row(f"  {handset}", count, f"   {per_hour[handset]:.2f}/h"))
    lines += [
        _row("deliveries", sum(r.deliveries.values()), _inline(r.deliveries)),
        _row("escalations", r.escalations, _inline(r.escalations_by_reason)),
        _row("critical alerts", r.critical_alerts),
        _row("critical delivery delay max (s)", r.critical_delay_max),
    ]
    if r.critical_unrung:
        lines.append(_row("critical alerts that never rang", r.critical_unrung))
    if r.ignored_after_end:
        lines.append(_row("silence alerts after capture end", r.ignored_after_end, "   (ignored)"))
    if r.situations_needing_staff is not None:
        lines += [
            _row("situations", r.situations),
            _row("situations needing staff", r.situations_needing_staff),
            _row("situations missed", len(r.missed)),
            _row("interruptions per needed situation", r.interruptions_per_needed_situation),
        ]
    for title, table in (
        ("suppressed", r.suppressed),
        ("cancelled", r.cancelled),
        ("resolved", r.resolved),
    ):
        if not table:
            continue
        lines.append(f"  {title} by reason, rule:")
        for (reason, rule), count in sorted(table.items()):
            lines.append(f"    {reason:<20}{rule or '-':<30}{count:>7}")
    if r.missed:
        lines.append("  missed situations:")
        for m in r.missed:
            lines.append(f"    {m.situation} ({m.label}) at +{m.at:.0f} s")
            lines.extend(f"      {fate}" for fate in m.fates)
    return "\n".join(lines)


def compare(a: LoadReport, b: LoadReport) -> str:
    """Format two reports side by side with the difference b - a."""
    rows: list[tuple[str, float | None, float | None]] = [
        ("signals in", a.signals_in, b.signals_in),
        ("raised signals", a.raised_signals, b.raised_signals),
        ("alerts raised", a.alerts_raised, b.alerts_raised),
        ("alerts that rang", a.alerts_rung, b.alerts_rung),
        ("handset interruptions", a.interruptions, b.interruptions),
    ]
    handsets = sorted(set(a.interruptions_by_handset) | set(b.interruptions_by_handset))
    rows += [
        (
            f"  {h}",
            a.interruptions_by_handset.get(h, 0),
            b.interruptions_by_handset.get(h, 0),
        )
        for h in handsets
    ]
    rows += [
        ("escalations", a.escalations, b.escalations),
        ("critical alerts", a.critical_alerts, b.critical_alerts),
        ("critical delay max (s)", a.critical_delay_max, b.critical_delay_max),
        ("situations needing staff", a.situations_needing_staff, b.situations_needing_staff),
        ("situations missed", a.situations_missed, b.situations_missed),
        (
            "interruptions per needed situation",
            a.interruptions_per_needed_situation,
            b.interruptions_per_needed_situation,
        ),
    ]
    for title, ta, tb in (
        ("suppressed", a.suppressed, b.suppressed),
        ("cancelled", a.cancelled, b.cancelled),
        ("resolved", a.resolved, b.resolved),
    ):
        for key in sorted(set(ta) | set(tb)):
            reason, rule = key
            rows.append((f"{title} {reason} {rule or '-'}", ta.get(key, 0), tb.get(key, 0)))
    width = max(36, *(len(name) + 2 for name, _, _ in rows))
    col = max(12, len(a.config), len(b.config)) + 2
    lines = [f"{'':<{width}}{'A':>{col}}{'B':>{col}}{'B - A':>10}"]
    lines.append(f"{'config':<{width}}{_tail(a.config, col):>{col}}{_tail(b.config, col):>{col}}")
    for name, va, vb in rows:
        diff = "" if va is None or vb is None else _signed(vb - va)
        lines.append(f"{name:<{width}}{_num(va):>{col}}{_num(vb):>{col}}{diff:>10}")
    return "\n".join(lines)


# -- internals ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class _Event:
    ts: float
    line: int
    topic: str
    payload: bytes
    situation: str | None
    label: str
    needs_staff: bool
    retain: bool = False  # the broker's stored copy, sent because the daemon subscribed
    dup: bool = False  # a QoS 1 redelivery of a message the broker never saw acknowledged


_EPOCH_2000 = 946_684_800
_EPOCH_2100 = 4_102_444_800


def _record_problem(value: Any) -> str | None:  # noqa: ANN401 - JSON is untyped
    if not isinstance(value, dict):
        return "expected a JSON object"
    ts = value.get("ts")
    if isinstance(ts, str):
        try:
            year = dt.datetime.fromisoformat(ts).year
        except ValueError:
            return f"ts: expected epoch seconds or ISO-8601, got {ts[:40]!r}"
    elif isinstance(ts, bool) or not isinstance(ts, int | float) or not math.isfinite(ts):
        return f"ts: expected epoch seconds or ISO-8601, got {ts!r}"
    else:
        year = 0 if not _EPOCH_2000 <= ts < _EPOCH_2100 else 2000
    if not 2000 <= year < 2100:
        # Milliseconds crashed the calendar; a box that recorded at 1970 until NTP set
        # its clock made replay tick through decades of deadlines and never end.
        return (
            f"ts: {ts!r} is not a time from 2000 to 2099 (milliseconds? recorded before"
            " the box's clock was set? delete those lines)"
        )
    if not isinstance(value.get("topic"), str) or not value["topic"]:
        return "topic: expected a non-empty string"
    if "payload" not in value:
        return "payload: missing"
    situation = value.get("situation")
    if situation is not None and not isinstance(situation, str):
        return "situation: expected a string"
    for flag in ("needs_staff", "retain", "dup"):
        if not isinstance(value.get(flag, False), bool):
            return f"{flag}: expected true or false"
    return None


def _parse(n: int, raw: Mapping[str, Any], tz: ZoneInfo) -> _Event:
    problem = _record_problem(dict(raw) if isinstance(raw, Mapping) else raw)
    if problem is not None:
        raise CaptureError(f"record {n}: {problem}")
    ts = raw["ts"]
    if isinstance(ts, str):
        when = dt.datetime.fromisoformat(ts)
        if when.tzinfo is None:
            when = when.replace(tzinfo=tz)  # a naive time is local to the site
        ts = when.timestamp()
    payload = raw["payload"]
    body = payload.encode("utf-8") if isinstance(payload, str) else orjson.dumps(payload)
    return _Event(
        ts=float(ts),
        line=n,
        topic=raw["topic"],
        payload=body,
        situation=raw.get("situation"),
        label=str(raw.get("label") or ""),
        needs_staff=bool(raw.get("needs_staff", False)),
        retain=raw.get("retain", False),
        dup=raw.get("dup", False),
    )


@dataclasses.dataclass(slots=True)
class _AlertInfo:
    kind: str
    room: str
    rule: str
    critical: bool
    raised_at: float
    fate: str = "still open at the end"
    situations: set[str] = dataclasses.field(default_factory=set)


@dataclasses.dataclass(slots=True)
class _Situation:
    label: str
    needs_staff: bool
    first: float
    messages: int = 0
    raised_signals: int = 0


class _Run:
    """One replay: the engine, the decoders, the virtual clock and the tallies."""

    def __init__(self, config: Config, *, start: float, accept_after: float | None) -> None:
        self.config = config
        self.start = start
        self.now = start
        self.accept_after = accept_after
        self._line = 0
        self._sub = 0
        self._alert_n = 0
        self.engine = Engine(config, new_id=self._alert_id, now=start)
        self.routes: list[tuple[str, Decoder]] = []
        for name, src in config.sources.items():
            decoder: Decoder
            if src.decoder == "zigbee2mqtt":
                decoder = Zigbee2MqttDecoder(
                    source=name, config=config, base_topic=src.base_topic, new_id=self._signal_id
                )
            elif src.decoder == "espa":
                decoder = EspaDecoder(source=name, config=config, new_id=self._signal_id)
            else:
                decoder = JsonDecoder(source=name, config=config, new_id=self._signal_id)
            if src.type == "espa":
                # The daemon records each received call as espa/<link>/<call address>.
                filters: tuple[str, ...] = (f"espa/{src.link}/+",)
            elif src.type == "simulator":
                filters = src.topics or (f"{src.base_topic}/#",)
            else:
                filters = src.topics
            self.routes.extend((f, decoder) for f in filters)
        self.pending: list[tuple[float, int, str, str]] = []  # (t, n, handset, alert id)
        self._pending_n = 0
        self.messages = 0
        self.decode_errors: Counter[str] = Counter()
        self.unmatched = 0
        self.duplicates = 0
        # (topic, payload) -> when last seen, for redeliveries the daemon drops as repeats.
        self._seen: dict[tuple[str, bytes], float] = {}
        self.signals_in = 0
        self.raised_signals = 0
        self.naive = 0
        self.alerts: dict[str, _AlertInfo] = {}
        self.group_of: dict[str, str] = {}
        self.first_ring: dict[str, float] = {}
        self.rang: set[str] = set()
        self.attended: set[str] = set()  # alerts muted because staff were in the room
        self.by_handset: Counter[str] = Counter()
        self.deliveries: Counter[str] = Counter()
        self.muted: dict[str, Counter[tuple[str, str]]] = {
            "suppressed": Counter(),
            "cancelled": Counter(),
            "resolved": Counter(),
        }
        self.escalations: Counter[str] = Counter()
        self.situations: dict[str, _Situation] = {}
        self.ended = False  # past the capture's last message
        self.ignored: set[str] = set()

    def _alert_id(self) -> str:
        self._alert_n += 1
        return f"A{self._alert_n}"

    def _signal_id(self, topic: str, payload: bytes, now: float) -> str:
        # Unique per capture line, so two identical payloads never share a content id.
        self._sub += 1
        return f"L{self._line}" if self._sub == 1 else f"L{self._line}.{self._sub}"

    def advance(self, t: float) -> None:
        """Fire every engine deadline and staff response due at or before `t`, in time order."""
        stuck = 0
        while True:
            deadline = self.engine.next_deadline()
            answer = self.pending[0][0] if self.pending else math.inf
            if deadline is not None and deadline <= t and deadline <= answer:
                when = max(deadline, self.now)
                stuck = stuck + 1 if when == self.now else 0
                if stuck > _MAX_STUCK_TICKS:
                    raise RuntimeError(f"engine deadline stuck at {deadline} (tick clears nothing)")
                self.now = when
                self._take(self.engine.tick(when), None)
            elif answer <= t:
                when, _, handset, alert_id = heapq.heappop(self.pending)
                self.now = max(when, self.now)
                if self.engine.alert(alert_id) is None:
                    continue  # the alert ended before anyone answered
                response = Response(handset, alert_id, ResponseKind.ACCEPT, self.now)
                self._take(self.engine.handle_response(response, self.now), None)
            else:
                break
        self.now = max(self.now, t)

    def message(self, event: _Event) -> None:
        """Decode one capture line and hand its signals to the engine."""
        self.messages += 1
        self._line = event.line
        self._sub = 0
        situation = None
        if event.situation is not None:
            situation = event.situation
            sit = self.situations.get(situation)
            if sit is None:
                sit = _Situation(event.label, event.needs_staff, event.ts)
                self.situations[situation] = sit
            sit.needs_staff = sit.needs_staff or event.needs_staff
            sit.messages += 1
        decoder = next((d for f, d in self.routes if topic_matches(f, event.topic)), None)
        if decoder is None:
            self.unmatched += 1
            return
        key = (event.topic, event.payload)
        first = self._seen.get(key)
        self._seen[key] = event.ts
        if event.dup and first is not None and event.ts - first <= DUP_WINDOW:
            # The daemon finds the first copy in its journal and drops this one.
            self.duplicates += 1
            return
        try:
            signals = decoder.decode(event.topic, event.payload, self.now, retained=event.retain)
        except DecodeError as exc:
            self.decode_errors[exc.reason] += 1
            return
        for signal in signals:
            self.signals_in += 1
            if signal.state is SignalState.RAISED:
                self.raised_signals += 1
                if self.config.kind(signal.kind).role != "presence":
                    self.naive += 1
                if situation is not None:
                    self.situations[situation].raised_signals += 1
            self._take(self.engine.handle_signal(signal, self.now), situation)

    def _take(self, out: Outcome, situation: str | None) -> None:
        for tr in out.transitions:
            alert = tr.alert
            if tr.event == "raised" and self.ended and alert.kind in _SILENCE_KINDS:
                self.ignored.add(alert.id)
            if alert.id in self.ignored:
                continue
            if tr.event == "raised":
                self.alerts[alert.id] = _AlertInfo(
                    alert.kind, alert.room, alert.rule, alert.critical, tr.ts
                )
            info = self.alerts.get(alert.id)
            if info is not None and situation is not None and tr.event in ("raised", "repeated"):
                info.situations.add(situation)
            if tr.event == "grouped":
                self.group_of[alert.id] = tr.detail
            elif tr.event == "escalated":
                self.escalations[tr.reason or "timeout"] += 1
            if tr.reason == "presence":
                self.attended.add(alert.id)
            if tr.event in self.muted and tr.reason:
                self.muted[tr.event][(tr.reason, alert.rule)] += 1
            if info is not None and tr.event in _TERMINAL_EVENTS:
                why = ", ".join(x for x in (tr.reason, tr.detail) if x)
                info.fate = f"{tr.event} at +{tr.ts - self.start:.0f} s" + (
                    f" ({why})" if why else ""
                )
        for d in out.deliveries:
            if d.alert_id in self.ignored:
                continue
            self.deliveries[d.action] += 1
            if d.action in INTERRUPTING:
                self.by_handset[d.handset] += 1
            if d.action == "ring":
                self._rang(d.alert_id, d.handset)
            elif d.action == "batch":
                for item in d.payload.get("alerts", ()):
                    self._rang(str(item["alert_id"]), d.handset)

    def _rang(self, alert_id: str, handset: str) -> None:
        self.rang.add(alert_id)
        self.first_ring.setdefault(alert_id, self.now)
        if self.accept_after is not None:
            self._pending_n += 1
            heapq.heappush(
                self.pending, (self.now + self.accept_after, self._pending_n, handset, alert_id)
            )

    def report(self, *, end: float, labelled: bool) -> LoadReport:
        """Summarise the run."""
        critical = [a_id for a_id, info in self.alerts.items() if info.critical]
        delays = tuple(
            self.first_ring[a] - self.alerts[a].raised_at for a in critical if a in self.first_ring
        )
        missed: list[MissedSituation] = []
        needing = 0
        if labelled:
            served: set[str] = set()
            alerts_of: dict[str, list[str]] = {}
            for a_id, info in self.alerts.items():
                leader = self.group_of.get(a_id)
                # Staff already in the room (presence) attend a situation without a ring.
                rang = (
                    a_id in self.rang
                    or a_id in self.attended
                    or (leader is not None and leader in self.rang)
                )
                for sid in info.situations:
                    alerts_of.setdefault(sid, []).append(a_id)
                    if rang:
                        served.add(sid)
            for sid, sit in self.situations.items():
                if not sit.needs_staff:
                    continue
                needing += 1
                if sid not in served:
                    missed.append(self._missed(sid, sit, alerts_of.get(sid, [])))
        return LoadReport(
            config=self.config.source_file,
            timezone=self.config.site.timezone,
            accept_after=self.accept_after,
            start=self.start,
            end=end,
            messages=self.messages,
            decode_errors=dict(self.decode_errors),
            unmatched_topics=self.unmatched,
            duplicates=self.duplicates,
            signals_in=self.signals_in,
            raised_signals=self.raised_signals,
            naive_interruptions=self.naive,
            alerts_raised=len(self.alerts),
            alerts_rung=len(self.rang),
            interruptions=sum(self.by_handset.values()),
            interruptions_by_handset=dict(self.by_handset),
            deliveries=dict(self.deliveries),
            suppressed=dict(self.muted["suppressed"]),
            cancelled=dict(self.muted["cancelled"]),
            resolved=dict(self.muted["resolved"]),
            escalations=sum(self.escalations.values()),
            escalations_by_reason=dict(self.escalations),
            critical_alerts=len(critical),
            critical_delays=delays,
            critical_unrung=len(critical) - len(delays),
            ignored_after_end=len(self.ignored),
            situations=len(self.situations) if labelled else None,
            situations_needing_staff=needing if labelled else None,
            missed=tuple(missed),
        )

    def _missed(self, sid: str, sit: _Situation, alert_ids: list[str]) -> MissedSituation:
        fates: list[str] = []
        for a_id in alert_ids:
            info = self.alerts[a_id]
            rule = f", rule {info.rule}" if info.rule else ""
            fates.append(
                f"{a_id} {info.kind} room {info.room}: raised at "
                f"+{info.raised_at - self.start:.0f} s{rule}; {info.fate}"
            )
        if not fates:
            fates.append(
                f"no alert raised ({sit.raised_signals} raised signal(s) "
                f"from {sit.messages} message(s))"
            )
        return MissedSituation(sid, sit.label, sit.first - self.start, tuple(fates))


def _local(ts: float, timezone: str) -> str:
    return dt.datetime.fromtimestamp(ts, tz=ZoneInfo(timezone)).strftime("%Y-%m-%d %H:%M")


def _num(value: float | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    return f"{value:.2f}"


def _row(label: str, value: float | None, extra: str = "") -> str:
    return f"  {label:<36}{_num(value):>7}{extra}"


def _signed(value: float) -> str:
    text = _num(value)
    return text if value <= 0 else f"+{text}"


def _inline(counts: Mapping[str, int]) -> str:
    if not counts:
        return ""
    return "   (" + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) + ")"


def _tail(text: str, width: int) -> str:
    return text if len(text) < width else "…" + text[-(width - 2) :]
