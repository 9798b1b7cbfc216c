"""Recognising a shape seen before at this time of day: the generic anomaly detector's sequence memory.

A run of records that has happened before, at about the same time of day (a
nightly batch job's spike, a daily delivery's dip), is the stream's routine,
however unusual it looks to running statistics. The memory keeps an entity's
last records in a ring with their times of day; a run *matches* a remembered
one that ends within ``phase_s`` of the same time of day when no record of the
two is further apart than a tolerance (the largest difference, so one outlier
in the run is enough to make it new).

A record costs three bytes: its value as an 8-bit code on the entity's own
scale (``scale``: its low end and span, a little wider than the range seen; a
value outside it widens the scale and re-codes the ring, so each record's error
stays under a step or so of the final scale, well inside any useful tolerance)
and its time of day in 2-second steps (16 bits, exact for feeds on whole
seconds of even count, so phase comparisons on a minute or five-minute grid are
exact).

The ring is held in blocks (:class:`~state.blocks.BlockPool`): an entity's
``table`` names the block of each stretch of its ring, given to it (by the
caller) before its first record in that stretch is remembered, so an entity
that has sent a few records holds a block, not the whole ring.

Both functions are compiled (numba) and take one entity's table and scale and
the pool's columns, so the detector calls them from its own compiled loop.

>>> import numpy as np
>>> table, scale = np.arange(16, dtype=np.int32), np.zeros(2)   # the ring's 16 blocks: 0 to 15 of the pool
>>> codes, tod = np.zeros((16, 64), np.uint8), np.zeros((16, 64), np.uint16)   # the pool: 16 blocks of 64
>>> day = np.zeros(288); day[100:104] = 5.0            # a burst at 08:20, records of five minutes
>>> ts = 1767225600 + 300 * np.arange(3 * 288)
>>> for n, (x, t) in enumerate(zip(np.tile(day, 3), ts)):
...     remember(table, codes, tod, scale, n, float(x), float(t), 0.0, 5.0)  # the range seen: 0 to 5
...     if 99 < n % 288 < 106 and seen_before(table, codes, tod, scale, n + 1, 6, 3600.0, 0.5):
...         print("seen on day", n // 288, "at record", n % 288)
...         break
seen on day 1 at record 100
>>> seen_before(table, codes, tod, scale, 3 * 288, 6, 3600.0, 0.5)
True
"""

from __future__ import annotations

import numpy as np

from state.compiled import njit

DAY = 86400.0
TOD_STEP = 2.0  # seconds per step of a remembered time of day
TOD_STEPS = int(DAY / TOD_STEP)
LEVELS = 255  # the highest value code
MARGIN = 0.25  # a new scale reaches this share of the range seen beyond each end of it


@njit(cache=True, nogil=True)
def remember(
    table: np.ndarray,
    codes: np.ndarray,
    tod: np.ndarray,
    scale: np.ndarray,
    n: int,
    x: float,
    ts: float,
    lo: float,
    hi: float,
) -> None:
    """Remember ``x`` at event time ``ts`` as the entity's record number ``n`` (counted from 0; its block given);
    ``lo``/``hi``: the range it has shown, ``x`` included (a new scale is fitted to it)."""
    block = codes.shape[1]
    size = len(table) * block
    low, span = scale[0], scale[1]
    if span <= 0.0 or x < low or x > low + span:
        width = max(hi - lo, abs(x) * 1e-6, 1e-9)
        new_low, new_span = lo - MARGIN * width, (1.0 + 2.0 * MARGIN) * width
        for i in range(min(n, size)):  # the ring's records, re-coded on the new scale
            at = table[i // block], i % block
            codes[at] = _code(low + codes[at] * (span / LEVELS), new_low, new_span)
        scale[0], scale[1] = new_low, new_span
        low, span = new_low, new_span
    slot = n % size
    at = table[slot // block], slot % block
    codes[at] = _code(x, low, span)
    tod[at] = round(ts % DAY / TOD_STEP) % TOD_STEPS


@njit(cache=True, nogil=True, inline="always")
def _code(value: float, low: float, span: float) -> int:
    return min(max(round((value - low) / span * LEVELS), 0), LEVELS)


@njit(cache=True, nogil=True)
def seen_before(
    table: np.ndarray,
    codes: np.ndarray,
    tod: np.ndarray,
    scale: np.ndarray,
    n: int,
    length: int,
    phase_s: float,
    tolerance: float,
) -> bool:
    """Whether the latest ``length`` of the ``n`` records remembered match an earlier run that does not overlap
    them and ends within ``phase_s`` of the same time of day, no record further apart than ``tolerance``."""
    block = codes.shape[1]
    size, m = len(table) * block, length
    kept = min(n, size)
    if kept < 2 * m or scale[1] <= 0.0:
        return False
    start = n % size if n > size else 0  # the oldest record kept; logical index i is at slot (start + i) % size
    apart_max = phase_s / TOD_STEP
    within = tolerance / (scale[1] / LEVELS)  # the tolerance in code steps
    half = TOD_STEPS // 2
    last = _held(table, tod, (start + kept - 1) % size)
    for end in range(m - 1, kept - m):
        if abs((_held(table, tod, (start + end) % size) - last + half) % TOD_STEPS - half) > apart_max:
            continue
        alike = True
        for j in range(m):
            earlier = _held(table, codes, (start + end - m + 1 + j) % size)
            if abs(earlier - _held(table, codes, (start + kept - m + j) % size)) > within:
                alike = False
                break
        if alike:
            return True
    return False


@njit(cache=True, nogil=True, inline="always")
def _held(table: np.ndarray, column: np.ndarray, slot: int) -> int:
    """The value a ring slot holds (signed: numba's int() of an unsigned stays unsigned)."""
    block = column.shape[1]
    return np.int64(column[table[slot // block], slot % block])
