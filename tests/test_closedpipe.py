"""Stopping quietly when standard output's reader has gone (`| head`)."""

from __future__ import annotations

import textwrap

import pytest

from gateway.closedpipe import EX_SIGPIPE, stop_quietly_on_closed_stdout
from tests.test_cli import python_into_closed_pipe


def test_the_commands_own_exit_code_passes_through(capsys: pytest.CaptureFixture[str]) -> None:
    """With a reader that stays, the command's output and exit code are its own."""
    assert stop_quietly_on_closed_stdout(lambda: print("report") or 3) == 3
    assert capsys.readouterr().out == "report\n"


def test_a_gone_reader_ends_the_process_quietly_with_141() -> None:
    """Stdout then goes nowhere: later output and the exit flush raise no second error."""
    script = textwrap.dedent(
        """
        import sys
        from gateway.closedpipe import stop_quietly_on_closed_stdout

        def report() -> int:
            print("line\\n" * 100)  # less than the buffer: the flush is what fails
            return 0

        code = stop_quietly_on_closed_stdout(report)
        print("later")  # e.g. a summary; into the closed pipe it would raise again
        sys.exit(code)
        """
    )
    result = python_into_closed_pipe("-c", script)
    assert (result.returncode, result.stderr) == (EX_SIGPIPE, "")
    assert EX_SIGPIPE == 141
