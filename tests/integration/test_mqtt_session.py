"""The MQTT session's life through a real Mosquitto: reconnects, retained messages, SUBACK."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest
from structlog.testing import capture_logs

from gateway.config import parse_config
from tests.conftest import PROTOCOLS, Broker, base_text, free_port, make_config, running, unique
from tests.integration.helpers import peer

DYNSEC = Path("/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so")


async def until(predicate: Callable[[], bool], timeout: float) -> bool:
    """Poll `predicate` until it holds or `timeout` seconds pass; return its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.02)
    return predicate()


async def test_retained_press_does_not_ring_again_after_a_reconnect(
    broker: Broker, tmp_path: Path
) -> None:
    """A retained Z2M press (device option `retain: true`) rings once, not at every reconnect.

    Review finding 7: alertgw subscribes again on every session, so the broker re-sends
    every retained message (MQTT 3.1.1, 3.8.4); an old, resolved press rang again.
    """
    prefix = unique("t")
    config = make_config(broker.port, tmp_path, prefix=prefix)
    topic = f"{prefix}/z2m/rom103/snor"
    async with running(config) as r, peer(broker.port, prefix) as p:
        await p.client.publish(topic, orjson.dumps({"action": "single"}), qos=1, retain=True)
        _, ring = await p.next()
        assert ring["type"] == "ring"
        await p.respond("night1", ring["alert_id"], "resolve")
        _, cancel = await p.next()
        assert cancel["type"] == "cancel"
        link = r.gateway.link
        assert link is not None
        assert link._paho is not None
        link._paho.disconnect()  # the broker restarts, Wi-Fi drops, keep-alive runs out...
        await asyncio.sleep(0.3)
        await asyncio.wait_for(link.wait_connected(), 10)
        phantom = None
        with contextlib.suppress(TimeoutError):
            _, phantom = await p.next(timeout=1.5)
        replays = r.gateway.metrics.rejects.labels("zigbee", "retained_press")._value.get()
        await p.client.publish(topic, b"", qos=1, retain=True)  # clear the retained message
    assert phantom is None, f"a resolved press rang again after a reconnect: {phantom}"
    assert replays == 1


async def test_retained_press_published_while_down_still_rings(
    broker: Broker, tmp_path: Path
) -> None:
    """A press published (retained) while alertgw is stopped is queued news, and rings."""
    prefix = unique("t")
    config = make_config(broker.port, tmp_path, prefix=prefix, client_id=unique("gw"))
    topic = f"{prefix}/z2m/rom103/snor"
    async with peer(broker.port, prefix) as p:
        async with running(config):
            pass  # the persistent session and its subscriptions exist from here on
        await p.client.publish(topic, orjson.dumps({"action": "single"}), qos=1, retain=True)
        try:
            async with running(config):
                _, ring = await p.next()
        finally:
            await p.client.publish(topic, b"", qos=1, retain=True)
    assert ring["type"] == "ring"
    assert ring["kind"] == "pull_cord"


@pytest.fixture
def dynsec_broker(tmp_path: Path) -> Iterator[tuple[Broker, Path]]:
    """Mosquitto with the dynamic-security plugin, which answers a refused SUBSCRIBE 0x80.

    (With `acl_file` Mosquitto 2.0 grants the SUBACK and silently never delivers.)
    """
    if not DYNSEC.exists():
        pytest.skip("mosquitto dynamic security plugin not installed")
    work = tmp_path / "dynsec"
    work.mkdir()
    ds = work / "dynsec.json"
    subprocess.run(
        ["mosquitto_ctrl", "dynsec", "init", str(ds), "alertgw", "gw-secret"],
        check=True,
        capture_output=True,
    )
    data = json.loads(ds.read_text())
    data["defaultACLAccess"] = {
        "publishClientSend": True,
        "publishClientReceive": True,
        "subscribe": True,
        "unsubscribe": True,
    }
    ds.write_text(json.dumps(data))
    (work / "pw").write_text("gw-secret\n")
    body = (
        ("user root\n" if os.geteuid() == 0 else "")
        + "per_listener_settings false\nallow_anonymous true\n"
        "listener {port} 127.0.0.1\n"
        f"plugin {DYNSEC}\nplugin_opt_config_file {ds}\n"
        "log_dest file {workdir}/mosquitto.log\n"
    )
    b = Broker(port=free_port(), workdir=work, body=body)
    yield b, ds
    b.stop()


