"""Running count, mean and variance per entity and field, merged one batch at a time.

Chan et al.'s parallel update: the batch's own statistics per entity are folded
into the stored ones, so the result equals a record-by-record Welford update.

>>> import numpy as np
>>> n = np.zeros((1, 1), np.uint32); mean = np.zeros((1, 1)); m2 = np.zeros((1, 1))
>>> update(n, mean, m2, np.array([0, 0, 0]), np.array([[1.0], [2.0], [3.0]]))
>>> float(mean[0, 0]), float(variance(n, m2)[0, 0])
(2.0, 1.0)
"""

from __future__ import annotations

import numpy as np


def update(count: np.ndarray, mean: np.ndarray, m2: np.ndarray, rows: np.ndarray, values: np.ndarray) -> None:
    """Fold ``values`` (records x fields, NaN = absent) of entity ``rows`` into the stats, in place."""
    if len(rows) == 0:
        return
    uniq, inv = np.unique(rows, return_inverse=True)
    for f in range(values.shape[1]):
        x = values[:, f]
        present = ~np.isnan(x)
        if not present.any():
            continue
        xi, ii = x[present], inv[present]
        nb = np.bincount(ii, minlength=len(uniq)).astype(np.float64)
        has = nb > 0
        sb = np.bincount(ii, weights=xi, minlength=len(uniq))
        mb = np.divide(sb, nb, out=np.zeros_like(sb), where=has)
        m2b = np.bincount(ii, weights=(xi - mb[ii]) ** 2, minlength=len(uniq))
        r = uniq[has]
        na = count[r, f].astype(np.float64)
        nb, mb, m2b = nb[has], mb[has], m2b[has]
        n = na + nb
        delta = mb - mean[r, f]
        mean[r, f] += delta * nb / n
        m2[r, f] += m2b + delta * delta * na * nb / n
        count[r, f] = n


def variance(count: np.ndarray, m2: np.ndarray) -> np.ndarray:
    """Sample variance (NaN under two observations)."""
    n = count.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 1, m2 / (n - 1), np.nan)
