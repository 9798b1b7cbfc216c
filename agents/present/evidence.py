"""Evidence as a person reads it: labelled in their language, with units, rounded, times local.

Each evidence key has a form (:data:`FORMS`): a reading in the unit of the measure the evidence is about
(its ``field``, else the first of its keys that is a declared field with a unit), a local time, a duration,
a coordinate, a count of hours or days, a ratio, a measure's name, or text. Keys not listed read by their
suffix (``_s`` a duration, ``_at`` a time) or as they are, numbers rounded.

>>> from agents.present.local_time import LocalClock
>>> en = EvidenceText(Wording.of("en"), LocalClock("Asia/Shanghai"), {"pm25": "µg/m³"})
>>> en.lines({"field": "pm25", "mean": 145.8123, "limit": 75.0, "hours": 3})
[['measure', 'PM2.5'], ['mean', '145.8 µg/m³'], ['limit', '75 µg/m³'], ['for', '3 h']]
>>> en.lines({"since": 1796451072, "dwell_s": 1802.332999944687, "lat": 31.488})
[['since', '2026-12-05 14:11:12'], ['standing for', '30 min 2 s'], ['latitude', '31.4880° N']]
>>> zh = EvidenceText(Wording.of("zh-CN"), LocalClock("Asia/Shanghai"), {})
>>> zh.lines({"silent_for_s": 93784, "ratio": 23.44})
[['失联时长', '1天2小时'], ['倍数', '23.44 倍']]
"""

from __future__ import annotations

import math

from agents.present.local_time import LocalClock
from agents.present.wording import Wording

READING = ("value", "previous", "limit", "mean", "hour_mean", "neighbours_median", "expected", "min_flow", "floor")
FORMS: dict[str, str] = {
    **dict.fromkeys(READING, "reading"),
    **dict.fromkeys(("min_use", "peer_median", "day_mean", "speed", "last_speed"), "reading"),
    **dict.fromkeys(("since", "last_seen", "silent_since", "ended", "visits", "first_seen"), "time"),
    **dict.fromkeys(("field", "primary"), "measure"),
    **dict.fromkeys(("hours",), "hours"),
    **dict.fromkeys(("days", "days_running"), "days"),
    "lat": "lat",
    "lon": "lon",
    "ratio": "ratio",
    "radius_km": "km",
    "iaqi": "indices",
    "pieces": "pieces",
    "site": "site",
    **dict.fromkeys(("direction", "category", "status", "over"), "word"),
    "heading": "degrees",
}
MEASURE_OF = {"last_speed": "speed"}  # evidence keys that are readings of another field
SPAN_UNITS = ((86_400, "day"), (3600, "hour"), (60, "minute"), (1, "second"))


def number(v: float) -> str:
    """Four significant digits under 100, one decimal from there (a register's step stays visible), grouped.

    >>> number(145.8123), number(0.123456), number(75.0), number(9731.558), number(1234567.84), number(3)
    ('145.8', '0.1235', '75', '9,731.6', '1,234,567.8', '3')
    """
    if not math.isfinite(v):
        return str(v)
    if abs(v) >= 100:
        return f"{v:,.1f}".removesuffix(".0")
    return f"{v:.4g}"


def duration(seconds: float, words: Wording) -> str:
    """The two largest units of a span, seconds rounded: ``30 min 2 s``, ``1天2小时``."""
    left, parts = round(abs(seconds)), []
    for size, unit in SPAN_UNITS:
        if left >= size or (size == 1 and not parts):
            parts.append(f"{left // size}{words.term('words', unit)}")
            left %= size
        if len(parts) == 2:
            break
    return words.term("words", "duration_join").join(parts)


class EvidenceText:
    """Evidence dicts as labelled lines, in one language, for one source's units (field -> unit)."""

    def __init__(self, words: Wording, clock: LocalClock, units: dict[str, str]):
        self.words, self.clock, self.units = words, clock, units

    def lines(self, evidence: dict) -> list[list[str]]:
        """``[label, text]`` per evidence key, in the evidence's order."""
        measure = evidence.get("field")
        if not isinstance(measure, str):
            measure = next((k for k in evidence if self.units.get(k) and k not in ("lat", "lon")), None)
        unit = self.units.get(measure or "", "")
        return [
            [self.words.term("evidence", key), self.value(key, v, unit)]
            for key, v in evidence.items()
            if v is not None and v != "" and v != [] and v != {}
        ]

    def value(self, key: str, v: object, unit: str = "") -> str:
        """One evidence value in the form its key has."""
        form = FORMS.get(key) or ("duration" if key.endswith("_s") else "time" if key.endswith("_at") else "")
        w = self.words
        if isinstance(v, list) and form in ("time", "measure"):
            return ", ".join(self.value(key, x, unit) for x in v)
        if isinstance(v, bool):
            return w.term("words", "yes" if v else "no")
        if form == "time" and isinstance(v, int | float | str):
            return self.clock.text(v) if not isinstance(v, str) or "T" in v else v
        if form == "measure" and isinstance(v, str):
            return w.field(v)
        if form == "word" and isinstance(v, str):
            return w.text["words"].get(v, v)
        if form == "indices" and isinstance(v, dict):
            return ", ".join(f"{w.field(k)} {number(x)}" for k, x in sorted(v.items(), key=lambda kv: -kv[1]))
        if form == "pieces" and isinstance(v, list):
            return "; ".join(
                f"{p.get('name', '')}: {w.title(p['kind'])}" if isinstance(p, dict) and "kind" in p else str(p)
                for p in v
            )
        if form == "site" and isinstance(v, dict):
            return str(v.get("name") or v.get("id") or "")
        if not isinstance(v, int | float):
            return ", ".join(map(str, v)) if isinstance(v, list) else str(v)
        if form == "duration":
            return duration(v, w)
        if form in ("lat", "lon"):
            side = ("north" if v >= 0 else "south") if form == "lat" else ("east" if v >= 0 else "west")
            return w.term("words", side, v=f"{abs(v):.4f}")
        if form == "reading":
            unit = self.units.get(MEASURE_OF.get(key, key)) or unit
            return f"{number(v)} {unit}" if unit else number(v)
        if form in ("hours", "days"):
            return w.term("words", form, n=number(v))
        if form == "ratio":
            return w.term("words", "times", v=number(v))
        if form == "km":
            return f"{number(v)} km"
        if form == "degrees":
            return f"{number(v)}°"
        return number(v)
