"""End to end: a nurse call over ESPA reaches an MQTT handset; a sensor alert pages a DECT."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

from gateway.app import Gateway
from gateway.config import Config, parse_config
from gateway.journal import Journal
from tests.conftest import Broker, free_port, running, unique
from tests.integration.espa_peer import Dect, NurseCall, PtyPeer, Tok
from tests.integration.helpers import peer

# Linux ptys refuse 7-bit and parity settings, so the links run 8N1 here.
LINK = "bytesize: 8, parity: N, stopbits: 1, poll_interval: 0.05, reply_timeout: 0.5"

YAML = """
site: {{name: Test unit, timezone: Europe/Oslo}}
mqtt:
  host: 127.0.0.1
  port: {port}
  client_id: {client_id}
  status_topic: {prefix}/status
  backoff_initial: 0.05
  backoff_max: 0.5
sources:
  nurse: {{type: espa, decoder: espa, link: ward}}
  zigbee: {{type: mqtt, decoder: zigbee2mqtt, topics: ["{prefix}/z2m/#"], base_topic: {prefix}/z2m}}
espa:
  ward: {{port: "{ward}", role: station, local_address: "2", remote_address: "1", {link}}}
  dect: {{port: "{dect}", role: control_station, local_address: "1", remote_address: "2", {link}}}
zones:
  east: {{rooms: ["101", "102"]}}
devices:
  call-101: {{room: "101", kind: pull_cord, name: "101", source: nurse}}
  call-102: {{room: "102", kind: pull_cord, name: "102", source: nurse}}
  door-102: {{room: "102", kind: door_open, name: rom102/dor, source: zigbee}}
handsets:
  night1: {{channel: mqtt, address: {prefix}/handset/night1}}
  dect21: {{channel: espa, link: dect, address: "21"}}
routing:
  - {{kinds: [pull_cord], handsets: [night1]}}
  - {{kinds: [door_open], handsets: [dect21]}}
journal: {{path: "{db}"}}
metrics: {{enabled: false}}
"""


def espa_config(port: int, tmp_path: Path, prefix: str, ward: str, dect: str) -> Config:
    """The test site with one nurse-call line and one DECT line."""
    text = YAML.format(
        port=port,
        client_id=unique("alertgw"),
        prefix=prefix,
        ward=ward,
        dect=dect,
        link=LINK,
        db=tmp_path / "journal.db",
    )
    return parse_config(text, filename="test.yaml")


@contextlib.asynccontextmanager
async def lines() -> AsyncIterator[tuple[PtyPeer, PtyPeer, Dect]]:
    """A nurse-call pty, and a DECT pty with its simulator answering."""
    ward, dect_port = PtyPeer(), PtyPeer()
    dect = Dect(dect_port)
    sim = asyncio.create_task(dect.run(), name="test.dect")
    try:
        yield ward, dect_port, dect
    finally:
        sim.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sim
        ward.close()
        dect_port.close()


async def until_polled(nurse: NurseCall) -> None:
    """Poll until the gateway (paging side) has opened its port and answers."""
    async with asyncio.timeout(5):
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(nurse.poll(), 0.3)
                return


async def next_call(dect: Dect) -> Tok:
    """The next call block the simulated DECT accepted."""
    async with asyncio.timeout(5):
        return await dect.calls.get()


async def test_nurse_call_reaches_mqtt_handset(broker: Broker, tmp_path: Path) -> None:
    """An ESPA call from the nurse-call system rings the MQTT handset; its reset cancels it."""
    prefix = unique("t")
    async with lines() as (ward, dect_port, _):
        config = espa_config(broker.port, tmp_path, prefix, ward.path, dect_port.path)
        async with running(config), peer(broker.port, prefix) as p:
            nurse = NurseCall(ward)
            await until_polled(nurse)
            call = [("1", b"101"), ("2", b"Rom 101"), ("4", b"3"), ("6", b"2")]
            assert [r.kind for r in await nurse.call(call)] == ["ack", "ack"]
            handset, ring = await p.next()
            assert handset == "night1"
            assert ring["type"] == "ring"
            assert ring["kind"] == "pull_cord"
            assert ring["room"] == "101"
            reset = [("1", b"101"), ("2", b"Rom 101"), ("4", b"1")]
            assert [r.kind for r in await nurse.call(reset)] == ["ack", "ack"]
            handset, cancel = await p.next()
            assert cancel["type"] == "cancel"
            assert cancel["alert_id"] == ring["alert_id"]


async def test_sensor_alert_pages_dect_and_acknowledgement_accepts(
    broker: Broker, tmp_path: Path
) -> None:
    """A Zigbee door alert is paged as an ESPA call; the DECT's status '6' accepts the alert."""
    prefix = unique("t")
    async with lines() as (ward, dect_port, dect):
        config = espa_config(broker.port, tmp_path, prefix, ward.path, dect_port.path)
        async with running(config), peer(broker.port, prefix) as p:
            await p.z2m("rom102/dor", {"contact": True})
            await p.z2m("rom102/dor", {"contact": False})  # door opened
            call = await next_call(dect)
            assert call.header == "1"
            assert call.records["1"] == b"21"
            assert call.records["4"] == b"3"
            assert b"102" in call.records["2"]
            dect.status("21", "6", text=call.records["2"])  # acknowledged by the carer
            update = await next_call(dect)  # the accept clears the call on the handset
            assert update.records["4"] == b"1"
    journal = Journal(config.journal.path)
    await journal.open()
    try:
        (stored,) = await journal.recent_alerts(1)
    finally:
        await journal.close()
    assert stored.alert.kind == "door_open"
    assert stored.alert.state.value == "accepted"
    assert stored.alert.accepted_by == "dect21"


