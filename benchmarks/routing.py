"""Routing benchmark: simulated nights replayed through three configs, one JSON line each.

Run from the repository root: `python -m benchmarks.routing`. For seeds 1..5 a night is
simulated for `config/example.yaml` and replayed through (a) the example config, (b) the same
devices and roster forwarding everything (no rules, inhibition or rate limit) and (c) a plain
60-second debounce on every non-critical kind. Target for (a): no missed situation, no
critical delay, interruptions at most 1.2 x situations needing staff.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gateway.cli_tools import capture_records
from gateway.config import BUILTIN_KINDS, Config, MatchConfig, RuleConfig, load_config
from gateway.replay import LoadReport, replay

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "config" / "example.yaml"
SEEDS = (1, 2, 3, 4, 5)
NIGHT_OF = dt.date(2026, 11, 24)  # a Tuesday, far from a DST change
TARGET_RATIO = 1.2


def forward_everything(config: Config) -> Config:
    """The same devices and roster with no rules, inhibition or rate limit."""
    return dataclasses.replace(
        config, rules=(), inhibit=(), rate_limit=None, source_file="forward-everything"
    )


def debounce(config: Config, hold_off: float = 60.0) -> Config:
    """Every non-critical alert kind held off `hold_off` seconds, nothing else."""
    kinds = sorted(
        k
        for k in set(config.kinds) | set(BUILTIN_KINDS)
        if not config.kind(k).critical and config.kind(k).role == "alert"
    )
    rule = RuleConfig(
        name=f"debounce-{hold_off:g}", match=MatchConfig(kinds=tuple(kinds)), hold_off=hold_off
    )
    return dataclasses.replace(
        config, rules=(rule,), inhibit=(), rate_limit=None, source_file=f"debounce-{hold_off:g}"
    )


def variants(config: Config) -> dict[str, Config]:
    """The three configs the benchmark compares, by name."""
    return {
        "example": config,
        "forward_everything": forward_everything(config),
        "debounce_60": debounce(config),
    }


def row(seed: int, name: str, report: LoadReport) -> dict[str, Any]:
    """One JSON-able result line."""
    needed = report.situations_needing_staff or 0
    return {
        "seed": seed,
        "config": name,
        "situations_needing_staff": needed,
        "missed": report.situations_missed,
        "interruptions": report.interruptions,
        "ratio": round(report.interruptions / needed, 3) if needed else None,
        "critical_delay_max": report.critical_delay_max,
        "critical_unrung": report.critical_unrung,
        "escalations": report.escalations,
        "naive_interruptions": report.naive_interruptions,
        "missed_situations": [
            {"situation": m.situation, "label": m.label, "at": round(m.at), "fates": m.fates}
            for m in report.missed
        ],
    }


def bench_night(
    seed: int, configs: Mapping[str, Config], *, accept_after: float | None = 30.0
) -> list[dict[str, Any]]:
    """Simulate one night for the first config and replay it through every config."""
    base = next(iter(configs.values()))
    records = list(capture_records(base, first=NIGHT_OF, seed=seed))
    return [
        row(seed, name, replay(records, cfg, accept_after=accept_after))
        for name, cfg in configs.items()
    ]


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Totals per config over every night, and whether the example config met the target."""
    out: dict[str, Any] = {"summary": True, "nights": len({r["seed"] for r in rows})}
    for name in dict.fromkeys(r["config"] for r in rows):
        mine = [r for r in rows if r["config"] == name]
        needed = sum(r["situations_needing_staff"] for r in mine)
        interruptions = sum(r["interruptions"] for r in mine)
        delays = [r["critical_delay_max"] for r in mine if r["critical_delay_max"] is not None]
        out[name] = {
            "situations_needing_staff": needed,
            "missed": sum(r["missed"] or 0 for r in mine),
            "interruptions": interruptions,
            "ratio": round(interruptions / needed, 3) if needed else None,
            "worst_night_ratio": max((r["ratio"] or 0.0) for r in mine),
            "critical_delay_max": max(delays, default=None),
            "critical_unrung": sum(r["critical_unrung"] for r in mine),
        }
    ex = out.get("example")
    if ex is not None:
        out["example_meets_target"] = (
            ex["missed"] == 0
            and not ex["critical_delay_max"]
            and ex["critical_unrung"] == 0
            and ex["ratio"] is not None
            and ex["ratio"] <= TARGET_RATIO
        )
    return out


def main() -> int:
    """Print one JSON line per night and config, then a summary line."""
    configs = variants(load_config(EXAMPLE))
    rows: list[dict[str, Any]] = []
    for seed in SEEDS:
        for r in bench_night(seed, configs):
            rows.append(r)
            print(json.dumps(r, ensure_ascii=False))
    print(json.dumps(summarise(rows), ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
