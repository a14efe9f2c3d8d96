"""Configuration: YAML parsed once into frozen types that reject unknown keys."""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from gateway.errors import ConfigError
from gateway.model import Priority
from gateway.typedload import Located, Problems, compose, load

EX_CONFIG = 78
PriorityName = Literal["low", "medium", "high", "critical"]


def _empty() -> Mapping[str, Any]:
    return MappingProxyType({})


@dataclasses.dataclass(frozen=True, slots=True)
class SiteConfig:
    """The care home this gateway serves."""

    name: str = "alertgw"
    timezone: str = "Europe/Oslo"


@dataclasses.dataclass(frozen=True, slots=True)
class MqttConfig:
    """The MQTT broker connection shared by MQTT sources and handsets."""

    host: str = "127.0.0.1"
    port: int = 1883
    client_id: str = "alertgw"
    keepalive: int = 30
    username: str | None = None
    password_file: str | None = None
    password_env: str | None = None
    status_topic: str = "alertgw/status"
    backoff_initial: float = 0.5
    backoff_max: float = 30.0


@dataclasses.dataclass(frozen=True, slots=True)
class SourceConfig:
    """One signal source: an MQTT subscription with a decoder, or the built-in simulator."""

    type: Literal["mqtt", "simulator"] = "mqtt"
    decoder: Literal["zigbee2mqtt", "json"] = "json"
    topics: tuple[str, ...] = ()
    base_topic: str = "zigbee2mqtt"
    speed: float = 60.0
    seed: int = 1
    loop: bool = True


@dataclasses.dataclass(frozen=True, slots=True)
class DeviceConfig:
    """A sensor or call point: where it is, what it means, how to read it."""

    room: str
    kind: str
    source: str | None = None
    name: str | None = None
    field: str | None = None
    raised: Any = None  # the field value that means active; None: the kind's default
    tags: tuple[str, ...] = ()
    alert_on_startup: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class KindConfig:
    """How alerts of one kind look and how urgent they are."""

    priority: PriorityName = "medium"
    critical: bool = False
    technical: bool = False
    text: str = "{kind} in room {room}"
    edge: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class ZoneConfig:
    """A group of rooms covered together by night staff."""

    rooms: tuple[str, ...] = ()
    name: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class HandsetConfig:
    """A staff handset and the channel that reaches it."""

    channel: Literal["mqtt", "console"] = "mqtt"
    address: str | None = None
    name: str | None = None
    auto_accept: float | None = None  # console only: accept rings after N s (demo)


@dataclasses.dataclass(frozen=True, slots=True)
class RouteConfig:
    """Which alerts go to which handsets (first matching route wins)."""

    handsets: tuple[str, ...]
    kinds: tuple[str, ...] = ("*",)
    zones: tuple[str, ...] = ("*",)
    name: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class JournalConfig:
    """Where the journal and outbox live."""

    path: str = "var/alertgw.db"
    retention_days: float = 90.0
    synchronous: Literal["normal", "full"] = "full"


@dataclasses.dataclass(frozen=True, slots=True)
class MetricsConfig:
    """The Prometheus endpoint."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 9464


@dataclasses.dataclass(frozen=True, slots=True)
class LoggingConfig:
    """Log level and rendering."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


@dataclasses.dataclass(frozen=True, slots=True)
class Config:
    """The whole alertgw configuration."""

    site: SiteConfig = dataclasses.field(default_factory=SiteConfig)
    mqtt: MqttConfig | None = None
    sources: Mapping[str, SourceConfig] = dataclasses.field(default_factory=_empty)
    kinds: Mapping[str, KindConfig] = dataclasses.field(default_factory=_empty)
    zones: Mapping[str, ZoneConfig] = dataclasses.field(default_factory=_empty)
    devices: Mapping[str, DeviceConfig] = dataclasses.field(default_factory=_empty)
    handsets: Mapping[str, HandsetConfig] = dataclasses.field(default_factory=_empty)
    routing: tuple[RouteConfig, ...] = ()
    journal: JournalConfig = dataclasses.field(default_factory=JournalConfig)
    metrics: MetricsConfig = dataclasses.field(default_factory=MetricsConfig)
    logging: LoggingConfig = dataclasses.field(default_factory=LoggingConfig)
    source_file: str = dataclasses.field(default="<memory>", compare=False)
    _zone_of: Mapping[str, str] = dataclasses.field(
        init=False, repr=False, compare=False, default_factory=_empty
    )

    def __post_init__(self) -> None:
        """Index rooms by zone once, at load."""
        index = {room: zone for zone, zc in self.zones.items() for room in zc.rooms}
        object.__setattr__(self, "_zone_of", MappingProxyType(index))

    def kind(self, name: str) -> KindConfig:
        """Return the settings for kind `name` (built-in default when not configured)."""
        found = self.kinds.get(name)
        if found is not None:
            return found
        return BUILTIN_KINDS.get(name, _DEFAULT_KIND)

    def zone_of(self, room: str) -> str:
        """Return the zone a room belongs to ('' when none)."""
        return self._zone_of.get(room, "")

    def priority(self, kind: str) -> Priority:
        """Return the Priority enum for a kind."""
        return Priority[self.kind(kind).priority.upper()]


