"""Replay: captures through the engine on a virtual clock, and the load report it yields."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from gateway.cli_tools import capture_records
from gateway.config import Config, load_config, parse_config
from gateway.replay import (
    CaptureError,
    compare,
    load_capture,
    render,
    replay,
    topic_matches,
)

REPO = Path(__file__).resolve().parent.parent
TZ = ZoneInfo("Europe/Oslo")
T0 = dt.datetime(2026, 11, 24, 23, 0, tzinfo=TZ).timestamp()

SMALL = """\
site: {name: Replay test, timezone: Europe/Oslo}
mqtt: {host: 127.0.0.1}
sources:
  zigbee: {type: mqtt, decoder: zigbee2mqtt, topics: ["zigbee2mqtt/#"]}
  nursecall: {type: mqtt, decoder: json, topics: ["nursecall/+/call"]}
zones:
  ost: {rooms: ["101", "102"]}
devices:
  seng-101: {room: "101", kind: bed_exit, name: rom101/seng, tags: [fall_risk]}
  tilstede-101: {room: "101", kind: presence, name: rom101/tilstede}
  snor-101: {room: "101", kind: pull_cord, source: nursecall}
  epi-102: {room: "102", kind: epilepsy, name: rom102/epi}
handsets:
  natt: {channel: mqtt}
  vakt: {channel: mqtt}
schedules:
  night: {start: "22:00", end: "07:00"}
roster:
  shifts:
    - {schedule: night, assign: {ost: [natt]}}
  failsafe: [vakt]
escalation:
  default:
    steps: [{to: primary, after: 60}, {to: failsafe, after: 60}]
    reminder: 0
rules:
  - name: bed-fall-risk
    match: {kinds: [bed_exit], tags: [fall_risk]}
    hold_off: 45
  - name: pull-cord
    match: {kinds: [pull_cord]}
"""


@pytest.fixture(scope="module")
def small() -> Config:
    """One wing: a fall-risk bed, a presence button, a nurse-call cord, a seizure sensor."""
    return parse_config(SMALL, filename="small.yaml")


def z2m(t: float, name: str, body: dict[str, Any], **extra: Any) -> dict[str, Any]:  # noqa: ANN401
    """A Zigbee2MQTT capture record `t` seconds after 23:00."""
    return {"ts": T0 + t, "topic": f"zigbee2mqtt/{name}", "payload": body, **extra}


def baseline() -> list[dict[str, Any]]:
    """Idle states first: the decoder takes a device's first level as its baseline."""
    return [
        z2m(0, "rom101/seng", {"occupancy": False}),
        z2m(0, "rom101/tilstede", {"occupancy": False}),
    ]


def test_topic_filters_match_like_mqtt() -> None:
    """`+` matches one level, `#` the rest (and the parent), wildcards skip $SYS topics."""
    assert topic_matches("zigbee2mqtt/#", "zigbee2mqtt/rom101/seng")
    assert topic_matches("zigbee2mqtt/#", "zigbee2mqtt")
    assert topic_matches("nursecall/+/call", "nursecall/solbakken/call")
    assert not topic_matches("nursecall/+/call", "nursecall/a/b/call")
    assert not topic_matches("nursecall/+/call", "nursecall/solbakken")
    assert topic_matches("a/b", "a/b")
    assert not topic_matches("a/b", "a/b/c")
    assert not topic_matches("#", "$SYS/broker/load")
    assert topic_matches("$SYS/#", "$SYS/broker/load")


def test_hold_off_cancels_a_turn_over_and_rings_a_real_exit(small: Config) -> None:
    """A bed exit back within 45 s is cancelled by the rule; one still out rings at 45 s."""
    events = [
        *baseline(),
        z2m(10, "rom101/seng", {"occupancy": True}),
        z2m(40, "rom101/seng", {"occupancy": False}),
        z2m(100, "rom101/seng", {"occupancy": True}),
    ]
    report = replay(events, small)
    assert report.alerts_raised == 2
    assert report.cancelled == {("auto_cancel", "bed-fall-risk"): 1}
    assert report.interruptions == 1
    assert report.interruptions_by_handset == {"natt": 1}
    assert report.escalations == 0  # accepted 30 s after the ring
    assert report.raised_signals == 2
    assert report.naive_interruptions == 2


