"""A real Mosquitto on a free loopback port, for the tests and the benchmark alike.

Plain Python (no pytest), so `python -m benchmarks.hotpath` can start the same broker.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path


def free_port() -> int:
    """Return a loopback TCP port that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def mosquitto_binary() -> str:
    """Find the broker binary (Debian puts it in /usr/sbin)."""
    found = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
    )
    if found is None:
        raise RuntimeError("mosquitto is not installed: run `make test`, which installs it")
    return found


@dataclasses.dataclass
class Broker:
    """A Mosquitto process owned by the test session."""

    port: int
    workdir: Path
    extra: str = ""
    body: str | None = None  # a whole config instead of the default ({port}, {workdir})
    proc: subprocess.Popen[bytes] | None = None
    host: str = "127.0.0.1"

    @property
    def conf(self) -> Path:
        """The broker's config file."""
        return self.workdir / "mosquitto.conf"

    def start(self) -> None:
        """Start the broker and wait until it accepts connections."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.body is not None:
            self.conf.write_text(self.body.format(port=self.port, workdir=self.workdir))
        else:
            self._write_default()
        self._launch()

    def _write_default(self) -> None:
        self.conf.write_text(
            # As root Mosquitto drops to user `mosquitto`, which cannot write pytest's 0700
            # tmp dirs: its persistence file (and so a restart's queued messages) would be lost.
            ("user root\n" if os.geteuid() == 0 else "") + f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "set_tcp_nodelay true\n"
            "persistence true\n"
            f"persistence_location {self.workdir}/\n"
            "max_queued_messages 100000\n"
            f"log_dest file {self.workdir}/mosquitto.log\n" + self.extra
        )

    def _launch(self) -> None:
        self.proc = subprocess.Popen(
            [mosquitto_binary(), "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError(f"mosquitto exited: {err}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2),
            ):
                return
            time.sleep(0.05)
        raise RuntimeError("mosquitto did not start listening")

    def stop(self) -> None:
        """Stop the broker (SIGTERM, so it writes its persistence file)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            if self.proc.stderr is not None:
                self.proc.stderr.close()
        self.proc = None

    def restart(self) -> None:
        """Stop and start again on the same port, keeping persisted sessions."""
        self.stop()
        self.start()
