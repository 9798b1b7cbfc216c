"""Event time as people and other tools read it: epoch seconds (UTC) written as ISO-8601.

>>> iso(1767225600.25), epoch("2026-01-01T00:00:00.250Z")
('2026-01-01T00:00:00.250Z', 1767225600.25)
"""

from __future__ import annotations

from datetime import UTC, datetime


def iso(ts: float) -> str:
    """Epoch seconds as ISO-8601 UTC with a Z."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def epoch(iso_ts: str) -> float:
    """ISO-8601 (with ``Z`` or an offset) to epoch seconds."""
    return datetime.fromisoformat(iso_ts).timestamp()
