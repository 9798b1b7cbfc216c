"""Consumption abnormal for this meter at this hour: each meter learns its own weekly profile online.

For every closed hour the meter's mean use is compared with what it usually
uses at that hour of the day on that kind of day (working day / rest day: weekends and
public holidays, from the reference data's calendar): 48 slots,
kept as float16 exponentially weighted means (~130 bytes a meter with counts
and spread). The surprise is the log ratio to the profile, in units of the
meter's own spread of such ratios; an hour far off (either way) after the slot
has been seen ``warmup`` times raises ``<field>_consumption_abnormal``.

In formulas, for the closed hour's mean use u in slot k with profile p_k and
log-ratio variance v (both exponentially weighted by ``alpha``):

    r = log((u + floor) / (p_k + floor)),  z = |r| / max(sqrt(v), min_spread)

and the hour is abnormal when z >= ``z_alert`` and |u - p_k| >= ``min_change``
in one of ``directions`` (default: above the usual only); an alert is raised
from the ``min_hours``-th abnormal hour running (default 3): sustained use,
not an appliance switched on at an unusual hour.

>>> import math
>>> from models.catalog import load_sources
>>> from models.engine import SourceEngine
>>> engine = SourceEngine(load_sources()["power"].model_copy(update={"detectors": ["consumption"]}))
>>> midnight = 1767196800   # 2026-01-01 00:00 local
>>> three_weeks = [{"entity": "home-1", "ts": midnight + 600 * i, "kwh": 100.0 + i,
...                 "kw": 8.0 if 3 <= i // 6 - 21 * 24 < 6 else 1.0 + 0.1 * math.sin(i)} for i in range(22 * 144)]
>>> [(s.kind, s.window_start - midnight, s.evidence["hours"]) for s in engine.process(three_weeks).signals]
[('kw_consumption_abnormal', 1832400.0, 3)]
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from models.base import BatchContext, Detector, DetectorSettings, Severity, UtcOffsetHours, needs_field
from models.calendar import slot_of
from models.signal import Signal
from models.streak import Streak
from state import nibbles
from state.entity_state import EntityState
from state.refdata.holidays import RestDays
from state.refdata.reference import RefData
from streams.registry import Source
from streams.validation import Batch

MODEL = "consumption@2"
SLOTS = 48


class ConsumptionSettings(DetectorSettings):
    """The ``[consumption]`` table: when an hour's use is abnormal for this meter."""

    field: str = "kw"
    floor: float = Field(0.05, gt=0, description="added to both sides of the ratio (near-zero use)")
    min_change: float = Field(0.5, ge=0, description="smallest absolute difference worth an alert")
    warmup: int = Field(3, ge=1, le=15, description="times a slot is seen before it can alert")
    z_alert: float = Field(4.0, gt=0, description="log-ratio spreads that make an hour abnormal")
    min_spread: float = Field(0.1, gt=0)
    alpha: float = Field(0.2, gt=0, lt=1, description="EW weight of a new hour in the profile")
    min_hours: int = Field(3, ge=1, le=48, description="consecutive abnormal hours before an alert (sustained use)")
    directions: list[Literal["high", "low"]] = Field(
        default_factory=lambda: ["high"],
        description="which deviations alert: use above the usual (a leak, an illegal operation); use below it "
        "(a household away) only where a department acts on it",
    )
    utc_offset_h: UtcOffsetHours = 8.0
    severity: Severity = "warning"


