"""A restart during an active escalation continues the escalation where it was."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.config import Config, parse_config
from tests.conftest import Broker, running, unique
from tests.faults.helpers import Handset, sender

pytestmark = pytest.mark.faults

LADDER_YAML = """
site: {{timezone: Europe/Oslo}}
mqtt: {{port: {port}, client_id: {client_id}, status_topic: {prefix}/status,
        backoff_initial: 0.05, backoff_max: 0.5}}
sources:
  integrator: {{type: mqtt, decoder: json, topics: ["{prefix}/in/#"]}}
zones:
  ost: {{rooms: ["101"]}}
devices:
  cord-101: {{room: "101", kind: pull_cord}}
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
journal: {{path: {db}, synchronous: full}}
metrics: {{enabled: false}}
"""


class FakeClock:
    """Wall time the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1_790_000_000.0

    def __call__(self) -> float:
        return self.now


def ladder_config(port: int, tmp_path: Path, prefix: str) -> Config:
    """Roster n1,n2 for zone ost, failsafe vakt, ladder primary → zone → failsafe (60 s each)."""
    text = LADDER_YAML.format(
        port=port, client_id=f"{prefix}-gw", prefix=prefix, db=tmp_path / "journal.db"
    )
    return parse_config(text, filename="ladder.yaml")


async def raise_cord(port: int, prefix: str, clock: FakeClock, config: Config, h: Handset) -> str:
    """Raise the pull cord on a fresh gateway; n1 rings at step 0; return the alert id."""
    async with running(config, clock=clock), sender(port, f"{prefix}/in/x") as s:
        await s.send({"id": "cord-1", "device": "cord-101", "state": "raised"})
        handset, ring = await h.next()
        assert (handset, ring["type"], ring["step"], ring["seq"]) == ("n1", "ring", 0, 1)
        return str(ring["alert_id"])


def check(
    got: tuple[str, dict[str, Any]], handset: str, alert_id: str, step: int, seq: int
) -> None:
    """Assert one ring of the same alert at the given ladder step and sequence number."""
    name, msg = got
    assert (name, msg["type"], msg["alert_id"]) == (handset, "ring", alert_id)
    assert (msg["step"], msg["seq"]) == (step, seq)


async def test_restart_before_due_keeps_the_ladder_timer(broker: Broker, tmp_path: Path) -> None:
    """Restarted before a step is due, the ladder neither resets nor re-rings; it fires on time."""
    prefix = unique("esc")
    clock = FakeClock()
    config = ladder_config(broker.port, tmp_path, prefix)
    h = Handset(broker.port, f"{prefix}/handset/+/alert", client_id=f"{prefix}-app")
    h.start()
    try:
        await h.wait_connected()
        alert_id = await raise_cord(broker.port, prefix, clock, config, h)
        clock.now += 30  # down for 30 s: step 1 is not due yet
        async with running(config, clock=clock) as r:
            assert await h.nothing(0.7)  # n1 is not rung again after the restart
            clock.now += 31  # 61 s after the raise: the original deadline
            r.gateway.kick()
            # The second start's seqs go past 2,000,000 (Engine.use_start): what the first
            # sent without committing can never make a handset drop them as repeats.
            check(await h.next(), "n2", alert_id, 1, 2_000_001)
            clock.now += 61
            r.gateway.kick()
            check(await h.next(), "vakt", alert_id, 2, 2_000_002)
            assert await h.nothing(0.5)
    finally:
        await h.stop()
    print(f"FAULT escalation_restart_before_due: rings={h.rings()} handsets={h.handsets}")


async def test_step_due_during_outage_fires_at_once_on_start(
    broker: Broker, tmp_path: Path
) -> None:
    """Steps that came due while the gateway was down ring at once on start, same alert."""
    prefix = unique("esc")
    clock = FakeClock()
    config = ladder_config(broker.port, tmp_path, prefix)
    h = Handset(broker.port, f"{prefix}/handset/+/alert", client_id=f"{prefix}-app")
    h.start()
    try:
        await h.wait_connected()
        alert_id = await raise_cord(broker.port, prefix, clock, config, h)
        clock.now += 61  # step 1 came due during the outage
        async with running(config, clock=clock):
            check(await h.next(), "n2", alert_id, 1, 2_000_001)  # no kick: due on start
            assert await h.nothing(0.5)
        clock.now += 61  # and step 2 during a second outage
        async with running(config, clock=clock):
            check(await h.next(), "vakt", alert_id, 2, 3_000_001)
            assert await h.nothing(0.5)
    finally:
        await h.stop()
    print(f"FAULT escalation_due_during_outage: rings={h.rings()} handsets={h.handsets}")
