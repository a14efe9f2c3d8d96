"""MQTT 5 through a real Mosquitto: the session, a ring the broker refuses by ACL, and a
ring to a handset topic nobody subscribes to."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import orjson
import pytest
from structlog.testing import capture_logs

from drivers.mqtt import MAX_PACKET, RECEIVE_MAXIMUM
from gateway.config import load_config
from gateway.ports import Inbound, Item
from tests.conftest import Broker, free_port, running, unique
from tests.integration.helpers import bare_link, latest_alert, peer
from tests.integration.test_mqtt_session import until
from tests.integration.test_rules_mqtt import prefix_of, write_config


@pytest.fixture
def acl_broker(tmp_path: Path) -> Iterator[Broker]:
    """Mosquitto whose ACL lets nobody write to handset n1's alerts (a mistake in it)."""
    work = tmp_path / "mosq"
    work.mkdir()
    (work / "acl").write_text(
        # Lines before any `user` apply to anonymous clients: the gateway and the test peer.
        "topic read #\n"
        "topic write +/z2m/#\n"
        "topic write +/status\n"
        "topic write +/handset/+/response\n"
        "topic write +/handset/n2/alert\n"
        "topic write +/handset/vakt/alert\n"
    )
    body = (
        ("user root\n" if os.geteuid() == 0 else "")
        + "per_listener_settings false\nallow_anonymous true\n"
        f"acl_file {work / 'acl'}\nset_tcp_nodelay true\n"
        "log_dest file {workdir}/mosquitto.log\n"
        "listener {port} 127.0.0.1\n"
    )
    broker = Broker(port=free_port(), workdir=work, body=body)
    broker.start()
    yield broker
    broker.stop()


def v5_config(tmp_path: Path, port: int, protocol: str) -> Path:
    """The rules test site (n1 primary, then n1+n2, then vakt) on MQTT `protocol`."""
    path = write_config(tmp_path, port)
    path.write_text(
        path.read_text().replace(
            "backoff_initial: 0.05,",
            f'protocol: "{protocol}", watch_broker_drops: false, backoff_initial: 0.05,',
        )
    )
    return path


async def test_a_ring_the_broker_refuses_moves_the_alert_on_at_once(
    acl_broker: Broker, tmp_path: Path
) -> None:
    """MQTT 5: n1's ring comes back refused (0x87), so the alert goes on to n2 at once.

    Under 3.1.1 the same broker acks and drops it: n1's ring counts as sent and the alert
    waits for the step's timeout (the README's known limit).
    """
    path = v5_config(tmp_path, acl_broker.port, "5")
    with capture_logs() as logs:
        async with (
            running(load_config(path)) as r,
            peer(acl_broker.port, prefix_of(path)) as p,
        ):
            await p.z2m("rom102/snor", {"action": "single"})
            handset, ring = await p.next()
            assert (handset, ring["type"], ring["kind"]) == ("n2", "ring", "pull_cord")
            failed = r.gateway.metrics.deliveries.labels("n1", "ring", "failed")._value.get()
    refused = [e for e in logs if e["event"] == "delivery_refused"]
    assert refused
    assert refused[0]["handset"] == "n1"
    assert "Not authorized" in refused[0]["error"]
    assert failed == 1


async def test_a_ring_nobody_subscribes_to_moves_the_alert_on_at_once(
    broker: Broker, tmp_path: Path
) -> None:
    """MQTT 5: n1's app is gone (nothing subscribes to its topic), so Mosquitto answers
    "no matching subscribers" and the alert goes on to n2 at once, saying why."""
    path = v5_config(tmp_path, broker.port, "5")
    with capture_logs() as logs:
        async with (
            running(load_config(path)) as r,
            peer(broker.port, prefix_of(path), handsets=("n2", "vakt")) as p,
        ):
            assert r.gateway.link is not None
            assert r.gateway.link._io is not None
            assert r.gateway.link._io.fast  # the hot path codes MQTT 5 packets itself
            await p.z2m("rom102/snor", {"action": "single"})
            handset, ring = await p.next()
            assert (handset, ring["type"], ring["kind"]) == ("n2", "ring", "pull_cord")
            # n2 takes it: the answer travels the same fast path back in.
            await p.respond("n2", ring["alert_id"], "accept")
            handset, update = await p.next()
            assert (handset, update["state"]) == ("n2", "accepted")
            reachable = r.gateway.metrics.handset_reachable
            assert reachable.labels("n1")._value.get() == 0
            assert reachable.labels("n2")._value.get() == 1
    unheard = [e for e in logs if e["event"] == "delivery_unheard"]
    assert unheard
    assert (unheard[0]["handset"], unheard[0]["action"]) == ("n1", "ring")
    assert "nobody subscribes" in unheard[0]["error"]
    stored = await latest_alert(tmp_path / "j.db")
    failed = [detail for _, event, detail in stored.events if event == "delivery_failed"]
    assert failed[0] == "n1 (nobody listens)"