_DEFAULT_KIND = KindConfig()

# Kinds a technician gets without writing them. Critical ones are the safety class: they
# ring at once on every routed handset and no rule may delay or silence them.
BUILTIN_KINDS: Mapping[str, KindConfig] = MappingProxyType(
    {
        "fall": KindConfig(priority="critical", critical=True, text="FALL room {room}"),
        "epilepsy": KindConfig(priority="critical", critical=True, text="SEIZURE room {room}"),
        "smoke": KindConfig(priority="critical", critical=True, text="SMOKE room {room}"),
        "emergency": KindConfig(
            priority="critical", critical=True, edge=True, text="EMERGENCY room {room}"
        ),
        "pull_cord": KindConfig(priority="high", text="Call room {room}"),
        "bed_exit": KindConfig(priority="high", text="Out of bed room {room}"),
        "door_open": KindConfig(priority="medium", text="Door open room {room}"),
        "water_leak": KindConfig(priority="medium", text="Water leak room {room}"),
        "presence": KindConfig(priority="low", text="Staff present room {room}"),
        "motion": KindConfig(priority="low", text="Motion room {room}"),
        "battery_low": KindConfig(priority="low", technical=True, text="Battery low {device}"),
        "device_offline": KindConfig(
            priority="low", technical=True, text="Sensor offline {device}"
        ),
        "bridge_offline": KindConfig(
            priority="medium", technical=True, text="Sensor bridge offline ({device})"
        ),
    }
)


_ID = re.compile(r"^[A-Za-z0-9_.:\-]+$")


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate a config file; raise ConfigError listing every problem."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{p}: cannot read: {exc.strerror}"]) from None
    return parse_config(text, filename=str(p))


def parse_config(text: str, *, filename: str = "<memory>") -> Config:
    """Validate YAML text into a Config; raise ConfigError listing every problem."""
    try:
        tree = compose(text, filename=filename)
    except ValueError as exc:
        raise ConfigError([str(exc)]) from None
    problems = Problems(filename)
    config = load(Config, tree, problems)
    if problems.lines or config is None:
        raise ConfigError(problems.lines or [f"{filename}: not a configuration"])
    config = dataclasses.replace(config, source_file=filename)
    _check_references(config, tree, problems)
    if problems.lines:
        raise ConfigError(problems.lines)
    return config


def _line(tree: Located, *path: str | int) -> int:
    node = tree
    for part in path:
        value = node.value
        nxt: Located | None = None
        if isinstance(value, dict) and isinstance(part, str):
            nxt = value.get(part)
        elif isinstance(value, list) and isinstance(part, int) and part < len(value):
            nxt = value[part]
        if nxt is None:
            break
        node = nxt
    return node.line


