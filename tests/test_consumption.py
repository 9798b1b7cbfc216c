"""Hour-of-week consumption profiles on crafted meters."""

from __future__ import annotations

import pytest
from cases import homes, in_batches

from models.catalog import load_sources
from models.engine import SourceEngine
from settings import Settings
from state.refdata.reference import RefData
from streams.event_time import iso

SPRING = 1_767_542_400  # 2026-01-05 00:00 local, a Monday: eight weeks up to the Spring Festival and past it


def _abnormal(alerts):
    return [(a.entity, iso(a.window_start)) for a in alerts if a.kind == "kw_consumption_abnormal"]


@pytest.mark.parametrize("cut", [50, 100_000])
def test_sustained_abnormal_use_is_flagged_and_normal_weeks_are_not(cut):
    engine = SourceEngine(load_sources(Settings())["power"], Settings())
    recs = homes(28, spike_at=(25, 3))
    alerts = in_batches(engine, recs, cut)
    # day 25, 03:00-06:00 local: flagged on its third hour, 05:00-06:00 local = 21:00 UTC the day before
    assert _abnormal(alerts) == [("home-2", "2026-01-25T21:00:00.000Z")]
    hit = next(a for a in alerts if a.kind == "kw_consumption_abnormal")
    assert hit.evidence["direction"] == "high" and hit.evidence["ratio"] > 5 and hit.evidence["hours"] == 3


def test_one_odd_hour_and_a_household_away_raise_nothing():
    """An appliance at an unusual hour (one hour) and a week of low use (the family away) are not alerts."""
    engine = SourceEngine(load_sources(Settings())["power"], Settings())
    recs = homes(28, spike_at=None, seed=5)
    for r in recs:
        day, hour = divmod(int(r["ts"] - r["ts"] % 3600 - 1_767_196_800) // 3600, 24)
        if r["entity"] == "home-1" and day == 25 and hour == 3:
            r["kw"] = 6.0
        if r["entity"] == "home-3" and day >= 20:
            r["kw"] = 0.05
    assert _abnormal(in_batches(engine, recs, 1000)) == []


@pytest.mark.parametrize("seed", [3, 4])
def test_quiet_on_four_normal_weeks(seed):
    engine = SourceEngine(load_sources(Settings())["power"], Settings())
    assert _abnormal(engine.process(homes(28, spike_at=None, seed=seed)).signals) == []


def test_public_holidays_count_as_rest_days_and_only_a_weekend_only_calendar_flags_them():
    """Homes that live by the official calendar (Spring Festival 15-23 Feb, Saturdays 14 and 28 Feb worked)."""
    recs = homes(56, spike_at=None, start=SPRING)
    spec, settings = load_sources(Settings())["power"], Settings()
    official = SourceEngine(spec, settings, refdata=RefData.empty())  # the shipped calendar
    assert _abnormal(official.process(recs).signals) == []
    weekends_only = SourceEngine(spec, settings, refdata=RefData.from_doc({"holidays": {}}))
    flagged = {a[1][:10] for a in _abnormal(weekends_only.process(recs).signals)}
    # local dates of the flagged hours (window starts are UTC: 09:00-17:00 local is 01:00-09:00 UTC): the
    # holiday weekdays, and the working days after them, judged against a profile the holidays pulled up
    assert flagged & {"2026-02-16", "2026-02-17", "2026-02-18", "2026-02-19", "2026-02-20", "2026-02-23"}
    assert all("2026-02-14" <= d <= "2026-03-01" for d in flagged), sorted(flagged)
