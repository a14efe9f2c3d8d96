"""The daemon: one supervisor TaskGroup owning every driver, the router and deliveries."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import functools
import gc
import hashlib
import logging
import math
import signal
import sqlite3
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

import orjson
import structlog
from prometheus_client import start_http_server

from drivers.console import ConsoleChannel
from drivers.espa_serial import EspaLink, build_espa
from drivers.mqtt import MqttLink
from drivers.simulator import SimulatedSource
from gateway.backoff import Backoff
from gateway.clockstep import ClockWatch, clock_synchronized, elapsed_clock
from gateway.config import Config, handset_topic, load_config
from gateway.decoders import MAX_PAYLOAD, Decoder, make_decoder
from gateway.engine import CONDITION_PREFIX, Engine, Outcome, Transition, safe_text
from gateway.errors import (
    ConfigError,
    DecodeError,
    DeliveryError,
    JournalError,
    PermanentDeliveryError,
    ShutdownError,
    UnheardDeliveryError,
)
from gateway.espa.decode import call_address
from gateway.journal import PRUNE_CLOCK_KEY, PRUNE_STEP, Journal, StoredResponse
from gateway.metrics import Metrics
from gateway.model import (
    DUP_WINDOW,
    Alert,
    Delivery,
    DeliveryState,
    Response,
    ResponseKind,
    Signal,
    SignalState,
)
from gateway.pidlock import PidLock
from gateway.ports import (
    DeliveryReport,
    HandsetChannel,
    HandsetStatus,
    Inbound,
    Item,
    RawResponse,
    Source,
)
from gateway.reloadstatus import ReloadReporter, status_path
from gateway.sdnotify import Notifier, watchdog_interval, watchdog_loop

log = structlog.get_logger("alertgw")
Clock = Callable[[], float]
ShutdownTrigger = Callable[[], Awaitable[None]]
BATCH_MAX = 512
GEN = "gen:"  # levels-table prefix for per-key alert generations
SALT = "alert_id_salt"  # per-installation salt of derived alert ids
START = "daemon_start"  # how many times alertgw has started on this journal (Engine.use_start)
MQTT_SESSION = "mqtt_session:"  # levels-table prefix: a persistent session was up
SEND_WINDOW = 64
REFUSED_HOLD = 30.0  # s: a refused message moves its alert on at most this often
COMMIT_GATHER = 64  # signals that start a commit without waiting for journal.commit_delay
# Signal rows kept in memory while the journal cannot be written (about 1 KB each); older
# ones are dropped, counted and logged. Alerts and their timelines are always kept.
UNWRITTEN_SIGNALS_CAP = 100_000
# A commit that has not returned by then is a hung write (a dying SD card, a stalled mount).
JOURNAL_STALL_AFTER = 5.0
# The broker out of reach this long is a technical alarm (a restart takes a few seconds).
BROKER_DOWN_ALARM_AFTER = 30.0
REJECT_LOG_INTERVAL = 60.0
# The router reads the wall clock at least this often, to see a step before a deadline.
WALL_RECHECK = 1.0


class Gateway:
    """Wires config, journal, engine and drivers; `run()` until shut down."""

    def __init__(
        self,
        config: Config,
        *,
        clock: Clock | None = None,
        elapsed: Clock | None = None,
        metrics: Metrics | None = None,
        console: TextIO | None = None,
        drain_timeout: float | None = None,
        serve_metrics: bool = True,
        freeze_heap: bool = False,
        clock_synced: Callable[[], bool] | None = None,
    ) -> None:
        self.config = config
        self._freeze_heap = freeze_heap
        self.clock = clock or time.time
        # Whether the wall clock is known good (NTP); a virtual clock never is.
        self._clock_synced = clock_synced or (
            clock_synchronized if clock is None else (lambda: False)
        )
        # An injected clock with no elapsed-time clock is a virtual time base: never stepped.
        if elapsed is None:
            elapsed = elapsed_clock if clock is None else self.clock
        self._clock_watch = ClockWatch(self.clock, elapsed)
        self.metrics = metrics or Metrics()
        self.journal = Journal(config.journal.path, synchronous=config.journal.synchronous)
        self.engine = Engine(config, now=self.clock())
        # Read when scraped, not set per signal: two gauge writes (a lock each) and a sum over
        # the lanes on every route and every PUBACK were hot-path work nobody looked at.
        self.metrics.active_alerts.set_function(lambda: self.engine.active_count)
        self.metrics.outbox_depth.set_function(self._outbox_depth)
        # Decided once: logging is configured before a gateway is built (`alertgw run`).
        # A disabled call through structlog's lazy proxy still costs ~1 us (an attribute
        # lookup, a bind, the keyword dict), and routing made 2.5 of them a signal.
        self._log_info = log.is_enabled_for(logging.INFO)
        self._log_debug = log.is_enabled_for(logging.DEBUG)
        self.drain_timeout = (
            drain_timeout if drain_timeout is not None else config.journal.drain_timeout
        )
        self._serve_metrics = serve_metrics and config.metrics.enabled
        self._inbox: asyncio.Queue[Item | None] = asyncio.Queue()
        # Decisions not yet committed: the journal task writes them in order, in one
        # transaction per gathering, and only then acknowledges their signals to the broker.
        self._pending = _Pending()
        self._confirmed: list[tuple[int, DeliveryState]] = []
        self._journal_wake = asyncio.Event()
        self._journal_full = asyncio.Event()
        self._journal_idle = asyncio.Event()
        self._journal_idle.set()
        self._draining = False
        self._inline = False  # True while the router runs: put() may route on the spot
        self._routing = False  # a batch is being routed (inline or by the router task)
        self._router_wakes_at = -math.inf  # when the router's sleep ends, while it sleeps
        self._fatal: Exception | None = None  # an inline routing error, for the router
        self._soon: list[Inbound] = []  # put() while the router idles; see _route_soon
        self._live = False  # lanes may start sends (their TaskGroup is running)
        self._reload_pending = False  # a SIGHUP came while starting: reload once ready
        self._reload_status = ReloadReporter(status_path(config.journal.path))
        self._tg: asyncio.TaskGroup | None = None
        self._uncommitted_ids: set[str] = set()  # a redelivery may overtake its commit
        self._uncommitted_responses: set[str] = set()  # handset answers, likewise
        self._journal_down = False  # commits failing: acknowledge signals once routed
        self._down_status = ""  # the systemd status line while the journal is down
        self._restored_from_file = False  # a start that could not open the journal read it
        self._journal_newest: float | None = None  # newest journaled input at start
        self._reject_logged: dict[tuple[str, str, str], float] = {}
        self._handset_state: dict[str, bool] = {}  # handset -> online, as its app last said
        self._decoders: dict[str, Decoder] = {
            name: make_decoder(name, src.decoder, src.base_topic, config)
            for name, src in config.sources.items()
        }
        self.link: MqttLink | None = None
        self._sources: list[Source] = []
        self._channels: dict[str, HandsetChannel] = {}
        self._build_drivers(console)
        self._lanes = {h: _Lane(h, self._channels.get(h)) for h in config.handsets}
        for lane in self._lanes.values():
            lane.on_settled = functools.partial(self._settle, lane)
            if not hasattr(lane.channel, "submit"):
                # A channel without `submit` (ESPA: one half-duplex line, and pagers know no
                # sequence numbers) gets one message in flight, so a retried ring can never
                # reach the pager after the cancel that followed it.
                lane.limit = 1
        self.ready = asyncio.Event()
        self.notifier = Notifier()
        self._record: TextIO | None = None
        self._last_loop_beat = time.monotonic()

    def kick(self) -> None:
        """Wake the router so it fires due timers now (tests that move an injected clock)."""
        self._inbox.put_nowait(None)

    def reload(self) -> bool:
        """Re-read the config file; swap rules atomically, or keep the running config.

        Either way the outcome goes to the status file `alertgw reload` waits for.
        """
        self.notifier.reloading()
        problems: list[str] = []
        try:
            new = load_config(self.config.source_file)
        except ConfigError as exc:
            problems = exc.problems
        except Exception as exc:  # noqa: BLE001 - a reload must never take the daemon down
            problems = [f"{self.config.source_file}: {type(exc).__name__}: {exc}"]
        else:
            blocked = restart_sections(self.config, new)
            if blocked:
                problems = [f"{new.source_file}: {', '.join(blocked)} changed; restart to apply"]
            else:
                problems = self._apply(new)
        if problems:
            self.metrics.config_reloads.labels("failed").inc()
            for line in problems:
                log.error("config_reload_failed", problem=line, running_config="kept")
            self.notifier.ready("config reload failed; running config kept")
            self._reload_status.report("failed", problems, self.config.source_file)
            return False
        self.metrics.config_reloads.labels("ok").inc()
        if self._freeze_heap:
            freeze_heap()  # the old config's objects are garbage now; the new ones stay
        log.info("config_reloaded", file=new.source_file, rules=len(new.rules))
        self.notifier.ready("config reloaded")
        self.kick()
        self._reload_status.report("applied", file=new.source_file)
        return True

    def _apply(self, new: Config) -> list[str]:
        """Swap in a valid config: new decoders keep the sensors' levels, the engine its alerts.

        Returns the problem if applying failed (a bug, not a bad file): the running config
        then stays whole, and the daemon with it.
        """
        levels: dict[str, object] = {}
        for decoder in self._decoders.values():
            levels.update(decoder.levels())
            # Changes the router has not collected yet (a reload can land while it awaits a
            # duplicate lookup) would otherwise never be journaled.
            self._pending.levels.update(decoder.changed_levels())
        try:
            decoders = {
                name: make_decoder(name, src.decoder, src.base_topic, new)
                for name, src in new.sources.items()
            }
            for decoder in decoders.values():
                decoder.restore(levels)
            self.engine.reconfigure(new, self._now())
        except Exception as exc:  # a bug, not a bad file: the daemon must keep running
            log.exception("config_reload_crashed", file=new.source_file)
            # The engine may hold half of the new config: give it the old one back whole.
            self.engine.reconfigure(self.config, self._now())
            return [f"{new.source_file}: applying it failed: {type(exc).__name__}: {exc}"]
        self._decoders = decoders
        self.config = new
        return []

    def _build_drivers(self, console: TextIO | None) -> None:
        cfg = self.config
        mqtt_sources = {n: s.topics for n, s in cfg.sources.items() if s.type == "mqtt"}
        mqtt_handsets = {
            h: handset_topic(h, hc) for h, hc in cfg.handsets.items() if hc.channel == "mqtt"
        }
        if cfg.mqtt is not None and (mqtt_sources or mqtt_handsets):
            self.link = MqttLink(
                config=cfg.mqtt,
                sources=mqtt_sources,
                handsets=mqtt_handsets,
                metrics=self.metrics,
                fair_share={
                    n: (s.max_rate, s.max_burst)
                    for n, s in cfg.sources.items()
                    if s.type == "mqtt" and s.decoder == "zigbee2mqtt"
                },
                status_from=[h for h in mqtt_handsets if cfg.handsets[h].reports_status],
            )
            for h in mqtt_handsets:
                self._channels[h] = self.link
        console_handsets = {h: hc for h, hc in cfg.handsets.items() if hc.channel == "console"}
        if console_handsets:
            channel = ConsoleChannel(handsets=console_handsets, metrics=self.metrics, out=console)
            for h in console_handsets:
                self._channels[h] = channel
        espa_sources, espa_channels = build_espa(cfg, self.metrics)
        self._sources.extend(espa_sources)
        self._channels.update(espa_channels)
        for name, src in cfg.sources.items():
            if src.type == "simulator":
                self._sources.append(
                    SimulatedSource(name=name, source=src, config=cfg, metrics=self.metrics)
                )

    def put(self, item: Item) -> None:
        """Accept one inbound item from any driver (called on the loop thread)."""
        if self._draining and isinstance(item, Inbound) and item.redeliverable:
            return  # not acknowledged, so the broker delivers it again after the restart
        if (
            self._inline
            and not self._routing
            and type(item) is Inbound
            and not item.dup
            and self._inbox.empty()
            and self._fatal is None
        ):
            # The router is idle and nothing waits before this item: route it from a plain
            # callback once the driver's read returns, with whatever else that read brought,
            # instead of waking the router task: one task switch less per signal. The MQTT
            # link runs `_route_soon` itself at the end of its read; the callback is for
            # the other drivers (and finds nothing left when the link got there first).
            self._soon.append(item)
            if len(self._soon) == 1:
                asyncio.get_running_loop().call_soon(self._route_soon)
            return
        self._inbox.put_nowait(item)

    def _route_soon(self) -> None:
        batch, self._soon = self._soon, []
        if not batch:
            return  # the router took them first
        self._routing = True
        try:
            self._route(batch, [self._decode_fresh(item) for item in batch])
        except Exception as exc:  # noqa: BLE001 - handed to the router, which raises it
            self._fatal = exc  # put() stops routing inline
            self._inbox.put_nowait(None)
            return
        finally:
            self._routing = False
        due = self.engine.next_deadline()
        if due is not None and due < self._router_wakes_at:
            self._inbox.put_nowait(None)  # a timer earlier than the router's sleep

    async def run(self, shutdown_trigger: ShutdownTrigger | None = None) -> None:
        """Run until `shutdown_trigger` returns, then drain deliveries and exit cleanly."""
        pidlock = PidLock(self.pidfile)
        # Before the pid file names us: `alertgw reload` may signal as soon as it does, and
        # SIGHUP's default action would end the daemon while it opens the journal.
        self._install_reload_handler()
        try:
            pidlock.acquire()
        except OSError as exc:
            # No lock file on a full disk or a read-only mount: the journal will not open
            # either, and routing from memory beats a restart loop that routes nothing.
            pidlock.unwritten = str(exc)
        except BaseException:
            self._remove_reload_handler()
            raise
        if not pidlock.locked:
            log.error("pid_lock_unavailable", file=str(self.pidfile), error=pidlock.unwritten)
        elif pidlock.unwritten:
            log.error("pid_file_unwritten", file=str(self.pidfile), error=pidlock.unwritten)
        try:
            unopened = await self._open_journal()
        except BaseException:
            self._answer_deferred_reload()
            pidlock.release()
            self._remove_reload_handler()
            raise
        server = None
        try:
            self._open_files()  # inside: an unwritable record file still closes the journal
            if unopened is None:
                await self._restore(self.journal)
            else:
                await self._start_unjournaled(unopened)
            if self._serve_metrics:
                server, _ = start_http_server(
                    self.config.metrics.port,
                    self.config.metrics.host,
                    registry=self.metrics.registry,
                )
            log.info(
                "gateway_started",
                site=self.config.site.name,
                handsets=len(self.config.handsets),
                devices=len(self.config.devices),
            )
            try:
                async with asyncio.TaskGroup() as tg:
                    self._tg, self._live = tg, True
                    if self.link is not None:
                        tg.create_task(
                            self.link.run(self.put, after_read=self._route_soon),
                            name="gateway.mqtt",
                        )
                        tg.create_task(
                            self._broker_watch_loop(self.link), name="gateway.broker_watch"
                        )
                    for src in self._sources:
                        tg.create_task(src.run(self.put), name=f"gateway.source[{src.name}]")
                    for channel in {id(c): c for c in self._channels.values()}.values():
                        if channel is not self.link:
                            tg.create_task(
                                channel.run(self.put), name=f"gateway.channel[{channel.name}]"
                            )
                    tg.create_task(self._router_loop(), name="gateway.router")
                    tg.create_task(self._journal_loop(), name="gateway.journal")
                    tg.create_task(self._retention_loop(), name="gateway.retention")
                    for handset, lane in self._lanes.items():
                        tg.create_task(
                            self._handset_loop(lane), name=f"gateway.delivery[{handset}]"
                        )
                    tg.create_task(self._shutdown_loop(shutdown_trigger), name="gateway.shutdown")
                    tg.create_task(self._heartbeat_loop(), name="gateway.heartbeat")
                    interval = watchdog_interval()
                    if interval is not None:
                        tg.create_task(
                            watchdog_loop(self.notifier, interval, healthy=self._healthy),
                            name="gateway.watchdog",
                        )
                    self.ready.set()
                    if self._freeze_heap:
                        freeze_heap()
                    # A start that could not open the journal says so from the first line.
                    self.notifier.ready(self._down_status or f"routing for {self.config.site.name}")
                    if self._reload_pending:
                        self._reload_pending = False
                        self.reload()
            except* ShutdownError:
                log.info("gateway_stopped")
        finally:
            self._tg, self._live = None, False
            self._close_files()
            if server is not None:
                server.shutdown()
                server.server_close()
            # A hung write would hold the close (and the pid lock) for good.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(None if not self._journal_down else 5.0):
                    await self.journal.close()
            self._answer_deferred_reload()
            pidlock.release()
            self._remove_reload_handler()

    async def _open_journal(self) -> str | None:
        """Open the journal; on failure, why (the daemon then starts routing from memory).

        A full disk, a read-only mount after I/O errors, a damaged or newer file: exiting
        would be a systemd restart loop in which no alarm reaches a handset.
        """
        try:
            await self.journal.open()
        except JournalError as exc:
            why = str(exc)
        else:
            return None
        log.error("journal_open_failed", file=str(self.journal.path), error=why)
        return why

    async def _start_unjournaled(self, why: str) -> None:
        """Restore what a read-only look at the journal gives, then route from memory.

        The journal task keeps trying to open the file (see `_commit`) and writes what was
        decided meanwhile once it can.
        """
        reader, unreadable = None, ""
        try:
            reader = await Journal.open_readonly(self.journal.path)
            await self._restore(reader, writable=False)
            self.journal.resume_numbering(await reader.last_outbox_id())
            self._restored_from_file = True
        except (JournalError, sqlite3.Error) as exc:
            unreadable = str(exc)
        finally:
            if reader is not None:
                await reader.close()
        if self._restored_from_file:
            log.warning("journal_restored_read_only", file=str(self.journal.path))
        else:
            log.error("journal_unreadable", file=str(self.journal.path), error=unreadable)
            salt = uuid.uuid4().hex[:12]
            self.engine.use_salt(salt)
            # Written with the first commit: ids derived meanwhile are this salt's.
            self._pending.levels[SALT] = salt
        self._journal_unwritable(why)
        self._journal_wake.set()  # the journal task retries the open from now on

    async def _restore(self, source: Journal, *, writable: bool = True) -> None:
        saved = await source.levels()
        generations = {k[len(GEN) :]: int(v) for k, v in saved.items() if k.startswith(GEN)}
        levels = {
            k: v
            for k, v in saved.items()
            if not k.startswith((GEN, CONDITION_PREFIX, MQTT_SESSION))
            and k not in (SALT, START, PRUNE_CLOCK_KEY)
        }
        salt = str(saved.get(SALT) or uuid.uuid4().hex[:12])
        start = await self._number_start(saved, {SALT: salt}, writable=writable)
        self.engine.use_salt(salt)
        self.engine.use_start(start)
        self._journal_newest = await source.newest_input()
        if self.link is not None and MQTT_SESSION + self.link.session_key in saved:
            self.link.assume_session()
        self.engine.restore_generations(generations)
        for decoder in self._decoders.values():
            decoder.restore(levels)
        restored = await source.active_alerts()
        sources = await source.signal_sources([s.alert.signal_id for s in restored])
        open_calls = []  # alerts whose own condition still holds
        for stored in restored:
            cleared = any(e[1] == "condition_cleared" for e in stored.events)
            self.engine.restore(
                stored.alert,
                stored.handsets,
                stored.last_seq,
                condition_cleared=cleared,
                source=sources.get(stored.alert.signal_id),
                timeline=stored.events,
            )
            if not cleared:
                open_calls.append(stored.alert)
        keys = collections.Counter(a.key for a in open_calls)
        if doubled := [key for key, n in keys.items() if n > 1]:
            # An older alertgw's late open, or a crash between a late open's commits: the
            # engine keeps one per key at its first tick (Engine._one_per_key).
            log.warning("journal_alerts_doubled", count=len(doubled), keys=doubled[:10])
        self._resume_espa_calls(open_calls, sources)
        self.engine.restore_conditions(
            {k: v for k, v in saved.items() if k.startswith(CONDITION_PREFIX)}
        )
        last_digest = self.engine.last_digest
        if last_digest is not None:
            # Rows carry the journal's wall time, decisions the engine's: a day's slack
            # covers a clock step between them; the engine picks the owed ones exactly.
            for stored in await source.finished_in_digest(last_digest - 86400.0):
                self.engine.restore_finished(stored.alert, stored.events)
        pending = await source.pending_deliveries()
        if source.unreadable:
            # Not fatal: a start that dies on one bad row is a restart loop routing nothing.
            log.error(
                "journal_rows_unreadable",
                file=str(source.path),
                count=len(source.unreadable),
                rows=source.unreadable[:10],
            )
        for d in pending:
            self._enqueue(d, 0.0)
        if restored or pending:
            log.info(
                "gateway_restored", active_alerts=len(restored), pending_deliveries=len(pending)
            )

    def _resume_espa_calls(self, alerts: Sequence[Alert], sources: dict[str, str]) -> None:
        """Tell each nurse-call line which of its calls the journal holds open."""
        drivers = (*self._sources, *self._channels.values())
        lines = {d.source: d for d in drivers if isinstance(d, EspaLink) and d.source}
        calls: dict[str, list[str]] = {}
        for alert in alerts:
            source = sources.get(alert.signal_id)
            if source in lines and (address := call_address(alert.device, self.config)):
                calls.setdefault(source, []).append(address)
        for source, addresses in calls.items():
            lines[source].resume_calls(addresses)

    async def _shutdown_loop(self, trigger: ShutdownTrigger | None) -> None:
        if trigger is None:
            await asyncio.Event().wait()
        else:
            await trigger()
        log.info("shutdown_requested", drain_timeout=self.drain_timeout)
        self.notifier.stopping()
        self._draining = True
        if self.link is not None:
            released, left = self.link.release_parked()
            if released or left:
                log.info("rate_limited_released", messages=released, left_to_broker=left)
        self._journal_full.set()  # commit what is gathered now, not after commit_delay
        try:
            async with asyncio.timeout(self.drain_timeout):
                await self._inbox.join()
                for lane in self._lanes.values():
                    await lane.idle.wait()
                if not self._journal_down:  # else it would only wait out the drain timeout
                    await self._journal_idle.wait()
        except TimeoutError:
            log.warning("shutdown_drain_timeout", left_in_outbox=self._outbox_depth())
        if self._journal_down:
            # Acknowledged while the journal failed: these records end with this process.
            log.error(
                "journal_unwritten_at_exit",
                signals=len(self._pending.signals),
                transitions=len(self._pending.transitions),
            )
        if self.link is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await self.link.publish_status("offline")
        raise ShutdownError

    async def _router_loop(self) -> None:
        self._inline = True
        try:
            await self._router_loop_body()
        finally:
            self._inline = False

    async def _router_loop_body(self) -> None:
        while True:
            if self._fatal is not None:
                raise self._fatal
            batch: list[Item | None] = []
            now = self._now()  # a step found here moves the deadlines before the sleep
            deadline = self.engine.next_deadline()
            # Capped: shift changes, schedule boundaries and the digest follow the wall
            # clock, and a forward step (NTP, a restored RTC) brings them closer than the
            # monotonic sleep computed before it knows. Idle, that is one look a second.
            delay = WALL_RECHECK if deadline is None else min(WALL_RECHECK, deadline - now)
            delay = max(0.0, delay)
            if not self._inbox.empty():
                batch.append(self._inbox.get_nowait())
            else:
                self._router_wakes_at = now + delay
                try:
                    try:
                        async with asyncio.timeout(delay):
                            batch.append(await self._inbox.get())
                    except TimeoutError:
                        pass  # a timer is due, or the clock is to be read: an empty batch
                finally:
                    self._router_wakes_at = -math.inf
            while len(batch) < BATCH_MAX:
                try:
                    batch.append(self._inbox.get_nowait())
                except asyncio.QueueEmpty:
                    break
            self._route_soon()  # what arrived before this batch goes first
            if self._fatal is not None:
                raise self._fatal
            self._routing = True
            try:
                await self._process([item for item in batch if item is not None])
            finally:
                self._routing = False
            for _ in batch:
                self._inbox.task_done()

    async def _process(self, batch: list[Item]) -> None:
        # Decoding first is safe (decoders never look at the engine) and keeps the only
        # await, the journal's duplicate lookup, out of the routing below.
        decoded = [await self._decode(item) for item in batch if isinstance(item, Inbound)]
        kept, late_acks = await self._fresh_responses(batch)
        self._route(kept, decoded)
        if late_acks:
            # Their first copies are in this batch or an earlier one not yet committed.
            self._pending.acks.extend(late_acks)
            self._wake_journal(0)

    async def _fresh_responses(
        self, batch: list[Item]
    ) -> tuple[list[Item], list[Callable[[], None]]]:
        """`batch` without handset answers the broker redelivered, and the acks they need.

        An answer is acknowledged to the broker after its commit; a crash in between makes
        the broker send it again (DUP) to the next session. Applied twice, a reject would
        escalate a second time, and a reject then accept would reopen the alert the nurse
        had taken. Only answers with the DUP flag are looked up. A repeat whose first copy
        is not committed yet is acknowledged with the next commit (the late acks).
        """
        if not any(isinstance(i, RawResponse) and i.dup and i.packet_id for i in batch):
            return batch, []
        kept: list[Item] = []
        late_acks: list[Callable[[], None]] = []
        here: set[str] = set()  # answers earlier in this batch
        for item in batch:
            if isinstance(item, RawResponse) and item.packet_id:
                rid = response_id(item)
                if item.dup:
                    if rid in here or rid in self._uncommitted_responses:
                        if item.ack is not None:
                            late_acks.append(item.ack)
                        self._response_duplicate(item)
                        continue
                    if await self._seen(rid, item.received_at, lookup=self.journal.seen_response):
                        if item.ack is not None:
                            item.ack()  # its first copy is journaled
                        self._response_duplicate(item)
                        continue
                here.add(rid)
            kept.append(item)
        return kept, late_acks

    def _response_duplicate(self, item: RawResponse) -> None:
        self.metrics.duplicates.labels("handsets").inc()
        log.info("response_duplicate_dropped", handset=item.handset, packet_id=item.packet_id)

    def _route(self, batch: Sequence[Item], decoded: list[list[Signal]]) -> None:
        """Route one batch; `decoded` holds the signals of its Inbound items, in order."""
        now = self._now()
        signals: list[Signal] = []
        outcome = self.engine.tick(now)
        acks = []
        urgent = False  # a source waits on the line for this batch's commit
        received: dict[str, float] = {}
        fresh = iter(decoded)
        for item in batch:
            if isinstance(item, Inbound):
                if item.ack is not None:
                    acks.append(item.ack)
                    # An ESPA call's ACK is held until its commit, and the nurse-call line
                    # waits for it: commit now rather than after journal.commit_delay.
                    urgent = urgent or not item.redeliverable
                if self._record is not None:
                    self._record_inbound(item)
                # Sent again if a crash comes before its commit: MQTT QoS 1 whose ack waits
                # for the commit. Not QoS 0, an ESPA call (retried for seconds only), nor
                # anything acknowledged at once while the journal cannot be written.
                once = not item.redeliverable or self._journal_down
                for sig in next(fresh):
                    if sig.state is not SignalState.REPORT:
                        signals.append(sig)
                        received[sig.id] = item.received_at
                    outcome.extend(self.engine.handle_signal(sig, now, once=once))
            elif isinstance(item, Signal):
                self.metrics.signal_count.inc(item.source, item.kind, item.state.value)
                signals.append(item)
                received[item.id] = item.received_at or now
                outcome.extend(self.engine.handle_signal(item, now, once=True))
            elif isinstance(item, HandsetStatus):
                online = self._handset_online(item)
                if online is not None:
                    outcome.extend(self.engine.handset_status(item.handset, online, now))
            elif isinstance(item, DeliveryReport):
                if item.status == "delivered":
                    outcome.extend(self.engine.note(item.alert_id, "delivered", item.handset, now))
                else:
                    self.metrics.deliveries.labels(item.handset, item.action, "failed").inc()
                    outcome.extend(
                        self.engine.handle_delivery_failed(
                            item.handset, item.alert_id, now, why=item.detail, action=item.action
                        )
                    )
            else:
                if isinstance(item, RawResponse) and item.ack is not None:
                    acks.append(item.ack)
                response = item if isinstance(item, Response) else self._parse_response(item)
                if response is None:
                    continue
                if isinstance(item, RawResponse) and item.packet_id:
                    # Journaled by id with the batch, so a broker redelivery after a crash
                    # is known (see _fresh_responses) and not applied a second time.
                    rid = response_id(item)
                    self._uncommitted_responses.add(rid)
                    self._pending.responses.append(
                        (
                            rid,
                            item.handset,
                            response.alert_id,
                            response.kind.value,
                            item.received_at,
                        )
                    )
                result = self.engine.handle_response(response, now)
                self.metrics.responses.labels(response.handset, response.kind.value).inc()
                if result.rejected:
                    self._reject("handsets", result.rejected, response.handset)
                outcome.extend(result)
        # No await from here on: the journal task swaps `_pending` between commits.
        pending = self._pending
        levels = pending.levels
        for decoder in self._decoders.values():
            levels.update(decoder.changed_levels())
        if generations := self.engine.changed_generations():
            levels.update({GEN + k: v for k, v in generations.items()})
        levels.update(self.engine.changed_conditions())
        # Handset messages leave before their decisions commit: the commit is off the
        # latency path. A crash in between is safe: the broker redelivers the unacknowledged
        # signal, the engine re-creates the same alert id (it derives ids from key,
        # generation and signal, and the generation was not committed either), and handsets
        # drop the repeat by (alert_id, seq). Inputs nothing resends get ids of this start's
        # own, and the seqs of restored alerts, and of new ones after their raise, jump
        # past the earlier start's (Engine.use_start).
        stored = self._send(outcome, received)
        pending.signals.extend(signals)
        if self._journal_down:
            for ack in acks:
                ack()  # see _journal_unwritable
        else:
            pending.acks.extend(acks)
        if signals or acks or outcome.transitions or stored or levels:
            self._wake_journal(len(signals))
            if urgent:
                self._journal_full.set()
        self._count(outcome.transitions)

    def _send(self, outcome: Outcome, received: Mapping[str, float]) -> list[Delivery]:
        """Number and send `outcome`'s handset messages; stage them and its transitions.

        `received`: when each signal arrived, by id, so a ring's latency counts from it.
        """
        stored = self.journal.number(outcome.deliveries)
        for d in stored:
            t0 = received.get(str(d.payload.get("signal_id")), 0.0) if d.action == "ring" else 0.0
            self._enqueue(d, t0)
        pending = self._pending
        pending.transitions.extend(outcome.transitions)
        pending.deliveries.extend(stored)
        return stored

    def _take(self, outcome: Outcome) -> None:
        """Send and journal an outcome decided outside a routed batch."""
        stored = self._send(outcome, {})
        self._pending.levels.update(self.engine.changed_conditions())
        if outcome.transitions or stored:
            self._wake_journal(0)
        self._count(outcome.transitions)

    def _count(self, transitions: Sequence[Transition]) -> None:
        for t in transitions:
            self.metrics.alert_count.inc(t.alert.kind, t.event)
            if t.reason and t.event in ("suppressed", "cancelled", "resolved", "repeated"):
                self.metrics.suppressed.labels(t.reason, t.alert.rule or "-").inc()
            elif t.event == "escalated":
                self.metrics.escalations.labels(t.alert.kind, t.reason).inc()
            if self._log_info:
                log.info(
                    "alert_transition",
                    transition=t.event,
                    alert_id=t.alert.id,
                    kind=t.alert.kind,
                    room=t.alert.room,
                    detail=t.detail,
                )

    def _decode_raw(self, item: Inbound) -> list[Signal]:
        decoder = self._decoders.get(item.source)
        if decoder is None:
            return []
        try:
            decoded = decoder.decode(
                item.topic,
                item.payload,
                item.received_at,
                retained=item.retain,
                packet_id=item.packet_id,
            )
        except DecodeError as exc:
            self._reject(item.source, exc.reason, item.topic, exc.detail)
            return []
        for sig in decoded:
            self.metrics.signal_count.inc(sig.source, sig.kind, sig.state.value)
        return decoded

    def _decode_fresh(self, item: Inbound) -> list[Signal]:
        """Decode an item the broker sends for the first time (no duplicate lookup)."""
        decoded = self._decode_raw(item)
        for sig in decoded:
            if sig.state is not SignalState.REPORT:
                self._uncommitted_ids.add(sig.id)
        return decoded

    async def _seen(
        self,
        item_id: str,
        received_at: float,
        *,
        lookup: Callable[[str, float], Awaitable[bool]] | None = None,
    ) -> bool:
        """Whether the journal holds the signal (or answer, with `lookup`); unknown is no.

        The lookup shares the database thread with a commit that may hang or fail: ringing
        a redelivered signal twice is better than routing nothing behind it.
        """
        if self._journal_down:
            return False
        try:
            async with asyncio.timeout(1.0):
                find = lookup or self.journal.seen_signal
                return await find(item_id, self._dup_since(received_at))
        except (TimeoutError, sqlite3.Error) as exc:
            log.warning("duplicate_lookup_failed", item_id=item_id, error=repr(exc))
            return False

    def _dup_since(self, received_at: float) -> float:
        """How far back the first copy of a broker redelivery received at `received_at` may be.

        The broker redelivers what it sent on an earlier connection and never saw
        acknowledged, so the first copy came shortly before that connection ended: the
        last session's end in this process, or the newest journaled input of the process
        before. Counting the hour back from the redelivery instead made a message whose
        PUBACK was lost with a connection, and that came back after an outage over an
        hour, a new signal: a press that was answered long ago rang again.
        """
        ended = self.link.session_ended_at if self.link is not None else None
        if ended is None:
            ended = self._journal_newest
        return min(received_at, received_at if ended is None else ended) - DUP_WINDOW

    async def _decode(self, item: Inbound) -> list[Signal]:
        if not item.dup:
            return self._decode_fresh(item)
        out = []
        for sig in self._decode_raw(item):
            if sig.state is SignalState.REPORT:
                out.append(sig)  # proof of life for supervision; not journaled
                continue
            if sig.id in self._uncommitted_ids or await self._seen(sig.id, item.received_at):
                self.metrics.duplicates.labels(item.source).inc()
                log.info("signal_duplicate_dropped", source=item.source, signal_id=sig.id)
                continue
            self._uncommitted_ids.add(sig.id)
            out.append(sig)
        return out

    def _now(self) -> float:
        """Wall time for the engine; a stepped clock first moves the engine's deadlines."""
        now, step = self._clock_watch.read()
        if step:
            log.warning("clock_stepped", step_s=round(step, 3))
            self.metrics.clock_steps.inc()
            self.engine.shift(step)
        return now

    def _parse_response(self, raw: RawResponse) -> Response | None:
        if raw.retain:
            # An app that publishes answers retained: the broker sends the last one again at
            # every subscribe (each start and reconnect). Applied, an accept long given
            # back would take the alert again and stop its escalation.
            self._reject("handsets", "retained_response", raw.handset)
            return None
        response = parse_response(raw)
        if response is None:
            self._reject("handsets", "malformed_response", raw.handset)
        return response

    def _handset_online(self, item: HandsetStatus) -> bool | None:
        """What a handset app's status message says: online, offline, or None (rejected)."""
        text = item.payload.strip()
        state: object = text.decode("utf-8", "replace").lower()
        if text.startswith(b"{"):
            try:
                state = orjson.loads(text).get("state")
            except (orjson.JSONDecodeError, AttributeError):
                state = None
        if not text:
            # An empty retained message clears the topic (the app was removed, or a
            # technician cleared a stale "offline"): nothing says it is offline any more.
            state = "online"
        if state not in ("online", "offline"):
            self._reject("handsets", "bad_status", item.handset, repr(item.payload[:40]))
            return None
        online = state == "online"
        if self._handset_state.get(item.handset) is not online:
            self._handset_state[item.handset] = online
            if online:
                log.info("handset_online", handset=item.handset)
            else:
                log.warning("handset_offline", handset=item.handset)
        self.metrics.handset_online.labels(item.handset).set(1 if online else 0)
        return online

    def _reject(self, source: str, reason: str, subject: str, detail: str = "") -> None:
        self.metrics.rejects.labels(source, reason).inc()
        key = (source, reason, subject)
        now = time.monotonic()
        # One line per subject and reason per interval: a babbling device must not flood logs.
        if now - self._reject_logged.get(key, -REJECT_LOG_INTERVAL) >= REJECT_LOG_INTERVAL:
            self._reject_logged[key] = now
            if len(self._reject_logged) > 10_000:
                self._reject_logged.clear()
            log.warning(
                "input_rejected",
                source=source,
                reason=reason,
                subject=subject[:80],
                detail=detail[:120],
            )

    @property
    def pidfile(self) -> Path:
        """Where the daemon writes its pid, for `alertgw reload`."""
        return Path(str(self.config.journal.path) + ".pid")

    def _open_files(self) -> None:
        # Start-up and shutdown only; never on the hot path.
        if self.config.record is not None:
            path = Path(self.config.record.path)
            path.parent.mkdir(parents=True, exist_ok=True)
            self._record = path.open("a", encoding="utf-8")

    def _close_files(self) -> None:
        if self._record is not None:
            self._record.close()
            self._record = None

    def _record_inbound(self, item: Inbound) -> None:
        assert self._record is not None
        record: dict[str, Any] = {"ts": item.received_at, "topic": item.topic, "payload": None}
        # Replay needs them to do what the daemon did: a retained press is old news, and a
        # redelivery of a journaled message is dropped.
        if item.retain:
            record["retain"] = True
        if item.dup:
            record["dup"] = True
        try:
            record["payload"] = orjson.loads(item.payload)
            line = orjson.dumps(record)
        except (orjson.JSONDecodeError, orjson.JSONEncodeError):
            # Not JSON, or JSON orjson reads but cannot write (nested past 254 levels).
            record["payload"] = item.payload.decode("utf-8", "replace")
            line = orjson.dumps(record)
        self._record.write(line.decode() + "\n")

    async def _heartbeat_loop(self) -> None:
        while True:
            self._last_loop_beat = time.monotonic()
            if self._record is not None:
                self._record.flush()
            await asyncio.sleep(1.0)

    def _healthy(self) -> bool:
        # The watchdog pings from this same loop; also require the router's queue to move.
        return time.monotonic() - self._last_loop_beat < 10 and self._inbox.qsize() < 100_000

    def _install_reload_handler(self) -> None:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self._on_sighup)

    def _on_sighup(self) -> None:
        """Reload now while routing; while starting, once ready; while stopping, not at all."""
        if self._live and self.ready.is_set():
            self.reload()
        elif not self.ready.is_set():
            self._reload_pending = True
            log.info("config_reload_deferred", why="starting")
        else:
            log.info("config_reload_skipped", why="stopping")
            self._reload_status.report(
                "skipped", ["alertgw is stopping; nothing was reloaded"], self.config.source_file
            )

    def _answer_deferred_reload(self) -> None:
        # A SIGHUP that came while starting and never ran: its `alertgw reload` still waits.
        if self._reload_pending:
            self._reload_pending = False
            log.info("config_reload_skipped", why="stopped_before_ready")
            self._reload_status.report(
                "skipped",
                ["alertgw stopped before it was ready; nothing was reloaded"],
                self.config.source_file,
            )

    def _remove_reload_handler(self) -> None:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)

    def _enqueue(self, delivery: Delivery, t0: float) -> None:
        """Queue one handset message; start it at once when the lane's window has room."""
        lane = self._lanes.get(delivery.handset)
        if lane is None:
            # A handset removed from the config while its alert was open (restored from the
            # journal): the message fails loudly here instead of killing the router.
            log.error(
                "delivery_to_unknown_handset", handset=delivery.handset, alert_id=delivery.alert_id
            )
            self._confirm(delivery.id, DeliveryState.FAILED)
            return
        if lane.channel is None:
            log.error("handset_has_no_channel", handset=lane.handset, alert_id=delivery.alert_id)
            self._confirm(delivery.id, DeliveryState.FAILED)
            return
        lane.idle.clear()
        if self._live and not lane.stuck and not lane.backlog and len(lane.window) < lane.limit:
            self._start(lane, delivery, t0)
        else:
            lane.backlog.append((delivery, t0))

    def _start(self, lane: _Lane, delivery: Delivery, t0: float) -> None:
        lane.window.append((delivery, t0, self._submit(lane, delivery)))

    def _submit(self, lane: _Lane, delivery: Delivery) -> asyncio.Future[None]:
        channel = lane.channel
        assert channel is not None  # _enqueue fails messages for handsets without one
        submit = getattr(channel, "submit", None)
        if submit is not None:
            # Channels that pipeline (MQTT) settle a future on their ACK: no task per message.
            done: asyncio.Future[None] = submit(delivery)
        else:
            assert self._tg is not None  # _live implies the TaskGroup runs
            done = asyncio.get_running_loop().create_future()
            self._tg.create_task(_send_into(channel, delivery, done))
        done.add_done_callback(lane.on_settled)
        return done

    def _settle(self, lane: _Lane, _done: object = None) -> None:
        """Confirm the lane's settled messages in order; a failed one stops the lane."""
        window = lane.window
        while window and not lane.stuck:
            delivery, t0, done = window[0]
            if not done.done():
                break
            if done.cancelled() or done.exception() is not None:
                lane.stuck = True  # the lane's task retries it before anything newer
                lane.wake.set()
                return
            window.popleft()
            lane.backoff.reset()
            if lane.reachable is not True:
                self._reachable(lane, reachable=True)
            self._delivered(lane.handset, delivery, t0)
        self._refill(lane)

    def _refill(self, lane: _Lane) -> None:
        while lane.backlog and not lane.stuck and len(lane.window) < lane.limit:
            delivery, t0 = lane.backlog.popleft()
            self._start(lane, delivery, t0)
        if not lane.backlog and not lane.window:
            lane.idle.set()

    async def _handset_loop(self, lane: _Lane) -> None:
        """Start what waited for the gateway to run; retry a lane's failed head, in order.

        Messages start in order and up to `lane.limit` (SEND_WINDOW, or one for a channel
        without `submit`) await their channel's ACK at once
        (one per broker round trip would cap a handset at a few thousand a second); they
        are confirmed in order, and a failure is retried before anything newer confirms.
        """
        channel = lane.channel
        hlog = log.bind(handset=lane.handset)
        self._refill(lane)  # what was restored before the lanes could start sends
        while True:
            await lane.wake.wait()
            lane.wake.clear()
            while lane.stuck and channel is not None:
                delivery, _, done = lane.window[0]
                error: BaseException | None = (
                    DeliveryError("send cancelled") if done.cancelled() else done.exception()
                )
                if error is not None and not isinstance(error, DeliveryError):
                    raise error  # a bug, not a link problem: let the supervisor see it
                if isinstance(error, PermanentDeliveryError):
                    lane.window.popleft()
                    lane.stuck = False
                    self._refused(lane, delivery, error)
                    self._settle(lane)
                    continue
                delay = lane.backoff.fail()
                self.metrics.deliveries.labels(lane.handset, delivery.action, "retry").inc()
                if lane.backoff.first_failure:  # once per outage, not once per message
                    hlog.warning(
                        "delivery_retrying",
                        alert_id=delivery.alert_id,
                        error=str(error),
                        retry_in=round(delay, 2),
                    )
                wait_connected = getattr(channel, "wait_connected", None)
                if wait_connected is not None and not getattr(channel, "connected", True):
                    # The link reconnects with its own backoff: resend the moment it is up,
                    # not a sleep later (a fall raised just after an outage waited seconds).
                    await wait_connected()
                else:
                    await asyncio.sleep(delay)
                self._resend_failed(lane)

    def _resend_failed(self, lane: _Lane) -> None:
        """Start every failed message in the window again at once, in order.

        One at a time, the messages that failed during an outage held everything newer
        (a critical ring included) behind a round trip and a sleep each.
        """
        for i, (delivery, t0, done) in enumerate(lane.window):
            if done.done() and (done.cancelled() or done.exception() is not None):
                lane.window[i] = (delivery, t0, self._submit(lane, delivery))
        lane.stuck = False
        self._settle(lane)

    def _refused(self, lane: _Lane, delivery: Delivery, error: DeliveryError) -> None:
        """The channel refused `delivery` for good: fail it, and move its alert on at once."""
        handset = lane.handset
        unheard = isinstance(error, UnheardDeliveryError)
        now = time.monotonic()
        if lane.reachable is not False:
            self._reachable(lane, reachable=False)
            lane.quiet_until = 0.0
        if now >= lane.quiet_until:
            # One line per handset per REFUSED_HOLD, not one per message: a removed app
            # refuses every ring all night. Each one is in its alert's timeline and counted.
            log.error(
                "delivery_unheard" if unheard else "delivery_refused",
                handset=handset,
                alert_id=delivery.alert_id,
                action=delivery.action,
                error=str(error),
                refused_unlogged=lane.unlogged,
            )
            lane.quiet_until = now + REFUSED_HOLD
            lane.unlogged = 0
        else:
            lane.unlogged += 1
        self._confirm(delivery.id, DeliveryState.FAILED)
        last = None
        if delivery.action in ("ring", "batch"):
            # Only a ring moves an alert on (an update is only noted): only rings are held.
            last = lane.refused.get(delivery.alert_id)
            lane.refused[delivery.alert_id] = now
            if len(lane.refused) > 1000:
                lane.refused.clear()
        # At the last step the engine rings a failed handset again: a message refused every
        # time would loop as fast as the line answers. Once per REFUSED_HOLD is enough.
        if delivery.action == "cancel" or (last is not None and now - last < REFUSED_HOLD):
            self.metrics.delivery_count.inc(handset, delivery.action, "failed")
        else:
            # Counted as failed where the router hands it to the engine.
            why = "nobody listens" if unheard else "refused"
            self.put(
                DeliveryReport(
                    handset, delivery.alert_id, "failed", time.time(), why, delivery.action
                )
            )

    def _reachable(self, lane: _Lane, *, reachable: bool) -> None:
        # Exported on change only: a lock and a lookup per message would tax the hot path.
        lane.reachable = reachable
        self.metrics.handset_reachable.labels(lane.handset).set(1 if reachable else 0)

    def _delivered(self, handset: str, delivery: Delivery, t0: float) -> None:
        if delivery.id is not None:
            self._confirm(delivery.id, DeliveryState.SENT)
        self.metrics.delivery_count.inc(handset, delivery.action, "sent")
        if t0:
            priority = str(delivery.payload.get("priority"))
            self.metrics.latency_of.observe(time.time() - t0, priority)
        if self._log_debug:
            log.debug(
                "alert_delivered",
                handset=handset,
                alert_id=delivery.alert_id,
                action=delivery.action,
                seq=delivery.seq,
            )

    def _confirm(self, delivery_id: int | None, state: DeliveryState) -> None:
        # A late "sent" mark only risks a resend after a crash, which (alert_id, seq) absorbs.
        if delivery_id:
            self._confirmed.append((delivery_id, state))
            self._wake_journal(0)

    def _wake_journal(self, signals: int) -> None:
        self._journal_idle.clear()
        self._journal_wake.set()
        if signals and len(self._pending.signals) >= COMMIT_GATHER:
            self._journal_full.set()

    async def _journal_loop(self) -> None:
        """Commit decisions in order; then, and only then, acknowledge their signals.

        One transaction costs about the same for one signal as for fifty, so the task
        gathers for up to `journal.commit_delay` (or COMMIT_GATHER signals) before it
        commits. Handsets never wait for this: their messages left already.
        """
        delay = self.config.journal.commit_delay
        failing = Backoff(initial=0.5, maximum=10.0)
        while True:
            await self._journal_wake.wait()
            if delay > 0 and not self._journal_full.is_set() and not self._draining:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._journal_full.wait()
            self._journal_wake.clear()
            self._journal_full.clear()
            batch, self._pending = self._pending, _Pending()
            sent, self._confirmed = self._confirmed, []
            try:
                await self._commit(batch, sent)
            except (sqlite3.Error, JournalError) as exc:
                # A full disk or a locked file: routing goes on in memory, the batch waits
                # and is tried again. Exiting instead would make a full disk a restart loop,
                # and lose ESPA calls and internal alarms, which nothing sends again.
                self._pending = batch.then(self._pending)
                self._confirmed = sent + self._confirmed
                self._journal_unwritable(str(exc))
                await self._journal_failed(exc, failing)
                continue
            if self._journal_down:
                log.warning("journal_write_recovered", failed_attempts=failing.failures)
                failing.reset()
                self._journal_down, self._down_status = False, ""
                self.metrics.journal_failing.set(0)
                self.notifier.status(f"routing for {self.config.site.name}")
                self.put(_link_alarm("journal", SignalState.CLEARED, "writing again"))
            for ack in batch.acks:
                ack()  # only now may the broker forget the signal
            self._uncommitted_ids.difference_update(s.id for s in batch.signals)
            self._uncommitted_responses.difference_update(r[0] for r in batch.responses)
            if not self._journal_wake.is_set():
                self._journal_idle.set()

    async def _commit(self, batch: _Pending, sent: list[tuple[int, DeliveryState]]) -> None:
        if not self.journal.is_open:
            await self._open_late()
        commit = asyncio.ensure_future(
            self.journal.commit_batch(
                batch.signals,
                batch.transitions,
                batch.deliveries,
                batch.levels,
                sent,
                responses=batch.responses,
                cancel_queued_up_to=batch.stale_up_to,
            )
        )
        try:
            stalled = False
            while not (await asyncio.wait({commit}, timeout=JOURNAL_STALL_AFTER))[0]:
                # Held acks would stop intake at the broker's in-flight limit: as for a
                # failing journal, route from memory and say so (and keep memory capped
                # for as long as the write hangs).
                if not stalled:
                    stalled = True
                    log.error(
                        "journal_write_stalled",
                        seconds=JOURNAL_STALL_AFTER,
                        file=str(self.journal.path),
                        waiting_signals=len(batch.signals),
                    )
                    self.metrics.journal_errors.inc()
                    # Its acks go first, with what was routed since (_journal_unwritable).
                    self._pending.acks[:0], batch.acks = batch.acks, []
                self._journal_unwritable(f"a write has hung for {JOURNAL_STALL_AFTER:g} s")
            await commit
        except asyncio.CancelledError:
            commit.cancel()
            raise

    async def _number_start(
        self, saved: Mapping[str, Any], levels: dict[str, object], *, writable: bool
    ) -> int:
        """This start's number (Engine.use_start), committed with `levels` if it can be.

        Committed before anything is routed, so restored alerts' seqs go past this start's.
        A start that cannot commit it (a read-only journal, a write failing now) writes it
        with its first commit that succeeds; until then it is the clock's `_unrecorded_start`,
        so that a second such start, with no commit in between, still takes a new number.
        """
        start = int(saved.get(START) or 0) + 1
        error = "the journal is read-only"
        if writable:
            try:
                await self.journal.commit_batch([], [], [], {**levels, START: start})
            except (JournalError, sqlite3.Error) as exc:
                error = str(exc)
            else:
                return start
        start = max(start, _unrecorded_start())
        log.warning("journal_start_unrecorded", start=start, error=error)
        self._pending.levels.update({**levels, START: start})
        return start

    async def _open_late(self) -> None:
        """Open the journal a start could not open (raises JournalError while it still cannot)."""
        await self.journal.open()
        log.warning("journal_opened_late", file=str(self.journal.path))
        if self._restored_from_file:
            return
        try:
            saved = await self.journal.levels()
        except sqlite3.Error:
            saved = None
        if saved is not None:
            # Unknown at start-up: the file's old alerts come back past what it last sent.
            self.engine.use_start(await self._number_start(saved, {}, writable=True))
        # Routing began from an empty memory: what the file holds as still open comes back
        # now, not at the next start (weeks away, perhaps). A condition raised again
        # meanwhile has its live alert; the old one of its key ends, superseded.
        try:
            stored = await self.journal.active_alerts()
            sources = await self.journal.signal_sources([s.alert.signal_id for s in stored])
            queued = await self.journal.pending_deliveries()  # the file's, from before
        except sqlite3.Error as exc:
            failed = str(exc)
        else:
            failed = ""
        if failed:
            log.error(
                "journal_alerts_not_restored",
                error=failed,
                hint="alerts open in the journal before this start come back at the next start",
            )
            return
        if self.journal.unreadable:
            # Left out, as at a normal start (see _restore).
            log.error(
                "journal_rows_unreadable",
                file=str(self.journal.path),
                count=len(self.journal.unreadable),
                rows=self.journal.unreadable[:10],
            )
        now = self._now()
        outcome = Outcome()
        open_calls, superseded = [], 0
        for s in stored:
            cleared = any(e[1] == "condition_cleared" for e in s.events)
            result = self.engine.restore_late(
                s.alert,
                s.handsets,
                s.last_seq,
                now,
                condition_cleared=cleared,
                source=sources.get(s.alert.signal_id),
                timeline=s.events,
            )
            if result.transitions:
                superseded += 1
            elif not cleared:
                open_calls.append(s.alert)
            outcome.extend(result)
        self._resume_espa_calls(open_calls, sources)
        # An alert rung or told afresh above needs none of its queued messages. Every other
        # one still goes, as a normal start would send it: the cancel of a call that ended
        # before the crash (or the handset shows it for good), an accept shown to the
        # colleagues, a digest. As copies numbered now, first: the file's own ids may be
        # among those handed out meanwhile. Its rows are cancelled in the commit that
        # writes the copies, so a crash in between leaves them queued, not lost.
        fresh = {d.alert_id for d in outcome.deliveries}
        kept = [d for d in queued if d.alert_id not in fresh]
        outcome.deliveries[:0] = kept
        self._pending.stale_up_to = self.journal.opened_last_id
        if stored or queued:
            log.warning(
                "journal_restored_late",
                active_alerts=len(stored),
                superseded=superseded,
                stale_messages_cancelled=len(queued) - len(kept),
                queued_messages_resent=len(kept),
            )
        self._take(outcome)
        self.kick()  # their timers may be due already

    def _journal_unwritable(self, why: str) -> None:
        """Acknowledge routed signals now, and from now on, until a commit succeeds again.

        The broker sends at most `max_inflight_messages` (Mosquitto: 20 by default)
        unacknowledged messages to a client, then holds the rest. Held acks would stop
        every new alarm after a few signals, for as long as the disk is full. Routing comes
        first: the records wait in memory and are written when the journal works again; a
        crash before then loses the records (their handsets already rang), not the alarms.
        """
        if not self._journal_down:
            self._journal_down = True
            self._down_status = f"JOURNAL WRITE FAILING: {why}; routing from memory"
            self.metrics.journal_failing.set(1)
            self.notifier.status(self._down_status)
            self.put(_link_alarm("journal", SignalState.RAISED, why))
        acks, self._pending.acks = self._pending.acks, []
        for ack in acks:
            ack()
        unwritten = self._pending.signals
        extra = len(unwritten) - UNWRITTEN_SIGNALS_CAP
        if extra > 0:
            self._uncommitted_ids.difference_update(s.id for s in unwritten[:extra])
            del unwritten[:extra]
            self.metrics.journal_dropped.inc(extra)
            log.error("journal_signals_dropped", dropped=extra, kept=UNWRITTEN_SIGNALS_CAP)
        # Handset answers likewise (a handset app gone wrong can send thousands): the
        # oldest records go; what they decided is in the alerts' timelines.
        answers = self._pending.responses
        extra = len(answers) - UNWRITTEN_SIGNALS_CAP
        if extra > 0:
            self._uncommitted_responses.difference_update(r[0] for r in answers[:extra])
            del answers[:extra]
            self.metrics.journal_dropped.inc(extra)
            log.error("journal_answers_dropped", dropped=extra, kept=UNWRITTEN_SIGNALS_CAP)

    async def _journal_failed(self, exc: sqlite3.Error | JournalError, failing: Backoff) -> None:
        retry_in = failing.fail()
        self.metrics.journal_errors.inc()
        if failing.first_failure:
            log.error(
                "journal_write_failed",
                error=str(exc),
                file=str(self.journal.path),
                waiting_signals=len(self._pending.signals),
                retry_in=round(retry_in, 2),
            )
        elif failing.failures % 10 == 0:
            log.error("journal_write_still_failing", error=str(exc), attempts=failing.failures)
        await asyncio.sleep(retry_in)
        self._journal_wake.set()

    async def _broker_watch_loop(self, link: MqttLink) -> None:
        """A broker out of reach for BROKER_DOWN_ALARM_AFTER is a technical `link_down` alarm.

        Every Zigbee sensor and MQTT handset is dead meanwhile; an ESPA pager or the
        console can still tell someone, and the journal keeps the outage for the audit.
        """
        mc = self.config.mqtt
        device = f"mqtt:{mc.host}:{mc.port}" if mc is not None else "mqtt"
        down_since: float | None = None
        raised = False
        journaled = False
        while True:
            await asyncio.sleep(1.0)
            if link.connected:
                down_since = None
                if not journaled:
                    # From now on the broker keeps a session for us: should a later start
                    # find it gone, what it queued meanwhile is lost (MqttLink._session_lost).
                    journaled = True
                    self._pending.levels[MQTT_SESSION + link.session_key] = True
                    self._wake_journal(0)
                if raised:
                    raised = False
                    self.put(_link_alarm(device, SignalState.CLEARED, "connected again"))
            elif down_since is None:
                down_since = time.monotonic()
            elif not raised and time.monotonic() - down_since >= BROKER_DOWN_ALARM_AFTER:
                raised = True
                why = f"broker out of reach for {BROKER_DOWN_ALARM_AFTER:g} s"
                self.put(_link_alarm(device, SignalState.RAISED, why))

    async def _retention_loop(self) -> None:
        while True:
            keep = self.config.journal.retention_days * 86400  # a reload may change it
            if not self.journal.is_open:  # a start that could not open it: nothing to prune
                await asyncio.sleep(60)
                continue
            now = self.clock()
            try:
                # An NTP-synchronised clock is trusted; any other may be years ahead.
                known = now if self._clock_synced() else await self.journal.prune_clock(now)
                # An empty journal gives no time line: prune nothing, remember no time (a
                # clock far ahead at a first start would otherwise become the reference).
                by = now if known is None else known
                lag = now - by
                self.metrics.journal_prune_lag.set(lag)
                if lag > PRUNE_STEP:
                    # Past a long power-off this is the journal catching up; past a clock
                    # set years ahead it is what keeps the audit trail. Either way, say so.
                    log.warning(
                        "journal_prune_limited",
                        behind_days=round(lag / 86400, 2),
                        retention_days=self.config.journal.retention_days,
                        hint="the clock is not NTP-synchronised; check the date",
                    )
                removed = await self.journal.prune(by - keep, clock=known)
            except sqlite3.Error as exc:
                # Pruning can wait an hour; commits report a failing file loudly themselves.
                self.metrics.journal_errors.inc()
                log.warning("journal_prune_failed", error=str(exc))
            else:
                if removed:
                    log.info("journal_pruned", rows=removed)
            await asyncio.sleep(3600)

    def _outbox_depth(self) -> int:
        # Also called from the metrics server's thread: list() copies the lanes in one step
        # under the GIL, so a reload replacing them cannot break the iteration.
        return sum(len(lane.backlog) + len(lane.window) for lane in list(self._lanes.values()))