class Consumption(Detector):
    """Flags hours whose use is far from the meter's usual use at that hour of the week."""

    name = "consumption"
    settings_model = ConsumptionSettings
    windows = {"1h": 1}

    def __init__(self, source: Source, state: EntityState):
        super().__init__(source, state)
        self.f = state.windowed.index(self.settings.field)
        state.store.add("consumption.profile", np.float16, (SLOTS,), fill=np.nan)
        state.store.add("consumption.seen", np.uint8, (SLOTS // 2,))  # times each slot was learned, 0..15
        state.store.add("consumption.var", np.float32, fill=np.nan)
        state.add_marker("consumption.closed")
        self.streak = Streak(state.store, "consumption")
        self.rest_days = RestDays.shipped()

    def use_refdata(self, ref: RefData) -> None:
        self.rest_days = ref.rest_days

    @classmethod
    def check(cls, source: Source, settings: ConsumptionSettings) -> None:
        needs_field(source, cls.name, settings.field, windowed=True)

    def detect(self, batch: Batch, rows: np.ndarray, state: EntityState, ctx: BatchContext) -> list[Signal]:
        return self._judge(rows, state)

    def sweep(self, state: EntityState, now: float) -> list[Signal]:
        """The hours an idle feed's clock (``now``) has closed."""
        return self._judge(state.unjudged("1h", state.store["consumption.closed"], now), state, now)

    def _judge(self, rows: np.ndarray, state: EntityState, now: float | None = None) -> list[Signal]:
        sp = self.settings
        seconds, _ = state.windows["1h"]
        profile, seen, var = (state.store[f"consumption.{c}"] for c in ("profile", "seen", "var"))
        alerts = []
        for r, b in state.newly_closed(rows, "1h", state.store["consumption.closed"], now):
            use = state.window_means("1h", r, b)[:, self.f]
            ok = ~np.isnan(use)
            r, b, use = r[ok], b[ok], use[ok]
            slot = slot_of(b * float(seconds), sp.utc_offset_h, self.rest_days)
            expected = profile[r, slot].astype(np.float64)
            n = nibbles.counts(seen, r, slot)
            ratio = np.log((use + sp.floor) / (expected + sp.floor))
            ready = (n >= sp.warmup) & ~np.isnan(expected)
            spread = np.sqrt(np.where(np.isnan(var[r]), sp.min_spread**2, var[r])).clip(min=sp.min_spread)
            z = np.abs(ratio) / spread
            direction = np.where(ratio > 0, "high", "low")
            hit = ready & (z >= sp.z_alert) & (np.abs(use - expected) >= sp.min_change)
            hit &= np.isin(direction, sp.directions)
            hours = self.streak.update(r, b, hit)
            for i in np.flatnonzero(hours >= sp.min_hours).tolist():
                alerts.append(
                    Signal.new(
                        source=self.source.name,
                        kind=f"{sp.field}_consumption_abnormal",
                        entity=state.slots.name(r[i]),
                        ts=float((b[i] + 1) * seconds),
                        window_start=float(b[i] * seconds),
                        window_s=float(seconds),
                        score=float(min(1.0, z[i] / (2 * sp.z_alert))),
                        severity=sp.severity,
                        model=MODEL,
                        evidence={
                            "field": sp.field,
                            "hour_mean": float(use[i]),
                            "expected": float(expected[i]),
                            "ratio": float(np.exp(ratio[i])),
                            "z": float(z[i]),
                            "direction": str(direction[i]),
                            "hours": int(hours[i]),
                            "slot": int(slot[i]),
                        },
                    )
                )
            # learn: the ratio spread from ready hours (capped so one outlier cannot blow it up), then the profile
            learn = ready & np.isfinite(ratio)
            capped = np.clip(ratio[learn], -3 * spread[learn], 3 * spread[learn])
            old = var[r[learn]].astype(np.float64)
            var[r[learn]] = np.where(np.isnan(old), capped**2, (1 - sp.alpha) * old + sp.alpha * capped**2)
            # the profile learns the hour with its ratio capped the same way: one odd hour barely moves it
            fresh = np.isnan(expected)
            bounded = np.where(ready, np.clip(ratio, -3 * spread, 3 * spread), ratio)
            seen_use = np.where(ready, (expected + sp.floor) * np.exp(bounded) - sp.floor, use)
            new = np.where(fresh, use, expected + sp.alpha * (seen_use - expected))
            profile[r, slot] = new.astype(np.float16)
            nibbles.bump(seen, r, slot)
        return alerts
