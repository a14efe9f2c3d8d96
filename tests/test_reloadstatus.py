"""The reload status file: atomic entries, numbering across daemons, failures only logged."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from gateway.reloadstatus import (
    ReloadReporter,
    ReloadStatus,
    read_status,
    status_path,
    write_status,
)


def test_the_status_file_sits_beside_the_pid_file() -> None:
    """`JOURNAL.reload`, as `JOURNAL.pid`: both are found from the config alone."""
    assert status_path("/var/lib/alertgw/alertgw.db") == Path("/var/lib/alertgw/alertgw.db.reload")


def test_an_entry_reads_back_as_written_and_leaves_no_temp_file(tmp_path: Path) -> None:
    """write_status replaces the file whole; nothing else is left in the directory."""
    path = tmp_path / "j.db.reload"
    entry = ReloadStatus(
        4, 123, "failed", ("a.yaml: mqtt changed; restart to apply",), "a.yaml", 5.0
    )
    write_status(path, entry)
    write_status(path, entry)  # over an existing file too
    assert read_status(path) == entry
    assert sorted(p.name for p in tmp_path.iterdir()) == ["j.db.reload"]


@pytest.mark.parametrize(
    "content",
    [b"", b"{", b"[]", b'{"seq": 1, "pid": 2, "outcome": "maybe"}', b'{"seq": "1", "pid": 2}'],
    ids=["empty", "truncated", "list", "unknown-outcome", "seq-text"],
)
def test_a_file_that_is_no_entry_reads_as_none(tmp_path: Path, content: bytes) -> None:
    """A stray or foreign file is no answer, not a crash of `alertgw reload`."""
    path = tmp_path / "j.db.reload"
    path.write_bytes(content)
    assert read_status(path) is None


def test_a_missing_file_reads_as_none(tmp_path: Path) -> None:
    """No reload has been answered on this journal yet."""
    assert read_status(tmp_path / "j.db.reload") is None


def test_the_reporter_numbers_each_attempt_after_the_previous_daemon(tmp_path: Path) -> None:
    """A restarted daemon continues the count, so its first answer is newer than any before."""
    path = tmp_path / "j.db.reload"
    write_status(path, ReloadStatus(7, 1, "applied"))
    reporter = ReloadReporter(path)
    reporter.report("failed", ["x.yaml:3: rules: unknown key"], "x.yaml")
    first = read_status(path)
    assert first is not None
    assert (first.seq, first.pid, first.outcome) == (8, os.getpid(), "failed")
    assert first.problems == ("x.yaml:3: rules: unknown key",)
    assert first.file == "x.yaml"
    reporter.report("applied", file="x.yaml")
    second = read_status(path)
    assert second is not None
    assert (second.seq, second.outcome, second.problems) == (9, "applied", ())


def test_a_status_that_cannot_be_written_is_logged_not_raised(tmp_path: Path) -> None:
    """A full disk or a read-only directory must never take the daemon down."""
    path = tmp_path / "gone" / "j.db.reload"  # its directory does not exist
    with capture_logs() as logs:
        ReloadReporter(path).report("applied", file="x.yaml")
    assert [(e["event"], e["log_level"], e["outcome"]) for e in logs] == [
        ("reload_status_write_failed", "error", "applied")
    ]
    assert "FileNotFoundError" in logs[0]["error"]
    assert str(path) == logs[0]["path"]
