"""sd_notify over real AF_UNIX datagram sockets, WATCHDOG_USEC parsing and the watchdog loop."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from gateway.sdnotify import Notifier, watchdog_interval, watchdog_loop


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A datagram socket bound in tmp_path, standing in for systemd's notify socket."""
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(5)
        yield sock, str(path)


@pytest.fixture
def abstract_listener() -> Iterator[tuple[socket.socket, str]]:
    """A datagram socket in the abstract namespace; yields it and its `@name` spelling."""
    name = f"alertgw-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        sock.settimeout(5)
        yield sock, "@" + name


def fields(datagram: bytes) -> dict[str, str]:
    """Parse one sd_notify datagram into its assignments."""
    return dict(line.split("=", 1) for line in datagram.decode().split("\n"))


async def receive(sock: socket.socket, count: int) -> list[bytes]:
    """Collect `count` datagrams from a non-blocking socket without blocking the loop."""
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(5):
        return [await loop.sock_recv(sock, 4096) for _ in range(count)]


def pending(sock: socket.socket) -> list[bytes]:
    """Drain whatever datagrams are queued right now."""
    sock.setblocking(False)
    out: list[bytes] = []
    with contextlib.suppress(BlockingIOError):
        while True:
            out.append(sock.recv(4096))
    return out


def test_path_socket_receives_every_state(listener: tuple[socket.socket, str]) -> None:
    """READY/STATUS, STATUS, WATCHDOG, RELOADING and STOPPING each arrive as one datagram."""
    sock, path = listener
    notifier = Notifier(environ={"NOTIFY_SOCKET": path})
    try:
        assert notifier.enabled
        assert notifier.ready("3 drivers up")
        assert notifier.status("draining")
        assert notifier.watchdog()
        assert notifier.reloading()
        assert notifier.stopping()
        got = [fields(sock.recv(4096)) for _ in range(5)]
    finally:
        notifier.close()
    assert got[0] == {"READY": "1", "STATUS": "3 drivers up"}
    assert got[1] == {"STATUS": "draining"}
    assert got[2] == {"WATCHDOG": "1"}
    assert got[3]["RELOADING"] == "1"
    assert int(got[3]["MONOTONIC_USEC"]) > 0
    assert got[4] == {"STOPPING": "1"}


def test_abstract_socket_receives_ready(
    abstract_listener: tuple[socket.socket, str],
) -> None:
    """An `@name` NOTIFY_SOCKET reaches the abstract-namespace socket."""
    sock, name = abstract_listener
    notifier = Notifier(environ={"NOTIFY_SOCKET": name})
    try:
        assert notifier.ready("ok")
        assert notifier.watchdog()
        assert notifier.stopping()
        got = [fields(sock.recv(4096)) for _ in range(3)]
    finally:
        notifier.close()
    assert got == [{"READY": "1", "STATUS": "ok"}, {"WATCHDOG": "1"}, {"STOPPING": "1"}]


