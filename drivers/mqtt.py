"""The MQTT link: one persistent aiomqtt session for sources, handsets and gateway status."""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import socket
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import aiomqtt
import orjson
import paho.mqtt.client as paho
import structlog
from paho.mqtt import __version__ as paho_version
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from drivers.paho_io import PahoLoopIO
from gateway.backoff import Backoff
from gateway.config import MqttConfig, PasswordUnsetError, read_password, tls_context
from gateway.errors import DeliveryError, PermanentDeliveryError, UnheardDeliveryError
from gateway.fairshare import FairShare, is_event, same_state
from gateway.metrics import Metrics
from gateway.model import Delivery, Signal, SignalState
from gateway.mqttwire import Publish
from gateway.ports import HandsetStatus, Inbound, Put, RawResponse

log = structlog.get_logger("alertgw.mqtt")

# Nagle plus the broker's delayed ACK holds small messages ~40 ms; alerts cannot wait.
NODELAY = (socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
# Mosquitto counts messages it dropped (full per-client queues, among others) here.
SYS_DROPPED = "$SYS/broker/publish/messages/dropped"
PUBACK_TIMEOUT = 10.0
NO_MATCHING_SUBSCRIBERS = 0x10  # MQTT 5 PUBACK reason code (3.4.2.1)
# Signals are acknowledged after their commit (up to journal.commit_delay, or 64 signals):
# the broker's in-flight window must hold more than one commit's worth, or intake stalls
# behind the journal. Mosquitto's default is 20; MQTT 5 lets alertgw ask for its own.
RECEIVE_MAXIMUM = 100
# Larger than any payload the decoders take (MAX_PAYLOAD, 64 KiB), so an oversized one
# still arrives to be counted as payload_too_large; larger still, the broker drops it.
MAX_PACKET = 1024 * 1024


class MqttLink:
    """Subscribes source topics and handset responses; publishes handset messages.

    The session is persistent (stable client id, clean_session false) and inbound QoS 1
    messages are acknowledged by hand, only after the core journaled them, so a crash
    between receipt and journal makes the broker deliver them again.
    """

    def __init__(
        self,
        *,
        config: MqttConfig,
        sources: Mapping[str, Sequence[str]],
        handsets: Mapping[str, str],
        metrics: Metrics,
        fair_share: Mapping[str, tuple[float, float]] | None = None,
        status_from: Collection[str] = (),
    ) -> None:
        self.name = "mqtt"
        self._cfg = config
        self._sources = [(name, tuple(filters)) for name, filters in sources.items()]
        self._handset_topics = dict(handsets)
        self._response_topics = {f"{base}/response": hs for hs, base in handsets.items()}
        # Handset apps that keep a retained status (last will "offline") on <base>/status.
        self._status_topics = {
            f"{base}/status": hs for hs, base in handsets.items() if hs in status_from
        }
        self._dropped: int | None = None  # broker's $SYS drop counter, first value = baseline
        self._refused: set[str] = set()  # filters the broker refused, with link_down raised
        self._session_present: bool | None = None  # CONNACK's flag for the current session
        self._had_session = False  # a session was up before: session_present=0 means loss
        # When the last session that was up ended (wall time; None: none yet in this run).
        # What the broker redelivers with DUP was first sent before then.
        self.session_ended_at: float | None = None
        # source name -> FairShare, for sources whose topic names one device
        self._fair = {
            name: FairShare[Publish](rate=rate, burst=burst, replaces=_same_state, keep=_is_event)
            for name, (rate, burst) in (fair_share or {}).items()
        }
        self._topic_source: dict[str, str | None] = {}
        self._metrics = metrics
        self._client: aiomqtt.Client | None = None
        self._paho: paho.Client | None = None
        # message id -> future resolved by PUBACK (or failed when the session drops), and
        # the same futures by deadline: one sweep a second instead of a timer per message.
        self._acks: dict[int, asyncio.Future[None]] = {}
        self._ack_deadlines: collections.deque[tuple[float, int, asyncio.Future[None]]] = (
            collections.deque()
        )
        self._sweeper: asyncio.TimerHandle | None = None
        # Rate-limited messages waiting for their token: the one timer that releases them,
        # the session's client their packet ids belong to (None between sessions: the
        # session that ended made them unacknowledgeable), and where they go.
        self._release_timer: asyncio.TimerHandle | None = None
        self._parked_client: paho.Client | None = None
        self._put: Put | None = None
        self._io: PahoLoopIO | None = None
        self._after_read: Callable[[], None] | None = None
        self._connected = asyncio.Event()
        self._backoff = Backoff(initial=config.backoff_initial, maximum=config.backoff_max)
        self._log = log.bind(driver="mqtt", broker=f"{config.host}:{config.port}")

    @property
    def connected(self) -> bool:
        """True while the broker session is up."""
        return self._connected.is_set()

    async def wait_connected(self) -> None:
        """Return once the broker session is up."""
        await self._connected.wait()

    @property
    def session_key(self) -> str:
        """Names this link's persistent session: its client id on its broker."""
        return f"{self._cfg.client_id}@{self._cfg.host}:{self._cfg.port}"

    def assume_session(self) -> None:
        """An earlier run had this session: the first CONNACK without it is a loss too.

        (Called before `run`, from what the journal remembers. Without it every start
        took session_present=0 for a first start, so a broker that forgot the session
        while alertgw was stopped lost what it had queued meanwhile without a word.)
        """
        self._had_session = True

    async def run(self, put: Put, *, after_read: Callable[[], None] | None = None) -> None:
        """Keep the session up forever, passing every message to `put`.

        `after_read`, if given, runs after each socket read has been passed to `put`
        (on the fast reader only), so the caller can route the read's messages at once.
        """
        self._after_read = after_read
        self._put = put
        gauge = self._metrics.connected.labels(driver="mqtt")
        gauge.set(0)
        try:
            await self._sessions(put, gauge)
        finally:
            if self._release_timer is not None:
                self._release_timer.cancel()
                self._release_timer = None

    async def _sessions(self, put: Put, gauge: Any) -> None:  # noqa: ANN401 - a Gauge child
        while True:
            try:
                await self._session(put)
                delay = self._down(aiomqtt.MqttError("session ended"), fatal=False)
            except aiomqtt.MqttCodeError as exc:
                delay = self._down(exc, fatal=_is_auth_failure(exc))
            except CredentialsUnreadableError as exc:
                delay = self._down(exc, fatal=True, event="mqtt_credentials_unreadable")
            except aiomqtt.MqttError as exc:
                # A certificate that does not verify will not fix itself: retry at the cap.
                delay = self._down(exc, fatal="CERTIFICATE_VERIFY_FAILED" in str(exc))
            finally:
                self._client = None
                self._connected.clear()
                gauge.set(0)
            await asyncio.sleep(delay)

    def _down(self, exc: Exception, *, fatal: bool, event: str = "") -> float:
        delay = self._backoff.fail(fatal=fatal)
        text = str(exc)
        event = event or (
            "mqtt_tls_failed"
            if "CERTIFICATE" in text or "SSL" in text
            else "mqtt_auth_failed"
            if fatal
            else "mqtt_disconnected"
        )
        if self._backoff.first_failure or fatal:
            self._log.warning(event, error=str(exc), retry_in=round(delay, 2))
        else:
            self._log.debug(event, error=str(exc), retry_in=round(delay, 2))
        return delay

    async def _session(self, put: Put) -> None:
        cfg = self._cfg
        status = cfg.status_topic
        try:
            context, password = tls_context(cfg.tls), read_password(cfg)
        except (OSError, UnicodeDecodeError, PasswordUnsetError) as exc:
            # A certificate or password file replaced by a bad one while alertgw runs: the
            # daemon must not die of it (every other driver routes on); retry at the cap.
            raise CredentialsUnreadableError(str(exc)) from exc
        v5: dict[str, Any] = {"clean_session": False}
        if cfg.protocol == "5":
            # A v5 session ends with its connection unless the client asks it to outlive
            # it: "never expires" is 3.1.1's persistent session (clean_session false).
            connect = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            connect.SessionExpiryInterval = 0xFFFFFFFF
            connect.ReceiveMaximum = RECEIVE_MAXIMUM
            # Without it the broker forwards anything up to its own limit (256 MB by
            # default), read whole into memory before the payload check refuses it.
            connect.MaximumPacketSize = MAX_PACKET
            v5 = {
                "protocol": aiomqtt.ProtocolVersion.V5,
                "clean_start": False,
                "properties": connect,
            }
        client = aiomqtt.Client(
            cfg.host,
            cfg.port,
            identifier=cfg.client_id,
            keepalive=cfg.keepalive,
            username=cfg.username,
            password=password,
            will=aiomqtt.Will(status, _status_payload("offline"), qos=1, retain=True),
            socket_options=(NODELAY,),
            timeout=10,
            tls_context=context,
            **v5,
        )
        # aiomqtt has no manual-ack switch; the paho client underneath does (paho >= 2.0).
        paho_client: paho.Client = client._client  # noqa: SLF001 - see above
        paho_client.manual_ack_set(True)
        # paho formats a debug line per packet for the logger aiomqtt hands it (~9 us a
        # signal); our own events say what matters.
        paho_client.disable_logger()
        loop = asyncio.get_running_loop()
        # A flood is thousands of these a second; labels() costs a lock and a lookup each.
        rate_limited = {n: self._metrics.rejects.labels(n, "rate_limited") for n in self._fair}

        # Messages go straight from paho's reader (on the loop thread: aiomqtt drives paho
        # with add_reader) to the router, skipping aiomqtt's queue and Message copies, which
        # also drop paho's DUP flag.
        def receive(msg: Publish) -> None:
            source = self._source_of(msg.topic)
            if source is not None and (fair := self._fair.get(source)) is not None:
                go, superseded = fair.offer(msg.topic, msg, loop.time())
                if superseded is not None:
                    # The newer report says all this one did (never a press or a change).
                    paho_client.ack(superseded.mid, superseded.qos)
                    rate_limited[source].inc()
                for queued in go:
                    self._dispatch(queued, paho_client, put)
                if not go or go[-1] is not msg:
                    self._schedule_release()  # msg is queued
                return
            self._dispatch(msg, paho_client, put)

        def on_message(c: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:  # noqa: ANN401
            # paho's own path: before the fast reader is installed, or without it.
            try:
                topic = msg.topic
            except UnicodeDecodeError:
                c.ack(msg.mid, msg.qos)  # no source can match it
                return
            mid = msg.mid if msg.qos else 0  # as the fast reader has it (see _unacknowledgeable)
            receive(Publish(topic, bytes(msg.payload), mid, msg.qos, bool(msg.dup), msg.retain))

        paho_client.on_message = on_message
        aiomqtt_on_publish = paho_client.on_publish

        def on_publish(c: paho.Client, userdata: Any, mid: int, *rest: Any) -> None:  # noqa: ANN401
            # send() registers its future before it yields, so a PUBACK always finds it;
            # no future means one of aiomqtt's own publishes (the status topic).
            fut = self._acks.pop(mid, None)
            if fut is not None and not fut.done():
                code = rest[0] if rest else None
                error = puback_error(code.value) if isinstance(code, ReasonCode) else None
                if error is None:
                    fut.set_result(None)
                else:
                    fut.set_exception(error)
            if aiomqtt_on_publish is not None:
                aiomqtt_on_publish(c, userdata, mid, *rest)

        paho_client.on_publish = on_publish
        aiomqtt_on_connect = paho_client.on_connect

        def on_connect(c: paho.Client, userdata: Any, flags: Any, *rest: Any) -> None:  # noqa: ANN401
            self._session_present = bool(getattr(flags, "session_present", False))
            if aiomqtt_on_connect is not None:
                aiomqtt_on_connect(c, userdata, flags, *rest)

        paho_client.on_connect = on_connect
        self._session_present = None
        self._sweeper = loop.call_later(1.0, self._sweep_acks)
        self._parked_client = paho_client
        try:
            await self._connected_session(client, paho_client, receive, put)
        finally:
            if self._connected.is_set():
                self.session_ended_at = time.time()
            self._parked_client = None
            self._paho = None
            self._io = None
            # aiomqtt stores a lost connection's error in a future that nothing may await
            # when the session ends another way; unread, asyncio prints "Future exception
            # was never retrieved" at exit, which looks like a crash to a technician.
            disconnected: asyncio.Future[None] = client._disconnected  # noqa: SLF001
            if disconnected.done() and not disconnected.cancelled():
                disconnected.exception()
            if self._sweeper is not None:
                self._sweeper.cancel()
            for fair in self._fair.values():
                # A queued QoS 1 message cannot be acknowledged on the next session, and
                # the broker sends its own copy again (DUP, dropped as a duplicate once ours
                # is routed: both keep the packet id their signal ids derive from); ours
                # goes anyway, so a broker that lost the session loses none.
                fair.rewrite_parked(_unacknowledgeable)
            lost = DeliveryError(f"mqtt broker {self._cfg.host}:{self._cfg.port} disconnected")
            for fut in self._acks.values():
                if not fut.done():
                    fut.set_exception(lost)
            self._acks.clear()
            self._ack_deadlines.clear()

    def release_parked(self) -> tuple[int, int]:
        """Route every rate-limited QoS 0 message still queued, now (the drain before a stop).

        A queued QoS 0 press (Zigbee2MQTT's default) would otherwise end with the process:
        the broker never sends it again. A QoS 1 one is left unacknowledged, so the broker
        sends it again after the restart. Returns (routed, left to the broker).
        """
        # Connected or not: a stop may come during a broker restart or a Wi-Fi drop.
        if self._release_timer is not None:
            self._release_timer.cancel()
            self._release_timer = None
        parked = [m for f in self._fair.values() for m in f.take_all()]
        once = [m for m in parked if m.qos == 0]
        if self._put is None:
            return 0, len(parked)
        for msg in once:
            self._dispatch(msg, self._parked_client, self._put)
        return len(once), len(parked) - len(once)

    def _schedule_release(self) -> None:
        """Release queued messages when the first bucket allows, session or not.

        Routing needs no broker (an ESPA pager may carry the ring), and a reconnect may
        take a minute: a QoS 0 press must not wait for it.
        """
        if self._release_timer is not None or self._put is None:
            return  # a release is due already; it reschedules itself
        dues = [d for f in self._fair.values() if (d := f.next_deadline()) is not None]
        if dues:
            loop = asyncio.get_running_loop()
            self._release_timer = loop.call_at(min(dues), self._release_due)

    def _release_due(self) -> None:
        self._release_timer = None
        if self._put is None:
            return
        now = asyncio.get_running_loop().time()
        for fair in self._fair.values():
            for parked in fair.due(now):
                self._dispatch(parked, self._parked_client, self._put)
        self._schedule_release()

    def _sweep_acks(self) -> None:
        """Fail publishes whose PUBACK is overdue; runs every second of a session."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        queue = self._ack_deadlines
        while queue and (queue[0][0] <= now or queue[0][2].done()):
            _, mid, fut = queue.popleft()
            if not fut.done():
                fut.set_exception(DeliveryError(f"no PUBACK within {PUBACK_TIMEOUT:g} s"))
                if self._acks.get(mid) is fut:
                    del self._acks[mid]
        self._sweeper = loop.call_later(1.0, self._sweep_acks)

    def _source_of(self, topic: str) -> str | None:
        cached = self._topic_source.get(topic, "")
        if cached != "":
            return cached
        found = next(
            (n for n, fs in self._sources if any(paho.topic_matches_sub(f, topic) for f in fs)),
            None,
        )
        if len(self._topic_source) > 100_000:
            self._topic_source.clear()
        self._topic_source[topic] = found
        return found

    async def _connected_session(
        self,
        client: aiomqtt.Client,
        paho_client: paho.Client,
        receive: Callable[[Publish], None],
        put: Put,
    ) -> None:
        cfg = self._cfg
        status = cfg.status_topic
        async with client:
            _raise_if_cancelled()
            io = PahoLoopIO(
                paho_client,
                asyncio.get_running_loop(),
                on_publish=receive,
                acks=self._acks,
                after_read=self._after_read,
                refusal=puback_error,
            )
            if not io.install():
                self._log.warning("mqtt_fast_io_unavailable", paho=paho_version)
            filters = [(f, 1) for _, fs in self._sources for f in fs]
            filters += [(t, 1) for t in self._response_topics]
            filters += [(t, 1) for t in self._status_topics]
            if cfg.watch_broker_drops:
                filters.append((SYS_DROPPED, 0))
            if filters:
                granted = await client.subscribe(filters)
                _raise_if_cancelled()
                self._check_subscriptions([f for f, _ in filters], granted, put)
            await client.publish(status, _status_payload("online"), qos=1, retain=True)
            _raise_if_cancelled()
            self._client = client
            self._paho = paho_client
            self._io = io if io.fast else None
            self._connected.set()
            self._metrics.connected.labels(driver="mqtt").set(1)
            self._log.info(
                "mqtt_connected",
                subscriptions=len(filters),
                refused=len(self._refused),
                session_present=self._session_present,
            )
            if self._had_session and self._session_present is False:
                self._session_lost(put)
            self._had_session = True
            self._backoff.reset()
            # Messages arrive through on_message; this only waits for the connection to drop.
            try:
                async for _ in client.messages:
                    pass
            finally:
                io.close()

    def _session_lost(self, put: Put) -> None:
        """The broker forgot our persistent session: what it held for us while away is gone.

        (A broker restarted without persistence, a lost mosquitto.db, or one past
        persistent_client_expiration answers CONNACK session_present=0.)
        """
        self._metrics.sessions_lost.inc()
        self._log.warning(
            "mqtt_session_lost",
            detail="the broker kept no session: messages queued for alertgw while away are lost",
        )
        now = time.time()
        put(self._dropping_alarm(f"broker-session-lost-{now:.6f}", now, reason="session_lost"))

    def _dropping_alarm(self, signal_id: str, now: float, **attrs: object) -> Signal:
        """A technical `broker_dropping` alarm: the broker lost messages meant for alertgw."""
        return Signal(
            id=signal_id,
            source="mqtt",
            device=f"broker {self._cfg.host}:{self._cfg.port}",
            room="",
            kind="broker_dropping",
            state=SignalState.RAISED,
            ts=now,
            attrs=attrs,
            received_at=now,
        )

    def _check_subscriptions(
        self, filters: Sequence[str], granted: Sequence[object], put: Put
    ) -> None:
        """Make a refused subscription (SUBACK 0x80) loud, and clear it once granted.

        A refused filter is a deaf sensor tree or a handset whose answers never arrive,
        behind a session that looks healthy: log it, export it, raise `link_down` for it.
        """
        gauge = self._metrics.subscription_refused
        for topic_filter, code in zip(filters, granted, strict=False):
            value = getattr(code, "value", code)
            refused = not isinstance(value, int) or value >= 0x80
            gauge.labels(topic_filter).set(1 if refused else 0)
            if refused and topic_filter not in self._refused:
                self._refused.add(topic_filter)
                self._log.error(
                    "mqtt_subscription_refused", topic_filter=topic_filter, code=str(code)
                )
                self._link_signal(topic_filter, SignalState.RAISED, put)
            elif not refused and topic_filter in self._refused:
                self._refused.discard(topic_filter)
                self._log.info("mqtt_subscription_granted", topic_filter=topic_filter)
                self._link_signal(topic_filter, SignalState.CLEARED, put)

    def _link_signal(self, topic_filter: str, state: SignalState, put: Put) -> None:
        now = time.time()
        device = f"mqtt subscription {topic_filter}"
        put(
            Signal(
                id=f"mqtt-sub:{topic_filter}:{state.value}:{now:.6f}",
                source="mqtt",
                device=device,
                room="",
                kind="link_down",
                state=state,
                ts=now,
                attrs={"reason": "subscription refused by the broker"},
                received_at=now,
            )
        )

    def _dispatch(self, msg: Publish, paho_client: paho.Client | None, put: Put) -> None:
        topic = msg.topic
        payload = msg.payload
        now = time.time()
        mid, qos = msg.mid, msg.qos
        io = self._io

        def ack() -> None:
            if qos == 1 and io is not None:
                io.ack(mid)
            elif qos > 0 and paho_client is not None:
                paho_client.ack(mid, qos)

        if topic == SYS_DROPPED:
            self._broker_dropped(payload, now, put)
            return
        handset = self._response_topics.get(topic)
        if handset is not None:
            # Acknowledged once the accept or reject is journaled: a crash before that commit
            # must not lose it, or the alert would escalate past the nurse on her way.
            put(
                RawResponse(
                    handset=handset,
                    payload=payload,
                    received_at=now,
                    ack=ack,
                    dup=msg.dup,
                    packet_id=mid if qos > 0 else 0,
                    retain=bool(msg.retain),
                )
            )
            return
        handset = self._status_topics.get(topic)
        if handset is not None:
            # State, not news: the retained copy comes back at every subscribe.
            ack()
            put(HandsetStatus(handset, payload, now))
            return
        source = self._source_of(topic)
        if source is not None:
            # `mid` rather than `qos`: a message queued across sessions keeps its packet id
            # (its signal id is derived from it) but is no longer acknowledged. QoS 0 has no
            # ack to hold: the router's "a source waits for this commit" is for ESPA calls.
            packet_id = mid
            held = ack if qos > 0 else None
            put(Inbound(source, topic, payload, now, msg.dup, held, qos > 0, msg.retain, packet_id))
            return
        ack()  # not ours (e.g. our own status topic under a wildcard)

    def _broker_dropped(self, payload: bytes, now: float, put: Put) -> None:
        try:
            value = int(payload.strip() or b"0")
        except ValueError:
            return
        previous, self._dropped = self._dropped, value
        if previous is None or value <= previous:
            return  # baseline, or the broker restarted and its counter reset
        self._log.error("broker_dropping_messages", dropped=value - previous, total=value)
        put(
            self._dropping_alarm(
                f"broker-dropped-{value}", now, dropped=value - previous, total=value
            )
        )

    async def send(self, delivery: Delivery) -> None:
        """Publish one handset message at QoS 1; return on PUBACK."""
        await self.submit(delivery)

    def submit(self, delivery: Delivery) -> asyncio.Future[None]:
        """Publish one handset message at QoS 1; the future resolves on its PUBACK.

        It fails with DeliveryError when the broker is down, the session drops before the
        PUBACK, or none comes within PUBACK_TIMEOUT.
        """
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        paho_client = self._paho
        if paho_client is None or self._client is None:
            where = f"{self._cfg.host}:{self._cfg.port}"
            fut.set_exception(DeliveryError(f"mqtt broker {where} is not connected"))
            return fut
        topic = f"{self._handset_topics[delivery.handset]}/alert"
        payload = orjson.dumps(dict(delivery.payload))
        io = self._io
        if io is not None:
            mid = io.publish(topic, payload)
            self._acks[mid] = fut
            self._ack_deadlines.append((loop.time() + PUBACK_TIMEOUT, mid, fut))
            return fut
        # Straight to paho with a future per message id: aiomqtt's publish costs a task and
        # an Event per message, which doubled the gateway's CPU per signal.
        info = paho_client.publish(topic, payload, qos=1)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            error = paho.error_string(info.rc)
            fut.set_exception(
                DeliveryError(f"publish to handset {delivery.handset} failed: {error}")
            )
        elif info.is_published():
            fut.set_result(None)
        else:
            self._acks[info.mid] = fut
            self._ack_deadlines.append((loop.time() + PUBACK_TIMEOUT, info.mid, fut))
        return fut

    async def publish_status(self, state: str) -> None:
        """Publish the gateway's retained status (used at clean shutdown)."""
        client = self._client
        if client is not None:
            await client.publish(
                self._cfg.status_topic, _status_payload(state), qos=1, retain=True, timeout=5
            )


def puback_error(code: int) -> DeliveryError | None:
    """What an MQTT 5 PUBACK's reason code means for a handset message; None: delivered.

    Both errors are final for the message, so a ring moves its alert on at once instead of
    waiting out the step: an ACL that refuses the handset's topic (0x87) will refuse it
    again, and a topic nobody subscribes to (0x10: the app is gone, or listens elsewhere)
    delivered it to no one. A handset with a persistent session counts as subscribed
    while it is offline: the broker keeps the message for it.
    """
    if code == NO_MATCHING_SUBSCRIBERS:
        return UnheardDeliveryError("nobody subscribes to the handset's topic")
    if code < 0x80:
        return None
    try:
        name = str(ReasonCode(PacketTypes.PUBACK, identifier=code))
    except KeyError:
        name = "reason code"
    return PermanentDeliveryError(f"broker refused it: {name} (0x{code:02X})")


class CredentialsUnreadableError(Exception):
    """The TLS files or the password file cannot be read or hold nothing usable."""


def _raise_if_cancelled() -> None:
    """Re-raise a cancellation that aiomqtt's `asyncio.wait_for` swallowed.

    On Python 3.11, wait_for returns its future's result when a cancellation lands in the
    same loop iteration as that result (CPython gh-86296, fixed in 3.12). aiomqtt waits for
    CONNACK, SUBACK and PUBACK that way, so a shutdown racing the connection would leave
    this task running forever and the supervisor waiting for it.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def _unacknowledgeable(msg: Publish) -> Publish:
    """`msg`, never to be acknowledged: its packet id is the old session's.

    The id stays, since the signal id is derived from it: the broker's redelivery (DUP,
    same packet id) must map to the same signal and be dropped as its duplicate, or one
    press counts twice, and rings again if the first alert ended meanwhile.
    """
    return dataclasses.replace(msg, qos=0) if msg.qos else msg


def _same_state(old: Publish, new: Publish) -> bool:
    return same_state(old.payload, new.payload)


def _is_event(msg: Publish) -> bool:
    return is_event(msg.payload)


def _status_payload(state: str) -> bytes:
    body: dict[str, Any] = {"state": state, "ts": time.time()}
    return orjson.dumps(body)


def _is_auth_failure(exc: aiomqtt.MqttCodeError) -> bool:
    rc = exc.rc
    value = getattr(rc, "value", rc)
    # MQTT 3.1.1 CONNACK 4 (bad user/password) and 5 (not authorised); v5 0x86/0x87.
    return value in (4, 5, 0x86, 0x87)
