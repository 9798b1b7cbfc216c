"""Camera events: bans per zone and period, alarm objects, crowd limits per zone, one alert per scene."""

from __future__ import annotations

import pytest
from cases import camera_events, in_batches

from models.catalog import load_sources
from models.engine import SourceEngine
from settings import Settings

JAN = 1_767_225_600  # 2026-01-01 00:00 UTC
APR = 1_775_001_600  # 2026-04-01 00:00 UTC (fishing ban: 1 March - 30 June)


def _video(alerts):
    return sorted((a.kind, a.entity) for a in alerts if a.model.startswith("video"))


@pytest.mark.parametrize("cut", [1, 7, 10_000])
def test_each_rule_fires_once_per_scene_and_not_otherwise(cut):
    recs = (
        camera_events("cam-river-1", "river-bank-01", "boat", APR, 30)  # ban: one scene
        + camera_events("cam-river-2", "river-bank-02", "boat", JAN, 30)  # outside the period
        + camera_events("cam-river-3", "river-bank-03", "person", APR, 5, confidence=0.3)  # not confident
        + camera_events("cam-road-1", "road-04", "boat", APR, 5)  # not a ban zone
        + camera_events("cam-square", "square-01", "person", JAN, 5, count=150)  # under the square's 200
        + camera_events("cam-street", "street-09", "person", JAN, 8, count=60)  # over the default 50 for 70 s
        + camera_events("cam-street-2", "street-10", "person", JAN, 5, count=60)  # over it for 40 s: a moment
        + camera_events("cam-road-2", "road-05", "vehicle", JAN, 30, count=80)  # a traffic jam is no crowd
        + camera_events("cam-river-4", "river-bank-04", "person", APR, 1)  # a passer-by in one frame
        + camera_events("cam-plant", "plant-gate", "smoke", JAN, 3)  # scene 1
        + camera_events("cam-plant", "plant-gate", "smoke", JAN + 3600, 3)  # an hour later: scene 2
    )
    recs.sort(key=lambda r: (r["ts"], r["entity"]))
    engine = SourceEngine(load_sources(Settings())["video"], Settings())
    alerts = in_batches(engine, recs, cut)
    assert _video(alerts) == [
        ("ban_fishing", "cam-river-1"),
        ("crowd", "cam-street"),
        ("smoke", "cam-plant"),
        ("smoke", "cam-plant"),
    ]
    smoke = next(a for a in alerts if a.kind == "smoke")
    assert smoke.severity == "critical" and smoke.evidence["zone"] == "plant-gate"
