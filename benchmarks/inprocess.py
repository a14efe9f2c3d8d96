"""The router's own cost, without sockets: decode, rules, journal rows and metrics per signal.

Run from the repository root: `python -m benchmarks.inprocess [--signals N] [--profile]`.
The hot-path benchmark's config and signals (500 pull cords, raised and cleared in turn)
go through the gateway's routing one signal per batch, as at care-home rates; each handset
message is confirmed at once, as a PUBACK would. Nothing is committed: the journal's rows
are built, its thread is not part of this figure. Prints one JSON line; with `--profile`,
the top of a cProfile listing on stderr.

It drives the gateway's internals (`_route`, `_decode_fresh`, the lanes), so it breaks
loudly when they change: tests run it small.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.hotpath import gateway_config, gateway_plan
from gateway import logs
from gateway.app import Gateway
from gateway.config import parse_config
from gateway.ports import Inbound


def bench_gateway(journal_path: Path, name: str) -> Gateway:
    """A gateway on the hot-path benchmark's config that is never connected.

    Items are handed to its router directly; `name` names its client and status topic.
    """
    raw = gateway_config(
        port=1,
        journal_path=journal_path,
        synchronous="normal",
        client_id=name,
        status_topic=f"{name}/status",
    )
    return Gateway(parse_config(json.dumps(raw), filename=f"{name}.yaml"), serve_metrics=False)


async def measure(signals: int, *, profile: bool = False) -> dict[str, Any]:
    """Route `signals` signals one per batch; CPU per signal and what the handset got."""
    with tempfile.TemporaryDirectory(prefix="alertgw-inprocess-") as work:
        gw = bench_gateway(Path(work) / "journal.db", "inprocess")
        await gw.journal.open()
        try:
            await gw._restore(gw.journal)  # noqa: SLF001 - the salt and levels, as at a start
            return _run(gw, signals, profile=profile)
        finally:
            await gw.journal.close()


def _run(gw: Gateway, signals: int, *, profile: bool) -> dict[str, Any]:
    plan = gateway_plan(signals, "p")
    now = time.time()
    items = [
        Inbound("bench", topic, payload, now, ack=lambda: None)
        for topic, payload in zip(plan.topics, plan.payloads, strict=True)
    ]
    (lane,) = gw._lanes.values()  # noqa: SLF001 - a benchmark of the internals
    received: list[str] = []
    profiler = cProfile.Profile() if profile else None
    start = time.process_time()
    if profiler is not None:
        profiler.enable()
    for item in items:
        gw._route([item], [gw._decode_fresh(item)])  # noqa: SLF001
        for delivery, t0 in lane.backlog:  # not running: every message waits in the backlog
            gw._delivered(lane.handset, delivery, t0)  # noqa: SLF001 - as its PUBACK would
            received.append(f"{delivery.action[0]}:{delivery.payload.get('signal_id')}")
        lane.backlog.clear()
        gw._confirmed.clear()  # noqa: SLF001 - the journal task is not running
        gw._pending = type(gw._pending)()  # noqa: SLF001
    if profiler is not None:
        profiler.disable()
    cpu = time.process_time() - start
    if profiler is not None:
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(25)
    return {
        "scenario": "in_process",
        "signals": signals,
        "handset_messages": len(received),
        "lost": len(set(plan.keys) - set(received)),
        "cpu_us_per_signal": round(cpu / signals * 1e6, 1),
        "python": sys.version.split()[0],
    }


def main(argv: list[str] | None = None) -> int:
    """Print one JSON line."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.inprocess")
    parser.add_argument("--signals", type=int, default=20_000, help="default 20,000")
    parser.add_argument("--profile", action="store_true", help="cProfile listing on stderr")
    args = parser.parse_args(argv)
    # Here, not in measure(): the configuration is global and caches loggers on first use,
    # so a test calling measure() would silence info logs for every test after it.
    logs.configure("warning", "json")
    print(json.dumps(asyncio.run(measure(args.signals, profile=args.profile))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
