"""The simulated city's reference data, consistent with :class:`~streams.sim.simulator.CitySimulator`'s entities.

One city, two counties, six towns (rectangles that share borders), sites that
own the power and water meters (dwellings, enterprises, chemical plants, some
of them closed), camera posts, air stations, the GPS fleet as registered
vehicles (the first ten carry hazardous goods on authorised routes), zones,
and one enforcement unit per town and department. Same seed, same city.

>>> import tempfile
>>> from state.refdata.reference import RefData
>>> from streams.sim.simulator import CitySimulator
>>> with tempfile.TemporaryDirectory() as d:
...     counts = write_city(Path(d), CitySimulator(entities=200, seed=1))
...     ref = RefData.load_dir(Path(d))
>>> ref.counts()["areas"], ref.place(120.45, 31.1)["town"]
(9, 'West Lower Town')
"""

from __future__ import annotations

import csv
import tempfile
from pathlib import Path

import numpy as np
import orjson

from state.refdata.reference import CITY_ZONES, RefData
from streams.sim.simulator import CENTRE, CitySimulator

LAT0, LON0 = CENTRE[0] - 0.3, CENTRE[1] - 0.3
HAZARDOUS = 10  # gps-0000000 .. gps-0000009, as in gps.toml's list
DEPOTS = {
    "site-depot-north": ("Hazardous-goods depot (north)", 120.58, 31.36),
    "site-chem-park": ("Chemical industrial park", 120.70, 31.25),
}


def _box(lon0: float, lat0: float, lon1: float, lat1: float) -> dict:
    return {"type": "Polygon", "coordinates": [[[lon0, lat0], [lon1, lat0], [lon1, lat1], [lon0, lat1], [lon0, lat0]]]}


def _feature(props: dict, geometry: dict) -> dict:
    return {"type": "Feature", "properties": props, "geometry": geometry}


def areas() -> list[dict]:
    """City, two counties (west/east of the centre) and three towns in each (by latitude band)."""
    out = [_feature({"id": "city", "name": "Lakeside City", "level": "city"}, _box(LON0, LAT0, LON0 + 0.6, LAT0 + 0.6))]
    for c, side in enumerate(("West", "East")):
        lon = LON0 + 0.3 * c
        county = f"county-{side.lower()}"
        out.append(
            _feature(
                {"id": county, "name": f"{side} County", "level": "county", "parent": "city"},
                _box(lon, LAT0, lon + 0.3, LAT0 + 0.6),
            )
        )
        for t, band in enumerate(("Lower", "Middle", "Upper")):
            lat = LAT0 + 0.2 * t
            out.append(
                _feature(
                    {
                        "id": f"town-{side.lower()}-{band.lower()}",
                        "name": f"{side} {band} Town",
                        "level": "town",
                        "parent": county,
                    },
                    _box(lon, lat, lon + 0.3, lat + 0.2),
                )
            )
    return out


