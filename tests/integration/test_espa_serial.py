"""The ESPA serial driver through real pty pairs against an independent simulated peer."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, Literal

import orjson
import pytest
from structlog.testing import capture_logs

from drivers import espa_serial
from drivers.espa_serial import EspaLink, build_espa, line_config
from gateway.config import EspaLinkConfig, parse_config
from gateway.errors import ConfigError, DeliveryError, PermanentDeliveryError
from gateway.metrics import Metrics
from gateway.model import Delivery, Response, ResponseKind, Signal, SignalState
from gateway.ports import DeliveryReport, Inbound, Item
from tests.integration.espa_peer import EOT, GARBAGE, Dect, NurseCall, PtyPeer, frame, link_to

# Linux ptys refuse 7-bit and parity settings (EINVAL), so pty tests run 8N1.
FAST: dict[str, Any] = {
    "bytesize": 8,
    "parity": "N",
    "stopbits": 1,
    "poll_interval": 0.05,
    "reply_timeout": 0.3,
    "recovery_timeout": 1.0,
    "backoff_initial": 0.05,
    "backoff_max": 0.2,
}


class Collector:
    """A `put` that keeps every item and lets a test wait for one.

    It acknowledges each Inbound on the next loop pass, as the gateway does once the signal
    is journaled; with `journal=False` it never does (a journal that does not answer).
    """

    def __init__(self, *, journal: bool = True) -> None:
        self.items: list[Item] = []
        self._changed = asyncio.Event()
        self._journal = journal

    def __call__(self, item: Item) -> None:
        self.items.append(item)
        if self._journal and isinstance(item, Inbound) and item.ack is not None:
            asyncio.get_running_loop().call_soon(item.ack)
        self._changed.set()

    async def wait_for(self, match: Callable[[Item], bool], timeout: float = 3.0) -> Item:
        """Return the first item (already seen or later) for which `match` is true."""
        async with asyncio.timeout(timeout):
            while True:
                for item in self.items:
                    if match(item):
                        return item
                self._changed.clear()
                await self._changed.wait()

    def inbound(self) -> list[dict[str, Any]]:
        """Decoded payloads of every Inbound so far."""
        return [orjson.loads(i.payload) for i in self.items if isinstance(i, Inbound)]

    def link_signals(self) -> list[SignalState]:
        """States of the link_down signals so far."""
        return [i.state for i in self.items if isinstance(i, Signal) and i.kind == "link_down"]


def espa_config(
    port: str,
    role: Literal["control_station", "station"],
    **over: Any,  # noqa: ANN401 - forwards EspaLinkConfig fields
) -> EspaLinkConfig:
    """A fast link config; the gateway is '2' as station and '1' as control station."""
    local, remote = ("2", "1") if role == "station" else ("1", "2")
    base = EspaLinkConfig(port=port, role=role, local_address=local, remote_address=remote)
    return dataclasses.replace(base, **(FAST | over))


@contextlib.asynccontextmanager
async def running_link(
    cfg: EspaLinkConfig,
    *,
    source: str | None = "nurse",
    handsets: dict[str, str] | None = None,
    link_down_after: float = 30.0,
    journal: bool = True,
) -> AsyncIterator[tuple[EspaLink, Collector]]:
    """Run one EspaLink with a collecting `put` until the block ends."""
    line = dataclasses.replace(line_config(cfg), retry_delay=0.1, link_down_after=link_down_after)
    link = EspaLink(
        name="l1", config=cfg, metrics=Metrics(), source=source, handsets=handsets, line=line
    )
    put = Collector(journal=journal)
    task = asyncio.create_task(link.run(put), name="test.espa")
    try:
        yield link, put
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def is_link(state: SignalState) -> Callable[[Item], bool]:
    """Match a link_down signal in `state`."""
    return lambda i: isinstance(i, Signal) and i.kind == "link_down" and i.state is state


def delivery(action: str = "ring", *, text: str = "Ødelagt dør rom 101") -> Delivery:
    """A delivery for the ESPA handset `dect21` about alert a1."""
    payload = {
        "type": action,
        "alert_id": "a1",
        "seq": 1,
        "kind": "door_open",
        "room": "101",
        "priority": "high",
        "critical": False,
        "text": text,
        "state": "active" if action != "cancel" else "cleared",
    }
    return Delivery(alert_id="a1", handset="dect21", seq=1, action=action, payload=payload)


CALL_101 = [("1", b"101"), ("2", b"Rom 101 toalett"), ("4", b"3"), ("6", b"2"), ("3", b"1")]


# --- source: calls from a nurse-call control station ----------------------------------------


async def test_calls_from_nurse_call_become_inbound_items() -> None:
    """Header-1 calls become Inbound items with the call's fields; a reset call follows."""
    peer = PtyPeer()
    try:
        async with running_link(espa_config(peer.path, "station")) as (link, put):
            nurse = NurseCall(peer)
            await asyncio.sleep(0.2)  # the driver opens the port
            replies = await nurse.call(CALL_101)
            assert [r.kind for r in replies] == ["ack", "ack"]
            replies = await nurse.call([("1", b"101"), ("2", b"Rom 101 toalett"), ("4", b"1")])
            assert [r.kind for r in replies] == ["ack", "ack"]
            await put.wait_for(lambda i: isinstance(i, Inbound) and b'"1"' in i.payload)
            first, reset = put.inbound()
            assert first == {
                "address": "101",
                "message": "Rom 101 toalett",
                "call_type": "3",
                "priority": "2",
                "beep": "1",
                "transmissions": None,
            }
            assert reset["call_type"] == "1"
            item = next(i for i in put.items if isinstance(i, Inbound))
            assert item.source == "nurse"
            assert item.topic == "espa/l1/101"
            assert link.connected
    finally:
        peer.close()