def test_presence_resolves_a_call_and_cancels_a_held_exit(small: Config) -> None:
    """Pressing presence resolves the ringing cord and cancels the held bed exit in the room."""
    events = [
        *baseline(),
        {"ts": T0 + 5, "topic": "nursecall/x/call", "payload": {"device": "snor-101"}},
        z2m(20, "rom101/seng", {"occupancy": True}),
        z2m(30, "rom101/tilstede", {"occupancy": True}),
    ]
    report = replay(events, small)
    assert report.resolved == {("presence", "pull-cord"): 1}
    assert report.cancelled == {("presence", "bed-fall-risk"): 1}
    assert report.interruptions == 1
    assert report.deliveries["cancel"] == 1


def test_nobody_answering_shows_escalation(small: Config) -> None:
    """With accept_after=None a call climbs to the failsafe; with answers it does not."""
    events = [{"ts": T0, "topic": "nursecall/x/call", "payload": {"device": "snor-101"}}]
    unanswered = replay(events, small, accept_after=None)
    assert unanswered.escalations >= 1
    assert unanswered.escalations_by_reason["timeout"] == unanswered.escalations
    assert unanswered.interruptions_by_handset["vakt"] >= 1
    answered = replay(events, small, accept_after=20)
    assert answered.escalations == 0
    assert answered.interruptions_by_handset == {"natt": 1}


def test_critical_alert_rings_with_zero_delay(small: Config) -> None:
    """A seizure rings on the raising message itself, even on the sensor's first message."""
    events = [z2m(0, "rom102/epi", {"epilepsy": True})]
    report = replay(events, small)
    assert report.critical_alerts == 1
    assert report.critical_delays == (0.0,)
    assert report.critical_delay_max == 0.0
    assert report.critical_unrung == 0


def test_situations_count_needs_and_name_what_was_missed(small: Config) -> None:
    """Labelled events give needing/missed counts and a missed situation's alert fates."""
    events = [
        *baseline(),
        z2m(10, "rom101/seng", {"occupancy": True}, situation="s1", needs_staff=True),
        z2m(20, "rom101/seng", {"occupancy": False}, situation="s1", needs_staff=True),
        z2m(30, "rom101/seng", {"occupancy": True}, situation="s2", label="bath", needs_staff=True),
        z2m(200, "rom101/seng", {"occupancy": False}, situation="s2", needs_staff=True),
        z2m(300, "rom101/seng", {"occupancy": True}, situation="s3", needs_staff=False),
    ]
    report = replay(events, small)
    assert report.situations == 3
    assert report.situations_needing_staff == 2
    assert report.situations_missed == 1
    (missed,) = report.missed
    assert missed.situation == "s1"
    assert missed.at == 10
    assert "cancelled" in missed.fates[0]
    assert "auto_cancel" in missed.fates[0]
    assert report.interruptions_per_needed_situation == report.interruptions / 2
    text = render(report)
    assert "situations missed" in text
    assert "s1" in text


def test_unlabelled_capture_has_no_situation_figures(small: Config) -> None:
    """Without situation labels the report leaves situation figures as None."""
    report = replay(baseline(), small)
    assert report.situations is None
    assert report.situations_needing_staff is None
    assert report.situations_missed is None
    assert "situations needing staff" not in render(report)


def test_iso_timestamps_are_local_site_time(small: Config) -> None:
    """A naive ISO-8601 ts is read in the site's time zone."""
    events = [{"ts": "2026-11-24T23:00:00", "topic": "zigbee2mqtt/rom102/epi", "payload": {}}]
    report = replay(events, small)
    assert report.start == T0
    assert report.signals_in == 1


def test_unknown_topics_and_bad_payloads_are_counted(small: Config) -> None:
    """Topics no source subscribes to and undecodable payloads are tallied, not fatal."""
    events = [
        {"ts": T0, "topic": "other/thing", "payload": {}},
        {"ts": T0, "topic": "zigbee2mqtt/rom101/seng", "payload": "not json"},
        {"ts": T0, "topic": "zigbee2mqtt/nobody", "payload": {}},
    ]
    report = replay(events, small)
    assert report.unmatched_topics == 1
    assert report.decode_errors == {"malformed_json": 1, "unknown_device": 1}
    assert report.signals_in == 0


