"""Stuck sensors and registers that run backwards or are zeroed."""

from __future__ import annotations

import pytest
from cases import in_batches, meter, water_nights

from models.catalog import load_sources
from models.engine import SourceEngine
from settings import Settings
from streams.event_time import iso
from streams.sim.simulator import CitySimulator

TS = 1_767_225_600


def _engine(source: str) -> SourceEngine:
    settings = Settings()
    return SourceEngine(load_sources(settings)[source], settings)


def _health(alerts: list[dict]) -> list[tuple[str, str, str]]:
    return [(a.kind, a.entity, iso(a.ts)) for a in alerts if a.model.startswith("sensor_health")]


@pytest.mark.parametrize("cut", [1, 13, 1000])
def test_stuck_backwards_and_zeroed_fire_once_each_however_batched(cut):
    recs = meter(200)
    for r in recs[50:100]:
        r["kw"] = 2.5  # stuck from minute 50: 30 repeats reached at minute 80
    recs[120]["kwh"] = 10.0  # register runs backwards
    recs[150]["kwh"] = 0.0  # register zeroed
    engine = _engine("power")
    alerts = in_batches(engine, recs, cut)
    assert _health(alerts) == [
        ("kw_stuck", "m1", "2026-01-01T01:20:00.000Z"),
        ("kwh_backwards", "m1", "2026-01-01T02:00:00.000Z"),
        ("kwh_zeroed", "m1", "2026-01-01T02:30:00.000Z"),
    ]


def test_quiet_on_a_simulated_day():
    sim = CitySimulator(entities=600, seed=5, start_ts=TS)
    ticks = sim.ticks()
    engines = {s: _engine(s) for s in ("power", "water", "air")}
    alerts = []
    for _ in range(144):  # one day, ten minutes (60 ticks) at a time
        tick = [r for _ in range(60) for r in next(ticks)]
        for name, engine in engines.items():
            mine = [r for r in tick if r["source"] == name]
            if mine:
                alerts += engine.process(mine).signals
    quiet_models = ("sensor_health", "night_flow", "silence")
    assert [(a.kind, a.entity) for a in alerts if a.model.startswith(quiet_models)] == []
    assert sum(len(e.state) for e in engines.values()) > 400


@pytest.mark.parametrize("cut", [7, 100_000])
def test_night_flow_flags_a_leaking_meter_once_per_night(cut):
    recs = water_nights()
    engine = _engine("water")
    alerts = in_batches(engine, recs, cut)
    leaks = [(a.entity, iso(a.window_start)) for a in alerts if a.kind == "night_flow"]
    assert leaks == [("w-3", "2026-01-01T17:00:00.000Z"), ("w-3", "2026-01-02T17:00:00.000Z")]
