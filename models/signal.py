"""Signals: what a detector emits about one detection, with a deterministic id.

The id depends only on what happened (source, kind, entity, window start), so
a record processed twice - after a crash, or in a replay - gives the same id.
Inside Warden a signal is a typed :class:`Signal` with epoch-second times; it
becomes JSON (ISO-8601 times) once, where it leaves: ``warden.signals``, a
replay's signals file.

>>> sig = Signal.new(source="air", kind="aqi_polluted", entity="st-1", ts=1767225600.5, window_start=1767225600,
...                  window_s=0.0, score=0.91234, severity="warning", model="threshold@1", evidence={"value": 91})
>>> sig.id == signal_id("air", "aqi_polluted", "st-1", 1767225600.0), sig.score
(True, 0.9123)
>>> sig.doc()["ts"]
'2026-01-01T00:00:00.500Z'
"""

from __future__ import annotations

import hashlib

import msgspec

from streams.event_time import iso

SEVERITIES = ("info", "warning", "major", "critical")
LIMIT_MODELS = ("threshold@", "aqi@")  # their signals are breaches of a legal limit, not model opinions
BUILTIN = "builtin"  # the model version of the declared detectors as shipped (no trained version)


def is_limit_breach(model: str) -> bool:
    """Whether a signal of ``model`` is a rule-mandated limit breach (its severity is never lowered)."""
    return model.startswith(LIMIT_MODELS)


def situation_key(source: str, kind: str, entity: str) -> str:
    """The key of a situation (source, kind, entity): the signals about it merge into one alert."""
    return f"{source}|{kind}|{entity}"


def signal_id(source: str, kind: str, entity: str, window_start: float) -> str:
    """A stable 20-hex-digit id for one detection (source, kind, entity, window)."""
    key = f"{source}\x1f{kind}\x1f{entity}\x1f{int(window_start)}".encode()
    return hashlib.blake2b(key, digest_size=10).hexdigest()


class Signal(msgspec.Struct, kw_only=True):
    """One detection: what (``kind``) of which ``entity`` of which ``source``, when (``ts``, and the window it
    judged: ``window_start``, ``window_s``), how sure (``score``), how bad the detector thinks it is
    (``severity``), which detector and version said so, and the readings and features behind it."""

    id: str
    source: str
    kind: str
    entity: str
    ts: float  # event time, epoch seconds
    window_start: float
    window_s: float
    score: float
    severity: str
    model: str
    evidence: dict
    model_version: str = BUILTIN
    ends: str = ""  # the kind of the episode this signal ends (its alert is updated, none is opened)
    group: str = ""  # the entities' group whose one incident it joins (a regional episode), if its kind has one

    @classmethod
    def new(
        cls,
        *,
        source: str,
        kind: str,
        entity: str,
        ts: float,
        window_start: float,
        window_s: float,
        score: float,
        severity: str,
        model: str,
        evidence: dict,
        ends: str = "",
    ) -> Signal:
        """A detection, its id worked out from what happened and its score rounded to 4 places."""
        return cls(
            id=signal_id(source, kind, entity, window_start),
            source=source,
            kind=kind,
            entity=entity,
            ts=float(ts),
            window_start=float(window_start),
            window_s=float(window_s),
            score=round(float(score), 4),
            severity=severity,
            model=model,
            evidence=evidence,
            ends=ends,
        )

    @classmethod
    def at(
        cls, *, source: str, kind: str, entity: str, ts: float, score: float, severity: str, model: str, evidence: dict
    ) -> Signal:
        """A detection about one moment (its window starts and ends at ``ts``)."""
        return cls.new(
            source=source,
            kind=kind,
            entity=entity,
            ts=ts,
            window_start=ts,
            window_s=0.0,
            score=score,
            severity=severity,
            model=model,
            evidence=evidence,
        )

    @property
    def situation(self) -> str:
        """The key its duplicates share: (source, kind, entity or group); an ending signal's is the episode's it
        ends."""
        return situation_key(self.source, self.ends or self.kind, self.group or self.entity)

    def doc(self) -> dict:
        """The signal as JSON carries it (``warden.signals``, signal files): times as ISO-8601 UTC."""
        doc = msgspec.structs.asdict(self)
        doc["ts"], doc["window_start"] = iso(self.ts), iso(self.window_start)
        return doc
