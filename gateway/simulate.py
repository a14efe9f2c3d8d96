"""A simulated night in a care home: realistic raw signals, each labelled with its situation.

Used by the demo's built-in source, by `alertgw simulate` and by the routing benchmark.
Payloads are what Zigbee2MQTT would publish for the configured devices.
"""

from __future__ import annotations

import dataclasses
import random

import orjson

from gateway.config import Config, DeviceConfig

NIGHT_SECONDS = 9 * 3600
# kind -> (Zigbee2MQTT field, its idle value) for the start-of-night state
_BASELINE = {
    "bed_exit": ("occupancy", False),
    "door_open": ("contact", True),
    "presence": ("occupancy", False),
    "epilepsy": ("epilepsy", False),
    "fall": ("fall", False),
}


@dataclasses.dataclass(frozen=True, slots=True)
class SimEvent:
    """One raw message at `t` seconds into the night."""

    t: float
    topic: str
    payload: bytes
    situation: str
    label: str
    needs_staff: bool


class NightSimulator:
    """Generates one night of raw signals for the devices in a config."""

    def __init__(self, config: Config, *, seed: int = 1, base_topic: str = "zigbee2mqtt") -> None:
        self._cfg = config
        self._rng = random.Random(seed)  # noqa: S311 - simulation, not cryptography
        self._base = base_topic.rstrip("/")
        self._n = 0

    def night(self, length: float = NIGHT_SECONDS) -> list[SimEvent]:
        """Return the night's events sorted by time."""
        rng = self._rng
        events: list[SimEvent] = []
        by_room: dict[str, dict[str, tuple[str, DeviceConfig]]] = {}
        for dev_id, dc in self._cfg.devices.items():
            by_room.setdefault(dc.room, {})[dc.kind] = (dev_id, dc)
        rooms = sorted(by_room)
        # A pull cord early on, so a demo shows an alert within seconds.
        first = next((r for r in rooms if "pull_cord" in by_room[r]), None)
        if first is not None:
            events += self._pull_cord(by_room[first], 5.0, presses=3)
        for room in rooms:
            devs = by_room[room]
            for dev_id, dc in devs.values():
                # Every level sensor's current state first, as Zigbee2MQTT would have it.
                field = _BASELINE.get(dc.kind)
                if field is not None:
                    events.append(
                        self._msg(
                            0.0,
                            dev=(dev_id, dc),
                            body={field[0]: field[1]},
                            situation=f"baseline-{dev_id}",
                            label="baseline",
                            needs=False,
                        )
                    )
            if "bed_exit" in devs:
                # One bed sensor sees one situation at a time: drop candidates that overlap.
                candidates = [
                    (rng.uniform(60, length - 60), self._turn_over, 45.0)
                    for _ in range(rng.randint(1, 3))
                ]
                candidates += [
                    (rng.uniform(60, length - 900), self._bathroom, 650.0)
                    for _ in range(rng.randint(0, 2))
                ]
                if rng.random() < 0.15:
                    candidates.append((rng.uniform(60, length - 3600), self._long_absence, 2500.0))
                free_from = 0.0
                for start, make, lasts in sorted(candidates, key=lambda c: c[0]):
                    if start >= free_from:
                        events += make(devs, start)
                        free_from = start + lasts + 60
            if "pull_cord" in devs and rng.random() < 0.3:
                events += self._pull_cord(devs, rng.uniform(60, length - 600), presses=5)
            if "presence" in devs:
                for start in (3600.0, 5 * 3600.0):  # two rounds a night
                    events += self._round(devs, start + rng.uniform(0, 1800))
            if "epilepsy" in devs and rng.random() < 0.5:
                events += self._seizure(devs, rng.uniform(600, length - 600))
            if "fall" in devs and rng.random() < 0.1:
                events += self._fall(devs, rng.uniform(600, length - 600))
            for dev_id, dc in devs.values():
                # Heartbeats: safety sensors report often, battery sensors about hourly.
                every = 300.0 if dc.kind in ("epilepsy", "fall") else 3000.0
                t = rng.uniform(0, every)
                while t < length:
                    events.append(self._report(dev_id, dc, t))
                    t += every * rng.uniform(0.8, 1.0)
        events.sort(key=lambda e: e.t)
        return [e for e in events if 0 <= e.t <= length]

    def _sid(self, label: str, room: str) -> str:
        self._n += 1
        return f"{label}-{room}-{self._n}"

    def _msg(
        self,
        t: float,
        *,
        dev: tuple[str, DeviceConfig],
        body: dict[str, object],
        situation: str,
        label: str,
        needs: bool,
    ) -> SimEvent:
        dev_id, dc = dev
        payload = {**body, "battery": 87, "linkquality": 96}
        return SimEvent(
            t, f"{self._base}/{dc.name or dev_id}", orjson.dumps(payload), situation, label, needs
        )

    def _turn_over(self, devs: dict[str, tuple[str, DeviceConfig]], t: float) -> list[SimEvent]:
        bed = devs["bed_exit"]
        sid = self._sid("turn_over", bed[1].room)
        back = t + self._rng.uniform(4, 40)
        return [
            self._msg(
                t, dev=bed, body={"occupancy": True}, situation=sid, label="turn_over", needs=False
            ),
            self._msg(
                back,
                dev=bed,
                body={"occupancy": False},
                situation=sid,
                label="turn_over",
                needs=False,
            ),
        ]

    def _bathroom(self, devs: dict[str, tuple[str, DeviceConfig]], t: float) -> list[SimEvent]:
        bed = devs["bed_exit"]
        needs = "fall_risk" in bed[1].tags
        sid = self._sid("bathroom_visit", bed[1].room)
        back = t + self._rng.uniform(180, 600)
        out = [
            self._msg(
                t,
                dev=bed,
                body={"occupancy": True},
                situation=sid,
                label="bathroom_visit",
                needs=needs,
            )
        ]
        if "door_open" in devs:
            door = devs["door_open"]
            out.append(
                self._msg(
                    t + 20,
                    dev=door,
                    body={"contact": False},
                    situation=sid,
                    label="bathroom_visit",
                    needs=needs,
                )
            )
            out.append(
                self._msg(
                    t + 30,
                    dev=door,
                    body={"contact": True},
                    situation=sid,
                    label="bathroom_visit",
                    needs=needs,
                )
            )
        out.append(
            self._msg(
                back,
                dev=bed,
                body={"occupancy": False},
                situation=sid,
                label="bathroom_visit",
                needs=needs,
            )
        )
        return out

    def _long_absence(self, devs: dict[str, tuple[str, DeviceConfig]], t: float) -> list[SimEvent]:
        bed = devs["bed_exit"]
        sid = self._sid("long_absence", bed[1].room)
        out = [
            self._msg(
                t,
                dev=bed,
                body={"occupancy": True},
                situation=sid,
                label="long_absence",
                needs=True,
            )
        ]
        # Staff come after the alert: within minutes for a fall-risk resident, after the
        # 20-minute absence rule for the others.
        fall_risk = "fall_risk" in bed[1].tags
        visit = self._rng.uniform(120, 400) if fall_risk else self._rng.uniform(1500, 1900)
        out += self._staff_visit(devs, t + visit, sid, "long_absence")
        # The staff help the resident back to bed while they are in the room.
        back = t + visit + self._rng.uniform(30, 100)
        out.append(
            self._msg(
                back,
                dev=bed,
                body={"occupancy": False},
                situation=sid,
                label="long_absence",
                needs=True,
            )
        )
        return out

    def _pull_cord(
        self, devs: dict[str, tuple[str, DeviceConfig]], t: float, presses: int
    ) -> list[SimEvent]:
        cord = devs["pull_cord"]
        sid = self._sid("pull_cord", cord[1].room)
        out = [
            self._msg(
                t + i * self._rng.uniform(4, 12),
                dev=cord,
                body={"action": "single"},
                situation=sid,
                label="pull_cord",
                needs=True,
            )
            for i in range(presses)
        ]
        out += self._staff_visit(devs, t + self._rng.uniform(90, 300), sid, "pull_cord")
        return out

    def _staff_visit(
        self, devs: dict[str, tuple[str, DeviceConfig]], t: float, sid: str, label: str
    ) -> list[SimEvent]:
        if "presence" not in devs:
            return []
        p = devs["presence"]
        return [
            self._msg(t, dev=p, body={"occupancy": True}, situation=sid, label=label, needs=True),
            self._msg(
                t + self._rng.uniform(120, 400),
                dev=p,
                body={"occupancy": False},
                situation=sid,
                label=label,
                needs=True,
            ),
        ]

    def _round(self, devs: dict[str, tuple[str, DeviceConfig]], t: float) -> list[SimEvent]:
        p = devs["presence"]
        sid = self._sid("staff_round", p[1].room)
        return [
            self._msg(
                t, dev=p, body={"occupancy": True}, situation=sid, label="staff_round", needs=False
            ),
            self._msg(
                t + self._rng.uniform(30, 120),
                dev=p,
                body={"occupancy": False},
                situation=sid,
                label="staff_round",
                needs=False,
            ),
        ]

    def _seizure(self, devs: dict[str, tuple[str, DeviceConfig]], t: float) -> list[SimEvent]:
        e = devs["epilepsy"]
        sid = self._sid("seizure", e[1].room)
        end = t + self._rng.uniform(60, 180)
        out = [
            self._msg(t, dev=e, body={"epilepsy": True}, situation=sid, label="seizure", needs=True)
        ]
        out += self._staff_visit(devs, t + self._rng.uniform(60, 120), sid, "seizure")
        out.append(
            self._msg(
                end, dev=e, body={"epilepsy": False}, situation=sid, label="seizure", needs=True
            )
        )
        return out

    def _fall(self, devs: dict[str, tuple[str, DeviceConfig]], t: float) -> list[SimEvent]:
        f = devs["fall"]
        sid = self._sid("fall", f[1].room)
        out = [self._msg(t, dev=f, body={"fall": True}, situation=sid, label="fall", needs=True)]
        out += self._staff_visit(devs, t + self._rng.uniform(60, 150), sid, "fall")
        out.append(
            self._msg(t + 400, dev=f, body={"fall": False}, situation=sid, label="fall", needs=True)
        )
        return out

    def _report(self, dev_id: str, dc: DeviceConfig, t: float) -> SimEvent:
        sid = self._sid("battery_report", dc.room)
        # A heartbeat without level fields: the simulator does not track each sensor's level,
        # and a stale level in a heartbeat would fake a transition.
        body: dict[str, object] = {}
        return self._msg(
            t, dev=(dev_id, dc), body=body, situation=sid, label="battery_report", needs=False
        )
