"""The daemon's capture (`record:`) replays to what the daemon did: real broker, real pty."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson

from gateway.config import parse_config
from gateway.replay import load_capture, replay
from tests.conftest import Broker, running, unique
from tests.integration.espa_peer import NurseCall
from tests.integration.helpers import peer
from tests.integration.test_espa_end_to_end import LINK, YAML, lines, until_polled

CORD = '  cord-103: {room: "102", kind: pull_cord, name: rom103/snor, source: zigbee}\n'


async def test_a_recorded_night_replays_what_the_daemon_did(broker: Broker, tmp_path: Path) -> None:
    """An ESPA call rang and a retained old press did not; the replay of the capture agrees.

    Replay left every recorded ESPA call unmatched (the daemon records them as
    espa/<link>/<address>), and the capture lost the retain flag, so replay rang the press
    the daemon had refused as old news.
    """
    prefix = unique("t")
    cord_topic = f"{prefix}/z2m/rom103/snor"
    capture = tmp_path / "capture.jsonl"
    async with lines() as (ward, dect_port, _), peer(broker.port, prefix) as p:
        text = YAML.format(
            port=broker.port,
            client_id=unique("alertgw"),  # no session: the broker sends its stored copies
            prefix=prefix,
            ward=ward.path,
            dect=dect_port.path,
            link=LINK,
            db=tmp_path / "journal.db",
        ).replace("devices:\n", "devices:\n" + CORD)
        config = parse_config(text + f'record: {{path: "{capture}"}}\n', filename="site.yaml")
        # Pressed yesterday by a device set to retain; the broker still holds it.
        await p.client.publish(cord_topic, orjson.dumps({"action": "single"}), qos=1, retain=True)
        try:
            async with running(config) as r:
                refused = r.gateway.metrics.rejects.labels("zigbee", "retained_press")
                async with asyncio.timeout(5):
                    while refused._value.get() < 1:
                        await asyncio.sleep(0.02)
                nurse = NurseCall(ward)
                await until_polled(nurse)
                call = [("1", b"101"), ("2", b"Rom 101"), ("4", b"3"), ("6", b"2")]
                assert [t.kind for t in await nurse.call(call)] == ["ack", "ack"]
                handset, ring = await p.next()
                assert (handset, ring["type"], ring["room"]) == ("night1", "ring", "101")
                assert await p.nothing(within=0.5)  # the old press rang nobody
        finally:
            await p.client.publish(cord_topic, b"", qos=1, retain=True)
    records = load_capture(capture)
    assert {r["topic"] for r in records} == {cord_topic, "espa/ward/101"}
    assert [r.get("retain", False) for r in records if r["topic"] == cord_topic] == [True]
    report = replay(records, config, accept_after=None)
    assert report.unmatched_topics == 0
    assert report.decode_errors == {"retained_press": 1}
    assert report.alerts_raised == 1
    assert report.alerts_rung == 1
    assert report.interruptions_by_handset["night1"] >= 1
