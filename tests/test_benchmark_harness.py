"""The hot-path benchmark's pure parts: percentiles, schedules, correlation, result lines."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import orjson
import pytest

from benchmarks.hotpath import (
    BABBLER,
    DEVICES,
    FLOOR_TOPIC,
    IN_PREFIX,
    LINE_KEYS,
    RELAY_TOPIC,
    _versus_relay,
    floor_plan,
    gateway_config,
    gateway_plan,
    latencies_us,
    median_lines,
    message_key,
    open_loop_schedule,
    percentile,
    result_line,
    signal_count,
    summarise_profile,
)
from benchmarks.inprocess import measure
from benchmarks.journal import run as journal_run
from gateway.config import parse_config


def test_percentile_is_nearest_rank() -> None:
    """p50 of 1..100 is 50, p99 is 99, p100 and p99.9 are the maximum."""
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 90) == 90.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 99.9) == 100.0
    assert percentile(values, 100) == 100.0
    assert percentile([7.0], 1) == 7.0


def test_percentile_rejects_empty_input_and_bad_rank() -> None:
    """No values, q = 0 or q > 100 is a caller error."""
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)
    with pytest.raises(ValueError, match="outside"):
        percentile([1.0], 0)
    with pytest.raises(ValueError, match="outside"):
        percentile([1.0], 100.1)


def test_open_loop_schedule_is_evenly_spaced_from_the_start() -> None:
    """At 2,000/s the intended times are 500 µs apart, independent of when sends happen."""
    times = open_loop_schedule(1_000_000_000, 2000, 5)
    assert times == [1_000_000_000 + i * 500_000 for i in range(5)]
    third = open_loop_schedule(0, 3, 4)
    assert third == [0, 333_333_333, 666_666_667, 1_000_000_000]
    with pytest.raises(ValueError, match="positive"):
        open_loop_schedule(0, 0, 1)


def test_signal_count_rounds_up_to_whole_raise_clear_cycles() -> None:
    """Counts are multiples of 2 x devices, so every device ends a scenario cleared."""
    assert signal_count(500, 3) == 2000
    assert signal_count(2000, 3) == 6000
    assert signal_count(1, 0.1) == 2 * DEVICES
    assert signal_count(10, 1, devices=2) == 12


def test_gateway_plan_alternates_states_and_keys_cancels_by_the_raise() -> None:
    """Each device sees raised then cleared; a clear's key is the cancel of its raise."""
    plan = gateway_plan(8, "t", devices=2)
    states = [orjson.loads(p)["state"] for p in plan.payloads]
    assert states == ["raised", "raised", "cleared", "cleared"] * 2
    assert plan.topics[:3] == [f"{IN_PREFIX}/d0", f"{IN_PREFIX}/d1", f"{IN_PREFIX}/d0"]
    assert plan.keys[0] == "r:t.0"
    assert plan.keys[2] == "c:t.0"
    assert plan.keys[3] == "c:t.1"
    assert plan.keys[4] == "r:t.4"
    assert len(set(plan.keys)) == len(plan.keys)
    ids = [orjson.loads(p)["id"] for p in plan.payloads]
    assert len(set(ids)) == len(ids)
    per_device = Counter(orjson.loads(p)["device"] for p in plan.payloads)
    assert set(per_device.values()) == {4}


def test_floor_plan_targets_the_floor_topic_with_ring_shaped_messages() -> None:
    """Floor messages parse with the same key function as handset messages."""
    plan = floor_plan(3, "f")
    assert plan.topics == [FLOOR_TOPIC] * 3
    assert [message_key(p) for p in plan.payloads] == plan.keys == ["r:f.0", "r:f.1", "r:f.2"]


def test_relay_plan_goes_to_the_relay_and_keys_like_the_floor() -> None:
    """The relay republishes the payload unchanged, so its messages key like the floor's."""
    plan = floor_plan(2, "p", topic=RELAY_TOPIC)
    assert plan.topics == [RELAY_TOPIC] * 2
    assert [message_key(p) for p in plan.payloads] == plan.keys == ["r:p.0", "r:p.1"]


def test_versus_relay_gives_ratios_only_where_both_sides_have_figures() -> None:
    """alertgw's p99, CPU and burst throughput as multiples of the paho relay's."""
    line = {"p99_us": 900.0, "cpu_us_per_signal": 300.0, "throughput_per_s": 8000}
    assert _versus_relay(line, (450.0, 150.0)) == {
        "ratio_p99_to_relay": 2.0,
        "ratio_cpu_to_relay": 2.0,
    }
    assert _versus_relay(line, (450.0, 150.0), 10_000.0)["ratio_throughput_to_relay"] == 0.8
    assert _versus_relay(line, None) == {}
    assert _versus_relay({**line, "p99_us": None}, (450.0, 0.0)) == {}


def test_median_lines_take_each_number_over_runs_per_scenario_and_rate() -> None:
    """Runs of the same scenario, journal and rate merge; numbers become medians."""
    lines = [
        {"scenario": "alertgw", "journal": "normal", "rate": 500, "p99_us": p, "lost": 0}
        for p in (900.0, 3000.0, 1000.0)
    ]
    lines.append({"scenario": "alertgw", "journal": "normal", "rate": 2000, "p99_us": 5.0})
    lines.append({"scenario": "floor", "journal": None, "rate": 500, "p99_us": None, "x": "a"})
    merged = median_lines(lines)
    assert merged == [
        {
            "scenario": "alertgw",
            "journal": "normal",
            "rate": 500,
            "p99_us": 1000.0,
            "lost": 0,
            "summary": "median of 3 runs",
        },
        {
            "scenario": "alertgw",
            "journal": "normal",
            "rate": 2000,
            "p99_us": 5.0,
            "summary": "median of 1 runs",
        },
        {
            "scenario": "floor",
            "journal": None,
            "rate": 500,
            "p99_us": None,
            "x": "a",
            "summary": "median of 1 runs",
        },
    ]
    assert median_lines([*lines, *merged]) == merged  # summaries are not summarised again


