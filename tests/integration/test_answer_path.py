"""The handset answer path (accept / reject / resolve) through a real broker and journal.

Found by a review (2026-11-25); each test failed before its fix, as its docstring says.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiomqtt
import orjson

from gateway.config import parse_config
from gateway.ports import Inbound, RawResponse
from tests.conftest import Broker, make_config, running, unique
from tests.integration.helpers import peer
from tests.integration.test_restart_and_reload import start


async def test_a_retained_accept_is_not_applied_again_after_a_restart(
    broker: Broker, tmp_path: Path
) -> None:
    """A handset app that publishes its answers with retain=true (a common app-side
    mistake; the broker keeps the last one) must not take an alert back at every start.

    What the nurse sees: night1 accepts the pull cord (retained), then taps reject: the
    call is given back and night2's phone rings. alertgw restarts (an update, a power
    blip): the broker replays night1's old retained accept on subscribe, alertgw applies it
    as news, night2's phone is told "accepted by night1" and the call stops escalating,
    though the nurse who answered last said she cannot go. The README treats retained
    messages as state, not news, for sources; the answer path does not even look at the
    retain flag (RawResponse has none).
    """
    prefix = unique("t")
    client_id = unique("alertgw")
    config = make_config(broker.port, tmp_path, prefix=prefix, client_id=client_id)
    topic = f"{prefix}/handset/night1/response"
    try:
        async with peer(broker.port, prefix) as p:
            async with running(config):
                await p.z2m("rom103/snor", {"action": "single"})
                handset, ring = await p.next()
                assert handset == "night1"
                alert_id = ring["alert_id"]
                body = {"alert_id": alert_id, "response": "accept"}
                await p.client.publish(topic, orjson.dumps(body), qos=1, retain=True)
                _, update = await p.next()
                assert update["state"] == "accepted"
                await p.respond("night1", alert_id, "reject")  # not retained
                got = [await p.next() for _ in range(2)]
                assert ("night2", "ring") in [(h, m["type"]) for h, m in got]
            async with running(config) as r:
                await asyncio.sleep(1.0)  # the broker replays the retained accept on subscribe
                alert = r.gateway.engine.alert(alert_id)
                assert alert is not None
                assert alert.state.value == "active", (
                    f"a replayed retained accept took the alert back for {alert.accepted_by}"
                )
                refused = r.gateway.metrics.rejects.labels("handsets", "retained_response")
                assert refused._value.get() == 1
    finally:
        async with aiomqtt.Client("127.0.0.1", broker.port) as c:
            await c.publish(topic, b"", qos=1, retain=True)  # clear it for other tests


BATCH_YAML = """
site: {{name: T, timezone: Europe/Oslo}}
sources:
  integrator: {{type: mqtt, decoder: json, topics: ["in/#"]}}
mqtt: {{host: 127.0.0.1, port: 1, client_id: gw-review, status_topic: s/status}}
zones:
  east: {{rooms: ["101", "102", "103"]}}
devices:
  cord-101: {{room: "101", kind: pull_cord, source: integrator}}
  cord-102: {{room: "102", kind: pull_cord, source: integrator}}
  cord-103: {{room: "103", kind: pull_cord, source: integrator}}
handsets:
  h1: {{channel: console}}
  h2: {{channel: console}}
routing:
  - {{kinds: ['*'], handsets: [h1, h2]}}
