"""Recognising a shape seen before at this time of day: the generic anomaly detector's sequence memory.

A run of records that has happened before, at about the same time of day (a
nightly batch job's spike, a daily delivery's dip), is the stream's routine,
however unusual it looks to running statistics. The memory keeps an entity's
last records in a ring with their times of day; a run *matches* a remembered
one that ends within ``phase_s`` of the same time of day when no record of the
two is further apart than a tolerance (the largest difference, so one outlier
in the run is enough to make it new).

>>> import numpy as np
>>> memory = ShapeMemory(size=1024, length=6, phase_s=3600)
>>> day = np.zeros(288); day[100:104] = 5.0            # a burst at 08:20, records of five minutes
>>> ts = 1767225600 + 300 * np.arange(3 * 288)
>>> for n, (x, t) in enumerate(zip(np.tile(day, 3), ts)):
...     memory.learn_one(n, float(x), float(t))
...     if 99 < n % 288 < 106 and memory.seen_before(n + 1, tolerance=0.5):
...         print("seen on day", n // 288, "at record", n % 288)
...         break
seen on day 1 at record 100
>>> memory.seen_before(3 * 288, tolerance=0.5), ShapeMemory(1024, 6, 3600).seen_before(0, 0.5)
(True, False)
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

DAY = 86400.0


class ShapeMemory:
    """An entity's last ``size`` records and times of day; whether its latest ``length`` were seen before."""

    __slots__ = ("length", "phase_s", "tod", "values")

    def __init__(
        self, size: int, length: int, phase_s: float, values: np.ndarray | None = None, tod: np.ndarray | None = None
    ):
        # Given arrays are the entity's rows of the state's columns: learning writes straight into them.
        self.values = values if values is not None else np.zeros(size, dtype=np.float32)
        self.tod = tod if tod is not None else np.zeros(size, dtype=np.float32)
        self.length, self.phase_s = length, phase_s

    def learn_one(self, n: int, x: float, ts: float) -> None:
        """Remember ``x`` at event time ``ts`` as the entity's record number ``n`` (counted from 0)."""
        at = n % len(self.values)
        self.values[at] = x
        self.tod[at] = ts % DAY

    def seen_before(self, n: int, tolerance: float) -> bool:
        """Whether the latest ``length`` of the ``n`` records learned match an earlier run that does not
        overlap them and ends at about the same time of day."""
        size, m = len(self.values), self.length
        kept = min(n, size)
        if kept < 2 * m:
            return False
        start = n % size if n > size else 0
        values = np.roll(self.values, -start)[:kept] if start else self.values[:kept]
        tod = np.roll(self.tod, -start)[:kept] if start else self.tod[:kept]
        recent = values[-m:]
        ends = tod[m - 1 : -m]  # the time of day each earlier run ends at
        apart = np.abs((ends - tod[-1] + DAY / 2) % DAY - DAY / 2)
        near = np.flatnonzero(apart <= self.phase_s)
        if not len(near):
            return False
        earlier = sliding_window_view(values[:-m], m)[near]
        return bool(np.abs(earlier - recent).max(axis=1).min() <= tolerance)
