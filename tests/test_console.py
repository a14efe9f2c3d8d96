"""The console handset channel: what it prints and how a demo nurse answers."""

from __future__ import annotations

import asyncio
import io

from drivers.console import ConsoleChannel
from gateway.config import HandsetConfig
from gateway.metrics import Metrics
from gateway.model import Delivery, Response, ResponseKind


def delivery(alert_id: str, action: str, seq: int = 1) -> Delivery:
    """A console message for handset n1 about `alert_id`."""
    payload = {"alert_id": alert_id, "priority": "high", "text": "Call room 101", "state": "x"}
    return Delivery(alert_id=alert_id, handset="n1", seq=seq, action=action, payload=payload)


async def test_auto_accept_skips_an_alert_cancelled_meanwhile() -> None:
    """A ring cancelled before the demo nurse's delay is not accepted (unknown_alert noise)."""
    out = io.StringIO()
    channel = ConsoleChannel(
        handsets={"n1": HandsetConfig(channel="console", auto_accept=0)},
        metrics=Metrics(),
        out=out,
    )
    answers: list[object] = []
    last = asyncio.Event()

    def put(item: object) -> None:
        answers.append(item)
        if isinstance(item, Response) and item.alert_id == "b":
            last.set()

    await channel.send(delivery("a", "ring"))
    await channel.send(delivery("a", "cancel", seq=2))
    await channel.send(delivery("b", "ring"))
    task = asyncio.create_task(channel.run(put))
    try:
        await asyncio.wait_for(last.wait(), 5)
    finally:
        task.cancel()
    assert [(r.alert_id, r.kind) for r in answers if isinstance(r, Response)] == [
        ("b", ResponseKind.ACCEPT)
    ]
    assert [line.split()[2] for line in out.getvalue().splitlines()] == ["RING", "CANCEL", "RING"]
