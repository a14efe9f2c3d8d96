"""The routing benchmark: one simulated night through the example rules."""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks.routing import EXAMPLE, bench_night, summarise, variants
from gateway.config import load_config


@pytest.fixture(scope="module")
def night() -> list[dict[str, Any]]:
    """Seed 1 replayed through the example, forward-everything and debounce configs."""
    return bench_night(1, variants(load_config(EXAMPLE)))


def example(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The example config's row."""
    return next(r for r in rows if r["config"] == "example")


def test_every_config_gets_one_row_and_a_summary(night: list[dict[str, Any]]) -> None:
    """Each config yields one row for the night; rules ring less than forwarding everything."""
    assert [r["config"] for r in night] == ["example", "forward_everything", "debounce_60"]
    by = {r["config"]: r for r in night}
    assert by["example"]["interruptions"] < by["forward_everything"]["interruptions"]
    assert by["example"]["situations_needing_staff"] > 0
    summary = summarise(night)
    assert summary["nights"] == 1
    assert summary["example"]["interruptions"] == by["example"]["interruptions"]


def test_critical_alerts_ring_without_delay(night: list[dict[str, Any]]) -> None:
    """Every critical alert of the night rang on the message that raised it."""
    row = example(night)
    assert row["critical_delay_max"] == 0.0
    assert row["critical_unrung"] == 0


def test_no_situation_needing_staff_is_missed(night: list[dict[str, Any]]) -> None:
    """No situation that needed staff went without a ring."""
    assert example(night)["missed"] == 0
