"""Config loading: frozen types, unknown keys with line and key path, cross-field checks."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import pytest

from gateway import cli
from gateway.config import (
    BUILTIN_KINDS,
    DISPLAY_LIMIT,
    EX_CONFIG,
    Config,
    DeviceConfig,
    RouteConfig,
    handset_topic,
    load_config,
    parse_config,
)
from gateway.engine import TEXT_LIMIT
from gateway.errors import ConfigError
from gateway.model import Priority
from gateway.typedload import MAX_VALUES, Range, json_schema

FILE = "home.yaml"

BASE = """\
site:
  name: Test home
  timezone: Europe/Oslo
mqtt:
  host: 127.0.0.1
  port: 1883
  backoff_max: 10
sources:
  zigbee:
    type: mqtt
    decoder: zigbee2mqtt
    topics: ["zigbee2mqtt/#"]
zones:
  east:
    rooms: [101, "102"]
  west:
    rooms: ["201"]
kinds:
  wander: {priority: high, text: "Wandering {room}"}
devices:
  bed-101:
    room: "101"
    kind: bed_exit
    name: rom101/seng
    tags: [fall_risk]
  door-102: {room: "102", kind: door_open}
  epi-201: {room: "201", kind: epilepsy}
handsets:
  night1: {channel: mqtt}
  night2: {channel: console}
routing:
  - {zones: [east], handsets: [night1]}
  - zones: [west]
    kinds: [epilepsy, wander]
    handsets: [night2]
journal:
  path: var/test.db
"""


def edit(old: str, new: str, text: str = BASE) -> str:
    """Return `text` with exactly one occurrence of `old` replaced."""
    assert text.count(old) == 1, old
    return text.replace(old, new)


def line_of(text: str, needle: str) -> int:
    """Return the 1-based line on which `needle` first appears."""
    return text.count("\n", 0, text.index(needle)) + 1


def problems_of(text: str) -> list[str]:
    """Parse `text`, expect a ConfigError and return its problem lines."""
    with pytest.raises(ConfigError) as info:
        parse_config(text, filename=FILE)
    assert str(info.value) == "\n".join(info.value.problems)
    return info.value.problems


def only_problem(text: str) -> str:
    """Parse `text` and return its single problem line."""
    found = problems_of(text)
    assert len(found) == 1, found
    return found[0]


# --- valid configs -------------------------------------------------------------------------


def test_valid_config_parses_into_typed_values() -> None:
    """A valid file yields a Config with typed, defaulted and coerced values."""
    config = parse_config(BASE, filename=FILE)
    assert config.source_file == FILE
    assert config.site.name == "Test home"
    assert config.mqtt is not None
    assert config.mqtt.port == 1883
    assert config.mqtt.backoff_max == 10.0
    assert isinstance(config.mqtt.backoff_max, float)
    assert config.mqtt.keepalive == 30  # default
    assert config.sources["zigbee"].topics == ("zigbee2mqtt/#",)
    assert config.zones["east"].rooms == ("101", "102")  # YAML ints become string ids
    assert config.devices["bed-101"] == DeviceConfig(
        room="101", kind="bed_exit", name="rom101/seng", tags=("fall_risk",)
    )
    assert config.routing[1] == RouteConfig(
        handsets=("night2",), kinds=("epilepsy", "wander"), zones=("west",)
    )
    assert config.routing[0].kinds == ("*",)
    assert config.journal.path == "var/test.db"


def test_lookup_helpers_use_builtins_and_zones() -> None:
    """kind() falls back to built-ins, zone_of() indexes rooms, priority() maps to the enum."""
    config = parse_config(BASE, filename=FILE)
    assert config.kind("wander").priority == "high"
    assert config.kind("epilepsy") is BUILTIN_KINDS["epilepsy"]
    assert config.kind("no-such-kind").priority == "medium"
    assert config.zone_of("101") == "east"
    assert config.zone_of("201") == "west"
    assert config.zone_of("999") == ""
    assert config.priority("epilepsy") is Priority.CRITICAL
    assert config.priority("wander") is Priority.HIGH


@pytest.mark.parametrize("text", ["", "# alertgw config\n", "---\n", "{}\n"])
def test_an_empty_config_file_is_refused(text: str) -> None:
    """A truncated or emptied file is refused: it would run a gateway that rings nobody."""
    assert only_problem(text) == f"{FILE}: the configuration is empty; was the file truncated?"


@pytest.mark.parametrize("path", ["''", "' '"])
def test_an_empty_journal_path_is_refused(path: str) -> None:
    """An empty path passed check and failed only at start, exit 1 in a restart loop."""
    text = edit("  path: var/test.db\n", f"  path: {path}\n")
    assert only_problem(text) == (
        f"{FILE}:{line_of(text, 'path:')}: journal.path: expected a file path"
    )


def test_a_journal_path_that_is_a_directory_is_refused(tmp_path: Path) -> None:
    """`path: /var/lib/alertgw` (the directory, not a file in it) is named by check."""
    text = edit("  path: var/test.db\n", f"  path: {tmp_path}\n")
    assert only_problem(text) == (
        f"{FILE}:{line_of(text, 'path:')}: journal.path: {tmp_path} is a directory; name a file"
        f" in it, such as {tmp_path / 'alertgw.db'}"
    )


def test_a_missing_broker_names_what_needs_it() -> None:
    """A handset with no channel written is an MQTT one: say so, and name the section."""
    text = BASE[: BASE.index("mqtt:")] + BASE[BASE.index("sources:") :]
    text = edit("  night1: {channel: mqtt}\n", "  night1:\n", text)
    assert only_problem(text) == (
        f"{FILE}:1: mqtt: missing broker section; needed by sources.zigbee,"
        " handsets.night1 (channel: mqtt is the default)"
    )


def test_devices_without_any_handset_are_refused() -> None:
    """Sensors configured but no handset at all: nothing could ever ring."""
    text = BASE[: BASE.index("handsets:")] + BASE[BASE.index("journal:") :]
    assert only_problem(text) == (
        f"{FILE}:1: handsets: no handset configured: no alert could ring anyone"
    )


def test_single_string_where_a_list_is_expected_becomes_a_one_item_tuple() -> None:
    """A scalar where a list of strings is expected is read as a one-item list."""
    config = parse_config(edit("tags: [fall_risk]", "tags: fall_risk"), filename=FILE)
    assert config.devices["bed-101"].tags == ("fall_risk",)


def test_a_key_given_dashed_and_underscored_is_a_duplicate() -> None:
    """`hold-off` and `hold_off` are one field: the second would silently win."""
    text = edit("    tags: [fall_risk]\n", "    tags: [fall_risk]\n    alert-on-startup: true\n")
    text = edit(
        "    alert-on-startup: true\n",
        "    alert-on-startup: true\n    alert_on_startup: false\n",
        text,
    )
    assert only_problem(text) == (
        f"{FILE}:{line_of(text, 'alert_on_startup:')}: devices.bed-101.alert_on_startup:"
        f" given twice (first as alert-on-startup on line {line_of(text, 'alert-on-startup')});"
        " keep one"
    )


def test_dashed_keys_map_to_underscored_fields() -> None:
    """`alert-on-startup` is accepted as the field `alert_on_startup`."""
    text = edit("    tags: [fall_risk]\n", "    tags: [fall_risk]\n    alert-on-startup: true\n")
    assert parse_config(text, filename=FILE).devices["bed-101"].alert_on_startup is True


def test_config_is_frozen_all_the_way_down() -> None:
    """Dataclasses refuse assignment and mappings refuse item assignment."""
    config = parse_config(BASE, filename=FILE)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.site = config.site  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.devices["bed-101"].room = "999"  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.devices["new"] = config.devices["bed-101"]  # type: ignore[index]
    assert isinstance(config.zones["east"].rooms, tuple)


def test_handset_topic_defaults_to_the_handset_id() -> None:
    """An MQTT handset without an address uses alertgw/handset/<id>."""
    config = parse_config(BASE, filename=FILE)
    assert handset_topic("night1", config.handsets["night1"]) == "alertgw/handset/night1"


# --- unknown keys --------------------------------------------------------------------------


def test_unknown_top_level_key_names_file_line_and_key() -> None:
    """A misspelled top-level section is reported with its line."""
    text = BASE + "routnig: []\n"
    problem = only_problem(text)
    assert problem.startswith(f"{FILE}:{line_of(text, 'routnig')}: routnig: unknown key")
    assert "routing" in problem  # the expected keys are listed


def test_unknown_nested_key_names_the_dotted_path() -> None:
    """A misspelled key inside a section is reported as section.key with its line."""
    text = edit("  port: 1883\n", "  port: 1883\n  keepalve: 10\n")
    problem = only_problem(text)
    assert problem.startswith(f"{FILE}:{line_of(text, 'keepalve')}: mqtt.keepalve: unknown key")
    assert "keepalive" in problem


def test_unknown_key_inside_a_list_item_names_the_index() -> None:
    """A misspelled key in the second route is reported as routing[1].key."""
    text = edit("    handsets: [night2]\n", "    handset: [night2]\n")
    found = problems_of(text)
    line = line_of(text, "handset: [night2]")
    assert found[0].startswith(f"{FILE}:{line}: routing[1].handset: unknown key")


def test_unknown_key_inside_a_mapping_value_names_the_entry() -> None:
    """A misspelled key in one device is reported as devices.<id>.key."""
    text = edit("    name: rom101/seng\n", "    nmae: rom101/seng\n")
    problem = only_problem(text)
    assert problem.startswith(f"{FILE}:{line_of(text, 'nmae')}: devices.bed-101.nmae: unknown key")


def test_unknown_key_in_a_flow_mapping_gets_its_own_line() -> None:
    """A typo inside a one-line `{...}` device is reported on that line."""
    text = edit('door-102: {room: "102", kind: door_open}', 'door-102: {room: "102", knd: x}')
    found = problems_of(text)
    line = line_of(text, "knd: x")
    assert f"{FILE}:{line}: devices.door-102.knd: unknown key" in found[0]
    assert any(p.startswith(f"{FILE}:{line}: devices.door-102.kind: missing") for p in found)


def test_unknown_key_with_a_block_value_is_reported_on_the_key_line() -> None:
    """A misspelled section whose value starts on the next line points at the key itself."""
    text = BASE + "routnig:\n  # a comment\n  - {handsets: [night1]}\n"
    assert only_problem(text).startswith(f"{FILE}:{line_of(text, 'routnig')}: routnig: unknown")


def test_missing_key_of_a_block_mapping_is_reported_on_its_key_line() -> None:
    """A device written as a block mapping without `kind` is reported on the device's line."""
    text = edit("    kind: bed_exit\n", "")
    problem = only_problem(text)
    assert problem.startswith(f"{FILE}:{line_of(text, 'bed-101:')}: devices.bed-101.kind: missing")


