"""End to end: a nurse call over ESPA reaches an MQTT handset; a sensor alert pages a DECT."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from gateway.app import Gateway
from gateway.config import Config, parse_config
from gateway.model import Delivery, Signal
from tests.conftest import Broker, free_port, running, unique
from tests.integration.espa_peer import ACK, EOT, NAK, Dect, NurseCall, PtyPeer, Tok, frame
from tests.integration.helpers import latest_alert, peer

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


async def status_of(nurse: NurseCall, address: bytes) -> bytes:
    """Ask the gateway for a call's status (header 3); its record 7 once polled."""
    assert [r.kind for r in await nurse.call([("1", address)], header="3")] == ["ack", "ack"]
    status = await nurse.poll()
    assert status is not None
    assert status.header == "2"
    assert status.records["1"] == address
    return status.records["7"]


async def test_a_call_still_open_after_a_restart_is_reported_paged(
    broker: Broker, tmp_path: Path
) -> None:
    """A status request after a restart: the journal's open call is paged, not terminated.

    "Terminated" would tell the nurse-call system that nobody handles the call.
    """
    prefix = unique("t")
    async with lines() as (ward, dect_port, _):
        config = espa_config(broker.port, tmp_path, prefix, ward.path, dect_port.path)
        nurse = NurseCall(ward)
        async with running(config), peer(broker.port, prefix) as p:
            await until_polled(nurse)
            call = [("1", b"101"), ("2", b"Rom 101"), ("4", b"3"), ("6", b"2")]
            assert [r.kind for r in await nurse.call(call)] == ["ack", "ack"]
            assert (await p.next())[1]["type"] == "ring"
        async with running(config):
            await until_polled(nurse)
            assert await status_of(nurse, b"101") == b"3"  # paged: alertgw routes it
            assert await status_of(nurse, b"102") == b"5"  # never called: terminated


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
    stored = await latest_alert(config.journal.path)
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


# --- a DECT line through the whole gateway, MQTT broker absent ---------------------------------

DECT_ONLY_YAML = """
site: {{name: Test unit, timezone: Europe/Oslo}}
mqtt: {{host: 127.0.0.1, port: {port}, client_id: dect, backoff_initial: 0.05, backoff_max: 0.5}}
sources:
  nurse: {{type: espa, decoder: espa, link: ward}}
espa:
  ward: {{port: "{ward}", role: station, local_address: "2", remote_address: "1", {link}}}
  dect: {{port: "{dect}", role: control_station, local_address: "1", remote_address: "2", {link}}}
zones:
  east: {{rooms: ["101", "102"]}}
devices:
  call-101: {{room: "101", kind: pull_cord, name: "101", source: nurse}}
  call-102: {{room: "102", kind: pull_cord, name: "102", source: nurse}}
handsets:
  dect21: {{channel: espa, link: dect, address: "21"}}
  dect22: {{channel: espa, link: dect, address: "22"}}
  dect23: {{channel: espa, link: dect, address: "23"}}
routing:
  - {{kinds: [pull_cord], handsets: [{primary}]}}
escalation:
  default:
    steps:
      - {{to: {first_step}, after: 600}}
      - {{to: failsafe, after: 600}}
roster: {{failsafe: [dect22]}}
technical: {{handsets: [dect22], digest: false}}
journal: {{path: "{db}", commit_delay: {commit_delay}}}
metrics: {{enabled: false}}
"""


@contextlib.asynccontextmanager
async def dect_gateway(
    tmp_path: Path,
    dect_factory: Callable[[PtyPeer], Dect],
    *,
    link: str = LINK,
    commit_delay: float = 0.01,
    primary: str = "dect21",
    first_step: str = "primary",
) -> AsyncIterator[tuple[Gateway, NurseCall, Dect]]:
    """A gateway between a nurse-call pty and a simulated DECT; the MQTT broker is absent."""
    ward, dect_port = PtyPeer(), PtyPeer()
    dect = dect_factory(dect_port)
    sim = asyncio.create_task(dect.run(), name="test.dect")
    text = DECT_ONLY_YAML.format(
        port=free_port(),
        ward=ward.path,
        dect=dect_port.path,
        link=link,
        db=tmp_path / "j.db",
        commit_delay=commit_delay,
        primary=primary,
        first_step=first_step,
    )
    gw = Gateway(parse_config(text, filename="test.yaml"), serve_metrics=False, drain_timeout=1.0)
    stop = asyncio.Event()
    task = asyncio.create_task(gw.run(stop.wait))
    try:
        await asyncio.wait_for(gw.ready.wait(), 10)
        nurse = NurseCall(ward)
        await until_polled(nurse)
        yield gw, nurse, dect
    finally:
        stop.set()
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(task, 10)
        sim.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sim
        ward.close()
        dect_port.close()


def nurse_call(room: str, call_type: str = "3") -> list[tuple[str, bytes]]:
    """A nurse-call block for call point `room` ('3' standard call, '1' reset)."""
    return [("1", room.encode()), ("2", f"Rom {room}".encode()), ("4", call_type.encode())]


