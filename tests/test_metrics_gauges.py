"""Hot-path shortcuts: scrape-time gauges, unlocked counts, frozen types built fast, quiet logs."""

from __future__ import annotations

import dataclasses
import logging
import re
from pathlib import Path

import pytest
from prometheus_client import Counter, Gauge, Histogram
from structlog.testing import capture_logs

from benchmarks.hotpath import gateway_plan
from benchmarks.inprocess import bench_gateway
from gateway import app
from gateway.app import Gateway
from gateway.engine import Transition
from gateway.metrics import Metrics
from gateway.model import Alert, AlertState, Delivery, Signal, SignalState, fast_init
from gateway.ports import Inbound
from tests.conftest import make_config
from tests.test_journal import alert


def test_outbox_and_active_gauges_follow_the_state_at_scrape_time(tmp_path: Path) -> None:
    """No write per signal keeps them current: the registry asks the gateway each scrape."""
    gw = Gateway(make_config(1, tmp_path), serve_metrics=False)
    registry = gw.metrics.registry
    assert registry.get_sample_value("alertgw_outbox_depth") == 0
    assert registry.get_sample_value("alertgw_active_alerts") == 0
    handset = next(iter(gw.config.handsets))
    for seq in (1, 2, 3):
        # Not running yet, so each message waits in the lane's backlog.
        gw._enqueue(Delivery("a1", handset, seq, "ring", {"alert_id": "a1"}, id=seq), 0.0)
    assert registry.get_sample_value("alertgw_outbox_depth") == 3
    gw._lanes[handset].backlog.clear()
    assert registry.get_sample_value("alertgw_outbox_depth") == 0


def test_with_state_copies_every_field_and_changes_only_those_given() -> None:
    a = alert("a1")
    b = a.with_state(AlertState.ACCEPTED, accepted_by="night1", count=3)
    assert b is not a
    assert b.state is AlertState.ACCEPTED
    assert (b.accepted_by, b.count) == ("night1", 3)
    unchanged = {f.name for f in dataclasses.fields(Alert)} - {"state", "accepted_by", "count"}
    assert {n: getattr(b, n) for n in unchanged} == {n: getattr(a, n) for n in unchanged}
    assert a.state is AlertState.ACTIVE  # the original is frozen and untouched


def test_with_state_refuses_a_field_alerts_do_not_have() -> None:
    with pytest.raises(TypeError, match="no field 'colour'"):
        alert("a1").with_state(AlertState.HELD, colour="red")


def test_copies_are_frozen_instances_of_their_class() -> None:
    """A copy is built as a plain draft and then made the frozen class itself."""
    a = alert("a1")
    b = a.with_state(AlertState.HELD, step=-1)
    d = Delivery("a1", "h1", 2, "ring", {"alert_id": "a1"})
    n = d.numbered(7)
    assert type(b) is Alert
    assert type(n) is Delivery
    assert n == Delivery("a1", "h1", 2, "ring", {"alert_id": "a1"}, id=7)
    assert d.id is None
    assert hash(b) == hash(dataclasses.replace(a, state=AlertState.HELD, step=-1))
    with pytest.raises(dataclasses.FrozenInstanceError):
        b.state = AlertState.ACTIVE  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        n.id = 8  # type: ignore[misc]


def test_fast_init_builds_what_the_dataclass_init_would() -> None:
    """Same parameters, defaults and default factories; still frozen."""

    @dataclasses.dataclass(frozen=True, slots=True)
    class Plain:
        a: str
        b: int = 2
        c: list[int] = dataclasses.field(default_factory=list)

    @fast_init
    @dataclasses.dataclass(frozen=True, slots=True)
    class Fast:
        a: str
        b: int = 2
        c: list[int] = dataclasses.field(default_factory=list)

    for args, kwargs in [(("x",), {}), (("x", 3), {"c": [1]}), ((), {"c": [4], "a": "y"})]:
        assert dataclasses.astuple(Fast(*args, **kwargs)) == dataclasses.astuple(
            Plain(*args, **kwargs)
        )
    assert Fast("x").c is not Fast("x").c
    with pytest.raises(TypeError, match="missing 1 required positional argument: 'a'"):
        Fast()  # type: ignore[call-arg]
    with pytest.raises(dataclasses.FrozenInstanceError):
        Fast("x").a = "y"  # type: ignore[misc]
    signal = Signal("s1", "json", "bed-1", "101", "bed_exit", SignalState.RAISED, 1.0)
    assert (signal.attrs, signal.received_at) == ({}, 0.0)
    assert Transition(alert("a1"), "raised", 1.0).detail == ""