async def test_a_call_is_acked_once_the_gateway_has_journaled_it() -> None:
    """The line ACKs a call only when its Inbound's `ack` runs (after the journal commit)."""
    peer = PtyPeer()
    # A hold of 2 s: the fallback must not send the ACK while the test looks.
    cfg = espa_config(peer.path, "station", reply_timeout=4.0, recovery_timeout=10.0)
    try:
        with capture_logs() as logs:
            async with running_link(cfg, journal=False) as (link, put):
                nurse = NurseCall(peer)
                await asyncio.sleep(0.2)  # the driver opens the port
                peer.write(b"\x31\x05\x32\x05")  # self-poll, select the gateway
                assert (await peer.next()).kind == "ack"
                peer.write(frame("1", CALL_101))
                inbound = await put.wait_for(lambda i: isinstance(i, Inbound))
                assert isinstance(inbound, Inbound)
                assert inbound.ack is not None
                # Time for an ACK sent on receipt to cross the pty (the hold lasts 2 s).
                await asyncio.sleep(0.2)
                assert peer.tokens.empty(), "the call was ACKed before it was journaled"
                inbound.ack()  # the journal committed it
                assert (await peer.next()).kind == "ack"
                inbound.ack()  # a second call is harmless
                peer.write(bytes([EOT]))
                assert await nurse.poll() is None  # the line goes on: nothing extra sent
                assert link._unjournaled._value.get() == 0
        assert not [e for e in logs if e["event"] == "espa_ack_released_unjournaled"]
    finally:
        peer.close()


async def test_a_call_the_journal_never_confirms_is_acked_after_the_hold_and_logged() -> None:
    """Without a journal answer the call is still ACKed (the line never stalls), loudly."""
    peer = PtyPeer()
    try:
        with capture_logs() as logs:
            async with running_link(espa_config(peer.path, "station"), journal=False) as (
                link,
                put,
            ):
                await asyncio.sleep(0.2)
                replies = await NurseCall(peer).call(CALL_101)
                assert [r.kind for r in replies] == ["ack", "ack"]
                await put.wait_for(lambda i: isinstance(i, Inbound))
                assert link._unjournaled._value.get() == 1
        [warning] = [e for e in logs if e["event"] == "espa_ack_released_unjournaled"]
        assert warning["log_level"] == "warning"
    finally:
        peer.close()


