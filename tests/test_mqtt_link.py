"""MqttLink's bookkeeping that needs no broker: overdue PUBACKs."""

from __future__ import annotations

import asyncio

import pytest

from drivers.mqtt import MqttLink, _raise_if_cancelled
from gateway.config import MqttConfig
from gateway.errors import DeliveryError
from gateway.metrics import Metrics
from gateway.model import Delivery, Signal, SignalState
from gateway.ports import Item


async def test_overdue_puback_fails_its_delivery_and_a_fresh_one_waits() -> None:
    """The once-a-second sweep fails publishes past PUBACK_TIMEOUT, and only those."""
    link = MqttLink(config=MqttConfig(), sources={}, handsets={"h1": "hs/h1"}, metrics=Metrics())
    loop = asyncio.get_running_loop()
    overdue: asyncio.Future[None] = loop.create_future()
    fresh: asyncio.Future[None] = loop.create_future()
    link._acks.update({1: overdue, 2: fresh})
    link._ack_deadlines.extend([(loop.time() - 0.1, 1, overdue), (loop.time() + 60, 2, fresh)])
    link._sweep_acks()
    try:
        with pytest.raises(DeliveryError, match="no PUBACK"):
            await overdue
        assert not fresh.done()
        assert list(link._acks) == [2]
    finally:
        assert link._sweeper is not None
        link._sweeper.cancel()


async def test_submit_without_a_session_fails_at_once() -> None:
    """A handset message while the broker is down fails its future (the window retries)."""
    link = MqttLink(config=MqttConfig(), sources={}, handsets={"h1": "hs/h1"}, metrics=Metrics())
    fut = link.submit(Delivery("a1", "h1", 1, "ring", {"alert_id": "a1"}))
    with pytest.raises(DeliveryError, match="not connected"):
        await fut


async def test_a_cancellation_swallowed_by_wait_for_is_raised_again() -> None:
    """aiomqtt waits for CONNACK with wait_for, which on 3.11 can swallow a cancellation.

    Cancelling in the same iteration as the awaited result completes reproduces it; the
    session's check after each such wait must end the task instead of running on.
    """
    loop = asyncio.get_running_loop()
    connack: asyncio.Future[int] = loop.create_future()
    ran_on = asyncio.Event()

    async def session() -> None:
        await asyncio.wait_for(connack, 10)
        _raise_if_cancelled()
        ran_on.set()  # without the check, a "cancelled" session would carry on from here
        await asyncio.sleep(10)

    task = asyncio.create_task(session())
    await asyncio.sleep(0)
    connack.set_result(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    assert not ran_on.is_set()


def test_a_refused_subscription_raises_link_down_once_and_clears_when_granted() -> None:
    """SUBACK 0x80 raises one link_down per filter (not per session); a later grant clears it."""
    metrics = Metrics()
    link = MqttLink(config=MqttConfig(), sources={"z": ["z/#"]}, handsets={}, metrics=metrics)
    got: list[Item] = []
    link._check_subscriptions(["z/#", "r/1"], [1, 0x80], got.append)
    link._check_subscriptions(["z/#", "r/1"], [1, 0x80], got.append)  # the next session
    assert [(s.kind, s.device, s.state) for s in got if isinstance(s, Signal)] == [
        ("link_down", "mqtt subscription r/1", SignalState.RAISED)
    ]
    assert metrics.subscription_refused.labels("r/1")._value.get() == 1
    link._check_subscriptions(["z/#", "r/1"], [1, 1], got.append)
    assert [s.state for s in got if isinstance(s, Signal)] == [
        SignalState.RAISED,
        SignalState.CLEARED,
    ]
    assert metrics.subscription_refused.labels("r/1")._value.get() == 0
