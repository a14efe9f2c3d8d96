"""Configuration: YAML parsed once into frozen types that reject unknown keys."""

from __future__ import annotations

import dataclasses
import datetime as dt
import importlib.util
import ipaddress
import os
import re
import ssl
import string
import urllib.parse
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, Literal

from gateway.errors import ConfigError
from gateway.model import Priority
from gateway.typedload import Located, Problems, Range, compose, load

EX_CONFIG = 78
PriorityName = Literal["low", "medium", "high", "critical"]
DecoderName = Literal["zigbee2mqtt", "json", "espa"]
# Numbers that load but cannot work (a zero rate divides by zero, port 0 never connects)
# are config problems with a line, not surprises at run time.
Seconds = Annotated[float, Range(0, above=True, unit="seconds")]  # a period or timeout: > 0
Delay = Annotated[float, Range(0, unit="seconds")]  # a wait that may be zero
Port = Annotated[int, Range(1, 65535)]
Count = Annotated[int, Range(0)]


def _empty() -> Mapping[str, Any]:
    return MappingProxyType({})


@dataclasses.dataclass(frozen=True, slots=True)
class SiteConfig:
    """The care home this gateway serves."""

    name: str = "alertgw"
    timezone: str = "Europe/Oslo"


@dataclasses.dataclass(frozen=True, slots=True)
class TlsConfig:
    """TLS to the broker: the CA to trust and, optionally, our client certificate."""

    ca_file: str
    cert_file: str | None = None
    key_file: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class MqttConfig:
    """The MQTT broker connection shared by MQTT sources and handsets."""

    host: str = "127.0.0.1"
    port: Port = 1883
    client_id: str = "alertgw"
    keepalive: Annotated[int, Range(5, 65535)] = 30  # MQTT's 0 (off) hides a dead link
    username: str | None = None
    password_file: str | None = None
    password_env: str | None = None
    tls: TlsConfig | None = None
    status_topic: str = "alertgw/status"
    # MQTT 5 lets the broker say in its PUBACK that it refused a message (an ACL, a quota)
    # or had nobody to give it to: such a ring fails and moves its alert on. Under 3.1.1
    # Mosquitto acks either and drops it, so the ring counts as sent.
    protocol: Literal["3.1.1", "5"] = "5"
    watch_broker_drops: bool = True  # raise a technical alarm when $SYS drop counters rise
    backoff_initial: Seconds = 0.5
    backoff_max: Seconds = 30.0


@dataclasses.dataclass(frozen=True, slots=True)
class EspaLinkConfig:
    """One ESPA 4.4.4 serial line (a device path or a pyserial URL such as socket://h:p)."""

    port: str
    role: Literal["control_station", "station"] = "station"
    local_address: str = "2"
    remote_address: str = "1"
    baudrate: Annotated[int, Range(1)] = 9600
    bytesize: Literal[7, 8] = 7
    parity: Literal["N", "E", "O"] = "E"
    stopbits: Literal[1, 2] = 2
    encoding: Literal["iso646-no", "latin-1", "ascii"] = "iso646-no"
    mask_high_bit: bool = False
    display_limit: Annotated[int, Range(1)] = 40
    poll_interval: Seconds = 0.5
    reply_timeout: Seconds = 2.0
    recovery_timeout: Seconds = 10.0
    max_retransmissions: Count = 2
    link_down_after: Seconds = 30.0  # no answer this long: the peer counts as down
    offline_poll_interval: Seconds = 5.0  # how often a down peer is tried again
    backoff_initial: Seconds = 0.5
    backoff_max: Seconds = 30.0


@dataclasses.dataclass(frozen=True, slots=True)
class SourceConfig:
    """One signal source: an MQTT subscription, an ESPA line, or the built-in simulator."""

    type: Literal["mqtt", "simulator", "espa"] = "mqtt"
    decoder: DecoderName = "json"  # by type when not written: see _DECODER_FOR
    link: str | None = None
    topics: tuple[str, ...] = ()
    base_topic: str = "zigbee2mqtt"
    speed: Annotated[float, Range(0, above=True)] = 60.0
    seed: int = 1
    loop: bool = True
    # Per-topic fair share for sources whose topic is one device (zigbee2mqtt): beyond this
    # rate a topic is coalesced to its newest message, so a babbling sensor starves nobody.
    max_rate: Annotated[float, Range(0, above=True)] = 20.0
    max_burst: Annotated[float, Range(1)] = 40.0


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
    role: Literal["alert", "presence"] = "alert"
    # Latching (IEC 60601-1-8): once it rang, the alarm stays until a handset accepts or
    # resolves it or staff are in the room, even when its sensor clears first. Unset:
    # critical sensor kinds latch (a seizure that stops before anyone came still needs
    # someone), everything else ends with its condition.
    latching: bool | None = None

    @property
    def latches(self) -> bool:
        """Whether a ringing alert of this kind outlives its condition until acknowledged."""
        if self.latching is not None:
            return self.latching
        return self.critical and not self.edge


@dataclasses.dataclass(frozen=True, slots=True)
class ZoneConfig:
    """A group of rooms covered together by night staff."""

    rooms: tuple[str, ...] = ()
    name: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class HandsetConfig:
    """A staff handset and the channel that reaches it."""

    channel: Literal["mqtt", "console", "espa"] = "mqtt"
    address: str | None = None
    link: str | None = None
    name: str | None = None
    auto_accept: Delay | None = None  # console only: accept rings after N s (demo)
    # mqtt only: the app keeps a retained "online" on <address>/status, with "offline" as
    # its last will; a ring while it is offline counts as failed at once.
    reports_status: bool = False
    # An app that reconnects (a phone roaming between access points) says offline for a
    # moment: its rings still fail over at once, but the handset_offline alarm waits this
    # long for it to come back (Alertmanager's `for:`). 0 raises it at once.
    offline_grace: Delay = 30.0


