"""The offline `alertgw` subcommands: schema, simulate, replay and test-rules."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from gateway.cli import main
from gateway.config import EX_CONFIG
from tests.test_cli import alertgw_into_closed_pipe

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "config" / "example.yaml"
RULES = REPO / "config" / "tests" / "example.rules.yaml"


def test_schema_prints_json_schema_rejecting_unknown_keys(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`schema` prints valid JSON whose objects forbid unknown keys."""
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False
    assert schema["properties"]["site"]["additionalProperties"] is False
    rule = schema["properties"]["rules"]["items"]
    assert rule["additionalProperties"] is False
    assert "hold_off" in rule["properties"]
    ladder = schema["properties"]["escalation"]["additionalProperties"]
    reopen = ladder["properties"]["reopen_after"]
    assert (reopen["type"], reopen["minimum"]) == ("integer", 0)
    assert "reopened" in reopen["description"]


def test_simulate_then_replay_round_trip(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A simulated night written by `simulate` replays through `replay` with a report."""
    capture = tmp_path / "night.jsonl"
    argv = ["simulate", "--config", str(EXAMPLE), "--seed", "2", "--date", "2026-11-24"]
    assert main([*argv, "--out", str(capture)]) == 0
    assert "wrote" in capsys.readouterr().err
    lines = capture.read_text(encoding="utf-8").splitlines()
    first = json.loads(lines[0])
    assert set(first) == {"ts", "topic", "payload", "situation", "label", "needs_staff"}
    start = dt.datetime(2026, 11, 24, 22, 0, tzinfo=ZoneInfo("Europe/Oslo")).timestamp()
    stamps = [json.loads(line)["ts"] for line in lines]
    assert start <= min(stamps) <= max(stamps) <= start + 9 * 3600
    assert main(["replay", str(capture), "--config", str(EXAMPLE)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"Replay of {EXAMPLE}: 2026-11-24 22:0")
    assert f"{'messages':<36}{len(lines):>7}" in out
    assert "situations needing staff" in out


def test_replay_compare_and_no_accept(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--compare` prints both configs side by side; `--no-accept` lets alerts escalate."""
    capture = tmp_path / "night.jsonl"
    argv = ["simulate", "--config", str(EXAMPLE), "--date", "2026-11-24", "--out", str(capture)]
    assert main(argv) == 0
    demo = REPO / "config" / "demo.yaml"
    argv = ["replay", str(capture), "--config", str(EXAMPLE), "--compare", str(demo)]
    assert main([*argv, "--no-accept"]) == 0
    out = capsys.readouterr().out
    assert str(EXAMPLE)[-20:] in out
    assert str(demo)[-20:] in out  # both configs, side by side
    assert "B - A" in out
    escalations = next(line for line in out.splitlines() if line.startswith("escalations"))
    assert int(escalations.split()[1]) > 0


def test_replay_reports_bad_capture_line_and_bad_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A malformed capture exits 65 naming the line; a broken config exits 78."""
    capture = tmp_path / "bad.jsonl"
    capture.write_text('{"ts": 1795554001, "topic": "a", "payload": 1}\n{oops\n', encoding="utf-8")
    assert main(["replay", str(capture), "--config", str(EXAMPLE)]) == 65
    assert f"{capture}:2: invalid JSON" in capsys.readouterr().err
    broken = tmp_path / "broken.yaml"
    broken.write_text("sites: {}\n", encoding="utf-8")
    assert main(["replay", str(capture), "--config", str(broken)]) == EX_CONFIG
    assert "sites: unknown key" in capsys.readouterr().err


def test_replay_of_an_empty_capture_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A capture with no messages (recording never ran) exits 65, not a report of zeros."""
    capture = tmp_path / "night.jsonl"
    capture.write_text("\n", encoding="utf-8")
    assert main(["replay", str(capture), "--config", str(EXAMPLE)]) == 65
    out, err = capsys.readouterr()
    assert (out, err) == ("", f"alertgw: {capture}: no messages in the capture\n")


@pytest.mark.parametrize("seconds", ["-5", "nan", "inf", "soon"])
def test_replay_accept_after_must_be_seconds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], seconds: str
) -> None:
    """`--accept-after nan` ran a replay whose staff never answered, titled 'after nan s'."""
    with pytest.raises(SystemExit) as info:
        main(["replay", "x.jsonl", "--config", str(EXAMPLE), "--accept-after", seconds])
    assert info.value.code == 2
    assert f"--accept-after: expected a number of seconds, 0 or more, got {seconds!r}" in (
        capsys.readouterr().err
    )


@pytest.mark.parametrize("where", ["missing/night.jsonl", "."])
def test_simulate_into_a_place_it_cannot_write_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], where: str
) -> None:
    """A missing folder or a directory as --out: one line and exit 1, not a traceback."""
    out = tmp_path / where
    argv = ["simulate", "--config", str(EXAMPLE), "--date", "2026-11-24", "--out", str(out)]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"alertgw: --out {out}: cannot write: ")
    assert err.count("\n") == 1


def test_test_rules_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`test-rules` exits 0 when every file passes and 1 when any scenario fails."""
    assert main(["test-rules", str(RULES)]) == 0
    assert "0 failed" in capsys.readouterr().out
    failing = tmp_path / "fail.rules.yaml"
    failing.write_text(
        f"config: {EXAMPLE}\n"
        'start: "2026-11-24T23:00:00"\n'
        "scenarios:\n"
        "  - name: wrong\n"
        "    signals: [{at: 0, device: snor-101}]\n"
        "    expect: [{at: 5, handset: natt-ost, type: ring}]\n",
        encoding="utf-8",
    )
    assert main(["test-rules", str(RULES), str(failing)]) == 1
    out = capsys.readouterr().out
    assert 'FAILED  scenario "wrong"' in out
    assert "1 failed" in out


@pytest.mark.parametrize("command", ["schema", "test-rules", "simulate", "replay"])
def test_output_into_a_closed_pipe_stops_quietly(tmp_path: Path, command: str) -> None:
    """`alertgw CMD | head` ends with 141 and nothing on stderr, not a BrokenPipeError."""
    capture = tmp_path / "night.jsonl"
    night = ["--config", str(EXAMPLE), "--date", "2026-11-24"]
    if command == "replay":
        assert main(["simulate", *night, "--out", str(capture)]) == 0
    argv = {
        "schema": ["schema"],
        "test-rules": ["test-rules", str(RULES)],
        "simulate": ["simulate", *night],
        "replay": ["replay", str(capture), "--config", str(EXAMPLE)],
    }[command]
    result = alertgw_into_closed_pipe(*argv)
    assert (result.returncode, result.stderr) == (141, "")