# --- wrong types ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "path", "expected"),
    [
        ("port: 1883", 'port: "1883"', "mqtt.port", "expected a whole number, got '1883'"),
        ("port: 1883", "port: true", "mqtt.port", "expected a whole number, got true"),
        ("port: 1883", "port: 18.5", "mqtt.port", "expected a whole number, got 18.5"),
        ("backoff_max: 10", "backoff_max: .nan", "mqtt.backoff_max", "expected seconds as a"),
        ("backoff_max: 10", "backoff_max: .inf", "mqtt.backoff_max", "expected seconds as a"),
        ("backoff_max: 10", "backoff_max: -.inf", "mqtt.backoff_max", "expected seconds as a"),
        ("backoff_max: 10", "backoff_max: false", "mqtt.backoff_max", "expected seconds as a"),
        ("backoff_max: 10", "backoff_max: ten", "mqtt.backoff_max", "expected seconds as a"),
        (
            "backoff_max: 10",
            "backoff_max: 5 min",
            "mqtt.backoff_max",
            "expected seconds as a number (300 for 5 minutes), got '5 min'",
        ),
        (
            "backoff_max: 10",
            "backoff_max: -1s",
            "mqtt.backoff_max",
            "expected seconds as a number (300 for 5 minutes), got '-1s'",
        ),
        ("decoder: zigbee2mqtt", "decoder: zigbee", "sources.zigbee.decoder", "expected one of"),
        ("name: Test home", "name: [a, b]", "site.name", "expected text, got ['a', 'b']"),
        ("name: Test home", "name: ~", "site.name", "expected text, got nothing"),
        ("tags: [fall_risk]", "tags: {a: 1}", "devices.bed-101.tags", "expected a list of text"),
    ],
)
def test_wrong_scalar_types_are_reported(old: str, new: str, path: str, expected: str) -> None:
    """A value of the wrong type is reported with its line, key path and what was expected."""
    text = edit(old, new)
    problem = only_problem(text)
    assert problem.startswith(f"{FILE}:{line_of(text, new)}: {path}: {expected}")


def test_huge_integer_for_a_float_is_a_problem_not_a_crash() -> None:
    """An integer too large for a float is reported (it used to raise OverflowError)."""
    text = edit("backoff_max: 10", "backoff_max: 1" + "0" * 400)
    problem = only_problem(text)
    assert problem.startswith(f"{FILE}:7: mqtt.backoff_max: expected seconds as a number")


def test_list_where_a_mapping_is_expected_is_reported() -> None:
    """A list under `devices` is reported as expecting a mapping."""
    text = edit(
        'zones:\n  east:\n    rooms: [101, "102"]\n  west:\n    rooms: ["201"]\n',
        "zones:\n  - east\n  - west\n",
    )
    found = problems_of(text)
    assert (
        f"{FILE}:{line_of(text, 'zones:')}: zones: expected a mapping of names to sections"
        in found[0]
    )


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "zones:\n",
            "zones: [east, west]\nx:\n",
            "zones: expected a mapping of names to sections, got ['east', 'west']",
        ),
        (
            "handsets:\n",
            "handsets: [night1]\nx:\n",
            "handsets: expected a mapping of names to sections, got ['night1']",
        ),
        (
            "routing:\n",
            "routing: {a: 1}\nx:\n",
            "routing: expected a list of sections, got {a: 1}",
        ),
        (
            "  night2: {channel: console}",
            "  night2: [console]",
            "handsets.night2: expected a section of key: value lines, got ['console']",
        ),
        (
            "tags: [fall_risk]",
            "tags: {a: 1}",
            "devices.bed-101.tags: expected a list of text, got {a: 1}",
        ),
    ],
)
def test_a_wrong_list_or_mapping_is_shown_as_written(old: str, new: str, expected: str) -> None:
    """A list or mapping of the wrong type is shown as the YAML held it, not as parser objects."""
    found = problems_of(edit(old, new))
    assert any(line.endswith(expected) for line in found), found
    assert not any("Located(" in line for line in found), found


def test_an_empty_value_is_shown_as_nothing() -> None:
    """A key left empty (`rooms:`) says it is empty rather than showing Python's None."""
    text = edit('rooms: ["201"]', "rooms:")
    assert only_problem(text).endswith("zones.west.rooms: expected a list of text, got nothing")


def test_a_top_level_list_is_shown_as_written() -> None:
    """A file holding a list names its items, not the parser's objects."""
    assert problems_of("- a\n- b\n") == [
        f"{FILE}:1: <top>: expected a section of key: value lines, got ['a', 'b']"
    ]


@pytest.mark.parametrize(
    ("old", "new", "needle", "expected"),
    [
        (
            "    tags: [fall_risk]\n",
            "    tags: [fall_risk]\n    alert_on_startup: maybe\n",
            "maybe",
            "devices.bed-101.alert_on_startup: expected true or false, got 'maybe'",
        ),
        (
            "decoder: zigbee2mqtt",
            "decoder: zigbee",
            "zigbee\n",
            "sources.zigbee.decoder: expected one of 'zigbee2mqtt', 'json' or 'espa', got 'zigbee'",
        ),
        (
            "journal:\n",
            'schedules:\n  night: {start: "22:00", end: "07:00", days: mon-fri}\njournal:\n',
            "mon-fri",
            "schedules.night.days: expected a list of 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'"
            " or 'sun', got 'mon-fri'",
        ),
        (
            "journal:\n",
            'schedules:\n  night: {start: "22:00", end: "07:00", days: [mon, funday]}\njournal:\n',
            "funday",
            "schedules.night.days[1]: expected one of 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'"
            " or 'sun', got 'funday'",
        ),
        (
            "journal:\n",
            "supervision: {kinds: [door_open]}\njournal:\n",
            "supervision",
            "supervision.kinds: expected a mapping of names to numbers, got ['door_open']",
        ),
        (
            "journal:\n",
            'schedules:\n  night: {start: "22:00", end: "07:00"}\n'
            "roster:\n  shifts:\n    - {schedule: night, assign: [east, night1]}\n"
            "journal:\n",
            "[east, night1]",
            "roster.shifts[0].assign: expected a mapping of names to lists of text,"
            " got ['east', 'night1']",
        ),
        (
            "    kind: bed_exit\n",
            "",
            "bed-101:",
            "devices.bed-101.kind: missing required key (text)",
        ),
        (
            "  night1: {channel: mqtt}",
            "  night1: {channel: mqtt, auto_accept: soon}",
            "soon",
            "handsets.night1.auto_accept: expected seconds as a number (300 for 5 minutes),"
            " got 'soon'",
        ),
    ],
)
def test_what_was_expected_is_said_in_yaml_words(
    old: str, new: str, needle: str, expected: str
) -> None:
    """Problems name what to write as a technician says it, never a Python type name."""
    text = edit(old, new)
    assert only_problem(text) == f"{FILE}:{line_of(text, needle)}: {expected}"


@pytest.mark.parametrize(
    ("bounds", "words"),
    [
        (Range(1, 65535), "from 1 to 65535"),
        (Range(0, above=True), "greater than 0"),
        (Range(1), "of at least 1"),
        (Range(high=5), "of at most 5"),
        (Range(0, 25, above=True), "greater than 0 and at most 25"),
    ],
)
def test_bounds_are_said_in_words(bounds: Range, words: str) -> None:
    """`greater than 0` rather than `> 0`: bounds read as a sentence."""
    assert bounds.describe() == words


