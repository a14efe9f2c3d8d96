"""The `alertgw espa` technician tool: monitor and send through a real pty pair."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from gateway.espa.tool import main
from tests.integration.espa_peer import ACK, EOT, GARBAGE, NAK, Dect, PtyPeer, frame
from tests.test_cli import alertgw_into_closed_pipe

LINE_8N1 = ["--bytesize", "8", "--parity", "N", "--stopbits", "1"]  # ptys refuse 7E
FAST = ["--poll-interval", "0.05", "--reply-timeout", "0.3"]


@contextlib.asynccontextmanager
async def dect(*, answering: bool = True) -> AsyncIterator[tuple[PtyPeer, Dect]]:
    """A simulated DECT system on a pty (or a silent port when not `answering`)."""
    peer = PtyPeer()
    sim = Dect(peer)
    task = asyncio.create_task(sim.run()) if answering else None
    try:
        yield peer, sim
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        peer.close()


async def test_send_reports_ack_and_status(capsys: pytest.CaptureFixture[str]) -> None:
    """`send` pages the address, prints the ACK and the paged status, and exits 0."""
    async with dect() as (peer, sim):

        async def answer_status() -> None:
            call = await sim.calls.get()
            sim.status(call.records["1"].decode(), "3")

        async with asyncio.timeout(10), asyncio.TaskGroup() as tg:
            tg.create_task(answer_status())
            argv = ["send", peer.path, "--address", "21", "--text", "Test rom 101", *LINE_8N1]
            argv += [*FAST, "--priority", "high", "--status-wait", "3"]
            rc = await asyncio.to_thread(main, argv)
    out = capsys.readouterr().out
    assert rc == 0
    assert "ACK: the paging system accepted the call" in out
    assert "status: block header 2 (status) address='21' status='paged'" in out
    assert "STATUS: delivered" in out


async def test_send_without_answer_fails(capsys: pytest.CaptureFixture[str]) -> None:
    """`send` to a silent port prints FAILED and exits 1 after its timeout."""
    async with dect(answering=False) as (peer, _):
        argv = ["send", peer.path, "--address", "21", *LINE_8N1, *FAST, "--timeout", "0.5"]
        async with asyncio.timeout(10):
            rc = await asyncio.to_thread(main, argv)
    assert rc == 1
    assert "FAILED: no ACK within 0.5 s" in capsys.readouterr().out


async def test_send_rejected_call_fails(capsys: pytest.CaptureFixture[str]) -> None:
    """A '3' NAK (invalid message) to the call block makes `send` exit 1."""
    async with dect() as (peer, sim):
        sim.reject_blocks = 1
        argv = ["send", peer.path, "--address", "21", *LINE_8N1, *FAST]
        async with asyncio.timeout(10):
            rc = await asyncio.to_thread(main, argv)
    assert rc == 1
    assert "FAILED: call not accepted (rejected)" in capsys.readouterr().out


async def test_send_to_missing_port_fails(capsys: pytest.CaptureFixture[str]) -> None:
    """A port that cannot be opened is one line on stderr and exit 1."""
    async with asyncio.timeout(10):
        rc = await asyncio.to_thread(main, ["send", "/nonexistent/tty", "--address", "1"])
    assert rc == 1
    assert "/nonexistent/tty" in capsys.readouterr().err


@pytest.mark.parametrize("command", [["send", "loop://", "--address", "1"], ["monitor", "loop://"]])
async def test_a_port_without_a_descriptor_is_one_line(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """pyserial opens loop://, but nothing can wait on it: one line and exit 1, no traceback."""
    async with asyncio.timeout(10):
        rc = await asyncio.to_thread(main, command)
    assert rc == 1
    err = capsys.readouterr().err
    assert err == (
        "alertgw espa: loop://: not a port the event loop can watch"
        " (use a device path, socket:// or rfc2217://)\n"
    )


async def test_monitor_decodes_a_transaction(capsys: pytest.CaptureFixture[str]) -> None:
    """`monitor` prints polls, selects, ACK/NAK, garbage and a decoded Nordic call block."""
    peer = PtyPeer()
    try:
        argv = ["monitor", peer.path, *LINE_8N1, "--duration", "1.5"]
        async with asyncio.timeout(10), asyncio.TaskGroup() as tg:
            run = tg.create_task(asyncio.to_thread(main, argv))
            seen = ""
            while "monitoring" not in seen:  # the tool opened the port
                await asyncio.sleep(0.02)
                seen += capsys.readouterr().out
            block = frame("1", [("1", b"21"), ("2", b"D|r \\pen"), ("4", b"3"), ("6", b"1")])
            bad = block[:-1] + bytes([block[-1] ^ 0x55])
            peer.write(bytes([EOT]) + b"2\x05" + bytes([EOT]))  # idle poll
            peer.write(b"1\x052\x05" + bytes([ACK]) + bad + b"1" + bytes([NAK]) + block)
            peer.write(bytes([ACK, EOT]) + GARBAGE)
        rc = run.result()
    finally:
        peer.close()
    lines = [
        line.split(maxsplit=1)[1] for line in (seen + capsys.readouterr().out).splitlines()[1:]
    ]
    assert lines[:3] == ["EOT", "CS->2 poll 2", "EOT"]
    assert lines[3:7] == ["CS->1 poll 1", "1->2  select 2", "2->1  ACK", "block BAD (bcc_mismatch)"]
    assert lines[7] == "2->1  NAK 1 transmission error"
    assert lines[8] == (
        "1->2  block header 1 (call) address='21' message='Dør Øpen' call_type='standard' "
        "priority='alarm'"
    )
    assert lines[9:11] == ["2->1  ACK", "EOT"]
    assert lines[11].startswith("garbage")
    assert rc == 0


async def test_monitor_into_a_closed_pipe_stops_quietly() -> None:
    """`espa monitor | head` ends with 141 and nothing on stderr, not "PORT: Broken pipe"."""
    peer = PtyPeer()
    try:
        argv = ["espa", "monitor", peer.path, *LINE_8N1, "--duration", "30"]
        result = await asyncio.to_thread(alertgw_into_closed_pipe, *argv)
    finally:
        peer.close()
    assert (result.returncode, result.stderr) == (141, "")
