"""Hot-path benchmark: MQTT signal in -> alertgw -> handset message out, against the broker floor.

Run from the repository root: `python -m benchmarks.hotpath [--quick]`. See
benchmarks/README.md for what is measured and how signals are correlated. Prints one JSON
line per scenario on stdout; progress goes to stderr.

Correlation: signal i goes to device `d{i % 500}`; a device's signals alternate raised,
cleared, raised, ... A raise opens a new alert (no rules, static routing to one handset), so it
produces exactly one `ring` whose `signal_id` is the raise's id; the next signal on that device
clears it, producing exactly one `cancel`, which carries the *raise's* `signal_id`. So the
receiver keys messages as `r:<signal_id>` / `c:<signal_id>` and the sender knows, for every
signal, the key of the one handset message it causes. Every scenario sends a multiple of
2 x 500 signals, so every device ends cleared and the next scenario starts from a clean state.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import itertools
import json
import math
import multiprocessing as mp
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from multiprocessing.connection import Connection
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from gateway.config import MqttConfig
from tests.mosquitto import Broker, free_port

REPO = Path(__file__).resolve().parent.parent
DEVICES = 500
ZONES = 5
IN_PREFIX = "bench/in"
HANDSET = "h1"
HANDSET_BASE = "bench/handset/h1"
HANDSET_TOPIC = f"{HANDSET_BASE}/alert"
FLOOR_TOPIC = "bench/floor"
RELAY_TOPIC = "bench/relay"  # the paho relay's input; it republishes to FLOOR_TOPIC
Z2M_BASE = "bench/z2m"
BABBLER = "babbler"  # a Zigbee2MQTT device that floods its topic in the flood scenario
FLOOD_RATE = 5000
RATES = (500, 2000, 5000)
NS = 1_000_000_000
SETTLE_S = 5.0  # no new handset message for this long: the rest counts as lost
LINE_KEYS = (
    "scenario",
    "journal",
    "mqtt",
    "rate",
    "sent",
    "received",
    "lost",
    "p50_us",
    "p90_us",
    "p99_us",
    "p999_us",
    "max_us",
    "throughput_per_s",
    "cpu_us_per_signal",
    "broker_cpu_us_per_signal",
    "rss_start_mb",
    "rss_end_mb",
    "rss_peak_mb",
    "ratio_p99_to_floor",
)

# -- pure parts (tested in tests/test_benchmark_harness.py) ----------------------------------


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile `q` (0 < q <= 100) of an ascending, non-empty sequence."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    if not 0 < q <= 100:
        raise ValueError(f"percentile {q} outside (0, 100]")
    rank = math.ceil(round(q * len(sorted_values) / 100, 9))  # 99.9% of 1000 is 999, not 1000
    return sorted_values[max(rank, 1) - 1]


def open_loop_schedule(start_ns: int, rate: float, n: int) -> list[int]:
    """Intended send times (epoch ns) of `n` messages at a fixed `rate` per second."""
    if rate <= 0:
        raise ValueError("rate must be positive")
    return [start_ns + round(i * NS / rate) for i in range(n)]


def signal_count(rate: float, seconds: float, devices: int = DEVICES) -> int:
    """Signals for `rate` x `seconds`, rounded up to whole raise/clear cycles of every device."""
    cycle = 2 * devices
    return max(cycle, math.ceil(rate * seconds / cycle) * cycle)


@dataclasses.dataclass(frozen=True, slots=True)
class Plan:
    """What a sender publishes, and the key of the one message each publish causes."""

    topics: list[str]
    payloads: list[bytes]
    keys: list[str]


def gateway_plan(n: int, tag: str, devices: int = DEVICES) -> Plan:
    """`n` integrator signals alternating raised/cleared per device (see the module doc)."""
    topics, payloads, keys = [], [], []
    for i in range(n):
        device = f"d{i % devices}"
        raised = (i // devices) % 2 == 0
        if raised:
            sid = f"{tag}.{i}"
            key = f"r:{sid}"
        else:
            sid = f"{tag}.{i}x"
            key = f"c:{tag}.{i - devices}"  # the cancel carries the raise's signal id
        body = {"device": device, "state": "raised" if raised else "cleared", "id": sid}
        topics.append(f"{IN_PREFIX}/{device}")
        payloads.append(orjson.dumps(body))
        keys.append(key)
    return Plan(topics, payloads, keys)


def floor_plan(n: int, tag: str, devices: int = DEVICES, topic: str = FLOOR_TOPIC) -> Plan:
    """`n` messages straight to the receiver's floor topic: one broker hop, no alertgw.

    With `topic=RELAY_TOPIC` the same messages go through the paho relay: two hops.
    """
    payloads, keys = [], []
    for i in range(n):
        sid = f"{tag}.{i}"
        body = {"type": "ring", "signal_id": sid, "device": f"d{i % devices}", "state": "raised"}
        payloads.append(orjson.dumps(body))
        keys.append(f"r:{sid}")
    return Plan([topic] * n, payloads, keys)


def message_key(payload: bytes | bytearray) -> str | None:
    """The correlation key of a handset (or floor) message; None for other messages."""
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    kind, sid = data.get("type"), data.get("signal_id")
    if kind not in ("ring", "cancel") or not isinstance(sid, str):
        return None
    return f"{kind[0]}:{sid}"


def latencies_us(
    keys: Sequence[str], intended_ns: Sequence[int], received_ns: dict[str, int]
) -> list[float]:
    """Receipt minus intended send time (µs) of every planned message that arrived, sorted."""
    out = [
        (received_ns[k] - t) / 1000.0
        for k, t in zip(keys, intended_ns, strict=True)
        if k in received_ns
    ]
    out.sort()
    return out


def result_line(
    *,
    scenario: str,
    journal: str | None,
    rate: float | None,
    sent: int,
    mqtt: str | None = None,
    latencies: Sequence[float],
    throughput: float | None = None,
    cpu_s: float | None = None,
    broker_cpu_s: float | None = None,
    rss: tuple[float, float, float] | None = None,
    floor_p99: float | None = None,
) -> dict[str, Any]:
    """One scenario's JSON line (keys in LINE_KEYS order); latencies sorted, in µs."""
    received = len(latencies)

    def pct(q: float) -> float | None:
        return round(percentile(latencies, q), 1) if latencies else None

    p99 = pct(99)
    line: dict[str, Any] = {
        "scenario": scenario,
        "journal": journal,
        "mqtt": mqtt,
        "rate": rate,
        "sent": sent,
        "received": received,
        "lost": sent - received,
        "p50_us": pct(50),
        "p90_us": pct(90),
        "p99_us": p99,
        "p999_us": pct(99.9),
        "max_us": round(latencies[-1], 1) if latencies else None,
        "throughput_per_s": round(throughput) if throughput is not None else None,
        "cpu_us_per_signal": round(cpu_s * 1e6 / sent, 1) if cpu_s is not None and sent else None,
        "broker_cpu_us_per_signal": (
            round(broker_cpu_s * 1e6 / sent, 1) if broker_cpu_s is not None and sent else None
        ),
        "rss_start_mb": rss[0] if rss else None,
        "rss_end_mb": rss[1] if rss else None,
        "rss_peak_mb": rss[2] if rss else None,
        "ratio_p99_to_floor": (
            round(p99 / floor_p99, 2) if p99 is not None and floor_p99 else None
        ),
    }
    assert tuple(line) == LINE_KEYS
    return line


