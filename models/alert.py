"""Alerts: one situation's merged signals, routed, as every consumer sees them.

The alert manager builds an :class:`Alert` from an incident (:mod:`models.incidents`) and its routing
(:mod:`models.routing`); it becomes JSON (ISO-8601 times) once, where it leaves: the alert store in
Redis and its stream (which feeds ``warden.alerts``, webhooks and the console), a replay's alerts file.

>>> a = Alert(id="a1", event="opened", status="open", source="air", kind="aqi_polluted", entity="st-1",
...           ts=1767225600.0, first_seen=1767225600.0, last_seen=1767226200.0, count=2, reopened=0, score=0.9,
...           severity="major", detector_severity="warning", model="threshold@1", model_version="builtin",
...           evidence={}, location=None, area={}, departments=[], action=None, context={})
>>> a.doc()["last_seen"], list(a.doc())[:3]
('2026-01-01T00:10:00.000Z', ['id', 'event', 'status'])
"""

from __future__ import annotations

import msgspec

from streams.event_time import iso


class Alert(msgspec.Struct, kw_only=True):
    """An alert: what happened (``kind`` of ``entity`` of ``source``), its lifecycle ``status`` and the
    ``event`` that produced this version of it (opened, merged, reopened), when (the first signal's ``ts``,
    first and last seen, epoch seconds), how often (``count``, times ``reopened``), the strongest evidence,
    and where it goes (``severity``, ``location``, ``area``, ``departments``, the proposed ``action``)."""

    id: str
    event: str
    status: str
    source: str
    kind: str
    entity: str
    ts: float
    first_seen: float
    last_seen: float
    count: int
    reopened: int
    score: float
    severity: str
    detector_severity: str
    model: str
    model_version: str
    evidence: dict
    location: dict | None
    area: dict
    departments: list[str]
    action: dict | None
    context: dict
    members: list[str] = []  # a group's incident: its entities (``entity`` names the group)

    def doc(self) -> dict:
        """The alert as JSON carries it: times as ISO-8601 UTC."""
        doc = msgspec.structs.asdict(self)
        doc["ts"], doc["first_seen"], doc["last_seen"] = iso(self.ts), iso(self.first_seen), iso(self.last_seen)
        return doc
