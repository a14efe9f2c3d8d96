"""The simulated night: deterministic, labelled Zigbee2MQTT traffic for configured devices."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from gateway.config import Config, load_config
from gateway.decoders import Zigbee2MqttDecoder
from gateway.simulate import NIGHT_SECONDS, NightSimulator

DEMO = Path(__file__).resolve().parent.parent / "config" / "demo.yaml"
LABELS = {
    "baseline",
    "turn_over",
    "bathroom_visit",
    "long_absence",
    "pull_cord",
    "staff_round",
    "seizure",
    "fall",
    "battery_report",
}


@pytest.fixture(scope="module")
def demo() -> Config:
    """The shipped demo configuration."""
    return load_config(DEMO)


def test_same_seed_gives_the_same_night(demo: Config) -> None:
    """Two simulators with one seed produce identical nights; another seed differs."""
    first = NightSimulator(demo, seed=7).night()
    assert NightSimulator(demo, seed=7).night() == first
    assert NightSimulator(demo, seed=8).night() != first


def test_events_are_sorted_and_inside_the_night(demo: Config) -> None:
    """Events come in time order and all fall within the night."""
    events = NightSimulator(demo, seed=3).night()
    times = [e.t for e in events]
    assert times == sorted(times)
    assert times[0] >= 0
    assert times[-1] <= NIGHT_SECONDS
    short = NightSimulator(demo, seed=3).night(length=3600)
    assert all(0 <= e.t <= 3600 for e in short)
    assert len(short) < len(events)


@pytest.mark.parametrize("seed", [1, 2, 7])
def test_every_topic_is_a_configured_device(demo: Config, seed: int) -> None:
    """Each event's topic is base_topic/<friendly name> of a configured device."""
    topics = {f"zigbee2mqtt/{dc.name or dev}" for dev, dc in demo.devices.items()}
    events = NightSimulator(demo, seed=seed).night()
    assert events
    assert {e.topic for e in events} <= topics


def test_every_payload_decodes_as_zigbee2mqtt(demo: Config) -> None:
    """The Zigbee2MQTT decoder accepts every simulated message."""
    decoder = Zigbee2MqttDecoder(source="sim", config=demo)
    for e in NightSimulator(demo, seed=7).night():
        assert isinstance(orjson.loads(e.payload), dict)
        assert decoder.decode(e.topic, e.payload, e.t)  # raises DecodeError if not


def test_events_carry_labels_and_situations(demo: Config) -> None:
    """Every event has a known label and a situation id shared by its messages."""
    events = NightSimulator(demo, seed=7).night()
    assert {e.label for e in events} <= LABELS
    assert {"pull_cord", "turn_over", "staff_round", "battery_report"} <= {e.label for e in events}
    for e in events:
        assert e.situation.startswith(f"{e.label}-")
    by_situation: dict[str, set[str]] = {}
    for e in events:
        by_situation.setdefault(e.situation, set()).add(e.label)
    assert all(len(labels) == 1 for labels in by_situation.values())


def test_a_night_mixes_situations_that_need_staff_and_ones_that_do_not(demo: Config) -> None:
    """A night has both needs_staff situations and harmless ones, labelled consistently."""
    events = NightSimulator(demo, seed=7).night()
    needs = {e.situation for e in events if e.needs_staff}
    harmless = {e.situation for e in events if not e.needs_staff}
    assert needs
    assert harmless
    assert not needs & harmless
    assert all(e.needs_staff for e in events if e.label in {"pull_cord", "seizure", "fall"})
    assert not any(e.needs_staff for e in events if e.label in {"turn_over", "staff_round"})


def test_the_first_pull_cord_comes_early(demo: Config) -> None:
    """A pull cord rings five seconds in, so a demo shows an alert at once."""
    events = NightSimulator(demo, seed=7).night()
    first_cord = next(e for e in events if e.label == "pull_cord")
    assert first_cord.t == 5.0
    assert orjson.loads(first_cord.payload)["action"] == "single"


def test_base_topic_is_configurable(demo: Config) -> None:
    """A custom base topic prefixes every event topic."""
    events = NightSimulator(demo, seed=7, base_topic="site/z2m/").night()
    assert all(e.topic.startswith("site/z2m/rom") for e in events)


def test_a_config_without_devices_has_a_quiet_night() -> None:
    """No devices, no events."""
    assert NightSimulator(Config()).night() == []