def test_an_unquoted_number_is_read_as_written_for_a_text_choice() -> None:
    """`protocol: 5` is the text "5", one of the choices, as README promises values as written."""
    mqtt = parse_config(edit("port: 1883", "port: 1883\n  protocol: 5")).mqtt
    assert mqtt is not None
    assert mqtt.protocol == "5"


def test_scalar_where_a_section_is_expected_is_reported() -> None:
    """A string where the site section belongs is reported as expecting a mapping."""
    text = edit("site:\n  name: Test home\n  timezone: Europe/Oslo\n", "site: Test home\n")
    assert (
        only_problem(text)
        == f"{FILE}:1: site: expected a section of key: value lines, got 'Test home'"
    )


def test_missing_required_key_is_reported_at_its_parent() -> None:
    """A device without `kind` is reported as devices.<id>.kind: missing required key."""
    text = edit('epi-201: {room: "201", kind: epilepsy}', 'epi-201: {room: "201"}')
    problem = only_problem(text)
    line = line_of(text, "epi-201")
    assert problem.startswith(f"{FILE}:{line}: devices.epi-201.kind: missing required key")


def test_missing_required_list_in_a_route_is_reported() -> None:
    """A route without handsets is reported as routing[0].handsets: missing required key."""
    text = edit("- {zones: [east], handsets: [night1]}", "- {zones: [east]}")
    problem = only_problem(text)
    assert problem.startswith(f"{FILE}:{line_of(text, '- {zones')}: routing[0].handsets: missing")


def test_several_problems_are_reported_together_in_file_order() -> None:
    """Every type problem in a file is listed in one run, in file order."""
    text = edit("port: 1883", "port: x")
    text = edit("  tags: [fall_risk]\n", "  tags: [fall_risk]\n    colour: red\n", text)
    text = edit("path: var/test.db", "path: var/test.db\n  retention: 3", text)
    found = problems_of(text)
    assert [p.split(": ")[1] for p in found] == [
        "mqtt.port",
        "devices.bed-101.colour",
        "journal.retention",
    ]
    lines = [int(p.split(":")[1]) for p in found]
    assert lines == [line_of(text, "port: x"), line_of(text, "colour"), line_of(text, "retention")]


# --- cross-field checks --------------------------------------------------------------------


def test_unknown_handset_in_a_route_names_its_index_and_line() -> None:
    """A route naming an undefined handset is reported as routing[1].handsets[0]."""
    text = edit("handsets: [night2]", "handsets: [night3]")
    problem = only_problem(text)
    assert problem.startswith(
        f"{FILE}:{line_of(text, 'night3')}: routing[1].handsets[0]: unknown handset 'night3'"
    )
    assert "night1, night2" in problem


def test_handset_keys_its_channel_ignores_are_refused() -> None:
    """`auto_accept` on an MQTT handset or `address` on a console one would do nothing."""
    text = edit(
        "  night1: {channel: mqtt}\n  night2: {channel: console}",
        "  night1: {channel: mqtt, auto_accept: 15, link: dect}\n"
        "  night2: {channel: console, address: '4711', reports_status: true}",
    )
    found = problems_of(text)
    at1, at2 = line_of(text, "night1: {channel"), line_of(text, "night2: {channel")
    assert found == [
        f"{FILE}:{at1}: handsets.night1.link: `link:` means nothing for a mqtt handset",
        f"{FILE}:{at1}: handsets.night1.auto_accept: `auto_accept:` means nothing for a mqtt "
        "handset",
        f"{FILE}:{at2}: handsets.night2.address: `address:` means nothing for a console handset",
        f"{FILE}:{at2}: handsets.night2.reports_status: `reports_status:` means nothing for a "
        "console handset",
    ]


def test_unknown_zone_and_kind_in_a_route_are_reported() -> None:
    """Unknown zone and kind names in routes are reported with their indexes."""
    text = edit("kinds: [epilepsy, wander]", "kinds: [epilepsy, wandr]")
    text = edit("{zones: [east],", "{zones: [east, north],", text)
    found = problems_of(text)
    assert f"{FILE}:{line_of(text, 'wandr')}: routing[1].kinds[1]: unknown kind 'wandr'" in found
    assert any(
        p.startswith(f"{FILE}:{line_of(text, 'north')}: routing[0].zones[1]: unknown zone 'north'")
        for p in found
    )


def test_unknown_device_kind_is_reported() -> None:
    """A device with a kind neither configured nor built in is reported at devices.<id>.kind."""
    text = edit("kind: bed_exit", "kind: bed_exitt")
    problem = only_problem(text)
    assert problem.startswith(
        f"{FILE}:{line_of(text, 'bed_exitt')}: devices.bed-101.kind: unknown kind 'bed_exitt'"
    )


def test_device_in_a_room_of_no_zone_is_reported() -> None:
    """A device whose room no zone covers is reported at devices.<id>.room."""
    text = edit('door-102: {room: "102"', 'door-102: {room: "103"')
    problem = only_problem(text)
    assert problem.startswith(f"{FILE}:{line_of(text, 'door-102')}: devices.door-102.room:")
    assert "'103' is in no zone" in problem


def test_commit_delay_out_of_range_is_reported() -> None:
    """A commit delay beyond a second would hold signals unacknowledged too long."""
    text = edit("  path: var/test.db\n", "  path: var/test.db\n  commit_delay: 5\n")
    problem = only_problem(text)
    assert problem == (
        f"{FILE}:{line_of(text, 'commit_delay')}: journal.commit_delay: expected seconds"
        " from 0 to 1, got 5 (signals stay unacknowledged that long)"
    )


def test_drain_timeout_past_the_units_stop_timeout_is_reported() -> None:
    """systemd kills alertgw 30 s after SIGTERM: a longer drain would be cut off unseen."""
    text = edit("  path: var/test.db\n", "  path: var/test.db\n  drain_timeout: 40\n")
    assert only_problem(text) == (
        f"{FILE}:{line_of(text, 'drain_timeout')}: journal.drain_timeout: expected seconds"
        " from 0 to 25, got 40 (the systemd unit stops alertgw after 30 s)"
    )


@pytest.mark.parametrize(
    ("old", "new", "needle", "expected"),
    [
        (
            "  port: 1883\n",
            "  port: 0\n",
            "port: 0",
            "mqtt.port: expected a whole number from 1 to 65535, got 0",
        ),
        (
            "  port: 1883\n",
            "  port: 70000\n",
            "port: 70000",
            "mqtt.port: expected a whole number from 1 to 65535, got 70000",
        ),
        (
            "  backoff_max: 10\n",
            "  backoff_max: 0\n",
            "backoff_max",
            "mqtt.backoff_max: expected seconds greater than 0, got 0",
        ),
        (
            "  backoff_max: 10\n",
            "  backoff_max: 10\n  keepalive: 0\n",
            "keepalive",
            "mqtt.keepalive: expected a whole number from 5 to 65535, got 0",
        ),
        (
            '    topics: ["zigbee2mqtt/#"]\n',
            '    topics: ["zigbee2mqtt/#"]\n    max_rate: 0\n',
            "max_rate",
            "sources.zigbee.max_rate: expected a number greater than 0, got 0",
        ),
        (
            "  path: var/test.db\n",
            "  path: var/test.db\n  retention_days: -1\n",
            "retention_days",
            "journal.retention_days: expected days greater than 0, got -1",
        ),
        (
            "handsets:\n",
            "rate_limit: {max: 0, per: 60}\nhandsets:\n",
            "rate_limit",
            "rate_limit.max: expected a whole number of at least 1, got 0",
        ),
        (
            "handsets:\n",
            "supervision: {kinds: {door_open: -5}}\nhandsets:\n",
            "supervision",
            "supervision.kinds.door_open: expected seconds greater than 0, got -5",
        ),
        (
            "    handsets: [night2]\n",
            "    handsets: [night2]\nrules:\n  - {name: bed, hold_off: -3}\n",
            "hold_off",
            "rules[0].hold_off: expected seconds of at least 0, got -3",
        ),
    ],
)
def test_number_out_of_range_names_line_key_and_bounds(
    old: str, new: str, needle: str, expected: str
) -> None:
    """A number that loads but cannot work (port 0, a zero rate) is a problem with its line."""
    text = edit(old, new)
    assert only_problem(text) == f"{FILE}:{line_of(text, needle)}: {expected}"


def test_numbers_at_their_bounds_are_accepted() -> None:
    """The bounds themselves are valid: port 65535, a zero hold-off, no reminder."""
    text = edit("  port: 1883\n", "  port: 65535\n")
    text = edit(
        "    handsets: [night2]\n",
        "    handsets: [night2]\nrules:\n  - {name: bed, hold_off: 0, group: 0}\n",
        text,
    )
    text += "roster: {failsafe: [night1]}\n"
    text += "escalation:\n  default: {steps: [{to: failsafe, after: 0}], reminder: 0}\n"
    config = parse_config(text, filename=FILE)
    assert config.mqtt is not None
    assert config.mqtt.port == 65535
    assert (config.rules[0].hold_off, config.rules[0].group) == (0.0, 0.0)
    ladder = config.escalation["default"]
    assert (ladder.reminder, ladder.steps[0].after) == (0.0, 0.0)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("-1", "expected a whole number of at least 0, got -1"),
        ("1.5", "expected a whole number, got 1.5"),
    ],
)
def test_reopen_after_is_a_whole_number_of_reminders(value: str, expected: str) -> None:
    """`reopen_after` counts reminders: negative or fractional is a problem with its line."""
    text = BASE + "roster: {failsafe: [night1]}\n"
    text += f"escalation:\n  default:\n    steps: [{{to: failsafe}}]\n    reopen_after: {value}\n"
    assert only_problem(text) == (
        f"{FILE}:{line_of(text, 'reopen_after')}: escalation.default.reopen_after: {expected}"
    )


