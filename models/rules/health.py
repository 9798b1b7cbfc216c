"""Sensor health: a reading stuck at one value, and a cumulative register running backwards or zeroed.

A source declares which fields to watch in its ``[health]`` table. Stuck: the
same value ``stuck_after`` times in a row (one alert when the run reaches it).
Backwards: a counter (kWh, m³) lower than the entity's previous reading; zeroed
when it falls to 0 - both signs of tampering or a meter swap.

>>> import numpy as np
>>> runs(np.array([0, 0, 0, 1, 1]), np.array([5.0, 5.0, 6.0, 2.0, 2.0]),
...      prev=np.array([5.0, 9.0]), prev_run=np.array([3, 0])).tolist()
[4, 5, 0, 0, 1]
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from models.base import BatchContext, Detector, DetectorSettings, Severity
from models.signal import Signal
from state.entity_state import EntityState
from state.sequence import EntitySequence
from streams.registry import Source
from streams.validation import Batch

MODEL = "sensor_health@1"


class HealthSettings(DetectorSettings):
    """The ``[health]`` table: fields that must not repeat, registers that must not fall."""

    stuck_fields: list[str] = Field(default_factory=list)
    stuck_after: int = Field(20, ge=2, description="readings equal to the one before, in a row")
    stuck_ignore_zero: bool = Field(True, description="a run of zeros is not a stuck sensor")
    counters: list[str] = Field(default_factory=list, description="cumulative registers (kWh, m³)")
    severity: Severity = "warning"


def runs(group: np.ndarray, values: np.ndarray, prev: np.ndarray, prev_run: np.ndarray) -> np.ndarray:
    """Length of the run of equal values ending at each record (records sorted by group).

    ``prev``/``prev_run``: each group's stored last value and run, indexed by group id.
    """
    if len(values) == 0:
        return np.zeros(0, dtype=np.int64)
    seq = EntitySequence.of_sorted(group)
    same = values == seq.previous(values, prev)
    start, reset = seq.run_start(~same)
    idx = np.arange(len(values))
    carried = prev_run[group] + (idx - start + 1)  # no break since the group began
    return np.where(reset >= start, idx - reset, carried).astype(np.int64)


class Health(Detector):
    """Raises ``<field>_stuck``, ``<field>_backwards`` and ``<field>_zeroed`` for declared fields."""

    name = "health"
    settings_model = HealthSettings

    def __init__(self, source: Source, state: EntityState):
        super().__init__(source, state)
        for f in self.settings.stuck_fields:
            state.store.add(f"health.stuck.{f}.value", np.float64, fill=np.nan)
            state.store.add(f"health.stuck.{f}.run", np.int32)
        for f in self.settings.counters:
            state.store.add(f"health.counter.{f}", np.float64, fill=np.nan)

    @classmethod
    def check(cls, source: Source, settings: HealthSettings) -> None:
        for name in [*settings.stuck_fields, *settings.counters]:
            if name not in source.fields or not source.fields[name].numeric:
                raise ValueError(f"no numeric field {name!r}")

    def detect(self, batch: Batch, rows: np.ndarray, state: EntityState, ctx: BatchContext) -> list[Signal]:
        seq = ctx.sequence
        alerts: list[Signal] = []
        for f in self.settings.stuck_fields:
            alerts += self._stuck(f, batch, seq, state)
        for f in self.settings.counters:
            alerts += self._counter(f, batch, seq, state)
        return alerts

    def _stuck(self, f: str, batch: Batch, seq: EntitySequence, state: EntityState) -> list[Signal]:
        values = batch.columns[f][seq.order]
        keep = ~np.isnan(values)
        if not keep.any():
            return []
        seq, values = seq.subset(keep), values[keep]
        r, idx = seq.rows, seq.order
        last, run = state.store[f"health.stuck.{f}.value"], state.store[f"health.stuck.{f}.run"]
        lengths = runs(r, values, last, run.astype(np.int64))
        watch = values != 0 if self.settings.stuck_ignore_zero else np.ones(len(values), dtype=bool)
        hit = np.flatnonzero((lengths == self.settings.stuck_after) & watch)
        tail = seq.last
        last[r[tail]] = values[tail]
        run[r[tail]] = np.minimum(lengths[tail], np.iinfo(np.int32).max)
        return [
            self._alert(
                f"{f}_stuck",
                batch,
                int(idx[i]),
                {"field": f, "value": float(values[i]), "repeats": int(lengths[i])},
                0.7,
            )
            for i in hit
        ]

    def _counter(self, f: str, batch: Batch, seq: EntitySequence, state: EntityState) -> list[Signal]:
        values = batch.columns[f][seq.order]
        stored = state.store[f"health.counter.{f}"]
        before = seq.previous(values, stored)
        with np.errstate(invalid="ignore"):
            fell = values < before
        alerts = []
        for i in np.flatnonzero(fell):
            kind = f"{f}_zeroed" if values[i] == 0 else f"{f}_backwards"
            alerts.append(
                self._alert(
                    kind,
                    batch,
                    int(seq.order[i]),
                    {"field": f, "value": float(values[i]), "previous": float(before[i])},
                    0.9,
                )
            )
        ok = seq.last & ~np.isnan(values)
        stored[seq.rows[ok]] = values[ok]
        return alerts

    def _alert(self, kind: str, batch: Batch, i: int, evidence: dict, score: float) -> Signal:
        ts = float(batch.ts[i])
        return Signal.new(
            source=self.source.name,
            kind=kind,
            entity=batch.entities[i],
            ts=ts,
            window_start=ts,
            window_s=0.0,
            score=score,
            severity=self.settings.severity,
            model=MODEL,
            evidence=evidence,
        )
