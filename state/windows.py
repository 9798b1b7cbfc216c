"""Tumbling-window ring buffers: the last R buckets of (sum, count) per entity and field.

Bucket ``b`` covers event times [b*L, (b+1)*L); it lives at ring position b % R.
``head`` is the newest bucket an entity has reached; advancing it clears the
positions it passes, so a ring never mixes two buckets.

>>> import numpy as np
>>> s = np.zeros((1, 1, 4), np.float32); c = np.zeros((1, 1, 4), np.uint16); h = np.full(1, -1, np.int32)
>>> add(s, c, h, np.array([0, 0]), np.array([5, 5]), np.array([[1.0], [3.0]]))
>>> means(s, c, h, np.array([0]), np.array([5])).tolist()
[[2.0]]
"""

from __future__ import annotations

import numpy as np


def add(
    sums: np.ndarray, counts: np.ndarray, head: np.ndarray, rows: np.ndarray, buckets: np.ndarray, values: np.ndarray
) -> None:
    """Add ``values`` (records x fields, NaN = absent) to bucket ``buckets`` of entity ``rows``."""
    if len(rows) == 0:
        return
    ring = sums.shape[2]
    uniq, inv = np.unique(rows, return_inverse=True)
    newest = np.full(len(uniq), np.iinfo(np.int32).min, dtype=np.int64)
    np.maximum.at(newest, inv, buckets)
    old = head[uniq].astype(np.int64)
    moving = newest > old
    if moving.any():
        r, new, prev = uniq[moving], newest[moving], old[moving]
        held = new[:, None] - ((new[:, None] - np.arange(ring)[None, :]) % ring)
        stale = held > prev[:, None]
        sums[r] = np.where(stale[:, None, :], 0, sums[r])
        counts[r] = np.where(stale[:, None, :], 0, counts[r])
        head[r] = new
    fresh = buckets > head[rows].astype(np.int64) - ring
    n_fields = sums.shape[1]
    present = ~np.isnan(values) & fresh[:, None]
    rec, fld = np.nonzero(present)
    flat = (rows[rec] * n_fields + fld) * ring + buckets[rec] % ring
    np.add.at(sums.reshape(-1), flat, values[rec, fld].astype(sums.dtype))
    np.add.at(counts.reshape(-1), flat, 1)


def held(head: np.ndarray, rows: np.ndarray, buckets: np.ndarray, ring: int) -> np.ndarray:
    """Whether each entity's ring still holds the bucket asked for."""
    age = head[rows].astype(np.int64) - buckets
    return (age >= 0) & (age < ring)


def means(sums: np.ndarray, counts: np.ndarray, head: np.ndarray, rows: np.ndarray, buckets: np.ndarray) -> np.ndarray:
    """Mean of bucket ``buckets`` for entity ``rows`` (records x fields); NaN when empty or gone."""
    ring = sums.shape[2]
    pos = buckets % ring
    s = sums[rows, :, pos].astype(np.float64)
    c = counts[rows, :, pos].astype(np.float64)
    ok = held(head, rows, buckets, ring)[:, None] & (c > 0)
    return np.divide(s, c, out=np.full(s.shape, np.nan), where=ok)
