"""Routing rules through a real Mosquitto: hold-off, presence, escalation, hot reload."""

from __future__ import annotations

import asyncio
import datetime as dt
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from gateway.config import load_config
from gateway.journal import Journal
from tests.conftest import Broker, running, unique
from tests.integration.helpers import Peer, latest_alert, peer

RULES_YAML = """
site: {{timezone: Europe/Oslo}}
mqtt: {{port: {port}, client_id: {client_id}, status_topic: {prefix}/status,
        backoff_initial: 0.05, backoff_max: 0.5}}
sources:
  zigbee: {{type: mqtt, decoder: zigbee2mqtt, topics: ["{prefix}/z2m/#"], base_topic: {prefix}/z2m}}
zones:
  ost: {{rooms: ["101", "102"]}}
devices:
  bed-101: {{room: "101", kind: bed_exit, name: rom101/seng, tags: [fall_risk]}}
  cord-102: {{room: "102", kind: pull_cord, name: rom102/snor}}
  pres-102: {{room: "102", kind: presence, name: rom102/tilstede}}
handsets:
  n1: {{address: {prefix}/handset/n1}}
  n2: {{address: {prefix}/handset/n2}}
  vakt: {{address: {prefix}/handset/vakt}}
schedules:
  always: {{start: "00:00", end: "00:00"}}
roster:
  shifts: [{{schedule: always, assign: {{ost: [n1, n2]}}}}]
  failsafe: [vakt]
escalation:
  default:
    steps: [{{to: primary, after: 60}}, {{to: zone, after: 60}}, {{to: failsafe, after: 60}}]
rules:
  - {{name: bed-hold, match: {{kinds: [bed_exit]}}, hold_off: {hold_off}}}
journal: {{path: {db}}}
metrics: {{enabled: false}}
"""