def test_fast_init_refuses_what_it_does_not_copy() -> None:
    @dataclasses.dataclass(frozen=True, slots=True)
    class Checked:
        a: int

        def __post_init__(self) -> None:
            pass

    with pytest.raises(TypeError, match="does not handle Checked"):
        fast_init(Checked)


def _exported(metrics: Metrics) -> list[tuple[str, list[tuple[str, str]], float]]:
    samples = [s for family in metrics.registry.collect() for s in family.samples]
    return sorted((s.name, sorted(s.labels.items()), s.value) for s in samples)


def test_hot_counts_export_what_prometheus_own_calls_would() -> None:
    """Labelled.inc and .observe skip prometheus's lock, not a count or a bucket."""
    plain, hot = Metrics(), Metrics()
    plain.signals.labels("zigbee", "pull_cord", "raised").inc()  # counted before binding
    hot.signals.labels("zigbee", "pull_cord", "raised").inc()
    seconds = [0.0, -0.5, 0.0005, 0.0007, 0.001, 0.003, 1.0, 5.0, 29.9, 30.0, 31.0, 1e9]
    for values in [("zigbee", "pull_cord", "raised"), ("json", "fall", "cleared")] * 3:
        plain.signals.labels(*values).inc()
        hot.signal_count.inc(*values)
    for priority in ("high", "low"):
        for s in seconds:
            plain.latency.labels(priority).observe(s)
            hot.latency_of.observe(s, priority)
    hot.deliveries.labels("h1", "ring", "failed").inc()  # the family's own call, after
    hot.delivery_count.inc("h1", "ring", "failed")
    plain.deliveries.labels("h1", "ring", "failed").inc(2)
    assert _exported(hot) == _exported(plain)
    child = hot.signals.labels("zigbee", "pull_cord", "raised")
    assert child._value.get() == 4  # tests and tools read children so


def test_config_reload_results_are_exported_before_the_first_reload() -> None:
    """A failed-reload alert rule needs the series at 0 before the failure, not born at 1."""
    registry = Metrics().registry
    for result in ("ok", "failed"):
        assert registry.get_sample_value("alertgw_config_reloads_total", {"result": result}) == 0


def test_no_created_series_beside_counters_and_histograms() -> None:
    """prometheus_client's `*_created` twins would double the series a technician sees."""
    metrics = Metrics()
    metrics.signals.labels("zigbee", "pull_cord", "raised").inc()
    metrics.latency.labels("high").observe(0.01)
    names = {s.name for family in metrics.registry.collect() for s in family.samples}
    assert "alertgw_signals_total" in names
    assert not [n for n in names if n.endswith("_created")]


def test_readme_lists_every_metric_with_its_labels() -> None:
    """The README's Observability list is what a technician builds dashboards from."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    start = readme.index("- **Metrics** (Prometheus")
    section = readme[start : readme.index("\n- ", start)]
    listed = {
        name: sorted(labels.split(",")) if labels else []
        for name, labels in re.findall(r"`(alertgw_[a-z_]+)(?:\{([a-z_,]+)\})?`", section)
    }
    families = [m for m in vars(Metrics()).values() if isinstance(m, Counter | Gauge | Histogram)]
    exported = {
        m._name + ("_total" if isinstance(m, Counter) else ""): sorted(m._labelnames)
        for m in families
    }
    assert listed == exported


def _routed_gateway(tmp_path: Path) -> Gateway:
    return bench_gateway(tmp_path / "journal.db", "logs")


def _route_one_raise(gw: Gateway) -> None:
    plan = gateway_plan(1, "l")
    item = Inbound("bench", plan.topics[0], plan.payloads[0], 1_700_000_000.0, ack=lambda: None)
    gw._route([item], [gw._decode_fresh(item)])


def test_transitions_are_logged_when_info_is_on(tmp_path: Path) -> None:
    """The per-signal log lines still come when their level is enabled."""
    with capture_logs() as logs:
        gw = _routed_gateway(tmp_path)
        _route_one_raise(gw)
    assert [e["transition"] for e in logs if e["event"] == "alert_transition"] == [
        "raised",
        "ringing",
    ]


def test_disabled_levels_cost_no_log_call_per_signal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under `logging.level: warning` routing asks structlog once, at start, not per signal."""

    class WarningOnly:
        def is_enabled_for(self, level: int) -> bool:
            return level >= logging.WARNING

        def __getattr__(self, name: str) -> object:
            raise AssertionError(f"log.{name} called on the hot path")

    monkeypatch.setattr(app, "log", WarningOnly())
    gw = _routed_gateway(tmp_path)
    _route_one_raise(gw)
    (lane,) = gw._lanes.values()
    assert len(lane.backlog) == 1  # the ring was routed