@dataclasses.dataclass(frozen=True, slots=True)
class RouteConfig:
    """Which alerts go to which handsets (first matching route wins)."""

    handsets: tuple[str, ...]
    kinds: tuple[str, ...] = ("*",)
    zones: tuple[str, ...] = ("*",)
    name: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class ScheduleConfig:
    """A daily window in the site's time zone, e.g. night 22:00-07:00 (may cross midnight)."""

    start: str
    end: str
    days: tuple[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"], ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class MatchConfig:
    """What a rule applies to; every given field must match (lists mean any of)."""

    kinds: tuple[str, ...] = ()
    states: tuple[Literal["raised", "cleared"], ...] = ()
    devices: tuple[str, ...] = ()
    rooms: tuple[str, ...] = ()
    zones: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    not_tags: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    schedule: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class RepeatConfig:
    """Restlessness: the `count`-th raise within `within` rings without its hold-off.

    A hold-off hides a resident turning over; a resident who gets up three times in half an
    hour, back in bed each time before the hold-off ends, needs staff too.
    """

    count: Annotated[int, Range(2, why="the first raise is the hold-off's own")]
    within: Seconds
    # The handset's text for such a ring ({count} is the raises counted); default: the kind's.
    text: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class RuleConfig:
    """How matching alerts are treated; the first matching rule wins."""

    name: str
    match: MatchConfig = dataclasses.field(default_factory=MatchConfig)
    action: Literal["ring", "suppress"] = "ring"
    hold_off: Delay = 0.0
    repeat: RepeatConfig | None = None
    group: Delay = 0.0
    priority: PriorityName | None = None
    escalation: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class InhibitConfig:
    """While a source alert is active, target alerts sharing the `equal` labels are muted."""

    source_kinds: tuple[str, ...]
    target_kinds: tuple[str, ...]
    equal: tuple[Literal["room", "zone", "device"], ...] = ("room",)
    name: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class ShiftConfig:
    """Who carries which zone during a schedule; the first handset is the zone's primary."""

    schedule: str
    assign: Mapping[str, tuple[str, ...]]
    name: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class OverrideConfig:
    """A one-off roster change between two local times (ISO 8601, site time zone)."""

    start: str
    end: str
    zone: str
    handsets: tuple[str, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class RosterConfig:
    """Shifts assigning zones to handsets, with overrides and a failsafe group."""

    shifts: tuple[ShiftConfig, ...] = ()
    overrides: tuple[OverrideConfig, ...] = ()
    failsafe: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class StepConfig:
    """One escalation step: who rings, and how long before the next step."""

    to: Literal["primary", "zone", "all_on_duty", "failsafe"]
    after: Delay = 60.0


@dataclasses.dataclass(frozen=True, slots=True)
class LadderConfig:
    """An escalation ladder; its last step must be `failsafe`."""

    steps: tuple[StepConfig, ...]
    reminder: Delay = 900.0  # 0: no reminder after an accept
    # Nurse-call "accept timeout" (IHE ACM escalation): an accepted alert still open after
    # this many unanswered reminders is nobody's again and rings the next step.
    reopen_after: Count = dataclasses.field(
        default=2,
        metadata={
            "doc": "Unanswered reminders after which an accepted alert is reopened and rings"
            " the next step, its accepter included (0: never; needs reminder > 0; not"
            " technical alarms)"
        },
    )


@dataclasses.dataclass(frozen=True, slots=True)
class TechnicalConfig:
    """Where technical alarms (battery, silent sensors, links) go instead of night handsets."""

    handsets: tuple[str, ...] = ()
    digest: bool = True
    digest_at: str = "07:30"


@dataclasses.dataclass(frozen=True, slots=True)
class RateLimitConfig:
    """At most `max` non-critical rings per handset per `per` seconds; the rest are batched."""

    max: Annotated[int, Range(1)] = 6
    per: Seconds = 300.0


@dataclasses.dataclass(frozen=True, slots=True)
class SupervisionConfig:
    """Expected report interval per device kind (seconds); silent past it is an alarm."""

    kinds: Mapping[str, Seconds] = dataclasses.field(default_factory=_empty)
    default: Seconds | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class PresenceConfig:
    """How staff presence behaves; presence expires if its clear is never seen."""

    timeout: Seconds = 3600.0
    # A call button pressed while staff are in the room is theirs: a nurse asking a
    # colleague for help (nurse call's assistance call). It rings everyone on duty at
    # once. False suppresses it like any other call while presence is on.
    assistance: bool = True
    assistance_text: str = "ASSISTANCE room {room}"


@dataclasses.dataclass(frozen=True, slots=True)
class RecordConfig:
    """Record inbound MQTT traffic as a replayable capture (JSON lines)."""

    path: str


@dataclasses.dataclass(frozen=True, slots=True)
class JournalConfig:
    """Where the journal and outbox live."""

    path: str = "var/alertgw.db"
    retention_days: Annotated[float, Range(0, above=True, unit="days")] = 90.0
    synchronous: Literal["normal", "full"] = "full"
    # On SIGTERM, wait this long for the outbox to empty; the unit's TimeoutStopSec=30 must
    # leave room for it plus the offline status (2 s), or systemd kills the drain.
    drain_timeout: Annotated[
        float, Range(0, 25, why="the systemd unit stops alertgw after 30 s", unit="seconds")
    ] = 10.0
    # Gather decisions this long into one transaction (handset messages do not wait for it;
    # the broker's acknowledgement of a signal does).
    commit_delay: Annotated[
        float, Range(0, 1, why="signals stay unacknowledged that long", unit="seconds")
    ] = 0.01


@dataclasses.dataclass(frozen=True, slots=True)
class MetricsConfig:
    """The Prometheus endpoint."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: Port = 9464


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
    espa: Mapping[str, EspaLinkConfig] = dataclasses.field(default_factory=_empty)
    schedules: Mapping[str, ScheduleConfig] = dataclasses.field(default_factory=_empty)
    rules: tuple[RuleConfig, ...] = ()
    inhibit: tuple[InhibitConfig, ...] = ()
    roster: RosterConfig | None = None
    escalation: Mapping[str, LadderConfig] = dataclasses.field(default_factory=_empty)
    technical: TechnicalConfig = dataclasses.field(default_factory=TechnicalConfig)
    rate_limit: RateLimitConfig | None = None
    supervision: SupervisionConfig = dataclasses.field(default_factory=SupervisionConfig)
    presence: PresenceConfig = dataclasses.field(default_factory=PresenceConfig)
    record: RecordConfig | None = None
    journal: JournalConfig = dataclasses.field(default_factory=JournalConfig)
    metrics: MetricsConfig = dataclasses.field(default_factory=MetricsConfig)
    logging: LoggingConfig = dataclasses.field(default_factory=LoggingConfig)
    source_file: str = dataclasses.field(
        default="<memory>", compare=False, metadata={"internal": True}
    )
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
        "pull_cord": KindConfig(priority="high", edge=True, text="Call room {room}"),
        "bed_exit": KindConfig(priority="high", text="Out of bed room {room}"),
        "door_open": KindConfig(priority="medium", text="Door open room {room}"),
        "water_leak": KindConfig(priority="medium", text="Water leak room {room}"),
        "presence": KindConfig(priority="low", role="presence", text="Staff in room {room}"),
        "motion": KindConfig(priority="low", text="Motion room {room}"),
        "battery_low": KindConfig(priority="low", technical=True, text="Battery low {device}"),
        "device_offline": KindConfig(
            priority="low", technical=True, text="Sensor offline {device}"
        ),
        "bridge_offline": KindConfig(
            priority="medium", technical=True, text="Sensor bridge offline ({device})"
        ),
        "device_silent": KindConfig(
            priority="low", technical=True, text="Sensor silent {device} room {room}"
        ),
        "safety_sensor_silent": KindConfig(
            priority="high", text="SAFETY SENSOR SILENT {device} room {room}"
        ),
        "no_staff_on_duty": KindConfig(priority="high", text="Nobody on duty for zone {zone}"),
        # An on-duty handset app that said it stopped (or whose last will did): its zone's
        # rings fail over to others, and the failsafe group should know someone is deaf.
        "handset_offline": KindConfig(priority="high", text="Handset {device} offline"),
        "link_down": KindConfig(priority="medium", technical=True, text="Link down: {device}"),
        # ESPA record 8 (transmitter failure), or every call failing in a row: the paging
        # system answers the line, but its handsets get nothing.
        "paging_fault": KindConfig(
            priority="high", technical=True, text="Paging system fault ({device})"
        ),
        # An ESPA call (already ACKed on the line) from a call point not under devices:.
        "unknown_call_point": KindConfig(
            priority="high", technical=True, text="Unknown call point {device}"
        ),
        "broker_dropping": KindConfig(
            priority="high", technical=True, text="MQTT broker dropping messages ({device})"
        ),
    }
)


_ID = re.compile(r"^[A-Za-z0-9_.:\-]+$")


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate a config file; raise ConfigError listing every problem."""
    p = Path(path)
    return parse_config(read_yaml_text(p), filename=str(p))


def read_yaml_text(p: Path) -> str:
    """A YAML file's text; ConfigError naming the file (and line) if it cannot be read."""
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ConfigError([f"{p}: cannot read: {exc.strerror}"]) from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        # An editor that saved Latin-1 ("ø" as one byte): name the line, not a traceback.
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            [f"{p}:{line}: not UTF-8 (byte 0x{raw[exc.start]:02x}); save the file as UTF-8"]
        ) from None


def parse_config(text: str, *, filename: str = "<memory>") -> Config:
    """Validate YAML text into a Config; raise ConfigError listing every problem."""
    try:
        tree = compose(text, filename=filename)
    except ValueError as exc:
        raise ConfigError([str(exc)]) from None
    if tree.value is None or tree.value == {}:
        # A truncated or emptied file would run a gateway that watches nothing and rings nobody.
        raise ConfigError([f"{filename}: the configuration is empty; was the file truncated?"])
    problems = Problems(filename)
    config = load(Config, tree, problems)
    if problems.lines or config is None:
        raise ConfigError(problems.lines or [f"{filename}: not a configuration"])
    config = dataclasses.replace(
        config,
        source_file=filename,
        sources=_default_decoders(config.sources, tree),
        kinds=_merged_kinds(config.kinds, tree),
    )
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
            # A key may be written with dashes (`max-rate`); the typed field has underscores.
            nxt = value.get(part) or value.get(part.replace("_", "-"))
        elif isinstance(value, list) and isinstance(part, int) and part < len(value):
            nxt = value[part]
        if nxt is None:
            break
        node = nxt
    return node.line


def _written(tree: Located, *path: str) -> bool:
    """Whether the key at `path` is in the file, even with an empty value."""
    node: Located | None = tree
    for part in path:
        value = node.value if node is not None else None
        if not isinstance(value, dict):
            return False
        node = value.get(part) or value.get(part.replace("_", "-"))
        if node is None:
            return False
    return True


# The decoder a source type reads with when `decoder:` is not written. Only MQTT has a
# choice; an ESPA line or the simulator given the JSON default would reject every call.
_DECODER_FOR: Mapping[str, DecoderName] = MappingProxyType(
    {"mqtt": "json", "espa": "espa", "simulator": "zigbee2mqtt"}
)


def _default_decoders(sources: Mapping[str, SourceConfig], tree: Located) -> Mapping[str, Any]:
    out = {
        name: src
        if "decoder" in _keys(tree, "sources", name)
        else dataclasses.replace(src, decoder=_DECODER_FOR[src.type])
        for name, src in sources.items()
    }
    return MappingProxyType(out)


def _merged_kinds(kinds: Mapping[str, KindConfig], tree: Located) -> Mapping[str, KindConfig]:
    """Overrides of a built-in kind keep every built-in value they do not write.

    Replacing the whole kind would silently drop its priority and text: `epilepsy:
    {latching: false}` would ring a medium "epilepsy in room 106" instead of a SEIZURE.
    """
    out: dict[str, KindConfig] = {}
    for name, kc in kinds.items():
        builtin = BUILTIN_KINDS.get(name)
        written = {key.replace("-", "_") for key in _keys(tree, "kinds", name)}
        out[name] = (
            kc
            if builtin is None
            else dataclasses.replace(builtin, **{f: getattr(kc, f) for f in written})
        )
    return MappingProxyType(out)


def _keys(tree: Located, *path: str) -> set[str]:
    """The keys written in the mapping at `path`, dashes read as underscores (or none)."""
    node: Located | None = tree
    for part in path:
        value = node.value if node is not None else None
        node = value.get(part) if isinstance(value, dict) else None
    value = node.value if node is not None else None
    return {str(k).replace("-", "_") for k in value} if isinstance(value, dict) else set()


_DECODERS_OF: Mapping[str, tuple[DecoderName, ...]] = MappingProxyType(
    {"mqtt": ("json", "zigbee2mqtt"), "espa": ("espa",), "simulator": ("zigbee2mqtt",)}
)


def _is_z2m(src: SourceConfig) -> bool:
    return src.type == "mqtt" and src.decoder == "zigbee2mqtt"


# Source keys that only some source types read. Written on another type they would be
# silently ignored: a technician's max_rate on a JSON topic that carries many devices
# would look like protection it is not.
_SOURCE_ONLY: Mapping[str, tuple[Callable[[SourceConfig], bool], str]] = MappingProxyType(
    {
        "max_rate": (_is_z2m, "zigbee2mqtt sources (one device per topic)"),
        "max_burst": (_is_z2m, "zigbee2mqtt sources (one device per topic)"),
        "base_topic": (lambda s: s.decoder == "zigbee2mqtt", "the zigbee2mqtt decoder"),
        "topics": (lambda s: s.type == "mqtt", "mqtt sources"),
        "link": (lambda s: s.type == "espa", "espa sources"),
        "speed": (lambda s: s.type == "simulator", "simulator sources"),
        "seed": (lambda s: s.type == "simulator", "simulator sources"),
        "loop": (lambda s: s.type == "simulator", "simulator sources"),
    }
)


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
    mc = config.mqtt
    if mc is not None:
        if mc.password_file and mc.password_env:
            problems.add(
                _line(tree, "mqtt", "password_env"),
                "mqtt.password_env",
                "give password_file or password_env, not both",
            )
        if (mc.password_file or mc.password_env) and not mc.username:
            problems.add(_line(tree, "mqtt"), "mqtt.username", "a password needs a username")
        if mc.tls is not None:
            _check_tls(mc.tls, tree, problems)
        elif _written(tree, "mqtt", "tls"):
            # Every line under `tls:` commented out: meant TLS, would have been plain TCP.
            problems.add(
                _line(tree, "mqtt", "tls"),
                "mqtt.tls",
                "is empty: give ca_file for TLS, or remove the line for plain TCP",
            )
        if mc.password_file and not Path(mc.password_file).is_file():
            problems.add(
                _line(tree, "mqtt", "password_file"),
                "mqtt.password_file",
                f"file not found: {mc.password_file}",
            )
        elif mc.password_file:
            # The daemon reads it at each connect; `check` must not pass what cannot be read.
            # Never the file's content in the message: it is a secret.
            try:
                read_password(mc)
            except OSError as exc:
                why = f"cannot read {mc.password_file}: {exc.strerror or exc}"
                problems.add(_line(tree, "mqtt", "password_file"), "mqtt.password_file", why)
            except UnicodeDecodeError:
                why = f"{mc.password_file} is not UTF-8 text"
                problems.add(_line(tree, "mqtt", "password_file"), "mqtt.password_file", why)
    files = [("journal", config.journal.path)]
    if config.record is not None:
        files.append(("record", config.record.path))
    for section, file in files:
        # It fails only when the daemon starts (exit 1, restarted by systemd in a loop).
        if not file.strip():
            problems.add(_line(tree, section, "path"), f"{section}.path", "expected a file path")
    if config.journal.path.strip() and Path(config.journal.path).is_dir():
        problems.add(
            _line(tree, "journal", "path"),
            "journal.path",
            f"{config.journal.path} is a directory; name a file in it, such as"
            f" {Path(config.journal.path) / 'alertgw.db'}",
        )
    needs_mqtt = [f"sources.{n}" for n, s in config.sources.items() if s.type == "mqtt"] + [
        # `channel: mqtt` is the default: a handset written as `night1:` alone needs a broker.
        f"handsets.{n}"
        + ("" if "channel" in _keys(tree, "handsets", n) else " (channel: mqtt is the default)")
        for n, h in config.handsets.items()
        if h.channel == "mqtt"
    ]
    if needs_mqtt and config.mqtt is None:
        problems.add(1, "mqtt", f"missing broker section; needed by {', '.join(needs_mqtt)}")
    # A topic the broker refuses ends alertgw's whole session (paho raises on a bad filter):
    # one typo in one handset would take every MQTT sensor and handset down in a loop.
    topics: list[tuple[tuple[str | int, ...], str, bool]] = []
    if config.mqtt is not None:
        topics.append((("mqtt", "status_topic"), config.mqtt.status_topic, False))
    for name, src in config.sources.items():
        if src.type == "mqtt":
            topics += [(("sources", name, "topics", i), t, True) for i, t in enumerate(src.topics)]
            if src.decoder == "zigbee2mqtt":
                topics.append((("sources", name, "base_topic"), src.base_topic, False))
    for name, hc in config.handsets.items():
        if hc.channel == "mqtt":
            topics.append((("handsets", name, "address"), handset_topic(name, hc), False))
    for where, topic, is_filter in topics:
        if (problem := _topic_problem(topic, is_filter=is_filter)) is not None:
            problems.add(_line(tree, *where), _path(*where), f"{topic!r}: {problem}")
    link_reader: dict[str, str] = {}
    for name, src in config.sources.items():
        if src.type == "espa" and (src.link is None or src.link not in config.espa):
            problems.add(
                _line(tree, "sources", name),
                f"sources.{name}.link",
                f"an espa source needs `link:` naming one of espa: {_few(config.espa)}",
            )
        elif src.type == "espa" and src.link is not None:
            # One line has one reader; the daemon refused a second one only at start (exit 1,
            # a systemd restart loop), after `check` had passed the file.
            first = link_reader.setdefault(src.link, name)
            if first != name:
                problems.add(
                    _line(tree, "sources", name, "link"),
                    f"sources.{name}.link",
                    f"espa line {src.link!r} is already read by source {first!r};"
                    " one source per line",
                )
        if src.type == "mqtt" and not src.topics:
            problems.add(
                _line(tree, "sources", name),
                f"sources.{name}.topics",
                "an mqtt source needs at least one topic filter",
            )
        given = _keys(tree, "sources", name)
        if src.decoder not in _DECODERS_OF[src.type]:
            problems.add(
                _line(tree, "sources", name, "decoder"),
                f"sources.{name}.decoder",
                f"{src.type} sources read with decoder: {' or '.join(_DECODERS_OF[src.type])}",
            )
        for key, (applies, to_what) in _SOURCE_ONLY.items():
            if key in given and not applies(src):
                problems.add(
                    _line(tree, "sources", name, key),
                    f"sources.{name}.{key}",
                    f"applies only to {to_what}; this source would ignore it",
                )
    for dev, dc in config.devices.items():
        # Zones all written `rooms: []` still route by zone: every device would be in none.
        if config.zones and dc.room not in rooms_in_zones:
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
    template_problem = _template_problem(config.presence.assistance_text)
    if template_problem is not None:
        problems.add(
            _line(tree, "presence", "assistance_text"),
            "presence.assistance_text",
            f"bad template ({template_problem}); fields: {{kind}} {{room}} {{device}}"
            " {zone} {count}",
        )
    for name, kc in config.kinds.items():
        builtin = BUILTIN_KINDS.get(name)
        if builtin is not None and builtin.critical and not kc.critical:
            problems.add(
                _line(tree, "kinds", name, "critical"),
                f"kinds.{name}.critical",
                f"{name!r} is a safety-critical kind and cannot be made non-critical",
            )
        if kc.critical:
            _check_critical_kind(name, kc, tree, problems)
        template_problem = _template_problem(kc.text)
        if template_problem is not None:
            problems.add(
                _line(tree, "kinds", name, "text"),
                f"kinds.{name}.text",
                f"bad template ({template_problem}); fields: {{kind}} {{room}} {{device}}"
                " {zone} {count}",
            )
    for name, hc in config.handsets.items():
        # A key the channel ignores is a typo or a misunderstanding: the technician believes
        # the handset is reached (or auto-accepts) in a way it is not.
        ignored = {
            "link": hc.link is not None and hc.channel != "espa",
            "auto_accept": hc.auto_accept is not None and hc.channel != "console",
            "address": hc.address is not None and hc.channel == "console",
            "reports_status": hc.reports_status and hc.channel != "mqtt",
        }
        for key in (k for k, bad in ignored.items() if bad):
            problems.add(
                _line(tree, "handsets", name, key),
                f"handsets.{name}.{key}",
                f"`{key}:` means nothing for a {hc.channel} handset",
            )
        if hc.channel == "espa":
            if hc.link is None or hc.link not in config.espa:
                problems.add(
                    _line(tree, "handsets", name),
                    f"handsets.{name}.link",
                    f"an espa handset needs `link:` naming one of: {_few(config.espa)}",
                )
            if not hc.address:
                problems.add(
                    _line(tree, "handsets", name),
                    f"handsets.{name}.address",
                    "an espa handset needs its call address (pager/DECT number)",
                )
            elif not re.fullmatch(r"[!-~]{1,16}", hc.address):
                # Record 1 holds at most 16 characters (§5): a longer one was cut to another
                # pager's number, and control characters were silently dropped.
                problems.add(
                    _line(tree, "handsets", name),
                    f"handsets.{name}.address",
                    "an ESPA call address is 1-16 printable ASCII characters without spaces"
                    " (the pager, handset or group number)",
                )
    for name, lc in config.espa.items():
        for key in ("local_address", "remote_address"):
            if not re.fullmatch(r"[0-9]", getattr(lc, key)):
                problems.add(
                    _line(tree, "espa", name, key),
                    f"espa.{name}.{key}",
                    "an ESPA station address is one digit 0-9",
                )
        if lc.local_address == lc.remote_address:
            problems.add(
                _line(tree, "espa", name),
                f"espa.{name}",
                "local_address and remote_address must differ",
            )
        if lc.encoding == "latin-1" and lc.bytesize == 7:
            problems.add(
                _line(tree, "espa", name, "encoding"),
                f"espa.{name}.encoding",
                "latin-1 needs bytesize: 8 (a 7-bit line drops bit 7 of every Nordic letter);"
                " use iso646-no on a 7-bit line",
            )
        port_problem = _serial_port_problem(lc.port)
        if port_problem:
            problems.add(_line(tree, "espa", name, "port"), f"espa.{name}.port", port_problem)
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
    if not config.handsets and (config.devices or config.sources):
        problems.add(1, "handsets", "no handset configured: no alert could ring anyone")
    if config.handsets and not config.routing and config.roster is None:
        problems.add(1, "routing", "no routing and no roster: no alert would reach any handset")
    _check_rules(config, tree, problems)
    hosts = [("metrics", config.metrics.host)] if config.metrics.enabled else []
    if config.mqtt is not None:
        hosts.append(("mqtt", config.mqtt.host))
    for section, host in hosts:
        if not _is_host(host):
            problems.add(
                _line(tree, section, "host"),
                f"{section}.host",
                f"expected an IP address or a host name, got {host!r}",
            )
    try:
        import zoneinfo  # noqa: PLC0415 - only needed for this check

        zoneinfo.ZoneInfo(config.site.timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):  # 'Europe' is a directory
        problems.add(
            _line(tree, "site", "timezone"),
            "site.timezone",
            f"unknown IANA time zone {config.site.timezone!r}",
        )


def _check_critical_kind(name: str, kc: KindConfig, tree: Located, problems: Problems) -> None:
    """Refuse settings that would silence or downgrade a critical kind's alarms."""
    # Each of these passed `check` and left a fall ringing nobody, or ringing as a lesser call.
    refused = (
        (
            "technical",
            kc.technical,
            "technical alarms ring only the technician's handsets (or nobody), never the staff"
            " on duty",
        ),
        (
            "role",
            kc.role != "alert",
            f"role {kc.role!r} never rings: it counts as staff in the room and stands down the"
            " room's other alerts; a critical kind needs role: alert",
        ),
        (
            "priority",
            Priority[kc.priority.upper()] < Priority.CRITICAL,
            f"priority {kc.priority!r} would show it as a lesser call; a critical kind rings at"
            " priority critical",
        ),
    )
    for key, bad, why in refused:
        if bad:
            problems.add(
                _line(tree, "kinds", name, key),
                f"kinds.{name}.{key}",
                f"{name!r} is a critical kind: {why}",
            )


_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


def _is_host(host: str) -> bool:
    """An IP address or an RFC 1123 host name (one that fails only at start is a restart loop)."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        labels = host.removesuffix(".").split(".")
        return len(host) <= 253 and all(_HOST_LABEL.fullmatch(label) for label in labels)
    return True


_TEXT_FIELDS = ("kind", "room", "device", "zone", "count")
DISPLAY_LIMIT = 120  # the engine cuts display text to this (engine.TEXT_LIMIT)
_WIDTH = re.compile(r"\d+")


def _template_problem(template: str) -> str | None:
    """What is wrong with a kind's display text template, or None.

    The engine formats it for every alert: `{room.__class__}` would put Python internals on
    a handset, and a width such as `{room:>999999999}` would take the daemon's memory at the
    first alert (display text is cut to 120 characters anyway).
    """
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:  # a brace left open or closed alone
        return str(exc)
    for _, field, spec, _ in parsed:
        if field is None:
            continue
        if field not in _TEXT_FIELDS:
            return f"unknown field {{{field}}}"
        if "{" in (spec or ""):
            return f"a format inside {{{field}:...}} is not supported"
        if any(int(width) > DISPLAY_LIMIT for width in _WIDTH.findall(spec or "")):
            return f"{{{field}:{spec}}} is wider than the {DISPLAY_LIMIT} characters shown"
    try:
        template.format(kind="", room="", device="", zone="", count=0)
    except (KeyError, IndexError, ValueError, AttributeError, TypeError) as exc:
        return str(exc)
    return None


# pyserial URL handlers that are no file: the event loop has nothing to wait on.
_NO_DESCRIPTOR = frozenset({"loop", "cp2110"})


def _serial_port_problem(port: str) -> str | None:
    """What pyserial would refuse about a port path or URL (it raises only when opening)."""
    if "://" not in port:
        if port.startswith("/"):
            return None
        return "expected a device path such as /dev/ttyUSB0, or a URL such as socket://host:port"
    scheme, rest = port.split("://", 1)
    try:
        known = bool(re.fullmatch(r"[a-z0-9_]+", scheme)) and (
            importlib.util.find_spec(f"serial.urlhandler.protocol_{scheme}") is not None
        )
    except ImportError:
        known = False
    if not known:
        return f"unknown URL scheme {scheme!r} (expected socket://host:port, rfc2217://, …)"
    if scheme in _NO_DESCRIPTOR:
        return f"{scheme}:// has no file descriptor to watch (use a device path or socket://)"
    if scheme in ("socket", "rfc2217"):
        try:
            parts = urllib.parse.urlsplit(port)
            usable = bool(parts.hostname) and parts.port is not None
        except ValueError:  # a port out of range, or a bracket left open: socket://[::1:5
            usable = False
        if not usable:
            return f"expected {scheme}://host:port, got {scheme}://{rest}"
    return None


_HHMM = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


def parse_hhmm(text: str) -> tuple[int, int]:
    """Parse 'HH:MM' into (hour, minute); raise ValueError otherwise."""
    m = _HHMM.match(text)
    if m is None:
        raise ValueError(f"expected HH:MM, got {text!r}")
    return int(m.group(1)), int(m.group(2))


def _check_rules(config: Config, tree: Located, problems: Problems) -> None:
    """Checks for schedules, rules, inhibition, roster, escalation and technical routing."""
    known_kinds = set(config.kinds) | set(BUILTIN_KINDS)
    critical = {k for k in known_kinds if config.kind(k).critical}
    rooms = {r for z in config.zones.values() for r in z.rooms} | {
        d.room for d in config.devices.values()
    }

    def need(names: tuple[str, ...], known: Any, where: tuple[str | int, ...], what: str) -> None:  # noqa: ANN401
        for j, name in enumerate(names):
            if name != "*" and name not in known:
                problems.add(
                    _line(tree, *where, j),
                    _path(*where, j),
                    f"unknown {what} {name!r} (known: {_few(known)})",
                )

    for name, sc in config.schedules.items():
        for key in ("start", "end"):
            try:
                parse_hhmm(getattr(sc, key))
            except ValueError as exc:
                problems.add(
                    _line(tree, "schedules", name, key), f"schedules.{name}.{key}", str(exc)
                )
    seen_rules: set[str] = set()
    for i, rule in enumerate(config.rules):
        where: tuple[str | int, ...] = ("rules", i)
        if rule.name in seen_rules:
            problems.add(
                _line(tree, *where, "name"),
                _path(*where, "name"),
                f"duplicate rule name {rule.name!r}",
            )
        seen_rules.add(rule.name)
        m = rule.match
        need(m.kinds, known_kinds, (*where, "match", "kinds"), "kind")
        need(m.zones, config.zones, (*where, "match", "zones"), "zone")
        need(m.rooms, rooms, (*where, "match", "rooms"), "room")
        need(m.devices, config.devices, (*where, "match", "devices"), "device")
        need(m.sources, config.sources, (*where, "match", "sources"), "source")
        if m.schedule is not None and m.schedule not in config.schedules:
            problems.add(
                _line(tree, *where, "match", "schedule"),
                _path(*where, "match", "schedule"),
                f"unknown schedule {m.schedule!r} (known: {_few(config.schedules)})",
            )
        if m.states and "raised" not in m.states:
            problems.add(
                _line(tree, *where, "match", "states"),
                _path(*where, "match", "states"),
                "rules decide what happens when an alert is raised; one for cleared signals "
                "only never applies",
            )
        shadow = next(
            (j for j, earlier in enumerate(config.rules[:i]) if _covers(earlier.match, m)), None
        )
        if shadow is not None:
            problems.add(
                _line(tree, *where),
                _path(*where),
                f"rule {rule.name!r} never applies: rule {config.rules[shadow].name!r} "
                f"(rules[{shadow}]) above it matches everything it does, and the first "
                "matching rule wins",
            )
        if rule.escalation is not None and rule.escalation not in config.escalation:
            problems.add(
                _line(tree, *where, "escalation"),
                _path(*where, "escalation"),
                f"unknown escalation ladder {rule.escalation!r}",
            )
        if rule.repeat is not None and (rule.hold_off <= 0 or rule.action == "suppress"):
            problems.add(
                _line(tree, *where, "repeat"),
                _path(*where, "repeat"),
                f"rule {rule.name!r}: repeat counts raises its hold-off cancelled; "
                + (
                    "a suppressing rule holds nothing off"
                    if rule.action == "suppress"
                    else "set hold_off, or remove repeat"
                ),
            )
        if rule.repeat is not None and rule.repeat.text is not None:
            template_problem = _template_problem(rule.repeat.text)
            if template_problem is not None:
                problems.add(
                    _line(tree, *where, "repeat", "text"),
                    _path(*where, "repeat", "text"),
                    f"bad template ({template_problem}); fields: {{kind}} {{room}} {{device}}"
                    " {zone} {count}",
                )
        delays = (
            rule.action == "suppress"
            or rule.hold_off > 0
            or rule.group > 0
            or (rule.priority is not None and rule.priority != "critical")
        )
        hit = critical if (not m.kinds or "*" in m.kinds) else critical & set(m.kinds)
        if delays and hit:
            problems.add(
                _line(tree, *where),
                _path(*where),
                f"rule {rule.name!r} would delay, group, lower or suppress critical kind(s) "
                f"{', '.join(sorted(hit))}; critical alerts ring at once — list the kinds "
                "this rule is for",
            )
    for i, inh in enumerate(config.inhibit):
        where = ("inhibit", i)
        need(inh.source_kinds, known_kinds, (*where, "source_kinds"), "kind")
        need(inh.target_kinds, known_kinds, (*where, "target_kinds"), "kind")
        hit = critical if "*" in inh.target_kinds else critical & set(inh.target_kinds)
        if hit:
            problems.add(
                _line(tree, *where),
                _path(*where),
                f"inhibit rule would mute critical kind(s) {', '.join(sorted(hit))}",
            )
    roster = config.roster
    if roster is not None:
        for i, shift in enumerate(roster.shifts):
            where = ("roster", "shifts", i)
            if shift.schedule not in config.schedules:
                problems.add(
                    _line(tree, *where, "schedule"),
                    _path(*where, "schedule"),
                    f"unknown schedule {shift.schedule!r}",
                )
            for zone, handsets in shift.assign.items():
                if zone not in config.zones:
                    problems.add(
                        _line(tree, *where, "assign", zone),
                        _path(*where, "assign", zone),
                        f"unknown zone {zone!r} (known: {_few(config.zones)})",
                    )
                need(handsets, config.handsets, (*where, "assign", zone), "handset")
        for i, ov in enumerate(roster.overrides):
            where = ("roster", "overrides", i)
            bounds: list[float] = []
            for key in ("start", "end"):
                try:
                    bounds.append(_local_epoch(getattr(ov, key), config.site.timezone))
                except ValueError:
                    problems.add(
                        _line(tree, *where, key),
                        _path(*where, key),
                        "expected a local date and time like 2026-12-24T22:00",
                    )
            if len(bounds) == 2 and bounds[1] <= bounds[0]:
                # Christmas night written 24 Dec 22:00 -> 24 Dec 07:00 would never apply,
                # nor 02:10 -> 02:50 on the night the clocks skip from 02:00 to 03:00.
                written = [dt.datetime.fromisoformat(t) for t in (ov.start, ov.end)]
                naive = all(t.tzinfo is None for t in written)
                skipped = (
                    " (the clocks skip that hour)" if naive and written[0] < written[1] else ""
                )
                problems.add(
                    _line(tree, *where, "end"),
                    _path(*where, "end"),
                    f"ends at {ov.end}, not after its start {ov.start}: it would never apply"
                    + skipped,
                )
            if ov.zone not in config.zones:
                problems.add(
                    _line(tree, *where, "zone"), _path(*where, "zone"), f"unknown zone {ov.zone!r}"
                )
            need(ov.handsets, config.handsets, (*where, "handsets"), "handset")
        need(roster.failsafe, config.handsets, ("roster", "failsafe"), "handset")
        if not roster.failsafe and not config.escalation:
            # The built-in ladder ends at the failsafe group; without one, an alert in a
            # roster gap would ring nobody at every step.
            problems.add(
                _line(tree, "roster"),
                "roster",
                "a roster needs a failsafe group: set roster.failsafe",
            )
    for name, ladder in config.escalation.items():
        where = ("escalation", name)
        if not ladder.steps or ladder.steps[-1].to != "failsafe":
            problems.add(
                _line(tree, *where, "steps"),
                _path(*where, "steps"),
                "the last step of an escalation ladder must be `to: failsafe`",
            )
        if roster is None or not roster.failsafe:
            problems.add(
                _line(tree, *where),
                _path(*where),
                "escalation needs a failsafe group: set roster.failsafe",
            )
    need(config.technical.handsets, config.handsets, ("technical", "handsets"), "handset")
    try:
        parse_hhmm(config.technical.digest_at)
    except ValueError as exc:
        problems.add(_line(tree, "technical", "digest_at"), "technical.digest_at", str(exc))
    for kind in config.supervision.kinds:
        if kind not in known_kinds:
            problems.add(
                _line(tree, "supervision", "kinds", kind),
                f"supervision.kinds.{kind}",
                f"unknown kind {kind!r}",
            )


def _local_epoch(text: str, timezone: str) -> float:
    """Epoch of an ISO date and time; without an offset it is local to the site, and a
    time the spring change skips is the jump, as the roster reads it."""
    import zoneinfo  # noqa: PLC0415 - only needed for this check

    from gateway.schedule import wall_epoch  # noqa: PLC0415 - schedule imports this module

    value = dt.datetime.fromisoformat(text)
    if value.tzinfo is not None:
        return value.timestamp()
    try:
        return wall_epoch(value.replace(tzinfo=zoneinfo.ZoneInfo(timezone)))
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return value.replace(tzinfo=dt.UTC).timestamp()  # the bad zone has its own line


def _path(*parts: str | int) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def _topic_problem(topic: str, *, is_filter: bool) -> str | None:
    """What the broker would refuse in an MQTT topic (or subscription filter), if anything."""
    if not topic:
        return "an MQTT topic cannot be empty"
    if "\0" in topic or len(topic.encode()) > 65_535:
        return "not a valid MQTT topic (a NUL character, or too long)"
    if not is_filter:
        if "+" in topic or "#" in topic:
            return "a topic alertgw publishes to cannot hold the wildcards + or #"
        return None
    levels = topic.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            return "`#` must be a whole level, and the last one"
        if "+" in level and level != "+":
            return "`+` must be a whole level (a/+/b)"
    return None


def _covers(a: MatchConfig, b: MatchConfig) -> bool:
    """Whether every alert `b` matches is matched by `a` too (each field on its own)."""

    def wider(x: tuple[str, ...], y: tuple[str, ...]) -> bool:
        return not x or "*" in x or (bool(y) and "*" not in y and set(y) <= set(x))

    return (
        all(
            wider(getattr(a, f), getattr(b, f))
            for f in ("kinds", "states", "devices", "rooms", "zones", "sources")
        )
        # A device must carry every tag a rule names: fewer tags match more.
        and set(a.tags) <= set(b.tags)
        and set(a.not_tags) <= set(b.not_tags)
        and (a.schedule is None or a.schedule == b.schedule)
    )


def _few(names: Any) -> str:  # noqa: ANN401 - any iterable of names
    items = sorted(names)
    shown = ", ".join(items[:8])
    return shown + (", …" if len(items) > 8 else "") if items else "none"


def handset_topic(handset_id: str, hc: HandsetConfig) -> str:
    """Return the base topic of an MQTT handset."""
    return hc.address or f"alertgw/handset/{handset_id}"


def tls_context(tls: TlsConfig | None) -> ssl.SSLContext | None:
    """The TLS context a broker config asks for (None for plain TCP).

    Raises OSError (ssl.SSLError included) for files that are unreadable or hold no usable
    certificate or key.
    """
    if tls is None:
        return None
    context = ssl.create_default_context(cafile=tls.ca_file)
    if tls.cert_file:
        context.load_cert_chain(tls.cert_file, tls.key_file)
    return context


def _check_tls(tls: TlsConfig, tree: Located, problems: Problems) -> None:
    missing = False
    for key in ("ca_file", "cert_file", "key_file"):
        value = getattr(tls, key)
        if value and not Path(value).is_file():
            missing = True
            problems.add(
                _line(tree, "mqtt", "tls", key), f"mqtt.tls.{key}", f"file not found: {value}"
            )
    if bool(tls.cert_file) != bool(tls.key_file):
        problems.add(_line(tree, "mqtt", "tls"), "mqtt.tls", "cert_file and key_file go together")
    elif not missing:
        # A file that is there but holds no certificate passed `check`, and the daemon died
        # building its TLS context.
        try:
            ssl.create_default_context(cafile=tls.ca_file)
        except OSError as exc:
            why = f"{tls.ca_file} holds no CA certificate that loads ({exc.strerror or exc})"
            problems.add(_line(tree, "mqtt", "tls", "ca_file"), "mqtt.tls.ca_file", why)
            return
        try:
            tls_context(tls)
        except OSError as exc:
            why = (
                f"{tls.cert_file} and {tls.key_file} do not load as a pair ({exc.strerror or exc})"
            )
            problems.add(_line(tree, "mqtt", "tls", "cert_file"), "mqtt.tls.cert_file", why)


def read_password(mc: MqttConfig) -> str | None:
    """Return the broker password from its file or environment variable, never from YAML."""
    if mc.password_file:
        return Path(mc.password_file).read_text(encoding="utf-8").strip()
    if mc.password_env:
        password = os.environ.get(mc.password_env)
        if password is None:
            # Connecting without it would be refused by a broker that needs it, and let
            # the gateway in unauthenticated (and unnoticed) on one that does not.
            raise PasswordUnsetError(f"environment variable {mc.password_env} is not set")
        return password
    return None


class PasswordUnsetError(LookupError):
    """`mqtt.password_env` names a variable the daemon's environment does not hold."""
