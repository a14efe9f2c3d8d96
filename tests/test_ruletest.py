"""`alertgw test-rules`: scenario files run on a virtual clock, with promtool-like failures."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.ruletest import run_file

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "config" / "example.yaml"

CONFIG = """\
site: {name: Rule test, timezone: Europe/Oslo}
zones:
  ost: {rooms: ["101"]}
devices:
  seng-101: {room: "101", kind: bed_exit, tags: [fall_risk]}
  snor-101: {room: "101", kind: pull_cord}
handsets:
  natt: {channel: console}
  vakt: {channel: console}
schedules:
  night: {start: "22:00", end: "07:00"}
roster:
  shifts:
    - {schedule: night, assign: {ost: [natt]}}
  failsafe: [vakt]
escalation:
  default:
    steps: [{to: primary, after: 60}, {to: failsafe, after: 60}]
rules:
  - name: bed-fall-risk
    match: {kinds: [bed_exit], tags: [fall_risk]}
    hold_off: 45
journal: {path: unused.db}
metrics: {enabled: false}
"""

PASSING = """\
config: home.yaml
start: "2026-11-24T23:00:00"
scenarios:
  - name: bed exit rings after the hold-off
    signals:
      - {at: 0, device: seng-101, state: raised}
    responses:
      - {at: 50, handset: natt, alert: last, response: accept}
    expect:
      - {at: 45, handset: natt, type: ring, kind: bed_exit, room: "101"}
      - {at: 50, handset: natt, type: update}
    expect_none:
      - {handset: vakt}
      - {handset: natt, type: ring, until: 45}
"""

FAILING = """\
config: home.yaml
start: "2026-11-24T23:00:00"
scenarios:
  - name: cord rings the failsafe too early
    signals:
      - {at: 0, device: snor-101}
    expect:
      - {at: 30, handset: vakt, type: ring, kind: pull_cord}
    expect_none:
      - {handset: natt, type: ring, after: 0}
"""


def write(tmp_path: Path, scenario: str) -> Path:
    """Write the test config and a scenario file next to it."""
    (tmp_path / "home.yaml").write_text(CONFIG, encoding="utf-8")
    path = tmp_path / "home.rules.yaml"
    path.write_text(scenario, encoding="utf-8")
    return path


def test_passing_scenario_counts_as_passed(tmp_path: Path) -> None:
    """A scenario whose expectations hold passes and prints `ok`."""
    passed, failed, output = run_file(write(tmp_path, PASSING))
    assert (passed, failed) == (1, 0)
    assert "ok      bed exit rings after the hold-off" in output
    assert output.endswith("1 passed, 0 failed")


def test_failing_scenario_names_expectation_and_lists_what_handsets_got(tmp_path: Path) -> None:
    """A failure names the scenario, the expectation with its line, and every handset's log."""
    path = write(tmp_path, FAILING)
    passed, failed, output = run_file(path)
    assert (passed, failed) == (0, 1)
    lines = output.splitlines()
    assert lines[0] == f'FAILED  scenario "cord rings the failsafe too early" ({path}:4)'
    assert lines[1] == (
        "  expect[0] (line 8): ring to vakt at 30 s (kind pull_cord): no matching delivery"
    )
    assert lines[2].startswith(
        "  expect_none[0] (line 10): no ring to natt after 0 s: "
        "got 120 s ring pull_cord room 101 to natt; 180 s"
    )
    assert lines[3] == "  got:"
    assert lines[4].split() == ["natt", "0", "s", "ring", "pull_cord", "room", "101"]
    vakt = next(line for line in lines if line.strip().startswith("vakt"))
    assert vakt.split() == ["vakt", "60", "s", "ring", "pull_cord", "room", "101"]


def test_response_to_nothing_is_a_failure(tmp_path: Path) -> None:
    """Answering when no alert rang the handset fails with a clear reason."""
    scenario = PASSING.replace("at: 50, handset: natt", "at: 10, handset: natt")
    passed, failed, output = run_file(write(tmp_path, scenario))
    assert (passed, failed) == (0, 1)
    assert (
        "responses[0] (line 8): accept from natt at 10 s: no alert 'last' has rung this handset"
        in output
    )


