"""Metrics over HTTP and the inbound capture, through a real Mosquitto."""

from __future__ import annotations

import asyncio
import dataclasses
import urllib.request
from pathlib import Path

from gateway.config import MetricsConfig, RecordConfig
from gateway.replay import load_capture, replay
from tests.conftest import Broker, free_port, make_config, running, unique
from tests.integration.helpers import peer


def scrape(port: int) -> str:
    """GET /metrics like Prometheus would."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
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
    assert 'alertgw_driver_connected{driver="mqtt"} 1.0' in text
    assert 'alertgw_signals_total{kind="pull_cord",source="zigbee",state="raised"} 1.0' in text
    assert 'alertgw_deliveries_total{action="ring",handset="night1",outcome="sent"} 1.0' in text
    assert "alertgw_signal_to_handset_seconds_bucket" in text
    assert "alertgw_active_alerts 1.0" in text
    assert "alertgw_outbox_depth 0.0" in text  # the ring was confirmed


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
