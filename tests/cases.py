"""Crafted records for the detectors' tests, and the one way tests feed an engine in batches.

Each generator is seeded and returns records in event-time order; a
:class:`Case` puts together what one detector needs to show it works: a source,
records with the incidents it must find, a quiet normal day, and reference data
or a trained model where it reads them.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from models.batch.isolation import WindowOutlierModel
from models.engine import SourceEngine
from models.signal import Signal
from models.versions import ModelVersion
from state.refdata.holidays import RestDays
from state.refdata.reference import RefData

TS = 1_767_225_600  # 2026-01-01 00:00 UTC, 08:00 local (UTC+8)
LOCAL_MIDNIGHT = TS - 8 * 3600
NOON = LOCAL_MIDNIGHT + 12 * 3600
NIGHT = NOON + 11 * 3600  # 23:00 local


def instant_signal(
    source: str,
    kind: str,
    entity: str,
    ts: float,
    *,
    score: float = 1.0,
    severity: str = "warning",
    model: str = "test@1",
    evidence: dict | None = None,
) -> Signal:
    """``Signal.at`` with a test's defaults, as tests of merging and fusion feed."""
    return Signal.at(
        source=source,
        kind=kind,
        entity=entity,
        ts=ts,
        score=score,
        severity=severity,
        model=model,
        evidence=evidence or {},
    )


def in_batches(engine: SourceEngine, records: list[dict], cut: int | Sequence[int]) -> list[Signal]:
    """The signals of ``records`` fed to ``engine`` in batches of ``cut`` records, or cut at the given
    positions, then the end of the input (what is held for event order released)."""
    cuts = range(cut, len(records), cut) if isinstance(cut, int) else sorted(set(cut))
    bounds = [0, *(c for c in cuts if 0 < c < len(records)), len(records)]
    signals = []
    for lo, hi in itertools.pairwise(bounds):
        signals += engine.process(records[lo:hi]).signals
    return signals + engine.flush()


def to_the_end(engine: SourceEngine, records: list) -> list[Signal]:
    """The signals of ``records`` as one batch that is the whole input."""
    return engine.process(records).signals + engine.flush()


def meter(n: int, entity: str = "m1", start: float = TS) -> list[dict]:
    """A power meter reading every minute, its register rising."""
    return [
        {"entity": entity, "ts": start + 60 * i, "kwh": 100.0 + i * 0.5, "kw": 1.0 + (i % 7) * 0.1, "voltage": 230.0}
        for i in range(n)
    ]