async def test_a_call_on_a_link_without_source_is_acked_at_once() -> None:
    """A call nothing journals (no source on the link) is ACKed on receipt, without a hold."""
    peer = PtyPeer()
    try:
        with capture_logs() as logs:
            async with running_link(espa_config(peer.path, "station"), source=None) as (link, _):
                await asyncio.sleep(0.2)
                replies = await NurseCall(peer).call(CALL_101)
                assert [r.kind for r in replies] == ["ack", "ack"]
                assert link._unjournaled._value.get() == 0
        events = [e["event"] for e in logs]
        assert "espa_call_ignored" in events
        assert "espa_ack_released_unjournaled" not in events
    finally:
        peer.close()


async def test_garbage_between_frames_is_ignored() -> None:
    """Noise (CR, LF, NUL, bytes >= 0x80) around polls and blocks does not stop a call."""
    peer = PtyPeer()
    try:
        async with running_link(espa_config(peer.path, "station")) as (link, put):
            await asyncio.sleep(0.2)
            peer.write(GARBAGE)
            replies = await NurseCall(peer).call(CALL_101, noise=GARBAGE)
            assert [r.kind for r in replies] == ["ack", "ack"]
            await put.wait_for(lambda i: isinstance(i, Inbound))
            assert [p["address"] for p in put.inbound()] == ["101"]
            garbage = link._rejects.labels(link.name, "espa_garbage")._value.get()
            assert garbage >= 1  # counted, by reason, per link
    finally:
        peer.close()


async def test_bad_bcc_is_naked_then_the_resend_is_accepted_once() -> None:
    """A corrupted block gets '1' NAK; the good resend is ACKed and yields one Inbound."""
    peer = PtyPeer()
    try:
        async with running_link(espa_config(peer.path, "station")) as (_, put):
            await asyncio.sleep(0.2)
            replies = await NurseCall(peer).call(CALL_101, corrupt_first=True)
            assert [(r.kind, r.arg) for r in replies] == [
                ("ack", None),
                ("nak", "1"),
                ("ack", None),
            ]
            await put.wait_for(lambda i: isinstance(i, Inbound))
            await NurseCall(peer).poll()  # one more transaction: nothing else was put
            assert len(put.inbound()) == 1
    finally:
        peer.close()


async def test_status_request_is_answered_when_polled() -> None:
    """A header-3 status request for a received call is answered with a header-2 block."""
    peer = PtyPeer()
    try:
        async with running_link(espa_config(peer.path, "station")) as (_, put):
            await asyncio.sleep(0.2)
            nurse = NurseCall(peer)
            await nurse.call(CALL_101)
            inbound = await put.wait_for(lambda i: isinstance(i, Inbound))
            assert isinstance(inbound, Inbound)
            assert inbound.ack is not None
            inbound.ack()  # the core journaled it
            replies = await nurse.call([("1", b"101")], header="3")
            assert [r.kind for r in replies] == ["ack", "ack"]
            status = await nurse.poll()
            assert status is not None
            assert status.ok
            assert status.header == "2"
            assert status.records["1"] == b"101"
            assert status.records["7"] == b"3"  # paged: the gateway has it
            assert await nurse.poll() is None
    finally:
        peer.close()


# --- link supervision and reconnects ---------------------------------------------------------


async def test_silent_peer_raises_link_down_and_polls_clear_it() -> None:
    """No poll for link_down_after: a link_down signal is raised; the next poll clears it."""
    peer = PtyPeer()
    try:
        cfg = espa_config(peer.path, "station")
        async with running_link(cfg, link_down_after=0.3) as (link, put):
            down = await put.wait_for(is_link(SignalState.RAISED))
            assert isinstance(down, Signal)
            assert down.device == "espa:l1"
            assert down.room == ""
            assert down.source == "nurse"
            assert not link.connected
            assert await NurseCall(peer).poll() is None
            await put.wait_for(is_link(SignalState.CLEARED))
            assert put.link_signals() == [SignalState.RAISED, SignalState.CLEARED]
            assert link.connected
    finally:
        peer.close()