async def test_a_refused_subscription_is_loud(
    dynsec_broker: tuple[Broker, Path], tmp_path: Path
) -> None:
    """A SUBACK failure (0x80) is an error naming the filter, a gauge and a link_down alarm.

    Review finding 8: the SUBACK codes were ignored, so a refused response topic left
    night1's accepts unheard behind `mqtt_connected` and driver_connected 1.
    """
    b, ds = dynsec_broker
    prefix = unique("t")
    refused = f"{prefix}/handset/night1/response"
    data = json.loads(ds.read_text())
    data["roles"][0]["acls"] = [
        {"acltype": "subscribeLiteral", "topic": refused, "allow": False, "priority": 10}
    ]
    ds.write_text(json.dumps(data))
    b.start()
    login = f"mqtt:\n  username: alertgw\n  password_file: {b.workdir / 'pw'}\n"
    text = base_text(b.port, tmp_path, prefix=prefix, client_id=unique("gw"))
    text = text.replace("mqtt:\n", login, 1)
    config = parse_config(text, filename="test.yaml")
    with capture_logs() as logs:
        async with running(config) as r:
            gw = r.gateway
            alarmed = await until(
                lambda: any(
                    a.kind == "link_down" and refused in a.device for a in gw.engine.active
                ),
                5,
            )
            gauge = gw.metrics.subscription_refused.labels(refused)._value.get()
            granted = gw.metrics.subscription_refused.labels(f"{prefix}/z2m/#")._value.get()
    errors = [e for e in logs if e["event"] == "mqtt_subscription_refused"]
    assert [(e["log_level"], e["topic_filter"]) for e in errors] == [("error", refused)]
    assert (gauge, granted) == (1, 0)
    assert alarmed, "no link_down alarm for the refused subscription"


@pytest.mark.parametrize("qos", [0, 1], ids=["qos0", "qos1"])
async def test_message_parked_when_the_session_drops_is_released_after_reconnect(
    broker: Broker, tmp_path: Path, qos: int
) -> None:
    """A rate-limited press queued when the session drops still rings after it, once.

    Review finding 12: the release timer died with the session while the queue outlived
    it, so a QoS 0 press (Z2M's default, never sent again) waited for the next flood. A
    QoS 1 one is also sent again by the broker: it must not ring twice, nor count as a
    second press (its signal id kept the packet id, so the copy is a known duplicate; with
    the id dropped the copy was a new press, and a new ring once the first was resolved).
    """
    prefix = unique("t")
    text = base_text(broker.port, tmp_path, prefix=prefix, client_id=unique("gw")).replace(
        f"base_topic: {prefix}/z2m}}", f"base_topic: {prefix}/z2m, max_rate: 0.5, max_burst: 1}}"
    )
    config = parse_config(text, filename="test.yaml")
    async with running(config) as r, peer(broker.port, prefix) as p:
        link = r.gateway.link
        assert link is not None
        assert link._paho is not None
        topic = f"{prefix}/z2m/rom103/snor"
        await p.client.publish(topic, b'{"battery": 90}', qos=qos)  # takes the one token
        await p.client.publish(topic, b'{"action": "single", "battery": 90}', qos=qos)
        fair = link._fair["zigbee"]
        assert await until(lambda: fair.parked == 1, 2)
        link._paho.disconnect()  # the broker restarts, Wi-Fi drops...
        await asyncio.sleep(0.3)
        await asyncio.wait_for(link.wait_connected(), 10)
        _, ring = await p.next(timeout=6)  # the token is back within 2 s
        dups = r.gateway.metrics.duplicates.labels("zigbee")
        if qos:
            # The broker's own copy waits its turn behind ours (another 2 s).
            assert await until(lambda: dups._value.get() == 1, 10)
        assert await p.nothing(0.5)
        alert = r.gateway.engine.alert(ring["alert_id"])
    assert ring["type"] == "ring"
    assert ring["kind"] == "pull_cord"
    assert alert is not None
    assert alert.count == 1