class FakeClock:
    """Wall time the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1_790_000_000.0

    def __call__(self) -> float:
        return self.now


def write_config(tmp_path: Path, port: int, *, hold_off: int = 45) -> Path:
    """Write the rules config to a file (hot reload re-reads it)."""
    path = tmp_path / "rules.yaml"
    path.write_text(
        RULES_YAML.format(
            port=port,
            client_id=unique("gw"),
            prefix=unique("r"),
            db=tmp_path / "j.db",
            hold_off=hold_off,
        )
    )
    return path


def prefix_of(path: Path) -> str:
    """The topic prefix a written config uses."""
    cfg = load_config(path)
    return cfg.mqtt.status_topic.rsplit("/", 1)[0] if cfg.mqtt else ""


async def advance(clock: FakeClock, seconds: float, kick: Callable[[], None]) -> None:
    """Move the fake clock and let the router fire due timers."""
    clock.now += seconds
    kick()
    await asyncio.sleep(0.05)


async def seed(p: Peer) -> None:
    """Give the level sensors their baseline."""
    await p.z2m("rom101/seng", {"occupancy": False})


async def test_hold_off_auto_cancel_and_ring(broker: Broker, tmp_path: Path) -> None:
    """Through MQTT: a bed exit cleared inside the hold-off never rings; one that stays does."""
    path = write_config(tmp_path, broker.port)
    clock = FakeClock()
    async with (
        running(load_config(path), clock=clock) as r,
        peer(broker.port, prefix_of(path)) as p,
    ):
        await seed(p)
        await p.z2m("rom101/seng", {"occupancy": True})
        await asyncio.sleep(0.1)
        await advance(clock, 30, r.gateway.kick)
        await p.z2m("rom101/seng", {"occupancy": False})
        await asyncio.sleep(0.1)
        await advance(clock, 60, r.gateway.kick)
        assert await p.nothing(0.3)
        await p.z2m("rom101/seng", {"occupancy": True})
        await asyncio.sleep(0.1)
        await advance(clock, 46, r.gateway.kick)
        handset, msg = await p.next()
        assert (handset, msg["type"], msg["kind"]) == ("n1", "ring", "bed_exit")


async def test_a_bed_exit_suppressed_by_day_rings_once_the_night_starts(
    broker: Broker, tmp_path: Path
) -> None:
    """Through MQTT: out of bed at 21:55 (day rule: suppress), no new message; rings at 22:00:45."""
    path = write_config(tmp_path, broker.port)
    night_and_day = (
        'schedules:\n  night: {start: "22:00", end: "07:00"}\n'
        '  day: {start: "07:00", end: "22:00"}\n'
        "roster:\n  shifts: [{schedule: night, assign: {ost: [n1]}},"
        " {schedule: day, assign: {ost: [n2]}}]\n"
        "  failsafe: [vakt]\n"
        "rules:\n"
        "  - {name: bed-night, match: {kinds: [bed_exit], schedule: night}, hold_off: 45}\n"
        "  - {name: bed-day, match: {kinds: [bed_exit], schedule: day}, action: suppress}\n"
    )
    text = path.read_text()
    path.write_text(
        text[: text.index("schedules:")] + night_and_day + text[text.index("journal:") :]
    )
    clock = FakeClock()
    clock.now = dt.datetime(2026, 11, 24, 21, 55, tzinfo=ZoneInfo("Europe/Oslo")).timestamp()
    async with (
        running(load_config(path), clock=clock) as r,
        peer(broker.port, prefix_of(path)) as p,
    ):
        await seed(p)
        await p.z2m("rom101/seng", {"occupancy": True})
        await asyncio.sleep(0.1)
        await advance(clock, 5 * 60, r.gateway.kick)  # 22:00, the router wakes for the night
        await advance(clock, 44, r.gateway.kick)
        assert await p.nothing(0.3)
        await advance(clock, 1, r.gateway.kick)  # 22:00:45: the night rule's hold-off is over
        handset, msg = await p.next()
        assert (handset, msg["type"], msg["kind"]) == ("n1", "ring", "bed_exit")


async def test_presence_resolves_a_call_and_a_call_during_it_asks_for_assistance(
    broker: Broker, tmp_path: Path
) -> None:
    """Through MQTT: presence resolves a ringing cord; a cord pulled during it is assistance.

    The cord the nurse pulls rings everyone on duty and the failsafe at once (this ladder
    has no all-on-duty step), as an assistance call; presence reset ends it.
    """
    path = write_config(tmp_path, broker.port)
    async with running(load_config(path)) as r, peer(broker.port, prefix_of(path)) as p:
        await seed(p)
        await p.z2m("rom102/tilstede", {"occupancy": False})
        await p.z2m("rom102/snor", {"action": "single"})
        _, ring = await p.next()
        await p.z2m("rom102/tilstede", {"occupancy": True})
        _, cancel = await p.next()
        assert (cancel["type"], cancel["alert_id"], cancel["state"]) == (
            "cancel",
            ring["alert_id"],
            "resolved",
        )
        await p.z2m("rom102/snor", {"action": "single"})
        rings = {}
        for _ in range(3):
            handset, msg = await p.next()
            rings[handset] = (msg["type"], msg["text"], msg["priority"])
        assert rings == dict.fromkeys(["n1", "n2", "vakt"], ("ring", "ASSISTANCE room 102", "high"))
        assert await p.nothing(0.3)
        assert r.gateway.metrics.alert_count("pull_cord", "assistance")._value.get() == 1
        # The staff reset presence as they leave: the help is over, every handset is told.
        await p.z2m("rom102/tilstede", {"occupancy": False})
        ended = {}
        for _ in range(3):
            handset, msg = await p.next()
            ended[handset] = (msg["type"], msg["state"])
        assert ended == dict.fromkeys(["n1", "n2", "vakt"], ("cancel", "resolved"))


async def test_escalation_on_timeout_and_on_reject(broker: Broker, tmp_path: Path) -> None:
    """Through MQTT: no accept in 60 s rings the next step; a reject moves on at once."""
    path = write_config(tmp_path, broker.port)
    clock = FakeClock()
    async with (
        running(load_config(path), clock=clock) as r,
        peer(broker.port, prefix_of(path)) as p,
    ):
        await p.z2m("rom102/snor", {"action": "single"})
        handset, first = await p.next()
        assert handset == "n1"
        await advance(clock, 61, r.gateway.kick)
        handset, second = await p.next()
        assert (handset, second["alert_id"], second["step"]) == ("n2", first["alert_id"], 1)
        await p.respond("n2", first["alert_id"], "reject")
        handset, third = await p.next()
        assert (handset, third["type"]) == ("vakt", "ring")
        await p.respond("vakt", first["alert_id"], "accept")
        updates = {(await p.next())[0] for _ in range(3)}
        assert updates == {"n1", "n2", "vakt"}


async def test_hot_reload_keeps_active_alerts_and_rejects_bad_config(
    broker: Broker, tmp_path: Path
) -> None:
    """SIGHUP swaps rules atomically, keeps a held alert's timer and refuses a broken file."""
    path = write_config(tmp_path, broker.port, hold_off=45)
    clock = FakeClock()
    async with (
        running(load_config(path), clock=clock) as r,
        peer(broker.port, prefix_of(path)) as p,
    ):
        gw = r.gateway
        await seed(p)
        await p.z2m("rom101/seng", {"occupancy": True})  # held for 45 s under the old rules
        await asyncio.sleep(0.1)
        path.write_text(path.read_text().replace("hold_off: 45", "hold_off: 600"))
        signal.raise_signal(signal.SIGHUP)
        for _ in range(50):
            if gw.metrics.config_reloads.labels("ok")._value.get():
                break
            await asyncio.sleep(0.02)
        assert gw.config.rules[0].hold_off == 600
        await advance(clock, 46, gw.kick)
        handset, msg = await p.next()  # the held alert kept its old deadline
        assert (handset, msg["kind"]) == ("n1", "bed_exit")
        path.write_text(path.read_text().replace("hold_off: 600", "hold_of: 5"))
        assert gw.reload() is False
        assert gw.metrics.config_reloads.labels("failed")._value.get() == 1
        assert gw.config.rules[0].hold_off == 600
        # A file saved as Latin-1 is refused the same way (it had escaped the handler).
        good = path.read_text().replace("hold_of: 5", "hold_off: 600")
        path.write_bytes(good.encode() + "# Jevnaker, Bærum\n".encode("latin-1"))
        assert gw.reload() is False
        assert gw.metrics.config_reloads.labels("failed")._value.get() == 2
        assert gw.config.rules[0].hold_off == 600


