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
            *({"entity": "st-q", "ts": hour + 1800 - 3600 * k, "pm25": 400.0} for k in (2, 1, 0)),  # AQI 434, 3 h
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


@pytest.mark.parametrize("cut", [1, 50, 100_000])
def test_an_hourly_station_learns_its_cadence_and_one_outage_is_one_alert(cut):
    """A station reporting hourly in a source that declares a minute: an hour between records is no silence
    (nor before it has shown its cadence: a day is then the limit); twelve hours are, once, and the record that
    ends them ends the outage's alert instead of raising one."""
    from replay.pipeline import AlertPipeline

    hours = [h for h in range(96) if not 60 <= h < 72]
    recs = [{"entity": "st-h", "ts": TS + 3600 * h, "pm25": 30.0} for h in hours]
    recs += [{"entity": "st-m", "ts": TS + 60 * m, "pm25": 30.0} for m in range(96 * 60)]  # keeps the clock
    recs.sort(key=lambda r: (r["ts"], r["entity"]))
    settings = Settings()
    engine = SourceEngine(load_sources(settings)["air"], settings)
    signals = [s for s in in_batches(engine, recs, cut) if s.model.startswith("silence")]
    got = [(s.kind, iso(s.window_start)) for s in signals]
    assert got == [("silent", "2026-01-03T11:00:00.000Z"), ("silence_recovered", "2026-01-03T11:00:00.000Z")]
    outage = signals[0]
    assert 2 * 3600 < outage.evidence["limit_s"] < 6 * 3600  # five cadences, the cadence within 1.41x of an hour
    pipeline = AlertPipeline(settings)
    for s in signals:
        pipeline.add(s)
    ended = [a for a in pipeline.scored() if a["first_seen"] > "2026-01-03"]
    assert [(a["kind"], a["evidence"]["ended"]) for a in ended] == [("silent", "2026-01-04T00:00:00.000Z")]


def test_a_feed_that_stops_as_a_whole_is_one_source_silent_and_its_return_ends_it():
    """Twenty meters stop together: one ``source_silent`` (no alert per meter); the feed returns without one
    meter, which is silent on its own once its limit has passed since the return."""
    settings = Settings()
    engine = SourceEngine(load_sources(settings)["power"], settings)
    engine.process(_meters(30, {}))
    last = TS + 60 * 29 + 19 + engine.state.lateness_s  # judged the lateness after the records
    assert [s.kind for s in engine.sweep(last + 200)] == []
    stopped = engine.sweep(last + 400)  # past every meter's limit (5 minutes) with no record at all
    assert [(s.kind, s.entity, s.evidence["entities"]) for s in stopped] == [("source_silent", "power", 20)]
    assert engine.sweep(last + 3000) == []
    back = [
        dict(r, ts=r["ts"] + 3600) for r in _meters(40, {"meter-03": (0, 40)}) if r["ts"] >= TS + 60 * 30
    ]  # an hour later, all but meter-03
    signals = engine.process(back).signals + engine.flush()
    ended = [(s.kind, s.entity, s.ends) for s in signals if s.model.startswith("silence")]
    assert ended == [("silence_recovered", "power", "source_silent"), ("silent", "meter-03", "")]
    alone = next(s for s in signals if s.kind == "silent")
    assert alone.evidence["last_seen"] == TS + 60 * 29 + 3 and alone.ts >= TS + 60 * 30 + 3600 + 300
