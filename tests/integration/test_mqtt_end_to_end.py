"""End to end through a real Mosquitto: sensors in, handset messages out, responses back."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import aiomqtt
import orjson
import pytest

from gateway.journal import Journal
from tests.conftest import PROTOCOLS, Broker, make_config, running, unique
from tests.integration.helpers import latest_alert, peer


async def test_z2m_bed_transition_rings_and_repeated_report_does_not(
    broker: Broker, tmp_path: Path
) -> None:
    """A Zigbee2MQTT bed sensor rings once per transition, never for a repeated state."""
    prefix = unique("t")
    config = make_config(broker.port, tmp_path, prefix=prefix)
    async with running(config), peer(broker.port, prefix) as p:
        await p.z2m("rom101/seng", {"occupancy": False, "battery": 90})  # baseline
        await p.z2m("rom101/seng", {"occupancy": True, "battery": 90})
        handset, msg = await p.next()
        assert handset == "night1"
        assert msg["type"] == "ring"
        assert msg["kind"] == "bed_exit"
        assert msg["room"] == "101"
        assert msg["priority"] == "high"
        assert msg["seq"] == 1
        assert msg["alert_id"]
        assert msg["signal_id"]
        # Z2M repeats the full cached state with every battery or link-quality report.
        for battery in (89, 88, 87):
            await p.z2m("rom101/seng", {"occupancy": True, "battery": battery})
        assert await p.nothing(0.7)


async def test_clear_sends_cancel_to_the_rung_handset(broker: Broker, tmp_path: Path) -> None:
    """When the condition clears, the handset that rang gets a cancel for the same alert."""
    prefix = unique("t")
    config = make_config(broker.port, tmp_path, prefix=prefix)
    async with running(config), peer(broker.port, prefix) as p:
        await p.z2m("rom102/dor", {"contact": True})
        await p.z2m("rom102/dor", {"contact": False})  # door opened
        _, ring = await p.next()
        await p.z2m("rom102/dor", {"contact": True})
        handset, cancel = await p.next()
        assert handset == "night1"
        assert cancel["type"] == "cancel"
        assert cancel["alert_id"] == ring["alert_id"]
        assert cancel["seq"] > ring["seq"]  # past the start's base (Engine.use_start)
        assert cancel["state"] == "cleared"


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_accept_moves_the_alert_and_is_journaled(
    broker: Broker, tmp_path: Path, protocol: str
) -> None:
    """A handset's accept moves the alert to accepted, notifies handsets and is journaled."""
    prefix = unique("t")
    config = make_config(broker.port, tmp_path, prefix=prefix, protocol=protocol)
    async with running(config) as r, peer(broker.port, prefix) as p:
        await p.z2m("rom103/snor", {"action": "single"})
        handset, ring = await p.next()
        assert handset == "night1"
        await p.respond("night1", ring["alert_id"], "accept")
        handset, update = await p.next()
        assert update["type"] == "update"
        assert update["state"] == "accepted"
        assert update["accepted_by"] == "night1"
        # An answer from a handset that never got the alert is refused and counted.
        await p.respond("night2", ring["alert_id"], "accept")
        await p.respond("night1", "no-such-alert", "accept")
        for _ in range(50):
            rejected = r.gateway.metrics.rejects.labels("handsets", "unknown_alert")._value.get()
            if rejected:
                break
            await asyncio.sleep(0.05)
        rejects = r.gateway.metrics.rejects
        assert rejects.labels("handsets", "not_delivered_to_handset")._value.get() == 1
        assert rejects.labels("handsets", "unknown_alert")._value.get() == 1
    stored = await latest_alert(config.journal.path)
    assert stored.alert.state.value == "accepted"
    assert stored.alert.accepted_by == "night1"
    assert [e[1] for e in stored.events] == ["raised", "ringing", "accepted"]


async def test_critical_rings_every_routed_handset_at_once(broker: Broker, tmp_path: Path) -> None:
    """An epilepsy alarm goes to every handset with a matching route, not just the first."""
    prefix = unique("t")
    config = make_config(broker.port, tmp_path, prefix=prefix)
    async with running(config), peer(broker.port, prefix) as p:
        await p.z2m("rom201/epi", {"epilepsy": False})
        await p.z2m("rom201/epi", {"epilepsy": True})
        got = {(await p.next())[0], (await p.next())[0]}
        assert got == {"night1", "night2"}


