"""Prometheus metrics: every count a technician would ask about."""

from __future__ import annotations

import bisect
from typing import Any, Generic, TypeVar

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)

M = TypeVar("M", Counter, Gauge, Histogram)


class _LoopValue:
    """A child's value counted on the event loop only: a float without prometheus's lock.

    The lock cost more than the count (a counted signal took ~0.5 us, a latency ~0.9 us).
    Every hot count happens on the loop's thread; the metrics server's thread only reads,
    and reading a float attribute is atomic. Exemplars are kept as the locked value does.
    """

    __slots__ = ("_exemplar", "value")

    def __init__(self, value: float) -> None:
        self.value = value
        self._exemplar: object = None

    def inc(self, amount: float) -> None:
        self.value += amount

    def set(self, value: float, timestamp: float | None = None) -> None:
        self.value = value

    def set_exemplar(self, exemplar: object) -> None:
        self._exemplar = exemplar

    def get(self) -> float:
        return self.value

    def get_exemplar(self) -> object:
        return self._exemplar


# A histogram child's sum, buckets and their upper bounds.
_Parts = tuple[_LoopValue, list[_LoopValue], list[float]]


def _unlocked(value: Any) -> _LoopValue:  # noqa: ANN401 - prometheus's untyped value class
    return value if isinstance(value, _LoopValue) else _LoopValue(value.get())


class Labelled(Generic[M]):
    """A metric family with its label children cached: `labels()` costs ~3 us a call.

    `inc` and `observe` count on the children's values directly (see _LoopValue): they are
    for the event loop's thread only. Scrapes and `child._value.get()` read the same values.
    """

    def __init__(self, family: M) -> None:
        self.family: M = family
        self._children: dict[tuple[str, ...], Any] = {}
        self._counts: dict[tuple[str, ...], _LoopValue] = {}
        self._histograms: dict[tuple[str, ...], _Parts] = {}

    def __call__(self, *values: str) -> M:
        """The child for these label values."""
        child = self._children.get(values)
        if child is None:
            if len(self._children) > 10_000:  # label values come from config; stay bounded
                self._children.clear()
                self._counts.clear()
                self._histograms.clear()
            child = self._children[values] = self.family.labels(*values)
            node: Any = child  # prometheus's attributes, untyped
            if isinstance(child, Histogram):
                node._sum = _unlocked(node._sum)  # noqa: SLF001
                node._buckets = [_unlocked(b) for b in node._buckets]  # noqa: SLF001
            else:
                node._value = _unlocked(node._value)  # noqa: SLF001
        return child

    def inc(self, *values: str) -> None:
        """Add one to the child for these label values (of a counter)."""
        value = self._counts.get(values)
        if value is None:
            child: Any = self(*values)
            value = self._counts[values] = child._value  # noqa: SLF001
        value.value += 1

    def observe(self, amount: float, *values: str) -> None:
        """Observe `amount` on the child for these label values (of a histogram)."""
        parts = self._histograms.get(values)
        if parts is None:
            child: Any = self(*values)
            parts = self._histograms[values] = (
                child._sum,  # noqa: SLF001
                child._buckets,  # noqa: SLF001
                child._upper_bounds,  # noqa: SLF001
            )
        total, buckets, bounds = parts
        total.value += amount
        # The first bucket whose bound is >= amount (the last is +Inf), as observe() picks.
        buckets[bisect.bisect_left(bounds, amount)].value += 1