def test_reads_notify_socket_from_process_environment(
    listener: tuple[socket.socket, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without an explicit environ the Notifier reads os.environ."""
    sock, path = listener
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    notifier = Notifier()
    try:
        assert notifier.stopping()
        assert fields(sock.recv(4096)) == {"STOPPING": "1"}
    finally:
        notifier.close()


def test_newline_in_status_cannot_forge_a_field(listener: tuple[socket.socket, str]) -> None:
    """A newline in status text is flattened so it cannot smuggle in READY=1."""
    sock, path = listener
    notifier = Notifier(environ={"NOTIFY_SOCKET": path})
    try:
        notifier.status("bad\nREADY=1")
        assert fields(sock.recv(4096)) == {"STATUS": "bad READY=1"}
    finally:
        notifier.close()


def test_no_op_without_notify_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    """With NOTIFY_SOCKET unset nothing is sent, nothing is logged and nothing raises."""
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notifier = Notifier()
    with capture_logs() as logs:
        results = [
            notifier.ready("x"),
            notifier.status("x"),
            notifier.watchdog(),
            notifier.reloading(),
            notifier.stopping(),
        ]
    notifier.close()
    assert not notifier.enabled
    assert results == [False] * 5
    assert logs == []


def test_unsupported_socket_kind_disables_and_logs() -> None:
    """A NOTIFY_SOCKET that is neither a path nor `@name` is logged and ignored."""
    with capture_logs() as logs:
        notifier = Notifier(environ={"NOTIFY_SOCKET": "vsock:2:1234"})
    assert not notifier.enabled
    assert not notifier.watchdog()
    assert [e["event"] for e in logs] == ["sd_notify_unsupported_socket"]


def test_send_error_is_logged_not_raised(tmp_path: Path) -> None:
    """A vanished notify socket makes sends return False and log, never raise."""
    notifier = Notifier(environ={"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    with capture_logs() as logs:
        assert not notifier.watchdog()
    notifier.close()
    assert [e["event"] for e in logs] == ["sd_notify_failed"]
    assert logs[0]["socket"] == str(tmp_path / "gone.sock")
    assert logs[0]["fields"] == ["WATCHDOG"]


def test_close_is_idempotent_and_send_reopens(listener: tuple[socket.socket, str]) -> None:
    """close() twice is harmless and a later send opens a fresh socket."""
    sock, path = listener
    notifier = Notifier(environ={"NOTIFY_SOCKET": path})
    notifier.watchdog()
    notifier.close()
    notifier.close()
    assert notifier.watchdog()
    notifier.close()
    assert [fields(sock.recv(4096)) for _ in range(2)] == [{"WATCHDOG": "1"}] * 2


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "OWN"}, 0.5),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "OTHER"}, None),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": ""}, 15.0),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "-5"}, None),
        ({"WATCHDOG_USEC": "thirty"}, None),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "me"}, None),
    ],
)
def test_watchdog_interval(environ: dict[str, str], expected: float | None) -> None:
    """Half of WATCHDOG_USEC in seconds, or None when unset, invalid or meant for another pid."""
    pids = {"OWN": str(os.getpid()), "OTHER": str(os.getpid() + 1)}
    env = {k: pids.get(v, v) for k, v in environ.items()}
    assert watchdog_interval(env) == expected


def test_watchdog_interval_reads_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without an explicit environ watchdog_interval reads os.environ."""
    monkeypatch.setenv("WATCHDOG_USEC", "4000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert watchdog_interval() == 2.0


async def test_watchdog_loop_pings_repeatedly(listener: tuple[socket.socket, str]) -> None:
    """The loop keeps sending WATCHDOG=1 from the event loop."""
    sock, path = listener
    notifier = Notifier(environ={"NOTIFY_SOCKET": path})
    task = asyncio.create_task(watchdog_loop(notifier, 0.01))
    try:
        got = await receive(sock, 3)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        notifier.close()
    assert [fields(d) for d in got] == [{"WATCHDOG": "1"}] * 3


async def test_watchdog_loop_skips_pings_while_unhealthy(
    listener: tuple[socket.socket, str],
) -> None:
    """No ping while healthy() is False (logged once as a warning); pings resume after."""
    sock, path = listener
    notifier = Notifier(environ={"NOTIFY_SOCKET": path})
    checks: list[bool] = []
    state = {"healthy": False}

    def healthy() -> bool:
        checks.append(state["healthy"])
        return state["healthy"]

    with capture_logs() as logs:
        task = asyncio.create_task(watchdog_loop(notifier, 0.01, healthy=healthy))
        try:
            for _ in range(500):
                if len(checks) >= 3:
                    break
                await asyncio.sleep(0.01)
            # A ping follows its check synchronously, so three failed checks mean three skips.
            assert checks[:3] == [False] * 3
            assert pending(sock) == []
            state["healthy"] = True
            got = await receive(sock, 2)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            notifier.close()
    assert [fields(d) for d in got] == [{"WATCHDOG": "1"}] * 2
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert [e["event"] for e in warnings] == ["watchdog_unhealthy"]
    assert "watchdog_healthy" in [e["event"] for e in logs]


async def test_watchdog_loop_treats_raising_check_as_unhealthy(
    listener: tuple[socket.socket, str],
) -> None:
    """A health check that raises stops pings and is logged, without killing the loop."""
    sock, path = listener
    notifier = Notifier(environ={"NOTIFY_SOCKET": path})
    calls: list[int] = []

    def healthy() -> bool:
        calls.append(1)
        raise RuntimeError("probe broke")

    with capture_logs() as logs:
        task = asyncio.create_task(watchdog_loop(notifier, 0.01, healthy=healthy))
        try:
            for _ in range(500):
                if len(calls) >= 3:
                    break
                await asyncio.sleep(0.01)
            assert not task.done()
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            notifier.close()
    assert len(calls) >= 3
    assert pending(sock) == []
    assert "watchdog_check_failed" in [e["event"] for e in logs]


@pytest.mark.parametrize("interval", [0.0, -1.0])
async def test_watchdog_loop_rejects_non_positive_interval(interval: float) -> None:
    """A zero or negative interval is a programming error, not a busy loop."""
    with pytest.raises(ValueError, match="positive"):
        await watchdog_loop(Notifier(environ={}), interval)
