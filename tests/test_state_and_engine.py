"""Columnar state, window rings, threshold rules and the engine's batch invariance."""

from __future__ import annotations

import numpy as np
import orjson
import pytest
from cases import in_batches, meter, to_the_end

from models.catalog import load_sources
from models.engine import SourceEngine
from settings import Settings
from state.entity_state import EntityState, LayoutChanged
from state.slots import SlotMap
from streams.event_time import iso
from tests.conftest import TEST_SOURCES

TS = 1_767_225_600


def _metric_state(**kw) -> EntityState:
    return EntityState(
        numeric=["value"], windowed=["value"], windows={"1m": 5, "1h": 3}, lateness_s=kw.get("lateness_s", 600)
    )


def test_running_stats_match_numpy_for_any_batching():
    rng = np.random.default_rng(3)
    entities = [f"e{i}" for i in rng.integers(0, 20, 3000)]
    values = rng.normal(10, 3, 3000)
    values[rng.random(3000) < 0.1] = np.nan  # absent readings are not counted
    ts = TS + np.arange(3000, dtype=float)
    st = _metric_state()
    for lo in range(0, 3000, 257):
        st.update(st.locate(entities[lo : lo + 257]), ts[lo : lo + 257], values[lo : lo + 257, None])
    for e in ("e0", "e7", "e19"):
        mine = values[[i for i, x in enumerate(entities) if x == e]]
        mine = mine[~np.isnan(mine)]
        row = st.slots.get(e)
        assert st.store["count"][row, 0] == len(mine)
        assert st.store["mean"][row, 0] == pytest.approx(mine.mean())
        assert st.store["m2"][row, 0] / (len(mine) - 1) == pytest.approx(mine.var(ddof=1))


def test_window_ring_keeps_the_last_buckets_and_clears_old_ones():
    st = _metric_state()
    st.update(st.locate(["a"] * 4), np.array([0, 10, 70, 130.0]) + TS, np.array([[1.0], [3.0], [5.0], [7.0]]))
    rows = np.array([0, 0, 0])
    b0 = TS // 60
    assert st.window_means("1m", rows, np.array([b0, b0 + 1, b0 + 2])).ravel().tolist() == [2.0, 5.0, 7.0]
    st.update(st.locate(["a"]), np.array([TS + 60 * 6.0]), np.array([[9.0]]))  # six minutes on: bucket b0 left the ring
    means = st.window_means("1m", np.array([0, 0]), np.array([b0, b0 + 6])).ravel()
    assert np.isnan(means[0]) and means[1] == 9.0


def test_late_records_by_entity_event_time():
    """Late: more than the lateness behind its entity's newest arrival, or older than a record of its entity
    already released to the detectors."""
    st = _metric_state(lateness_s=60)
    st.hold(st.locate(["a", "b"]), np.array([TS + 1000.0, TS]), {"value": np.ones(2)}, {})
    late = st.late(st.locate(["a", "b", "c", "c"]), np.array([TS + 900.0, TS - 30, TS, TS - 500]))
    assert late.tolist() == [True, False, False, True]  # c's second record is behind c's first
    rows, ts, _, columns, _ = st.release(TS + 2000.0)
    assert st.locate(["b", "a"]).tolist() == rows.tolist() and ts.tolist() == [TS, TS + 1000.0]  # in event order
    st.update(rows, ts, columns["value"][:, None])
    assert st.late(st.locate(["b", "b"]), np.array([TS - 30, TS + 1.0])).tolist() == [True, False]


