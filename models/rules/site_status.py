"""Use at a closed site: a meter of a site registered closed (or suspended) draws power or water.

Which meter belongs to which site, and the site's status, come from the
reference data; the per-meter answer is cached in a lookup column of the state
(worked out again when a new reference-data version arrives).

>>> from state.refdata.reference import RefData
>>> from models.catalog import load_sources
>>> from models.engine import SourceEngine
>>> ref = RefData.from_doc({"sites": [{"id": "plant-1", "lon": 120.6, "lat": 31.3, "category": "chemical_plant",
...                                    "status": "closed", "meters": "power-7"}]})
>>> engine = SourceEngine(load_sources()["power"], refdata=ref)
>>> out = engine.process([{"entity": "power-7", "ts": 1767225600 + 60 * i, "kwh": 10 + i, "kw": 30.0}
...                       for i in range(3)] + [{"entity": "power-8", "ts": 1767225600, "kwh": 5, "kw": 30.0}])
>>> [(s.kind, s.entity, s.evidence["site"]) for s in out.signals if s.model == MODEL]
[('closed_site_consumption', 'power-7', 'plant-1')]
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from models.base import BatchContext, Detector, DetectorSettings, Severity, needs_field
from models.signal import Signal
from state.entity_state import EntityState
from state.refdata.reference import RefData
from streams.registry import Source
from streams.validation import Batch

MODEL = "site_status@1"


class SiteStatusSettings(DetectorSettings):
    """The ``[site_status]`` table: use at a site whose registered status says it should have none."""

    field: str = "kw"
    min_use: float = Field(0.5, ge=0, description="readings above this are use")
    statuses: list[str] = Field(default_factory=lambda: ["closed"])
    dedup_s: float = Field(3600.0, gt=0, description="one signal per meter per this period")
    severity: Severity = "major"


class SiteStatus(Detector):
    """Raises ``closed_site_consumption`` at most once per meter and ``dedup_s``."""

    name = "site_status"
    settings_model = SiteStatusSettings

    def __init__(self, source: Source, state: EntityState):
        super().__init__(source, state)
        state.add_lookup("site_status.shut")  # 1.0: the meter's site is shut
        state.store.add("site_status.alerted", np.float64, fill=np.nan)

    @classmethod
    def check(cls, source: Source, settings: SiteStatusSettings) -> None:
        needs_field(source, cls.name, settings.field)

    def detect(self, batch: Batch, rows: np.ndarray, state: EntityState, ctx: BatchContext) -> list[Signal]:
        ref = ctx.refdata
        if not ref.sites:
            return []
        seq, sp = ctx.sequence, self.settings
        ts, value = batch.ts[seq.order], batch.columns[sp.field][seq.order]
        r = seq.rows
        with np.errstate(invalid="ignore"):
            using = value > sp.min_use
        if not using.any():
            return []
        shut = np.zeros(len(r), dtype=bool)
        shut[using] = state.lookup("site_status.shut", r[using], lambda entity: self._shut(ref, entity)) == 1.0
        alerted = state.store["site_status.alerted"]
        signals = []
        for i in np.flatnonzero(shut).tolist():
            row = int(r[i])
            if not ts[i] - alerted[row] < sp.dedup_s:  # NaN (never) compares False: raise
                alerted[row] = ts[i]
                signals.append(self._signal(ref, batch, int(seq.order[i]), float(ts[i]), float(value[i])))
        return signals

    def _shut(self, ref: RefData, entity: str) -> float:
        site = ref.device_site.get(entity)
        return float(site is not None and site.status in self.settings.statuses)

    def _signal(self, ref: RefData, batch: Batch, i: int, ts: float, value: float) -> Signal:
        entity = batch.entities[i]
        site = ref.device_site[entity]
        return Signal.at(
            source=self.source.name,
            kind="closed_site_consumption",
            entity=entity,
            ts=ts,
            score=1.0,
            severity=self.settings.severity,
            model=MODEL,
            evidence={
                "field": self.settings.field,
                "value": value,
                "min_use": self.settings.min_use,
                "site": site.id,
                "site_name": site.name,
                "status": site.status,
            },
        )