def test_reopen_after_defaults_to_two_reminders_and_zero_turns_it_off() -> None:
    """Unwritten, an accepted alert is reopened after two unanswered reminders; 0 is never."""
    text = BASE + "roster: {failsafe: [night1]}\n"
    ladder = "escalation:\n  default:\n    steps: [{to: failsafe}]\n"
    assert parse_config(text + ladder, filename=FILE).escalation["default"].reopen_after == 2
    off = parse_config(text + ladder + "    reopen_after: 0\n", filename=FILE)
    assert off.escalation["default"].reopen_after == 0


def test_wrong_type_is_one_problem_not_also_out_of_range() -> None:
    """A port given as text reports the type, not a range problem on top."""
    text = edit("  port: 1883\n", "  port: eighteen\n")
    assert only_problem(text) == (
        f"{FILE}:{line_of(text, 'eighteen')}: mqtt.port: expected a whole number, got 'eighteen'"
    )


def test_room_in_two_zones_is_reported() -> None:
    """A room listed by two zones is reported at the second zone's rooms."""
    text = edit('rooms: ["201"]', 'rooms: ["201", "102"]')
    problem = only_problem(text)
    line = line_of(text, '"201", "102"')
    assert problem.startswith(f"{FILE}:{line}: zones.west.rooms:")
    assert "'102' is in more than one zone" in problem


def test_critical_builtin_kind_cannot_be_made_non_critical() -> None:
    """`critical: false` on `fall` is refused on its line."""
    text = edit("kinds:\n", "kinds:\n  fall:\n    latching: false\n    critical: false\n")
    assert only_problem(text) == (
        f"{FILE}:{line_of(text, 'critical: false')}: kinds.fall.critical: 'fall' is a"
        " safety-critical kind and cannot be made non-critical"
    )


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("epilepsy: {latching: false}", {"latching": False}),  # critical stays too
        ("bed_exit: {priority: medium}", {"priority": "medium"}),
        ("water_leak: {latching: true, technical: true}", {"latching": True, "technical": True}),
    ],
)
def test_a_kind_override_keeps_the_builtin_values_it_does_not_write(
    override: str, expected: dict[str, Any]
) -> None:
    """An override changes what it writes; priority, text and the rest stay built-in."""
    name = override.partition(":")[0]
    config = parse_config(edit("kinds:\n", f"kinds:\n  {override}\n"))
    assert config.kind(name) == dataclasses.replace(BUILTIN_KINDS[name], **expected)


def test_a_seizure_override_still_rings_as_a_seizure() -> None:
    """`epilepsy: {critical: true, latching: false}` kept neither priority nor text."""
    text = edit("kinds:\n", "kinds:\n  epilepsy: {critical: true, latching: false}\n")
    config = parse_config(text, filename=FILE)
    assert config.priority("epilepsy") is Priority.CRITICAL
    assert config.kind("epilepsy").text == "SEIZURE room {room}"
    assert not config.kind("epilepsy").latches


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        (
            "technical: true",
            "'fall' is a critical kind: technical alarms ring only the technician's handsets"
            " (or nobody), never the staff on duty",
        ),
        (
            "role: presence",
            "'fall' is a critical kind: role 'presence' never rings: it counts as staff in the"
            " room and stands down the room's other alerts; a critical kind needs role: alert",
        ),
        (
            "priority: high",
            "'fall' is a critical kind: priority 'high' would show it as a lesser call; a"
            " critical kind rings at priority critical",
        ),
    ],
    ids=["technical", "presence", "priority"],
)
def test_a_critical_kind_cannot_be_silenced_or_downgraded(setting: str, message: str) -> None:
    """A fall for the technician only, counted as staff presence, or at high: refused."""
    settings = {"critical": "true"}  # the built-in priority is kept
    key, value = setting.split(": ")
    settings[key] = value
    lines = "".join(f"    {k}: {v}\n" for k, v in settings.items())
    text = edit("kinds:\n", f"kinds:\n  fall:\n{lines}")
    line = line_of(text, f"    {setting}")
    assert only_problem(text) == f"{FILE}:{line}: kinds.fall.{key}: {message}"


def test_a_critical_kind_of_the_site_is_held_to_the_same() -> None:
    """`critical: true` on a kind the site defines makes it critical, with the same limits."""
    text = edit(
        '  wander: {priority: high, text: "Wandering {room}"}\n',
        '  wander:\n    critical: true\n    priority: high\n    text: "Wandering {room}"\n',
    )
    assert only_problem(text) == (
        f"{FILE}:{line_of(text, '    priority: high')}: kinds.wander.priority: 'wander' is a"
        " critical kind: priority 'high' would show it as a lesser call; a critical kind rings"
        " at priority critical"
    )


def test_critical_builtin_kind_may_be_overridden_while_staying_critical() -> None:
    """Overriding a critical kind's text is fine when it stays critical."""
    text = edit(
        "kinds:\n", 'kinds:\n  fall: {critical: true, priority: critical, text: "F {room}"}\n'
    )
    assert parse_config(text, filename=FILE).kind("fall").text == "F {room}"


@pytest.mark.parametrize(
    "template",
    [
        "Wandering {resident}",
        "Wandering {room",
        "Wandering {0}",
        "{room.floor}",
        "{room[x]}",
        "Wandering }",
        # Python internals on a handset: str has the attribute, so formatting alone passes.
        "{room.__class__}",
        # The engine formats this for every alert: a gigabyte of padding, once per alert.
        "Wandering {room:>999999999}",
        "{room:{count}}",
    ],
)
def test_bad_text_template_is_reported(template: str) -> None:
    """A template with an unknown field or bad syntax is reported at kinds.<id>.text."""
    text = edit('text: "Wandering {room}"', f'text: "{template}"')
    problem = only_problem(text)
    assert problem.startswith(f"{FILE}:{line_of(text, 'wander:')}: kinds.wander.text: bad template")


@pytest.mark.parametrize("template", ["{room:>6}", "{count:03d} calls", "{device!r:.20}"])
def test_text_template_with_a_modest_format_is_accepted(template: str) -> None:
    """Widths up to the displayed 120 characters, and conversions, stay allowed."""
    text = edit('text: "Wandering {room}"', f'text: "{template}"')
    assert parse_config(text, filename=FILE).kind("wander").text == template


def test_display_limit_is_the_engines() -> None:
    """`check` bounds template widths by the length the engine actually shows."""
    assert DISPLAY_LIMIT == TEXT_LIMIT


@pytest.mark.parametrize("zone", ["Mars/Olympus", "Europe", "../etc/passwd", ""])
def test_bad_time_zone_is_reported(zone: str) -> None:
    """A time zone that is not an IANA key (even a tzdata directory) is a config problem."""
    text = edit("timezone: Europe/Oslo", f'timezone: "{zone}"')
    problem = only_problem(text)
    assert problem.startswith(f"{FILE}:3: site.timezone: unknown IANA time zone")


def test_missing_mqtt_section_names_what_needs_it() -> None:
    """Without an mqtt section, every MQTT source and handset that needs one is named."""
    text = edit("mqtt:\n  host: 127.0.0.1\n  port: 1883\n  backoff_max: 10\n", "")
    problem = only_problem(text)
    assert problem.startswith(f"{FILE}:1: mqtt: missing broker section")
    assert problem.endswith("needed by sources.zigbee, handsets.night1")


def test_mqtt_source_without_topics_is_reported() -> None:
    """An mqtt source with no topic filter is reported at sources.<id>.topics."""
    text = edit('    topics: ["zigbee2mqtt/#"]\n', "")
    problem = only_problem(text)
    assert problem.startswith(f"{FILE}:{line_of(text, '  zigbee:')}: sources.zigbee.topics:")


def test_bad_id_characters_are_reported() -> None:
    """A device id with a space is reported at devices.<id>."""
    text = edit("door-102:", '"door 102":')
    problem = only_problem(text)
    assert problem.startswith(f"{FILE}:{line_of(text, 'door 102')}: devices.door 102: ids may")


def test_invalid_yaml_syntax_reports_the_line() -> None:
    """A YAML syntax error is one problem naming file, line, key path and where the `[` opened."""
    text = edit("  port: 1883\n", "  port: [1883\n")
    assert only_problem(text) == (
        f"{FILE}:{line_of(text, 'backoff_max')}: mqtt.port: invalid YAML: expected ',' or ']',"
        f" but got ':' (in the [ ] list that starts on line {line_of(text, '[1883')})"
    )