def test_a_nine_hour_night_replays_on_a_virtual_clock() -> None:
    """A simulated 9-hour night of the example home replays with every figure filled in."""
    config = load_config(REPO / "config" / "example.yaml")
    records = list(capture_records(config, first=dt.date(2026, 11, 24), seed=1))
    report = replay(records, config)
    assert report.messages == len(records)
    assert 8.5 < report.hours <= 9.0
    assert report.unmatched_topics == 0
    assert report.decode_errors == {}
    assert report.situations_needing_staff is not None
    assert report.situations_needing_staff > 0
    assert report.critical_delay_max == 0.0
    assert report.cancelled[("auto_cancel", "bed-exit-fall-risk-night")] > 0
    assert report.resolved[("presence", "pull-cord")] > 0
    assert report.interruptions < report.naive_interruptions
    assert set(report.interruptions_by_handset) <= {"natt-ost", "natt-vest", "vakt"}


def test_compare_shows_both_configs_and_the_difference(small: Config) -> None:
    """`compare` prints A, B and B - A per figure."""
    events = [
        *baseline(),
        z2m(10, "rom101/seng", {"occupancy": True}),
        z2m(30, "rom101/seng", {"occupancy": False}),
    ]
    forward = parse_config(SMALL.replace("hold_off: 45", "hold_off: 0"), filename="forward.yaml")
    text = compare(replay(events, small), replay(events, forward))
    assert "small.yaml" in text
    assert "forward.yaml" in text
    lines = {line.split("  ")[0]: line for line in text.splitlines()}
    assert lines["handset interruptions"].split()[-3:] == ["0", "1", "+1"]
    assert "cancelled auto_cancel bed-fall-risk" in text


def test_load_capture_names_the_malformed_line(tmp_path: Path) -> None:
    """A malformed capture line is reported with its file and line number."""
    path = tmp_path / "night.jsonl"
    path.write_text(
        '{"ts": 1795554001, "topic": "a", "payload": {}}\n\n'
        '{"ts": 1795554002, "topic": "a", "payload": \n',
        encoding="utf-8",
    )
    with pytest.raises(CaptureError, match=r"night\.jsonl:3: invalid JSON"):
        load_capture(path)
    path.write_text(
        '{"ts": 1795554001, "topic": "a", "payload": {}}\n{"ts": 1795554002, "payload": 1}\n'
    )
    with pytest.raises(CaptureError, match=r"night\.jsonl:2: topic: expected a non-empty string"):
        load_capture(path)
    path.write_text('{"ts": "yesterday", "topic": "a", "payload": 1}\n')
    with pytest.raises(CaptureError, match=r":1: ts: expected epoch seconds or ISO-8601"):
        load_capture(path)


def test_load_capture_reads_records(tmp_path: Path) -> None:
    """A valid capture loads as one dict per non-blank line."""
    path = tmp_path / "night.jsonl"
    path.write_text(
        '{"ts": 1795554001, "topic": "a", "payload": {"x": 1}}\n\n'
        '{"ts": "2026-11-24T23:00:00", "topic": "b", "payload": "online"}\n',
        encoding="utf-8",
    )
    records = load_capture(path)
    assert [r["topic"] for r in records] == ["a", "b"]
    assert records[1]["payload"] == "online"


# -- from a review of the tools on bad input (2026-11-25) ------------------------------------

_EXAMPLE = REPO / "config" / "example.yaml"
_PRESS = '"topic":"zigbee2mqtt/rom101/snor","payload":{"action":"single"}'


@pytest.mark.parametrize(
    ("first", "why"),
    [
        ('{"ts":1795554005000,' + _PRESS + "}", "milliseconds crashed the calendar"),
        ('{"ts":60,' + _PRESS + "}", "a box at 1970 until NTP: decades of deadlines, no end"),
        ('{"ts":"0001-01-01T00:00:00",' + _PRESS + "}", "an ISO time as far off"),
    ],
)
def test_a_capture_time_outside_2000_to_2099_is_refused_with_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], first: str, why: str
) -> None:
    """Review finding: each of these was a traceback or a replay that never ended."""
    from gateway.cli import main  # noqa: PLC0415

    capture = tmp_path / "odd.jsonl"
    capture.write_text(first + "\n" + '{"ts":1795554005,' + _PRESS + "}\n", encoding="utf-8")
    assert main(["replay", str(capture), "--config", str(_EXAMPLE)]) == 65, why
    err = capsys.readouterr().err
    assert f"{capture}:1: ts" in err
    assert "2000 to 2099" in err