def test_unknown_keys_and_names_are_rejected_with_lines(tmp_path: Path) -> None:
    """A typo'd key or an unknown device fails the file before anything runs."""
    path = write(tmp_path, PASSING.replace("{at: 0, device:", "{at: 0, devce:"))
    passed, failed, output = run_file(path)
    assert (passed, failed) == (0, 1)
    assert f"{path}:6: scenarios[0].signals[0].devce: unknown key" in output
    path = write(tmp_path, PASSING.replace("device: seng-101", "device: seng-999"))
    _, failed, output = run_file(path)
    assert failed == 1
    assert f"{path}:6: scenarios[0].signals[0].device: unknown device 'seng-999'" in output


def test_missing_config_is_reported(tmp_path: Path) -> None:
    """A scenario file whose config cannot be read fails with the config's path."""
    path = tmp_path / "x.rules.yaml"
    path.write_text(PASSING, encoding="utf-8")
    passed, failed, output = run_file(path)
    assert (passed, failed) == (0, 1)
    assert "home.yaml: cannot read" in output


def test_shipped_example_rules_pass() -> None:
    """config/tests/example.rules.yaml passes against config/example.yaml."""
    passed, failed, output = run_file(REPO / "config" / "tests" / "example.rules.yaml")
    assert failed == 0, output
    assert passed >= 11


def test_only_simulated_devices_can_fall_silent(tmp_path: Path) -> None:
    """An hour-long scenario: the simulated sensor's silence rings, the others' does not.

    Before, every unmentioned sensor rang "silent", and an expectation without a kind or
    room passed on those rings instead of on the behaviour under test.
    """
    config = (
        CONFIG.replace('rooms: ["101"]', 'rooms: ["101", "102"]')
        .replace('seng-101: {room: "101"', 'seng-101: {room: "102"')
        .replace(
            "journal:",
            "supervision: {kinds: {bed_exit: 900, pull_cord: 900}}\n"
            "technical: {handsets: [vakt], digest: false}\njournal:",
        )
    )
    (tmp_path / "home.yaml").write_text(config, encoding="utf-8")
    path = tmp_path / "home.rules.yaml"
    path.write_text(
        """\
config: home.yaml
start: "2026-11-24T23:00:00"
scenarios:
  - name: a quiet hour after one cord press
    until: 3600
    signals:
      - {at: 0, device: snor-101}
    responses:
      - {at: 5, handset: natt, alert: last, response: resolve}
    expect:
      - {handset: vakt, type: ring, kind: device_silent, room: "101"}
    expect_none:
      - {handset: "*", type: ring, kind: device_silent, room: "102"}
""",
        encoding="utf-8",
    )
    passed, failed, output = run_file(path)
    assert (passed, failed) == (1, 0), output


def test_a_wrong_value_is_named_in_yaml_words(tmp_path: Path) -> None:
    """A response to an alert by name says what may be written there: `last` or a number."""
    path = write(tmp_path, PASSING.replace("alert: last", "alert: first"))
    passed, failed, output = run_file(path)
    assert (passed, failed) == (0, 1)
    assert (
        f"{path}:8: scenarios[0].responses[0].alert: expected 'last' or a whole number,"
        " got 'first'" in output
    )


# natt's app keeps its status (its alarm raised at once, no grace); vakt (a console) has none.
STATUS_CONFIG = CONFIG.replace(
    "natt: {channel: console}", "natt: {channel: mqtt, reports_status: true, offline_grace: 0}"
).replace("zones:", "mqtt: {host: 127.0.0.1}\nzones:")