async def test_alertgw_reload_command_signals_the_running_daemon(
    broker: Broker, tmp_path: Path
) -> None:
    """`alertgw reload CONFIG` validates the file and makes the running daemon reload it."""
    from gateway.cli import main  # noqa: PLC0415 - the CLI under test

    path = write_config(tmp_path, broker.port)
    async with running(load_config(path)) as r:
        path.write_text(path.read_text().replace("hold_off: 45", "hold_off: 90"))
        # In a thread: the command waits for the answer the daemon's loop here writes.
        assert await asyncio.to_thread(main, ["reload", str(path)]) == 0
        assert r.gateway.metrics.config_reloads.labels("ok")._value.get() == 1
        assert r.gateway.config.rules[0].hold_off == 90
    assert main(["reload", str(path)]) == 1  # stopped: its pid file is gone


async def test_a_seizure_alarm_latches_until_a_handset_accepts_it(
    broker: Broker, tmp_path: Path
) -> None:
    """Through MQTT: the epilepsy sensor clears first, the alarm still escalates; accept ends it."""
    path = write_config(tmp_path, broker.port)
    path.write_text(
        path.read_text().replace(
            "  pres-102:", '  epi-101: {room: "101", kind: epilepsy, name: rom101/epi}\n  pres-102:'
        )
    )
    clock = FakeClock()
    config = load_config(path)
    async with (
        running(config, clock=clock) as r,
        peer(broker.port, prefix_of(path)) as p,
    ):
        await p.z2m("rom101/epi", {"epilepsy": False})
        await p.z2m("rom101/epi", {"epilepsy": True})
        rung = {(await p.next())[0] for _ in range(2)}  # critical: the whole team at once
        assert rung == {"n1", "n2"}
        await p.z2m("rom101/epi", {"epilepsy": False})  # the seizure stops after a minute
        assert await p.nothing(0.4)  # no cancel: nobody has come yet
        await advance(clock, 61, r.gateway.kick)
        handset, again = await p.next()
        assert (handset, again["type"], again["condition_cleared"]) == ("vakt", "ring", True)
        await p.respond("n2", again["alert_id"], "accept")
        closing = [await p.next() for _ in range(6)]  # an update, then a cancel, to each
        assert {h for h, m in closing if m["type"] == "cancel"} == {"n1", "n2", "vakt"}
    stored = await latest_alert(config.journal.path)
    assert stored.alert.state.value == "cleared"
    events = [e[1] for e in stored.events]
    assert events[-2:] == ["accepted", "cleared"]
    assert "condition_cleared" in events
    assert "cancelled" not in events


