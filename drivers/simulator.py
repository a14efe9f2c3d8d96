"""The demo's built-in source: plays a simulated night at accelerated speed."""

from __future__ import annotations

import asyncio
import time

import structlog

from gateway.config import Config, SourceConfig
from gateway.metrics import Metrics
from gateway.ports import Inbound, Put
from gateway.simulate import NightSimulator

log = structlog.get_logger("alertgw.simulator")


class SimulatedSource:
    """Replays `NightSimulator` nights in real time divided by `speed`."""

    def __init__(
        self, *, name: str, source: SourceConfig, config: Config, metrics: Metrics
    ) -> None:
        self.name = name
        self._src = source
        self._config = config
        # Kind and configured name, like ESPA's `espa[link]`: a bare source name could be
        # "mqtt" or "console" and share that driver's series.
        self._gauge = metrics.connected.labels(driver=f"simulator[{name}]")

    async def run(self, put: Put) -> None:
        """Play nights forever (or once when `loop` is false)."""
        self._gauge.set(1)  # no link to lose: up while it plays
        try:
            await self._play(put)
        finally:
            self._gauge.set(0)

    async def _play(self, put: Put) -> None:
        night = 0
        while True:
            sim = NightSimulator(
                self._config, seed=self._src.seed + night, base_topic=self._src.base_topic
            )
            events = sim.night()
            log.info(
                "simulated_night_started",
                source=self.name,
                night=night,
                events=len(events),
                speed=self._src.speed,
            )
            start = time.monotonic()
            for ev in events:
                due = start + ev.t / self._src.speed
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                put(Inbound(self.name, ev.topic, ev.payload, time.time()))
            night += 1
            if not self._src.loop:
                await asyncio.Event().wait()  # stay alive; the supervisor owns our lifetime
