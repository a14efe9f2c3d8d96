"""Fault (c): the DECT's serial port vanishes mid-stream and returns; every page still arrives."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from gateway.config import Config, parse_config
from tests.conftest import Broker, running, unique
from tests.faults.helpers import sender, stream
from tests.integration.espa_peer import Dect, PtyPeer, Tok, link_to

pytestmark = pytest.mark.faults

DEVICES = 40
SIGNALS = 60  # d0..d39 raised, then d0..d19 cleared
CUT_AT_BLOCK = 15  # the port vanishes with this call block unacknowledged on the line
GONE_FOR = 1.0
GAP = 0.03
RESET = b"1"  # ESPA record 4, call type: reset (clears the call on the handset)

# Linux ptys refuse 7-bit and parity settings, so the link runs 8N1 here.
YAML = """
site: {{name: Fault unit, timezone: Europe/Oslo}}
mqtt:
  host: 127.0.0.1
  port: {port}
  client_id: {client_id}
  status_topic: {prefix}/status
  backoff_initial: 0.05
  backoff_max: 0.5
sources:
  integrator: {{type: mqtt, decoder: json, topics: ["{prefix}/in/#"]}}
espa:
  dect: {{port: "{dect}", role: control_station, local_address: "1", remote_address: "2",
          bytesize: 8, parity: N, stopbits: 1, poll_interval: 0.05, reply_timeout: 0.5,
          backoff_initial: 0.05, backoff_max: 0.5}}
zones:
  east: {{rooms: [{rooms}]}}
devices:
{devices}
handsets:
  dect21: {{channel: espa, link: dect, address: "21"}}
routing:
  - {{kinds: [pull_cord], handsets: [dect21]}}
journal: {{path: "{db}", synchronous: full}}
metrics: {{enabled: false}}
"""


def serial_config(broker: Broker, tmp_path: Path, prefix: str, dect: Path) -> Config:
    """Pull cords d<k> in rooms r<k>, all paged to DECT handset dect21 on one ESPA line."""
    text = YAML.format(
        port=broker.port,
        client_id=unique("alertgw"),
        prefix=prefix,
        dect=dect,
        rooms=", ".join(f'"r{k}"' for k in range(DEVICES)),
        devices="\n".join(f'  d{k}: {{room: "r{k}", kind: pull_cord}}' for k in range(DEVICES)),
        db=tmp_path / "journal.db",
    )
    return parse_config(text, filename="test.yaml")


class _CutLine(asyncio.Queue[Tok]):
    """The first DECT's token queue: at the n-th block the port vanishes before any ACK."""

    def __init__(self, cut_at: int, on_cut: Callable[[Tok], None]) -> None:
        super().__init__()
        self._left = cut_at
        self._on_cut = on_cut

    def put_nowait(self, item: Tok) -> None:
        """Pass tokens to the simulator until the cut; drop the cut block and all after it."""
        if self._left <= 0:
            return
        if item.kind == "block":
            self._left -= 1
            if self._left == 0:
                self._on_cut(item)
                return
        super().put_nowait(item)


class DectSide:
    """The paging system behind a symlinked port that can be unplugged and plugged back."""

    def __init__(self, path: Path, *, cut_at: int) -> None:
        self.path = path
        self.peers: list[PtyPeer] = []
        self.blocks: list[Tok] = []  # every call block a DECT ACKed, in order
        self.per_peer: Counter[int] = Counter()  # blocks ACKed by the n-th pty's DECT
        self.cut: list[Tok] = []  # blocks on the wire when the port vanished (never ACKed)
        self.gone_at: float | None = None
        self.changed = asyncio.Event()
        self._cut_at = cut_at
        self._tasks: list[asyncio.Task[None]] = []

    def plug(self) -> None:
        """A new pty (a fresh DECT simulator on it) appears at the path."""
        peer = PtyPeer()
        if not self.peers:
            peer.tokens = _CutLine(self._cut_at, self._vanish)
        self.peers.append(peer)
        dect = Dect(peer)
        n = len(self.peers)
        self._tasks.append(asyncio.create_task(dect.run(), name=f"test.dect{n}"))
        self._tasks.append(asyncio.create_task(self._collect(dect, n), name=f"test.collect{n}"))
        link_to(peer, self.path)

    async def wait_rings(self, texts: set[bytes], timeout: float) -> None:
        """Wait until an ACKed ring block showed each text, or the timeout passes."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while not texts <= {t.records.get("2") for t in self.blocks if is_ring(t)}:
                    self.changed.clear()
                    await self.changed.wait()

    async def close(self) -> None:
        """Stop the simulators and close every pty."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for peer in self.peers:
            peer.close()

    def _vanish(self, block: Tok) -> None:
        # USB pulled with the block in the DECT's buffer: the device node goes away with the
        # port, so the gateway never sees the ACK and must send the block again.
        self.cut.append(block)
        self.gone_at = time.monotonic()
        self.path.unlink()
        asyncio.get_running_loop().call_soon(self.peers[0].close)  # not inside its reader

    async def _collect(self, dect: Dect, n: int) -> None:
        while True:
            self.blocks.append(await dect.calls.get())
            self.per_peer[n] += 1
            self.changed.set()


