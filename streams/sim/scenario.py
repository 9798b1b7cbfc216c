"""Seeded incidents injected into the simulated city, with their ground truth.

A :class:`Scenario` wraps a :class:`~streams.sim.simulator.CitySimulator` and the
city's reference data. It keeps normal traffic consistent with the register
(meters of closed sites read zero; air stations stay under the hourly limits),
and every ``every_s`` simulated seconds it starts the next incident of
:data:`KINDS`, in turn, on entities drawn with its own seeded generator. Each
incident becomes a ground-truth line: its kind, entities, start and end, when
it becomes observable to a detector, and the alert kinds that detect it.

>>> from streams.sim.city import city_ref
>>> from streams.sim.simulator import CitySimulator
>>> sim = CitySimulator(entities=400, seed=3, start_ts=1_767_225_600)
>>> sc = Scenario(sim, city_ref(sim), seed=3, first_at=1_767_225_600 + 60, every_s=600)
>>> ticks = sc.ticks()
>>> _ = [next(ticks) for _ in range(400)]
>>> [i.kind for i in sc.started][:3]
['tampered_meter', 'sensor_dies', 'hazardous_dwell']
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import orjson

from settings import Settings
from state.refdata.reference import RefData
from streams.event_time import iso
from streams.registry import Registry, load_registry
from streams.sim.simulator import CitySimulator

KINDS = (
    "tampered_meter",
    "sensor_dies",
    "hazardous_dwell",
    "pollution_episode",
    "illegal_resumption",
    "regional_pollution",
    "night_driving",
    "off_route",
    "water_leak",
    "illegal_fishing",
    "group_renting",
)
DWELL_S = 1800 + 900  # 45 min standing: the dwell rule fires after 30
PM25_NORMAL_MAX = 60.0  # normal traffic stays under the 75 ug/m3 limit
TRUCK_KMH = 40.0
OFF_ROUTE_KMH = 30.0  # leaving the corridor sideways
LEAK_M3H = 0.15
RENTING_USE = 6.0  # a group-rented dwelling uses 6x the typical dwelling (peer_use fires above 4x) ...
RENTING_DAYS = 4  # ... from a local midnight, for 4 days: observable when the 3rd whole day ends
POLLUTION_ALERTS = ["aqi_polluted", "pm25_above_neighbours"]


@dataclass
class Incident:
    kind: str
    entities: list[str]
    start: float
    end: float
    observable: float
    alert_kinds: list[str]
    source: str | None = None
    detail: dict = field(default_factory=dict)
    explains: list[tuple[str, str]] = field(default_factory=list)  # (entity, alert kind) it also causes

    def doc(self) -> dict:
        """The ground-truth line (see replay/evaluation.py for how it is read)."""
        return {
            "incident": self.kind,
            "kind": self.kind,
            "entities": self.entities,
            "start": iso(self.start),
            "end": iso(self.end),
            "observable": iso(self.observable),
            "alert_kinds": self.alert_kinds,
            **({"source": self.source} if self.source else {}),
            **({"detail": self.detail} if self.detail else {}),
            **({"explains": [list(x) for x in self.explains]} if self.explains else {}),
        }


class Scenario:
    """Normal traffic kept consistent with the register, plus one seeded incident every ``every_s``."""

    def __init__(
        self,
        sim: CitySimulator,
        ref: RefData,
        seed: int,
        first_at: float,
        every_s: float = 900.0,
        truth: Path | None = None,
        kinds: tuple[str, ...] = KINDS,
        sources: Registry | None = None,
    ):
        """The silence limit, the hazardous-goods night ban, the leak-check night, the fishing ban and how long a
        camera scene must last are the ones ``sources`` (the shipped declarations by default) declare, so
        incidents fall where the detectors look."""
        self.sim, self.ref, self.every_s, self.truth, self.kinds = sim, ref, every_s, truth, kinds
        sources = sources or load_registry()
        power = sources["power"]
        self.silent_after_s = power.silence_factor * power.expected_interval_s
        self.night = (
            _declared(sources, "gps", "vehicle", "night_start_h"),
            _declared(sources, "gps", "vehicle", "night_end_h"),
        )
        self.leak_night = (
            _declared(sources, "water", "night_flow", "night_start_h"),
            _declared(sources, "water", "night_flow", "night_end_h"),
        )
        # (zone pattern prefix, first "MM-DD", last "MM-DD") of each ban
        # a scene is confirmed by the camera's first detection past confirm_s: up to one reporting interval later
        self.confirm_s = _declared(sources, "video", "video", "confirm_s") + sources["video"].expected_interval_s
        self.bans = [
            (zone.rstrip("*"), ban["start"], ban["end"])
            for ban in _declared(sources, "video", "video", "bans")
            for zone in ban["zones"]
        ]
        self.rng = np.random.default_rng(seed + 7)
        self.next_at, self.turn = first_at, 0
        self.started: list[Incident] = []
        self.active: list[Incident] = []
        ids = {f.source: f.ids for f in sim.fleets}
        self.ids = ids
        self.closed_meters = {m for s in ref.sites.values() if s.status == "closed" for m in s.meters}
        self.closed_plants = [s for s in ref.sites.values() if s.status == "closed" and s.category == "chemical_plant"]
        self.hazardous = [e for e in ids.get("gps", []) if e in ref.vehicles and ref.vehicles[e].hazardous]
        self.stations = ids.get("air", [])
        self.used: set[str] = set()
        self.register: dict[str, float] = {}  # a tampered meter's register as it runs backwards
        self.tracks = {e: _Track(ref, e, k) for k, e in enumerate(self.hazardous)}
        self.base = {e: float(b) for f in sim.fleets for e, b in zip(f.ids, f.base)}
        self.dwellings = [
            s for s in ref.sites.values() if s.category == "dwelling" and s.status == "operating" and s.meters
        ]
        self.night_of: dict[str, float] = {}  # truck -> the last night it was made to drive

    def ticks(self) -> Iterator[list[dict]]:
        """The simulator's ticks with normal traffic adjusted and incidents applied."""
        for batch in self.sim.ticks():
            ts = self.sim.ts  # the tick's start (the simulator advances after the consumer takes it)
            while ts >= self.next_at:
                self._start(self.next_at)
                self.next_at += self.every_s
            yield self._apply(ts, batch)

    # -- planning ----------------------------------------------------------------------------------

    def _night(self, t: float) -> bool:
        """Whether ``t`` falls in the hazardous-goods night ban (local time, UTC+8)."""
        hour = (t / 3600 + 8) % 24
        return hour >= self.night[0] or hour < self.night[1]

    def _pick(self, pool: list[str]) -> str | None:
        free = [e for e in pool if e not in self.used]
        if not free:
            return None
        choice = free[int(self.rng.integers(len(free)))]
        self.used.add(choice)
        return choice

    def _start(self, t: float) -> None:
        for _ in range(len(self.kinds)):
            kind = self.kinds[self.turn % len(self.kinds)]
            self.turn += 1
            incident = getattr(self, f"_plan_{kind}")(t)
            if incident is not None:
                self.started.append(incident)
                self.active.append(incident)
                if self.truth is not None:
                    with open(self.truth, "ab") as f:
                        f.write(orjson.dumps(incident.doc()) + b"\n")
                return

    def _plan_tampered_meter(self, t: float) -> Incident | None:
        meter = self._pick([m for m in self.ids.get("power", []) if m not in self.closed_meters])
        if meter is None:
            return None
        return Incident("tampered_meter", [meter], t, t + 3600, t + 60, ["kwh_backwards", "kwh_zeroed"], "power")

    def _plan_sensor_dies(self, t: float) -> Incident | None:
        meter = self._pick([m for m in self.ids.get("power", []) if m not in self.closed_meters])
        if meter is None:
            return None
        return Incident("sensor_dies", [meter], t, t + 6 * 3600, t + 60 + self.silent_after_s, ["silent"], "power")

    def _plan_hazardous_dwell(self, t: float) -> Incident | None:
        truck = self._pick(self.hazardous)
        if truck is None:
            return None
        lon, lat = self._away_from_sites()
        return Incident(
            "hazardous_dwell", [truck], t, t + DWELL_S, t + 1800, ["dwell"], "gps", {"lon": lon, "lat": lat}
        )

    def _plan_pollution_episode(self, t: float) -> Incident | None:
        station = self._pick(self.stations)
        if station is None:
            return None
        end, observable = _polluted_hours(t)
        return Incident("pollution_episode", [station], t, end, observable, POLLUTION_ALERTS, "air")

    def _plan_regional_pollution(self, t: float) -> Incident | None:
        free = [s for s in self.stations if s not in self.used]
        if len(free) < 3:
            return None
        chosen = [free[i] for i in sorted(self.rng.choice(len(free), size=max(3, len(free) // 2), replace=False))]
        self.used.update(chosen)
        end, observable = _polluted_hours(t)
        return Incident("regional_pollution", chosen, t, end, observable, POLLUTION_ALERTS, "air")

    def _plan_illegal_resumption(self, t: float) -> Incident | None:
        power, water = set(self.ids.get("power", [])), set(self.ids.get("water", []))
        plants = [
            p for p in self.closed_plants if p.id not in self.used and power & set(p.meters) and water & set(p.meters)
        ]  # the pattern needs both
        truck = self._pick(self.hazardous)
        if not plants or truck is None:
            return None
        plant = plants[int(self.rng.integers(len(plants)))]
        self.used.add(plant.id)
        return Incident(
            "illegal_resumption",
            [plant.id],
            t,
            t + 2 * 3600,
            t + 1800,
            ["suspected_illegal_resumption"],
            "fusion",
            {"truck": truck, "meters": plant.meters, "lon": plant.lon, "lat": plant.lat + 0.0004},
            [(truck, "dwell")] + [(m, "closed_site_consumption") for m in plant.meters],
        )

    def _plan_night_driving(self, t: float) -> Incident | None:
        if not self._night(t):
            return None
        night = (t / 3600 + 8 - self.night[1]) // 24  # the rule alerts once per truck and night
        truck = self._pick([e for e in self.hazardous if self.night_of.get(e) != night])
        if truck is None:
            return None
        self.night_of[truck] = night
        return Incident("night_driving", [truck], t, t + 3600, t, ["night_driving"], "gps")

    def _plan_off_route(self, t: float) -> Incident | None:
        if self._night(t) or self._night(t + 1800):
            return None
        truck = self._pick(self.hazardous)
        if truck is None:
            return None
        corridor = min((self.ref.routes[r]["corridor_m"] for r in self.ref.vehicles[truck].routes), default=300.0)
        return Incident("off_route", [truck], t, t + 1800, t + corridor / (OFF_ROUTE_KMH / 3.6), ["off_route"], "gps")

    def _plan_water_leak(self, t: float) -> Incident | None:
        meter = self._pick([m for m in self.ids.get("water", []) if m not in self.closed_meters])
        if meter is None:
            return None
        # it becomes observable when the first night it covers whole has ended
        local = t + 8 * 3600
        day_start = local - local % 86_400
        night_start = day_start + self.leak_night[0] * 3600
        if local > night_start:
            night_start += 86_400
        night_end = night_start - self.leak_night[0] * 3600 + self.leak_night[1] * 3600 - 8 * 3600
        return Incident("water_leak", [meter], t, night_end + 1800, night_end + 60, ["night_flow"], "water")

    def _plan_illegal_fishing(self, t: float) -> Incident | None:
        day = datetime.fromtimestamp(t + 8 * 3600, UTC).strftime("%m-%d")
        bank = next(
            (
                prefix
                for prefix, first, last in self.bans
                if (first <= day <= last if first <= last else (day >= first or day <= last))
            ),
            None,
        )
        camera = self._pick(self.ids.get("video", [])) if bank is not None else None
        if camera is None:
            return None
        zone = f"{bank}{int(self.rng.integers(1, 4)):02d}"
        observable = t + self.confirm_s  # a scene that lasts is fishing, not a passer-by
        return Incident("illegal_fishing", [camera], t, t + 1800, observable, ["ban_fishing"], "video", {"zone": zone})

    def _plan_group_renting(self, t: float) -> Incident | None:
        site_id = self._pick([s.id for s in self.dwellings])
        if site_id is None:
            return None
        meters = list(self.ref.sites[site_id].meters)
        self.used.update(meters)
        local = t + 8 * 3600
        start = local - local % 86_400 + 86_400 - 8 * 3600  # from the next local midnight
        end = start + RENTING_DAYS * 86_400
        explains = [
            (m, k)
            for m in meters
            for k in (
                ("kw_consumption_abnormal",) if m.startswith("power") else ("flow_consumption_abnormal", "night_flow")
            )
        ]
        return Incident(
            "group_renting",
            meters,
            start,
            end,
            start + 3 * 86_400,
            ["group_renting"],
            detail={"site": site_id},
            explains=explains,
        )

    def _away_from_sites(self) -> tuple[float, float]:
        """A spot at least 1 km from every registered site (an unauthorised place to stand)."""
        sites = np.array([[s.lon, s.lat] for s in self.ref.sites.values()]) if self.ref.sites else np.empty((0, 2))
        for _ in range(200):
            lon, lat = self.rng.uniform(120.32, 120.88), self.rng.uniform(31.02, 31.58)
            if not len(sites) or (np.hypot((sites[:, 0] - lon) * 95_000, (sites[:, 1] - lat) * 111_000) > 1000).all():
                return round(float(lon), 6), round(float(lat), 6)
        return round(float(lon), 6), round(float(lat), 6)

    # -- applying -----------------------------------------------------------------------------------

    def _apply(self, ts: float, batch: list[dict]) -> list[dict]:
        for done in [i for i in self.active if i.end <= ts and i.kind != "sensor_dies"]:  # a dead sensor stays dead
            self.used -= {
                *done.entities,
                *done.detail.get("meters", []),
                done.detail.get("truck"),
                done.detail.get("site"),
            }
        self.active = [i for i in self.active if i.end > ts or i.kind == "sensor_dies"]
        by_entity: dict[str, list[Incident]] = {}
        for inc in self.active:
            for e in (
                inc.entities
                + ([inc.detail["truck"]] if "truck" in inc.detail else [])
                + list(inc.detail.get("meters", []))
            ):
                by_entity.setdefault(e, []).append(inc)
        out = []
        for r in batch:
            e = r["entity"]
            if e in self.tracks:  # hazardous trucks drive their route by day and park at their depot at night
                r = {**r, **self.tracks[e].at(r["ts"], driving=not self._night(r["ts"]))}
            if e in self.closed_meters:  # a closed site draws nothing (unless an incident says otherwise)
                r = {**r, **({"kw": 0.0} if r["source"] == "power" else {"flow": 0.0})}
            if r["source"] == "air" and r["pm25"] > PM25_NORMAL_MAX:
                pm25 = round(PM25_NORMAL_MAX - 5 + r["pm25"] % 5, 1)
                r = {**r, "pm25": pm25, "pm10": round(pm25 * 1.6, 1)}
            for inc in by_entity.get(e, []):
                r = self._incident_record(inc, r)
                if r is None:
                    break
            if r is not None:
                out.append(r)
        return out

    def _incident_record(self, inc: Incident, r: dict) -> dict | None:
        e, t = r["entity"], r["ts"]
        if t < inc.start:
            return r
        if inc.kind == "sensor_dies":
            return None
        if inc.kind == "tampered_meter":
            reg = self.register.setdefault(e, r["kwh"])
            self.register[e] = reg - 0.5
            return {**r, "kwh": round(max(reg - 0.5, 0.0), 3)}
        if (
            inc.kind in ("hazardous_dwell", "illegal_resumption")
            and e == inc.detail.get("truck", e)
            and r["source"] == "gps"
        ):
            return {**r, "lon": inc.detail["lon"], "lat": inc.detail["lat"], "speed": 0.0}
        if inc.kind == "illegal_resumption" and r["source"] == "power":
            return {**r, "kw": round(30 + float(self.rng.normal(0, 2)), 3)}
        if inc.kind == "illegal_resumption" and r["source"] == "water":
            return {**r, "flow": round(1.5 + float(self.rng.normal(0, 0.1)), 4)}
        if inc.kind == "night_driving":
            return {**r, **self.tracks[e].at(t, driving=True)}
        if inc.kind == "off_route":  # sideways, away from the route where it left it
            track = self.tracks[e]
            on, ahead = track.at(inc.start, driving=True), track.at(inc.start + 60, driving=True)
            east, north = (ahead["lon"] - on["lon"]) * 95_000, (ahead["lat"] - on["lat"]) * 111_000
            norm = max(np.hypot(east, north), 1e-9)
            out_m = (t - inc.start) * OFF_ROUTE_KMH / 3.6
            return {
                **r,
                "lon": round(float(on["lon"] - north / norm * out_m / 95_000), 6),
                "lat": round(float(on["lat"] + east / norm * out_m / 111_000), 6),
                "speed": OFF_ROUTE_KMH,
            }
        if inc.kind == "illegal_fishing":
            return {
                **r,
                "zone": inc.detail["zone"],
                "object": "boat" if int(t) % 120 < 60 else "person",
                "count": 2,
                "confidence": 0.9,
            }
        if inc.kind == "group_renting":  # as much as RENTING_USE typical dwellings, whatever this one used
            field = "kw" if r["source"] == "power" else "flow"
            return {**r, field: round(r[field] * RENTING_USE / self.base.get(e, 1.0), 4)}
        if inc.kind == "water_leak":
            return {**r, "flow": round(r["flow"] + LEAK_M3H + float(self.rng.normal(0, 0.01)), 4)}
        if inc.kind in ("pollution_episode", "regional_pollution"):
            pm25 = round(150 + float(self.rng.normal(0, 8)), 1)
            return {**r, "pm25": pm25, "pm10": round(pm25 * 1.5, 1)}
        return r


def _polluted_hours(t: float) -> tuple[float, float]:
    """A pollution episode from ``t``: it lasts the hour it starts in and the three whole hours after (an
    episode, not a passing plume, for the AQI and the neighbour comparison), and is observable once the third
    whole hour is past the allowed lateness. Returns (end, observable)."""
    end = (t // 3600 + 4) * 3600
    return end, end + Settings.model_fields["allowed_lateness_s"].default + 60


def _declared(sources: Registry, source: str, table: str, key: str):
    """A value the simulated city takes from a source's declaration (ValueError naming it when absent)."""
    try:
        return sources[source].tables[table][key]
    except KeyError:
        raise ValueError(
            f"the simulated city reads {key!r} of {source}'s [{table}] table, which does not declare it"
        ) from None


class _Track:
    """A hazardous truck's normal day: back and forth along its first authorised route; nights at its depot."""

    def __init__(self, ref: RefData, truck: str, k: int):
        vehicle = ref.vehicles[truck]
        route = ref.routes[vehicle.routes[0]] if vehicle.routes else None
        line = route["geom"] if route else None
        line = line.geoms[0] if line is not None and line.geom_type == "MultiLineString" else line
        coords = np.array(line.coords if line is not None else [[120.6, 31.3], [120.6, 31.3]], float)
        seg = np.hypot(np.diff(coords[:, 0]) * 95_000, np.diff(coords[:, 1]) * 111_000)
        self.coords, self.cum = coords, np.concatenate([[0.0], np.cumsum(seg)])
        depot = ref.sites.get(vehicle.sites[0]) if vehicle.sites else None
        self.depot = (depot.lon, depot.lat) if depot else tuple(coords[0])
        self.phase_m = k * 1_700.0

    def at(self, t: float, driving: bool) -> dict:
        if not driving:
            return {"lon": round(self.depot[0], 6), "lat": round(self.depot[1], 6), "speed": 0.0}
        length = max(self.cum[-1], 1.0)
        d = (t * TRUCK_KMH / 3.6 + self.phase_m) % (2 * length)
        d = d if d <= length else 2 * length - d  # there and back
        lon = float(np.interp(d, self.cum, self.coords[:, 0]))
        lat = float(np.interp(d, self.cum, self.coords[:, 1]))
        return {"lon": round(lon, 6), "lat": round(lat, 6), "speed": TRUCK_KMH}