def test_a_buffered_upload_waits_on_its_own_clock_and_an_idle_tick_lets_its_tail_go():
    """A meter uploading an hour of readings two hours behind the partition's clock is released by its own newest
    record, not the clock (its readings would otherwise meet the state out of order); once it stops, the next
    idle tick that finds nothing new of it lets the rest go. Every reading reaches the state, once."""
    engine = SourceEngine(load_sources(Settings())["power"], Settings())
    lateness = engine.state.lateness_s
    engine.process(meter(60, "live", start=TS + 3 * 3600))
    upload = meter(60, "logger", start=TS)
    for i in range(0, 60, 20):
        engine.process(upload[i : i + 20])
    row = engine.state.slots.get("logger")

    def held() -> int:
        return int((engine.state.held.rows == row).sum())

    assert held() == lateness // 60  # the readings less than the lateness before its newest
    clock = TS + 4 * 3600
    engine.sweep(clock)  # it uploaded since the last tick: it may go on
    assert held() == lateness // 60
    engine.sweep(clock + 5)  # nothing of it since the last tick: the upload has ended
    assert held() == 0 and int(engine.state.store["count"][row, 0]) == 60
    assert engine.state.late(engine.state.locate(["logger"]), np.array([TS + 60.0])).tolist() == [True]


def test_checkpoint_bytes_round_trip():
    st = _metric_state()
    st.update(st.locate(["a", "b"]), np.array([TS, TS + 5.0]), np.array([[1.0], [2.0]]))
    st.notes["x"] = 1
    again = _metric_state()
    assert again.load_bytes(st.to_bytes({"run": "r1"})) == {"run": "r1"}
    assert again.slots.names() == ["a", "b"] and again.notes == {"x": 1} and again.watermark == TS + 5.0
    assert np.array_equal(again.store["mean"][:2], st.store["mean"][:2])
    for name in st.store.names():  # every column, window rings (several axes) included
        assert np.array_equal(again.store[name][:2], st.store[name][:2], equal_nan=True), name
    other = EntityState(numeric=["v"], windowed=[], windows={}, lateness_s=1)
    with pytest.raises(ValueError):
        other.load_bytes(st.to_bytes())
    with pytest.raises(ValueError, match="bytes"):
        _metric_state().load_bytes(st.to_bytes()[:-3])  # cut short
    empty = _metric_state()
    empty.load_bytes(_metric_state().to_bytes())  # a partition that has seen no entity yet
    assert len(empty.slots) == 0


def test_a_checkpoint_from_detectors_that_kept_other_columns_keeps_its_entities_and_held_records():
    """A release whose detector keeps other columns cannot read an earlier release's detector state, but the
    records the earlier one accepted and held are not lost with it: they are released as if never stopped."""
    st = _metric_state(lateness_s=60)
    st.store.add("old_detector.level", np.float64)
    st.pool("old_detector.memory", 4, 2).add("codes", np.uint8)
    st.update(st.locate(["a", "b"]), np.array([TS, TS]), np.array([[1.0], [2.0]]))
    st.store["old_detector.level"][:2] = 5.0
    st.hold(st.locate(["b", "a"]), np.array([TS + 10.0, TS + 20.0]), {"value": np.array([3.0, 4.0])}, {})
    st.notes["old_detector.x"] = 1
    today = _metric_state(lateness_s=60)
    today.store.add("new_detector.level", np.float64, fill=np.nan)
    with pytest.raises(LayoutChanged, match="pools differ"):
        today.load_bytes(st.to_bytes({"archive_run": "r1"}))
    assert today.slots.names() == ["a", "b"] and today.watermark == TS and today.notes == {}
    assert np.isnan(today.store["new_detector.level"][:2]).all() and (today.store["last_ts"][:2] == -np.inf).all()
    rows, ts, _, columns, _ = today.release(np.inf)
    assert today.slots.names(rows) == ["b", "a"] and ts.tolist() == [TS + 10.0, TS + 20.0]
    assert columns["value"].tolist() == [3.0, 4.0]
    with pytest.raises(ValueError, match="source declaration"):  # other fields: nothing can be read
        EntityState(numeric=["v"], windowed=[], windows={}, lateness_s=1).load_bytes(st.to_bytes())
    retyped = _metric_state(lateness_s=60)  # the same columns, but a pool's holds another type
    retyped.store.add("old_detector.level", np.float64)
    retyped.pool("old_detector.memory", 4, 2).add("codes", np.uint16)
    with pytest.raises(LayoutChanged, match="codes"):
        retyped.load_bytes(st.to_bytes())
    assert (retyped.store["old_detector.level"][:2] == 0).all() and (retyped.store["last_ts"][:2] == -np.inf).all()
    assert len(retyped.held) == 2 and retyped.slots.names() == ["a", "b"]