def test_a_flow_mapping_left_open_names_its_list_item() -> None:
    """A `{` never closed in the second rule is in rules[1].match, opened on the line above."""
    text = BASE + (
        "rules:\n"
        "  - {name: bed-day, match: {kinds: [bed_exit]}, action: suppress}\n"
        "  - name: bed-night\n"
        "    match: {kinds: [bed_exit]\n"
        "    hold_off: 1200\n"
    )
    opened = line_of(text, "match: {kinds: [bed_exit]\n")
    assert only_problem(text) == (
        f"{FILE}:{line_of(text, 'hold_off')}: rules[1].match: invalid YAML: expected ',' or '}}',"
        f" but got '<scalar>' (in the {{ }} mapping that starts on line {opened})"
    )


@pytest.mark.parametrize(
    ("indent", "problem"),
    [
        (" ", "expected <block end>, but found '<block mapping start>'"),  # ends mqtt: fits nowhere
        ("   ", "mapping values are not allowed here"),  # continues host's value
    ],
)
def test_a_key_indented_wrong_names_its_mapping(indent: str, problem: str) -> None:
    """`port:` one space off the other mqtt keys is reported at mqtt, not the top of the file."""
    text = edit("  port: 1883\n", f"{indent}port: 1883\n")
    assert only_problem(text) == f"{FILE}:{line_of(text, 'port:')}: mqtt: invalid YAML: {problem}"


@pytest.mark.parametrize(
    ("old", "new", "path"),
    [
        ("name: Test home", "name: 'Test home", "site.name"),
        ("tags: [fall_risk]", "tags: [fall_risk, 'dementia]", "devices.bed-101.tags[1]"),
    ],
)
def test_an_unclosed_quote_names_its_value(old: str, new: str, path: str) -> None:
    """A quote runs to the end of the file; the problem names the value it opened."""
    text = edit(old, new)
    assert only_problem(text) == (
        f"{FILE}:{text.count(chr(10)) + 1}: {path}: invalid YAML: found unexpected end of stream"
        f" (in the quoted text that starts on line {line_of(text, new)})"
    )


@pytest.mark.parametrize(
    ("new", "problem"),
    [
        # PyYAML looks for the colon up to the next line, and says so.
        (
            "zones\n",
            "{next}: invalid YAML: could not find expected ':'"
            " (in the key that starts on line {at})",
        ),
        (
            "---\nzones:\n",
            "{at}: invalid YAML: expected a single document in the stream on line 1,"
            " but found another document",
        ),
    ],
)
def test_a_top_level_syntax_error_names_no_key_path(new: str, problem: str) -> None:
    """A top-level key without its colon, or a second document: no path to name, none given."""
    text = edit("zones:\n", new)
    at = line_of(text, new)
    assert only_problem(text) == f"{FILE}:{problem.format(at=at, next=at + 1)}"


def test_an_undefined_alias_names_its_key() -> None:
    """`*risky` with no `&risky` before it is reported at the key that uses it."""
    text = edit("    tags: [fall_risk]\n", "    tags: *risky\n")
    assert only_problem(text) == (
        f"{FILE}:{line_of(text, '*risky')}: devices.bed-101.tags: invalid YAML:"
        " found undefined alias 'risky'"
    )


def test_unknown_yaml_tag_is_a_problem_not_a_crash() -> None:
    """A Home Assistant style `!secret` tag is reported with its line (it used to crash)."""
    text = edit("  port: 1883\n", "  port: 1883\n  password_file: !secret pw\n")
    assert only_problem(text) == (
        f"{FILE}:{line_of(text, '!secret')}: mqtt.password_file: invalid YAML:"
        " the tag !secret is not supported: alertgw reads plain YAML"
    )


@pytest.mark.parametrize(
    ("written", "problem"),
    [
        ("!!timestamp x", "'x' is not a valid timestamp"),
        ("2024-13-45", "'2024-13-45' is not a valid timestamp (month must be in 1..12)"),
        ("!!int 0x", "'0x' is not a valid int (invalid literal for int() with base 16: '')"),
    ],
)
def test_a_value_its_yaml_tag_cannot_hold_is_a_problem_not_a_crash(
    written: str, problem: str
) -> None:
    """PyYAML's constructors raise plain errors (`check` printed a traceback, or no file)."""
    text = edit("  port: 1883\n", f"  port: 1883\n  password_file: {written}\n")
    assert only_problem(text) == (
        f"{FILE}:{line_of(text, written)}: mqtt.password_file: invalid YAML: {problem}"
    )


def test_control_character_is_a_problem_not_a_crash() -> None:
    """A stray control character is reported with its line and key (it used to crash)."""
    text = edit("name: Test home", "name: Test\x07home")
    assert only_problem(text) == (
        f"{FILE}:2: site.name: invalid YAML: special characters are not allowed"
    )


def test_a_key_given_twice_is_a_problem_naming_both_lines() -> None:
    """Two `door-102:` entries must not silently keep only the second."""
    text = edit(
        '  epi-201: {room: "201", kind: epilepsy}\n',
        '  epi-201: {room: "201", kind: epilepsy}\n  door-102: {room: "201", kind: door_open}\n',
    )
    second = text.count("\n", 0, text.rindex("door-102")) + 1
    assert only_problem(text) == (
        f"{FILE}:{second}: invalid YAML: devices.door-102 is given twice"
        f" (first on line {line_of(text, 'door-102')})"
    )


def test_a_top_level_section_given_twice_is_a_problem() -> None:
    """A second `routing:` list at the end of the file would replace the first one."""
    text = BASE + "routing:\n  - {handsets: [night1]}\n"
    assert only_problem(text).startswith(
        f"{FILE}:{text.count(chr(10), 0, text.rindex('routing:')) + 1}: invalid YAML: routing"
        f" is given twice (first on line {line_of(text, 'routing:')})"
    )


def test_merged_keys_may_be_overridden() -> None:
    """A YAML merge (<<) followed by an override is not a duplicate."""
    text = edit(
        '  door-102: {room: "102", kind: door_open}\n',
        '  door-102: &door {room: "102", kind: door_open}\n'
        '  door-103:\n    <<: *door\n    room: "102"\n    kind: wander\n',
    )
    config = parse_config(text, filename=FILE)
    assert config.devices["door-103"].kind == "wander"


def test_an_alias_inside_itself_is_a_problem_not_a_crash() -> None:
    """`&a [*a]` used to recurse until Python gave up."""
    text = edit("    tags: [fall_risk]\n", "    tags: &loop [fall_risk, *loop]\n")
    assert only_problem(text) == (
        f"{FILE}:{line_of(text, '&loop')}: invalid YAML: devices.bed-101.tags[1]"
        " contains itself through an alias"
    )


def test_aliases_that_expand_to_billions_are_a_problem_not_a_hang() -> None:
    """Ten levels of `[*a, *a, ...]` (a "billion laughs") stop at a bound, with the line."""
    levels = ["l0: &l0 [x, x, x, x, x, x, x, x, x]"]
    levels += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 10)]
    text = BASE + "\n".join(levels) + "\n"
    assert only_problem(text) == (
        f"{FILE}:{line_of(text, 'l0:')}: invalid YAML: the file expands to more than"
        f" {MAX_VALUES:,} values (aliases that repeat aliases?)"
    )


@pytest.mark.parametrize("nesting", ["[" * 3000 + "]" * 3000, "{a: " * 3000 + "1" + "}" * 3000])
def test_nesting_hundreds_deep_is_a_problem_not_a_traceback(nesting: str) -> None:
    """The YAML parser recurses per level: past Python's limit it is one line, not a crash."""
    assert only_problem(f"site: {nesting}\n") == (
        f"{FILE}: invalid YAML: nested too deep (hundreds of levels of lists or mappings)"
    )


@pytest.mark.parametrize("key", ["~", "null", "Null"])
def test_an_empty_key_is_a_problem(key: str) -> None:
    """`~: {channel: console}` made a handset named 'None'."""
    text = edit("  night2: {channel: console}\n", f"  {key}: {{channel: console}}\n")
    assert only_problem(text) == (
        f"{FILE}:{line_of(text, '{channel: console}')}: invalid YAML: handsets has an empty key"
    )


def test_top_level_list_is_not_a_configuration() -> None:
    """A file holding a list instead of a mapping is refused."""
    assert problems_of("- a\n- b\n")[0].startswith(f"{FILE}:1: <top>: expected a section")


# --- JSON schema ---------------------------------------------------------------------------


def _objects(schema: Any) -> list[dict[str, Any]]:  # noqa: ANN401 - walks arbitrary JSON
    """Return every sub-schema that declares properties."""
    found: list[dict[str, Any]] = []
    if isinstance(schema, dict):
        if "properties" in schema:
            found.append(schema)
        for value in schema.values():
            found += _objects(value)
    elif isinstance(schema, list):
        for value in schema:
            found += _objects(value)
    return found