def write_city(folder: Path, sim: CitySimulator, seed: int = 42) -> dict[str, int]:
    """Write areas, zones, routes, sites, vehicles and units for ``sim``'s entities; returns counts."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed + 1)  # not the simulator's generator: its records stay the same
    ids = {f.source: f.ids for f in sim.fleets}
    towns = [f for f in areas() if f["properties"]["level"] == "town"]

    def spot(n: int) -> np.ndarray:
        return np.round(
            np.column_stack([rng.uniform(LON0 + 0.01, LON0 + 0.59, n), rng.uniform(LAT0 + 0.01, LAT0 + 0.59, n)]), 6
        )

    (folder / "areas.geojson").write_bytes(orjson.dumps({"type": "FeatureCollection", "features": areas()}))
    zones = orjson.loads(CITY_ZONES.read_bytes())
    for k in range(3):
        lat = LAT0 + 0.12 + 0.18 * k
        zones["features"].append(
            _feature(
                {"id": f"river-bank-{k + 1:02d}", "name": f"River bank {k + 1}", "kind": "camera_zone"},
                _box(LON0 + 0.05, lat, LON0 + 0.55, lat + 0.01),
            )
        )
    (folder / "zones.geojson").write_bytes(orjson.dumps(zones))
    north, park = DEPOTS["site-depot-north"][1:], DEPOTS["site-chem-park"][1:]
    routes = [
        _feature(
            {"id": "route-depot-park", "name": "Depot to chemical park", "corridor_m": 300},
            {"type": "LineString", "coordinates": [list(north), [north[0], park[1]], list(park)]},
        ),
        _feature(
            {"id": "route-ring", "name": "Ring road", "corridor_m": 300},
            {
                "type": "LineString",
                "coordinates": [[120.40, 31.15], [120.80, 31.15], [120.80, 31.45], [120.40, 31.45], [120.40, 31.15]],
            },
        ),
    ]
    (folder / "routes.geojson").write_bytes(orjson.dumps({"type": "FeatureCollection", "features": routes}))

    sites = [
        [sid, name, lon, lat, "chemical_plant", "operating", f"HG-{k:04d}", "2027-12-31", ""]
        for k, (sid, (name, lon, lat)) in enumerate(DEPOTS.items())
    ]
    power, water = ids.get("power", []), ids.get("water", [])
    n = max(len(power), len(water))
    where, kind, closed = spot(n), rng.random(n), rng.random(n) < 0.25
    for i in range(n):
        meters = ";".join(m[i] for m in (power, water) if i < len(m))
        if kind[i] < 0.02:
            row = ["chemical_plant", "closed" if closed[i] else "operating", f"HG-{i + 10:04d}", "2027-06-30"]
        elif kind[i] < 0.22:
            row = ["enterprise", "operating", "", ""]
        else:
            row = ["dwelling", "operating", "", ""]
        sites.append(
            [f"site-{i:07d}", f"{row[0].replace('_', ' ')} {i}", *where[i], row[0], row[1], row[2], row[3], meters]
        )
    for source, category in (("video", "camera_post"), ("air", "air_station")):
        pts = spot(len(ids.get(source, [])))
        sites += [
            [f"site-{e}", f"{category.replace('_', ' ')} {e}", *pts[i], category, "operating", "", "", e]
            for i, e in enumerate(ids.get(source, []))
        ]
    _csv(
        folder / "sites.csv",
        ["id", "name", "lon", "lat", "category", "status", "licence", "licence_expiry", "meters"],
        sites,
    )
    vehicles = [
        [
            e,
            f"苏E·{i:05d}",
            "3" if i < HAZARDOUS else "",
            f"operator {i % 17}",
            "route-depot-park;route-ring" if i < HAZARDOUS else "",
            ";".join(DEPOTS) if i < HAZARDOUS else "",
        ]
        for i, e in enumerate(ids.get("gps", []))
    ]
    _csv(folder / "vehicles.csv", ["entity", "plate", "hazard_class", "operator", "routes", "sites"], vehicles)
    departments = sorted({d for rule in RefData.empty().departments for d in rule.departments})
    units = []
    for town in towns:
        (lon0, lat0), (lon1, _), _, (_, lat1), _ = town["geometry"]["coordinates"][0]
        for dept in departments:
            units.append(
                [
                    f"unit-{town['properties']['id'][5:]}-{dept}",
                    f"{town['properties']['name']} {dept}",
                    dept,
                    town["properties"]["id"],
                    round(rng.uniform(lon0, lon1), 6),
                    round(rng.uniform(lat0, lat1), 6),
                ]
            )
    _csv(folder / "units.csv", ["id", "name", "department", "town", "lon", "lat"], units)
    return {
        "areas": len(areas()),
        "zones": len(zones["features"]),
        "routes": len(routes),
        "sites": len(sites),
        "vehicles": len(vehicles),
        "units": len(units),
    }


def city_ref(sim: CitySimulator, seed: int = 42) -> RefData:
    """The city's reference data for ``sim`` (as `warden refdata city` writes it), in memory."""
    with tempfile.TemporaryDirectory() as folder:
        write_city(Path(folder), sim, seed)
        return RefData.load_dir(Path(folder))


def _csv(path: Path, header: list[str], rows: list[list]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