async def test_a_ring_an_offline_persistent_handset_will_get_is_not_moved_on(
    broker: Broker, tmp_path: Path
) -> None:
    """The broker keeps messages for a handset app whose persistent session is offline:
    that counts as listening, and the alert waits for its step as usual."""
    path = v5_config(tmp_path, broker.port, "5")
    prefix = prefix_of(path)
    # n1's app subscribed once with a session that outlives its connection, then left.
    async with aiomqtt.Client(
        "127.0.0.1", broker.port, identifier=f"{prefix}-n1-app", clean_session=False
    ) as app:
        await app.subscribe(f"{prefix}/handset/n1/alert", qos=1)
    async with (
        running(load_config(path)) as r,
        peer(broker.port, prefix, handsets=("n2", "vakt")) as p,
    ):
        await p.z2m("rom102/snor", {"action": "single"})
        assert await p.nothing(1.0)
        assert r.gateway.metrics.deliveries.labels("n1", "ring", "sent")._value.get() == 1
    async with aiomqtt.Client(
        "127.0.0.1", broker.port, identifier=f"{prefix}-n1-app", clean_session=False
    ) as app:
        await app.subscribe(f"{prefix}/handset/n1/alert", qos=1)
        async with asyncio.timeout(5):
            message = await anext(aiter(app.messages))
    assert orjson.loads(message.payload)["type"] == "ring"  # type: ignore[arg-type]


@pytest.mark.parametrize(("protocol", "window"), [("5", RECEIVE_MAXIMUM), ("3.1.1", 20)])
async def test_alertgw_sets_its_own_in_flight_window_under_v5(
    broker: Broker, protocol: str, window: int
) -> None:
    """Signals wait for their commit before their PUBACK, so the broker's in-flight window
    bounds intake: MQTT 5 asks for RECEIVE_MAXIMUM, 3.1.1 gets Mosquitto's default of 20
    (the shipped broker config raises it; a stock one does not)."""
    prefix = unique("t")
    link = bare_link(
        broker.port, prefix, sources={"integrator": [f"{prefix}/in/#"]}, protocol=protocol
    )
    items: list[Item] = []  # never acknowledged: a journal that has not committed yet
    task = asyncio.create_task(link.run(items.append))
    try:
        await asyncio.wait_for(link.wait_connected(), 10)
        async with peer(broker.port, prefix, listen=False) as p:
            for n in range(RECEIVE_MAXIMUM + 20):
                await p.json_signal({"device": "cord-103", "state": "raised", "id": f"s{n}"})
            assert await until(lambda: len(items) >= window, 5)
            await asyncio.sleep(0.3)  # nothing more comes until something is acknowledged
        assert len(items) == window
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def sizes(items: list[Item]) -> list[int]:
    """The payload sizes of the inbound messages among `items`."""
    return [len(i.payload) for i in items if isinstance(i, Inbound)]


async def test_the_broker_keeps_packets_over_alertgws_maximum_to_itself(broker: Broker) -> None:
    """MQTT 5: alertgw tells the broker its Maximum Packet Size, so a 2 MiB payload never
    reaches its memory, while a 100 KiB one still arrives (and is counted as too large)."""
    prefix = unique("t")
    link = bare_link(broker.port, prefix, sources={"integrator": [f"{prefix}/in/#"]}, protocol="5")
    items: list[Item] = []
    task = asyncio.create_task(link.run(items.append))
    try:
        await asyncio.wait_for(link.wait_connected(), 10)
        async with peer(broker.port, prefix, listen=False) as p:
            for size in (2 * MAX_PACKET, 100 * 1024, 10):
                await p.client.publish(f"{prefix}/in/x", b"x" * size, qos=1)
            assert await until(lambda: 10 in sizes(items), 5)
        assert sorted(sizes(items)) == [10, 100 * 1024]
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_under_311_the_refused_ring_is_silent(acl_broker: Broker, tmp_path: Path) -> None:
    """The contrast: MQTT 3.1.1 has no way to say no, so nothing moves within the step."""
    path = v5_config(tmp_path, acl_broker.port, "3.1.1")
    async with (
        running(load_config(path)) as r,
        peer(acl_broker.port, prefix_of(path)) as p,
    ):
        await p.z2m("rom102/snor", {"action": "single"})
        assert await p.nothing(1.0)
        assert r.gateway.metrics.deliveries.labels("n1", "ring", "sent")._value.get() == 1


