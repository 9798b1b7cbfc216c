"""Quiet days on real feeds: the alerts a shift would read per entity-day on slices of public data sets
(tests/data/realdata), replayed in-process as a worker would merge them."""

from __future__ import annotations

import lzma
from collections import Counter
from pathlib import Path

import orjson

from models.catalog import load_sources
from replay.offline import replay
from replay.pipeline import AlertPipeline
from settings import Settings
from state.refdata.reference import RefData
from streams.event_time import epoch

DATA = Path(__file__).parent / "data" / "realdata"


def _records(name: str) -> list[dict]:
    with lzma.open(DATA / f"{name}.ndjson.xz", "rb") as f:
        return [orjson.loads(line) for line in f if line.strip()]


def _entity_days(records: list[dict], utc_offset_h: float) -> int:
    return len({(r["entity"], int((epoch(r["ts"]) + utc_offset_h * 3600) // 86400)) for r in records})


def _alerts(records: list[dict], ref: RefData) -> list[dict]:
    settings = Settings()
    pipeline = AlertPipeline(settings, ref)
    summary = replay(records, load_sources(settings), settings, refdata=ref, on_signal=pipeline.add)
    assert summary.accepted == len(records)  # none of it is refused (a station without PM2.5 still counts)
    return pipeline.scored()


def test_beijing_air_in_a_heating_season_is_a_few_regional_episodes_not_an_alert_an_hour():
    """Eight Beijing stations through November and December 2016: every alert counted, at most 0.3 a
    station-day (a regional episode is one alert listing its stations; daily limits on the calendar day)."""
    records = _records("air")
    ref = RefData.load_dir(DATA / "air-refdata")
    alerts = _alerts(records, ref)
    per_day = len(alerts) / _entity_days(records, 8)
    kinds = Counter(a["kind"] for a in alerts)
    assert per_day <= 0.3, (per_day, kinds)
    assert kinds["aqi_polluted"] >= 3 and kinds["daily_limit_exceeded"] >= 3  # the season's episodes are there
    assert not {k for k in kinds if k.startswith("pm25_over") or k == "silence_recovered"}
    episode = max((a for a in alerts if a["kind"] == "aqi_polluted"), key=lambda a: len(a["members"]))
    assert episode["entity"] == "all" and len(episode["members"]) == 8


def test_a_households_meters_through_half_a_year_raise_at_most_an_alert_or_two():
    """A French household's meter and three sub-meters, January to June 2009: appliances at unusual hours,
    a family away and the seasons raise at most one alert a meter-year (0.003 a meter-day)."""
    records = _records("power")
    alerts = _alerts(records, RefData.empty())
    per_day = len(alerts) / _entity_days(records, 1)
    assert per_day <= 0.003, (per_day, Counter((a["kind"], a["entity"]) for a in alerts))
