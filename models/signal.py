"""Signals: what a detector emits - deterministic ids and the JSON shape the alert manager reads.

The id depends only on what happened (source, kind, entity, window start), so
a record processed twice - after a crash, or in a replay - gives the same id.

>>> signal_id("air", "pm25_over_limit", "st-1", 1700000000.0) == signal_id("air", "pm25_over_limit", "st-1", 1700000000)
True
"""

from __future__ import annotations

import hashlib

from streams.event_time import iso

SEVERITIES = ("info", "warning", "major", "critical")
LIMIT_MODELS = ("threshold@", "aqi@")  # their signals are breaches of a legal limit, not model opinions


def is_limit_breach(model: str) -> bool:
    """Whether a signal of ``model`` is a rule-mandated limit breach (its severity is never lowered)."""
    return model.startswith(LIMIT_MODELS)


def signal_id(source: str, kind: str, entity: str, window_start: float) -> str:
    """A stable 20-hex-digit id for one detection (source, kind, entity, window)."""
    key = f"{source}\x1f{kind}\x1f{entity}\x1f{int(window_start)}".encode()
    return hashlib.blake2b(key, digest_size=10).hexdigest()


def new_signal(
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
) -> dict:
    """A signal as it goes to ``warden.signals`` (the alert manager turns it into an alert)."""
    return {
        "id": signal_id(source, kind, entity, window_start),
        "source": source,
        "kind": kind,
        "entity": entity,
        "ts": iso(ts),
        "window_start": iso(window_start),
        "window_s": window_s,
        "score": round(float(score), 4),
        "severity": severity,
        "model": model,
        "evidence": evidence,
    }
