"""sd_notify(3) over the NOTIFY_SOCKET datagram socket, without libsystemd."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Callable, Mapping
from typing import Never

import structlog

log = structlog.get_logger("alertgw")


class Notifier:
    """Send state changes to systemd; every method is a no-op when NOTIFY_SOCKET is unset."""

    def __init__(self, *, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.address = _socket_address(env.get("NOTIFY_SOCKET", ""))
        self._sock: socket.socket | None = None

    @property
    def enabled(self) -> bool:
        """True when a usable NOTIFY_SOCKET was given."""
        return self.address is not None

    def ready(self, status: str) -> bool:
        """Tell systemd start-up (or a reload) finished; `status` shows in `systemctl status`."""
        return self.notify(READY="1", STATUS=status)

    def reloading(self) -> bool:
        """Tell systemd a config reload started; follow with `ready()` when it is done."""
        # MONOTONIC_USEC lets systemd >= 253 match this message to the reload it asked for.
        return self.notify(RELOADING="1", MONOTONIC_USEC=str(time.monotonic_ns() // 1000))

    def stopping(self) -> bool:
        """Tell systemd the daemon is shutting down."""
        return self.notify(STOPPING="1")

    def status(self, text: str) -> bool:
        """Set the free-form status line shown by `systemctl status`."""
        return self.notify(STATUS=text)

    def watchdog(self) -> bool:
        """Send one keep-alive ping (WATCHDOG=1)."""
        return self.notify(WATCHDOG="1")

    def notify(self, **fields: str) -> bool:
        """Send `KEY=value` lines in one datagram; return False if not sent (errors are logged)."""
        if self.address is None:
            return False
        # A newline in a value would start a new, forged assignment.
        payload = "\n".join(f"{k}={v.replace(chr(10), ' ')}" for k, v in fields.items())
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                # Never block the event loop: if systemd's queue is full, drop and log.
                self._sock.setblocking(False)
            self._sock.sendto(payload.encode(), self.address)
        except OSError as exc:
            log.warning(
                "sd_notify_failed",
                socket=_display(self.address),
                fields=sorted(fields),
                error=repr(exc),
            )
            return False
        return True

    def close(self) -> None:
        """Close the socket; idempotent, and a later send reopens it."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """Seconds between pings (half of WATCHDOG_USEC), or None if the watchdog is not for us."""
    env = os.environ if environ is None else environ
    usec, pid = env.get("WATCHDOG_USEC", ""), env.get("WATCHDOG_PID", "")
    try:
        micros = int(usec)
        if pid and int(pid) != os.getpid():
            return None
    except ValueError:
        if usec:
            log.warning("watchdog_env_invalid", watchdog_usec=usec, watchdog_pid=pid)
        return None
    if micros <= 0:
        return None
    # Half the timeout, as sd_watchdog_enabled(3) recommends, leaves room for one late ping.
    return micros / 2 / 1_000_000


async def watchdog_loop(
    notifier: Notifier, interval: float, *, healthy: Callable[[], bool] | None = None
) -> Never:
    """Ping WATCHDOG=1 every `interval` s from the event loop while `healthy()` holds."""
    if interval <= 0:
        raise ValueError(f"watchdog interval must be positive, got {interval!r}")
    unhealthy_since: float | None = None
    while True:
        ok = _check(healthy)
        if ok:
            if unhealthy_since is not None:
                log.info("watchdog_healthy", unhealthy_for=time.monotonic() - unhealthy_since)
                unhealthy_since = None
            notifier.watchdog()
        elif unhealthy_since is None:
            # No ping: systemd kills and restarts us after WatchdogSec unless health returns.
            unhealthy_since = time.monotonic()
            log.warning("watchdog_unhealthy", interval=interval)
        else:
            log.debug("watchdog_unhealthy", unhealthy_for=time.monotonic() - unhealthy_since)
        await asyncio.sleep(interval)


def _check(healthy: Callable[[], bool] | None) -> bool:
    """Run the health check; a check that raises counts as unhealthy."""
    if healthy is None:
        return True
    try:
        return healthy()
    # A broken check must stop the pings (so systemd restarts us), not crash the supervisor.
    except Exception:
        log.exception("watchdog_check_failed")
        return False


def _socket_address(raw: str) -> str | bytes | None:
    """Map NOTIFY_SOCKET to a sendto() address; `@name` is a Linux abstract socket."""
    if raw.startswith("@") and len(raw) > 1:
        return b"\0" + raw[1:].encode()
    if raw.startswith("/"):
        return raw
    if raw:
        # e.g. systemd >= 254's vsock:CID:PORT for VMs, which the gateway never runs under.
        log.warning("sd_notify_unsupported_socket", socket=raw)
    return None


def _display(address: str | bytes) -> str:
    """Render an address the way NOTIFY_SOCKET spelled it."""
    return "@" + address[1:].decode(errors="replace") if isinstance(address, bytes) else address
