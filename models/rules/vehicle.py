"""Vehicle movements: abnormal dwell, restricted zones, night driving of hazardous vehicles, signal lost while moving.

Zones (restricted areas, authorised sites) come from a GeoJSON file named in
the source's ``[vehicle]`` table; point-in-zone tests are vectorised over the
batch. Which vehicles carry hazardous goods comes from the vehicle registry of
the reference data, or while none is loaded from entity-id patterns in the same
table; authorised routes and their corridors come from the reference data too.

Signals: ``dwell`` (standing more than ``dwell_limit_s`` within ``dwell_radius_m``
outside authorised sites, fix after fix), ``restricted_zone`` (entering one),
``night_driving`` (hazardous goods moving in the night ban), ``speeding``
(above ``max_kmh`` for ``speeding_min_s``; ``speeding_hazardous`` instead for
hazardous goods, above ``hazardous_max_kmh``), ``off_route`` (outside every
authorised corridor) and ``signal_lost_moving`` (no fix for ``signal_lost_s``
after one while moving), ``unregistered_hazardous_transport`` (a vehicle not
registered for hazardous goods that keeps standing at chemical plants: loading
them). The warning models are about hazardous goods: the
kinds in ``hazardous_only`` (zone entry, dwell, lost signal) are raised for
those vehicles only.

>>> from models.catalog import load_sources
>>> from models.engine import SourceEngine
>>> engine = SourceEngine(load_sources()["gps"].model_copy(update={"detectors": ["vehicle"]}))
>>> at_23h = [{"entity": "gps-0000001", "ts": 1767279600 + 10 * i, "lat": 31.2, "lon": 120.5 + 0.0001 * i,
...            "speed": 50.0, "heading": 90.0} for i in range(3)]   # a hazardous-goods truck at 23:00 local
>>> [(s.kind, s.entity, s.severity) for s in engine.process(at_23h).signals + engine.flush()]
[('night_driving', 'gps-0000001', 'major')]
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import shapely
from pydantic import Field
from shapely import STRtree

from models.base import BatchContext, Detector, DetectorSettings, UtcOffsetHours
from models.calendar import local_day_hour
from models.signal import Signal
from models.streak import sustained
from state.entity_state import EntityState
from state.refdata.reference import DATA_DIR, RefData
from state.refdata.zones import Zones, local_xy, metres
from state.sequence import EntitySequence
from streams.registry import Source
from streams.validation import Batch

MODEL = "vehicle@3"
VISITS_KEPT = 8  # the latest visits to hazardous sites kept per vehicle


class VehicleSettings(DetectorSettings):
    """The ``[vehicle]`` table: dwell, restricted zones, night ban, lost signal."""

    zones: str = Field("city_zones.geojson", description="GeoJSON beside the TOML or in state/data/")
    restricted_kind: str = "restricted"
    hazardous_only: list[str] = Field(
        default_factory=lambda: ["restricted_zone", "dwell", "signal_lost_moving"],
        description="alert kinds raised only for hazardous-goods vehicles (what the warning models are about)",
    )
    authorised_kind: str = "authorised_site"
    stationary_kmh: float = Field(3.0, ge=0)
    dwell_radius_m: float = Field(100.0, gt=0, description="moving less than this between fixes is standing")
    dwell_limit_s: float = Field(1800.0, gt=0)
    hazardous: list[str] = Field(
        default_factory=list,
        description="entity patterns of hazardous-goods vehicles "
        "(used only while the reference data registers no vehicles)",
    )
    night_start_h: int = Field(22, ge=0, le=23)
    night_end_h: int = Field(6, ge=0, le=23)
    signal_lost_s: float = Field(
        600.0,
        gt=0,
        description="no fix this long is a lost signal (and breaks a run); tunnels and street canyons "
        "make gaps of a few minutes routine",
    )
    lost_moving_kmh: float = Field(30.0, ge=0, description="a lost signal counts after a fix at driving speed")
    max_kmh: float = Field(100.0, gt=0, description="speed limit of every other vehicle (``speeding``)")
    hazardous_max_kmh: float = Field(80.0, gt=0, description="speed limit of hazardous-goods vehicles")
    hazardous_sites: list[str] = Field(
        default_factory=lambda: ["chemical_plant"], description="site categories where hazardous goods are loaded"
    )
    site_radius_m: float = Field(300.0, gt=0, description="standing this close to such a site is a visit")
    visit_s: float = Field(900.0, gt=0, description="standing this long there is a visit (loading, not passing)")
    unregistered_visits: int = Field(
        3, ge=2, le=VISITS_KEPT, description="visits by a vehicle not registered for hazardous goods ..."
    )
    unregistered_days: float = Field(7.0, gt=0, description="... within this many days: unregistered transport")
    speeding_min_s: float = Field(30.0, ge=0, description="above the limit this long, fix to fix, is speeding")
    speeding_margin: float = Field(
        0.1,
        ge=0,
        description="speeding is above the limit by more than this fraction (the traffic code's first "
        "penalty band); the episode ends back under the limit itself",
    )
    utc_offset_h: UtcOffsetHours = 8.0


def _zones_for(source: Source, name: str) -> Zones:
    """The zones file ``name`` (beside the source's declaration or shipped), loaded once per version."""
    if not name:
        return Zones([], [], [], [])
    candidates = (
        [Path(name)]
        if Path(name).is_absolute()
        else [p / name for p in ((source.path.parent if source.path else None), DATA_DIR) if p is not None]
    )
    for path in candidates:
        if path.is_file():
            return _load_zones(path.resolve(), path.stat().st_mtime_ns)
    raise ValueError(f"source {source.name!r}: zones file {name!r} not found in {[str(c) for c in candidates]}")


@lru_cache(maxsize=16)
def _load_zones(path: Path, _version: int) -> Zones:
    """One :class:`Zones` per file and version, shared by every partition's engine, so its point-in-zone
    grids are built once (about 0.1 s each), not once per partition."""
    return Zones.load(path)


class Corridors:
    """The authorised routes buffered by their corridor width; "which points lie in which corridors"."""

    def __init__(self, ref: RefData):
        self.ids = list(ref.routes)
        index = {rid: k for k, rid in enumerate(self.ids)}
        lats = [c[1] for r in ref.routes.values() for c in shapely.get_coordinates(r["geom"]).tolist()]
        self.lat0 = float(np.mean(lats)) if lats else 0.0
        polys = [
            shapely.transform(r["geom"], lambda ll: np.column_stack(local_xy(ll[:, 0], ll[:, 1], self.lat0))).buffer(
                r["corridor_m"]
            )
            for r in ref.routes.values()
        ]
        self.tree = STRtree(polys) if polys else None
        self.allowed = {v.entity: {index[r] for r in v.routes} for v in ref.vehicles.values() if v.routes}

    def outside(self, entities: list[str], lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        """Per point: True if it lies in none of its vehicle's authorised corridors."""
        out = np.ones(len(lon), dtype=bool)
        if self.tree is None or not len(lon):
            return out
        pts, poly = self.tree.query(shapely.points(*local_xy(lon, lat, self.lat0)), predicate="within")
        for p, k in zip(pts.tolist(), poly.tolist()):
            if k in self.allowed.get(entities[p], ()):
                out[p] = False
        return out


@dataclass(frozen=True, slots=True)
class Fixes:
    """A batch's GPS fixes in per-entity event order (``seq``), with what the checks read: event times,
    positions, speeds, whether each vehicle carries hazardous goods, each fix's previous time from before the
    batch (for an entity's first fix), the detector's state columns by name, and which fixes stand still."""

    batch: Batch
    seq: EntitySequence
    ts: np.ndarray
    lon: np.ndarray
    lat: np.ndarray
    speed: np.ndarray
    hazmat: np.ndarray
    prior_ts: np.ndarray
    st: dict[str, np.ndarray]
    standing: np.ndarray  # stopped, and within the dwell radius of the fix before


class Vehicle(Detector):
    """Raises ``dwell``, ``restricted_zone``, ``night_driving``, ``off_route``, ``speeding``,
    ``speeding_hazardous`` and ``signal_lost_moving``."""

    name = "vehicle"
    settings_model = VehicleSettings
    keeps = frozenset({"last_values"})  # the sweep reads each vehicle's last speed; the console its last position

    def __init__(self, source: Source, state: EntityState):
        super().__init__(source, state)
        # One regex for the id patterns (none: "(?!)" matches nothing), asked once per vehicle first seen.
        self.hazardous_id = re.compile("|".join(map(fnmatch.translate, self.settings.hazardous)) or "(?!)").match
        self.file_zones = self.zones = _zones_for(source, self.settings.zones)
        self.speed_i = state.numeric.index("speed")
        for col in ("since", "dwell_alerted", "night", "fast_since", "fast_alerted", "visit_since", "visit_alerted"):
            state.store.add(f"vehicle.{col}", np.float64, fill=np.nan)  # times
        state.store.add("vehicle.visits", np.float64, (VISITS_KEPT,), fill=np.nan)  # the latest visits, oldest first
        # positions to a metre or so, speeds, a zone index and flags
        for col, fill in (
            ("prev_lon", np.nan),
            ("prev_lat", np.nan),
            ("zone", -1.0),
            ("lost", 0.0),
            ("prev_speed", np.nan),
            ("off", 0.0),
        ):
            state.store.add(f"vehicle.{col}", np.float32, fill=fill)
        state.add_lookup("vehicle.hazmat")
        state.add_lookup("vehicle.routed")  # 1.0: the registry gives the vehicle authorised routes
        self.use_refdata(RefData.empty())

    def use_refdata(self, ref: RefData) -> None:
        self.ref = ref
        self.zones = ref.zones if ref.zones.ids else self.file_zones
        self.corridors = Corridors(ref)
        self.loading = [s for s in ref.sites.values() if s.category in self.settings.hazardous_sites]
        self.loading_xy = np.array([(s.lon, s.lat) for s in self.loading]).reshape(-1, 2)

    def hazardous(self, entity: str) -> bool:
        """From the vehicle registry once one is loaded, else from the declared id patterns."""
        if self.ref.vehicles:
            vehicle = self.ref.vehicles.get(entity)
            return vehicle is not None and vehicle.hazardous
        return self.hazardous_id(entity) is not None

    def _hazmat(self, rows: np.ndarray, state: EntityState) -> np.ndarray:
        """Per record (rows in sequence order): whether its vehicle carries hazardous goods (cached per row)."""
        return state.lookup("vehicle.hazmat", rows, lambda entity: float(self.hazardous(entity))) == 1.0

    def detect(self, batch: Batch, rows: np.ndarray, state: EntityState, ctx: BatchContext) -> list[Signal]:
        seq = ctx.sequence
        ts, lon, lat, speed = (
            a[seq.order] for a in (batch.ts, batch.columns["lon"], batch.columns["lat"], batch.columns["speed"])
        )
        st = {
            c: state.store[f"vehicle.{c}"]
            for c in (
                "prev_lon",
                "prev_lat",
                "since",
                "dwell_alerted",
                "zone",
                "night",
                "lost",
                "prev_speed",
                "off",
                "fast_since",
                "fast_alerted",
                "visit_since",
                "visit_alerted",
                "visits",
            )
        }
        moved = metres(seq.previous(lon, st["prev_lon"]), seq.previous(lat, st["prev_lat"]), lon, lat)
        standing = (speed < self.settings.stationary_kmh) & ~(moved > self.settings.dwell_radius_m)
        hazmat = self._hazmat(seq.rows, state)
        fx = Fixes(batch, seq, ts, lon, lat, speed, hazmat, ctx.prior_last_ts[seq.order], st, standing)
        alerts = self._gaps(fx)
        alerts += self._dwell(fx)
        if len(self.loading):
            alerts += self._visits(fx)
        alerts += self._zones(fx)
        alerts += self._night(fx)
        alerts += self._route(fx, state)
        alerts += self._speed(fx)
        r, last = seq.rows, seq.last
        st["prev_lon"][r[last]], st["prev_lat"][r[last]] = lon[last], lat[last]
        st["prev_speed"][r[last]] = speed[last]
        if ctx.watermark - float(self.recall(state, "swept", -np.inf)) >= self.settings.signal_lost_s / 2:
            alerts += self.sweep(state, ctx.watermark)
        return alerts

    def _gaps(self, fx: Fixes) -> list[Signal]:
        """Signal lost while moving, seen as a gap between two records of the batch (or since the last one)."""
        batch, seq, ts, speed, st = fx.batch, fx.seq, fx.ts, fx.speed, fx.st
        sp, r, order = self.settings, seq.rows, seq.order
        was_lost = seq.first & (st["lost"][r] >= 1)  # alerted, or muted in an outage of the whole feed
        st["lost"][r] = 0.0  # a record: the signal is back
        prev_ts = np.where(seq.first, fx.prior_ts, np.roll(ts, 1))
        prev_speed = seq.previous(speed, st["prev_speed"])
        prev_lon, prev_lat = seq.previous(fx.lon, st["prev_lon"]), seq.previous(fx.lat, st["prev_lat"])
        with np.errstate(invalid="ignore"):
            lost = (ts - prev_ts > sp.signal_lost_s) & (prev_speed >= sp.lost_moving_kmh) & ~was_lost
        if "signal_lost_moving" in sp.hazardous_only:
            lost &= fx.hazmat
        return [
            self._lost(batch.entities[order[i]], float(prev_ts[i]), float(prev_speed[i]), prev_lon[i], prev_lat[i])
            for i in np.flatnonzero(lost).tolist()
        ]

    def _lost(self, entity: str, last_seen: float, speed: float, lon: float, lat: float) -> Signal:
        """``signal_lost_moving``, with where the vehicle was last seen (its place on the map)."""
        where = {"lon": float(lon), "lat": float(lat)} if np.isfinite(lon) and np.isfinite(lat) else {}
        return Signal.new(
            source=self.source.name,
            kind="signal_lost_moving",
            entity=entity,
            ts=last_seen + self.settings.signal_lost_s,
            window_start=last_seen,
            window_s=0.0,
            score=0.7,
            severity="major",
            model=MODEL,
            evidence={"last_seen": last_seen, "last_speed": speed, **where},
        )

    def _dwell(self, fx: Fixes) -> list[Signal]:
        """``dwell``: standing within ``dwell_radius_m`` for ``dwell_limit_s`` outside authorised sites, seen
        fix by fix (a logger switched off in between is no evidence of standing)."""
        seq, sp = fx.seq, self.settings
        still = fx.standing & fx.hazmat if "dwell" in sp.hazardous_only else fx.standing
        hits, since = self._sustained(fx, still, "since", "dwell_alerted", sp.dwell_limit_s)
        allowed = self.zones.inside(fx.lon[hits], fx.lat[hits], sp.authorised_kind)
        return [
            self._alert(
                "dwell",
                fx.batch,
                int(seq.order[i]),
                float(since[i]),
                {"since": float(since[i]), "dwell_s": float(fx.ts[i] - since[i]), "limit_s": sp.dwell_limit_s},
            )
            for i, ok in zip(hits.tolist(), allowed.tolist())
            if not ok
        ]

    def _visits(self, fx: Fixes) -> list[Signal]:
        """``unregistered_hazardous_transport``: a vehicle not registered for hazardous goods standing
        ``visit_s`` at a hazardous site (a chemical plant: loading) ``unregistered_visits`` times within
        ``unregistered_days``; raised at the visit that completes the count."""
        sp, seq, visits = self.settings, fx.seq, fx.st["visits"]
        hits, since = self._sustained(fx, fx.standing & ~fx.hazmat, "visit_since", "visit_alerted", sp.visit_s)
        if not len(hits):
            return []
        xy = self.loading_xy
        near = metres(fx.lon[hits, None], fx.lat[hits, None], xy[None, :, 0], xy[None, :, 1])
        alerts = []
        for j, (i, k) in enumerate(zip(hits.tolist(), near.argmin(axis=1).tolist())):
            if near[j, k] > sp.site_radius_m:
                continue
            row = int(seq.rows[i])
            visits[row] = np.roll(visits[row], -1)
            visits[row, -1] = since[i]
            counted = visits[row, -sp.unregistered_visits :]
            if np.isnan(counted[0]) or since[i] - counted[0] > sp.unregistered_days * 86_400:
                continue
            site = self.loading[k]
            alerts.append(
                self._alert(
                    "unregistered_hazardous_transport",
                    fx.batch,
                    int(seq.order[i]),
                    float(since[i]),
                    {
                        "site": site.id,
                        "site_name": site.name,
                        "visits": [float(v) for v in counted],
                        "days": sp.unregistered_days,
                    },
                    severity="major",
                )
            )
        return alerts

    def _sustained(
        self, fx: Fixes, cond: np.ndarray, since_col: str, alerted_col: str, min_s: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """:func:`models.streak.sustained` over the fixes, a lost signal breaking a run."""
        st, sp = fx.st, self.settings
        return sustained(fx.seq, fx.ts, fx.prior_ts, cond, st[since_col], st[alerted_col], min_s, sp.signal_lost_s)

    def _zones(self, fx: Fixes) -> list[Signal]:
        """``restricted_zone``: entering one (hazardous-goods vehicles only, unless the table says otherwise)."""
        batch, seq, lon, lat, st, hazmat = fx.batch, fx.seq, fx.lon, fx.lat, fx.st, fx.hazmat
        r, order = seq.rows, seq.order
        zone = self.zones.zone_index(lon, lat, self.settings.restricted_kind).astype(np.float64)
        before = seq.previous(zone, st["zone"])
        entered = (zone >= 0) & (zone != before)
        if "restricted_zone" in self.settings.hazardous_only and entered.any():
            entered &= hazmat
        st["zone"][r[seq.last]] = zone[seq.last]
        return [
            self._alert(
                "restricted_zone",
                batch,
                int(order[i]),
                float(batch.ts[order[i]]),
                {
                    "zone": self.zones.ids[int(zone[i])],
                    "zone_name": self.zones.names[int(zone[i])],
                    "lat": float(lat[i]),
                    "lon": float(lon[i]),
                },
            )
            for i in np.flatnonzero(entered).tolist()
        ]

    def _night(self, fx: Fixes) -> list[Signal]:
        """``night_driving``: a hazardous-goods vehicle moving in the night ban; once per vehicle and night."""
        batch, ts, speed, st, hazmat = fx.batch, fx.ts, fx.speed, fx.st, fx.hazmat
        sp, r, order = self.settings, fx.seq.rows, fx.seq.order
        if not hazmat.any():
            return []
        day, hour = local_day_hour(ts, sp.utc_offset_h).T
        banned = (hour >= sp.night_start_h) | (hour < sp.night_end_h)
        night = np.where(hour < sp.night_end_h, day - 1, day)  # the night is named by its evening's date
        moving = np.flatnonzero(banned & (speed >= sp.stationary_kmh) & hazmat)
        alerts = []
        for i in moving.tolist():
            row = int(r[i])
            if st["night"][row] == night[i]:
                continue
            st["night"][row] = night[i]
            alerts.append(
                self._alert(
                    "night_driving",
                    batch,
                    int(order[i]),
                    float(ts[i]),
                    {"speed": float(speed[i]), "banned": f"{sp.night_start_h:02d}:00-{sp.night_end_h:02d}:00 local"},
                )
            )
        return alerts

    def _route(self, fx: Fixes, state: EntityState) -> list[Signal]:
        """``off_route``: a hazardous-goods vehicle with authorised routes drives outside all their corridors
        and outside authorised sites; once per excursion (standing still neither starts nor ends one)."""
        batch, seq, lon, lat, speed, hazmat, st = fx.batch, fx.seq, fx.lon, fx.lat, fx.speed, fx.hazmat, fx.st
        if not self.corridors.allowed or not hazmat.any():
            return []
        cand = hazmat & (speed >= self.settings.stationary_kmh)
        cand[cand] = (
            state.lookup("vehicle.routed", seq.rows[cand], lambda entity: float(entity in self.corridors.allowed))
            == 1.0
        )
        if not cand.any():
            return []
        sub = seq.subset(cand)
        entities = [batch.entities[o] for o in sub.order.tolist()]
        lon, lat, speed = lon[cand], lat[cand], speed[cand]
        off = (
            self.corridors.outside(entities, lon, lat) & ~self.zones.inside(lon, lat, self.settings.authorised_kind)
        ).astype(np.float64)
        return self._episodes(
            "off_route",
            batch,
            sub,
            off,
            st["off"],
            lambda o, k: {"routes": self.ref.vehicles[batch.entities[o]].routes, "speed": float(speed[k])},
        )

    def _speed(self, fx: Fixes) -> list[Signal]:
        """``speeding`` (above ``max_kmh``) and, for hazardous-goods vehicles instead, ``speeding_hazardous``
        (above ``hazardous_max_kmh``): more than ``speeding_margin`` over the limit for ``speeding_min_s``; an
        episode ends back under the limit (or when the signal is lost), so cruising near the limit is one."""
        seq, speed, sp = fx.seq, fx.speed, self.settings
        limit = np.where(fx.hazmat, sp.hazardous_max_kmh, sp.max_kmh)
        over = speed > limit * (1 + sp.speeding_margin)
        _, last = seq.run_start(over | (speed < limit))
        start = np.maximum.accumulate(np.where(seq.first, np.arange(len(speed)), 0))
        stored = ~np.isnan(fx.st["fast_since"][seq.rows])
        fast = np.where(last >= start, over[last.clip(min=0)], stored)
        hits, since = self._sustained(fx, fast, "fast_since", "fast_alerted", sp.speeding_min_s)
        return [
            self._alert(
                "speeding_hazardous" if fx.hazmat[i] else "speeding",
                fx.batch,
                int(seq.order[i]),
                float(since[i]),
                {"speed": float(speed[i]), "limit": float(limit[i]), "since": float(since[i])},
            )
            for i in hits.tolist()
        ]

    def _episodes(
        self,
        kind: str,
        batch: Batch,
        sub: EntitySequence,
        flag: np.ndarray,
        stored: np.ndarray,
        evidence: Callable[[int, int], dict],
    ) -> list[Signal]:
        """A signal where ``flag`` (0/1, in ``sub``'s order) turns on; the last flag per entity is kept."""
        starts = np.flatnonzero((flag == 1.0) & (sub.previous(flag, stored) == 0.0))
        stored[sub.rows[sub.last]] = flag[sub.last]
        return [
            self._alert(kind, batch, int(sub.order[k]), float(batch.ts[sub.order[k]]), evidence(int(sub.order[k]), k))
            for k in starts.tolist()
        ]

    def sweep(self, state: EntityState, now: float) -> list[Signal]:
        """``signal_lost_moving`` for vehicles that went quiet while driving; none while the whole feed is quiet
        (a gateway or the producer stopped: no vehicle's record arrives)."""
        self.remember(state, "swept", now)
        n = len(state)
        last_ts, lost = state.store["last_ts"][:n], state.store["vehicle.lost"][:n]
        speed = state.store["last"][:n, self.speed_i]
        lon, lat = (state.store["last"][:n, state.numeric.index(c)] for c in ("lon", "lat"))
        quiet = np.flatnonzero(
            (now - last_ts > self.settings.signal_lost_s) & (speed >= self.settings.lost_moving_kmh) & (lost == 0)
        )
        if now - state.watermark > self.settings.signal_lost_s:  # the whole feed stopped, not these vehicles
            lost[quiet] = 2.0
            return []
        lost[quiet] = 1.0
        if "signal_lost_moving" in self.settings.hazardous_only and len(quiet):
            quiet = quiet[self._hazmat(quiet, state)]
        return [
            self._lost(state.slots.name(q), float(last_ts[q]), float(speed[q]), lon[q], lat[q]) for q in quiet.tolist()
        ]

    def _alert(
        self, kind: str, batch: Batch, i: int, window_start: float, evidence: dict, severity: str | None = None
    ) -> Signal:
        return Signal.new(
            source=self.source.name,
            kind=kind,
            entity=batch.entities[i],
            ts=float(batch.ts[i]),
            window_start=window_start,
            window_s=0.0,
            score=0.8,
            severity=severity or ("major" if self.hazardous(batch.entities[i]) else "warning"),
            model=MODEL,
            evidence={**evidence, "lon": float(batch.columns["lon"][i]), "lat": float(batch.columns["lat"][i])},
        )