rate_limit: {{max: 1, per: 1}}
journal: {{path: "{db}"}}
metrics: {{enabled: false}}
"""


def _cord(device: str, sid: str) -> Inbound:
    body = f'{{"device": "{device}", "id": "{sid}"}}'.encode()
    return Inbound("integrator", "in/x", body, time.time())


async def test_an_alert_received_in_a_batch_can_still_be_answered_after_a_restart(
    tmp_path: Path,
) -> None:
    """Past the rate limit, rooms 102 and 103 reach h1 as one `batch` message, whose
    `alert_id` is room 102's alert; room 103's alert is only listed inside it.

    What the nurse sees: after a restart of alertgw she taps accept on "Call room 103"
    from that batch and nothing happens: the answer is refused as
    `not_delivered_to_handset`, the call stays open and escalates past her. The restart
    rebuilt the handsets an alert reached from the outbox rows carrying its own id, and
    the batch row carries only the first alert's id, so h1 and h2 are forgotten for every
    other alert in the batch (they would get no update or cancel for it either: a phone
    keeps showing a call a colleague took). Without the restart the same accept works.
    """
    path = tmp_path / "alertgw.yaml"
    path.write_text(BATCH_YAML.format(db=tmp_path / "journal.db"), encoding="utf-8")
    gw, stop, task, out = await start(path)
    for i, device in enumerate(("cord-101", "cord-102", "cord-103")):
        gw.put(_cord(device, f"s{i}"))
    await asyncio.sleep(1.8)  # room 101 rings; 102 and 103 go out as one batch after 1 s
    assert "2 alerts waiting" in out.getvalue()
    (room_103,) = [a.id for a in gw.engine.active if a.room == "103"]
    stop.set()
    await asyncio.wait_for(task, 10)

    gw, stop, task, out = await start(path)
    try:
        body = f'{{"alert_id": "{room_103}", "response": "accept"}}'.encode()
        gw.put(RawResponse("h1", body, time.time(), None, False, 5))
        await asyncio.sleep(0.5)
        refused = gw.metrics.rejects.labels("handsets", "not_delivered_to_handset")._value.get()
        alert = gw.engine.alert(room_103)
        assert alert is not None
        assert refused == 0, "h1's accept of a call she got in a batch was refused"
        assert (alert.state.value, alert.accepted_by) == ("accepted", "h1")
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


ROSTER_YAML = """
site: {{name: T, timezone: Europe/Oslo}}
mqtt: {{host: 127.0.0.1, port: {port}, client_id: {client_id}, status_topic: {prefix}/status}}
sources:
  integrator: {{type: mqtt, decoder: json, topics: ["{prefix}/in/#"]}}
zones:
  east: {{rooms: ["101", "102"]}}
devices:
  cord-101: {{room: "101", kind: pull_cord}}
  cord-102: {{room: "102", kind: pull_cord}}
handsets:
  h1: {{channel: mqtt, address: {prefix}/handset/h1}}
  h2: {{channel: mqtt, address: {prefix}/handset/h2}}
schedules:
  always: {{start: "00:00", end: "00:00"}}
roster:
  shifts: [{{schedule: always, assign: {{east: [h1]}}}}]
  failsafe: [h2]
escalation:
  default:
    steps: [{{to: primary, after: 60}}, {{to: failsafe, after: 60}}]
    reminder: 1
rate_limit: {{max: 1, per: 600}}
journal: {{path: "{db}"}}
metrics: {{enabled: false}}
"""


async def test_answers_only_for_what_the_screen_shows_and_a_reminder_accept_is_confirmed(
    broker: Broker, tmp_path: Path
) -> None:
    """Through Mosquitto, as a handset app sees it (see tests/test_answer_path.py):

    - room 102's call waits in h1's batch (rate limit one a 10 min): an accept of it from
      h1 is refused and counted, and the call stays open;
    - h1 accepts room 101; a second later her phone rings a reminder; her accept of it
      comes back as an `update` saying the call is hers (before, nothing came back).
    """
    prefix = unique("t")
    text = ROSTER_YAML.format(
        port=broker.port, client_id=unique("alertgw"), prefix=prefix, db=tmp_path / "j.db"
    )
    config = parse_config(text, filename="roster.yaml")
    async with peer(broker.port, prefix) as p, running(config) as r:
        await p.json_signal({"device": "cord-101", "id": "s1"})
        handset, ring = await p.next()
        assert (handset, ring["type"], ring["room"]) == ("h1", "ring", "101")
        await p.json_signal({"device": "cord-102", "id": "s2"})
        await asyncio.sleep(0.3)
        (waiting,) = [a.id for a in r.gateway.engine.active if a.room == "102"]
        await p.respond("h1", waiting, "accept")
        await asyncio.sleep(0.5)
        refused = r.gateway.metrics.rejects.labels("handsets", "not_delivered_to_handset")
        assert refused._value.get() == 1
        alert = r.gateway.engine.alert(waiting)
        assert alert is not None
        assert alert.state.value == "active"

        await p.respond("h1", ring["alert_id"], "accept")
        _, update = await p.next()
        assert (update["type"], update["state"]) == ("update", "accepted")
        _, reminder = await p.next(timeout=5)
        assert (reminder["type"], reminder.get("reminder")) == ("ring", True)
        await p.respond("h1", ring["alert_id"], "accept")
        _, confirmed = await p.next()
        assert (confirmed["type"], confirmed["state"], confirmed["accepted_by"]) == (
            "update",
            "accepted",
            "h1",
        )
        assert confirmed["seq"] > reminder["seq"]