def test_json_schema_closes_every_object_and_lists_required_keys() -> None:
    """json_schema(Config) is JSON, forbids extra keys everywhere and marks required ones."""
    schema = json_schema(Config)
    assert json.loads(json.dumps(schema)) == schema
    assert schema["type"] == "object"
    objects = _objects(schema)
    assert len(objects) > 5
    for sub in objects:
        assert sub["type"] == "object"
        assert sub["additionalProperties"] is False
        assert set(sub.get("required", ())) <= set(sub["properties"])
    props = schema["properties"]
    assert "_zone_of" not in props  # not an init field
    device = props["devices"]["additionalProperties"]
    assert device["required"] == ["room", "kind"]
    assert device["properties"]["alert_on_startup"] == {"type": "boolean"}
    # The loader takes dashed keys too; the schema must not flag what loads.
    assert device["properties"]["alert-on-startup"] == {
        "type": "boolean",
        "description": "same as alert_on_startup",
    }
    route = props["routing"]["items"]
    assert route["required"] == ["handsets"]
    assert route["additionalProperties"] is False
    assert props["mqtt"]["anyOf"][1] == {"type": "null"}
    assert props["logging"]["properties"]["level"] == {
        "enum": ["debug", "info", "warning", "error"]
    }
    assert "required" not in props["site"]
    port = props["mqtt"]["anyOf"][0]["properties"]["port"]
    assert port == {"type": "integer", "minimum": 1, "maximum": 65535}
    assert props["journal"]["properties"]["retention_days"] == {
        "type": "number",
        "exclusiveMinimum": 0,
    }


def test_paging_fault_is_a_builtin_technical_kind() -> None:
    """Without a kinds: entry, paging_fault (ESPA record 8) is technical and high."""
    kind = parse_config(BASE, filename=FILE).kind("paging_fault")
    assert kind.technical
    assert kind.priority == "high"


@pytest.mark.parametrize(
    ("source", "key", "applies_to"),
    [
        ("{type: mqtt, decoder: json, topics: [in/#], max_rate: 5}", "max_rate", "zigbee2mqtt"),
        ("{type: mqtt, decoder: json, topics: [in/#], speed: 2}", "speed", "simulator sources"),
        ("{type: simulator, decoder: zigbee2mqtt, topics: [z/#]}", "topics", "mqtt sources"),
    ],
)
def test_source_key_its_type_ignores_is_a_problem(source: str, key: str, applies_to: str) -> None:
    """A key the source would silently ignore (max_rate on a JSON topic) is reported."""
    text = edit("sources:\n", f"sources:\n  other: {source}\n")
    problem = only_problem(text)
    assert problem.startswith(f"{FILE}:{line_of(text, 'other:')}: sources.other.{key}: ")
    assert f"applies only to {applies_to}" in problem


def test_base_topic_on_a_zigbee_simulator_is_accepted() -> None:
    """The simulator publishes Zigbee2MQTT shapes under base_topic, so it may set one."""
    text = edit(
        "sources:\n",
        "sources:\n  sim: {type: simulator, decoder: zigbee2mqtt, base_topic: z, speed: 2}\n",
    )
    config = parse_config(text, filename=FILE)
    assert config.sources["sim"].base_topic == "z"


ESPA_SOURCE = "sources:\n  nurse: {type: espa, link: l1}\n"


def test_decoder_defaults_by_source_type() -> None:
    """Unwritten, an ESPA source decodes ESPA and the simulator Zigbee2MQTT (not JSON)."""
    text = edit("sources:\n", ESPA_SOURCE + "  sim: {type: simulator}\n")
    text += "espa:\n  l1: {port: /dev/ttyUSB0}\n"
    config = parse_config(text, filename=FILE)
    assert config.sources["nurse"].decoder == "espa"
    assert config.sources["sim"].decoder == "zigbee2mqtt"
    assert config.sources["zigbee"].decoder == "zigbee2mqtt"  # written


def test_decoder_a_source_type_cannot_read_is_a_problem() -> None:
    """`decoder: json` on an ESPA line would reject every nurse call: reported with its line."""
    text = edit("sources:\n", "sources:\n  nurse: {type: espa, link: l1, decoder: json}\n")
    text += "espa:\n  l1: {port: /dev/ttyUSB0}\n"
    assert only_problem(text) == (
        f"{FILE}:{line_of(text, 'nurse:')}: sources.nurse.decoder:"
        " espa sources read with decoder: espa"
    )


# --- YAML 1.1 scalars: what the technician wrote is what alertgw uses ----------------------


def test_a_zigbee_ieee_address_as_device_name_stays_text_and_decodes() -> None:
    """`name: 0x00158d0001a2b3c4` (Zigbee2MQTT's default name) is not read as hex."""
    from gateway.decoders import Zigbee2MqttDecoder  # noqa: PLC0415
    from gateway.model import SignalState  # noqa: PLC0415

    text = edit("name: rom101/seng", "name: 0x00158d0001a2b3c4")
    config = parse_config(text, filename=FILE)
    assert config.devices["bed-101"].name == "0x00158d0001a2b3c4"
    decoder = Zigbee2MqttDecoder(source="zigbee", config=config)
    decoder.decode("zigbee2mqtt/0x00158d0001a2b3c4", b'{"occupancy": false}', 0.0)
    out = decoder.decode("zigbee2mqtt/0x00158d0001a2b3c4", b'{"occupancy": true}', 1.0)
    assert [s.state for s in out] == [SignalState.RAISED]


def test_leading_zeros_in_rooms_ids_and_addresses_are_kept() -> None:
    """Room 0101 is not octal 65, a pager 0123 not 83, and a key 0101 not 65 either."""
    text = edit('room: "101"', "room: 0101")
    text = edit('rooms: [101, "102"]', 'rooms: [0101, "102"]', text)
    text = edit("night1: {channel: mqtt}", "night1: {channel: mqtt, address: 0123}", text)
    text = edit("  door-102: {", '  0102: {room: "102", kind: pull_cord}\n  door-102: {', text)
    config = parse_config(text, filename=FILE)
    assert config.devices["bed-101"].room == "0101"
    assert config.zones["east"].rooms == ("0101", "102")
    assert config.handsets["night1"].address == "0123"
    assert "0102" in config.devices


def test_raised_on_means_the_string_a_zigbee_payload_carries() -> None:
    """`raised: ON` matches {"state": "ON"}; YAML 1.1 would have read it as true."""
    from gateway.decoders import Zigbee2MqttDecoder  # noqa: PLC0415
    from gateway.model import SignalState  # noqa: PLC0415

    text = edit(
        'door-102: {room: "102", kind: door_open}',
        'door-102: {room: "102", kind: door_open, field: state, raised: ON}',
    )
    config = parse_config(text, filename=FILE)
    assert config.devices["door-102"].raised == "ON"
    decoder = Zigbee2MqttDecoder(source="zigbee", config=config)
    decoder.decode("zigbee2mqtt/door-102", b'{"state": "OFF"}', 0.0)
    out = decoder.decode("zigbee2mqtt/door-102", b'{"state": "ON"}', 1.0)
    assert [s.state for s in out] == [SignalState.RAISED]
    # `true` spelled as such is still the boolean a Zigbee occupancy field carries.
    text = edit("raised: ON", "raised: true", text)
    assert parse_config(text, filename=FILE).devices["door-102"].raised is True


def test_an_unquoted_time_is_the_time_written() -> None:
    """`start: 22:00` is YAML 1.1 sexagesimal 1320; alertgw reads the 22:00 written."""
    text = BASE + 'schedules:\n  night: {start: 22:00, end: "07:00"}\n'
    assert parse_config(text, filename=FILE).schedules["night"].start == "22:00"


def test_an_alias_of_a_mapping_with_a_merge_key_is_not_a_duplicate() -> None:
    """Valid YAML: `late: &late {<<: *night, ...}` then `late_copy: *late`."""
    text = BASE + (
        "schedules:\n"
        '  night: &night {start: "22:00", end: "07:00"}\n'
        '  late: &late {<<: *night, end: "02:00"}\n'
        "  late_copy: *late\n"
    )
    config = parse_config(text, filename=FILE)
    assert config.schedules["late_copy"].end == "02:00"
    assert config.schedules["late_copy"].start == "22:00"


# --- rules that can never apply ------------------------------------------------------------


def test_a_rule_for_cleared_signals_only_is_refused() -> None:
    """Rules decide how an alert is raised: `states: [cleared]` would never apply."""
    text = BASE + "rules:\n  - {name: bed-clear, match: {kinds: [bed_exit], states: [cleared]}}\n"
    assert only_problem(text) == (
        f"{FILE}:{line_of(text, 'states: [cleared]')}: rules[0].match.states: rules decide "
        "what happens when an alert is raised; one for cleared signals only never applies"
    )


def test_a_rule_below_a_wider_one_is_refused_as_dead() -> None:
    """First match wins: a fall-risk bed rule below an any-bed rule never applies."""
    text = BASE + (
        "schedules:\n"
        '  night: {start: "22:00", end: "07:00"}\n'
        "rules:\n"
        "  - {name: bed-any, match: {kinds: [bed_exit]}, hold_off: 600}\n"
        "  - {name: bed-fall-risk, match: {kinds: [bed_exit], tags: [fall_risk],"
        " schedule: night}, hold_off: 45}\n"
        "  - {name: door-night, match: {kinds: [door_open], schedule: night}, hold_off: 60}\n"
        "  - {name: door-dementia, match: {kinds: [door_open], tags: [dementia]}}\n"
        # A device must carry every tag: the narrower two-tag rule first is right.
        "  - {name: cord-both, match: {kinds: [pull_cord], tags: [dementia, fall_risk]}}\n"
        "  - {name: cord-one, match: {kinds: [pull_cord], tags: [dementia]}}\n"
    )
    assert only_problem(text) == (
        f"{FILE}:{line_of(text, '{name: bed-fall-risk')}: rules[1]: rule 'bed-fall-risk' never "
        "applies: rule 'bed-any' (rules[0]) above it matches everything it does, and the first "
        "matching rule wins"
    )


