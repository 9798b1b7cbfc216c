"""A seeded simulated city: meters, vehicles, cameras and air stations reporting telemetry.

Readings follow daily cycles with noise (homes use more by day on weekends and
public holidays, from the shipped calendar); about 1% of readings go missing; now
and then a value breaks a declared limit, so the demo shows alerts. The same
seed gives the same records.

>>> sim = CitySimulator(entities=50, seed=7, start_ts=1_700_000_000)
>>> batch = next(sim.ticks())
>>> sorted({r["source"] for r in batch})[:2], all("entity" in r and "ts" in r for r in batch)
(['air', 'gps'], True)
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from state.refdata.holidays import RestDays

CENTRE = (31.30, 120.60)  # lat, lon of the simulated city
TICK_S = 10  # simulated seconds per tick

# source -> (share of entities, reporting interval in seconds)
MIX = {"power": (0.40, 60), "water": (0.30, 60), "gps": (0.15, 10), "video": (0.13, 60), "air": (0.02, 60)}
OBJECTS = ("person", "boat", "vehicle", "truck", "animal")


@dataclass
class _Fleet:
    source: str
    ids: list[str]
    interval: int
    phase: np.ndarray
    base: np.ndarray
    total: np.ndarray  # cumulative registers (kWh, m³) or positions


def _daily(ts: float, peak_hour: float) -> float:
    """A 0..1 daily cycle peaking at ``peak_hour`` UTC+8."""
    hour = ((ts / 3600.0) + 8) % 24
    return 0.5 + 0.5 * math.cos((hour - peak_hour) / 24 * 2 * math.pi)


class CitySimulator:
    """Generates the city's records in event-time order, one tick of ``TICK_S`` at a time."""

    def __init__(
        self,
        entities: int = 3000,
        seed: int = 42,
        start_ts: float = 1_767_225_600.0,
        missing: float = 0.01,
        rest_days: RestDays | None = None,
    ):
        self.rng = np.random.default_rng(seed)
        self.rest_days = rest_days or RestDays.shipped()
        self.ts = float(start_ts) - float(start_ts) % TICK_S
        self.missing = missing
        self.fleets: list[_Fleet] = []
        for source, (share, interval) in MIX.items():
            n = max(3, round(entities * share))
            ids = [f"{source}-{i:07d}" for i in range(n)]
            phase = self.rng.integers(0, interval // TICK_S, n) if interval > TICK_S else np.zeros(n, int)
            # The biggest household uses at most 3x the typical one: beyond 4x for days is group renting
            # (models/rules/peer_use.py), which the scenario injects rather than leaving to chance.
            base = np.minimum(self.rng.lognormal(0.0, 0.5, n), 3.0)
            if source == "gps":
                total = np.column_stack(
                    [CENTRE[0] + self.rng.normal(0, 0.05, n), CENTRE[1] + self.rng.normal(0, 0.05, n)]
                )
            else:
                total = self.rng.uniform(100, 10_000, n)
            self.fleets.append(_Fleet(source, ids, interval, phase, base, total))

    @property
    def entity_count(self) -> int:
        return sum(len(f.ids) for f in self.fleets)

    def ticks(self) -> Iterator[list[dict]]:
        """Endless ticks; each is the list of records (with a ``source`` key) of ``TICK_S`` seconds."""
        tick = 0
        while True:
            out: list[dict] = []
            for fleet in self.fleets:
                slot = tick % max(1, fleet.interval // TICK_S)
                due = np.flatnonzero(fleet.phase == slot)
                due = due[self.rng.random(len(due)) >= self.missing]
                if len(due):
                    out += getattr(self, f"_{fleet.source}")(fleet, due, self.ts)
            yield out
            tick += 1
            self.ts += TICK_S

    def _stamps(self, n: int, ts: float) -> np.ndarray:
        return np.round(ts + self.rng.uniform(0, TICK_S, n), 3)

    def _at_home(self, ts: float) -> float:
        """Extra daytime use on rest days (weekends and public holidays): 0 on working days."""
        day = int((ts + 8 * 3600) // 86400)
        return 0.4 * _daily(ts, 13) if self.rest_days.is_rest(np.array([day]))[0] else 0.0

    def _power(self, f: _Fleet, due: np.ndarray, ts: float) -> list[dict]:
        kw = f.base[due] * (0.3 + 1.2 * _daily(ts, 19) + self._at_home(ts)) * self.rng.normal(1, 0.08, len(due))
        kw = np.maximum(kw, 0)
        f.total[due] += kw * f.interval / 3600
        volt = self.rng.normal(230, 4, len(due))
        volt[self.rng.random(len(due)) < 2e-4] = 170.0
        return [
            {
                "source": "power",
                "entity": f.ids[i],
                "ts": t,
                "kwh": round(e, 3),
                "kw": round(p, 3),
                "voltage": round(v, 1),
            }
            for i, t, e, p, v in zip(
                due.tolist(), self._stamps(len(due), ts).tolist(), f.total[due].tolist(), kw.tolist(), volt.tolist()
            )
        ]

    def _water(self, f: _Fleet, due: np.ndarray, ts: float) -> list[dict]:
        in_use = self.rng.random(len(due)) < 0.2 + 0.6 * _daily(ts, 8)  # mostly idle at night
        flow = np.maximum(
            f.base[due] * 0.05 * (0.2 + 1.5 * _daily(ts, 8) + self._at_home(ts)) * self.rng.normal(1, 0.1, len(due)), 0
        )
        flow = np.where(in_use, flow, 0.0)
        f.total[due] += flow * f.interval / 3600
        pressure = self.rng.normal(3.0, 0.2, len(due))
        return [
            {
                "source": "water",
                "entity": f.ids[i],
                "ts": t,
                "flow": round(q, 4),
                "total": round(v, 3),
                "pressure": round(p, 2),
            }
            for i, t, q, v, p in zip(
                due.tolist(),
                self._stamps(len(due), ts).tolist(),
                flow.tolist(),
                f.total[due].tolist(),
                pressure.tolist(),
            )
        ]

    def _gps(self, f: _Fleet, due: np.ndarray, ts: float) -> list[dict]:
        n = len(due)
        speed = np.clip(self.rng.normal(40, 10, n) * (0.6 + 0.4 * _daily(ts, 9)), 0, 160)
        speed[self.rng.random(n) < 1e-4] = 115.0
        heading = self.rng.uniform(0, 360, n)
        step = speed * TICK_S / 3600 / 111.0
        f.total[due, 0] += step * np.cos(np.radians(heading))
        f.total[due, 1] += step * np.sin(np.radians(heading))
        f.total[due] = np.clip(f.total[due], [CENTRE[0] - 0.3, CENTRE[1] - 0.3], [CENTRE[0] + 0.3, CENTRE[1] + 0.3])
        return [
            {
                "source": "gps",
                "entity": f.ids[i],
                "ts": t,
                "lat": round(la, 6),
                "lon": round(lo, 6),
                "speed": round(s, 1),
                "heading": round(h, 1),
            }
            for i, t, la, lo, s, h in zip(
                due.tolist(),
                self._stamps(n, ts).tolist(),
                f.total[due, 0].tolist(),
                f.total[due, 1].tolist(),
                speed.tolist(),
                heading.tolist(),
            )
        ]

    def _video(self, f: _Fleet, due: np.ndarray, ts: float) -> list[dict]:
        n = len(due)
        objects = self.rng.integers(0, len(OBJECTS), n)
        count = self.rng.poisson(2 + 6 * _daily(ts, 17), n)
        count[self.rng.random(n) < 2e-4] = 80
        conf = self.rng.uniform(0.5, 1.0, n)
        return [
            {
                "source": "video",
                "entity": f.ids[i],
                "ts": t,
                "object": OBJECTS[o],
                "count": int(c),
                "confidence": round(p, 3),
                "zone": f"zone-{i % 20:02d}",
            }
            for i, t, o, c, p in zip(
                due.tolist(), self._stamps(n, ts).tolist(), objects.tolist(), count.tolist(), conf.tolist()
            )
        ]

    def _air(self, f: _Fleet, due: np.ndarray, ts: float) -> list[dict]:
        n = len(due)
        cycle = _daily(ts, 8)
        pm25 = np.maximum(f.base[due] * (25 + 25 * cycle) + self.rng.normal(0, 6, n), 1)
        return [
            {
                "source": "air",
                "entity": f.ids[i],
                "ts": t,
                "pm25": round(p, 1),
                "pm10": round(p * 1.6, 1),
                "o3": round(max(5.0, 60 + 80 * (1 - cycle) + self.rng.normal(0, 10)), 1),
                "no2": round(max(1.0, 20 + 30 * cycle + self.rng.normal(0, 5)), 1),
                "so2": round(max(1.0, 8 + self.rng.normal(0, 2)), 1),
                "co": round(max(0.1, 0.6 + 0.4 * cycle + self.rng.normal(0, 0.1)), 2),
            }
            for i, t, p in zip(due.tolist(), self._stamps(n, ts).tolist(), pm25.tolist())
        ]


RATE_CHUNK = 500  # records sent between looks at the rate cap


async def pump(
    sim: CitySimulator,
    producer,
    topics: dict[str, str],
    *,
    speed: float = 0.0,
    rate: float = 0.0,
    max_records: int | None = None,
    duration_s: float | None = None,
    not_after_now: bool = False,
    on_tick=None,
    ticks=None,
) -> int:
    """Send the simulator's ticks through ``producer``; returns the number of records sent.

    ``speed``: simulated seconds per wall second (0: as fast as possible);
    ``rate``: cap in records per wall second (0: none), kept within a tick too (1M entities make
    ~290k records a tick); ``not_after_now``: wait
    rather than emit event times in the future; ``ticks``: the ticks to send
    instead of ``sim.ticks()`` (a :class:`~streams.sim.scenario.Scenario`'s).
    """
    import asyncio
    import time

    sent, started = 0, time.monotonic()
    sim_start = sim.ts
    for batch in ticks if ticks is not None else sim.ticks():
        if max_records is not None and sent >= max_records:
            break
        if duration_s is not None and time.monotonic() - started >= duration_s:
            break
        if max_records is not None:
            batch = batch[: max_records - sent]
        for k, record in enumerate(batch):
            await producer.send(topics[record["source"]], record["entity"], record)
            if rate > 0 and k % RATE_CHUNK == RATE_CHUNK - 1:  # a big city's tick is paced too, not one burst
                await asyncio.sleep(max(0.0, (sent + k + 1) / rate - (time.monotonic() - started)))
        sent += len(batch)
        if on_tick is not None:
            on_tick(len(batch), sim.ts)
        wait = 0.0
        if speed > 0:
            wait = max(wait, (sim.ts - sim_start) / speed - (time.monotonic() - started))
        if rate > 0:
            wait = max(wait, sent / rate - (time.monotonic() - started))
        if not_after_now:
            wait = max(wait, sim.ts - time.time())
        await asyncio.sleep(wait)
    await producer.flush()
    return sent