def test_message_key_reads_rings_and_cancels_only() -> None:
    """Ring and cancel are keyed by signal id; updates, garbage and non-objects are not."""
    assert message_key(b'{"type": "ring", "signal_id": "a.1", "seq": 1}') == "r:a.1"
    assert message_key(b'{"type": "cancel", "signal_id": "a.1", "seq": 2}') == "c:a.1"
    assert message_key(b'{"type": "update", "signal_id": "a.1"}') is None
    assert message_key(b'{"type": "ring"}') is None
    assert message_key(b"[1, 2]") is None
    assert message_key(b"not json") is None


def test_latencies_are_measured_from_intended_times_and_skip_lost_messages() -> None:
    """Receipt minus intended send time in µs, sorted; a key never received is left out."""
    keys = ["r:a", "r:b", "r:c"]
    intended = [1_000_000, 2_000_000, 3_000_000]
    received = {"r:a": 1_500_000, "r:c": 3_100_000}
    assert latencies_us(keys, intended, received) == [100.0, 500.0]


def test_result_line_has_the_documented_shape() -> None:
    """One JSON-able line with every documented key, counts, percentiles and ratios."""
    lat = [float(v) for v in range(1, 1001)]
    line = result_line(
        scenario="alertgw",
        journal="normal",
        rate=2000,
        sent=1002,
        latencies=lat,
        cpu_s=0.1002,
        broker_cpu_s=0.0501,
        rss=(30.0, 31.0, 32.0),
        floor_p99=99.0,
    )
    assert tuple(line) == LINE_KEYS
    for key in ("scenario", "rate", "sent", "received", "lost", "p50_us", "p999_us", "max_us"):
        assert key in line
    assert (line["sent"], line["received"], line["lost"]) == (1002, 1000, 2)
    assert (line["p50_us"], line["p90_us"], line["p99_us"]) == (500.0, 900.0, 990.0)
    assert (line["p999_us"], line["max_us"]) == (999.0, 1000.0)
    assert line["cpu_us_per_signal"] == 100.0
    assert line["broker_cpu_us_per_signal"] == 50.0
    assert (line["rss_start_mb"], line["rss_end_mb"], line["rss_peak_mb"]) == (30.0, 31.0, 32.0)
    assert line["ratio_p99_to_floor"] == 10.0
    assert line["throughput_per_s"] is None
    assert json.loads(json.dumps(line)) == line


def test_result_line_with_everything_lost_has_no_percentiles() -> None:
    """A scenario where nothing arrived reports the loss and nulls, not an error."""
    line = result_line(
        scenario="alertgw_burst", journal="full", rate=None, sent=10, latencies=[], throughput=0.0
    )
    assert (line["received"], line["lost"]) == (0, 10)
    assert line["p99_us"] is None
    assert line["ratio_p99_to_floor"] is None
    assert line["throughput_per_s"] == 0


def test_gateway_config_is_a_valid_alertgw_config(tmp_path: Path) -> None:
    """The generated benchmark config passes alertgw's own validation."""
    raw = gateway_config(
        port=1883,
        journal_path=tmp_path / "j.db",
        synchronous="normal",
        client_id="bench",
        status_topic="bench/status",
    )
    config = parse_config(json.dumps(raw), filename="bench.yaml")
    cords = {name: d for name, d in config.devices.items() if name != BABBLER}
    assert len(cords) == DEVICES
    assert config.journal.synchronous == "normal"
    assert not config.metrics.enabled
    assert not config.rules
    assert {d.kind for d in cords.values()} == {"pull_cord"}
    # the flood scenario's babbler is a Zigbee2MQTT device, so its topic gets a fair share
    assert config.devices[BABBLER].source == "zigbee"
    assert config.sources["zigbee"].decoder == "zigbee2mqtt"
    assert config.sources["zigbee"].max_rate > 0
    assert all(config.zone_of(d.room) for d in config.devices.values())


def test_summarise_profile_reports_self_and_inclusive_shares() -> None:
    """Collapsed stacks become self-time and inclusive percentages."""
    text = "main (a.py:1);work (b.py:2) 3\nmain (a.py:1) 1\n"
    lines = summarise_profile(text)
    assert lines[0] == "4 samples; top self time:"
    assert "   75.0%  work (b.py:2)" in lines
    assert "  100.0%  main (a.py:1)" in lines
    assert summarise_profile("") == ["no samples"]


async def test_the_in_process_benchmark_routes_every_signal_to_one_handset_message() -> None:
    """`python -m benchmarks.inprocess` small: the figure is of real routing, none lost."""
    line = await measure(1000)
    assert (line["signals"], line["handset_messages"], line["lost"]) == (1000, 1000, 0)
    assert line["cpu_us_per_signal"] > 0


async def test_the_journal_benchmark_commits_every_signal() -> None:
    """`python -m benchmarks.journal` small: one line per batch size, of real commits."""
    lines = await journal_run(1000, [5, 20])
    assert [line["batch"] for line in lines] == [5, 20]
    for line in lines:
        assert line["db_thread_us_per_signal"] > 0
        assert line["kb_written_per_signal"] > 0