async def test_dect_paged_status_is_journaled_as_delivered(broker: Broker, tmp_path: Path) -> None:
    """The DECT's status '3' (paged) puts `delivered` by dect21 on the alert's timeline."""
    prefix = unique("t")
    async with lines() as (ward, dect_port, dect):
        config = espa_config(broker.port, tmp_path, prefix, ward.path, dect_port.path)
        async with running(config) as r, peer(broker.port, prefix) as p:
            await p.z2m("rom102/dor", {"contact": True})
            await p.z2m("rom102/dor", {"contact": False})
            await next_call(dect)
            dect.status("21", "3")
            journal = r.gateway.journal
            async with asyncio.timeout(5):
                while True:  # taken at the next poll, then routed and journaled
                    # The page leaves while its batch commits, so the alert may not be
                    # in the journal yet when the DECT answers.
                    stored_now = await journal.recent_alerts(1)
                    if stored_now and any(e[1] == "delivered" for e in stored_now[0].events):
                        stored = stored_now[0]
                        break
                    await asyncio.sleep(0.05)
    assert ("delivered", "dect21") in [(e[1], e[2]) for e in stored.events]
    assert stored.alert.state.value == "active"


async def test_a_nurse_call_during_shutdown_is_journaled(tmp_path: Path) -> None:
    """An ESPA call the line confirmed while the daemon drains is routed and journaled.

    MQTT items may be dropped then (the broker delivers them again); an ESPA call may not,
    because the line already acknowledged it and nothing sends it again. The broker here is
    down, so the drain waits for the handset lane and the call lands inside it.
    """
    prefix = unique("t")
    async with lines() as (ward, dect_port, _):
        # Nothing listens on the MQTT port: the MQTT handset cannot be reached.
        config = espa_config(free_port(), tmp_path, prefix, ward.path, dect_port.path)
        gw = Gateway(config, drain_timeout=3.0, serve_metrics=False)
        stop = asyncio.Event()
        task = asyncio.create_task(gw.run(stop.wait))
        await asyncio.wait_for(gw.ready.wait(), 10)
        nurse = NurseCall(ward)
        await until_polled(nurse)
        call = [("1", b"101"), ("2", b"Rom 101"), ("4", b"3"), ("6", b"2")]
        assert [r.kind for r in await nurse.call(call)] == ["ack", "ack"]
        await asyncio.sleep(0.3)
        stop.set()  # SIGTERM: the drain waits for the handset lane
        await asyncio.sleep(0.3)
        assert not task.done()
        late = [("1", b"102"), ("2", b"Rom 102"), ("4", b"3"), ("6", b"2")]
        assert [r.kind for r in await nurse.call(late)] == ["ack", "ack"]
        await asyncio.wait_for(task, 15)
    with sqlite3.connect(tmp_path / "journal.db") as conn:
        rooms = sorted(row[0] for row in conn.execute("SELECT room FROM signals"))
    assert rooms == ["101", "102"]