async def test_presses_queued_by_the_rate_limit_are_routed_before_a_stop(
    broker: Broker, tmp_path: Path
) -> None:
    """A clean stop routes the QoS 0 presses still waiting for their device's token.

    Zigbee2MQTT publishes at QoS 0: the broker never sends such a message again, so a
    press parked behind a babbling button's rate limit ended with the process.
    """
    prefix = unique("t")
    text = base_text(broker.port, tmp_path, prefix=prefix, client_id=unique("gw")).replace(
        f"base_topic: {prefix}/z2m}}", f"base_topic: {prefix}/z2m, max_rate: 0.01, max_burst: 1}}"
    )
    config = parse_config(text, filename="test.yaml")
    with capture_logs() as logs:
        async with running(config) as r, peer(broker.port, prefix) as p:
            link = r.gateway.link
            assert link is not None
            topic = f"{prefix}/z2m/rom103/snor"
            await p.client.publish(topic, b'{"battery": 90}', qos=0)  # takes the one token
            for _ in range(3):
                await p.client.publish(topic, b'{"action": "single", "battery": 90}', qos=0)
            # A QoS 1 press is left to the broker, which sends it again after the restart:
            # the drain drops it unacknowledged, so it must not count as routed.
            await p.client.publish(topic, b'{"action": "double", "battery": 90}', qos=1)
            fair = link._fair["zigbee"]
            assert await until(lambda: fair.parked == 4, 5)
            assert await p.nothing(0.3)  # the next token is 100 s away
            await r.stop()
            _, ring = await p.next(timeout=5)  # sent during the drain
    assert (ring["type"], ring["kind"]) == ("ring", "pull_cord")
    alert = r.gateway.engine.alert(ring["alert_id"])
    assert alert is not None
    assert alert.count == 3
    released = [e for e in logs if e["event"] == "rate_limited_released"]
    assert [(e["messages"], e["left_to_broker"]) for e in released] == [(3, 1)]


async def test_presses_queued_by_the_rate_limit_are_routed_at_a_stop_while_the_broker_is_down(
    own_broker: Broker, tmp_path: Path
) -> None:
    """A stop between two connection attempts routes the parked presses too.

    Review finding: the release worked only while a session was up, so a stop during a
    broker restart or a Wi-Fi drop ended the QoS 0 presses with the process, unlogged.
    """
    prefix = unique("t")
    text = base_text(own_broker.port, tmp_path, prefix=prefix, client_id=unique("gw")).replace(
        f"base_topic: {prefix}/z2m}}", f"base_topic: {prefix}/z2m, max_rate: 0.01, max_burst: 1}}"
    )
    config = parse_config(text, filename="test.yaml")
    with capture_logs() as logs:
        async with running(config, drain_timeout=1.0) as r:
            link = r.gateway.link
            assert link is not None
            async with peer(own_broker.port, prefix, listen=False) as p:
                topic = f"{prefix}/z2m/rom103/snor"
                await p.client.publish(topic, b'{"battery": 90}', qos=0)  # the one token
                for _ in range(3):
                    await p.client.publish(topic, b'{"action": "single", "battery": 90}', qos=0)
                fair = link._fair["zigbee"]
                assert await until(lambda: fair.parked == 3, 5)
            own_broker.stop()
            assert await until(lambda: not link.connected, 5)
            await r.stop()
    assert fair.parked == 0
    (press,) = [a for a in r.gateway.engine.active if a.kind == "pull_cord"]
    assert press.count == 3
    released = [e for e in logs if e["event"] == "rate_limited_released"]
    assert [e["messages"] for e in released] == [3]