async def test_a_restless_resident_rings_on_the_third_short_exit_across_a_restart(
    broker: Broker, tmp_path: Path
) -> None:
    """Through MQTT and the journal: two short exits, a restart, the third rings at once."""
    path = write_config(tmp_path, broker.port, hold_off=1200)
    path.write_text(
        path.read_text().replace(
            "hold_off: 1200}",
            "hold_off: 1200,\n     repeat: {count: 3, within: 1800, text: 'Uro {room}: {count}x'}}",
        )
    )
    clock = FakeClock()
    config = load_config(path)

    async def short_exit(p: Peer, kick: Callable[[], None]) -> None:
        await p.z2m("rom101/seng", {"occupancy": True})
        await asyncio.sleep(0.1)
        await advance(clock, 120, kick)
        await p.z2m("rom101/seng", {"occupancy": False})
        await asyncio.sleep(0.1)
        await advance(clock, 300, kick)

    async with running(config, clock=clock) as r, peer(broker.port, prefix_of(path)) as p:
        await seed(p)
        await short_exit(p, r.gateway.kick)
        await short_exit(p, r.gateway.kick)
        assert await p.nothing(0.3)
    async with running(config, clock=clock) as r, peer(broker.port, prefix_of(path)) as p:
        await p.z2m("rom101/seng", {"occupancy": True})
        handset, msg = await p.next()
        assert (handset, msg["type"], msg["text"], msg["count"]) == ("n1", "ring", "Uro 101: 3x", 3)
        await p.z2m("rom101/seng", {"occupancy": False})  # back in bed: still ringing
        assert await p.nothing(0.4)
        await p.respond("n1", msg["alert_id"], "accept")
        assert {(await p.next())[1]["type"] for _ in range(2)} == {"update", "cancel"}
    stored = await latest_alert(config.journal.path)
    events = [e[1] for e in stored.events]
    assert events[:3] == ["raised", "hold_off_skipped", "ringing"]
    assert events[-1] == "cleared"
    assert "condition_cleared" in events


def with_technician(path: Path, sections: str) -> Path:
    """Add a technician's handset `tech` and top-level `sections` to a written config."""
    tech = f"  tech: {{address: {prefix_of(path)}/handset/tech}}\n"
    text = path.read_text().replace("  vakt: {address:", tech + "  vakt: {address:")
    path.write_text(text.replace("journal:", sections + "journal:"))
    return path


SUPERVISED = (
    "technical: {handsets: [tech], digest: false}\nsupervision: {kinds: {bed_exit: 3600}}\n"
)


@pytest.mark.parametrize("replaced", [False, True], ids=["still_low", "replaced"])
async def test_a_restart_before_the_morning_digest_keeps_its_items(
    broker: Broker, tmp_path: Path, replaced: bool
) -> None:
    """Through MQTT and the journal: a battery low (replaced before the restart, or not),
    a restart: the 07:30 digest still lists it, once."""
    path = with_technician(
        write_config(tmp_path, broker.port),
        'technical: {handsets: [tech], digest: true, digest_at: "07:30"}\n',
    )
    clock = FakeClock()  # 16:13 local time
    config = load_config(path)
    async with running(config, clock=clock) as r, peer(broker.port, prefix_of(path)) as p:
        await p.z2m("rom101/seng", {"occupancy": False, "battery_low": False})
        await p.z2m("rom101/seng", {"occupancy": False, "battery_low": True})
        await asyncio.sleep(0.2)
        await advance(clock, 60, r.gateway.kick)
        if replaced:
            await p.z2m("rom101/seng", {"occupancy": False, "battery_low": False})
            await asyncio.sleep(0.2)
        assert await p.nothing(0.3)  # technical: nobody is rung at night for a battery
    stored = await latest_alert(config.journal.path)
    assert (stored.alert.kind, stored.alert.state) == (
        "battery_low",
        "cleared" if replaced else "active",
    )
    async with running(config, clock=clock) as r, peer(broker.port, prefix_of(path)) as p:
        await advance(clock, 16 * 3600, r.gateway.kick)  # past 07:30 the next morning
        handset, digest = await p.next()
        assert (handset, digest["type"], digest["items"]) == (
            "tech",
            "digest",
            ["Battery low bed-101"],
        )
    async with running(config, clock=clock) as r, peer(broker.port, prefix_of(path)) as p:
        await advance(clock, 24 * 3600, r.gateway.kick)
        assert await p.nothing(0.4)  # sent once: the journal marked it, open or finished


