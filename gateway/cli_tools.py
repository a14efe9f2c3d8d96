"""Offline `alertgw` subcommands: replay, test-rules, schema and simulate (no daemon, no I/O)."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO
from zoneinfo import ZoneInfo

import orjson

from gateway.closedpipe import stop_quietly_on_closed_stdout
from gateway.config import EX_CONFIG, Config, load_config
from gateway.errors import ConfigError
from gateway.replay import CaptureError, compare, load_capture, render, replay
from gateway.ruletest import run_file
from gateway.simulate import NightSimulator
from gateway.typedload import json_schema

EX_DATAERR = 65
COMMANDS = frozenset({"replay", "test-rules", "schema", "simulate"})


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the offline subcommands to the `alertgw` parser."""
    p_replay = sub.add_parser("replay", help="replay a capture and report the load on staff")
    p_replay.add_argument("capture", help="JSON lines: {ts, topic, payload, situation?, ...}")
    p_replay.add_argument("--config", required=True, help="the config to replay under")
    p_replay.add_argument("--compare", metavar="CONFIG2", help="replay under a second config too")
    answer = p_replay.add_mutually_exclusive_group()
    answer.add_argument(
        "--accept-after",
        type=_delay,
        default=30.0,
        metavar="S",
        help="simulated staff accept every ring after S seconds (default 30)",
    )
    answer.add_argument("--no-accept", action="store_true", help="nobody answers any ring")
    p_test = sub.add_parser("test-rules", help="run rule test scenario files")
    p_test.add_argument("files", nargs="+", metavar="FILE", help="scenario file(s) (YAML)")
    sub.add_parser("schema", help="print the config file's JSON Schema")
    p_sim = sub.add_parser("simulate", help="write simulated nights as a capture")
    p_sim.add_argument("--config", required=True, help="the site whose devices are simulated")
    p_sim.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    p_sim.add_argument("--nights", type=int, default=1, help="nights to simulate (default 1)")
    p_sim.add_argument("--date", help="first night's date YYYY-MM-DD (default: today, site time)")
    p_sim.add_argument("--out", help="capture file to write (default: standard output)")


def _delay(text: str) -> float:
    """An argparse type: seconds, zero or more (a NaN would compare false everywhere)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value < math.inf:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, 0 or more, got {text!r}")
    return value


def run(args: argparse.Namespace) -> int:
    """Run one offline subcommand; return the exit code."""
    # Reports, schemas and captures are long: `| head` must not end them in a traceback.
    return stop_quietly_on_closed_stdout(lambda: _run(args))


def _run(args: argparse.Namespace) -> int:
    if args.command == "schema":
        # The dialect named, so an editor's YAML language server reads it as 2020-12.
        schema = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "alertgw configuration",
            **json_schema(Config),
        }
        print(json.dumps(schema, indent=2, ensure_ascii=False))
        return 0
    if args.command == "test-rules":
        failed_any = False
        for path in args.files:
            _, failed, output = run_file(path)
            print(output)
            failed_any = failed_any or failed > 0
        return 1 if failed_any else 0
    if args.command == "replay":
        return _replay(args)
    return _simulate(args)


def _load(path: str) -> Config | None:
    try:
        return load_config(path)
    except ConfigError as exc:
        for line in exc.problems:
            print(line, file=sys.stderr)
        print(f"alertgw: {len(exc.problems)} problem(s) in {path}", file=sys.stderr)
        return None


def _replay(args: argparse.Namespace) -> int:
    config = _load(args.config)
    other = _load(args.compare) if args.compare else None
    if config is None or (args.compare and other is None):
        return EX_CONFIG
    try:
        events = load_capture(args.capture)
    except CaptureError as exc:
        print(f"alertgw: {exc}", file=sys.stderr)
        return EX_DATAERR
    if not events:
        # A report of zeros dated 1970 would read as a quiet night.
        print(f"alertgw: {args.capture}: no messages in the capture", file=sys.stderr)
        return EX_DATAERR
    accept = None if args.no_accept else args.accept_after
    report = replay(events, config, accept_after=accept)
    if other is None:
        print(render(report))
        return 0
    print(compare(report, replay(events, other, accept_after=accept)))
    return 0


def _simulate(args: argparse.Namespace) -> int:
    config = _load(args.config)
    if config is None:
        return EX_CONFIG
    tz = ZoneInfo(config.site.timezone)
    try:
        first = dt.date.fromisoformat(args.date) if args.date else dt.datetime.now(tz).date()
    except ValueError:
        print(f"alertgw: --date: expected YYYY-MM-DD, got {args.date!r}", file=sys.stderr)
        return 2
    if args.nights < 1:
        print("alertgw: --nights: expected at least 1", file=sys.stderr)
        return 2
    # `replay` reads times from 2000 to 2099; past 9999 the calendar itself overflowed.
    if not dt.date(2000, 1, 1) <= first or (dt.date(2099, 12, 31) - first).days < args.nights:
        print(
            f"alertgw: --date: {args.nights} night(s) from {first} do not all fall in 2000-2099",
            file=sys.stderr,
        )
        return 2
    records = capture_records(config, first=first, seed=args.seed, nights=args.nights)
    if args.out is None:
        count = _write(sys.stdout, records)
    else:
        try:
            with Path(args.out).open("w", encoding="utf-8") as fh:
                count = _write(fh, records)
        except OSError as exc:  # a directory, a missing folder, no permission, a full disk
            print(f"alertgw: --out {args.out}: cannot write: {exc.strerror}", file=sys.stderr)
            return 1
    where = args.out or "standard output"
    print(f"alertgw: wrote {count} message(s), {args.nights} night(s), to {where}", file=sys.stderr)
    return 0


def capture_records(
    config: Config, *, first: dt.date, seed: int = 1, nights: int = 1
) -> Iterator[dict[str, Any]]:
    """Yield simulated capture records for `nights` nights, each from a local 22:00."""
    tz = ZoneInfo(config.site.timezone)
    base_topic = next(
        (s.base_topic for s in config.sources.values() if s.decoder == "zigbee2mqtt"),
        "zigbee2mqtt",
    )
    for night in range(nights):
        day = first + dt.timedelta(days=night)
        start = dt.datetime(day.year, day.month, day.day, 22, 0, tzinfo=tz).timestamp()
        sim = NightSimulator(config, seed=seed + night, base_topic=base_topic)
        for ev in sim.night():
            yield {
                "ts": round(start + ev.t, 3),
                "topic": ev.topic,
                "payload": orjson.loads(ev.payload),
                "situation": ev.situation,
                "label": ev.label,
                "needs_staff": ev.needs_staff,
            }


def _write(out: TextIO, records: Iterator[dict[str, Any]]) -> int:
    count = 0
    for record in records:
        out.write(orjson.dumps(record).decode() + "\n")
        count += 1
    return count
