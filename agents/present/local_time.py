"""Times as the city reads them: its own zone (``WARDEN_TIMEZONE``, Asia/Shanghai by default), not UTC.

>>> clock = LocalClock("Asia/Shanghai")
>>> clock.text(1767225600.0), clock.text("2026-01-01T00:00:00.000Z"), clock.iso(1767225600.5)
('2026-01-01 08:00:00', '2026-01-01 08:00:00', '2026-01-01T08:00:00+08:00')
>>> clock.offset()
'UTC+08:00'
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from streams.event_time import epoch


class LocalClock:
    """Epoch seconds or ISO-8601 UTC strings as local wall-clock text."""

    def __init__(self, zone: str):
        self.zone = ZoneInfo(zone)

    def at(self, t: float | str) -> datetime:
        return datetime.fromtimestamp(epoch(t) if isinstance(t, str) else float(t), self.zone)

    def text(self, t: float | str) -> str:
        """``YYYY-MM-DD hh:mm:ss`` local."""
        return self.at(t).strftime("%Y-%m-%d %H:%M:%S")

    def iso(self, t: float | str) -> str:
        """ISO-8601 with the local offset, to the second (for machines that also show it to people)."""
        return self.at(t).isoformat(timespec="seconds")

    def offset(self, t: float | None = None) -> str:
        """``UTC+hh:mm`` at ``t`` (now by default)."""
        off = self.at(datetime.now().timestamp() if t is None else t).strftime("%z")
        return f"UTC{off[0]}{off[1:3]}:{off[3:]}"
