"""A station far above its neighbours: the same closed hour, compared across stations within a radius.

A station is alerted from the ``min_hours``-th consecutive hour far above them (a local source that
persists, not a passing plume).

An hour is judged once the partition's event time (records come in event
order: ``models.engine``) has passed its end by ``grace_s``, so every
station's mean for it is final in practice; stations' positions come from the reference data (the site their
device belongs to). It compares entities with each other, so the source
declares one partition (``partitions = 1``) and the detector sees them all.

>>> import numpy as np
>>> outliers(np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [50.0, 0.0]]), np.array([40.0, 42.0, 130.0, 300.0]),
...          radius_km=20, min_neighbours=2, factor=2.0, min_excess=35.0)[0].tolist()
[2]
"""

from __future__ import annotations

import warnings

import numpy as np
from pydantic import Field

from models.base import BatchContext, Detector, DetectorSettings, Severity, needs_field
from models.signal import Signal
from models.streak import Streak
from state.entity_state import EntityState
from state.refdata.reference import RefData
from state.refdata.zones import local_xy
from streams.registry import Source
from streams.validation import Batch

MODEL = "spatial@2"
UNLOCATED = -1.0


class SpatialSettings(DetectorSettings):
    """The ``[spatial]`` table: a station far above its neighbours in the same closed hour."""

    field: str = "pm25"
    radius_km: float = Field(20.0, gt=0)
    min_neighbours: int = Field(2, ge=1)
    factor: float = Field(2.0, gt=1, description="times the neighbours' median")
    min_excess: float = Field(35.0, ge=0, description="and at least this much above it, in the field's unit")
    grace_s: float = Field(3600.0, ge=0, description="wait past an hour's end before judging it")
    min_hours: int = Field(3, ge=1, le=24, description="consecutive hours above the neighbours before an alert")
    severity: Severity = "warning"


# Detectors whose table names one field: whether that field must be windowed.
FIELD_DETECTORS = {"night_flow": False, "consumption": True, "site_status": False, "peer_use": False, "spatial": True}


def outliers(
    xy_km: np.ndarray, values: np.ndarray, *, radius_km: float, min_neighbours: int, factor: float, min_excess: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of stations far above the median of their neighbours, those medians and neighbour counts."""
    d = np.hypot(*(xy_km[:, None, :] - xy_km[None, :, :]).transpose(2, 0, 1))
    near = (d <= radius_km) & ~np.eye(len(values), dtype=bool) & ~np.isnan(values)[None, :]
    count = near.sum(axis=1)
    with warnings.catch_warnings(), np.errstate(invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # stations with no neighbour: an all-NaN row
        median = np.nanmedian(np.where(near, values[None, :], np.nan), axis=1)
        hit = (count >= min_neighbours) & (values > factor * median) & (values - median >= min_excess)
    return np.flatnonzero(hit), median, count


class Spatial(Detector):
    """Raises ``<field>_above_neighbours`` for a station's hour far above nearby stations' same hour."""

    name = "spatial"
    settings_model = SpatialSettings
    windows = {"1h": 1}

    def __init__(self, source: Source, state: EntityState):
        super().__init__(source, state)
        self.col = state.windowed.index(self.settings.field)
        state.add_lookup("spatial.lon")
        state.add_lookup("spatial.lat")
        self.streak = Streak(state.store, "spatial")

    @classmethod
    def check(cls, source: Source, settings: SpatialSettings) -> None:
        needs_field(source, cls.name, settings.field, windowed=True)

    def max_span_s(self, state: EntityState) -> float:
        return super().max_span_s(state) - self.settings.grace_s

    def detect(self, batch: Batch, rows: np.ndarray, state: EntityState, ctx: BatchContext) -> list[Signal]:
        if not ctx.refdata.sites:
            return []
        seconds, ring = state.windows["1h"]
        due = int(np.floor((ctx.watermark - self.settings.grace_s) / seconds)) - 1
        done = int(self.recall(state, "hour", due - 1))
        self.remember(state, "hour", max(done, due))
        signals = []
        for hour in range(max(done + 1, due - ring + 3), due + 1):
            signals += self._judge(ctx.refdata, hour, state)
        return signals

    def _located(self, ref: RefData, state: EntityState) -> np.ndarray:
        """Rows of stations whose position the reference data gives."""
        rows = np.arange(len(state))
        for axis in ("lon", "lat"):
            state.lookup(f"spatial.{axis}", rows, lambda e, a=axis: getattr(ref.device_site.get(e), a, UNLOCATED))
        return rows[state.store["spatial.lon"][rows] != UNLOCATED]

    def _judge(self, ref: RefData, hour: int, state: EntityState) -> list[Signal]:
        rows = self._located(ref, state)
        if len(rows) <= self.settings.min_neighbours:
            return []
        values = state.window_means("1h", rows, np.full(len(rows), hour))[:, self.col]
        lon, lat = state.store["spatial.lon"][rows], state.store["spatial.lat"][rows]
        xy = np.column_stack(local_xy(lon, lat, float(lat.mean()))) / 1000.0
        sp = self.settings
        hits, median, count = outliers(
            xy,
            values,
            radius_km=sp.radius_km,
            min_neighbours=sp.min_neighbours,
            factor=sp.factor,
            min_excess=sp.min_excess,
        )
        seconds = state.windows["1h"][0]
        above = np.zeros(len(rows), dtype=bool)
        above[hits] = True
        hours = self.streak.update(rows, np.full(len(rows), hour), above)
        return [
            Signal.new(
                source=self.source.name,
                kind=f"{sp.field}_above_neighbours",
                entity=state.slots.name(rows[i]),
                ts=float((hour + 1) * seconds),
                window_start=float(hour * seconds),
                window_s=float(seconds),
                score=float(min(1.0, 1.0 - median[i] / values[i])),
                severity=sp.severity,
                model=MODEL,
                evidence={
                    "field": sp.field,
                    "hour_mean": round(float(values[i]), 2),
                    "neighbours_median": round(float(median[i]), 2),
                    "neighbours": int(count[i]),
                    "radius_km": sp.radius_km,
                    "hours": int(hours[i]),
                },
            )
            for i in hits.tolist()
            if hours[i] >= sp.min_hours
        ]
