"""Streaks: how many consecutive closed buckets each entity has met a condition, for minimum durations.

A polluted hour or a station above its neighbours for one hour is a reading; three in a row is a
situation. Detectors that judge closed buckets feed each verdict in bucket order and alert on streaks
of at least their minimum; a bucket with no data (or out of order) breaks the streak.

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