def test_simulate_past_the_calendar_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--date 9999-12-31 --nights 2` overflowed `date` in a traceback (review finding)."""
    from gateway.cli import main  # noqa: PLC0415

    args = ["simulate", "--config", str(_EXAMPLE), "--out", str(tmp_path / "x.jsonl")]
    assert main([*args, "--date", "9999-12-31", "--nights", "2"]) == 2
    assert "--date" in capsys.readouterr().err
    assert not (tmp_path / "x.jsonl").exists()
    assert main([*args, "--date", "2026-11-24", "--nights", "1"]) == 0
    assert (tmp_path / "x.jsonl").stat().st_size > 0


# -- what the daemon records: ESPA calls, retained copies, redeliveries ---------------------

ESPA_SITE = """\
site: {name: ESPA replay, timezone: Europe/Oslo}
sources:
  nurse: {type: espa, link: ward}
espa:
  ward: {port: /dev/ttyUSB0}
zones:
  east: {rooms: ["101"]}
devices:
  call-101: {room: "101", kind: pull_cord, name: "101", source: nurse}
handsets:
  h1: {channel: console}
routing:
  - {handsets: [h1]}
"""


def test_replay_plays_the_espa_calls_the_daemon_recorded() -> None:
    """The daemon records an ESPA call as espa/<link>/<address>; replay left it unmatched."""
    config = parse_config(ESPA_SITE, filename="espa.yaml")
    call = {"address": "101", "message": "Rom 101", "call_type": "3", "priority": "2"}
    reset = call | {"call_type": "1"}  # the call answered at the bed: the call point resets
    events = [
        {"ts": T0, "topic": "espa/ward/101", "payload": call},
        {"ts": T0 + 1, "topic": "espa/other/101", "payload": call},
        {"ts": T0 + 5, "topic": "espa/ward/101", "payload": reset},
    ]
    report = replay(events, config)
    assert report.unmatched_topics == 1  # only the line this config has no source for
    assert report.decode_errors == {}
    assert report.alerts_rung == 1
    assert report.interruptions_by_handset == {"h1": 1}
    assert report.deliveries["cancel"] == 1  # the reset ended it: no reminders


def test_a_retained_press_replays_as_the_old_news_the_daemon_took_it_for(small: Config) -> None:
    """The broker's stored copy of a press, sent at a subscribe, rang in replay."""
    press = {"action": "single"}
    cord = parse_config(
        SMALL.replace("kind: pull_cord, source: nursecall", "kind: pull_cord, name: rom101/snor"),
        filename="cord.yaml",
    )
    report = replay([*baseline(), z2m(30, "rom101/snor", press, retain=True)], cord)
    assert report.decode_errors.get("retained_press") == 1
    assert report.alerts_raised == 0
    fresh = replay([*baseline(), z2m(30, "rom101/snor", press)], cord)
    assert fresh.alerts_raised == 1  # the same press, live, rings


def test_a_redelivery_of_a_played_message_is_dropped_as_the_daemon_drops_it(
    small: Config,
) -> None:
    """QoS 1 sends again what it never saw acknowledged; the daemon finds it journaled."""
    idle = [*baseline(), z2m(0, "rom102/epi", {"epilepsy": False})]
    fit = {"epilepsy": True}
    again = [*idle, z2m(10, "rom102/epi", fit), z2m(12, "rom102/epi", fit, dup=True)]
    report = replay(again, small)
    assert report.duplicates == 1
    assert report.signals_in == 4
    assert report.alerts_raised == 1
    # A redelivery whose first copy the capture does not hold (recording began after it,
    # or over an hour before) is news to replay, as to the daemon.
    alone = replay([*idle, z2m(10, "rom102/epi", fit, dup=True)], small)
    assert (alone.duplicates, alone.alerts_raised) == (0, 1)
    late = [*idle, z2m(10, "rom102/epi", fit), z2m(4000, "rom102/epi", fit, dup=True)]
    assert replay(late, small).duplicates == 0
    assert "redeliveries dropped" in render(report)


@pytest.mark.parametrize("flag", ["retain", "dup", "needs_staff"])
def test_a_capture_flag_that_is_not_true_or_false_is_refused(tmp_path: Path, flag: str) -> None:
    """`"retain": "yes"` would read as true; the line is named instead."""
    path = tmp_path / "night.jsonl"
    path.write_text(f'{{"ts": 1795554001, "topic": "a", "payload": {{}}, "{flag}": "yes"}}\n')
    with pytest.raises(CaptureError, match=rf"night\.jsonl:1: {flag}: expected true or false"):
        load_capture(path)
