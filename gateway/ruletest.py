"""`alertgw test-rules`: scenario files that pin what a config rings, like `promtool test rules`.

A scenario file names a config (relative to itself), a local start time in the site's time
zone and a list of scenarios. Each scenario feeds signals (built directly, not decoded),
handset responses and handset app statuses (`handsets:`, for `reports_status` handsets) to a
fresh `Engine` on a virtual clock, then checks the deliveries:

- `expect`: every item must be matched by its own delivery, at exactly `at` when given;
- `expect_none`: no delivery may match, between `after` and `until` when given.

Times are seconds after the start. A response's `alert` is `last` (the last alert that rang
the handset) or an index: `0` is the first alert that rang the handset, `1` the second, ….
Steps at the same time run statuses first, then signals, then responses, each in file
order. A scenario runs until `until` (default: 300 s past the latest time it mentions).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from gateway.config import BUILTIN_KINDS, Config, load_config, read_yaml_text
from gateway.engine import Engine, Outcome
from gateway.errors import ConfigError
from gateway.model import Response, ResponseKind, Signal, SignalState
from gateway.typedload import Located, Problems, Range, compose, load

DEFAULT_TAIL = 300.0
MAX_SECONDS = 31 * 86_400.0
# Seconds after the scenario's start. A clock time pasted here (1795554005) would tick the
# virtual clock through decades of deadlines, and a negative one ran at 0 without a word.
Seconds = Annotated[
    float, Range(0, MAX_SECONDS, unit="seconds", why="after the start, not a clock time")
]
_MAX_STUCK_TICKS = 100
DeliveryType = Literal["ring", "update", "cancel", "batch", "digest"]


@dataclasses.dataclass(frozen=True, slots=True)
class SignalStep:
    """A signal from a configured device `at` seconds after the start."""

    at: Seconds
    device: str
    state: Literal["raised", "cleared", "report"] = "raised"
    kind: str | None = None  # default: the device's kind


@dataclasses.dataclass(frozen=True, slots=True)
class ResponseStep:
    """A handset's answer `at` seconds after the start."""

    at: Seconds
    handset: str
    response: Literal["accept", "reject", "resolve"]
    alert: Literal["last"] | int = "last"


@dataclasses.dataclass(frozen=True, slots=True)
class StatusStep:
    """A handset app's retained status (or last will) `at` seconds after the start."""

    at: Seconds
    handset: str
    status: Literal["online", "offline"]