# The held ACK's fallback is half the reply timeout: 2 s here, far beyond the test's looks.
PATIENT_LINK = LINK.replace("reply_timeout: 0.5", "reply_timeout: 4, recovery_timeout: 10")


async def test_a_nurse_call_is_acked_only_after_its_signal_is_journaled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The line ACKs a call after the commit that holds its signal, not on receipt.

    A call ACKed on receipt and lost in a crash before the commit was gone for good: the
    nurse-call system had its ACK and never sent it again.
    """
    async with dect_gateway(tmp_path, Dect, link=PATIENT_LINK) as (gw, nurse, _):
        commit = gw.journal.commit_batch
        committing = asyncio.Event()
        gate = asyncio.Event()

        async def gated_commit(
            signals: Sequence[Signal],
            *args: Any,  # noqa: ANN401 - passed through to Journal.commit_batch
            **kwargs: Any,  # noqa: ANN401
        ) -> list[Delivery]:
            if any(s.kind == "pull_cord" for s in signals):
                committing.set()
                await gate.wait()
            return await commit(signals, *args, **kwargs)

        monkeypatch.setattr(gw.journal, "commit_batch", gated_commit)
        ward = nurse.port
        with capture_logs() as logs:
            ward.write(b"\x31\x05\x32\x05")  # self-poll, select the gateway
            assert (await ward.next()).kind == "ack"
            ward.write(frame("1", nurse_call("101")))
            async with asyncio.timeout(5):
                await committing.wait()  # routed; its commit waits at the gate
            await asyncio.sleep(0.2)  # time for an ACK sent on receipt to cross the pty
            assert ward.tokens.empty(), "the call was ACKed before it was journaled"
            gate.set()
            assert (await ward.next()).kind == "ack"
            with sqlite3.connect(tmp_path / "j.db") as conn:
                rows = conn.execute("SELECT room FROM signals WHERE kind = 'pull_cord'")
                rooms = [row[0] for row in rows]
            assert rooms == ["101"]  # in the journal by the time the nurse-call system has the ACK
            ward.write(bytes([EOT]))
        assert not [e for e in logs if e["event"] == "espa_ack_released_unjournaled"]


async def test_a_nurse_call_is_committed_at_once_whatever_the_commit_delay(
    tmp_path: Path,
) -> None:
    """The nurse-call line waits for the ACK, so its call does not wait for commit_delay.

    With the longest gathering window (1 s) the held ACK went out only through the
    hold timeout, logged as unjournaled: every call was ACKed before its commit.
    """
    async with dect_gateway(tmp_path, Dect, commit_delay=1.0) as (
        gw,
        nurse,
        _,
    ):
        ward = nurse.port
        with capture_logs() as logs:
            ward.write(b"\x31\x05\x32\x05")  # self-poll, select the gateway
            assert (await ward.next()).kind == "ack"
            ward.write(frame("1", nurse_call("101")))
            assert (await ward.next()).kind == "ack"
            with sqlite3.connect(tmp_path / "j.db") as conn:
                rows = conn.execute("SELECT room FROM signals WHERE kind = 'pull_cord'")
                rooms = [row[0] for row in rows]
            assert rooms == ["101"]
            ward.write(bytes([EOT]))
        assert not [e for e in logs if e["event"] == "espa_ack_released_unjournaled"]
        assert gw.metrics.espa_calls_acked_unjournaled.labels("ward")._value.get() == 0


class ContentRejectingDect(Dect):
    """A DECT that answers '3' NAK (invalid message) to the call blocks `reject` picks."""

    def __init__(self, port: PtyPeer, reject: Callable[[Tok], bool]) -> None:
        super().__init__(port)
        self.reject = reject
        self.rejected = 0

    async def run(self) -> None:
        """Like Dect.run, with a content-based '3' NAK."""
        selected = other_polled = False
        while True:
            tok = await self.port.tokens.get()
            if tok.kind == "eot":
                selected = other_polled = False
            elif tok.kind == "enq" and tok.arg != self.own:
                other_polled = True
            elif tok.kind == "enq" and other_polled:
                other_polled = False
                selected = True
                self.port.write(bytes([ACK]))
            elif tok.kind == "enq":
                self.port.write(bytes([EOT]))
            elif tok.kind == "block" and selected:
                if self.reject(tok):
                    self.rejected += 1
                    self.port.write(b"3" + bytes([NAK]))
                else:
                    self.port.write(bytes([ACK]))
                    self.calls.put_nowait(tok)


async def test_a_rejected_page_fails_at_once_and_later_pages_still_go_out(tmp_path: Path) -> None:
    """A '3' NAK (invalid message) fails that page: the alert escalates now, the lane moves on.

    Resending bytes the DECT called invalid can never succeed; retrying them forever held
    every later page to that handset (room 102 here) and told the engine nothing.
    """

    def reject_101_on_21(tok: Tok) -> bool:
        return tok.records.get("1") == b"21" and b"101" in tok.records.get("2", b"")

    async with dect_gateway(tmp_path, lambda p: ContentRejectingDect(p, reject_101_on_21)) as (
        gw,
        nurse,
        dect,
    ):
        with capture_logs() as logs:
            assert [t.kind for t in await nurse.call(nurse_call("101"))] == ["ack", "ack"]
            failsafe = await next_call(dect)  # dect21 refused it: the failsafe at once
            assert failsafe.records["1"] == b"22"
            assert b"101" in failsafe.records["2"]
            assert [t.kind for t in await nurse.call(nurse_call("102"))] == ["ack", "ack"]
            page = await next_call(dect)
        assert page.records["1"] == b"21"
        assert b"102" in page.records["2"]
        assert isinstance(dect, ContentRejectingDect)
        assert dect.rejected == 1
        refused = [e for e in logs if e["event"] == "delivery_refused"]
        assert [(e["handset"], e["log_level"]) for e in refused] == [("dect21", "error")]
        failed = gw.metrics.deliveries.labels("dect21", "ring", "failed")._value.get()
        assert failed == 1


async def test_a_page_refused_to_one_of_two_handsets_stays_with_the_other(
    tmp_path: Path,
) -> None:
    """The first step pages the zone's dect21 and dect23; dect21 refuses it. dect23 has it
    ringing, so the alert waits for them instead of paging the failsafe (dect22) at once."""

    def reject_on_21(tok: Tok) -> bool:
        return tok.records.get("1") == b"21"

    async with dect_gateway(
        tmp_path,
        lambda p: ContentRejectingDect(p, reject_on_21),
        primary="dect21, dect23",
        first_step="zone",
    ) as (gw, nurse, dect):
        assert [t.kind for t in await nurse.call(nurse_call("101"))] == ["ack", "ack"]
        page = await next_call(dect)
        assert page.records["1"] == b"23"
        assert b"101" in page.records["2"]
        assert isinstance(dect, ContentRejectingDect)
        for _ in range(100):
            if dect.rejected:
                break
            await asyncio.sleep(0.02)
        assert dect.rejected == 1
        with pytest.raises(TimeoutError):  # no failsafe page
            await asyncio.wait_for(dect.calls.get(), 1.0)
        (alert,) = gw.engine.active
        assert alert.step == 0


async def test_a_page_refused_at_every_step_does_not_loop(tmp_path: Path) -> None:
    """A page every handset refuses moves its alert on once, not as fast as the line answers.

    At the last step the engine rings a failed handset again; without a hold, refusal,
    escalation and the next refusal would chase each other for as long as the alert lives.
    """

    def reject_101(tok: Tok) -> bool:
        return b"101" in tok.records.get("2", b"")

    async with dect_gateway(tmp_path, lambda p: ContentRejectingDect(p, reject_101)) as (
        _,
        nurse,
        dect,
    ):
        assert [t.kind for t in await nurse.call(nurse_call("101"))] == ["ack", "ack"]
        await asyncio.sleep(2.0)
        assert isinstance(dect, ContentRejectingDect)
        assert 2 <= dect.rejected <= 4, dect.rejected


def flaky_dect(port: PtyPeer) -> Dect:
    """A DECT that is busy once, then loses the first block three times (line noise)."""
    dect = Dect(port)
    dect.busy_selects = 1
    dect.nak_blocks = 3
    return dect


async def test_a_failed_ring_is_never_sent_after_its_own_cancel(tmp_path: Path) -> None:
    """One ESPA message in flight per handset: a cancel never overtakes its retried ring.

    With a window of sends the cancel behind a failed ring was ACKed first and the ring
    retried after it, leaving the DECT ringing for a call the nurse-call system had reset.
    """
    async with dect_gateway(tmp_path, flaky_dect) as (_, nurse, dect):
        assert [t.kind for t in await nurse.call(nurse_call("101"))] == ["ack", "ack"]
        assert [t.kind for t in await nurse.call(nurse_call("101", "1"))] == ["ack", "ack"]
        seen: list[bytes] = []
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(6):
                while len(seen) < 2:
                    seen.append((await dect.calls.get()).records["4"])
        assert seen == [b"3", b"1"], f"call types in the order the DECT got them: {seen}"


async def test_a_call_from_an_unknown_call_point_rings_the_technician(tmp_path: Path) -> None:
    """A call the line ACKed from a call point missing from devices: is a technical alarm.

    It used to be ACKed and dropped with a counter: the nurse-call system believed it had
    paged, and nobody was rung or told.
    """
    async with dect_gateway(tmp_path, Dect) as (gw, nurse, dect):
        assert [t.kind for t in await nurse.call(nurse_call("999"))] == ["ack", "ack"]
        page = await next_call(dect)
        assert page.records["1"] == b"22"  # the technician
        assert page.records["2"] == b"Unknown call point espa:ward:999"
        signals = gw.metrics.signals.labels("nurse", "unknown_call_point", "raised")
        assert signals._value.get() == 1
