"""Event time as people and other tools read it: epoch seconds (UTC) written as ISO-8601.

>>> iso(1767225600.25)
'2026-01-01T00:00:00.250Z'
"""

from __future__ import annotations

from datetime import UTC, datetime


def iso(ts: float) -> str:
    """Epoch seconds as ISO-8601 UTC with a Z."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