async def test_a_v5_session_keeps_what_arrived_while_alertgw_was_down(
    broker: Broker, tmp_path: Path
) -> None:
    """MQTT 5 sessions end with the connection unless asked to outlive it: alertgw asks."""
    path = v5_config(tmp_path, broker.port, "5")
    config = load_config(path)
    async with peer(broker.port, prefix_of(path)) as p:
        async with running(config):
            pass  # the first start makes the session
        await p.z2m("rom102/snor", {"action": "single"})  # pressed while alertgw is down
        await asyncio.sleep(0.2)
        async with running(config) as r:
            handset, ring = await p.next()
            assert r.gateway.link is not None
            assert r.gateway.link._session_present is True
    assert (handset, ring["type"], ring["kind"]) == ("n1", "ring", "pull_cord")


async def test_an_update_nobody_hears_does_not_take_the_call_from_its_accepter(
    broker: Broker, tmp_path: Path
) -> None:
    """MQTT 5: n1's app gets the ring, accepts, and stops listening (killed, or switched
    to another address) before alertgw's `update` confirming the accept goes out.

    Before: the unheard update counted as a failed ring; n1 being the accepter, the call
    was reopened and rung to n1 and n2 while n1 walked to the room. Now the timeline
    says `update_failed` and the call stays n1's (her next reminder, a ring, would fail
    and reopen it if her phone is still deaf then).
    """
    path = v5_config(tmp_path, broker.port, "5")
    prefix = prefix_of(path)
    async with (
        running(load_config(path)) as r,
        peer(broker.port, prefix, handsets=("n2", "vakt")) as p,
        aiomqtt.Client("127.0.0.1", broker.port) as n1_app,
    ):
        await n1_app.subscribe(f"{prefix}/handset/n1/alert", qos=1)
        await p.z2m("rom102/snor", {"action": "single"})
        ring = orjson.loads(
            (await asyncio.wait_for(anext(aiter(n1_app.messages)), 5)).payload  # type: ignore[arg-type]
        )
        assert ring["type"] == "ring"
        await n1_app.unsubscribe(f"{prefix}/handset/n1/alert")
        await p.respond("n1", ring["alert_id"], "accept")
        assert await p.nothing(within=1.5), "the call went on to n2 though n1 took it"
        alert = r.gateway.engine.alert(ring["alert_id"])
        assert alert is not None
        assert (alert.state.value, alert.accepted_by) == ("accepted", "n1")
    stored = await latest_alert(tmp_path / "j.db")
    assert ("update_failed", "n1 (nobody listens)") in [(e, d) for _, e, d in stored.events]


async def test_a_handset_nobody_listens_to_is_logged_once_not_per_message(
    broker: Broker, tmp_path: Path
) -> None:
    """MQTT 5: n1's app no longer listens (it still answers). The pull cord in room 102
    rings n1 (unheard: on to n2); n1 accepts anyway, and the resident pulls twice more.
    Each message to n1 (the ring, the accept's confirmation, two count updates) is
    counted and in the timeline, but the log says `delivery_unheard` once for the handset
    (per 30 s), not once a message: a removed app would otherwise fill the log all night.
    """
    path = v5_config(tmp_path, broker.port, "5")
    with capture_logs() as logs:
        async with (
            running(load_config(path)) as r,
            peer(broker.port, prefix_of(path), handsets=("n2", "vakt")) as p,
        ):
            await p.z2m("rom102/snor", {"action": "single"})
            handset, ring = await p.next()
            assert handset == "n2"
            await p.respond("n1", ring["alert_id"], "accept")
            _, taken = await p.next()
            assert (taken["type"], taken["accepted_by"]) == ("update", "n1")
            for _ in range(2):
                await p.z2m("rom102/snor", {"action": "single"})
            deliveries = r.gateway.metrics.deliveries

            def failed() -> float:
                return sum(
                    deliveries.labels("n1", action, "failed")._value.get()
                    for action in ("ring", "update")
                )

            for _ in range(50):
                if failed() >= 4:
                    break
                await asyncio.sleep(0.05)
            assert failed() == 4
            alert = r.gateway.engine.alert(ring["alert_id"])
            assert alert is not None
            assert (alert.state.value, alert.count) == ("accepted", 3)
    unheard = [e for e in logs if e["event"] == "delivery_unheard"]
    assert [(e["handset"], e["action"]) for e in unheard] == [("n1", "ring")]
