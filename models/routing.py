"""Routing: where an incident happened, who handles it, what to do, and how severe it is.

Severity starts from the detector's (a rule's mandated severity is never
lowered here), rises one step with a strong model score and one step with
aggravating context: a site whose registered status is closed or suspended,
or a hazardous-goods vehicle.

>>> from state.refdata.reference import RefData
>>> route({"source": "air", "kind": "aqi_polluted", "entity": "st-9", "score": 0.95,
...        "detector_severity": "warning", "model": "anomaly@5", "evidence": {}}, RefData.empty())["severity"]
'major'
"""

from __future__ import annotations

from models.signal import SEVERITIES, is_limit_breach
from state.refdata.reference import RefData

STRONG_SCORE = 0.9


def _entity(incident: dict) -> str:
    """The entity the reference data is asked about: the incident's, or a group's first member."""
    members = incident.get("members")
    return members[0] if members else incident["entity"]


def _where(incident: dict, ref: RefData) -> tuple[float, float] | None:
    ev = incident.get("evidence") or {}
    if isinstance(ev.get("lon"), (int, float)) and isinstance(ev.get("lat"), (int, float)):
        return float(ev["lon"]), float(ev["lat"])
    site = ref.device_site.get(_entity(incident))
    return (site.lon, site.lat) if site else None


def context(incident: dict, ref: RefData) -> dict:
    """What the reference data says about the incident's entity (a group's first member): its site or vehicle."""
    out: dict = {}
    site = ref.device_site.get(_entity(incident))
    if site is not None:
        out["site"] = {"id": site.id, "name": site.name, "category": site.category, "status": site.status}
    vehicle = ref.vehicles.get(_entity(incident))
    if vehicle is not None:
        out["vehicle"] = {"plate": vehicle.plate, "hazard_class": vehicle.hazard_class, "operator": vehicle.operator}
    return out


def severity(incident: dict, ctx: dict) -> str:
    """The detector's severity, raised by a strong score and by aggravating context."""
    level = SEVERITIES.index(incident["detector_severity"])
    if incident["score"] >= STRONG_SCORE and not is_limit_breach(incident["model"]):
        level += 1
    if ctx.get("site", {}).get("status") in ("closed", "suspended") or ctx.get("vehicle", {}).get("hazard_class"):
        level += 1
    return SEVERITIES[min(level, len(SEVERITIES) - 1)]


def route(incident: dict, ref: RefData) -> dict:
    """Location, area, departments, proposed action, context and severity for an incident."""
    ctx = context(incident, ref)
    out: dict = {
        "context": ctx,
        "severity": severity(incident, ctx),
        "location": None,
        "area": {},
        "departments": [],
        "action": None,
    }
    where = _where(incident, ref)
    if where is not None:
        out["location"] = {"lon": where[0], "lat": where[1]}
        out["area"] = ref.place(*where)
    rule = ref.department_rule(incident["source"], incident["kind"])
    if rule is None:
        return out
    out["departments"] = rule.departments
    unit = ref.nearest_unit(rule.departments[0], out["area"].get("town_id"), *where) if where else None
    out["action"] = {
        "department": rule.departments[0],
        "what": rule.action,
        **({"unit": unit.id, "unit_name": unit.name} if unit else {}),
    }
    return out