@dataclasses.dataclass(slots=True)
class _Pending:
    """What the router decided since the last commit, in order."""

    signals: list[Signal] = dataclasses.field(default_factory=list)
    transitions: list[Transition] = dataclasses.field(default_factory=list)
    deliveries: list[Delivery] = dataclasses.field(default_factory=list)
    levels: dict[str, object] = dataclasses.field(default_factory=dict)
    acks: list[Callable[[], None]] = dataclasses.field(default_factory=list)
    responses: list[StoredResponse] = dataclasses.field(default_factory=list)
    stale_up_to: int = 0  # a file opened late: its queued rows up to this id are replaced

    def then(self, later: _Pending) -> _Pending:
        """This batch followed by a later one, as one batch (newer levels win)."""
        return _Pending(
            self.signals + later.signals,
            self.transitions + later.transitions,
            self.deliveries + later.deliveries,
            {**self.levels, **later.levels},
            self.acks + later.acks,
            self.responses + later.responses,
            max(self.stale_up_to, later.stale_up_to),
        )


@dataclasses.dataclass(slots=True, eq=False)
class _Lane:
    """One handset's outbox: a backlog, then a window of messages awaiting their ACK."""

    handset: str
    channel: HandsetChannel | None
    backlog: collections.deque[tuple[Delivery, float]] = dataclasses.field(
        default_factory=collections.deque
    )
    window: collections.deque[tuple[Delivery, float, asyncio.Future[None]]] = dataclasses.field(
        default_factory=collections.deque
    )
    stuck: bool = False  # the window's head failed; the lane's task is retrying it
    backoff: Backoff = dataclasses.field(default_factory=lambda: Backoff(initial=0.2, maximum=5.0))
    limit: int = SEND_WINDOW  # messages awaiting their ACK at once
    refused: dict[str, float] = dataclasses.field(default_factory=dict)  # alert id -> when
    reachable: bool | None = None  # as last exported; None before its first outcome
    quiet_until: float = 0.0  # no refusal is logged before then (monotonic), only counted
    unlogged: int = 0  # refusals counted but not logged since the last line
    wake: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    idle: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    on_settled: Callable[[asyncio.Future[None]], None] = lambda _: None

    def __post_init__(self) -> None:
        self.idle.set()