async def test_presses_queued_by_the_rate_limit_go_as_their_tokens_come_while_disconnected(
    own_broker: Broker, tmp_path: Path
) -> None:
    """With the broker down, a parked press is routed when its token comes, not only after
    the reconnect (up to `backoff_max` later): routing needs no broker."""
    prefix = unique("t")
    text = base_text(own_broker.port, tmp_path, prefix=prefix, client_id=unique("gw")).replace(
        f"base_topic: {prefix}/z2m}}", f"base_topic: {prefix}/z2m, max_rate: 1, max_burst: 1}}"
    )
    # The next connection attempt is 8 s away: only the between-sessions timer can do it.
    text = text.replace("backoff_initial: 0.05", "backoff_initial: 8").replace(
        "backoff_max: 0.5", "backoff_max: 8"
    )
    config = parse_config(text, filename="test.yaml")
    assert config.mqtt.backoff_initial == 8
    async with running(config) as r:
        link = r.gateway.link
        assert link is not None
        async with peer(own_broker.port, prefix, listen=False) as p:
            topic = f"{prefix}/z2m/rom103/snor"
            await p.client.publish(topic, b'{"battery": 90}', qos=0)  # the one token
            await p.client.publish(topic, b'{"action": "single", "battery": 90}', qos=0)
            fair = link._fair["zigbee"]
            assert await until(lambda: fair.parked == 1, 5)
            own_broker.stop()
        assert await until(lambda: not link.connected, 5)
        # Within the token's second, long before a reconnect could bring it.
        assert await until(lambda: fair.parked == 0, 3)
        assert await until(lambda: any(a.kind == "pull_cord" for a in r.gateway.engine.active), 3)
        assert not link.connected


def session_broker(tmp_path: Path, *, persistence: bool) -> Broker:
    """A started broker that keeps sessions across its restarts only with `persistence`."""
    body = (
        ("user root\n" if os.geteuid() == 0 else "")
        + "listener {port} 127.0.0.1\nallow_anonymous true\n"
        + ("persistence true\npersistence_location {workdir}/\n" if persistence else "")
        + "log_dest file {workdir}/mosquitto.log\n"
    )
    b = Broker(port=free_port(), workdir=tmp_path / "broker", body=body)
    b.start()
    return b


