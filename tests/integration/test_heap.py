"""The daemon freezes its start-up heap so full collections stop walking it."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway import app
from gateway.config import load_config
from tests.conftest import Broker, running
from tests.integration.helpers import peer
from tests.integration.test_rules_mqtt import prefix_of, seed, write_config


def _tracked(obj: object) -> bool:
    """True when the collector still walks `obj` (frozen objects are in no generation)."""
    return any(o is obj for o in gc.get_objects())


@pytest.fixture
def thawed() -> Iterator[None]:
    """Leave the test process's collector as the test found it."""
    gc.unfreeze()
    try:
        yield
    finally:
        gc.unfreeze()


@pytest.mark.usefixtures("thawed")
async def test_start_up_heap_is_frozen_and_a_reload_refreezes_it(
    broker: Broker, tmp_path: Path
) -> None:
    """Config and engine leave the collector's walk once ready; a reload frees the old config."""
    path = write_config(tmp_path, broker.port, hold_off=45)
    async with (
        running(load_config(path), freeze_heap=True) as r,
        peer(broker.port, prefix_of(path)) as p,
    ):
        gw = r.gateway
        assert gc.get_freeze_count() > 1000
        assert not _tracked(gw.config)
        assert not _tracked(gw.engine)
        old_rules = gw.config.rules
        path.write_text(path.read_text().replace("hold_off: 45", "hold_off: 600"))
        assert gw.reload() is True
        assert gw.config.rules[0].hold_off == 600
        assert not _tracked(gw.config)  # the new config is frozen in turn
        assert old_rules[0].hold_off == 45
        await seed(p)
        await p.z2m("rom102/tilstede", {"occupancy": False})
        await p.z2m("rom102/snor", {"action": "single"})  # still routes after all that
        _, msg = await p.next(timeout=5)
        assert (msg["type"], msg["kind"]) == ("ring", "pull_cord")


@pytest.mark.usefixtures("thawed")
async def test_a_gateway_in_a_test_or_tool_leaves_the_heap_alone(
    broker: Broker, tmp_path: Path
) -> None:
    """Only the daemon freezes: embedding processes keep their collector as it was."""
    path = write_config(tmp_path, broker.port, hold_off=45)
    async with running(load_config(path)) as r:
        assert gc.get_freeze_count() == 0
        assert _tracked(r.gateway.engine)


def test_the_daemon_entry_point_freezes(monkeypatch: pytest.MonkeyPatch) -> None:
    """`alertgw run` goes through `app.run`, which asks the gateway to freeze its heap."""
    seen: dict[str, object] = {}

    class Probe:
        def __init__(self, config: object, **kwargs: object) -> None:
            seen.update(kwargs)

        async def run(self, trigger: object) -> None:
            return None

    monkeypatch.setattr(app, "Gateway", Probe)
    asyncio.run(app.run(object(), shutdown_trigger=asyncio.Event().wait))  # type: ignore[arg-type]
    assert seen.get("freeze_heap") is True
