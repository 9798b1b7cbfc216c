"""Incidents: signals about one situation (source, kind, entity) merged into one alert.

A signal within the kind's quiet period of the incident's last signal is a
duplicate: it raises the count, moves ``last_seen`` and keeps the strongest
evidence. After a resolution, a duplicate re-opens the incident (the
situation recurred); one marked false positive absorbs it silently. Past the
quiet period a new incident starts, whose id is its first signal's id, so the
same signals always give the same alerts, live or replayed.

>>> import msgspec
>>> book = IncidentBook(QuietPeriods({"*": 600}))
>>> s = Signal.new(source="air", kind="aqi_polluted", entity="st-1", ts=1767225600, window_start=1767225600,
...                window_s=0, score=0.6, severity="major", model="threshold@1", evidence={"value": 80})
>>> [book.add(msgspec.structs.replace(s, id=i, ts=s.ts + dt, score=sc))[1] for i, dt, sc in
...  [("a1", 0, 0.6), ("a2", 300, 0.9), ("a3", 3600, 0.5)]]
['opened', 'merged', 'opened']
>>> first = book.incidents["a1"]
>>> first["count"], first["score"], first["last_seen"] - first["first_seen"]
(2, 0.9, 300.0)
"""

from __future__ import annotations

from models.alert import Alert
from models.kind_patterns import KindPatterns
from models.signal import BUILTIN, Signal, situation_key
from streams.event_time import epoch, iso

ACTIVE = ("open", "acknowledged", "dispatched")


def situation(incident: dict) -> str:
    """The key an incident's duplicates share (a signal's :attr:`~models.signal.Signal.situation`)."""
    return situation_key(incident["source"], incident["kind"], incident["entity"])


class QuietPeriods(KindPatterns[float]):
    """Quiet period per alert kind, from shell patterns (first match; ``*`` is the default, else 0)."""

    def __init__(self, periods: dict[str, float]):
        super().__init__(periods, 0.0)


MAX_MEMBERS = 256  # entities listed on a group's incident: the first to join


def open_incident(signal: Signal) -> dict:
    """A new incident from its first signal (a group's incident names the group and lists its entities)."""
    t = signal.ts
    return {
        "id": signal.id,
        "source": signal.source,
        "kind": signal.kind,
        "entity": signal.group or signal.entity,
        "members": [signal.entity] if signal.group else [],
        "status": "open",
        "count": 1,
        "first_seen": t,
        "last_seen": t,
        "ts": iso(t),
        "score": signal.score,
        "detector_severity": signal.severity,
        "model": signal.model,
        "model_version": signal.model_version,
        "evidence": signal.evidence,
        "reopened": 0,
    }


def merge(incident: dict | None, signal: Signal, quiet_s: float) -> tuple[dict, str]:
    """Fold one signal into its situation's latest incident (or start one); returns it and what happened.

    ``incident`` is changed in place when the signal merges into it. A signal that ends an episode
    (``Signal.ends``: an entity back after its silence) adds its evidence to the episode's incident, when
    one is known, without counting as a repeat.
    """
    t = signal.ts
    if signal.ends and incident is not None and incident["kind"] == signal.ends:
        incident["evidence"] = {**incident["evidence"], **signal.evidence, "ended": iso(t)}
        incident["last_seen"] = max(incident["last_seen"], t)
        return incident, "merged"
    if incident is None or t - incident["last_seen"] > quiet_s:
        return open_incident(signal), "opened"
    event = "merged"
    if incident["status"] == "resolved":
        incident["status"], incident["reopened"], event = "open", incident["reopened"] + 1, "reopened"
        incident["reopened_by"] = {
            "at": iso(t),
            "kind": signal.kind,
            "score": signal.score,
            "evidence": signal.evidence,
        }
    incident["count"] += 1
    members = incident.setdefault("members", [])
    if signal.group and len(members) < MAX_MEMBERS and signal.entity not in members:
        members.append(signal.entity)
    incident["first_seen"] = min(incident["first_seen"], t)
    incident["last_seen"] = max(incident["last_seen"], t)
    if signal.score > incident["score"] or "ended" in incident["evidence"]:
        incident.update(
            score=signal.score,
            evidence=signal.evidence,
            model=signal.model,
            model_version=signal.model_version,
            detector_severity=signal.severity,
        )
    return incident, event


# What an alert takes from its incident as it is (the rest: its event, routing and first signal's time).
ALERT_FIELDS = (
    "id",
    "status",
    "source",
    "kind",
    "entity",
    "first_seen",
    "last_seen",
    "count",
    "reopened",
    "score",
    "detector_severity",
    "model",
    "evidence",
)


def to_alert(incident: dict, routed: dict, event: str) -> Alert:
    """The alert of ``incident`` after ``event``, ``routed`` by :func:`models.routing.route`."""
    return Alert(
        **{name: incident[name] for name in ALERT_FIELDS},
        **routed,
        event=event,
        ts=epoch(incident["ts"]),
        model_version=incident.get("model_version", BUILTIN),
        members=incident.get("members", []),
    )


class IncidentBook:
    """Incidents by id and each situation's latest: the whole replay in memory, or one live batch
    on top of the incidents the alert manager read from Redis (:meth:`seed`)."""

    def __init__(self, quiet: QuietPeriods):
        self.quiet = quiet
        self.incidents: dict[str, dict] = {}
        self.latest: dict[str, str] = {}  # situation -> id of its latest incident

    def seed(self, latest: dict[str, dict]) -> None:
        """Start from known incidents, by situation."""
        for key, incident in latest.items():
            self.incidents[incident["id"]] = incident
            self.latest[key] = incident["id"]

    def add(self, signal: Signal) -> tuple[dict, str]:
        key = signal.situation
        current = self.incidents.get(self.latest.get(key, ""))
        incident, event = merge(current, signal, self.quiet(signal.kind))
        if event == "opened":
            self.incidents[incident["id"]] = incident
            self.latest[situation(incident)] = incident["id"]
        return incident, event
