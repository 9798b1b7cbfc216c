"""Silence: entities that stop reporting, and their recovery; the same however batched."""

from __future__ import annotations

import pytest
from cases import in_batches

from models.catalog import load_sources
from models.engine import SourceEngine
from settings import Settings
from streams.event_time import iso

TS = 1_767_225_600


def _meters(minutes: int, quiet: dict[str, tuple[int, int]]) -> list[dict]:
    recs = []
    for m in range(minutes):
        for k in range(20):
            entity = f"meter-{k:02d}"
            lo, hi = quiet.get(entity, (-1, -1))
            if lo <= m < hi:
                continue
            recs.append({"entity": entity, "ts": TS + 60 * m + k, "kwh": 10.0 + m, "kw": 1.0 + (m % 5) / 10})
    return recs


def _silence(alerts: list[dict]) -> list[tuple[str, str, str]]:
    return sorted((a.kind, a.entity, iso(a.ts)) for a in alerts if a.model.startswith("silence"))


@pytest.mark.parametrize("cut", [1, 20, 333, 100_000])
def test_silent_and_recovered_once_however_batched(cut):
    recs = _meters(150, {"meter-05": (30, 90), "meter-07": (100, 150), "meter-09": (40, 42)})
    engine = SourceEngine(load_sources(Settings())["power"], Settings())
    alerts = in_batches(engine, recs, cut)
    got = _silence(alerts)
    # meter-05: last seen 00:29:05, silent 3 min later, back at 01:30:05; meter-07 never returns;
    # meter-09 misses two readings only (limit: 5 x 60 s) - no signal.
    assert ("silent", "meter-05", "2026-01-01T00:34:05.000Z") in got
    assert ("silence_recovered", "meter-05", "2026-01-01T01:30:05.000Z") in got
    assert {(k, e) for k, e, _ in got} <= {
        ("silent", "meter-05"),
        ("silence_recovered", "meter-05"),
        ("silent", "meter-07"),
    }
    assert ("silent", "meter-07", "2026-01-01T01:44:07.000Z") in got


def test_an_idle_feeds_clock_closes_the_hours_of_stations_gone_quiet():
    """A station's last hour is judged when the partition's idle timer runs the clock past its end plus the
    lateness, not only when that station reports again; each hour once."""
    engine = SourceEngine(load_sources(Settings())["air"], Settings())
    hour = 1_767_229_200.0  # 2026-01-01T01:00Z
    engine.process(
        [
            {"entity": "st-q", "ts": hour + 1800, "pm25": 400.0},  # AQI 434 for its hour, then silence
            {"entity": "st-b", "ts": hour + 1800, "pm25": 10.0},
        ]
    )
    lateness = Settings().allowed_lateness_s
    assert "aqi_polluted" not in [s.kind for s in engine.sweep(hour + 3600 + lateness - 1)]
    closed = [(s.kind, s.entity, iso(s.window_start)) for s in engine.sweep(hour + 3600 + lateness + 1)]
    assert ("aqi_polluted", "st-q", "2026-01-01T01:00:00.000Z") in closed
    assert "aqi_polluted" not in [s.kind for s in engine.sweep(hour + 3 * 3600)]  # judged once
    later = engine.process([{"entity": "st-q", "ts": hour + 7200, "pm25": 10.0}]).signals
    assert "aqi_polluted" not in [s.kind for s in later]