def homes(days: int, spike_at: tuple[int, int] | None, seed: int = 1, start: int = LOCAL_MIDNIGHT) -> list[dict]:
    """Five homes, a reading every 10 min: evening peak, quiet nights, home all day on rest days (weekends and
    public holidays as the official calendar has them); ``spike_at`` (day, hour): three abnormal hours from then
    (sustained heavy use at night)."""
    rng = np.random.default_rng(seed)
    first_day = (start + 8 * 3600) // 86400
    rest = RestDays.shipped().is_rest(np.arange(first_day, first_day + days))
    recs = []
    for step in range(days * 144):
        ts = start + step * 600
        hour = (step // 6) % 24
        day = step // 144
        for k in range(5):
            base = 0.3 + (2.0 if 18 <= hour <= 21 else 0.0) + (1.5 if rest[day] and 9 <= hour <= 17 else 0.0)
            kw = base * (1 + 0.1 * k) * rng.normal(1, 0.1)
            if spike_at and k == 2 and day == spike_at[0] and spike_at[1] <= hour < spike_at[1] + 3:
                kw = 6.0  # a night of heavy use: ~20x this meter's usual 03:00
            recs.append({"entity": f"home-{k}", "ts": ts + k, "kwh": 1000.0 + step, "kw": round(max(kw, 0), 3)})
    return recs


def water_nights(days: int = 2, leaking: tuple[int, ...] = (3,)) -> list[dict]:
    """Ten water meters every 5 minutes; a normal home draws now and then, never at night; a leaking one
    never drops below 0.08 m³/h."""
    recs = []
    for m in range(0, days * 24 * 60, 5):
        ts = TS + m * 60
        local_h = ((m // 60) + 8) % 24
        for k in range(10):
            busy = (m // 5 + k) % 5 == 0
            flow = 0.5 if busy or local_h >= 6 else 0.0
            if k in leaking:
                flow += 0.08
            recs.append({"entity": f"w-{k}", "ts": ts, "flow": flow, "total": 100.0 + m, "pressure": 3.0})
    return recs


def camera_events(
    entity: str, zone: str, obj: str, start: float, n: int, every: float = 10, count: float = 2, confidence: float = 0.9
) -> list[dict]:
    """``n`` detections of one camera."""
    return [
        {
            "entity": entity,
            "ts": start + i * every,
            "object": obj,
            "count": count,
            "confidence": confidence,
            "zone": zone,
        }
        for i in range(n)
    ]


def track(
    entity: str,
    start: float,
    n: int,
    lon: float,
    lat: float,
    speed: float,
    dlon: float = 0.0,
    every: float = 10,
    park: bool = True,
) -> list[dict]:
    """``n`` GPS fixes; with ``park`` the last one stands still (the driver switched off)."""
    return [
        {
            "entity": entity,
            "ts": start + i * every,
            "lat": lat,
            "lon": lon + i * dlon,
            "speed": 0.0 if park and i == n - 1 else speed,
            "heading": 90.0,
        }
        for i in range(n)
    ]


def sites(rows: list[tuple[str, str, str]]) -> RefData:
    """Reference data with one site per (meter, category, status), all at one spot."""
    return RefData.from_doc(
        {
            "sites": [
                {"id": f"site-{m}", "lon": 120.6, "lat": 31.3, "category": cat, "status": status, "meters": m}
                for m, cat, status in rows
            ]
        }
    )


def dwelling_days(days: int, heavy: dict[str, int], n: int = 60, step: float = 600.0) -> list[dict]:
    """``n`` dwellings over ``days`` days; ``heavy[m] = d``: dwelling m uses 6x from day d on."""
    rng = np.random.default_rng(11)
    base = rng.lognormal(0.0, 0.3, n)
    records = []
    for k in range(int(days * 86400 / step)):
        t, day = LOCAL_MIDNIGHT + step * k, int(step * k // 86400)
        hour = (step * k % 86400) / 3600
        cycle = 0.6 + 0.4 * np.cos((hour - 19) / 24 * 2 * np.pi)
        for i in range(n):
            m = f"w-{i:03d}"
            kw = base[i] * cycle * rng.normal(1, 0.1) * (6.0 if m in heavy and day >= heavy[m] else 1.0)
            records.append({"entity": m, "ts": t, "kwh": 100.0 + k, "kw": round(float(max(kw, 0.0)), 4)})
    return records


STATIONS = {f"st-{i}": (120.60 + 0.03 * (i % 3), 31.30 + 0.03 * (i // 3)) for i in range(6)}


def station_sites() -> RefData:
    """Six air stations a few km apart, as sites their devices belong to."""
    return RefData.from_doc(
        {
            "sites": [
                {"id": f"site-{e}", "lon": x, "lat": y, "category": "air_station", "meters": e}
                for e, (x, y) in STATIONS.items()
            ]
        }
    )


def air_hours(hours: int, local_source: tuple[str, int, int] | None = None, seed: int = 2) -> list[dict]:
    """The stations of :data:`STATIONS`, a reading a minute; ``local_source`` (station, from hour, to hour)
    adds a polluter near one of them."""
    rng = np.random.default_rng(seed)
    records = []
    for k in range(hours * 60):
        hour = k // 60
        for e in STATIONS:
            pm25 = 40 + rng.normal(0, 4)
            if local_source and e == local_source[0] and local_source[1] <= hour < local_source[2]:
                pm25 += 110
            records.append(
                {
                    "entity": e,
                    "ts": LOCAL_MIDNIGHT + 60 * k,
                    "pm25": round(float(pm25), 1),
                    "no2": round(float(30 + rng.normal(0, 3)), 1),
                }
            )
    return records


def metric_days(days: int, entities: int = 3, spike_at: int | None = None, seed: int = 0) -> list[dict]:
    """``metric`` streams every 5 minutes with a daily cycle and noise; ``spike_at``: the record where the
    second entity jumps far off its cycle for an hour."""
    rng = np.random.default_rng(seed)
    n = days * 288
    recs = []
    for i in range(n):
        for k in range(entities):
            x = 10.0 + 3.0 * np.sin(2 * np.pi * i / 288 + k) + rng.normal(0, 0.3)
            if spike_at is not None and k == 1 and spike_at <= i < spike_at + 12:
                x += 25.0
            recs.append({"entity": f"m{k}", "ts": TS + 300 * i, "value": round(float(x), 4)})
    return recs


def window_model(source, quiet: list[dict]) -> ModelVersion:
    """A window-outlier model version trained on ``quiet`` (the same detector collects its features)."""
    engine = SourceEngine(source.model_copy(update={"detectors": ["window_outlier"]}))
    detector = engine.detectors[0]
    detector.collect()
    to_the_end(engine, quiet)
    model = WindowOutlierModel(trees=50, seed=1).fit(np.concatenate(detector.collected))
    return ModelVersion({"version": "test-1", "source": source.name}, model)


@dataclass
class Case:
    """What one detector needs to show its contract: records with incidents it must find (``kinds``), quiet
    normal records on which it must raise nothing from ``quiet_from`` on (a learning detector's first days are
    its own), and the reference data / model it reads."""

    source: str
    records: Callable[[], list[dict]]
    kinds: set[str]
    quiet: Callable[[], list[dict]]
    quiet_from: float = 0.0
    refdata: Callable[[], RefData] = RefData.empty
    model: Callable[[object], ModelVersion | None] = field(default=lambda source: None)


def _sorted(records: list[dict]) -> list[dict]:
    return sorted(records, key=lambda r: (r["ts"], r["entity"]))


def _health_records() -> list[dict]:
    recs = meter(200)
    for r in recs[50:100]:
        r["kw"] = 2.5  # stuck from minute 50
    recs[120]["kwh"] = 10.0  # register runs backwards
    recs[150]["kwh"] = 0.0  # register zeroed
    return recs


def _quiet_meters(minutes: int = 1440) -> list[dict]:
    return _sorted([r for k in range(5) for r in meter(minutes, f"m{k}", TS + k)])


def _silent_meters() -> list[dict]:
    return [r for r in _quiet_meters(240) if not (r["entity"] == "m2" and TS + 3600 <= r["ts"] < TS + 7200)]


def _closed_sites() -> RefData:
    return sites([("m1", "chemical_plant", "closed"), ("m2", "factory", "operating")])


def _no2_breach() -> list[dict]:
    """:func:`air_hours` with one station's NO2 over its 1-hour limit (200 µg/m³) for hours 2 and 3."""
    return [
        {**r, "no2": 260.0} if r["entity"] == "st-4" and 2 * 3600 <= r["ts"] - LOCAL_MIDNIGHT < 4 * 3600 else r
        for r in air_hours(6)
    ]


def _vehicle_records() -> list[dict]:
    """Hazardous-goods vehicles (``gps-00000*``): driving at night, standing, entering the old town, and
    dark for 17 minutes at 60 km/h."""
    return _sorted(
        track("gps-0000001", NIGHT, 30, 120.50, 31.20, 50.0, dlon=0.0001)  # driving at night
        + track("gps-0000003", NOON, 260, 120.40, 31.10, 0.0)  # stands 43 min in the open
        + track("gps-0000002", NOON, 40, 120.595, 31.31, 30.0, dlon=0.0005)  # enters the old town
        + track("gps-0000004", NOON, 20, 120.30, 31.00, 60.0, dlon=0.001, park=False)  # moving, then nothing
        + track("gps-0000004", NOON + 1200, 5, 120.32, 31.00, 60.0, dlon=0.001)
    )


def _quiet_vehicles() -> list[dict]:
    """A working day of ordinary vehicles: driving in short legs, parking in between, never at night."""
    recs = []
    for k in range(5):
        for leg in range(8):
            start = NOON - 4 * 3600 + leg * 1200 + k * 7
            recs += track(f"gps-0000{200 + k}", start, 60, 120.30 + 0.01 * leg, 31.0 + 0.01 * k, 40.0, dlon=0.0001)
    return _sorted(recs)


def _video_records() -> list[dict]:
    return _sorted(
        camera_events("cam-street", "street-09", "person", TS, 8, count=60)  # over the limit for 70 s
        + camera_events("cam-plant", "plant-gate", "smoke", TS, 3)
        + camera_events("cam-plant", "plant-gate", "smoke", TS + 3600, 3)
    )  # a second scene


def _quiet_cameras() -> list[dict]:
    return _sorted(
        [r for k in range(4) for r in camera_events(f"cam-{k}", f"street-{k:02d}", "person", TS + k, 8640, count=3 + k)]
    )


CASES: dict[str, Case] = {
    "threshold": Case("air", _no2_breach, {"hourly_limit_exceeded"}, lambda: air_hours(24)),
    "aqi": Case("air", lambda: air_hours(6, ("st-4", 2, 5)), {"aqi_polluted"}, lambda: air_hours(24)),
    "spatial": Case(
        "air",
        lambda: air_hours(9, ("st-4", 2, 5)),
        {"pm25_above_neighbours"},
        lambda: air_hours(24),
        refdata=station_sites,
    ),
    "health": Case("power", _health_records, {"kw_stuck", "kwh_backwards", "kwh_zeroed"}, _quiet_meters),
    "silence": Case("power", _silent_meters, {"silent", "silence_recovered"}, _quiet_meters),
    "site_status": Case(
        "power",
        lambda: _quiet_meters(120),
        {"closed_site_consumption"},
        lambda: [r for r in _quiet_meters() if r["entity"] != "m1"],
        refdata=_closed_sites,
    ),
    "consumption": Case(
        "power",
        lambda: homes(28, spike_at=(25, 3)),
        {"kw_consumption_abnormal"},
        lambda: homes(28, spike_at=None, seed=3),
    ),
    "peer_use": Case(
        "power",
        lambda: dwelling_days(6, {"w-001": 0, "w-002": 1}),
        {"group_renting"},
        lambda: dwelling_days(6, {}),
        refdata=lambda: sites([(f"w-{i:03d}", "dwelling", "operating") for i in range(60)]),
    ),
    "night_flow": Case("water", water_nights, {"night_flow"}, lambda: water_nights(1, leaking=())),
    "video": Case("video", _video_records, {"crowd", "smoke"}, _quiet_cameras),
    "vehicle": Case(
        "gps", _vehicle_records, {"dwell", "night_driving", "restricted_zone", "signal_lost_moving"}, _quiet_vehicles
    ),
    "anomaly": Case(
        "metric",
        lambda: metric_days(10, spike_at=9 * 288 + 100),
        {"value_anomaly"},
        lambda: metric_days(14),
        quiet_from=TS + 13 * 86400,
    ),
    "window_outlier": Case(
        "metric",
        lambda: metric_days(3, spike_at=2 * 288 + 100),
        {"window_outlier"},
        lambda: metric_days(2, seed=7),
        quiet_from=TS + 86400,
        model=lambda source: window_model(source, metric_days(6, seed=5)),
    ),
}