def gateway_config(
    *,
    port: int,
    journal_path: Path,
    synchronous: str,
    client_id: str,
    status_topic: str,
    protocol: str = MqttConfig().protocol,
) -> dict[str, Any]:
    """The benchmark alertgw config: one JSON source, 500 pull cords, one MQTT handset."""
    rooms = [str(1000 + i // 2) for i in range(DEVICES)]  # two cords per room
    unique_rooms = list(dict.fromkeys(rooms))
    per_zone = math.ceil(len(unique_rooms) / ZONES)
    return {
        "site": {"name": "alertgw benchmark", "timezone": "Europe/Oslo"},
        "mqtt": {
            "host": "127.0.0.1",
            "port": port,
            "client_id": client_id,
            "status_topic": status_topic,
            "protocol": protocol,
        },
        "sources": {
            "bench": {"type": "mqtt", "decoder": "json", "topics": [f"{IN_PREFIX}/#"]},
            "zigbee": {
                "type": "mqtt",
                "decoder": "zigbee2mqtt",
                "topics": [f"{Z2M_BASE}/#"],
                "base_topic": Z2M_BASE,
            },
        },
        "zones": {
            f"z{z}": {"rooms": unique_rooms[z * per_zone : (z + 1) * per_zone]}
            for z in range(ZONES)
        },
        "devices": {
            **{f"d{i}": {"room": rooms[i], "kind": "pull_cord"} for i in range(DEVICES)},
            BABBLER: {"room": rooms[0], "kind": "door_open", "name": BABBLER, "source": "zigbee"},
        },
        "handsets": {HANDSET: {"channel": "mqtt", "address": HANDSET_BASE}},
        "routing": [{"handsets": [HANDSET]}],
        "journal": {"path": str(journal_path), "synchronous": synchronous},
        "metrics": {"enabled": False},
        "logging": {"level": "warning", "format": "json"},
    }


# -- /proc readings --------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_mb(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS since start or the last `reset_peak`) in MiB."""
    values: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            values[name] = round(int(rest.split()[0]) / 1024, 1)
    return values["VmRSS"], values["VmHWM"]


def reset_peak(pid: int) -> None:
    """Reset the peak-RSS counter (Linux `clear_refs` 5); best effort."""
    with contextlib.suppress(OSError):
        Path(f"/proc/{pid}/clear_refs").write_text("5")


# -- MQTT helpers ----------------------------------------------------------------------------


def connect(port: int, client_id: str) -> paho.Client:
    """A connected paho client (QoS 1 unlimited in flight, TCP_NODELAY); no loop started."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
    client.max_inflight_messages_set(0)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port, keepalive=60)
    sock = client.socket()
    if isinstance(sock, socket.socket):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return client


# The benchmark's broker: no persistence, no queue or in-flight caps (a burst must not be
# throttled by the broker), TCP_NODELAY as the reference figures were measured.
BROKER_CONF = """\
listener {port} 127.0.0.1
allow_anonymous true
set_tcp_nodelay true
persistence false
max_queued_messages 1000000
max_queued_bytes 0
max_inflight_messages 0
log_dest file {workdir}/mosquitto.log
"""


# -- the sender and receiver processes -------------------------------------------------------


def sender_main(conn: Connection, port: int, qos: int = 1) -> None:
    """Sender process: for each job `(topics, payloads, rate)` publish, then report times.

    The flood scenario's babbler is a second sender at QoS 0.
    """
    client = connect(port, f"bench-sender-{os.getpid()}")
    acked = [0]

    def on_publish(*_: object) -> None:
        acked[0] += 1

    client.on_publish = on_publish
    client.loop(timeout=1.0)  # CONNACK
    conn.send("ready")
    while True:
        job = conn.recv()
        if job is None:
            break
        topics, payloads, rate = job
        acked[0] = 0
        conn.send(_send(client, topics, payloads, rate, acked, qos=qos))
    client.disconnect()


def _send(
    client: paho.Client,
    topics: list[str],
    payloads: list[bytes],
    rate: float | None,
    acked: list[int],
    *,
    qos: int = 1,
) -> tuple[list[int], int]:
    """Publish at `rate` (open loop) or as fast as possible (rate None); wait for PUBACKs.

    Returns (the time each message was meant to go out, in epoch ns; the worst lateness, ns).
    Waiting is `client.loop(timeout)`, a select() that also reads PUBACKs, so nothing spins.
    """
    n = len(payloads)
    publish = client.publish
    worst_late = 0
    if rate:
        start = time.time_ns() + 20_000_000
        intended = open_loop_schedule(start, rate, n)
        i = 0
        while i < n:
            now = time.time_ns()
            due = intended[i]
            if now < due:
                client.loop(timeout=(due - now) / NS)
                continue
            worst_late = max(worst_late, now - due)
            publish(topics[i], payloads[i], qos=qos)
            i += 1
    else:
        intended = [0] * n
        for i in range(n):
            intended[i] = time.time_ns()
            publish(topics[i], payloads[i], qos=qos)
            if i % 64 == 63:
                client.loop(timeout=0)
    deadline = time.monotonic() + 60
    while acked[0] < n and time.monotonic() < deadline:
        client.loop(timeout=0.05)
    return intended, worst_late


def receiver_main(conn: Connection, port: int, count: Synchronized[int]) -> None:
    """Receiver process: time-stamp every message; on "collect" return key -> first receipt."""
    records: list[tuple[int, bytes | bytearray]] = []
    subscribed = threading.Event()

    def on_message(_c: paho.Client, _u: object, msg: paho.MQTTMessage) -> None:
        records.append((time.time_ns(), msg.payload))
        count.value += 1

    def on_subscribe(*_: object) -> None:
        subscribed.set()

    client = connect(port, f"bench-receiver-{os.getpid()}")
    client.on_message = on_message
    client.on_subscribe = on_subscribe
    client.loop_start()
    client.subscribe([(HANDSET_TOPIC, 1), (FLOOR_TOPIC, 1)])
    subscribed.wait(10)
    conn.send("ready")
    while True:
        cmd = conn.recv()
        if cmd is None:
            break
        taken, records[:] = records[:], []
        count.value = 0
        first: dict[str, int] = {}
        extra = 0
        if cmd == "collect":
            for ns, payload in taken:
                key = message_key(payload)
                if key is None or key in first:
                    extra += 1
                else:
                    first[key] = ns
        conn.send((first, extra))
    client.loop_stop()
    client.disconnect()


def relay_main(conn: Connection, port: int) -> None:
    """The issue's "minimal paho-mqtt relay": RELAY_TOPIC in, FLOOR_TOPIC out, QoS 1, no logic.

    The Python floor on this machine: what two broker hops and a paho client cost with
    nothing else, so alertgw's figures can be set against it as well as against one hop.
    """
    client = connect(port, f"bench-relay-{os.getpid()}")
    publish = client.publish

    def on_message(_c: paho.Client, _u: object, msg: paho.MQTTMessage) -> None:
        publish(FLOOR_TOPIC, msg.payload, qos=1)

    def on_subscribe(*_: object) -> None:
        conn.send("ready")

    client.on_message = on_message
    client.on_subscribe = on_subscribe
    client.subscribe(RELAY_TOPIC, 1)
    # The orchestrator ends the relay with SIGTERM; loop_forever is the whole process.
    client.loop_forever()


# -- orchestration ---------------------------------------------------------------------------


@dataclasses.dataclass
class Gateway:
    """alertgw as a subprocess (`python -m gateway.cli run CONFIG`)."""

    workdir: Path
    broker_port: int
    synchronous: str
    protocol: str = MqttConfig().protocol  # alertgw's (sender and receiver speak 3.1.1)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def status_topic(self) -> str:
        """The retained status topic of this run."""
        return f"bench/status/{self.workdir.name}"

    def start(self) -> None:
        """Write the config, start alertgw and wait for its retained `online` status."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        cfg = gateway_config(
            port=self.broker_port,
            journal_path=self.workdir / "journal.db",
            synchronous=self.synchronous,
            # One MQTT session per instance: a later instance reusing an earlier one's
            # persistent session would first get everything queued for it meanwhile.
            client_id=f"alertgw-bench-{self.workdir.name}",
            status_topic=self.status_topic,
            protocol=self.protocol,
        )
        path = self.workdir / "alertgw.yaml"
        path.write_text(json.dumps(cfg, indent=1))  # JSON is YAML
        launched = time.time()
        log = (self.workdir / "alertgw.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "run", str(path)],
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        wait_online(self.broker_port, self.status_topic, launched, self.proc)

    @property
    def pid(self) -> int:
        """The alertgw process id."""
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> None:
        """SIGTERM (drain and stop), then kill if it does not exit."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def wait_online(port: int, topic: str, since: float, proc: subprocess.Popen[bytes]) -> None:
    """Block until `topic` says online with a timestamp after `since`."""
    online = threading.Event()

    def on_message(_c: paho.Client, _u: object, msg: paho.MQTTMessage) -> None:
        with contextlib.suppress(orjson.JSONDecodeError, TypeError):
            data = orjson.loads(msg.payload)
            if data.get("state") == "online" and data.get("ts", 0) >= since - 1:
                online.set()

    client = connect(port, f"bench-status-{os.getpid()}")
    client.on_message = on_message
    client.loop_start()
    client.subscribe(topic, 1)
    try:
        deadline = time.monotonic() + 30
        while not online.wait(0.2):
            if proc.poll() is not None:
                raise RuntimeError(f"alertgw exited with {proc.returncode}; see its log")
            if time.monotonic() > deadline:
                raise RuntimeError("alertgw did not come online within 30 s")
    finally:
        client.loop_stop()
        client.disconnect()


@dataclasses.dataclass
class Rig:
    """The broker, the sender and receiver processes, and the pipes to them."""

    broker: Broker
    sender: Connection
    receiver: Connection
    count: Synchronized[int]
    procs: list[mp.process.BaseProcess]
    flooder: Connection
    relay_pid: int
    _tags: Iterator[int] = dataclasses.field(default_factory=lambda: iter(range(1, 10**9)))

    def tag(self, prefix: str) -> str:
        """A fresh signal-id prefix, unique in this run."""
        return f"{prefix}{next(self._tags)}"

    def run(
        self, plan: Plan, rate: float | None, watch: Sequence[int] = ()
    ) -> tuple[list[float], float, list[float], dict[str, Any]]:
        """Send `plan`; return (sorted latencies µs, throughput/s, CPU s per watched pid, info)."""
        self.receiver.send("reset")
        self.receiver.recv()
        cpu0 = [cpu_seconds(p) for p in watch]
        self.sender.send((plan.topics, plan.payloads, rate))
        intended, worst_late = self.sender.recv()
        n = len(plan.keys)
        last, last_change = -1, time.monotonic()
        deadline = time.monotonic() + 120 + n / 500
        while time.monotonic() < deadline:
            got = self.count.value
            if got >= n:
                break
            if got != last:
                last, last_change = got, time.monotonic()
            elif time.monotonic() - last_change > SETTLE_S:
                break
            time.sleep(0.02)
        cpu = [cpu_seconds(p) - c for p, c in zip(watch, cpu0, strict=True)]
        self.receiver.send("collect")
        received, extra = self.receiver.recv()
        lat = latencies_us(plan.keys, intended, received)
        matched = [received[k] for k in plan.keys if k in received]
        span = (max(matched) - intended[0]) / NS if matched else 0.0
        throughput = len(matched) / span if span > 0 else 0.0
        info = {"unexpected_messages": extra, "sender_late_max_us": round(worst_late / 1000)}
        return lat, throughput, cpu, info

    def close(self) -> None:
        """Stop the helper processes and the broker."""
        for conn in (self.sender, self.receiver, self.flooder):
            with contextlib.suppress(OSError, BrokenPipeError):
                conn.send(None)
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.relay_pid, signal.SIGTERM)
        for p in self.procs:
            p.join(5)
            if p.is_alive():
                p.terminate()
        self.broker.stop()


def start_rig(workdir: Path) -> Rig:
    """Start Mosquitto and the receiver, sender, flooder and relay processes."""
    broker = Broker(port=free_port(), workdir=workdir / "mosquitto", body=BROKER_CONF)
    broker.start()
    ctx = mp.get_context("spawn")
    count: Synchronized[int] = ctx.Value("q", 0)
    r_parent, r_child = ctx.Pipe()
    s_parent, s_child = ctx.Pipe()
    receiver = ctx.Process(
        target=receiver_main, args=(r_child, broker.port, count), name="bench-receiver"
    )
    sender = ctx.Process(target=sender_main, args=(s_child, broker.port), name="bench-sender")
    f_parent, f_child = ctx.Pipe()
    flooder = ctx.Process(target=sender_main, args=(f_child, broker.port, 0), name="bench-flooder")
    rl_parent, rl_child = ctx.Pipe()
    relay = ctx.Process(target=relay_main, args=(rl_child, broker.port), name="bench-relay")
    procs: list[mp.process.BaseProcess] = [receiver, sender, flooder, relay]
    for p in procs:
        p.start()
    for conn in (r_parent, s_parent, f_parent, rl_parent):
        if not conn.poll(30) or conn.recv() != "ready":
            raise RuntimeError("benchmark helper process did not start")
    assert relay.pid is not None
    return Rig(broker, s_parent, r_parent, count, procs, f_parent, relay.pid)


EMITTED: list[dict[str, Any]] = []  # every line printed, for the medians of --runs


def emit(line: dict[str, Any], **extra: Any) -> None:  # noqa: ANN401 - JSON values
    """Print one JSON result line."""
    full = {**line, **extra}
    EMITTED.append(full)
    print(json.dumps(full), flush=True)


def median_lines(lines: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One line per (scenario, journal, rate): the median of each number over the runs.

    The issue's reference figures are medians of three runs; on a shared two-core box a
    single run can lose a p99 to one stall of the sender or the broker.
    """
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for line in lines:
        if line.get("summary"):
            continue
        key = (line["scenario"], line["journal"], line.get("mqtt"), line["rate"])
        groups.setdefault(key, []).append(line)
    out: list[dict[str, Any]] = []
    for same in groups.values():
        merged: dict[str, Any] = {}
        for key in same[0]:
            values = [ln.get(key) for ln in same]
            numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
            if key in ("scenario", "journal", "mqtt", "rate") or not numbers:
                merged[key] = values[0]
            else:
                merged[key] = round(statistics.median(numbers), 3)
        merged.pop("run", None)
        merged["summary"] = f"median of {len(same)} runs"
        out.append(merged)
    return out


def progress(text: str) -> None:
    """A progress note on stderr."""
    print(f"hotpath: {text}", file=sys.stderr, flush=True)


def run_floor(rig: Rig, rates: Sequence[int], seconds: float, burst: int) -> dict[Any, float]:
    """The one-hop floor at each rate and in a burst; return p99 (µs) by rate ("burst")."""
    floors: dict[Any, float] = {}
    for rate in rates:
        n = signal_count(rate, seconds)
        progress(f"floor at {rate}/s ({n} messages)")
        lat, _, _, info = rig.run(floor_plan(n, rig.tag("f")), rate)
        line = result_line(scenario="floor", journal=None, rate=rate, sent=n, latencies=lat)
        floors[rate] = line["p99_us"] or 0.0
        emit(line, **info)
    progress(f"floor burst ({burst} messages)")
    lat, tput, _, info = rig.run(floor_plan(burst, rig.tag("f")), None)
    line = result_line(
        scenario="floor_burst", journal=None, rate=None, sent=burst, latencies=lat, throughput=tput
    )
    floors["burst"] = line["p99_us"] or 0.0
    floors["burst_throughput"] = tput
    emit(line, **info)
    return floors


def run_relay(
    rig: Rig, rates: Sequence[int], seconds: float, burst: int, floors: dict[Any, float]
) -> dict[Any, tuple[float, float]]:
    """The minimal paho relay (two hops, no logic) at each rate and in a burst.

    Returns (p99 µs, relay CPU µs per message) by rate ("burst"), to set alertgw against.
    """
    relays: dict[Any, tuple[float, float]] = {}
    jobs: list[int | None] = [*rates, None]
    for rate in jobs:
        n = signal_count(rate, seconds) if rate else burst
        progress(f"paho relay {'burst' if rate is None else f'at {rate}/s'} ({n} messages)")
        plan = floor_plan(n, rig.tag("p"), topic=RELAY_TOPIC)
        lat, tput, (cpu,), info = rig.run(plan, rate, watch=(rig.relay_pid,))
        line = result_line(
            scenario="relay" if rate else "relay_burst",
            journal=None,
            rate=rate,
            sent=n,
            latencies=lat,
            throughput=tput if rate is None else None,
            cpu_s=cpu,
            floor_p99=floors.get(rate if rate else "burst"),
        )
        relays[rate if rate else "burst"] = (line["p99_us"] or 0.0, line["cpu_us_per_signal"])
        if rate is None:
            relays["burst_throughput"] = (tput, 0.0)
        emit(line, **info)
    return relays


def _versus_relay(
    line: dict[str, Any], relay: tuple[float, float] | None, throughput: float | None = None
) -> dict[str, Any]:
    """Extra keys: alertgw's p99 and CPU as multiples of the paho relay's."""
    if relay is None:
        return {}
    p99, cpu = relay
    out: dict[str, Any] = {}
    if line["p99_us"] is not None and p99:
        out["ratio_p99_to_relay"] = round(line["p99_us"] / p99, 2)
    if line["cpu_us_per_signal"] is not None and cpu:
        out["ratio_cpu_to_relay"] = round(line["cpu_us_per_signal"] / cpu, 2)
    if throughput is not None:
        out["ratio_throughput_to_relay"] = round(line["throughput_per_s"] / throughput, 3)
    return out


def run_gateway(
    rig: Rig,
    gw: Gateway,
    *,
    rates: Sequence[int],
    seconds: float,
    burst: int,
    floors: dict[Any, float],
    relays: dict[Any, tuple[float, float]],
) -> None:
    """Warm alertgw up, then each open-loop rate and a closed-loop burst."""
    broker_pid = rig.broker.proc.pid if rig.broker.proc else 0
    progress(f"alertgw journal={gw.synchronous}: warm-up")
    rig.run(gateway_plan(signal_count(1000, 1), rig.tag("w")), 1000)
    jobs: list[int | None] = [*rates, None]
    for rate in jobs:
        n = signal_count(rate, seconds) if rate else burst
        progress(f"alertgw journal={gw.synchronous} {'burst' if rate is None else rate}: {n}")
        rss0, _ = memory_mb(gw.pid)
        reset_peak(gw.pid)
        lat, tput, (cpu, bcpu), info = rig.run(
            gateway_plan(n, rig.tag("g")), rate, watch=(gw.pid, broker_pid)
        )
        rss1, peak = memory_mb(gw.pid)
        line = result_line(
            scenario="alertgw" if rate else "alertgw_burst",
            journal=gw.synchronous,
            mqtt=gw.protocol,
            rate=rate,
            sent=n,
            latencies=lat,
            throughput=tput if rate is None else None,
            cpu_s=cpu,
            broker_cpu_s=bcpu,
            rss=(rss0, rss1, peak),
            floor_p99=floors.get(rate if rate else "burst"),
        )
        if rate is None and floors.get("burst_throughput"):
            info["ratio_throughput_to_floor"] = round(tput / floors["burst_throughput"], 3)
        relay_tput = relays["burst_throughput"][0] if rate is None and relays else None
        info.update(_versus_relay(line, relays.get(rate if rate else "burst"), relay_tput))
        emit(line, **info)
        time.sleep(0.5)  # let the confirm loop finish before the next scenario


def run_flood(
    rig: Rig, gw: Gateway, *, rate: int, flood_rate: int, seconds: float, floors: dict[Any, float]
) -> None:
    """Signals from 500 devices at `rate` while one Zigbee2MQTT device floods at `flood_rate`.

    The babbler's topic is coalesced by its fair share (20/s); the line's latencies are those
    of the other devices' signals, which must not wait behind it.
    """
    n = signal_count(rate, seconds)
    lead = 0.5  # the flood is in full swing before the measured signals start
    flood_n = math.ceil(flood_rate * (n / rate + lead + 0.5))
    progress(f"alertgw journal={gw.synchronous} flood: {n} at {rate}/s, {flood_n} babbling")
    reports = [orjson.dumps({"battery": 80, "linkquality": i % 256}) for i in range(flood_n)]
    rig.flooder.send(([f"{Z2M_BASE}/{BABBLER}"] * flood_n, reports, flood_rate))
    time.sleep(lead)
    lat, _, (cpu,), info = rig.run(gateway_plan(n, rig.tag("fl")), rate, watch=(gw.pid,))
    flood_intended, flood_late = rig.flooder.recv()
    flood_sent = len(flood_intended)
    line = result_line(
        scenario="alertgw_flood",
        journal=gw.synchronous,
        mqtt=gw.protocol,
        rate=rate,
        sent=n,
        latencies=lat,
        floor_p99=floors.get(rate),
    )
    emit(
        line,
        **info,
        flood_rate=flood_rate,
        flood_sent=flood_sent,
        flooder_late_max_us=round(flood_late / 1000),
        cpu_us_per_inbound_message=round(cpu * 1e6 / (n + flood_rate * n / rate), 1),
    )
    time.sleep(0.5)


def run_soak(rig: Rig, gw: Gateway, minutes: float, floors: dict[Any, float]) -> None:
    """1,000 signals/s over 500 devices for `minutes`, in 10 s chunks; RSS sampled per chunk."""
    chunks = max(1, round(minutes * 6))
    rss0, _ = memory_mb(gw.pid)
    reset_peak(gw.pid)
    cpu0 = cpu_seconds(gw.pid)
    samples: list[float] = []
    all_lat: list[float] = []
    sent = 0
    progress(f"soak: {chunks} x 10 s at 1000/s")
    for _ in range(chunks):
        n = signal_count(1000, 10)
        lat, _, _, _ = rig.run(gateway_plan(n, rig.tag("s")), 1000)
        all_lat.extend(lat)
        sent += n
        samples.append(memory_mb(gw.pid)[0])
    all_lat.sort()
    rss1, peak = memory_mb(gw.pid)
    line = result_line(
        scenario="soak",
        journal=gw.synchronous,
        mqtt=gw.protocol,
        rate=1000,
        sent=sent,
        latencies=all_lat,
        cpu_s=cpu_seconds(gw.pid) - cpu0,
        rss=(rss0, rss1, peak),
        floor_p99=floors.get(500),
    )
    emit(line, minutes=round(chunks / 6, 2), rss_samples_mb=samples)


def run_profile(rig: Rig, gw: Gateway, rate: int, seconds: float, out: Path) -> None:
    """Record alertgw with py-spy (raw collapsed stacks) during an open-loop run at `rate`."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    rig.run(gateway_plan(signal_count(1000, 1), rig.tag("w")), 1000)
    n = signal_count(rate, seconds)
    proc = subprocess.Popen(
        [
            spy,
            "record",
            "--pid",
            str(gw.pid),
            "--rate",
            "100",
            "--threads",
            "--format",
            "raw",
            "--duration",
            str(math.ceil(n / rate)),
            "--output",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)  # py-spy attaches
    lat, _, _, info = rig.run(gateway_plan(n, rig.tag("p")), rate)
    proc.wait(60)
    emit(
        result_line(
            scenario="alertgw_profiled",
            journal=gw.synchronous,
            mqtt=gw.protocol,
            rate=rate,
            sent=n,
            latencies=lat,
        ),
        profile=str(out),
        **info,
    )
    for line in summarise_profile(out.read_text()):
        print(line, file=sys.stderr)


def summarise_profile(collapsed: str, top: int = 25) -> list[str]:
    """Self and inclusive sample shares per function from py-spy's collapsed stacks."""
    own: dict[str, int] = {}
    incl: dict[str, int] = {}
    total = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = stack.split(";")
        own[frames[-1]] = own.get(frames[-1], 0) + count
        for frame in set(frames):
            incl[frame] = incl.get(frame, 0) + count
    if not total:
        return ["no samples"]
    by_module: dict[str, int] = {}
    for frame, count in own.items():
        module = frame.rpartition("(")[2].split(":")[0].rpartition("/")
        name = module[0].rpartition("/")[2] + "/" + module[2] if module[0] else module[2]
        by_module[name] = by_module.get(name, 0) + count
    out = [f"{total} samples; top self time:"]
    out += [
        f"  {100 * c / total:5.1f}%  {f}"
        for f, c in sorted(own.items(), key=lambda kv: -kv[1])[:top]
    ]
    out.append("self time by module:")
    out += [
        f"  {100 * c / total:5.1f}%  {m}"
        for m, c in sorted(by_module.items(), key=lambda kv: -kv[1])[:top]
    ]
    out.append("top inclusive:")
    out += [
        f"  {100 * c / total:5.1f}%  {f}"
        for f, c in sorted(incl.items(), key=lambda kv: -kv[1])[:top]
    ]
    return out


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.hotpath", description=__doc__)
    p.add_argument("--quick", action="store_true", help="3 s per rate, 10,000-signal burst")
    p.add_argument("--duration", type=float, default=None, help="seconds per rate (default 10)")
    p.add_argument("--rates", default=",".join(map(str, RATES)), help="comma-separated rates/s")
    p.add_argument("--burst", type=int, default=None, help="burst size (default 50,000)")
    p.add_argument("--journal", default="normal,full", help="journal.synchronous modes to run")
    p.add_argument(
        "--mqtt",
        default=MqttConfig().protocol,
        help='alertgw\'s mqtt.protocol, comma-separated to compare ("3.1.1", "5")',
    )
    p.add_argument("--soak-minutes", type=float, default=0.0, help="also soak at 1,000/s")
    p.add_argument("--only-soak", action="store_true", help="skip the rate and burst runs")
    p.add_argument("--profile", type=Path, default=None, help="py-spy raw output; profile only")
    p.add_argument("--profile-rate", type=int, default=2000)
    p.add_argument(
        "--flood-rate",
        type=int,
        default=FLOOD_RATE,
        help="messages/s one babbling device sends during the flood scenario (0: skip it)",
    )
    p.add_argument(
        "--no-relay", action="store_true", help="skip the minimal paho relay (the Python floor)"
    )
    p.add_argument(
        "--runs", type=int, default=1, help="repeat the scenarios; also print their medians"
    )
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs, journal)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; one JSON line per scenario on stdout."""
    args = parse_args(argv)
    seconds = args.duration if args.duration is not None else (3.0 if args.quick else 10.0)
    burst = args.burst if args.burst is not None else (10_000 if args.quick else 50_000)
    burst = signal_count(burst, 1)
    rates = [int(r) for r in args.rates.split(",") if r.strip()]
    modes = [m.strip() for m in args.journal.split(",") if m.strip()]
    protocols = [m.strip() for m in args.mqtt.split(",") if m.strip()]
    workdir = Path(tempfile.mkdtemp(prefix="alertgw-hotpath-"))
    progress(f"work directory {workdir}")
    rig = start_rig(workdir)
    gw: Gateway | None = None
    try:
        if args.profile is not None:
            gw = Gateway(workdir / "profile", rig.broker.port, modes[0], protocols[0])
            gw.start()
            run_profile(rig, gw, args.profile_rate, seconds, args.profile.resolve())
            return 0
        floors: dict[Any, float] = {}
        relays: dict[Any, tuple[float, float]] = {}
        for run in range(args.runs if not args.only_soak else 0):
            if args.runs > 1:
                progress(f"run {run + 1} of {args.runs}")
            floors = run_floor(rig, rates, seconds, burst)
            if not args.no_relay:
                relays = run_relay(rig, rates, seconds, burst, floors)
            for mode, protocol in itertools.product(modes, protocols):
                name = f"{mode}-mqtt{protocol}"
                gw = Gateway(workdir / f"{name}-{run + 1}", rig.broker.port, mode, protocol)
                gw.start()
                run_gateway(
                    rig,
                    gw,
                    rates=rates,
                    seconds=seconds,
                    burst=burst,
                    floors=floors,
                    relays=relays,
                )
                if args.flood_rate > 0:
                    run_flood(
                        rig,
                        gw,
                        rate=500,
                        flood_rate=args.flood_rate,
                        seconds=seconds,
                        floors=floors,
                    )
                gw.stop()
                gw = None
        if args.runs > 1:
            for line in median_lines(EMITTED):
                print(json.dumps(line), flush=True)
        if args.soak_minutes > 0:
            gw = Gateway(workdir / "soak", rig.broker.port, modes[-1], protocols[-1])
            gw.start()
            rig.run(gateway_plan(signal_count(1000, 1), rig.tag("w")), 1000)
            run_soak(rig, gw, args.soak_minutes, floors)
    finally:
        if gw is not None:
            gw.stop()
        rig.close()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