# Logging is configured once at start (structlog caches its loggers), so it is here too.
# 2026-01-01T00:00:00Z. Seconds since then, times SEQ_STRIDE, stay below 2**53 (a JSON
# number any handset app reads exactly) for 285 years.
_START_EPOCH = 1_767_225_600


def _unrecorded_start() -> int:
    """A start number no earlier start took, for a start that cannot write its own.

    Two starts are seconds apart (systemd's RestartSec), so the clock tells them apart
    where the journal's count, unwritten, cannot. A box whose clock is wrong (no RTC,
    no NTP yet) gets a number below the count, and the count is used.
    """
    return int(time.time()) - _START_EPOCH


_RESTART_SECTIONS = (
    "mqtt",
    "sources",
    "handsets",
    "espa",
    "journal",
    "metrics",
    "record",
    "logging",
)


def restart_sections(old: Config, new: Config) -> list[str]:
    """Sections whose change a hot reload cannot apply (drivers and storage)."""
    return [name for name in _RESTART_SECTIONS if getattr(old, name) != getattr(new, name)]


def _link_alarm(device: str, state: SignalState, why: str) -> Signal:
    """A technical `link_down` alarm (raised or cleared) for one of alertgw's own links."""
    now = time.time()
    return Signal(
        id=f"{device}:{state.value}:{uuid.uuid4().hex[:12]}",
        source=device.split(":", 1)[0],
        device=device,
        room="",
        kind="link_down",
        state=state,
        ts=now,
        attrs={"reason": why},
        received_at=now,
    )