def test_mqtt_topics_the_broker_would_refuse_are_problems() -> None:
    """A wildcard in a handset address ended alertgw's whole MQTT session, in a loop."""
    text = edit("night1: {channel: mqtt}", "night1: {channel: mqtt, address: t/natt+dag}")
    text = edit('topics: ["zigbee2mqtt/#"]', 'topics: ["zigbee2mqtt/#/x", "a/b+"]', text)
    text = edit("  backoff_max: 10", "  backoff_max: 10\n  status_topic: alertgw/#", text)
    assert problems_of(text) == [
        f"{FILE}:{line_of(text, 'status_topic')}: mqtt.status_topic: 'alertgw/#': a topic "
        "alertgw publishes to cannot hold the wildcards + or #",
        f"{FILE}:{line_of(text, 'topics:')}: sources.zigbee.topics[0]: 'zigbee2mqtt/#/x': `#` "
        "must be a whole level, and the last one",
        f"{FILE}:{line_of(text, 'topics:')}: sources.zigbee.topics[1]: 'a/b+': `+` must be a "
        "whole level (a/+/b)",
        f"{FILE}:{line_of(text, 'night1:')}: handsets.night1.address: 't/natt+dag': a topic "
        "alertgw publishes to cannot hold the wildcards + or #",
    ]


ROSTER = """\
schedules:
  all: {start: "00:00", end: "00:00"}
roster:
  shifts: [{schedule: all, assign: {east: [night1], west: [night2]}}]
  overrides:
    - {start: "2026-12-24T22:00", end: "2026-12-25T07:00", zone: east, handsets: [night2]}
  failsafe: [night2]
"""


def test_an_override_that_ends_before_it_starts_is_refused() -> None:
    """Christmas cover written 24 Dec 22:00 -> 24 Dec 07:00 would never apply: refused."""
    text = BASE.replace("routing:", ROSTER + "routing:", 1)
    assert parse_config(text, filename=FILE).roster is not None  # the intended dates pass
    wrong = text.replace('end: "2026-12-25T07:00"', 'end: "2026-12-24T07:00"')
    line = line_of(wrong, "2026-12-24T07:00")
    assert only_problem(wrong) == (
        f"{FILE}:{line}: roster.overrides[0].end: ends at "
        "2026-12-24T07:00, not after its start 2026-12-24T22:00: it would never apply"
    )


@pytest.mark.parametrize(
    ("port", "expected"),
    [
        (
            "sockt://10.0.0.5:4001",
            "unknown URL scheme 'sockt' (expected socket://host:port, rfc2217://, …)",
        ),
        ("socket://10.0.0.5", "expected socket://host:port, got socket://10.0.0.5"),
        # urlsplit raises on an open IPv6 bracket: a problem line, not a traceback.
        ("socket://[::1:4001", "expected socket://host:port, got socket://[::1:4001"),
        ("socket://host:99999", "expected socket://host:port, got socket://host:99999"),
        (
            "ttyUSB0",
            "expected a device path such as /dev/ttyUSB0, or a URL such as socket://host:port",
        ),
        # pyserial opens it, but the event loop has no descriptor to wait on.
        ("loop://", "loop:// has no file descriptor to watch (use a device path or socket://)"),
    ],
)
def test_espa_port_that_cannot_open_is_a_problem(port: str, expected: str) -> None:
    """A misspelt port URL is refused by `check` with its line, not left to kill the daemon."""
    text = edit("sources:\n", ESPA_SOURCE)
    text += f'espa:\n  l1:\n    port: "{port}"\n'
    where = line_of(text, 'port: "')
    assert only_problem(text) == f"{FILE}:{where}: espa.l1.port: {expected}"


def test_two_sources_reading_one_espa_line_is_a_problem() -> None:
    """`check` passed it, and `alertgw run` died building the line (exit 1, restarted in a loop)."""
    text = edit("sources:\n", ESPA_SOURCE + "  nurse2: {type: espa, link: l1}\n")
    text += "espa:\n  l1: {port: /dev/ttyUSB0}\n"
    assert only_problem(text) == (
        f"{FILE}:{line_of(text, 'nurse2:')}: sources.nurse2.link: espa line 'l1' is already"
        " read by source 'nurse'; one source per line"
    )


@pytest.mark.parametrize(
    "port", ["/dev/ttyUSB0", "socket://10.0.0.5:4001", "rfc2217://[::1]:2217", "spy:///dev/ttyS0"]
)
def test_espa_port_paths_and_urls_pyserial_opens_are_accepted(port: str) -> None:
    """Device paths and the URL schemes pyserial knows pass `check`."""
    text = edit("sources:\n", ESPA_SOURCE) + f'espa:\n  l1: {{port: "{port}"}}\n'
    assert parse_config(text, filename=FILE).espa["l1"].port == port


def test_latin1_text_on_a_7_bit_espa_line_is_a_problem() -> None:
    """`encoding: latin-1` needs 8 data bits: a 7-bit UART garbles every Nordic letter.

    It drops bit 7, and the BCC (an XOR) still matches, so the DECT ACKs and shows
    "Dxr epen" for "Dør åpen" without any error anywhere.
    """
    text = (
        edit("sources:\n", ESPA_SOURCE) + "espa:\n  l1: {port: /dev/ttyUSB0, encoding: latin-1}\n"
    )
    assert only_problem(text) == (
        f"{FILE}:{line_of(text, 'encoding:')}: espa.l1.encoding: latin-1 needs bytesize: 8"
        " (a 7-bit line drops bit 7 of every Nordic letter); use iso646-no on a 7-bit line"
    )
    eight_bit = text.replace("encoding: latin-1", "encoding: latin-1, bytesize: 8, parity: N")
    assert parse_config(eight_bit, filename=FILE).espa["l1"].encoding == "latin-1"


@pytest.mark.parametrize("address", ["12345678901234567", "21 22", "2\t1"])
def test_espa_handset_address_espa_cannot_carry_is_a_problem(address: str) -> None:
    """A call address over 16 characters (§5) was cut to another pager's number: refused."""
    text = edit("  night2: {channel: console}\n", "  dect: {channel: espa, link: l1, address: X}\n")
    text = text.replace("address: X", json.dumps({"address": address})[1:-1])
    text += "espa:\n  l1: {port: /dev/ttyUSB0}\n"
    text = text.replace("handsets: [night2]", "handsets: [dect]")
    assert only_problem(text) == (
        f"{FILE}:{line_of(text, 'dect:')}: handsets.dect.address: an ESPA call address is"
        " 1-16 printable ASCII characters without spaces (the pager, handset or group number)"
    )


@pytest.mark.parametrize(
    ("key", "host"),
    [("mqtt.host", "broker box"), ("mqtt.host", "-broker"), ("metrics.host", "a b")],
)
def test_a_host_no_resolver_could_take_is_a_problem(key: str, host: str) -> None:
    """A host that only fails when the daemon starts would be a systemd restart loop."""
    if key == "mqtt.host":
        text = edit("  host: 127.0.0.1\n", f"  host: '{host}'\n")
    else:
        text = edit("journal:\n", f"metrics: {{host: '{host}'}}\njournal:\n")
    assert only_problem(text) == (
        f"{FILE}:{line_of(text, host)}: {key}: expected an IP address or a host name, got {host!r}"
    )


@pytest.mark.parametrize("host", ["::1", "0.0.0.0", "localhost", "broker.care-home.local."])
def test_addresses_and_host_names_pass(host: str) -> None:
    """IP literals (v4 and v6) and RFC 1123 names, a trailing dot included, are accepted."""
    text = edit("  host: 127.0.0.1\n", f"  host: '{host}'\n")
    text = edit("journal:\n", f"metrics: {{host: '{host}'}}\njournal:\n", text)
    config = parse_config(text, filename=FILE)
    assert config.mqtt is not None
    assert (config.mqtt.host, config.metrics.host) == (host, host)


# --- lone UTF-16 surrogates ("\udc80") pass check, then crash the daemon -----------------


def test_a_lone_surrogate_in_a_display_text_is_refused_with_its_line() -> None:
    r"""`"\udc80"` is a legal YAML escape but no character: the journal's UTF-8 encoding
    raised at the first alert (the daemon exited 1, and again after each restart), and a
    reload applied it to a running daemon (review, 2026-11-25)."""
    text = edit('text: "Wandering {room}"', 'text: "Wandering \\udc80 {room}"')
    problems = problems_of(text)
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{FILE}:{line_of(text, 'wander:')}: kinds.wander.text")


