"""Use where the registry says there should be none: at a closed (or suspended) site, or at a site of a
licensed trade (a chemical plant) whose licence is missing or expired on the reading's local date.

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
>>> [(s.kind, s.entity, s.evidence["site"]) for s in out.signals + engine.flush() if s.model == MODEL]
[('closed_site_consumption', 'power-7', 'plant-1')]
>>> ref = RefData.from_doc({"sites": [{"id": "plant-2", "lon": 120.6, "lat": 31.3, "category": "chemical_plant",
...                                    "licence": "HG-0001", "licence_expiry": "2025-12-31", "meters": "power-9"}]})
>>> engine = SourceEngine(load_sources()["power"], refdata=ref)
>>> out = engine.process([{"entity": "power-9", "ts": 1767225600, "kwh": 10, "kw": 30.0}])   # 1 Jan 2026
>>> [(s.kind, s.evidence["licence_expiry"]) for s in out.signals + engine.flush() if s.model == MODEL]
[('licence_abnormal', '2025-12-31')]
"""

from __future__ import annotations

from datetime import date

import numpy as np
from pydantic import Field

from models.base import BatchContext, Detector, DetectorSettings, Severity, UtcOffsetHours, needs_field
from models.calendar import local_day_hour
from models.signal import Signal
from state.entity_state import EntityState
from state.refdata.reference import RefData
from streams.registry import Source
from streams.validation import Batch

MODEL = "site_status@2"
EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


class SiteStatusSettings(DetectorSettings):
    """The ``[site_status]`` table: use at a site whose registered status says it should have none."""

    field: str = "kw"
    min_use: float = Field(0.5, ge=0, description="readings above this are use")
    statuses: list[str] = Field(default_factory=lambda: ["closed"])
    licensed: list[str] = Field(
        default_factory=lambda: ["chemical_plant"],
        description="site categories that need a valid licence: use at one without is licence_abnormal",
    )
    utc_offset_h: UtcOffsetHours = 8.0
    dedup_s: float = Field(3600.0, gt=0, description="one signal per meter per this period")
    severity: Severity = "major"


class SiteStatus(Detector):
    """Raises ``closed_site_consumption`` or ``licence_abnormal`` at most once per meter and ``dedup_s``."""

    name = "site_status"
    settings_model = SiteStatusSettings

    def __init__(self, source: Source, state: EntityState):
        super().__init__(source, state)
        state.add_lookup("site_status.shut")  # 1.0: the meter's site is shut
        state.add_lookup("site_status.licensed_to")  # the last local day (days since 1970) its site is licensed
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
        shut, unlicensed = np.zeros(len(r), dtype=bool), np.zeros(len(r), dtype=bool)
        shut[using] = state.lookup("site_status.shut", r[using], lambda entity: self._shut(ref, entity)) == 1.0
        until = state.lookup("site_status.licensed_to", r[using], lambda entity: self._licensed_to(ref, entity))
        unlicensed[using] = local_day_hour(ts[using], sp.utc_offset_h)[:, 0] > until
        alerted = state.store["site_status.alerted"]
        signals = []
        for i in np.flatnonzero(shut | unlicensed).tolist():
            row = int(r[i])
            if not ts[i] - alerted[row] < sp.dedup_s:  # NaN (never) compares False: raise
                alerted[row] = ts[i]
                kind = "closed_site_consumption" if shut[i] else "licence_abnormal"
                signals.append(self._signal(ref, batch, int(seq.order[i]), float(ts[i]), float(value[i]), kind))
        return signals

    def _shut(self, ref: RefData, entity: str) -> float:
        site = ref.device_site.get(entity)
        return float(site is not None and site.status in self.settings.statuses)

    def _licensed_to(self, ref: RefData, entity: str) -> float:
        """The last local day its site may operate: none for a licensed trade without a licence (-inf), the
        expiry date, or no end (+inf: not a licensed trade, or no site)."""
        site = ref.device_site.get(entity)
        if site is None or site.category not in self.settings.licensed:
            return np.inf
        if not site.licence:
            return -np.inf
        return float(site.licence_expiry.toordinal() - EPOCH_ORDINAL) if site.licence_expiry else np.inf

    def _signal(self, ref: RefData, batch: Batch, i: int, ts: float, value: float, kind: str) -> Signal:
        entity = batch.entities[i]
        site = ref.device_site[entity]
        return Signal.at(
            source=self.source.name,
            kind=kind,
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
                "licence": site.licence,
                "licence_expiry": site.licence_expiry.isoformat() if site.licence_expiry else None,
            },
        )
