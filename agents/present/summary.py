"""The city's state at a glance, for leaders: counts, where and with whom alerts sit, trends, closure.

A pure function of the alerts raised over the period (:meth:`AlertStore.raised_since`, each with its
``raised_at``) and the time now; days are the city's local days.

>>> from agents.present.local_time import LocalClock
>>> day = 1767225600.0  # 2026-01-01 08:00 local
>>> alerts = [{"kind": "dwell", "status": "open", "severity": "major", "raised_at": day, "departments": ["transport"],
...            "area": {"county": "West County", "town": "Lower Town"}, "location": {"lon": 120.4, "lat": 31.1}},
...           {"kind": "dwell", "status": "resolved", "severity": "major", "raised_at": day - 86400, "departments": []}]
>>> s = summarise(alerts, now=day + 3600, clock=LocalClock("Asia/Shanghai"), days=3)
>>> s["open"], s["new_today"], s["closed"], s["closure_rate"], s["trend"]["dwell"], s["days"][-1]
(1, 1, 1, 0.5, [0, 1, 1], '2026-01-01')
>>> s["by_area"][0], s["by_department"][0]["department"]
({'area': 'Lower Town', 'county': 'West County', 'open': 1, 'today': 1, 'overdue': 0}, 'transport')
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import timedelta

from agents.alerts.accountability import answering
from agents.present.local_time import LocalClock
from models.lifecycle import ACTIVE, CLOSED


def summarise(alerts: list[dict], now: float, clock: LocalClock, days: int = 30, top_kinds: int = 8) -> dict:
    """Open, in hand, new today, overdue; by area and department; per kind a count per local day over ``days``
    days; closure rate; today's alert points (for the map's heat)."""
    today = clock.at(now).replace(hour=0, minute=0, second=0, microsecond=0)
    day_names = [(today - timedelta(days=k)).strftime("%Y-%m-%d") for k in range(days - 1, -1, -1)]
    first_day = (today - timedelta(days=days - 1)).timestamp()
    alerts = [a for a in alerts if a["raised_at"] >= first_day]
    today_ts = today.timestamp()
    is_today = [a["raised_at"] >= today_ts for a in alerts]
    active = [a["status"] in ACTIVE for a in alerts]
    overdue = [act and bool(a.get("escalation")) for a, act in zip(alerts, active)]

    areas: dict[str, dict] = {}
    departments: dict[str, Counter] = defaultdict(Counter)
    for a, new, act, late in zip(alerts, is_today, active, overdue):
        area = a.get("area") or {}
        name = area.get("town") or area.get("county") or area.get("city") or ""
        row = areas.setdefault(
            name, {"area": name, "county": area.get("county", ""), "open": 0, "today": 0, "overdue": 0}
        )
        for counter in (row, departments[answering(a, a.get("dispatched_to"))]):
            counter["open"] += act
            counter["today"] += new
            counter["overdue"] += late

    per_day: dict[str, Counter] = defaultdict(Counter)
    for a in alerts:
        per_day[a["kind"]][clock.at(a["raised_at"]).strftime("%Y-%m-%d")] += 1
    kinds = sorted(per_day, key=lambda k: (-sum(per_day[k].values()), k))[:top_kinds]
    closed = sum(a["status"] in CLOSED for a in alerts)
    return {
        "open": sum(a["status"] == "open" for a in alerts),
        "in_hand": sum(a["status"] in ("acknowledged", "dispatched") for a in alerts),
        "new_today": sum(is_today),
        "overdue": sum(overdue),
        "raised": len(alerts),
        "closed": closed,
        "closure_rate": round(closed / len(alerts), 4) if alerts else None,
        "by_area": sorted(areas.values(), key=lambda r: (-r["open"], -r["today"], r["area"])),
        "by_department": [
            {"department": d, "open": c["open"], "today": c["today"], "overdue": c["overdue"]}
            for d, c in sorted(departments.items(), key=lambda kv: (-kv[1]["open"], -kv[1]["today"], kv[0]))
        ],
        "days": day_names,
        "trend": {k: [per_day[k].get(d, 0) for d in day_names] for k in kinds},
        "today_points": [
            [a["location"]["lon"], a["location"]["lat"], a["severity"]]
            for a, new in zip(alerts, is_today)
            if new and a.get("location")
        ],
    }
