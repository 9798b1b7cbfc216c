"""Detectors that read reference data: use at closed sites, and group renting (peer comparison)."""

from __future__ import annotations

import numpy as np

from models.engine import SourceEngine
from state.refdata import RefData
from models.catalog import load_sources

T0 = 1_767_196_800.0   # 2026-01-01T00:00:00+08:00, a local midnight


def _sites(rows: list[tuple[str, str, str]]) -> RefData:
    return RefData.from_doc({"sites": [{"id": f"site-{m}", "lon": 120.6, "lat": 31.3, "category": cat,
                                        "status": status, "meters": m} for m, cat, status in rows]})


def _run(engine: SourceEngine, records: list[dict], chunk: int | None = None) -> list[dict]:
    chunk = chunk or len(records)
    out = []
    for i in range(0, len(records), chunk):
        out += engine.process(records[i:i + chunk]).signals
    return out


def test_use_at_closed_sites_is_caught_and_nothing_else():
    rng = np.random.default_rng(5)
    closed = [f"p-{i}" for i in range(4)]
    idle_closed = ["p-4"]                         # closed and really idle: standby draw only
    operating = [f"p-{i}" for i in range(5, 40)]
    ref = _sites([(m, "chemical_plant", "closed") for m in closed + idle_closed]
                 + [(m, "enterprise", "operating") for m in operating])
    engine = SourceEngine(load_sources()["power"], refdata=ref)
    records = []
    for k in range(24 * 12):                      # one day, a reading every 5 minutes
        t = T0 + 300 * k
        night_work = 1 <= (k // 12) < 4           # 01:00-04:00: the closed plants run
        for m in closed:
            records.append({"entity": m, "ts": t, "kwh": 1000 + k, "kw": 40.0 if night_work else 0.0})
        records.append({"entity": idle_closed[0], "ts": t, "kwh": 50.0, "kw": 0.2})
        for m in operating:
            records.append({"entity": m, "ts": t, "kwh": 1000 + k, "kw": float(rng.uniform(5, 50))})
    signals = [s for s in _run(engine, records, chunk=997) if s["kind"] == "closed_site_consumption"]
    flagged = {s["entity"] for s in signals}
    assert flagged == set(closed)                 # recall 1, precision 1
    # one signal per meter per hour of use (dedup_s), with the site in evidence
    assert all(3 <= sum(s["entity"] == m for s in signals) <= 4 for m in closed)
    assert signals[0]["evidence"]["site"] == f"site-{signals[0]['entity']}"

    # The site's registration changes to operating: the same use is no longer a signal.
    engine.use_refdata(_sites([(m, "chemical_plant", "operating") for m in closed]))
    later = [{"entity": m, "ts": T0 + 86400 + 600, "kwh": 2000.0, "kw": 40.0} for m in closed]
    assert [s for s in engine.process(later).signals if s["kind"] == "closed_site_consumption"] == []


def _dwelling_days(days: int, heavy: dict[str, int], n: int = 60, step: float = 600.0) -> list[dict]:
    """``n`` dwellings over ``days`` days; ``heavy[m] = d``: dwelling m uses 6x from day d on."""
    rng = np.random.default_rng(11)
    base = rng.lognormal(0.0, 0.3, n)
    records = []
    for k in range(int(days * 86400 / step)):
        t, day = T0 + step * k, int(step * k // 86400)
        hour = (step * k % 86400) / 3600
        cycle = 0.6 + 0.4 * np.cos((hour - 19) / 24 * 2 * np.pi)
        for i in range(n):
            m = f"w-{i:03d}"
            kw = base[i] * cycle * rng.normal(1, 0.1) * (6.0 if m in heavy and day >= heavy[m] else 1.0)
            records.append({"entity": m, "ts": t, "kwh": 100.0 + k, "kw": round(float(max(kw, 0.0)), 4)})
    return records


def test_group_renting_needs_days_running_far_above_peers():
    heavy = {"w-001": 0, "w-002": 1, "w-003": 2, "w-004": 4}   # w-004: only 2 heavy days before the end
    ref = _sites([(f"w-{i:03d}", "dwelling", "operating") for i in range(60)])
    records = _dwelling_days(6, heavy)
    one = [s for s in _run(SourceEngine(load_sources()["power"], refdata=ref), records)
           if s["kind"] == "group_renting"]
    chunked = [s for s in _run(SourceEngine(load_sources()["power"], refdata=ref), records, chunk=1234)
               if s["kind"] == "group_renting"]
    assert [s["id"] for s in one] == [s["id"] for s in chunked]   # batching does not matter
    assert {s["entity"] for s in one} == {"w-001", "w-002", "w-003"}
    first = {m: min(s["ts"] for s in one if s["entity"] == m) for m in ("w-001", "w-002", "w-003")}
    # A day is judged against the peers' day before it, so the first day (no peers yet) is not judged:
    # w-001 and w-002 reach three heavy days with local day 4 (ends 2026-01-04T16:00Z), w-003 a day later.
    assert first == {"w-001": "2026-01-04T16:00:00.000Z", "w-002": "2026-01-04T16:00:00.000Z",
                     "w-003": "2026-01-05T16:00:00.000Z"}
    assert all(s["evidence"]["ratio"] > 4 and s["evidence"]["peer_median"] > 0 for s in one)

    # Without reference data nobody is a dwelling: no peer comparison at all.
    assert [s for s in _run(SourceEngine(load_sources()["power"]), records[:5000])
            if s["kind"] == "group_renting"] == []


def test_a_station_far_above_its_neighbours_and_only_then():
    rng = np.random.default_rng(2)
    cluster = {f"st-{i}": (120.60 + 0.03 * (i % 3), 31.30 + 0.03 * (i // 3)) for i in range(6)}
    cluster["st-far"] = (121.40, 31.30)                      # ~75 km away: no neighbours
    ref = RefData.from_doc({"sites": [{"id": f"site-{e}", "lon": x, "lat": y, "category": "air_station",
                                       "meters": e} for e, (x, y) in cluster.items()]})
    records = []
    for k in range(12 * 60):                                  # 12 hours, one reading a minute
        t = T0 + 60 * k
        hour = k // 60
        for e in cluster:
            pm25 = 40 + rng.normal(0, 4)
            if e == "st-4" and 3 <= hour < 6:                  # a local source near st-4 for three hours
                pm25 += 110
            if e == "st-far" and hour == 4:                    # high, but nobody to compare with
                pm25 += 200
            if hour == 8:                                      # a regional episode: everyone high together
                pm25 += 120
            records.append({"entity": e, "ts": t, "pm25": round(float(pm25), 1)})

    def spatial(chunk: int) -> list[dict]:
        engine = SourceEngine(load_sources()["air"], refdata=ref)
        return [s for s in _run(engine, records, chunk) if s["kind"] == "pm25_above_neighbours"]

    whole, cut = spatial(len(records)), spatial(777)
    assert [s["id"] for s in whole] == [s["id"] for s in cut]
    # Judged once the hour is past the lateness (600 s) and the grace (3600 s): hours 3-5 are, by 12:00.
    assert [(s["entity"], s["window_start"]) for s in whole] == [
        ("st-4", "2025-12-31T19:00:00.000Z"), ("st-4", "2025-12-31T20:00:00.000Z"),
        ("st-4", "2025-12-31T21:00:00.000Z")]
    assert whole[0]["evidence"]["neighbours"] == 5 and 140 < whole[0]["evidence"]["hour_mean"] < 160