@contextlib.asynccontextmanager
async def dect_side(path: Path, *, cut_at: int) -> AsyncIterator[DectSide]:
    """A plugged-in DECT at `path` whose port vanishes mid-block; torn down at the end."""
    side = DectSide(path, cut_at=cut_at)
    side.plug()
    try:
        yield side
    finally:
        await side.close()


def is_ring(tok: Tok) -> bool:
    """A call block that rings (anything but a reset)."""
    return tok.records.get("4") != RESET


async def test_dect_port_removed_and_restored_mid_stream_loses_no_page(
    broker: Broker, tmp_path: Path
) -> None:
    """A DECT pty that vanishes mid-block and returns at the same path gets every page."""
    prefix = unique("f")
    path = tmp_path / "ttyDECT"
    signals = stream(SIGNALS, devices=DEVICES)
    expected = {f"Call room r{s['device'][1:]}".encode() for s in signals if s["state"] == "raised"}
    restored_at: int | None = None
    async with dect_side(path, cut_at=CUT_AT_BLOCK) as side:
        config = serial_config(broker, tmp_path, prefix, path)
        async with running(config), sender(broker.port, f"{prefix}/in/x") as s:
            t0 = time.monotonic()
            gone_at_signal: int | None = None
            for i, sig in enumerate(signals):
                if side.gone_at is not None and gone_at_signal is None:
                    gone_at_signal = i
                gone_for = 0.0 if side.gone_at is None else time.monotonic() - side.gone_at
                if restored_at is None and gone_for >= GONE_FOR:
                    side.plug()
                    restored_at = i
                await s.send(sig)
                await asyncio.sleep(GAP)
            assert side.gone_at is not None, "the port never vanished"
            if restored_at is None:
                await asyncio.sleep(max(0.0, GONE_FOR - (time.monotonic() - side.gone_at)))
                side.plug()
                restored_at = len(signals)
            await side.wait_rings(expected, timeout=12)
            await asyncio.sleep(0.3)  # let a late repeat of the last block show up
            elapsed = time.monotonic() - t0
        rings = Counter(t.records.get("2") for t in side.blocks if is_ring(t))
        resets = sum(1 for t in side.blocks if not is_ring(t))
        cut = Counter(t.records.get("2") for t in side.cut if is_ring(t))
        before = side.per_peer[1]
        first_after = side.blocks[before].records.get("2") if len(side.blocks) > before else None
    arrived = expected & set(rings)
    lost = len(expected - arrived)
    # Counted per text (ESPA carries no alert id): a cut block seen again is an allowed repeat.
    repeats = sum(c - 1 for text, c in rings.items() if text in expected)
    repeats += sum(c for text, c in cut.items() if text in arrived)
    unexpected = sum(c for text, c in rings.items() if text not in expected)
    print(
        f"FAULT serial_peer: sent={len(signals)} expected_alerts={len(expected)} "
        f"arrived={len(arrived)} lost={lost} repeats={repeats} unexpected={unexpected} "
        f"resets={resets} cut_blocks={len(side.cut)} acked_before_unplug={before} "
        f"gone_at_signal={gone_at_signal} restored_at_signal={restored_at} "
        f"seconds={round(elapsed, 1)}"
    )
    assert side.cut, "the port did not vanish mid-block"
    assert first_after == side.cut[0].records.get("2"), "the cut block is re-sent first"
    assert lost == 0
    assert unexpected == 0
    assert resets == len(signals) - len(expected)