async def test_port_that_vanishes_and_returns_is_reopened(tmp_path: Path) -> None:
    """A vanished port raises link_down (one WARNING); the driver reopens it and clears it."""
    port = tmp_path / "ttyESPA"
    first = PtyPeer()
    second: PtyPeer | None = None
    link_to(first, port)
    try:
        with capture_logs() as logs:
            async with running_link(espa_config(str(port), "station")) as (link, put):
                await asyncio.sleep(0.2)
                assert await NurseCall(first).poll() is None
                await asyncio.sleep(0.05)
                assert link.connected
                # USB unplugged: the device node goes away with the port. (Leaving a dangling
                # link to /dev/pts/N could reach another process's pty once N is reused.)
                port.unlink()
                first.close()
                await put.wait_for(is_link(SignalState.RAISED))
                await asyncio.sleep(0.5)  # several failed reopen attempts on the dead path
                second = PtyPeer()
                link_to(second, port)
                nurse = NurseCall(second)
                async with asyncio.timeout(3):
                    while True:  # polls go unanswered until the driver has reopened
                        with contextlib.suppress(TimeoutError):
                            assert await asyncio.wait_for(nurse.poll(), 0.2) is None
                            break
                await put.wait_for(is_link(SignalState.CLEARED))
                replies = await nurse.call(CALL_101)
                assert [r.kind for r in replies] == ["ack", "ack"]
                await put.wait_for(lambda i: isinstance(i, Inbound))
        assert put.link_signals() == [SignalState.RAISED, SignalState.CLEARED]
        failed = [e for e in logs if e["event"] == "espa_port_failed"]
        assert len(failed) >= 2
        assert [e["log_level"] for e in failed].count("warning") == 1
        assert all(e["driver"] == "espa" and e["link"] == "l1" for e in failed)
    finally:
        first.close()
        if second is not None:
            second.close()


# --- handset channel: calls to a DECT system --------------------------------------------------


@contextlib.asynccontextmanager
async def dect_link(
    **over: Any,  # noqa: ANN401 - forwards EspaLinkConfig fields
) -> AsyncIterator[tuple[EspaLink, Collector, Dect]]:
    """A gateway control station with handset dect21 (address 21) and a simulated DECT."""
    peer = PtyPeer()
    dect = Dect(peer)
    sim = asyncio.create_task(dect.run(), name="test.dect")
    try:
        cfg = espa_config(peer.path, "control_station", **over)
        async with running_link(cfg, source=None, handsets={"dect21": "21"}) as (link, put):
            async with asyncio.timeout(3):
                while not link.connected:
                    await asyncio.sleep(0.02)
            yield link, put, dect
    finally:
        sim.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sim
        peer.close()


async def test_delivery_becomes_a_call_block_in_iso646_no() -> None:
    """A ring is one header-1 block: handset address, Nordic text in ISO 646-NO, priority."""
    async with dect_link() as (link, _, dect):
        async with asyncio.timeout(3):
            await link.send(delivery())
        call = dect.calls.get_nowait()
        assert call.header == "1"
        assert call.records["1"] == b"21"
        assert call.records["2"] == b"\\delagt d|r rom 101"  # Ø -> 0x5C, ø -> 0x7C
        assert call.records["4"] == b"3"  # standard call
        assert call.records["6"] == b"2"  # high
        async with asyncio.timeout(3):
            await link.send(delivery("cancel"))
        reset = dect.calls.get_nowait()
        assert reset.records["1"] == b"21"
        assert reset.records["4"] == b"1"  # reset call clears it on the handset


async def test_display_text_is_sanitised_and_limited() -> None:
    """Control characters are dropped and the text is cut to the link's display limit."""
    async with dect_link(display_limit=12) as (link, _, dect):
        async with asyncio.timeout(3):
            await link.send(delivery(text="Fall\x1e\x1f rom\n101 seng ved vindu"))
        call = dect.calls.get_nowait()
        assert call.records["2"] == b"Fall rom 101"


