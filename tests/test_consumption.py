"""Hour-of-week consumption profiles on crafted meters."""

from __future__ import annotations

import numpy as np
import pytest

from models.engine import SourceEngine
from settings import Settings
from state.holidays import RestDays
from state.refdata import RefData
from models.catalog import load_sources

TS = 1_767_196_800   # 2025-12-31 16:00 UTC = 2026-01-01 00:00 local (UTC+8)
SPRING = 1_767_542_400   # 2026-01-05 00:00 local, a Monday: eight weeks up to the Spring Festival and past it


def _meters(days: int, spike_at: tuple[int, int] | None, seed: int = 1, start: int = TS) -> list[dict]:
    """Five homes, a reading every 10 min: evening peak, quiet nights, home all day on rest days (weekends and
    public holidays as the official calendar has them); one hour may be abnormal."""
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
            if spike_at and k == 2 and (day, hour) == spike_at:
                kw = 6.0      # a night of heavy use: ~20x this meter's usual 03:00
            recs.append({"entity": f"home-{k}", "ts": ts + k, "kwh": 1000.0 + step, "kw": round(max(kw, 0), 3)})
    return recs


def _abnormal(alerts):
    return [(a["entity"], a["window_start"]) for a in alerts if a["kind"] == "kw_consumption_abnormal"]


@pytest.mark.parametrize("cut", [50, 100_000])
def test_an_abnormal_hour_is_flagged_and_normal_weeks_are_not(cut):
    engine = SourceEngine(load_sources(Settings())["power"], Settings())
    recs = _meters(28, spike_at=(25, 3))
    alerts = []
    for lo in range(0, len(recs), cut):
        alerts += engine.process(recs[lo:lo + cut]).signals
    # day 25, 03:00-04:00 local = 19:00 UTC the day before
    assert _abnormal(alerts) == [("home-2", "2026-01-25T19:00:00.000Z")]
    hit = next(a for a in alerts if a["kind"] == "kw_consumption_abnormal")
    assert hit["evidence"]["direction"] == "high" and hit["evidence"]["ratio"] > 5


@pytest.mark.parametrize("seed", [3, 4])
def test_quiet_on_four_normal_weeks(seed):
    engine = SourceEngine(load_sources(Settings())["power"], Settings())
    assert _abnormal(engine.process(_meters(28, spike_at=None, seed=seed)).signals) == []


def test_public_holidays_count_as_rest_days_and_only_a_weekend_only_calendar_flags_them():
    """Homes that live by the official calendar (Spring Festival 15-23 Feb, Saturdays 14 and 28 Feb worked)."""
    recs = _meters(56, spike_at=None, start=SPRING)
    spec, settings = load_sources(Settings())["power"], Settings()
    official = SourceEngine(spec, settings, refdata=RefData.empty())      # the shipped calendar
    assert _abnormal(official.process(recs).signals) == []
    weekends_only = SourceEngine(spec, settings, refdata=RefData.from_doc({"holidays": {}}))
    flagged = {a[1][:10] for a in _abnormal(weekends_only.process(recs).signals)}
    # local dates of the flagged hours (window starts are UTC: 09:00-17:00 local is 01:00-09:00 UTC): the
    # holiday weekdays, and the working days after them, judged against a profile the holidays pulled up
    assert flagged & {"2026-02-16", "2026-02-17", "2026-02-18", "2026-02-19", "2026-02-20", "2026-02-23"}
    assert all("2026-02-14" <= d <= "2026-03-01" for d in flagged), sorted(flagged)
