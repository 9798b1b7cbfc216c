"""Recognising a shape seen before at this time of day: the generic anomaly detector's sequence memory.

A run of records that has happened before, at about the same time of day (a
nightly batch job's spike, a daily delivery's dip), is the stream's routine,
however unusual it looks to running statistics. The memory keeps an entity's
last records in a ring with their times of day (float32); a run *matches* a
remembered one that ends within ``phase_s`` of the same time of day when no
record of the two is further apart than a tolerance (the largest difference,
so one outlier in the run is enough to make it new).

Both functions are compiled (numba) and take one entity's rows of the state's
columns, so the detector calls them from its own compiled loop.

>>> import numpy as np
>>> values, tod = np.zeros(1024, np.float32), np.zeros(1024, np.float32)
>>> day = np.zeros(288); day[100:104] = 5.0            # a burst at 08:20, records of five minutes
>>> ts = 1767225600 + 300 * np.arange(3 * 288)
>>> for n, (x, t) in enumerate(zip(np.tile(day, 3), ts)):
...     remember(values, tod, n, float(x), float(t))
...     if 99 < n % 288 < 106 and seen_before(values, tod, n + 1, 6, 3600.0, 0.5):
...         print("seen on day", n // 288, "at record", n % 288)
...         break
seen on day 1 at record 100
>>> seen_before(values, tod, 3 * 288, 6, 3600.0, 0.5), seen_before(values, tod, 0, 6, 3600.0, 0.5)
(True, False)
"""

from __future__ import annotations

import numpy as np
from numba import njit

DAY = 86400.0
# The ring's times of day are float32, and so is the arithmetic on them (as NumPy does it for float32 arrays).
_DAY32, _HALF32 = np.float32(DAY), np.float32(DAY / 2)


@njit(cache=True, nogil=True)
def remember(values: np.ndarray, tod: np.ndarray, n: int, x: float, ts: float) -> None:
    """Remember ``x`` at event time ``ts`` as the entity's record number ``n`` (counted from 0)."""
    at = n % len(values)
    values[at] = np.float32(x)
    tod[at] = np.float32(ts % DAY)


@njit(cache=True, nogil=True)
def seen_before(values: np.ndarray, tod: np.ndarray, n: int, length: int, phase_s: float, tolerance: float) -> bool:
    """Whether the latest ``length`` of the ``n`` records remembered match an earlier run that does not overlap
    them and ends within ``phase_s`` of the same time of day, no record further apart than ``tolerance``."""
    size, m = len(values), length
    kept = min(n, size)
    if kept < 2 * m:
        return False
    start = n % size if n > size else 0  # the oldest record kept; logical index i is at (start + i) % size
    phase, tol = np.float32(phase_s), np.float32(tolerance)  # compared in float32, as NumPy compares them
    last = tod[(start + kept - 1) % size]
    for end in range(m - 1, kept - m):
        apart = abs((tod[(start + end) % size] - last + _HALF32) % _DAY32 - _HALF32)
        if apart > phase:
            continue
        alike = True
        for j in range(m):
            if abs(values[(start + end - m + 1 + j) % size] - values[(start + kept - m + j) % size]) > tol:
                alike = False
                break
        if alike:
            return True
    return False
