"""Use at a closed site: a meter of a site registered closed (or suspended) draws power or water.

Which meter belongs to which site, and the site's status, come from the
reference data; the per-meter answer is cached in a lookup column of the state
(worked out again when a new reference-data version arrives).

>>> from state.refdata import RefData
>>> from streams.registry import load_registry
>>> from models.engine import SourceEngine
>>> ref = RefData.from_doc({"sites": [{"id": "plant-1", "lon": 120.6, "lat": 31.3, "category": "chemical_plant",
...                                    "status": "closed", "meters": "power-7"}]})
>>> engine = SourceEngine(load_registry()["power"], refdata=ref)
>>> out = engine.process([{"entity": "power-7", "ts": 1767225600 + 60 * i, "kwh": 10 + i, "kw": 30.0}
...                       for i in range(3)] + [{"entity": "power-8", "ts": 1767225600, "kwh": 5, "kw": 30.0}])
>>> [(s["kind"], s["entity"], s["evidence"]["site"]) for s in out.signals if s["model"] == MODEL]
[('closed_site_consumption', 'power-7', 'plant-1')]
"""

from __future__ import annotations

import numpy as np

from models.signal import new_signal
from state.entity_state import EntityState
from state.refdata import RefData
from streams.registry import Source
from streams.validation import Batch

MODEL = "site_status@1"


class ClosedSiteUse:
    """Raises ``closed_site_consumption`` at most once per meter and ``dedup_s``."""

    name = "site_status"

    def __init__(self, source: Source, state: EntityState):
        self.source, self.spec = source, source.site_status
        state.add_lookup("site.shut")   # 1.0: the meter's site is shut
        state.store.add("site.alerted", np.float64, fill=np.nan)
        self.ref = RefData.empty()

    def use_refdata(self, ref: RefData) -> None:
        self.ref = ref

    def detect(self, batch: Batch, rows: np.ndarray, state: EntityState) -> list[dict]:
        if not self.ref.sites:
            return []
        seq, sp = state.sequence, self.spec
        ts, value = batch.ts[seq.order], batch.columns[sp.field][seq.order]
        r = seq.rows
        with np.errstate(invalid="ignore"):
            using = value > sp.min_use
        if not using.any():
            return []
        shut = np.zeros(len(r), dtype=bool)
        shut[using] = state.lookup("site.shut", r[using], self._shut) == 1.0
        alerted = state.store["site.alerted"]
        signals = []
        for i in np.flatnonzero(shut).tolist():
            row = int(r[i])
            if not ts[i] - alerted[row] < sp.dedup_s:     # NaN (never) compares False: raise
                alerted[row] = ts[i]
                signals.append(self._signal(batch, int(seq.order[i]), float(ts[i]), float(value[i])))
        return signals

    def _shut(self, entity: str) -> float:
        site = self.ref.device_site.get(entity)
        return float(site is not None and site.status in self.spec.statuses)

    def _signal(self, batch: Batch, i: int, ts: float, value: float) -> dict:
        entity = batch.entities[i]
        site = self.ref.device_site[entity]
        return new_signal(source=self.source.name, kind="closed_site_consumption", entity=entity, ts=ts,
                          window_start=ts, window_s=0.0, score=1.0, severity=self.spec.severity, model=MODEL,
                          evidence={"field": self.spec.field, "value": value, "min_use": self.spec.min_use,
                                    "site": site.id, "site_name": site.name, "status": site.status})
