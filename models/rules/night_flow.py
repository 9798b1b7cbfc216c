"""Sustained night-time flow: a meter whose flow never drops to (near) zero through the night - a leak.

Minimum night flow analysis: between ``night_start_h`` and ``night_end_h``
local time a dwelling or a closed site draws (almost) nothing at some point;
if every reading of the night stays above ``min_flow``, the night is flagged
when it ends (at the meter's first reading after it), once per meter and night.

Parameters (the ``[night_flow]`` table): ``field``, ``night_start_h`` and
``night_end_h`` (local), ``min_flow`` (the floor), ``min_readings`` (a night
needs them to be judged), ``utc_offset_h``, ``severity``.

>>> from models.catalog import load_sources
>>> from models.engine import SourceEngine
>>> engine = SourceEngine(load_sources()["water"].model_copy(update={"detectors": ["night_flow"]}))
>>> never_zero = [{"entity": "w-1", "ts": 1767204000 + 300 * i, "flow": 0.1, "total": 100.0 + i}
...               for i in range(60)]   # 02:00-07:00 local, 0.1 m3/h throughout
>>> [(s.kind, s.entity, s.evidence["readings"]) for s in engine.process(never_zero).signals]
[('night_flow', 'w-1', 36)]

Reference: minimum night flow analysis, M. Farley and S. Trow, *Losses in
Water Distribution Networks*, IWA Publishing (2003).
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import Field

from models.base import BatchContext, Detector, DetectorSettings, Severity, UtcOffsetHours, needs_field
from models.calendar import local_day_hour
from models.signal import Signal
from state.entity_state import EntityState
from streams.registry import Source
from streams.validation import Batch

MODEL = "night_flow@1"


class NightFlowSettings(DetectorSettings):
    """The ``[night_flow]`` table: the minimum-night-flow leak check."""

    field: str = "flow"
    night_start_h: int = Field(1, ge=0, le=23, description="local hour the quiet night begins")
    night_end_h: int = Field(5, ge=1, le=24)
    min_flow: float = Field(0.02, ge=0, description="a night whose every reading is above this leaks")
    min_readings: int = Field(30, ge=1, description="readings a night needs to be judged")
    utc_offset_h: UtcOffsetHours = 8.0
    severity: Severity = "warning"


class NightFlow(Detector):
    """Raises ``night_flow`` when a meter's minimum flow over a whole night stays above a floor."""

    name = "night_flow"
    settings_model = NightFlowSettings

    def __init__(self, source: Source, state: EntityState):
        super().__init__(source, state)
        state.store.add("night_flow.day", np.float32, fill=np.nan)  # local day number of the night open
        state.store.add("night_flow.min", np.float32, fill=np.nan)
        state.store.add("night_flow.n", np.int32)

    @classmethod
    def check(cls, source: Source, settings: NightFlowSettings) -> None:
        needs_field(source, cls.name, settings.field)

    def detect(self, batch: Batch, rows: np.ndarray, state: EntityState, ctx: BatchContext) -> list[Signal]:
        sp = self.settings
        flow = batch.columns[sp.field]
        dh = local_day_hour(batch.ts, sp.utc_offset_h)
        at_night = (dh[:, 1] >= sp.night_start_h) & (dh[:, 1] < sp.night_end_h) & ~np.isnan(flow)
        day, low, n = state.store["night_flow.day"], state.store["night_flow.min"], state.store["night_flow.n"]
        # night readings, and every reading of a meter with a night open (before or within the batch)
        relevant = at_night | ~np.isnan(day[rows]) | np.isin(rows, rows[at_night])
        if not relevant.any():
            return []
        order = ctx.sequence.order[relevant[ctx.sequence.order]]
        alerts = []
        for i in order.tolist():
            r, d = int(rows[i]), float(dh[i, 0])
            pending = not math.isnan(day[r])
            if pending and (not at_night[i] or d != day[r]):
                if n[r] >= sp.min_readings and low[r] > sp.min_flow:
                    alerts.append(self._alert(batch.entities[i], float(day[r]), float(low[r]), int(n[r])))
                day[r], low[r], n[r] = np.nan, np.nan, 0
            if at_night[i]:
                if math.isnan(day[r]):
                    day[r], low[r], n[r] = d, flow[i], 1
                else:
                    low[r], n[r] = min(low[r], flow[i]), n[r] + 1
        return alerts

    def _alert(self, entity: str, day: float, low: float, readings: int) -> Signal:
        sp = self.settings
        start = day * 86400 + sp.night_start_h * 3600 - sp.utc_offset_h * 3600
        end = day * 86400 + sp.night_end_h * 3600 - sp.utc_offset_h * 3600
        return Signal.new(
            source=self.source.name,
            kind="night_flow",
            entity=entity,
            ts=end,
            window_start=start,
            window_s=end - start,
            score=min(1.0, 0.5 + low / (20 * sp.min_flow)),
            severity=sp.severity,
            model=MODEL,
            evidence={
                "field": sp.field,
                "min_flow": low,
                "floor": sp.min_flow,
                "readings": readings,
                "night": f"{sp.night_start_h:02d}:00-{sp.night_end_h:02d}:00 local",
            },
        )