class Metrics:
    """The gateway's metric families, on their own registry (tests make many)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        # No `*_created` series beside every counter and histogram: they doubled the series a
        # technician scrolls through, and when a series was born is no count. The switch is
        # process-wide and read at each scrape, so setting it here (not as a side effect of
        # importing this module) covers every registry, in either exposition format.
        disable_created_metrics()  # type: ignore[no-untyped-call]  # unannotated in 0.26
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.signals = Counter(
            "alertgw_signals_total", "Signals decoded", ["source", "kind", "state"], registry=r
        )
        self.rejects = Counter(
            "alertgw_input_rejected_total",
            "Inputs refused (malformed payload, unknown device, bad response …)",
            ["source", "reason"],
            registry=r,
        )
        self.alerts = Counter(
            "alertgw_alerts_total", "Alert transitions", ["kind", "event"], registry=r
        )
        self.deliveries = Counter(
            "alertgw_deliveries_total",
            "Handset messages by outcome",
            ["handset", "action", "outcome"],
            registry=r,
        )
        self.responses = Counter(
            "alertgw_responses_total", "Handset responses", ["handset", "response"], registry=r
        )
        self.duplicates = Counter(
            "alertgw_duplicate_signals_total",
            "Broker redeliveries recognised and dropped",
            ["source"],
            registry=r,
        )
        self.active_alerts = Gauge("alertgw_active_alerts", "Alerts not yet finished", registry=r)
        self.outbox_depth = Gauge(
            "alertgw_outbox_depth", "Handset messages waiting for their channel", registry=r
        )
        self.handset_online = Gauge(
            "alertgw_handset_online",
            "1 while a handset app that reports its status says it runs, 0 once it (or its"
            " last will) says offline",
            ["handset"],
            registry=r,
        )
        self.handset_reachable = Gauge(
            "alertgw_handset_reachable",
            "1 when the handset's last message was delivered; 0 when its channel refused it"
            " for good, or (MQTT 5) nobody listens for it",
            ["handset"],
            registry=r,
        )
        self.connected = Gauge(
            "alertgw_driver_connected", "1 when a driver's link is up", ["driver"], registry=r
        )
        self.latency = Histogram(
            "alertgw_signal_to_handset_seconds",
            "From signal receipt to channel confirmation of the ring",
            ["priority"],
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5, 30),
            registry=r,
        )
        self.suppressed = Counter(
            "alertgw_alerts_suppressed_total",
            "Alerts that never rang or were ended by a rule (presence, hold-off, inhibition …)",
            ["reason", "rule"],
            registry=r,
        )
        self.escalations = Counter(
            "alertgw_escalations_total", "Escalation steps taken", ["kind", "why"], registry=r
        )
        self.espa_calls_failed = Counter(
            "alertgw_espa_calls_failed_total",
            "ESPA calls the paging system did not take (NAKed, refused '3', never ACKed)",
            ["link", "reason"],
            registry=r,
        )
        self.espa_calls_acked_unjournaled = Counter(
            "alertgw_espa_calls_acked_unjournaled_total",
            "ESPA calls ACKed on the line before they were journaled (the ACK hold ran out)",
            ["link"],
            registry=r,
        )
        # Cached children for the per-signal hot path.
        self.signal_count = Labelled(self.signals)
        self.alert_count = Labelled(self.alerts)
        self.delivery_count = Labelled(self.deliveries)
        self.latency_of = Labelled(self.latency)
        self.journal_errors = Counter(
            "alertgw_journal_write_errors_total",
            "Journal commits that failed (retried; routing goes on from memory)",
            registry=r,
        )
        self.journal_dropped = Counter(
            "alertgw_journal_signals_dropped_total",
            "Signal and answer records dropped from memory in a long journal outage (alerts kept)",
            registry=r,
        )
        self.journal_failing = Gauge(
            "alertgw_journal_failing", "1 while journal commits fail", registry=r
        )
        self.journal_prune_lag = Gauge(
            "alertgw_journal_prune_lag_seconds",
            "How far the journal's prune cutoff trails the wall clock's (a clock far ahead)",
            registry=r,
        )
        self.clock_steps = Counter(
            "alertgw_clock_steps_total",
            "Wall-clock steps (NTP, RTC) that moved the pending timers with them",
            registry=r,
        )
        self.subscription_refused = Gauge(
            "alertgw_mqtt_subscription_refused",
            "1 while the broker refuses this topic filter (SUBACK 0x80): its messages never come",
            ["topic_filter"],
            registry=r,
        )
        self.sessions_lost = Counter(
            "alertgw_mqtt_sessions_lost_total",
            "Reconnects to a broker that had forgotten alertgw's session (queued messages lost)",
            registry=r,
        )
        self.config_reloads = Counter(
            "alertgw_config_reloads_total", "Config reloads by result", ["result"], registry=r
        )
        for result in ("ok", "failed"):
            # Exported as 0 from the start: an alert rule on increase(...{result="failed"})
            # sees the first failure, which a series born at 1 would not show as an increase.
            self.config_reloads.labels(result)