async def test_status_replies_map_back_to_the_alert() -> None:
    """Paged, acknowledged, absent and fault statuses become reports and responses for a1."""
    async with dect_link() as (link, put, dect):
        async with asyncio.timeout(3):
            await link.send(delivery())
        for status in ("3", "6", "4", "8", "2"):
            dect.status("21", status, text=b"\\delagt d|r rom 101")
        await put.wait_for(lambda i: isinstance(i, DeliveryReport) and i.status == "failed")
        got = [i for i in put.items if isinstance(i, DeliveryReport | Response)]
        assert got == [
            DeliveryReport("dect21", "a1", "delivered", got[0].ts, "paged"),
            Response("dect21", "a1", ResponseKind.ACCEPT, got[1].ts),
            Response("dect21", "a1", ResponseKind.REJECT, got[2].ts, "absent"),
            DeliveryReport("dect21", "a1", "failed", got[3].ts, "fault"),
        ]


def ring_for(alert_id: str, text: str, action: str = "ring") -> Delivery:
    """A delivery of `alert_id` with `text` to the ESPA handset dect21 (call address 21)."""
    payload = {
        "type": action,
        "alert_id": alert_id,
        "seq": 1,
        "kind": "pull_cord",
        "priority": "high",
        "critical": False,
        "text": text,
        "state": "cleared" if action == "cancel" else "active",
    }
    return Delivery(alert_id=alert_id, handset="dect21", seq=1, action=action, payload=payload)


async def test_acknowledging_an_older_call_does_not_accept_the_newer_alert() -> None:
    """A DECT ack (status '6') names its call by address and text: room 101's ack accepts a1."""
    async with dect_link() as (link, put, dect):
        async with asyncio.timeout(3):
            await link.send(ring_for("a1", "Call room 101"))
            await link.send(ring_for("a2", "Call room 102"))
        first = dect.calls.get_nowait()
        dect.status("21", "6", text=first.records["2"])  # the carer acks the room-101 call
        got = await put.wait_for(lambda i: isinstance(i, Response))
        assert isinstance(got, Response)
        assert got.kind is ResponseKind.ACCEPT
        assert got.alert_id == "a1", f"ack of room 101's call accepted alert {got.alert_id}"


async def test_reset_of_an_older_call_keeps_status_mapping_of_the_current_one() -> None:
    """Cancelling a1 forgets only a1's call: the DECT's later ack of a2's call still maps."""
    async with dect_link() as (link, put, dect):
        async with asyncio.timeout(3):
            await link.send(ring_for("a1", "Call room 101"))
            await link.send(ring_for("a2", "Call room 102"))
            await link.send(ring_for("a1", "Call room 101", action="cancel"))
        dect.calls.get_nowait()
        second = dect.calls.get_nowait()
        dect.status("21", "6", text=second.records["2"])
        got = await put.wait_for(lambda i: isinstance(i, Response))
        assert isinstance(got, Response)
        assert got.alert_id == "a2"


async def test_ambiguous_or_stale_status_accepts_nothing_and_says_so() -> None:
    """An ack without text for two calls, or for a call already reset, is logged, not applied."""
    async with dect_link() as (link, put, dect):
        async with asyncio.timeout(3):
            await link.send(ring_for("a1", "Call room 101"))
            await link.send(ring_for("a2", "Call room 102"))
            await link.send(ring_for("a1", "Call room 101", action="cancel"))
            await link.send(ring_for("a3", "Call room 103"))
        with capture_logs() as logs:
            dect.status("21", "6")  # no text: a2 or a3?
            dect.status("21", "6", text=b"Call room 101")  # a1 was reset: stale
            dect.status("21", "4")  # absent without text: both move on (never fewer rings)
            await put.wait_for(lambda i: isinstance(i, Response))
            await asyncio.sleep(0.3)
        got = [(i.alert_id, i.kind) for i in put.items if isinstance(i, Response)]
        assert sorted(got) == [("a2", ResponseKind.REJECT), ("a3", ResponseKind.REJECT)]
        events = [(e["event"], e.get("candidates")) for e in logs if e["log_level"] == "warning"]
        assert ("espa_status_ambiguous", 2) in events
        assert ("espa_status_unmatched", 0) in events


