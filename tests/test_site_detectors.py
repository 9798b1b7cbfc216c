"""Detectors that read reference data: use at closed sites, and group renting (peer comparison)."""

from __future__ import annotations

import numpy as np
import pytest
from cases import LOCAL_MIDNIGHT, dwelling_days, in_batches, sites

from models.catalog import load_sources
from models.engine import SourceEngine
from state.refdata.reference import RefData
from streams.event_time import iso

T0 = float(LOCAL_MIDNIGHT)  # 2026-01-01T00:00:00+08:00


def test_use_at_closed_sites_is_caught_and_nothing_else():
    rng = np.random.default_rng(5)
    closed = [f"p-{i}" for i in range(4)]
    idle_closed = ["p-4"]  # closed and really idle: standby draw only
    operating = [f"p-{i}" for i in range(5, 40)]
    ref = sites(
        [(m, "chemical_plant", "closed") for m in closed + idle_closed]
        + [(m, "enterprise", "operating") for m in operating]
    )
    engine = SourceEngine(load_sources()["power"], refdata=ref)
    records = []
    for k in range(24 * 12):  # one day, a reading every 5 minutes
        t = T0 + 300 * k
        night_work = 1 <= (k // 12) < 4  # 01:00-04:00: the closed plants run
        for m in closed:
            records.append({"entity": m, "ts": t, "kwh": 1000 + k, "kw": 40.0 if night_work else 0.0})
        records.append({"entity": idle_closed[0], "ts": t, "kwh": 50.0, "kw": 0.2})
        for m in operating:
            records.append({"entity": m, "ts": t, "kwh": 1000 + k, "kw": float(rng.uniform(5, 50))})
    signals = [s for s in in_batches(engine, records, 997) if s.kind == "closed_site_consumption"]
    flagged = {s.entity for s in signals}
    assert flagged == set(closed)  # recall 1, precision 1
    # one signal per meter per hour of use (dedup_s), with the site in evidence
    assert all(3 <= sum(s.entity == m for s in signals) <= 4 for m in closed)
    assert signals[0].evidence["site"] == f"site-{signals[0].entity}"

    # The site's registration changes to operating: the same use is no longer a signal.
    engine.use_refdata(sites([(m, "chemical_plant", "operating") for m in closed]))
    later = [{"entity": m, "ts": T0 + 86400 + 600, "kwh": 2000.0, "kw": 40.0} for m in closed]
    assert [s for s in engine.process(later).signals if s.kind == "closed_site_consumption"] == []


def test_group_renting_needs_days_running_far_above_peers():
    heavy = {"w-001": 0, "w-002": 1, "w-003": 2, "w-004": 4}  # w-004: only 2 heavy days before the end
    ref = sites([(f"w-{i:03d}", "dwelling", "operating") for i in range(60)])
    records = dwelling_days(6, heavy)
    one = [
        s
        for s in SourceEngine(load_sources()["power"], refdata=ref).process(records).signals
        if s.kind == "group_renting"
    ]
    chunked = [
        s
        for s in in_batches(SourceEngine(load_sources()["power"], refdata=ref), records, 1234)
        if s.kind == "group_renting"
    ]
    assert [s.id for s in one] == [s.id for s in chunked]  # batching does not matter
    assert {s.entity for s in one} == {"w-001", "w-002", "w-003"}
    first = {m: min(iso(s.ts) for s in one if s.entity == m) for m in ("w-001", "w-002", "w-003")}
    # A day is judged against the peers' day before it, so the first day (no peers yet) is not judged:
    # w-001 and w-002 reach three heavy days with local day 4 (ends 2026-01-04T16:00Z), w-003 a day later.
    assert first == {
        "w-001": "2026-01-04T16:00:00.000Z",
        "w-002": "2026-01-04T16:00:00.000Z",
        "w-003": "2026-01-05T16:00:00.000Z",
    }
    assert all(s.evidence["ratio"] > 4 and s.evidence["peer_median"] > 0 for s in one)

    # Without reference data nobody is a dwelling: no peer comparison at all.
    assert [
        s for s in SourceEngine(load_sources()["power"]).process(records[:5000]).signals if s.kind == "group_renting"
    ] == []


def test_a_station_far_above_its_neighbours_and_only_then():
    rng = np.random.default_rng(2)
    cluster = {f"st-{i}": (120.60 + 0.03 * (i % 3), 31.30 + 0.03 * (i // 3)) for i in range(6)}
    cluster["st-far"] = (121.40, 31.30)  # ~75 km away: no neighbours
    ref = RefData.from_doc(
        {
            "sites": [
                {"id": f"site-{e}", "lon": x, "lat": y, "category": "air_station", "meters": e}
                for e, (x, y) in cluster.items()
            ]
        }
    )
    records = []
    for k in range(12 * 60):  # 12 hours, one reading a minute
        t = T0 + 60 * k
        hour = k // 60
        for e in cluster:
            pm25 = 40 + rng.normal(0, 4)
            if e == "st-4" and 3 <= hour < 7:  # a local source near st-4 for four hours
                pm25 += 110
            if e == "st-1" and hour in (3, 4):  # and one near st-1 for two: no alert (three hours running)
                pm25 += 110
            if e == "st-far" and hour == 4:  # high, but nobody to compare with
                pm25 += 200
            if hour == 8:  # a regional episode: everyone high together
                pm25 += 120
            records.append({"entity": e, "ts": t, "pm25": round(float(pm25), 1)})

    def spatial(chunk: int) -> list[dict]:
        engine = SourceEngine(load_sources()["air"], refdata=ref)
        return [s for s in in_batches(engine, records, chunk) if s.kind == "pm25_above_neighbours"]

    whole, cut = spatial(len(records)), spatial(777)
    assert [s.id for s in whole] == [s.id for s in cut]
    # Judged once the hour is past the lateness (600 s) and the grace (3600 s); alerted from the third hour
    assert [(s.entity, iso(s.window_start), s.evidence["hours"]) for s in whole] == [
        ("st-4", "2025-12-31T21:00:00.000Z", 3),
        ("st-4", "2025-12-31T22:00:00.000Z", 4),
    ]
    assert whole[0].evidence["neighbours"] == 5 and 140 < whole[0].evidence["hour_mean"] < 160


@pytest.mark.parametrize("cut", [1, 37, 100_000])
def test_a_water_register_frozen_while_water_flows_is_flagged_and_a_quiet_night_is_not(cut):
    """A household meter whose register stops for three and a half hours while its flow stays at 0.3 m³/h:
    one ``total_frozen`` an hour into it; a meter whose register rests at night (no flow) raises nothing."""
    from cases import in_batches

    ts0, recs = 1_767_225_600, []
    for m in range(0, 6 * 60, 5):
        used = m if m < 60 else 60 if m < 270 else m - 210  # minutes of flow the register shows
        recs.append({"entity": "w-stuck", "ts": ts0 + 60 * m, "flow": 0.3, "total": 100.0 + 0.005 * used})
        recs.append({"entity": "w-night", "ts": ts0 + 60 * m + 1, "flow": 0.0, "total": 50.0})
    engine = SourceEngine(load_sources()["water"].model_copy(update={"detectors": ["health"]}))
    got = [(s.kind, s.entity, s.evidence["frozen_s"]) for s in in_batches(engine, recs, cut)]
    assert got == [("total_frozen", "w-stuck", 3600.0)]
