"""The journal's database thread alone: CPU per signal of the commits, as at 2,000/s.

Run from the repository root: `python -m benchmarks.journal [--signals N] [--batch 5,20]`.
The hot-path benchmark's config and signals go through the gateway's routing one signal
per batch (as in `benchmarks.inprocess`); what the router hands the journal task (signals,
transitions, handset messages, and their PUBACK marks, which at care-home rates come back
before the commit) is then committed in batches of `--batch` signals to a fresh journal
(`synchronous=normal`). CPU is `time.thread_time()` on the database thread around each
transaction (the write, its commit and any checkpoint), and thread time on the loop for
building the rows; `kb_written` is what the database thread wrote (`/proc/thread-self/io`).
Prints one JSON line per batch size.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.hotpath import gateway_plan
from benchmarks.inprocess import bench_gateway
from gateway import logs
from gateway.journal import Journal
from gateway.ports import Inbound

Batch = tuple[list[Any], list[Any], list[Any], list[Any]]


async def _routed(signals: int, work: Path) -> list[Batch]:
    """What the router gives the journal for each of `signals` signals, one per batch."""
    gw = bench_gateway(work / "routing.db", "journalbench")
    await gw.journal.open()
    try:
        await gw._restore(gw.journal)  # noqa: SLF001
        plan = gateway_plan(signals, "j")
        now = time.time()
        (lane,) = gw._lanes.values()  # noqa: SLF001
        out: list[Batch] = []
        for topic, payload in zip(plan.topics, plan.payloads, strict=True):
            item = Inbound("bench", topic, payload, now, ack=lambda: None)
            gw._route([item], [gw._decode_fresh(item)])  # noqa: SLF001
            for delivery, t0 in lane.backlog:
                gw._delivered(lane.handset, delivery, t0)  # noqa: SLF001
            lane.backlog.clear()
            pending = gw._pending  # noqa: SLF001
            out.append(
                (
                    list(pending.signals),
                    list(pending.transitions),
                    list(pending.deliveries),
                    list(gw._confirmed),  # noqa: SLF001
                )
            )
            gw._confirmed.clear()  # noqa: SLF001
            gw._pending = type(pending)()  # noqa: SLF001
        return out
    finally:
        await gw.journal.close()


async def measure(signals: int, batch: int, work: Path, routed: list[Batch]) -> dict[str, Any]:
    """Commit `routed` in batches of `batch` signals; CPU per signal on each thread."""
    path = work / f"journal-{batch}.db"
    journal = Journal(path, synchronous="normal")
    await journal.open()
    db_cpu = 0.0
    write = journal._write  # noqa: SLF001

    written = 0

    def timed(*args: Any) -> None:  # noqa: ANN401
        nonlocal db_cpu, written
        w0 = _wchar()
        t0 = time.thread_time()
        write(*args)
        db_cpu += time.thread_time() - t0
        written += _wchar() - w0

    journal._write = timed  # type: ignore[method-assign]  # noqa: SLF001
    try:
        loop_cpu = 0.0
        for i in range(0, len(routed), batch):
            chunk = routed[i : i + batch]
            t0 = time.thread_time()
            commit = journal.commit_batch(
                [s for c in chunk for s in c[0]],
                [t for c in chunk for t in c[1]],
                [d for c in chunk for d in c[2]],
                None,
                [m for c in chunk for m in c[3]],
            )
            # The loop's share: everything up to the hand-over to the database thread.
            task = asyncio.ensure_future(commit)
            await asyncio.sleep(0)
            loop_cpu += time.thread_time() - t0
            await task
    finally:
        await journal.close()
    return {
        "scenario": "journal",
        "batch": batch,
        "signals": signals,
        "db_thread_us_per_signal": round(db_cpu / signals * 1e6, 1),
        "loop_us_per_signal": round(loop_cpu / signals * 1e6, 1),
        "kb_written_per_signal": round(written / signals / 1024, 2),
        "python": sys.version.split()[0],
    }


def _wchar() -> int:
    """Bytes this thread has written (WAL frames and checkpoints alike)."""
    with open("/proc/thread-self/io", "rb") as f:
        for line in f:
            if line.startswith(b"wchar:"):
                return int(line.split()[1])
    return 0


async def run(signals: int, batches: list[int]) -> list[dict[str, Any]]:
    """One line per batch size."""
    with tempfile.TemporaryDirectory(prefix="alertgw-journalbench-") as tmp:
        work = Path(tmp)
        routed = await _routed(signals, work)
        # As alertgw does after its start: collections would otherwise walk the routed
        # batches (the bulk of this heap) and land on whichever thread allocates.
        gc.collect()
        gc.freeze()
        try:
            return [await measure(signals, b, work, routed) for b in batches]
        finally:
            gc.unfreeze()


def main(argv: list[str] | None = None) -> int:
    """Print one JSON line per batch size."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.journal")
    parser.add_argument("--signals", type=int, default=20_000, help="default 20,000")
    parser.add_argument("--batch", default="5,20", help="signals per commit, default 5,20")
    args = parser.parse_args(argv)
    logs.configure("warning", "json")
    for line in asyncio.run(run(args.signals, [int(b) for b in args.batch.split(",")])):
        print(json.dumps(line))
    return 0


if __name__ == "__main__":
    sys.exit(main())