def response_id(raw: RawResponse) -> str:
    """A handset answer's id: its handset, bytes and MQTT packet id (kept by a redelivery)."""
    digest = hashlib.blake2b(
        f"{raw.handset}\0{raw.packet_id}\0".encode() + raw.payload, digest_size=10
    )
    return digest.hexdigest()


def parse_response(raw: RawResponse) -> Response | None:
    """Validate a handset's `{"alert_id", "response", "reason"?}`; None when malformed.

    Only strings are taken: `str()` of a list nested a thousand deep raises RecursionError,
    and an answer must never be able to stop the router.
    """
    if len(raw.payload) > MAX_PAYLOAD:
        return None
    try:
        data = orjson.loads(raw.payload)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    alert_id, response, reason = data.get("alert_id"), data.get("response"), data.get("reason")
    if not isinstance(alert_id, str) or not alert_id or len(alert_id) > 64:
        return None
    if not isinstance(response, str):
        return None
    try:
        kind = ResponseKind(response)
    except ValueError:
        return None
    # A reason is a note for the audit: one that is not text is dropped, not the answer.
    note = safe_text(reason) if isinstance(reason, str) else ""
    return Response(raw.handset, alert_id, kind, raw.received_at, note)


async def _send_into(
    channel: HandsetChannel, delivery: Delivery, done: asyncio.Future[None]
) -> None:
    """Send once and settle `done` (a DeliveryError goes to the window, not the TaskGroup)."""
    error = await _attempt(channel, delivery)
    if not done.done():
        if error is None:
            done.set_result(None)
        else:
            done.set_exception(error)


async def _attempt(channel: HandsetChannel, delivery: Delivery) -> DeliveryError | None:
    """Send once; return the DeliveryError instead of raising it (the window retries)."""
    try:
        await channel.send(delivery)
    except DeliveryError as exc:
        return exc
    return None


async def run(
    config: Config,
    *,
    shutdown_trigger: ShutdownTrigger | None = None,
    clock: Clock | None = None,
) -> None:
    """Run the gateway for `config` until the trigger fires (default: SIGTERM or SIGINT)."""
    if shutdown_trigger is None:
        shutdown_trigger = _signal_trigger()
    await Gateway(config, clock=clock, freeze_heap=True).run(shutdown_trigger)


def freeze_heap() -> None:
    """Collect once, then leave everything alive now out of later full collections.

    Start-up (modules, config, the engine's tables) leaves some 35,000 objects that
    live as long as the daemon. A full collection walks them all: 5 to 15 ms on an
    edge box, during which no signal is routed. Frozen, they are never walked again.
    Called again after a reload, it first unfreezes, so the replaced config is freed.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def _signal_trigger() -> ShutdownTrigger:
    event = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, event.set)

    async def wait() -> None:
        await event.wait()

    return wait