async def test_a_silent_sensor_alarm_ends_when_it_reports_after_a_restart(
    broker: Broker, tmp_path: Path
) -> None:
    """Through MQTT and the journal: silent, a restart, then a report cancels the alarm."""
    path = with_technician(write_config(tmp_path, broker.port), SUPERVISED)
    clock = FakeClock()
    config = load_config(path)
    async with running(config, clock=clock) as r, peer(broker.port, prefix_of(path)) as p:
        await advance(clock, 4000, r.gateway.kick)
        handset, ring = await p.next()
        assert (handset, ring["type"], ring["kind"]) == ("tech", "ring", "device_silent")
    async with running(config, clock=clock) as r, peer(broker.port, prefix_of(path)) as p:
        await advance(clock, 7200, r.gateway.kick)
        assert await p.nothing(0.3)  # still silent: not raised a second time
        await p.z2m("rom101/seng", {"occupancy": False})
        handset, cancel = await p.next()
        assert (handset, cancel["type"], cancel["alert_id"]) == ("tech", "cancel", ring["alert_id"])


async def test_a_restart_does_not_restart_the_supervision_interval(
    broker: Broker, tmp_path: Path
) -> None:
    """Through the journal: unheard 50 of 60 minutes, down 2 hours, flagged 10 min after."""
    path = with_technician(write_config(tmp_path, broker.port), SUPERVISED)
    clock = FakeClock()
    config = load_config(path)
    async with running(config, clock=clock) as r, peer(broker.port, prefix_of(path)) as p:
        await advance(clock, 3000, r.gateway.kick)
        assert await p.nothing(0.2)
    clock.now += 7200  # down for two hours
    async with running(config, clock=clock) as r, peer(broker.port, prefix_of(path)) as p:
        await advance(clock, 590, r.gateway.kick)
        assert await p.nothing(0.3)
        await advance(clock, 30, r.gateway.kick)
        handset, ring = await p.next()
        assert (handset, ring["type"], ring["kind"]) == ("tech", "ring", "device_silent")


# A handset app: keeps a retained "online" with "offline" as its last will, then waits to
# be killed (a phone that goes flat sends no DISCONNECT either).
HANDSET_APP = """
import sys, time
import paho.mqtt.client as mqtt
port, topic = int(sys.argv[1]), sys.argv[2]
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=sys.argv[3])
c.will_set(topic, "offline", qos=1, retain=True)
c.connect("127.0.0.1", port, keepalive=60)
c.loop_start()
c.publish(topic, "online", qos=1, retain=True).wait_for_publish(5)
print("up", flush=True)
time.sleep(600)
"""