STATUS = """\
config: home.yaml
start: "2026-11-24T23:00:00"
scenarios:
  - name: natt's app goes offline, a cord moves on to vakt at once, the app comes back
    handsets:
      - {at: 0, handset: natt, status: offline}
      - {at: 100, handset: natt, status: online}
    signals:
      - {at: 30, device: snor-101}
    expect:
      - {at: 0, handset: vakt, type: ring, kind: handset_offline}
      - {at: 30, handset: natt, type: ring, kind: pull_cord, room: "101"}
      - {at: 30, handset: vakt, type: ring, kind: pull_cord, room: "101"}
      - {at: 100, handset: vakt, type: cancel, kind: handset_offline}
    expect_none:
      - {handset: natt, kind: handset_offline}
  - name: a status and a signal at the same second, the status first
    signals:
      - {at: 30, device: snor-101}
    handsets:
      - {at: 30, handset: natt, status: offline}
    responses:
      - {at: 40, handset: vakt, alert: 0, response: accept}  # the first alert vakt heard
    expect:
      - {at: 30, handset: vakt, type: ring, kind: pull_cord}
      - {at: 40, handset: vakt, type: update, kind: handset_offline}
"""


def write_status(tmp_path: Path, scenario: str = STATUS) -> Path:
    """Write the config whose `natt` reports its app status, and a scenario file."""
    path = write(tmp_path, scenario)
    (tmp_path / "home.yaml").write_text(STATUS_CONFIG, encoding="utf-8")
    return path


def test_a_handset_status_step_moves_a_call_on_and_rings_the_offline_alarm(
    tmp_path: Path,
) -> None:
    """`handsets:` takes a handset's app offline or online; at a signal's second, first."""
    passed, failed, output = run_file(write_status(tmp_path))
    assert (passed, failed) == (2, 0), output


def test_a_handset_status_step_is_checked_against_the_config(tmp_path: Path) -> None:
    """An unknown handset, or one without `reports_status`, is refused with its line."""
    path = write_status(tmp_path, STATUS.replace("{at: 0, handset: natt,", "{at: 0, handset: nat,"))
    passed, failed, output = run_file(path)
    assert (passed, failed) == (0, 1)
    assert f"{path}:6: scenarios[0].handsets[0].handset: unknown handset 'nat'" in output
    path = write_status(
        tmp_path, STATUS.replace("{at: 100, handset: natt,", "{at: 100, handset: vakt,")
    )
    passed, failed, output = run_file(path)
    assert (passed, failed) == (0, 1)
    assert (
        f"{path}:7: scenarios[0].handsets[1].handset: handset 'vakt' has no "
        "`reports_status: true`: the daemon ignores its status"
    ) in output


