"""The running gateway when the box's wall clock is stepped (NTP correction, a restored RTC).

A console handset is enough here: no broker is needed to see the router's timers.
"""

from __future__ import annotations

import asyncio
import io
import time
from pathlib import Path

from structlog.testing import capture_logs

from gateway.config import parse_config
from gateway.model import AlertState, Signal, SignalState
from tests.conftest import running

YAML = """
site: {{timezone: Europe/Oslo}}
zones:
  ost: {{rooms: ["101"]}}
devices:
  bed-101: {{room: "101", kind: bed_exit}}
  epi-101: {{room: "101", kind: epilepsy}}
handsets:
  a: {{channel: console}}
routing: [{{handsets: [a]}}]
rules: [{{name: bed, match: {{kinds: [bed_exit]}}, hold_off: 1}}]
supervision: {{kinds: {{epilepsy: 3600}}}}
journal: {{path: {db}}}
metrics: {{enabled: false}}
"""


class SteppedClock:
    """The real wall clock plus an offset that a test steps, as NTP or an operator would."""

    def __init__(self, offset: float = 0.0) -> None:
        self.offset = offset

    def __call__(self) -> float:
        return time.time() + self.offset


def signal(device: str, kind: str, state: SignalState, now: float) -> Signal:
    """A signal from a device in room 101."""
    return Signal(
        id=f"s-{device}-{now}",
        source="test",
        device=device,
        room="101",
        kind=kind,
        state=state,
        ts=now,
        received_at=now,
    )


async def test_a_backward_clock_step_does_not_stall_a_hold_off(tmp_path: Path) -> None:
    """NTP steps the clock back 1 h during a 1 s hold-off: the bed exit still rings in ~1 s."""
    clock = SteppedClock()
    config = parse_config(YAML.format(db=tmp_path / "j.db"))
    with capture_logs() as logs:
        async with running(config, clock=clock, elapsed=time.monotonic, console=io.StringIO()) as r:
            gw = r.gateway
            gw.put(signal("bed-101", "bed_exit", SignalState.RAISED, clock()))
            await asyncio.sleep(0.2)
            (alert,) = gw.engine.active
            assert alert.state is AlertState.HELD
            clock.offset -= 3600  # e.g. an RTC kept in local time, corrected by NTP after boot
            await asyncio.sleep(1.5)  # no kick: the router's own timer must find the step
            (alert,) = gw.engine.active
            assert alert.state is AlertState.ACTIVE, "the bed exit is held for another hour"
    (stepped,) = [e for e in logs if e["event"] == "clock_stepped"]
    assert stepped["log_level"] == "warning"
    assert -3601 < stepped["step_s"] < -3599
    assert gw.metrics.registry.get_sample_value("alertgw_clock_steps_total") == 1


async def test_a_forward_clock_step_does_not_call_safety_sensors_silent(tmp_path: Path) -> None:
    """Boot with a stale clock, NTP jumps 6 h ahead: a sensor heard just now is not 'silent'."""
    clock = SteppedClock(offset=-6 * 3600)  # fake-hwclock restored the last shutdown's time
    config = parse_config(YAML.format(db=tmp_path / "j.db"))
    async with running(config, clock=clock, elapsed=time.monotonic, console=io.StringIO()) as r:
        gw = r.gateway
        gw.put(signal("epi-101", "epilepsy", SignalState.REPORT, clock()))
        await asyncio.sleep(0.2)
        clock.offset = 0.0  # NTP synchronises: +6 h in one step
        gw.kick()
        await asyncio.sleep(0.3)
        assert [a.kind for a in gw.engine.active] == [], "night staff rung: SAFETY SENSOR SILENT"
