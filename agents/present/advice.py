"""Enforcement advice: where and when alerts of one kind concentrate, and the unit nearest to each place.

Places are cells of about a kilometre (0.01 degrees), ranked by alerts; hours are the city's local hours
of the alerts' event times, ranked; each place gets the nearest enforcement unit of the department the
kind is routed to (:meth:`RefData.nearest_unit`, its own town's units first).

>>> from agents.present.local_time import LocalClock
>>> from state.refdata.reference import RefData
>>> alerts = [{"kind": "dwell", "ts": "2026-01-01T15:10:00.000Z", "departments": ["transport"],
...            "location": {"lon": 120.401, "lat": 31.102}, "area": {"town": "Lower Town"}}] * 3
>>> advice = concentrations(alerts, "dwell", RefData.empty(), LocalClock("Asia/Shanghai"))
>>> advice["places"][0]["count"], advice["places"][0]["area"], advice["hours"][0], advice["department"]
(3, 'Lower Town', {'hour': 23, 'count': 3}, 'transport')
"""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np

from agents.present.local_time import LocalClock
from state.refdata.reference import RefData
from state.refdata.zones import metres

CELL_DEG = 0.01


def concentrations(alerts: list[dict], kind: str, ref: RefData, clock: LocalClock, top: int = 5) -> dict:
    """For alerts of ``kind``: the ``top`` places and hours with most of them, each place with its unit."""
    mine = [a for a in alerts if a["kind"] == kind]
    department = Counter(next(iter(a.get("departments") or []), "") for a in mine).most_common(1)
    department = department[0][0] if department else ""
    cells: dict[tuple[int, int], list[dict]] = defaultdict(list)
    for a in mine:
        if loc := a.get("location"):
            cells[(round(loc["lon"] / CELL_DEG), round(loc["lat"] / CELL_DEG))].append(a)
    places = []
    for members in [m for _, m in sorted(cells.items(), key=lambda kv: (-len(kv[1]), kv[0]))][:top]:
        lon = float(np.mean([m["location"]["lon"] for m in members]))
        lat = float(np.mean([m["location"]["lat"] for m in members]))
        area = Counter((m.get("area") or {}).get("town", "") for m in members).most_common(1)[0][0]
        town_id = (members[0].get("area") or {}).get("town_id")
        unit = ref.nearest_unit(department, town_id, lon, lat) if department else None
        places.append(
            {
                "lon": round(lon, 5),
                "lat": round(lat, 5),
                "count": len(members),
                "area": area,
                "unit": None
                if unit is None
                else {
                    "id": unit.id,
                    "name": unit.name,
                    "lon": unit.lon,
                    "lat": unit.lat,
                    "distance_m": round(float(metres(np.array([unit.lon]), np.array([unit.lat]), lon, lat)[0])),
                },
            }
        )
    hours = Counter(clock.at(a["ts"]).hour for a in mine if a.get("ts"))
    return {
        "kind": kind,
        "alerts": len(mine),
        "department": department,
        "places": places,
        "hours": [{"hour": h, "count": n} for h, n in sorted(hours.items(), key=lambda kv: (-kv[1], kv[0]))[:top]],
    }