@dataclasses.dataclass(frozen=True, slots=True)
class Expectation:
    """A delivery that must happen."""

    handset: str
    type: DeliveryType
    at: Seconds | None = None
    kind: str | None = None
    room: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Absence:
    """Deliveries that must not happen (handset `*` means any handset)."""

    handset: str
    type: DeliveryType | None = None
    kind: str | None = None
    room: str | None = None
    after: Seconds | None = None  # exclusive, as is `until`
    until: Seconds | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Scenario:
    """Inputs on a virtual clock and the deliveries they must (not) cause."""

    name: str
    start: str | None = None  # overrides the file's start
    until: Seconds | None = None
    signals: tuple[SignalStep, ...] = ()
    responses: tuple[ResponseStep, ...] = ()
    handsets: tuple[StatusStep, ...] = ()
    expect: tuple[Expectation, ...] = ()
    expect_none: tuple[Absence, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class RuleTestFile:
    """A scenario file."""

    config: str
    start: str
    scenarios: tuple[Scenario, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class Got:
    """One delivery a scenario produced, in seconds after its start."""

    at: float
    handset: str
    type: str
    alert_id: str
    kinds: tuple[str, ...]
    rooms: tuple[str, ...]

    def describe(self, width: int = 0, type_width: int = 0) -> str:
        """`45 s ring bed_exit room 102`, time and type padded to the given widths."""
        what = ", ".join(
            f"{k} room {r}" if r else k for k, r in zip(self.kinds, self.rooms, strict=True)
        )
        text = f"{_secs(self.at):>{width}} {self.type:<{type_width}}"
        return text + (f" {what}" if what else "")


def run_file(path: str | Path) -> tuple[int, int, str]:
    """Run every scenario in a file; return (passed, failed, readable output)."""
    p = Path(path)
    try:
        spec, tree = _parse_file(p)
        config = load_config(p.parent / spec.config)
    except ConfigError as exc:
        return 0, 1, "\n".join([*exc.problems, f"FAILED {p}: cannot run"])
    problems = Problems(str(p))
    _check(spec, tree, config, problems)
    if problems.lines:
        return 0, 1, "\n".join([*problems.lines, f"FAILED {p}: cannot run"])
    tz = ZoneInfo(config.site.timezone)
    passed = failed = 0
    out: list[str] = []
    for i, scenario in enumerate(spec.scenarios):
        start = _epoch(scenario.start or spec.start, tz)
        errors, got = run_scenario(scenario, config, start=start)
        line = _line(tree, "scenarios", i)
        if not errors:
            passed += 1
            out.append(f"ok      {scenario.name}")
            continue
        failed += 1
        out.append(f'FAILED  scenario "{scenario.name}" ({p}:{line})')
        out.extend(f"  {_located(tree, i, e)}" for e in errors)
        out.extend(_got_table(scenario, got))
    out.append(f"{p}: {passed} passed, {failed} failed")
    return passed, failed, "\n".join(out)


def run_scenario(
    scenario: Scenario, config: Config, *, start: float
) -> tuple[list[tuple[str, int, str]], list[Got]]:
    """Run one scenario; return its failures as (section, index, message) and the deliveries."""
    # Devices the scenario never mentions are taken as reporting normally: otherwise every
    # scenario longer than a supervision interval rings "sensor silent" for each of them,
    # and an expectation without kind or room passes on those rings.
    simulated = {s.device for s in scenario.signals}
    runner = _Runner(config, start, unsupervised=frozenset(config.devices) - simulated)
    errors: list[tuple[str, int, str]] = []
    # At equal times a status goes first: an app that went offline "at 60" is offline for
    # the call at 60.
    steps: list[tuple[float, int, int, StatusStep | SignalStep | ResponseStep]] = [
        (h.at, 0, i, h) for i, h in enumerate(scenario.handsets)
    ]
    steps += [(s.at, 1, i, s) for i, s in enumerate(scenario.signals)]
    steps += [(r.at, 2, i, r) for i, r in enumerate(scenario.responses)]
    steps.sort(key=lambda s: (s[0], s[1], s[2]))
    for at, _, index, step in steps:
        runner.advance(start + at)
        if isinstance(step, StatusStep):
            runner.status(step)
            continue
        if isinstance(step, SignalStep):
            runner.signal(step)
            continue
        refused = runner.respond(step)
        if refused is not None:
            errors.append(("responses", index, refused))
    runner.advance(start + _horizon(scenario))
    got = runner.got
    matched = _matching(
        [[n for n, g in enumerate(got) if _expected(exp, g)] for exp in scenario.expect]
    )
    for i, exp in enumerate(scenario.expect):
        if i not in matched:
            errors.append(("expect", i, f"{_describe_expectation(exp)}: no matching delivery"))
    for i, absence in enumerate(scenario.expect_none):
        bad = [g for g in got if _forbidden(absence, g)]
        if bad:
            errors.append(
                (
                    "expect_none",
                    i,
                    f"{_describe_absence(absence)}: got "
                    + "; ".join(f"{g.describe()} to {g.handset}" for g in bad),
                )
            )
    errors.sort(key=lambda e: (e[0] != "responses", e[0], e[1]))
    return errors, got


# -- running ------------------------------------------------------------------------------


class _Runner:
    """An engine on a virtual clock that records every delivery."""

    def __init__(
        self, config: Config, start: float, *, unsupervised: frozenset[str] = frozenset()
    ) -> None:
        self.config = config
        self.start = start
        self.now = start
        ids = itertools.count(1)
        self.engine = Engine(
            config, new_id=lambda: f"A{next(ids)}", now=start, unsupervised=unsupervised
        )
        self.got: list[Got] = []
        self.rang: dict[str, list[str]] = {}  # handset -> distinct alerts, in ring order
        self._signals = itertools.count(1)
        default_source = next(iter(config.sources), "test-rules")
        self._source = default_source

    def advance(self, t: float) -> None:
        """Fire every timer due at or before `t`."""
        stuck = 0
        while (due := self.engine.next_deadline()) is not None and due <= t:
            when = max(due, self.now)
            stuck = stuck + 1 if when == self.now else 0
            if stuck > _MAX_STUCK_TICKS:
                raise RuntimeError(f"engine deadline stuck at {due} (tick clears nothing)")
            self.now = when
            self._take(self.engine.tick(when))
        self.now = max(self.now, t)

    def signal(self, step: SignalStep) -> None:
        """Hand one signal to the engine."""
        dc = self.config.devices[step.device]
        signal = Signal(
            id=f"S{next(self._signals)}",
            source=dc.source or self._source,
            device=step.device,
            room=dc.room,
            kind=step.kind or dc.kind,
            state=SignalState(step.state),
            ts=self.now,
            received_at=self.now,
        )
        self._take(self.engine.handle_signal(signal, self.now))

    def status(self, step: StatusStep) -> None:
        """Hand one handset app status to the engine."""
        online = step.status == "online"
        self._take(self.engine.handset_status(step.handset, online, self.now))

    def respond(self, step: ResponseStep) -> str | None:
        """Hand one response to the engine; return why it could not be applied."""
        rung = self.rang.get(step.handset, [])
        if step.alert == "last":
            alert_id = rung[-1] if rung else None
        else:
            alert_id = rung[step.alert] if 0 <= step.alert < len(rung) else None
        if alert_id is None:
            return (
                f"{step.response} from {step.handset} at {_secs(step.at)}: no alert "
                f"{step.alert!r} has rung this handset ({len(rung)} so far)"
            )
        kind = ResponseKind(step.response)
        out = self.engine.handle_response(
            Response(step.handset, alert_id, kind, self.now), self.now
        )
        self._take(out)
        if out.rejected is not None:
            return (
                f"{step.response} from {step.handset} at {_secs(step.at)} for alert "
                f"{alert_id} was refused: {out.rejected}"
            )
        return None

    def _take(self, out: Outcome) -> None:
        for d in out.deliveries:
            payload: Mapping[str, Any] = d.payload
            if d.action == "batch":
                items = list(payload.get("alerts", ()))
                kinds = tuple(str(x.get("kind", "")) for x in items)
                rooms = tuple(str(x.get("room", "")) for x in items)
            elif "kind" in payload:
                kinds, rooms = (str(payload["kind"]),), (str(payload.get("room", "")),)
            else:
                kinds, rooms = (), ()
            self.got.append(
                Got(self.now - self.start, d.handset, d.action, d.alert_id, kinds, rooms)
            )
            if d.action in ("ring", "batch"):
                rung = self.rang.setdefault(d.handset, [])
                ids = [str(x["alert_id"]) for x in payload.get("alerts", ())] or [d.alert_id]
                rung.extend(i for i in ids if i not in rung)


def _matching(fits: list[list[int]]) -> set[int]:
    """The items (indexes into `fits`) matched, each to its own delivery, as many as can be.

    First come, first served let "a ring" take the one ring a later "a ring for room 101"
    needed, and the order expectations were written in decided the verdict. Augmenting
    paths (Kuhn's algorithm) find the largest matching; scenarios are small.
    """
    owner: dict[int, int] = {}  # delivery -> item

    def place(item: int, seen: set[int]) -> bool:
        for n in fits[item]:
            if n not in seen:
                seen.add(n)
                if n not in owner or place(owner[n], seen):
                    owner[n] = item
                    return True
        return False

    for item in range(len(fits)):
        place(item, set())
    return set(owner.values())


def _horizon(scenario: Scenario) -> float:
    times = [s.at for s in scenario.signals] + [r.at for r in scenario.responses]
    times += [h.at for h in scenario.handsets]
    times += [e.at for e in scenario.expect if e.at is not None]
    times += [a.until for a in scenario.expect_none if a.until is not None]
    times += [a.after for a in scenario.expect_none if a.after is not None]
    latest = max(times, default=0.0)
    if scenario.until is not None:
        return max(scenario.until, latest)
    return latest + DEFAULT_TAIL


def _fits(handset: str, kind: str | None, room: str | None, g: Got) -> bool:
    return (
        (handset in ("*", g.handset))
        and (kind is None or kind in g.kinds)
        and (room is None or room in g.rooms)
    )


def _expected(exp: Expectation, g: Got) -> bool:
    return (
        g.type == exp.type
        and (exp.at is None or abs(g.at - exp.at) < 1e-6)
        and _fits(exp.handset, exp.kind, exp.room, g)
    )


def _forbidden(absence: Absence, g: Got) -> bool:
    return (
        (absence.type is None or g.type == absence.type)
        and (absence.after is None or g.at > absence.after)
        and (absence.until is None or g.at < absence.until)
        and _fits(absence.handset, absence.kind, absence.room, g)
    )


# -- describing ---------------------------------------------------------------------------


def _secs(value: float) -> str:
    return f"{value:g} s"


def _filters(kind: str | None, room: str | None) -> str:
    parts = ([f"kind {kind}"] if kind else []) + ([f"room {room}"] if room else [])
    return f" ({', '.join(parts)})" if parts else ""


def _describe_expectation(exp: Expectation) -> str:
    when = f" at {_secs(exp.at)}" if exp.at is not None else ""
    return f"{exp.type} to {exp.handset}{when}{_filters(exp.kind, exp.room)}"


def _describe_absence(a: Absence) -> str:
    what = a.type or "delivery"
    to = "any handset" if a.handset == "*" else a.handset
    window = (f" after {_secs(a.after)}" if a.after is not None else "") + (
        f" before {_secs(a.until)}" if a.until is not None else ""
    )
    return f"no {what} to {to}{_filters(a.kind, a.room)}{window}"


def _got_table(scenario: Scenario, got: list[Got]) -> list[str]:
    mentioned = [e.handset for e in scenario.expect] + [a.handset for a in scenario.expect_none]
    mentioned += [r.handset for r in scenario.responses]
    mentioned += [h.handset for h in scenario.handsets]
    handsets = list(dict.fromkeys([*(g.handset for g in got), *mentioned]))
    handsets = sorted(h for h in handsets if h != "*")
    lines = ["  got:"]
    width = max((len(h) for h in handsets), default=0) + 2
    at_width = max((len(_secs(g.at)) for g in got), default=0)
    for h in handsets:
        mine = [g for g in got if g.handset == h]
        if not mine:
            lines.append(f"    {h:<{width}}(nothing)")
        for n, g in enumerate(mine):
            lines.append(f"    {h if n == 0 else '':<{width}}{g.describe(at_width, 6)}".rstrip())
    if not handsets:
        lines.append("    (no deliveries)")
    return lines


def _located(tree: Located, scenario: int, error: tuple[str, int, str]) -> str:
    section, index, message = error
    line = _line(tree, "scenarios", scenario, section, index)
    return f"{section}[{index}] (line {line}): {message}"


# -- parsing ------------------------------------------------------------------------------


def _parse_file(path: Path) -> tuple[RuleTestFile, Located]:
    text = read_yaml_text(path)
    try:
        tree = compose(text, filename=str(path))
    except ValueError as exc:
        raise ConfigError([str(exc)]) from None
    problems = Problems(str(path))
    spec = load(RuleTestFile, tree, problems)
    if problems.lines or spec is None:
        raise ConfigError(problems.lines or [f"{path}: not a rule test file"])
    return spec, tree


def _check(spec: RuleTestFile, tree: Located, config: Config, problems: Problems) -> None:
    """Cross-checks: devices, handsets and kinds must exist in the config, a handset given a
    status must report one (`reports_status`); times must parse.
    """
    tz = ZoneInfo(config.site.timezone)
    known_kinds = set(config.kinds) | set(BUILTIN_KINDS)
    handsets = set(config.handsets)
    # A room no delivery can carry (a typo: `1O1`) made an expect_none pass whatever rang.
    rooms = {d.room for d in config.devices.values()}
    rooms.update(r for z in config.zones.values() for r in z.rooms)

    def bad(message: str, *path: str | int) -> None:
        problems.add(_line(tree, *path), _path(*path), message)

    for path, text in [(("start",), spec.start)] + [
        (("scenarios", i, "start"), s.start) for i, s in enumerate(spec.scenarios) if s.start
    ]:
        try:
            _epoch(text, tz)
        except ValueError:
            bad("expected a local date and time like 2026-11-24T23:00:00", *path)
    if not spec.scenarios:
        bad("expected at least one scenario", "scenarios")
    for i, s in enumerate(spec.scenarios):
        where = ("scenarios", i)
        for j, sig in enumerate(s.signals):
            if sig.device not in config.devices:
                bad(f"unknown device {sig.device!r}", *where, "signals", j, "device")
            if sig.kind is not None and sig.kind not in known_kinds:
                bad(f"unknown kind {sig.kind!r}", *where, "signals", j, "kind")
        for j, resp in enumerate(s.responses):
            if resp.handset not in handsets:
                bad(f"unknown handset {resp.handset!r}", *where, "responses", j, "handset")
        for j, st in enumerate(s.handsets):
            if st.handset not in handsets:
                bad(f"unknown handset {st.handset!r}", *where, "handsets", j, "handset")
            elif not config.handsets[st.handset].reports_status:
                bad(
                    f"handset {st.handset!r} has no `reports_status: true`: the daemon "
                    "ignores its status",
                    *where,
                    "handsets",
                    j,
                    "handset",
                )
        checks: list[tuple[str, tuple[Expectation | Absence, ...]]] = [
            ("expect", s.expect),
            ("expect_none", s.expect_none),
        ]
        for section, items in checks:
            for j, item in enumerate(items):
                if item.handset != "*" and item.handset not in handsets:
                    bad(f"unknown handset {item.handset!r}", *where, section, j, "handset")
                if item.kind is not None and item.kind not in known_kinds:
                    bad(f"unknown kind {item.kind!r}", *where, section, j, "kind")
                if item.room is not None and item.room not in rooms:
                    bad(f"unknown room {item.room!r}", *where, section, j, "room")
        for j, absence in enumerate(s.expect_none):
            if (
                absence.after is not None
                and absence.until is not None
                and absence.after >= absence.until
            ):
                # Both bounds are exclusive: the window holds no time, and the check would
                # pass whatever rang.
                bad(
                    f"after ({absence.after:g}) must be below until ({absence.until:g})",
                    *where,
                    "expect_none",
                    j,
                )
        if not s.expect and not s.expect_none:
            bad("a scenario needs expect or expect_none", *where)


def _epoch(text: str, tz: ZoneInfo) -> float:
    when = dt.datetime.fromisoformat(text)
    if when.tzinfo is None:
        when = when.replace(tzinfo=tz)
    return when.timestamp()


def _line(tree: Located, *path: str | int) -> int:
    node = tree
    for part in path:
        value = node.value
        nxt: Located | None = None
        if isinstance(value, dict) and isinstance(part, str):
            nxt = value.get(part)
        elif isinstance(value, list) and isinstance(part, int) and 0 <= part < len(value):
            nxt = value[part]
        if nxt is None:
            break
        node = nxt
    return node.line


def _path(*parts: str | int) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out