def test_a_lone_surrogate_in_a_topic_is_a_problem_not_a_traceback() -> None:
    r"""`_topic_problem` encoded the topic and raised UnicodeEncodeError out of `check`."""
    text = edit('topics: ["zigbee2mqtt/#"]', 'topics: ["zigbee2mqtt/\\ud800"]')
    problems = problems_of(text)  # UnicodeEncodeError, not ConfigError, before the fix
    assert any(
        p.startswith(f"{FILE}:{line_of(text, 'topics:')}: sources.zigbee.topics") for p in problems
    ), problems


# --- YAML 1.1 line breaks an editor does not count shift every line number --------------


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\x85"])
def test_a_line_separator_in_a_quoted_value_does_not_shift_later_lines(separator: str) -> None:
    """PyYAML counts U+2028, U+2029 and NEL as line breaks; grep, sed and editors do not.

    `sitee:` was reported one line below where the technician finds it.
    """
    text = edit("name: Test home", f'name: "Test{separator}home"') + "sitee: 1\n"
    problems = problems_of(text)
    reported = {int(p.split(":")[1]) for p in problems}
    assert reported <= {line_of(text, "name:"), line_of(text, "sitee:")}, problems


def test_a_line_separator_in_a_comment_names_the_line_it_is_on() -> None:
    """A U+2028 pasted into a comment ended the comment: the rest of the line became YAML,
    and the error named line 3 (`name: Test home`, which is fine) as "mapping values are
    not allowed here", with nothing pointing at the invisible character on line 1."""
    text = "# Solbakken\u2028 sykehjem, 2. etasje\n" + BASE
    problems = problems_of(text)
    assert problems[0].startswith(f"{FILE}:1:"), problems
    assert "2028" in problems[0], problems


# --- files `check` takes on trust that make `run` crash --------------------------------


def _with_tls_ca(tmp_path: Path, content: str) -> str:
    ca = tmp_path / "ca.pem"
    ca.write_text(content)
    return edit("  backoff_max: 10\n", f"  backoff_max: 10\n  tls:\n    ca_file: {ca}\n")


def test_a_ca_file_that_holds_no_certificate_is_refused_by_check(tmp_path: Path) -> None:
    """`check` only asked is_file(): `run` then died in a TaskGroup traceback (ssl.SSLError
    NO_CERTIFICATE_OR_CRL_FOUND) and systemd restarted it in a loop."""
    text = _with_tls_ca(tmp_path, "not a certificate\n")
    problems = problems_of(text)
    assert any(
        p.startswith(f"{FILE}:{line_of(text, 'ca_file:')}: mqtt.tls.ca_file") for p in problems
    ), problems


def test_a_password_file_that_is_not_utf8_is_refused_without_showing_it(
    tmp_path: Path,
) -> None:
    """read_password's UnicodeDecodeError ended `run` in a traceback; check said OK."""
    secret = tmp_path / "broker.pw"
    secret.write_bytes(b"hunter\xf82\n")
    text = edit(
        "  backoff_max: 10\n",
        f"  backoff_max: 10\n  username: alertgw\n  password_file: {secret}\n",
    )
    problems = problems_of(text)
    assert any(
        p.startswith(f"{FILE}:{line_of(text, 'password_file:')}: mqtt.password_file")
        for p in problems
    ), problems
    assert not any("hunter" in p for p in problems)


# --- keys written with dashes (documented as equal to underscores) ----------------------


JSON_SOURCE = edit(
    "sources:\n",
    'sources:\n  nursecall:\n    type: mqtt\n    topics: ["nc/#"]\n    max-rate: 5\n',
)


def test_a_dashed_source_key_its_type_ignores_is_refused_like_the_underscored_one() -> None:
    """`max_rate:` on a JSON source is refused; `max-rate:` was silently ignored."""
    problems = problems_of(JSON_SOURCE)
    assert any(
        p.startswith(f"{FILE}:{line_of(JSON_SOURCE, 'max-rate')}: sources.nursecall.max")
        and "applies only to zigbee2mqtt sources" in p
        for p in problems
    ), problems


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ("  backoff_max: 10\n", "  backoff_max: 10\n  status-topic: 'a/#'\n", "status-topic"),
        ("journal:\n", "technical:\n  digest-at: '25:00'\njournal:\n", "digest-at"),
        (
            "journal:\n",
            "presence:\n  timeout: 60\n  assistance-text: '{x}'\njournal:\n",
            "assistance-text",
        ),
    ],
)
def test_a_problem_with_a_dashed_key_names_that_keys_line(old: str, new: str, key: str) -> None:
    """`_line` looked the underscored name up among the keys as written and fell back to the
    section's line (line 4, `mqtt:`, for a bad status-topic on line 8)."""
    text = edit(old, new)
    problem = problems_of(text)[0]
    assert problem.startswith(f"{FILE}:{line_of(text, key)}:"), problem


# --- zones without rooms switch off the room check ---------------------------------------


def test_devices_in_no_zone_are_refused_when_every_zone_is_empty() -> None:
    """With zones written but none holding a room, `rooms_in_zones` is empty and the
    "room is in no zone" check is skipped: every device is in zone '' and no zone route or
    roster shift ever reaches it."""
    text = edit('    rooms: [101, "102"]', "    rooms: []")
    text = edit('    rooms: ["201"]', "    rooms: []", text)
    problems = problems_of(text)
    assert any(
        re.match(rf"{FILE}:\d+: devices\.bed-101\.room: room '101' is in no zone", p)
        for p in problems
    ), problems


# --- the command line --------------------------------------------------------------------


def test_check_exits_78_on_a_surrogate_topic(tmp_path: Path) -> None:
    """End to end: `alertgw check` raised UnicodeEncodeError instead of exiting 78."""
    path = tmp_path / "site.yaml"
    path.write_text(edit('topics: ["zigbee2mqtt/#"]', 'topics: ["zigbee2mqtt/\\ud800"]'))
    with pytest.raises(ConfigError):
        load_config(path)
    assert cli.main(["check", str(path)]) == EX_CONFIG


def test_a_surrogate_pair_written_as_two_escapes_is_the_character_it_stands_for() -> None:
    r"""PyYAML reads `"\ud83d\ude00"` as two lone halves; joined, they are one emoji."""
    text = edit('text: "Wandering {room}"', 'text: "Wandering \\ud83d\\ude00 {room}"')
    config = parse_config(text, filename=FILE)
    assert "\U0001f600" in config.kinds["wander"].text


@pytest.mark.parametrize(
    ("old", "new", "path", "tag"),
    [
        ("kinds:\n  wander:", "kinds: !include\n  wander:", "kinds", "!include"),
        ("  name: Test home", "  name: !!binary VGVzdA==", "site.name", "!!binary"),
        ("  east:\n    rooms:", "  east: !!set\n    rooms:", "zones.east", "!!set"),
        ("    rooms: [101,", "    rooms: !!omap [101,", "zones.east.rooms", "!!omap"),
    ],
)
def test_a_tag_alertgw_does_not_read_is_refused_on_its_line(
    old: str, new: str, path: str, tag: str
) -> None:
    """`!include` on a section was ignored (the section read as written there, the include
    never happened); `!!binary` became the text "b'...'"; `!!set` read as a map."""
    text = edit(old, new)
    assert problems_of(text) == [
        f"{FILE}:{line_of(text, tag)}: {path}: invalid YAML: the tag {tag} is not supported:"
        " alertgw reads plain YAML"
    ]


def test_plain_tags_are_still_read() -> None:
    """`!!str 0101` is how YAML says "this number is text"; it stays allowed."""
    config = parse_config(edit('"102"]', '"102", !!str 0103]'), filename=FILE)
    assert config.zones["east"].rooms == ("101", "102", "0103")


def test_a_tls_section_with_every_line_commented_out_is_not_plain_tcp() -> None:
    """`tls:` with nothing under it read as no TLS: the password crossed the network bare."""
    text = edit("  backoff_max: 10\n", "  backoff_max: 10\n  tls:\n  #  ca_file: /etc/ca.pem\n")
    assert problems_of(text) == [
        f"{FILE}:{line_of(text, 'tls:')}: mqtt.tls: is empty: give ca_file for TLS,"
        " or remove the line for plain TCP"
    ]


def test_an_override_inside_the_hour_the_spring_change_skips_is_refused() -> None:
    """Cover written 29 March 02:10 -> 02:50: the clocks go from 02:00 straight to 03:00,
    so the override would never apply (the roster starts a skipped time at the jump, as
    schedules do). Before, the check read each time an hour on (03:10 -> 03:50) and let
    it pass; the roster then never used it.
    """
    text = BASE.replace("routing:", ROSTER + "routing:", 1)
    skipped = text.replace('"2026-12-24T22:00"', '"2026-03-29T02:10"').replace(
        '"2026-12-25T07:00"', '"2026-03-29T02:50"'
    )
    line = line_of(skipped, "2026-03-29T02:50")
    assert only_problem(skipped) == (
        f"{FILE}:{line}: roster.overrides[0].end: ends at 2026-03-29T02:50, not after its "
        "start 2026-03-29T02:10: it would never apply (the clocks skip that hour)"
    )
    across = skipped.replace('"2026-03-29T02:50"', '"2026-03-29T03:30"')
    assert parse_config(across, filename=FILE).roster is not None  # 03:00 -> 03:30 applies
