"""Minimum durations: how long each entity has met a condition, in closed buckets or in records.

A polluted hour or a station above its neighbours for one hour is a reading; three in a row is a
situation. Detectors that judge closed buckets feed each verdict in bucket order (:class:`Streak`) and
alert on streaks of at least their minimum; a bucket with no data (or out of order) breaks the streak.
Detectors that judge records find runs of records meeting a condition that have lasted long enough
(:func:`sustained`: a vehicle standing, speeding, a register frozen while water flows).

>>> from state.columns import ColumnStore
>>> store = ColumnStore(capacity=2)
>>> streak = Streak(store, "demo")
>>> [streak.update(np.array([0]), np.array([b]), np.array([hit])).tolist() for b, hit in
...  [(10, True), (11, True), (12, True), (14, True), (15, False)]]
[[1], [2], [3], [1], [0]]
"""

from __future__ import annotations

import numpy as np

from state.columns import ColumnStore
from state.sequence import EntitySequence


class Streak:
    """Per entity: the last bucket judged and the streak of consecutive buckets that met the condition."""

    def __init__(self, store: ColumnStore, prefix: str):
        store.add(f"{prefix}.streak_bucket", np.int32, fill=-2)
        store.add(f"{prefix}.streak", np.uint16)
        self.store, self.prefix = store, prefix

    def update(self, rows: np.ndarray, buckets: np.ndarray, hit: np.ndarray) -> np.ndarray:
        """Fold one verdict per entity (``rows`` unique) for ``buckets``; each one's streak after it."""
        last, streak = self.store[f"{self.prefix}.streak_bucket"], self.store[f"{self.prefix}.streak"]
        follows = last[rows] == buckets - 1
        now = np.where(hit, np.where(follows, streak[rows].astype(np.int64) + 1, 1), 0)
        streak[rows] = np.minimum(now, np.iinfo(np.uint16).max)
        last[rows] = buckets
        return now


def sustained(
    seq: EntitySequence,
    ts: np.ndarray,
    prior_ts: np.ndarray,
    cond: np.ndarray,
    since: np.ndarray,
    alerted: np.ndarray,
    min_s: float,
    max_gap_s: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Runs of consecutive records meeting ``cond`` (``seq`` order, event times ``ts``, each entity's time before
    the batch ``prior_ts``) with no gap over ``max_gap_s``: the first record of each run that has lasted
    ``min_s`` (once per run), and every record's run start (NaN off a run). Each entity's run start and the
    start last alerted are kept in the columns ``since`` and ``alerted``.

    >>> seq = EntitySequence.of_sorted(np.zeros(5, dtype=np.int64))
    >>> since, alerted = np.full(1, np.nan), np.full(1, np.nan)
    >>> hits, start = sustained(seq, np.array([0.0, 10, 20, 30, 40]), np.full(5, -np.inf),
    ...                         np.array([True, True, True, False, True]), since, alerted, 20, 60)
    >>> hits.tolist(), start.tolist()[:3], since.tolist()
    ([2], [0.0, 0.0, 0.0], [40.0])
    """
    prev_ts = np.where(seq.first, prior_ts, np.roll(ts, 1))
    with np.errstate(invalid="ignore"):
        gap = ts - prev_ts > max_gap_s
    before = np.where(seq.first, ~np.isnan(since[seq.rows]), np.roll(cond, 1))
    idx = np.arange(len(ts))
    begun = np.maximum.accumulate(np.where(cond & (~before | gap), idx, -1))
    carried = begun < np.maximum.accumulate(np.where(seq.first, idx, 0))
    start = np.where(cond, np.where(carried, since[seq.rows], ts[begun.clip(min=0)]), np.nan)
    hits = np.flatnonzero(cond & (ts - start >= min_s) & (alerted[seq.rows] != start))
    if len(hits):
        first = np.ones(len(hits), dtype=bool)
        first[1:] = (seq.rows[hits][1:] != seq.rows[hits][:-1]) | (start[hits][1:] != start[hits][:-1])
        hits = hits[first]
        alerted[seq.rows[hits]] = start[hits]
    since[seq.rows[seq.last]] = start[seq.last]
    return hits, start