async def test_json_signal_and_malformed_payloads(broker: Broker, tmp_path: Path) -> None:
    """Malformed payloads are counted and skipped; a valid JSON signal still rings after them."""
    prefix = unique("t")
    config = make_config(broker.port, tmp_path, prefix=prefix)
    async with running(config) as r, peer(broker.port, prefix) as p:
        await p.client.publish(f"{prefix}/in/x", b"{not json", qos=1)
        await p.client.publish(f"{prefix}/in/x", b'{"device": "ghost"}', qos=1)
        await p.client.publish(f"{prefix}/z2m/rom101/seng", b"\xff\xfe", qos=1)
        await p.json_signal({"id": "sig-1", "device": "fall-101", "state": "raised"})
        _, msg = await p.next()
        assert msg["kind"] == "fall"
        assert msg["signal_id"] == "sig-1"
        assert msg["critical"] is True
        m = r.gateway.metrics.rejects
        assert m.labels("integrator", "malformed_json")._value.get() == 1
        assert m.labels("integrator", "unknown_device")._value.get() == 1
        assert m.labels("zigbee", "malformed_json")._value.get() == 1


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_restart_loses_nothing_published_while_down(
    broker: Broker, tmp_path: Path, protocol: str
) -> None:
    """Signals published while alertgw is stopped are delivered after it restarts."""
    prefix = unique("t")
    client_id = unique("alertgw")
    config = make_config(
        broker.port, tmp_path, prefix=prefix, client_id=client_id, protocol=protocol
    )
    async with peer(broker.port, prefix) as p:
        async with running(config):
            await p.z2m("rom101/seng", {"occupancy": False})
            await p.z2m("rom102/dor", {"contact": True})
            await p.z2m("rom103/snor", {"action": "single"})
            await p.next()
        # alertgw is down: these queue in its persistent session.
        await p.z2m("rom101/seng", {"occupancy": True})
        await p.z2m("rom102/dor", {"contact": False})
        await p.json_signal({"id": "while-down", "device": "fall-101"})
        assert await p.nothing(0.3)
        async with running(config):
            kinds = sorted([(await p.next())[1]["kind"] for _ in range(3)])
        assert kinds == ["bed_exit", "door_open", "fall"]


async def test_status_topic_online_then_offline(broker: Broker, tmp_path: Path) -> None:
    """The gateway's retained status topic says online while running and offline after."""
    prefix = unique("t")
    config = make_config(broker.port, tmp_path, prefix=prefix)

    async def status() -> dict[str, object]:
        async with aiomqtt.Client("127.0.0.1", broker.port) as c:
            await c.subscribe(f"{prefix}/status", qos=1)
            async with asyncio.timeout(5):
                async for m in c.messages:
                    assert isinstance(m.payload, bytes)
                    return dict(orjson.loads(m.payload))
        raise AssertionError("no status")

    async with running(config):
        assert (await status())["state"] == "online"
    assert (await status())["state"] == "offline"


async def test_gathered_commit_is_flushed_and_acknowledged_at_shutdown(
    broker: Broker, tmp_path: Path
) -> None:
    """A ring leaves before its commit; a clean stop still commits it and acks the signal.

    With the longest commit_delay the stop comes while the decision is still gathered. It
    must reach the journal, and the signal must be acknowledged only then, so a restart on
    the same session gets no redelivery and rings nothing twice.
    """
    prefix = unique("t")
    client_id = unique("alertgw")
    config = make_config(broker.port, tmp_path, prefix=prefix, client_id=client_id)
    journal_cfg = dataclasses.replace(config.journal, commit_delay=1.0)
    config = dataclasses.replace(config, journal=journal_cfg)
    async with peer(broker.port, prefix) as p:
        async with running(config):
            await p.z2m("rom103/snor", {"action": "single"})
            _, ring = await p.next()
        journal = Journal(config.journal.path)
        await journal.open()
        try:
            (stored,) = await journal.recent_alerts(1)
            assert await journal.seen_signal(ring["signal_id"], 0.0)
            pending = await journal.pending_deliveries()
        finally:
            await journal.close()
        assert stored.alert.id == ring["alert_id"]
        assert [e[1] for e in stored.events] == ["raised", "ringing"]
        assert pending == []  # the PUBACK's "sent" mark was committed too
        async with running(config):
            assert await p.nothing(0.7)


async def test_rate_limited_z2m_device_never_loses_a_button_press(
    broker: Broker, tmp_path: Path
) -> None:
    """A press on a device over its fair share still rings, though reports follow it.

    Review finding 5: past max_rate (20/s, burst 40) a device's newer message replaced
    the parked one, which is right for level reports and wrong for `action`, which
    Zigbee2MQTT never repeats: the battery report after the press erased it.
    """
    prefix = unique("t")
    config = make_config(broker.port, tmp_path, prefix=prefix)
    async with running(config) as r, peer(broker.port, prefix) as p:
        # A babbling pull-cord device (or its queued reports after an outage).
        for i in range(60):
            await p.z2m("rom103/snor", {"battery": 90, "linkquality": 100 + i % 50})
        await p.z2m("rom103/snor", {"action": "single", "battery": 90, "linkquality": 80})
        await p.z2m("rom103/snor", {"battery": 90, "linkquality": 81})  # the next report
        _, ring = await p.next(timeout=5.0)
        coalesced = r.gateway.metrics.rejects.labels("zigbee", "rate_limited")._value.get()
    assert ring["type"] == "ring"
    assert ring["kind"] == "pull_cord"
    assert coalesced > 0  # the reports around it were still coalesced