async def test_a_handset_app_that_dies_fails_its_rings_over_and_rings_the_failsafe(
    broker: Broker, tmp_path: Path
) -> None:
    """A real app process killed: its will says offline; calls skip it; back online clears.

    The handset_offline alarm waits for the handset's 30 s grace (an app reconnecting).
    """
    path = write_config(tmp_path, broker.port)
    prefix = prefix_of(path)
    path.write_text(
        path.read_text().replace(
            f"n1: {{address: {prefix}/handset/n1}}",
            f"n1: {{address: {prefix}/handset/n1, reports_status: true}}",
        )
    )
    status = f"{prefix}/handset/n1/status"
    app = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        HANDSET_APP,
        str(broker.port),
        status,
        unique("app"),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert app.stdout is not None
        assert await asyncio.wait_for(app.stdout.readline(), 10) == b"up\n"
        clock = FakeClock()
        config = load_config(path)
        async with running(config, clock=clock) as r, peer(broker.port, prefix) as p:
            await asyncio.sleep(0.3)
            assert await p.nothing(0.2)  # online: nothing to say
            app.kill()
            await app.wait()
            sample = r.gateway.metrics.registry.get_sample_value
            for _ in range(100):
                if sample("alertgw_handset_online", {"handset": "n1"}) == 0:
                    break
                await asyncio.sleep(0.05)
            assert sample("alertgw_handset_online", {"handset": "n1"}) == 0
            assert await p.nothing(0.2)  # within its 30 s offline_grace: no alarm yet
            await advance(clock, 30, r.gateway.kick)
            told = {(await p.next())[0] for _ in range(2)}
            assert told == {"n2", "vakt"}  # the other on duty and the failsafe group
            await p.z2m("rom102/snor", {"action": "single"})
            rung = [await p.next() for _ in range(2)]
            # n1 still gets it (the broker keeps it for the app); n2 at once, not after 60 s.
            assert [(h, m["type"], m["kind"]) for h, m in rung] == [
                ("n1", "ring", "pull_cord"),
                ("n2", "ring", "pull_cord"),
            ]
            await p.client.publish(status, b"maybe", qos=1)  # neither: counted, no change
            await asyncio.sleep(0.2)
            rejected = {"source": "handsets", "reason": "bad_status"}
            assert sample("alertgw_input_rejected_total", rejected) == 1
            await p.client.publish(status, b"", qos=1, retain=True)  # cleared by hand
            cancels = {(await p.next())[0] for _ in range(2)}
            assert cancels == {"n2", "vakt"}
        journal = Journal(config.journal.path)
        await journal.open()
        try:
            (call,) = [a for a in await journal.recent_alerts(5) if a.alert.kind == "pull_cord"]
        finally:
            await journal.close()
        assert ("delivery_failed", "n1 (handset offline)") in [(e, d) for _, e, d in call.events]
    finally:
        if app.returncode is None:
            app.kill()
            await app.wait()


async def test_an_alert_open_at_the_shift_change_is_handed_to_the_day_shift(
    broker: Broker, tmp_path: Path
) -> None:
    """Through MQTT: n1 takes a call at 06:55; at 07:00 n2, on days, is rung.

    n1 is told the alert is open again, and the journal's timeline says why.
    """
    path = write_config(tmp_path, broker.port)
    shifts = (
        'schedules:\n  night: {start: "22:00", end: "07:00"}\n'
        '  day: {start: "07:00", end: "22:00"}\n'
        "roster:\n  shifts: [{schedule: night, assign: {ost: [n1]}},"
        " {schedule: day, assign: {ost: [n2]}}]\n"
        "  failsafe: [vakt]\n"
    )
    text = path.read_text()
    path.write_text(text[: text.index("schedules:")] + shifts + text[text.index("escalation:") :])
    clock = FakeClock()
    clock.now = dt.datetime(2026, 11, 25, 6, 55, tzinfo=ZoneInfo("Europe/Oslo")).timestamp()
    config = load_config(path)
    async with (
        running(config, clock=clock) as r,
        peer(broker.port, prefix_of(path)) as p,
    ):
        await p.z2m("rom102/snor", {"action": "single"})
        handset, ring = await p.next()
        assert (handset, ring["type"]) == ("n1", "ring")
        await p.respond("n1", ring["alert_id"], "accept")
        handset, accepted = await p.next()
        assert (handset, accepted["type"], accepted["accepted_by"]) == ("n1", "update", "n1")
        await advance(clock, 299, r.gateway.kick)
        assert await p.nothing(0.3)
        await advance(clock, 1, r.gateway.kick)  # 07:00: n1 went home
        got = dict([await p.next(), await p.next()])
        assert (got["n2"]["type"], got["n2"]["alert_id"]) == ("ring", ring["alert_id"])
        assert (got["n1"]["type"], got["n1"]["state"]) == ("update", "active")
        assert "accepted_by" not in got["n1"]
        escalations = r.gateway.metrics.escalations.labels("pull_cord", "shift_change")
        assert escalations._value.get() == 1
    journal = Journal(config.journal.path)
    await journal.open()
    try:
        (call,) = await journal.recent_alerts(5)
    finally:
        await journal.close()
    assert ("reopened", "handed over: n1 off duty") in [(e, d) for _, e, d in call.events]
