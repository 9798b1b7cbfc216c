"""Hourly window features of an entity, normalised by the entity's own statistics.

Per windowed field, for a closed 1-hour bucket: how far the hour's mean is
from the entity's long-run mean (``level``), from the hour before
(``change``) and from the six hours before (``context``), each in units of
the entity's standard deviation; plus the hour of day as a point on a circle.
Entity-normalised features let one per-source model serve every entity.

>>> import numpy as np
>>> from state.entity_state import EntityState
>>> st = EntityState(numeric=["v"], windowed=["v"], windows={"1h": 28}, lateness_s=0)
>>> ts = np.arange(0, 10 * 3600, 600.0)
>>> _ = st.update(st.locate(["e"] * len(ts)), ts, (ts // 3600 % 2).reshape(-1, 1))
>>> x = hour_features(st, np.array([0]), np.array([8]))
>>> names(["v"]), np.round(x, 2).tolist()
(['v.level', 'v.change', 'v.context', 'hour.sin', 'hour.cos'], [[-0.98, -1.96, -0.98, 0.87, -0.5]])
"""

from __future__ import annotations

import numpy as np

from state.entity_state import EntityState

PER_FIELD = ("level", "change", "context")
CONTEXT_HOURS = 6
CLIP = 50.0


def names(fields: list[str]) -> list[str]:
    """Column names of :func:`hour_features` for these windowed fields."""
    return [f"{f}.{p}" for f in fields for p in PER_FIELD] + ["hour.sin", "hour.cos"]


def hour_features(state: EntityState, rows: np.ndarray, buckets: np.ndarray, prefix: str = "") -> np.ndarray:
    """Features (rows x :func:`names`) of 1-hour bucket ``buckets`` of entity ``rows``; NaN where absent. The
    entity's statistics are the state's ``count``, ``mean`` and ``m2`` columns, or copies of them named with
    ``prefix``."""
    count = state.store[f"{prefix}count"][rows].astype(np.float64)
    mean = state.store[f"{prefix}mean"][rows].astype(np.float64)
    m2 = state.store[f"{prefix}m2"][rows].astype(np.float64)
    var = np.divide(m2, count - 1, out=np.zeros_like(mean), where=count > 1)
    sd = np.sqrt(var) + 0.01 * np.abs(mean) + 1e-9
    hour = state.window_means("1h", rows, buckets)
    before = state.window_means("1h", rows, buckets - 1)
    context = state.span_means("1h", rows, buckets - 1, CONTEXT_HOURS, 1)
    per_field = np.stack([(hour - mean) / sd, (hour - before) / sd, (hour - context) / sd], axis=2)
    angle = 2 * np.pi * (buckets % 24) / 24
    x = np.column_stack([per_field.reshape(len(rows), -1), np.sin(angle), np.cos(angle)])
    return np.clip(x, -CLIP, CLIP)