def test_test_rules_runs_handset_status_steps(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`alertgw test-rules` passes a status scenario (exit 0) and refuses a bad one (exit 1)."""
    path = write_status(tmp_path)
    assert main(["test-rules", str(path)]) == 0
    out = capsys.readouterr().out
    assert "ok      natt's app goes offline, a cord moves on to vakt at once" in out
    assert out.rstrip().endswith("2 passed, 0 failed")
    write_status(
        tmp_path, STATUS.replace("handset: natt, status: online", "handset: vakt, status: online")
    )
    assert main(["test-rules", str(path)]) == 1
    out = capsys.readouterr().out
    assert "scenarios[0].handsets[1].handset: handset 'vakt' has no `reports_status: true`" in out
    assert out.rstrip().endswith(f"FAILED {path}: cannot run")


# -- from a review of the tools on bad input (2026-11-25) --------------------------------


def scenario_file(tmp_path: Path, body: str) -> Path:
    """A rule test file for config/example.yaml with one scenario `body` (indented YAML)."""
    path = tmp_path / "t.rules.yaml"
    path.write_text(
        f'config: {EXAMPLE}\nstart: "2026-11-24T23:00:00"\nscenarios:\n  - name: s\n{body}',
        encoding="utf-8",
    )
    return path


def alertgw_process(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """`alertgw ARGS` in a process of its own, killed after `timeout` seconds."""
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        check=False,
    )


# -- test-rules -----------------------------------------------------------------------------


def test_rules_file_not_utf8_is_one_line_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A scenario file saved as Latin-1 is refused like a non-UTF-8 config, naming the file."""
    path = tmp_path / "t.rules.yaml"
    path.write_bytes(b"config: ../example.yaml\nstart: x\n# Sm\xf8rbr\xf8d\n")
    assert main(["test-rules", str(path)]) == 1  # was a UnicodeDecodeError traceback
    out = capsys.readouterr().out
    assert str(path) in out
    assert "UTF-8" in out


def test_rules_a_negative_time_is_refused_not_moved_to_zero(tmp_path: Path) -> None:
    """`at: -5` ran the signal at 0 s: its bed exit rang at 45 s instead of 40 s."""
    path = scenario_file(
        tmp_path,
        "    signals:\n"
        "      - {at: -5, device: seng-102, state: raised}\n"
        "    expect:\n"
        "      - {at: 45, handset: natt-ost, type: ring, kind: bed_exit}\n",
    )
    passed, failed, out = run_file(path)
    assert (passed, failed) == (0, 1), out  # was 1 passed, the -5 read as 0
    assert "scenarios[0].signals[0].at" in out
    assert "cannot run" in out


def test_rules_an_epoch_time_for_seconds_after_start_is_refused_quickly(tmp_path: Path) -> None:
    """`until: 1795554005` (an epoch pasted where seconds after start belong) ran for hours."""
    path = scenario_file(
        tmp_path,
        "    until: 1795554005\n"
        "    signals:\n"
        "      - {at: 0, device: snor-101}\n"
        "    expect:\n"
        "      - {handset: natt-ost, type: ring}\n",
    )
    result = alertgw_process("test-rules", str(path), timeout=30)  # ran for hours
    assert result.returncode == 1
    assert "scenarios[0].until" in result.stdout


def test_rules_an_absence_window_that_is_empty_is_refused(tmp_path: Path) -> None:
    """`after: 100, until: 10` can match nothing, so the check passed whatever rang."""
    path = scenario_file(
        tmp_path,
        "    signals:\n"
        "      - {at: 0, device: snor-101}\n"
        "    expect_none:\n"
        '      - {handset: "*", type: ring, after: 100, until: 10}\n',
    )
    passed, failed, out = run_file(path)
    assert (passed, failed) == (0, 1), out  # passed whatever rang
    assert "scenarios[0].expect_none[0]" in out


def test_rules_an_unknown_room_is_refused(tmp_path: Path) -> None:
    """A room the config does not have (a typo: letter O for zero) made expect_none pass."""
    path = scenario_file(
        tmp_path,
        "    signals:\n"
        "      - {at: 0, device: snor-101}\n"
        "    expect_none:\n"
        '      - {handset: "*", type: ring, room: "1O1"}\n',
    )
    passed, failed, out = run_file(path)
    assert (passed, failed) == (0, 1), out  # passed whatever rang
    assert "scenarios[0].expect_none[0].room" in out
    assert "1O1" in out


@pytest.mark.parametrize("first_specific", [True, False])
def test_rules_expectations_pass_whatever_their_order(tmp_path: Path, first_specific: bool) -> None:
    """Two rings (rooms 101 and 103), expected as "a ring" and "a ring for 101": both fit.

    Greedy matching gave the 101 ring to the unfiltered item when it came first, then
    reported the 101 item as unmatched while the table below showed the ring to 101.
    """
    any_ring = "      - {handset: natt-ost, type: ring}\n"
    ring_101 = '      - {handset: natt-ost, type: ring, room: "101"}\n'
    path = scenario_file(
        tmp_path,
        "    signals:\n"
        "      - {at: 0, device: snor-101}\n"
        "      - {at: 10, device: snor-103}\n"
        "    responses:\n"
        "      - {at: 20, handset: natt-ost, alert: 0, response: accept}\n"
        "      - {at: 20, handset: natt-ost, alert: 1, response: accept}\n"
        "    expect:\n" + (ring_101 + any_ring if first_specific else any_ring + ring_101),
    )
    passed, failed, out = run_file(path)
    assert (passed, failed) == (1, 0), out  # the any-ring-first order failed