@pytest.mark.parametrize("persistence", [False, True], ids=["volatile", "persistent"])
async def test_reconnect_to_a_broker_that_lost_the_session_is_loud(
    tmp_path: Path, persistence: bool
) -> None:
    """CONNACK session_present=0 on a reconnect is a warning, a counter and a technical alarm.

    Review finding 15: a broker restarted without persistence (or with its file lost, or
    past persistent_client_expiration) had dropped everything queued for alertgw, and
    alertgw just logged mqtt_connected. A broker that kept the session is not an alarm.
    """
    b = session_broker(tmp_path, persistence=persistence)
    try:
        config = make_config(b.port, tmp_path, client_id=unique("gw"))
        with capture_logs() as logs:
            async with running(config) as r:
                gw = r.gateway
                link = gw.link
                assert link is not None
                b.restart()
                await asyncio.sleep(0.5)
                await asyncio.wait_for(link.wait_connected(), 10)
                alarmed = await until(
                    lambda: any(a.kind == "broker_dropping" for a in gw.engine.active), 1.0
                )
                lost = gw.metrics.sessions_lost._value.get()
    finally:
        b.stop()
    warned = [e for e in logs if e["event"] == "mqtt_session_lost"]
    assert [e["log_level"] for e in warned] == ([] if persistence else ["warning"])
    assert (lost, alarmed) == ((0, False) if persistence else (1, True))


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_redelivered_handset_answer_keeps_its_packet_id(
    broker: Broker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, protocol: str
) -> None:
    """Mosquitto resends an unacknowledged answer with DUP and its packet id: same answer id.

    That is what lets the gateway know a reject it journaled before a crash when the
    broker sends it again (tests/integration/test_restart_and_reload.py).
    """
    from gateway.app import Gateway, response_id  # noqa: PLC0415 - under test here
    from gateway.ports import Item, RawResponse  # noqa: PLC0415

    seen: list[RawResponse] = []
    put = Gateway.put

    def first_copy_lost(self: Gateway, item: Item | None) -> None:
        if isinstance(item, RawResponse):
            seen.append(item)
            if len(seen) == 1:
                return  # as if the daemon died before the commit: never acknowledged
        put(self, item)

    monkeypatch.setattr(Gateway, "put", first_copy_lost)
    prefix = unique("t")
    config = make_config(broker.port, tmp_path, prefix=prefix, protocol=protocol)
    async with running(config) as r, peer(broker.port, prefix) as p:
        link = r.gateway.link
        assert link is not None
        assert link._paho is not None
        await p.z2m("rom103/snor", {"action": "single"})
        _, ring = await p.next()
        await p.respond("night1", ring["alert_id"], "accept")
        assert await until(lambda: len(seen) == 1, 3)
        link._paho.disconnect()
        await asyncio.sleep(0.3)
        await asyncio.wait_for(link.wait_connected(), 10)
        assert await until(lambda: len(seen) == 2, 5)
        _, update = await p.next()
    first, again = seen
    assert (first.dup, again.dup) == (False, True)
    assert first.packet_id == again.packet_id != 0
    assert response_id(first) == response_id(again)
    assert (update["type"], update["accepted_by"]) == ("update", "night1")


