"""Local calendar of event times (epoch seconds, UTC) for rules that speak of nights, hours and seasons.

>>> local_day_hour(np.array([1767225600.0 + 3 * 3600]), 8).tolist()   # 03:00 UTC = 11:00 in UTC+8
[[20454.0, 11.0]]
>>> slot_of(np.array([1767571200.0, 1767398400.0]), 8).tolist()   # Mon 5 Jan 08:00 local, Sat 3 Jan 08:00 local
[8, 32]
>>> slot_of(np.array([1767225600.0]), 8).tolist()   # Thu 1 Jan 08:00 local: New Year's Day, a rest day
[32]
>>> in_period(np.array([1775001600.0, 1767225600.0]), "04-01", "06-30", 8).tolist()   # 1 Apr, 1 Jan
[True, False]
"""

from __future__ import annotations

import numpy as np

from state.refdata.holidays import RestDays


def _local(ts: np.ndarray, utc_offset_h: float) -> np.ndarray:
    return ts + utc_offset_h * 3600.0


def local_day_hour(ts: np.ndarray, utc_offset_h: float) -> np.ndarray:
    """(local day number, local hour) for each event time."""
    local = _local(ts, utc_offset_h)
    return np.column_stack([np.floor(local / 86400.0), np.floor((local % 86400.0) / 3600.0)])


def slot_of(ts: np.ndarray, utc_offset_h: float, rest_days: RestDays | None = None) -> np.ndarray:
    """Hour-of-week slot of each time: local hour, +24 on rest days (weekends and public holidays, less the
    weekend days worked instead; the shipped calendar unless ``rest_days`` says otherwise)."""
    day, hour = local_day_hour(ts, utc_offset_h).T
    rest = (rest_days or RestDays.shipped()).is_rest(day)
    return hour.astype(np.int64) + 24 * rest


def in_period(ts: np.ndarray, start: str, end: str, utc_offset_h: float) -> np.ndarray:
    """Whether each event time falls between month-day ``start`` and ``end`` (inclusive, local time)."""
    days = np.floor(_local(ts, utc_offset_h) / 86400.0).astype("datetime64[D]")
    months = days.astype("datetime64[M]")
    md = (months.astype(np.int64) % 12 + 1) * 100 + (days - months).astype(np.int64) + 1
    lo, hi = int(start.replace("-", "")), int(end.replace("-", ""))
    return (md >= lo) & (md <= hi) if lo <= hi else (md >= lo) | (md <= hi)
