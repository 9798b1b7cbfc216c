"""Vehicle movements on crafted tracks: dwell, restricted zones, night driving, lost signal."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from cases import NIGHT, NOON, in_batches, track
from shapely import STRtree

from models.catalog import load_sources
from models.engine import SourceEngine
from settings import Settings
from state.refdata.reference import DATA_DIR
from state.refdata.zones import Zones
from streams.event_time import iso


def _vehicle(alerts):
    return sorted((a.kind, a.entity) for a in alerts if a.model.startswith("vehicle"))


@pytest.mark.parametrize("cut", [1, 13, 10_000])
def test_each_movement_rule_fires_once_and_only_where_it_should(cut):
    recs = (
        track("gps-0000001", NIGHT, 30, 120.50, 31.20, 50.0, dlon=0.0001)  # hazardous, driving at night
        + track("gps-0000100", NIGHT, 30, 120.50, 31.21, 50.0, dlon=0.0001)  # ordinary vehicle at night
        + track("gps-0000003", NOON, 260, 120.40, 31.10, 0.0)  # hazardous, stands 43 min in the open
        + track("gps-0000101", NOON, 260, 120.40, 31.12, 0.0)  # ordinary, the same
        + track("gps-0000005", NOON, 260, 120.58, 31.36, 0.0)  # hazardous, stands in the authorised depot
        + track("gps-0000006", NOON, 30, 120.45, 31.10, 0.0)  # hazardous: stands 5 min, logger off 40 min,
        + track("gps-0000006", NOON + 2700, 30, 120.45, 31.10, 0.0)  # stands 5 min: no evidence of a dwell
        + track("gps-0000002", NOON, 40, 120.595, 31.31, 30.0, dlon=0.0005)  # hazardous, enters the old town
        + track("gps-0000103", NOON, 40, 120.595, 31.312, 30.0, dlon=0.0005)  # ordinary, same street
        + track("gps-0000004", NOON, 20, 120.30, 31.00, 60.0, dlon=0.001, park=False)  # hazardous, moving, then
        + track("gps-0000004", NOON + 1200, 5, 120.32, 31.00, 60.0, dlon=0.001)  # back after 17 min dark
        + track("gps-0000007", NOON, 20, 120.30, 31.02, 60.0, dlon=0.001, park=False)  # hazardous, moving, then
        + track("gps-0000007", NOON + 480, 5, 120.32, 31.02, 60.0, dlon=0.001)  # a 5-min tunnel
        + track("gps-0000104", NOON, 20, 120.30, 31.04, 60.0, dlon=0.001, park=False)  # ordinary, moving, then
        + track("gps-0000104", NOON + 1200, 5, 120.32, 31.04, 60.0, dlon=0.001)  # back after 17 min dark
    )
    recs.sort(key=lambda r: (r["ts"], r["entity"]))
    engine = SourceEngine(load_sources(Settings())["gps"], Settings())
    alerts = in_batches(engine, recs, cut)
    assert _vehicle(alerts) == [
        ("dwell", "gps-0000003"),
        ("night_driving", "gps-0000001"),
        ("restricted_zone", "gps-0000002"),
        ("signal_lost_moving", "gps-0000004"),
    ]
    dwell = next(a for a in alerts if a.kind == "dwell")
    assert dwell.evidence["dwell_s"] == 1800.0 and iso(dwell.ts) == "2026-01-01T04:30:00.000Z"
    zone = next(a for a in alerts if a.kind == "restricted_zone")
    assert zone.evidence["zone"] == "restricted-old-town" and zone.severity == "major"


def _registry_city():
    from state.refdata.reference import RefData

    return RefData.from_doc(
        {
            "routes": {
                "type": "FeatureCollection",
                "features": [
                    {
                        "type": "Feature",
                        "properties": {"id": "r1", "corridor_m": 200},
                        "geometry": {"type": "LineString", "coordinates": [[120.40, 31.10], [120.50, 31.10]]},
                    }
                ],
            },
            "vehicles": [
                {"entity": "tanker-1", "plate": "苏E·00001", "hazard_class": "3", "routes": "r1"},
                {"entity": "tanker-2", "plate": "苏E·00002", "hazard_class": "2.1", "routes": "r1"},
                {"entity": "van-1", "plate": "苏E·00003", "routes": "r1"},
            ],
        }
    )


@pytest.mark.parametrize("cut", [1, 7, 10_000])
def test_route_corridor_and_hazardous_speed_from_the_vehicle_registry(cut):
    def leg(entity, start, n, lat, speed, lon0=120.41):
        return [
            {"entity": entity, "ts": start + i * 10, "lat": lat, "lon": lon0 + i * 0.0005, "speed": speed}
            for i in range(n)
        ]

    on, off = 31.1005, 31.11  # 55 m and 1.1 km north of the route
    recs = (
        leg("tanker-1", NOON, 10, on, 60.0)
        + leg("tanker-1", NOON + 100, 10, off, 60.0, 120.415)
        + leg("tanker-1", NOON + 200, 10, on, 60.0, 120.42)
        + leg("tanker-1", NOON + 300, 5, off, 60.0, 120.425)
        + leg("tanker-2", NOON, 30, on, 70.0)
        + leg("tanker-2", NOON + 300, 5, on, 95.0, 120.43)
        + leg("tanker-2", NOON + 350, 5, on, 70.0, 120.44)
        + leg("tanker-2", NOON + 400, 5, on, 96.0, 120.45)
        + leg("van-1", NOON, 20, off, 95.0)
    )
    recs.sort(key=lambda r: (r["ts"], r["entity"]))
    engine = SourceEngine(load_sources(Settings())["gps"], Settings(), refdata=_registry_city())
    alerts = in_batches(engine, recs, cut)
    got = [(a.kind, a.entity, iso(a.ts)) for a in alerts if a.kind in ("off_route", "speeding_hazardous")]
    # tanker-2: 95 km/h for 40 s (over 80 by more than 10 %) twice, 70 in between: two episodes, each alerted
    # once it has lasted 30 s
    assert sorted(got) == [
        ("off_route", "tanker-1", "2026-01-01T04:01:40.000Z"),
        ("off_route", "tanker-1", "2026-01-01T04:05:00.000Z"),
        ("speeding_hazardous", "tanker-2", "2026-01-01T04:05:30.000Z"),
        ("speeding_hazardous", "tanker-2", "2026-01-01T04:07:10.000Z"),
    ]
    assert {a.evidence["routes"] == ["r1"] for a in alerts if a.kind == "off_route"} == {True}
    # The van (not hazardous) drove off the route at 95 km/h: neither is an alert for it.
    assert not [a for a in alerts if a.entity == "van-1"]


def test_the_zone_grid_gives_exactly_the_plain_point_in_polygon_answer():
    """The coarse grid only spares far points the exact test: near every edge, and far away, the zone found
    is the one a plain STRtree query of every point finds."""
    zones = Zones.load(DATA_DIR / "city_zones.geojson")
    rng = np.random.default_rng(3)
    lon, lat = rng.uniform(120.3, 120.9, 100_000), rng.uniform(31.0, 31.6, 100_000)
    edges = np.concatenate([shapely.get_coordinates(shapely.segmentize(g.exterior, 0.001)) for g in zones.geoms])
    jitter = np.repeat(edges, 50, axis=0) + rng.normal(0, 1e-6, (len(edges) * 50, 2))
    lon, lat = np.concatenate([lon, jitter[:, 0]]), np.concatenate([lat, jitter[:, 1]])
    pts, zone = STRtree(zones.geoms).query(shapely.points(lon, lat), predicate="within")
    for kind in sorted(set(zones.kinds)):
        plain = np.full(len(lon), -1)
        match = zones.kinds[zone] == kind
        plain[pts[match]] = zone[match]
        found = zones.zone_index(lon, lat, kind)
        assert (plain >= 0).sum() > 1000  # many points inside, many just outside
        assert np.array_equal(found, plain)


@pytest.mark.parametrize("cut", [1, 50, 100_000])
def test_a_vehicle_not_registered_for_hazardous_goods_that_keeps_loading_at_chemical_plants(cut):
    """A van standing 20 minutes at a chemical plant on three days of one week is unregistered hazardous
    transport (once, at the third visit); a registered tanker doing the same, a van passing the gate for five
    minutes a day, and a van loading there once a week raise nothing of the kind."""
    from state.refdata.reference import RefData

    plant = (120.70, 31.40)
    ref = RefData.from_doc(
        {
            "sites": [
                {"id": "plant-1", "name": "Plant", "lon": plant[0], "lat": plant[1], "category": "chemical_plant"}
            ],
            "vehicles": [
                {"entity": "van-1", "plate": "A1"},
                {"entity": "van-2", "plate": "A2"},
                {"entity": "van-3", "plate": "A3"},
                {"entity": "tanker-1", "plate": "A4", "hazard_class": "3"},
            ],
        }
    )
    day, recs = 86_400, []
    for d in range(3):
        for entity, minutes, every in (("van-1", 20, 1), ("tanker-1", 20, 1), ("van-2", 5, 1), ("van-3", 20, 3)):
            if d % every:
                continue
            start = NOON + d * every * day
            recs += track(entity, start - 300, 30, plant[0] - 0.03, plant[1], 40.0, dlon=0.001, park=False)
            recs += track(entity, start, minutes * 6, plant[0] + 0.0003, plant[1], 0.0)
    recs.sort(key=lambda r: (r["ts"], r["entity"]))
    engine = SourceEngine(load_sources(Settings())["gps"], Settings(), refdata=ref)
    found = [a for a in in_batches(engine, recs, cut) if a.kind == "unregistered_hazardous_transport"]
    assert [(a.entity, a.evidence["site"], len(a.evidence["visits"]), a.severity) for a in found] == [
        ("van-1", "plant-1", 3, "major")
    ]