def test_a_checkpoint_of_the_earlier_layout_restores_under_todays_names():
    """Release 0.1.0 kept the watermark, the archive run and detectors' values in one ``meta`` dict and named
    some detectors' columns differently (``site.``, ``night.``, ``peer.``)."""
    st = _metric_state()
    st.store.add("peer_use.streak", np.float32)
    st.update(st.locate(["a"]), np.array([TS]), np.array([[1.0]]))
    st.store["peer_use.streak"][0] = 3.0
    header, columns = st.to_bytes().split(b"\n", 1)
    old = orjson.loads(header)
    old["meta"] = {"watermark": TS, "archive_run": "r0", "peer.hist": {"1": [2]}, "silence.swept": TS}
    for key in ("watermark", "notes", "annotations"):
        del old[key]
    blob = orjson.dumps(old) + b"\n" + columns.replace(b'"peer_use.streak"', b'"peer.streak"')
    again = _metric_state()
    again.store.add("peer_use.streak", np.float32)
    assert again.load_bytes(blob) == {"archive_run": "r0"}
    assert again.watermark == TS and again.notes == {"peer_use.hist": {"1": [2]}, "silence.swept": TS}
    assert again.store["peer_use.streak"][0] == 3.0


def _air_records(n_hours: int = 3, breach_hour: int = 1) -> list[dict]:
    recs = []
    for minute in range(n_hours * 60):
        for station in ("s1", "s2"):
            no2 = 260.0 if (station == "s1" and minute // 60 == breach_hour) else 40.0
            pm25 = 90.0 if (station == "s2" and minute in (30, 31, 95)) else 30.0
            recs.append({"entity": station, "ts": TS + minute * 60 + 5, "pm25": pm25, "no2": no2})
    return recs


class _SameHash(str):
    """An id whose hash is every other's: the slot map must tell them apart by their bytes."""

    def __hash__(self) -> int:
        return 7


def test_the_slot_map_tells_ids_apart_by_their_bytes_not_their_hashes_and_keeps_any_string():
    ids = [_SameHash(e) for e in ("a", "b", "ab", "ba", "")]
    slots = SlotMap()
    assert slots.lookup(ids).tolist() == [0, 1, 2, 3, 4]
    assert slots.lookup(ids[::-1]).tolist() == [4, 3, 2, 1, 0] and slots.get(_SameHash("abc")) is None
    more = ["水表-001", "\x00nul", "\ud800", "z" * 300]
    assert slots.lookup(more).tolist() == [5, 6, 7, 8]
    assert slots.names() == [*map(str, ids), *more] and slots.name(5) == "水表-001"
    restored = SlotMap(slots.names())  # as a checkpoint restores it
    assert restored.lookup([*map(str, ids), *more]).tolist() == list(range(9)) and len(restored) == 9


def test_a_million_entities_cost_the_slot_map_under_sixty_bytes_each():
    slots = SlotMap()
    for start in range(0, 1_000_000, 50_000):
        slots.lookup([f"meter-{i:07d}" for i in range(start, start + 50_000)])
    assert slots.get("meter-0999999") == 999_999 and slots.get("meter-1000000") is None
    held = sum(a.nbytes for a in (slots._data, slots._bounds, slots._hashes, slots._places))
    assert held / len(slots) < 60


def test_held_records_are_kept_in_place_at_their_own_bytes():
    """A steady hold (records in, the oldest out) keeps its columns; it does not copy them per batch."""
    st = _metric_state(lateness_s=60)
    rows = st.locate([f"e{i}" for i in range(1000)])
    for k in range(50):
        st.hold(rows, np.full(1000, TS + 10.0 * k), {"value": np.ones(1000)}, {})
        st.release()
    assert len(st.held) == 6000  # the six ticks less than a minute behind the newest
    columns = st.held._numbers
    per_record = sum(columns[name].nbytes for name in columns.names()) / columns.capacity
    assert per_record == 4 + 8 + 8  # row, time, value (a print is computed again where it is wanted)
    assert columns.capacity < 2 * len(st.held)


def test_threshold_rules_fire_once_per_period_and_on_closed_windows():
    settings = Settings(allowed_lateness_s=120, sources_dirs=[TEST_SOURCES])
    engine = SourceEngine(load_sources(settings)["air"], settings)
    alerts = [a for a in engine.process(_air_records()).signals if a.model.startswith("threshold")]
    got = sorted((a.kind, a.entity, iso(a.window_start)) for a in alerts)
    assert got == [("hourly_limit_exceeded", "s1", "2026-01-01T01:00:00.000Z")]  # only the breaching hour, once
    per_reading = SourceEngine(load_sources(settings)["station"], settings)
    readings = [{k: v for k, v in r.items() if k != "no2"} for r in _air_records()]
    got = sorted((a.kind, a.entity, iso(a.window_start)) for a in per_reading.process(readings).signals)
    assert got == [
        ("pm25_over_limit", "s2", "2026-01-01T00:30:05.000Z"),  # minutes 30 and 31: one breach
        ("pm25_over_limit", "s2", "2026-01-01T01:35:05.000Z"),  # minute 95: another
    ]
    no2 = next(a for a in alerts if a.evidence["field"] == "no2")
    assert no2.evidence["mean"] == pytest.approx(260.0) and iso(no2.ts) == "2026-01-01T02:00:00.000Z"
    # quiet data raises nothing
    quiet = SourceEngine(load_sources(settings)["air"], settings)
    calm = [dict(r, pm25=30.0) for r in _air_records(breach_hour=99)]
    assert [a for a in quiet.process(calm).signals if a.model.startswith("threshold")] == []


@pytest.mark.parametrize("cut", [1, 7, 100, 10_000])
def test_same_records_same_alerts_and_state_however_batched(cut):
    settings = Settings(allowed_lateness_s=120)
    records = _air_records()
    whole = SourceEngine(load_sources(settings)["air"], settings)
    expected = to_the_end(whole, records)
    pieces = SourceEngine(load_sources(settings)["air"], settings)
    got = in_batches(pieces, records, cut)
    assert sorted(a.id for a in got) == sorted(a.id for a in expected)
    assert pieces.state.slots.names() == whole.state.slots.names()
    names = whole.state.store.names()
    assert {"last_ts", "mean", "m2", "1h.sum", "threshold.closed.1h"} <= set(names)  # air's window model reads stats
    assert "last" not in names  # and none of its detectors reads last values
    for name in names:
        a, b = pieces.state.store[name], whole.state.store[name]
        assert np.allclose(a, b, rtol=1e-9, equal_nan=True), name  # float sums may differ in the last bit


@pytest.mark.parametrize("cut", [1, 5, 1000])
def test_a_breach_that_keeps_happening_counts_on_its_alert(cut):
    """Three separate breaches within an hour are three signals of one alert (count 3, last seen the third); a
    breach that goes on is signalled once an hour, and a reading without the field does not end it."""
    from replay.pipeline import AlertPipeline

    settings = Settings(sources_dirs=[TEST_SOURCES])
    engine = SourceEngine(load_sources(settings)["station"], settings)
    high = {5, 6, 20, 40, *range(100, 230)}
    recs = [
        {"entity": "s", "ts": TS + 60 * m, **({} if m == 150 else {"pm25": 120.0 if m in high else 20.0})}
        for m in range(240)
    ]
    signals = in_batches(engine, recs, cut)
    minutes = [int(s.ts - TS) // 60 for s in signals if s.kind == "pm25_over_limit"]
    assert minutes == [5, 20, 40, 100, 120, 180]
    pipeline = AlertPipeline(settings)
    for s in signals:
        pipeline.add(s)
    [alert] = [a for a in pipeline.scored() if a["kind"] == "pm25_over_limit"]
    assert alert["count"] == 6 and alert["last_seen"] == "2026-01-01T03:00:00.000Z"


def _station_hours(entity: str, hours: int, pm25: float, no2: float = 30.0) -> list[dict]:
    return [
        {
            "entity": entity,
            "ts": TS + h * 3600 + m * 600 + 1,
            "pm25": pm25 + (m % 3) * 0.5,
            "no2": no2 + m % 2,
            "o3": 50.0 + m % 4,
        }
        for h in range(hours)
        for m in range(6)
    ]


def test_daily_limit_is_judged_on_the_local_calendar_day_with_twenty_hours_and_aqi_on_three_hours_running():
    settings = Settings(allowed_lateness_s=120)
    engine = SourceEngine(load_sources(settings)["air"], settings)
    recs = sorted(
        _station_hours("dirty", 48, 95.0)
        + _station_hours("clean", 48, 20.0)
        + _station_hours("short", 10, 200.0)
        + _station_hours("brief", 2, 200.0),
        key=lambda r: (r["ts"], r["entity"]),
    )
    alerts = engine.process(recs).signals
    daily = [
        (a.entity, iso(a.window_start), iso(a.ts))
        for a in alerts
        if a.kind == "daily_limit_exceeded" and a.evidence["field"] == "pm25"
    ]
    # Beijing's 1 January (16:00Z to 16:00Z) has 16 hours from 00:00Z: too few; 2 January has all 24
    assert daily == [("dirty", "2026-01-01T16:00:00.000Z", "2026-01-02T16:00:00.000Z")]
    aqi = [a for a in alerts if a.kind == "aqi_polluted"]
    assert {a.entity for a in aqi} == {"short"}  # two polluted hours are no episode
    assert [a.evidence["hours"] for a in aqi] == list(range(3, 10))  # its last hour closes at a sweep
    assert aqi[0].evidence["category"] == "heavily polluted" and aqi[0].severity == "major"
    assert aqi[0].evidence["primary"] == ["pm25"] and 240 <= aqi[0].evidence["aqi"] <= 260


def test_aqi_is_hj_633s_whole_number_with_every_tied_primary_pollutant_and_any_pollutant_enough():
    """PM2.5 at 115.2 µg/m³ is IAQI 150.4, published as 151: "moderately polluted" (the boundary hour); PM10 at
    252 is 151 too, so both are primary; a station reporting PM10 alone is judged on it."""
    settings = Settings(allowed_lateness_s=120)
    engine = SourceEngine(load_sources(settings)["air"], settings)
    recs = [
        r
        for k in range(5 * 6)
        for r in (
            {"entity": "both", "ts": TS + 600 * k + 1, "pm25": 115.2, "pm10": 252.0},
            {"entity": "pm10-only", "ts": TS + 600 * k + 2, "pm10": 300.0},
        )
    ]
    out = engine.process(recs)
    assert not out.rejects
    first = {a.entity: a.evidence for a in out.signals if a.kind == "aqi_polluted" and a.evidence["hours"] == 3}
    assert first["both"]["aqi"] == 151 and first["both"]["category"] == "moderately polluted"
    assert first["both"]["primary"] == ["pm10", "pm25"] and first["both"]["iaqi"] == {"pm10": 151, "pm25": 151}
    assert first["pm10-only"]["primary"] == ["pm10"] and first["pm10-only"]["aqi"] == 175
