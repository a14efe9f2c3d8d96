"""Metrics over HTTP and the inbound capture, through a real Mosquitto."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import urllib.request
from pathlib import Path

from gateway.config import MetricsConfig, RecordConfig, parse_config
from gateway.replay import load_capture, replay
from tests.conftest import Broker, base_text, free_port, make_config, running, unique
from tests.integration.helpers import peer

# What Prometheus asks for: OpenMetrics first, the classic text format as the fallback.
OPENMETRICS = "application/openmetrics-text;version=1.0.0"


def scrape(port: int, accept: str | None = None) -> str:
    """GET /metrics like Prometheus would."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics")
    if accept is not None:
        request.add_header("Accept", accept)
    with urllib.request.urlopen(request, timeout=5) as resp:
        return str(resp.read().decode())


async def test_metrics_endpoint_serves_counts_and_connectivity(
    broker: Broker, tmp_path: Path
) -> None:
    """The Prometheus endpoint shows signals, alerts, deliveries and the driver gauge."""
    prefix = unique("m")
    port = free_port()
    config = dataclasses.replace(
        make_config(broker.port, tmp_path, prefix=prefix),
        metrics=MetricsConfig(enabled=True, host="127.0.0.1", port=port),
    )
    async with running(config), peer(broker.port, prefix) as p:
        await p.z2m("rom103/snor", {"action": "single"})
        await p.next()
        await asyncio.sleep(0.1)
        text = await asyncio.to_thread(scrape, port)
        openmetrics = await asyncio.to_thread(scrape, port, OPENMETRICS)
    assert 'alertgw_driver_connected{driver="mqtt"} 1.0' in text
    assert 'alertgw_signals_total{kind="pull_cord",source="zigbee",state="raised"} 1.0' in text
    assert 'alertgw_deliveries_total{action="ring",handset="night1",outcome="sent"} 1.0' in text
    assert "alertgw_signal_to_handset_seconds_bucket" in text
    assert "alertgw_active_alerts 1.0" in text
    assert "alertgw_outbox_depth 0.0" in text  # the ring was confirmed
    # One series per count, not a `*_created` twin beside each counter and histogram.
    assert 'alertgw_signals_total{kind="pull_cord"' in openmetrics
    assert "alertgw_signal_to_handset_seconds_count" in openmetrics
    assert "_created" not in text
    assert "_created" not in openmetrics


async def test_console_and_simulator_report_their_driver_gauge(
    broker: Broker, tmp_path: Path
) -> None:
    """Every driver has an `alertgw_driver_connected` series: 1 while it runs, 0 once stopped."""
    port = free_port()
    text = (
        base_text(broker.port, tmp_path)
        .replace("sources:\n", "sources:\n  night: {type: simulator, speed: 0.001}\n", 1)
        .replace("handsets:\n", "handsets:\n  desk: {channel: console}\n", 1)
        .replace(
            "  - {kinds: ['*'], handsets: [night1, night2]}\n",
            "  - {kinds: ['*'], handsets: [night1, night2, desk]}\n",
            1,
        )
    )
    config = dataclasses.replace(
        parse_config(text, filename="test.yaml"),
        metrics=MetricsConfig(enabled=True, host="127.0.0.1", port=port),
    )
    async with running(config, console=io.StringIO()) as r:
        scraped = await asyncio.to_thread(scrape, port)
    for driver in ("mqtt", "console", "simulator[night]"):
        assert f'alertgw_driver_connected{{driver="{driver}"}} 1.0' in scraped
    # The endpoint closes with the daemon: read the stopped drivers' gauges from its registry.
    registry = r.gateway.metrics.registry
    for driver in ("console", "simulator[night]"):
        assert registry.get_sample_value("alertgw_driver_connected", {"driver": driver}) == 0


async def test_recorded_night_replays_through_the_same_rules(
    broker: Broker, tmp_path: Path
) -> None:
    """`record:` writes inbound traffic as a capture that `alertgw replay` reads back."""
    prefix = unique("r")
    capture = tmp_path / "capture.jsonl"
    config = dataclasses.replace(
        make_config(broker.port, tmp_path, prefix=prefix), record=RecordConfig(str(capture))
    )
    async with running(config), peer(broker.port, prefix) as p:
        await p.z2m("rom101/seng", {"occupancy": False})
        await p.z2m("rom101/seng", {"occupancy": True})
        await p.z2m("rom103/snor", {"action": "single"})
        await p.next()
        await p.next()
    records = load_capture(capture)
    assert [r["topic"] for r in records] == [
        f"{prefix}/z2m/rom101/seng",
        f"{prefix}/z2m/rom101/seng",
        f"{prefix}/z2m/rom103/snor",
    ]
    report = replay(records, config)
    assert report.alerts_raised == 2