async def test_an_ack_for_an_address_no_handset_has_is_counted_and_said() -> None:
    """A DECT acking call address 22 (the handset is configured as 21: a typo, or another
    numbering) accepts nothing; that is a WARNING and a counted reject, not a debug line."""
    async with dect_link() as (link, put, dect):
        async with asyncio.timeout(3):
            await link.send(ring_for("a1", "Call room 101"))
        with capture_logs() as logs:
            dect.status("22", "6", text=b"Call room 101")
            dect.status("22", "1")  # pending: nothing anyone needs to hear about
            dect.status("21", "6", text=b"Call room 101")  # the real ack still works
            got = await put.wait_for(lambda i: isinstance(i, Response))
        assert isinstance(got, Response)
        assert got.alert_id == "a1"
        warned = [e for e in logs if e["log_level"] == "warning"]
        assert [(e["event"], e["address"], e["outcome"]) for e in warned] == [
            ("espa_status_unmatched", "22", "acknowledged")
        ]
        assert link._rejects.labels(link.name, "espa_status_unmatched")._value.get() == 1


def is_fault(state: SignalState) -> Callable[[Item], bool]:
    """Match a paging_fault signal in `state`."""
    return lambda i: isinstance(i, Signal) and i.kind == "paging_fault" and i.state is state


async def test_transmitter_failure_raises_a_paging_fault_until_a_call_gets_through() -> None:
    """Record 8 '1' raises one paging_fault alarm; a later paged status clears it."""
    async with dect_link() as (link, put, dect):
        async with asyncio.timeout(3):
            await link.send(delivery())
        with capture_logs() as logs:
            dect.system_status("1")
            raised = await put.wait_for(is_fault(SignalState.RAISED))
            dect.system_status("1")  # still failing: no second alarm
            dect.status("21", "2")  # in queue: proves nothing
            await asyncio.sleep(0.5)  # both are polled and handled before the next one
            dect.status("21", "3")  # paged: the transmitter works again
            cleared = await put.wait_for(is_fault(SignalState.CLEARED))
        assert isinstance(raised, Signal)
        assert isinstance(cleared, Signal)
        assert raised.device == cleared.device == "espa:l1"
        assert raised.attrs == {"reason": "transmitter_failure"}
        faults = [i.state for i in put.items if isinstance(i, Signal) and i.kind == "paging_fault"]
        assert faults == [SignalState.RAISED, SignalState.CLEARED]
        events = [e["event"] for e in logs]
        assert events.count("espa_transmitter_failure") == 1
        assert "espa_transmitter_recovered" in events
        # The paged status still reports the call delivered to the core.
        assert any(isinstance(i, DeliveryReport) and i.status == "delivered" for i in put.items)


async def test_a_paging_system_that_fails_every_call_raises_a_paging_fault() -> None:
    """Three calls in a row NAKed to exhaustion raise paging_fault; the next ACKed call clears it.

    The DECT answers polls, so the link is "up": without this nothing but a retry counter
    showed that no page was going out.
    """
    async with dect_link() as (link, put, dect):
        dect.nak_blocks = 10**9
        with capture_logs() as logs:
            for _ in range(3):  # the lane's retries
                with pytest.raises(DeliveryError, match="retries_exhausted"):
                    async with asyncio.timeout(5):
                        await link.send(delivery())
            raised = await put.wait_for(is_fault(SignalState.RAISED))
            dect.nak_blocks = 0
            async with asyncio.timeout(3):
                await link.send(delivery())
            cleared = await put.wait_for(is_fault(SignalState.CLEARED))
        assert isinstance(raised, Signal)
        assert isinstance(cleared, Signal)
        assert raised.device == "espa:l1"
        assert raised.attrs == {"reason": "calls_failing"}
        warned = [e for e in logs if e["event"] == "espa_calls_failing"]
        assert [(e["log_level"], e["failures"], e["last"]) for e in warned] == [
            ("warning", 3, "retries_exhausted")
        ]
        assert "espa_calls_recovered" in [e["event"] for e in logs]
        failed = link._failed_calls.labels("l1", "retries_exhausted")._value.get()
        assert failed == 3


