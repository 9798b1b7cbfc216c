"""Which local days are rest days: weekends and public holidays, less the weekend days worked instead.

>>> cal = RestDays.from_doc({"rest_days": ["2026-10-01"], "working_days": ["2026-10-10"]})
>>> days = np.array([day_number("2026-09-30"), day_number("2026-10-01"), day_number("2026-10-04"),
...                  day_number("2026-10-10")])   # Wed, Thu (holiday), Sun, Sat (worked)
>>> cal.is_rest(days).tolist()
[False, True, True, False]
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from pathlib import Path

import numpy as np

DEFAULT_HOLIDAYS = Path(__file__).resolve().parent / "data" / "holidays.toml"


class HolidayError(ValueError):
    """A holidays document that cannot be used."""


def day_number(iso_date: str) -> int:
    """Days since 1970-01-01 of a local ``YYYY-MM-DD`` date."""
    return date.fromisoformat(iso_date).toordinal() - date(1970, 1, 1).toordinal()


@dataclass(frozen=True)
class RestDays:
    """Public holidays and make-up working days (sorted local day numbers)."""

    rest: np.ndarray
    working: np.ndarray

    @classmethod
    def from_doc(cls, doc: dict, origin: str = "holidays.toml") -> RestDays:
        try:
            rest, working = ([day_number(d) for d in doc.get(key, [])] for key in ("rest_days", "working_days"))
        except (TypeError, ValueError) as exc:
            raise HolidayError(f"{origin}: dates must be YYYY-MM-DD strings ({exc})") from None
        return cls(np.array(sorted(rest), dtype=np.int64), np.array(sorted(working), dtype=np.int64))

    @staticmethod
    def shipped() -> RestDays:
        """The calendar that ships with Warden (``state/data/holidays.toml``)."""
        return _shipped()

    def is_rest(self, days: np.ndarray) -> np.ndarray:
        """Whether each local day number is a rest day."""
        days = np.asarray(days).astype(np.int64)
        weekend = (days + 3) % 7 >= 5  # 1970-01-01 was a Thursday
        return (weekend & ~np.isin(days, self.working)) | np.isin(days, self.rest)


@lru_cache(maxsize=1)
def _shipped() -> RestDays:
    return RestDays.from_doc(tomllib.loads(DEFAULT_HOLIDAYS.read_text()), str(DEFAULT_HOLIDAYS))
