"""A handset channel that prints what each handset would ring: the demo's handset view."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Mapping
from typing import TextIO

from gateway.config import HandsetConfig
from gateway.metrics import Metrics
from gateway.model import Delivery, Response, ResponseKind
from gateway.ports import Put

_MARK = {"ring": "RING  ", "update": "UPDATE", "cancel": "CANCEL"}


class ConsoleChannel:
    """Prints deliveries; optionally answers like a nurse who accepts after a delay."""

    def __init__(
        self,
        *,
        handsets: Mapping[str, HandsetConfig],
        metrics: Metrics,
        out: TextIO | None = None,
    ) -> None:
        self.name = "console"
        # Like the MQTT and ESPA links, so `alertgw_driver_connected == 0` or `absent()`
        # rules see every channel; printing has no link to lose, so it is up while it runs.
        self._gauge = metrics.connected.labels(driver=self.name)
        self._handsets = dict(handsets)
        self._out = out or sys.stdout
        self._accepts: asyncio.Queue[tuple[float, Delivery]] = asyncio.Queue()
        # Rings waiting for their accept, and those of them cancelled meanwhile: accepting a
        # cleared or resolved alert is refused as unknown_alert, a warning in every demo.
        self._waiting: dict[tuple[str, str], int] = {}
        self._cancelled: set[tuple[str, str]] = set()

    async def run(self, put: Put) -> None:
        """Answer rings like a nurse on handsets configured with `auto_accept`."""
        self._gauge.set(1)
        try:
            while True:
                due, delivery = await self._accepts.get()
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                key = (delivery.handset, delivery.alert_id)
                self._waiting[key] -= 1
                if not self._waiting[key]:
                    del self._waiting[key]
                if key in self._cancelled:
                    if key not in self._waiting:
                        self._cancelled.discard(key)
                    continue
                put(Response(delivery.handset, delivery.alert_id, ResponseKind.ACCEPT, time.time()))
        finally:
            self._gauge.set(0)

    async def send(self, delivery: Delivery) -> None:
        """Print one handset message."""
        p = delivery.payload
        hs = self._handsets.get(delivery.handset)
        who = hs.name if hs and hs.name else delivery.handset
        stamp = time.strftime("%H:%M:%S")
        prio = str(p.get("priority", "")).upper()
        extra = f" x{p['count']}" if int(p.get("count", 1)) > 1 else ""
        state = p.get("state", "")
        line = (
            f"{stamp}  {who:<10} {_MARK.get(delivery.action, delivery.action):<6} "
            f"{prio:<8} {p.get('text', '')}{extra}  [{state}] alert={p.get('alert_id')}\n"
        )
        self._out.write(line)
        self._out.flush()
        key = (delivery.handset, delivery.alert_id)
        if delivery.action == "ring" and hs is not None and hs.auto_accept is not None:
            # Rings come in order and the delay is fixed, so a FIFO keeps deadlines sorted.
            self._accepts.put_nowait((time.monotonic() + hs.auto_accept, delivery))
            self._waiting[key] = self._waiting.get(key, 0) + 1
            self._cancelled.discard(key)  # ringing again: answer it again
        elif delivery.action == "cancel" and key in self._waiting:
            self._cancelled.add(key)