async def test_a_lost_connection_leaves_no_unread_error_behind(
    broker: Broker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection lost while subscribing leaves no "Future exception was never retrieved".

    aiomqtt keeps a lost connection's error in a future that only its message iterator
    reads; lost before that (here: during the SUBACK wait of a start-up), nothing reads
    it, and asyncio prints it like a crash when the client is collected.
    """
    import gc  # noqa: PLC0415

    import aiomqtt  # noqa: PLC0415

    subscribe = aiomqtt.Client.subscribe
    lost: list[aiomqtt.Client] = []

    async def lost_while_subscribing(self: aiomqtt.Client, *args: object, **kw: object) -> object:
        if not lost:
            lost.append(self)
            # What paho's on_disconnect makes aiomqtt do when the socket dies here.
            self._disconnected.set_exception(aiomqtt.MqttCodeError(7, "Unexpected disconnection"))
            raise aiomqtt.MqttError("connection lost while subscribing")
        return await subscribe(self, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(aiomqtt.Client, "subscribe", lost_while_subscribing)
    loop = asyncio.get_running_loop()
    reports: list[str] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, ctx: reports.append(str(ctx.get("message"))))
    try:
        async with running(make_config(broker.port, tmp_path)) as r:
            assert r.gateway.link is not None
            assert lost  # the first session failed; this one is up
            lost.clear()
            gc.collect()
            await asyncio.sleep(0.05)
    finally:
        loop.set_exception_handler(previous)
    assert not [m for m in reports if "never retrieved" in m]


@pytest.mark.parametrize("persistence", [False, True], ids=["volatile", "persistent"])
async def test_a_restart_onto_a_broker_that_lost_the_session_is_loud(
    tmp_path: Path, persistence: bool
) -> None:
    """A daemon that had a session finds it gone at its start: as loud as on a reconnect.

    The journal remembers that this client id had a session on this broker. Without it
    every start took session_present=0 for a first start: a broker that lost the session
    while alertgw was stopped (restarted without persistence, mosquitto.db lost, past
    persistent_client_expiration) had dropped everything queued meanwhile, silently.
    """
    b = session_broker(tmp_path, persistence=persistence)
    try:
        config = make_config(b.port, tmp_path, client_id=unique("gw"))
        with capture_logs() as first:
            async with running(config) as r:
                gw = r.gateway
                assert gw.link is not None
                key = f"mqtt_session:{gw.link.session_key}"
                async with asyncio.timeout(10):  # journaled once the session is up
                    while key not in await gw.journal.levels():
                        await asyncio.sleep(0.05)
        b.restart()
        with capture_logs() as logs:
            async with running(config) as r:
                gw = r.gateway
                alarmed = await until(
                    lambda: any(a.kind == "broker_dropping" for a in gw.engine.active), 3.0
                )
                lost = gw.metrics.sessions_lost._value.get()
    finally:
        b.stop()
    assert not [e for e in first if e["event"] == "mqtt_session_lost"]  # a first start
    warned = [e for e in logs if e["event"] == "mqtt_session_lost"]
    assert [e["log_level"] for e in warned] == ([] if persistence else ["warning"])
    assert (lost, alarmed) == ((0, False) if persistence else (1, True))


def first_ack_lost_and_late_copies(monkeypatch: pytest.MonkeyPatch, late: float) -> list[object]:
    """Patch Gateway.put: the first sensor message's PUBACK is lost (as with its
    connection); every broker redelivery (DUP) arrives `late` seconds later than now."""
    from gateway.app import Gateway  # noqa: PLC0415 - under test here
    from gateway.ports import Inbound, Item  # noqa: PLC0415

    seen: list[object] = []
    put = Gateway.put

    def patched(self: Gateway, item: Item | None) -> None:
        if isinstance(item, Inbound) and item.redeliverable:
            seen.append(item)
            if len(seen) == 1:
                item = dataclasses.replace(item, ack=lambda: None)
            elif item.dup:
                item = dataclasses.replace(item, received_at=item.received_at + late)
        put(self, item)

    monkeypatch.setattr(Gateway, "put", patched)
    return seen


@pytest.mark.parametrize("where", ["reconnect", "restart"])
async def test_a_redelivery_after_an_outage_of_hours_is_still_a_duplicate(
    broker: Broker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """A press journaled but never acknowledged comes back (DUP) hours later: no new ring.

    The duplicate lookup went back an hour from the redelivery, so after a broker out of
    reach for longer (or a daemon down for longer) a press the nurse had long resolved
    rang again as a new alert. The first copy came before the connection it arrived on
    ended, and the lookup now counts back from then.
    """
    seen = first_ack_lost_and_late_copies(monkeypatch, late=2 * 3600)
    prefix = unique("t")
    config = make_config(broker.port, tmp_path, prefix=prefix, client_id=unique("gw"))
    async with peer(broker.port, prefix) as p:
        async with running(config) as r:
            await p.z2m("rom103/snor", {"action": "single"})
            _, ring = await p.next()
            await p.respond("night1", ring["alert_id"], "resolve")
            _, cancel = await p.next()
            assert cancel["type"] == "cancel"
            gw = r.gateway
            assert await until(lambda: gw._journal_idle.is_set() and not gw._pending.signals, 5)
            if where == "reconnect":
                link = gw.link
                assert link is not None
                assert link._paho is not None
                link._paho.disconnect()
                await asyncio.sleep(0.3)
                await asyncio.wait_for(link.wait_connected(), 10)
                assert await until(lambda: len(seen) == 2, 5)
                assert await p.nothing(1.0)
                dups = gw.metrics.duplicates.labels("zigbee")._value.get()
        if where == "restart":
            async with running(config) as r:
                assert await until(lambda: len(seen) == 2, 5)
                assert await p.nothing(1.0)
                dups = r.gateway.metrics.duplicates.labels("zigbee")._value.get()
    assert [getattr(s, "dup", None) for s in seen] == [False, True]
    assert dups == 1