def _check_references(config: Config, tree: Located, problems: Problems) -> None:
    """Cross-field checks: every name a section uses must exist."""
    rooms_in_zones: set[str] = set()
    for zone, zc in config.zones.items():
        for room in zc.rooms:
            if room in rooms_in_zones:
                problems.add(
                    _line(tree, "zones", zone, "rooms"),
                    f"zones.{zone}.rooms",
                    f"room {room!r} is in more than one zone",
                )
            rooms_in_zones.add(room)
    for section in ("sources", "devices", "handsets", "zones", "kinds"):
        for key in getattr(config, section):
            if not _ID.match(key):
                problems.add(
                    _line(tree, section, key),
                    f"{section}.{key}",
                    "ids may hold only letters, digits and _ . : -",
                )
    needs_mqtt = [n for n, s in config.sources.items() if s.type == "mqtt"] + [
        n for n, h in config.handsets.items() if h.channel == "mqtt"
    ]
    if needs_mqtt and config.mqtt is None:
        problems.add(
            1, "mqtt", f"missing broker section; needed by {', '.join(sorted(needs_mqtt))}"
        )
    for name, src in config.sources.items():
        if src.type == "mqtt" and not src.topics:
            problems.add(
                _line(tree, "sources", name),
                f"sources.{name}.topics",
                "an mqtt source needs at least one topic filter",
            )
        if src.type == "simulator" and src.speed <= 0:
            problems.add(
                _line(tree, "sources", name, "speed"),
                f"sources.{name}.speed",
                "expected a positive number",
            )
    for dev, dc in config.devices.items():
        if rooms_in_zones and dc.room not in rooms_in_zones:
            problems.add(
                _line(tree, "devices", dev, "room"),
                f"devices.{dev}.room",
                f"room {dc.room!r} is in no zone (known rooms: {_few(rooms_in_zones)})",
            )
        if dc.source is not None and dc.source not in config.sources:
            problems.add(
                _line(tree, "devices", dev, "source"),
                f"devices.{dev}.source",
                f"unknown source {dc.source!r} (known: {_few(config.sources)})",
            )
        if dc.kind not in config.kinds and dc.kind not in BUILTIN_KINDS:
            problems.add(
                _line(tree, "devices", dev, "kind"),
                f"devices.{dev}.kind",
                f"unknown kind {dc.kind!r} (define it under kinds:, or use one of: "
                f"{_few(BUILTIN_KINDS)})",
            )
    for name, kc in config.kinds.items():
        builtin = BUILTIN_KINDS.get(name)
        if builtin is not None and builtin.critical and not kc.critical:
            problems.add(
                _line(tree, "kinds", name),
                f"kinds.{name}.critical",
                f"{name!r} is a safety-critical kind and cannot be made non-critical",
            )
        try:
            kc.text.format(kind="", room="", device="", zone="", count=0)
        except (KeyError, IndexError, ValueError) as exc:
            problems.add(
                _line(tree, "kinds", name, "text"),
                f"kinds.{name}.text",
                f"bad template ({exc}); fields: {{kind}} {{room}} {{device}} {{zone}} {{count}}",
            )
    known_kinds = set(config.kinds) | set(BUILTIN_KINDS)
    for i, route in enumerate(config.routing):
        for j, handset in enumerate(route.handsets):
            if handset not in config.handsets:
                problems.add(
                    _line(tree, "routing", i, "handsets", j),
                    f"routing[{i}].handsets[{j}]",
                    f"unknown handset {handset!r} (known: {_few(config.handsets)})",
                )
        for j, kind in enumerate(route.kinds):
            if kind != "*" and kind not in known_kinds:
                problems.add(
                    _line(tree, "routing", i, "kinds", j),
                    f"routing[{i}].kinds[{j}]",
                    f"unknown kind {kind!r}",
                )
        for j, zone in enumerate(route.zones):
            if zone != "*" and zone not in config.zones:
                problems.add(
                    _line(tree, "routing", i, "zones", j),
                    f"routing[{i}].zones[{j}]",
                    f"unknown zone {zone!r} (known: {_few(config.zones)})",
                )
    if config.handsets and not config.routing:
        problems.add(1, "routing", "no routes: no alert would reach any handset")
    try:
        import zoneinfo  # noqa: PLC0415 - only needed for this check

        zoneinfo.ZoneInfo(config.site.timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        problems.add(
            _line(tree, "site", "timezone"),
            "site.timezone",
            f"unknown IANA time zone {config.site.timezone!r}",
        )


def _few(names: Any) -> str:  # noqa: ANN401 - any iterable of names
    items = sorted(names)
    shown = ", ".join(items[:8])
    return shown + (", …" if len(items) > 8 else "") if items else "none"


def handset_topic(handset_id: str, hc: HandsetConfig) -> str:
    """Return the base topic of an MQTT handset."""
    return hc.address or f"alertgw/handset/{handset_id}"


def read_password(mc: MqttConfig) -> str | None:
    """Return the broker password from its file or environment variable, never from YAML."""
    if mc.password_file:
        return Path(mc.password_file).read_text(encoding="utf-8").strip()
    if mc.password_env:
        return os.environ.get(mc.password_env)
    return None