async def test_a_paging_system_busy_forever_raises_a_paging_fault(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Calls that never get an ACK (busy to every selection) count as failures too."""
    monkeypatch.setattr(espa_serial, "SEND_TIMEOUT", 0.3)
    async with dect_link() as (link, put, dect):
        dect.busy_selects = 10**9
        for _ in range(3):
            with pytest.raises(DeliveryError, match="no ACK"):
                await link.send(delivery())
        raised = await put.wait_for(is_fault(SignalState.RAISED))
        assert isinstance(raised, Signal)
        assert raised.attrs == {"reason": "calls_failing"}


async def test_calls_going_through_do_not_clear_a_transmitter_failure() -> None:
    """An ACKed call proves the line, not the transmitter: record 8's fault stays raised."""
    async with dect_link() as (link, put, dect):
        dect.system_status("1")
        await put.wait_for(is_fault(SignalState.RAISED))
        dect.nak_blocks = 10**9
        for _ in range(3):
            with pytest.raises(DeliveryError):
                async with asyncio.timeout(5):
                    await link.send(delivery())
        dect.nak_blocks = 0
        async with asyncio.timeout(3):
            await link.send(delivery())
        await asyncio.sleep(0.2)
        faults = [i.state for i in put.items if isinstance(i, Signal) and i.kind == "paging_fault"]
        assert faults == [SignalState.RAISED]


async def test_busy_select_is_retried_until_accepted() -> None:
    """A '2' NAK (busy) to the select is retried after retry_delay and then succeeds."""
    async with dect_link() as (link, _, dect):
        dect.busy_selects = 2
        async with asyncio.timeout(3):
            await link.send(delivery())
        assert dect.busy_selects == 0
        assert dect.calls.get_nowait().records["1"] == b"21"


async def test_naked_block_is_resent_and_rejected_block_fails() -> None:
    """A '1' NAK leads to a resend; a '3' NAK is a permanent failure naming handset and port."""
    async with dect_link() as (link, _, dect):
        dect.nak_blocks = 1
        async with asyncio.timeout(3):
            await link.send(delivery())
        assert dect.calls.qsize() == 1
        dect.reject_blocks = 1
        with pytest.raises(PermanentDeliveryError, match=r"dect21.*/dev/pts/.*rejected"):
            async with asyncio.timeout(3):
                await link.send(delivery())


async def test_send_while_port_is_closed_raises() -> None:
    """Sending on a link whose port is not open raises DeliveryError at once."""
    cfg = espa_config("/nonexistent/ttyESPA", "control_station")
    link = EspaLink(name="l1", config=cfg, metrics=Metrics(), handsets={"dect21": "21"})
    with pytest.raises(DeliveryError, match=r"dect21.*/nonexistent/ttyESPA.*down"):
        await link.send(delivery())


# --- wiring ------------------------------------------------------------------------------------

BUILD_YAML = """
sources:
  nurse: {type: espa, decoder: espa, link: both}
  calls: {type: espa, decoder: espa, link: calls_only}
espa:
  both: {port: /dev/ttyUSB0}
  calls_only: {port: /dev/ttyUSB1}
  dect: {port: "socket://127.0.0.1:4001", role: control_station, local_address: "1",
         remote_address: "2"}
  spare: {port: /dev/ttyUSB3}
zones:
  east: {rooms: ["101"]}
devices:
  call-101: {room: "101", kind: pull_cord, name: "101", source: nurse}
handsets:
  d21: {channel: espa, link: dect, address: "21"}
  d22: {channel: espa, link: dect, address: "22"}
  n1: {channel: espa, link: both, address: "31"}
routing:
  - {handsets: [d21, d22, n1]}
"""


def test_build_espa_runs_each_link_once() -> None:
    """One link per used entry; a link that is source and channel is run by its channel."""
    config = parse_config(BUILD_YAML, filename="test.yaml")
    sources, channels = build_espa(config, Metrics())
    assert sorted(s.name for s in sources) == ["espa[calls_only]", "nurse"]
    assert isinstance(next(s for s in sources if s.name == "espa[calls_only]"), EspaLink)
    assert not isinstance(next(s for s in sources if s.name == "nurse"), EspaLink)
    assert set(channels) == {"d21", "d22", "n1"}
    assert channels["d21"] is channels["d22"]
    assert channels["d21"].name == "espa[dect]"
    assert channels["n1"].name == "espa[both]"


def test_two_sources_on_one_link_are_refused_by_the_config() -> None:
    """Two sources naming one link is a config error naming the line and the link, at
    `check` time (build_espa refused it only when the daemon started: a crash loop)."""
    text = BUILD_YAML.replace("link: calls_only", "link: both")
    with pytest.raises(
        ConfigError, match=r"^test\.yaml:\d+: sources\.calls\.link: espa line 'both'"
    ):
        parse_config(text, filename="test.yaml")


async def test_a_port_url_pyserial_does_not_know_is_retried_not_fatal() -> None:
    """pyserial's ValueError for an unknown URL scheme raises link_down and is retried.

    `alertgw check` refuses such a URL; this is the net under it. Uncaught, the ValueError
    ended the link task and with it the supervisor's TaskGroup: the whole daemon, MQTT too.
    """
    cfg = espa_config("sockt://10.0.0.5:4001", "control_station")
    link = EspaLink(name="l1", config=cfg, metrics=Metrics(), handsets={"dect21": "21"})
    put = Collector()
    with capture_logs() as logs:
        task = asyncio.create_task(link.run(put))
        await put.wait_for(is_link(SignalState.RAISED))
        await asyncio.sleep(0.5)
    try:
        assert not task.done(), f"link task ended: {task.exception()!r}"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    failed = [e for e in logs if e["event"] == "espa_port_failed"]
    assert failed[0]["log_level"] == "error"
    assert "sockt" in failed[0]["error"]
    # a config problem: straight to the cap (with its jitter)
    assert cfg.backoff_max / 2 <= failed[0]["retry_in"] <= cfg.backoff_max


class SilentToSelects(Dect):
    """A DECT that answers polls but never a selection (e.g. configured with another address)."""

    async def run(self) -> None:
        """Answer polls with EOT; ignore selections and blocks."""
        other_polled = False
        while True:
            tok = await self.port.tokens.get()
            if tok.kind == "eot":
                other_polled = False
            elif tok.kind == "enq" and tok.arg != self.own:
                other_polled = True
            elif tok.kind == "enq" and other_polled:
                other_polled = False  # a selection: stay silent
            elif tok.kind == "enq":
                self.port.write(bytes([EOT]))


async def test_send_that_gave_up_leaves_nothing_queued_on_the_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A send() that timed out withdraws its block: it is never paged later with no owner.

    The block was being selected when send() gave up, and `cancel()` only searched the
    queue: the orphan was retried forever, one more per timeout, and a recovered DECT got
    the same page several times.
    """
    monkeypatch.setattr(espa_serial, "SEND_TIMEOUT", 0.5)
    peer = PtyPeer()
    dect = SilentToSelects(peer)
    sim = asyncio.create_task(dect.run())
    try:
        cfg = dataclasses.replace(espa_config(peer.path, "control_station"), reply_timeout=2.0)
        async with running_link(cfg, source=None, handsets={"dect21": "21"}) as (link, _):
            async with asyncio.timeout(3):
                while not link.connected:
                    await asyncio.sleep(0.02)
            with pytest.raises(DeliveryError, match="no ACK"):
                await link.send(delivery())
            assert link._line.pending == 0, "the abandoned block is still queued or in flight"
    finally:
        sim.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sim
        peer.close()
