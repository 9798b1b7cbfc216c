"""Sensor health: a reading stuck at one value, a cumulative register running backwards or zeroed, or frozen
while its rate says it is in use (a household water meter whose register stops while water flows).

A source declares which fields to watch in its ``[health]`` table. Stuck: the
same value ``stuck_after`` times in a row (one alert when the run reaches it).
Backwards: a counter (kWh, m³) lower than the reading before it in event time;
zeroed when it falls to 0 - both signs of tampering or a meter swap. Readings
come in event order however they arrived (``models.engine``), so an
out-of-order or repeated reading of a rising register raises nothing.

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
from models.streak import sustained
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
    counter_rates: dict[str, str] = Field(
        default_factory=dict, description="register -> the rate field that says it must advance (total -> flow)"
    )
    frozen_min_rate: float = Field(0.0, ge=0, description="a rate above this is use")
    frozen_after_s: float = Field(3600.0, gt=0, description="a register unchanged this long under use is frozen")
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
    """Raises ``<field>_stuck``, ``<field>_backwards``, ``<field>_zeroed`` and ``<field>_frozen`` for declared
    fields."""

    name = "health"
    settings_model = HealthSettings

    def __init__(self, source: Source, state: EntityState):
        super().__init__(source, state)
        for f in self.settings.stuck_fields:
            state.store.add(f"health.stuck.{f}.value", np.float64, fill=np.nan)
            state.store.add(f"health.stuck.{f}.run", np.int32)
        for f in self.settings.counters:
            state.store.add(f"health.counter.{f}", np.float64, fill=np.nan)
        for f in self.settings.counter_rates:  # the last register value, and when its frozen run began
            for col in ("value", "since", "alerted"):
                state.store.add(f"health.frozen.{f}.{col}", np.float64, fill=np.nan)

    @classmethod
    def check(cls, source: Source, settings: HealthSettings) -> None:
        for name in [*settings.stuck_fields, *settings.counters, *settings.counter_rates.values()]:
            if name not in source.fields or not source.fields[name].numeric:
                raise ValueError(f"no numeric field {name!r}")

    def detect(self, batch: Batch, rows: np.ndarray, state: EntityState, ctx: BatchContext) -> list[Signal]:
        seq = ctx.sequence
        alerts: list[Signal] = []
        for f in self.settings.stuck_fields:
            alerts += self._stuck(f, batch, seq, state)
        for f in self.settings.counters:
            alerts += self._counter(f, batch, seq, state)
        for f, rate in self.settings.counter_rates.items():
            alerts += self._frozen(f, rate, batch, state, ctx)
        return alerts

    def _frozen(self, f: str, rate: str, batch: Batch, state: EntityState, ctx: BatchContext) -> list[Signal]:
        """``<register>_frozen``: the register unchanged from reading to reading for ``frozen_after_s`` while
        its rate field shows use (a reading without either ends the run)."""
        seq, sp = ctx.sequence, self.settings
        values, use, ts = batch.columns[f][seq.order], batch.columns[rate][seq.order], batch.ts[seq.order]
        last, since, alerted = (state.store[f"health.frozen.{f}.{c}"] for c in ("value", "since", "alerted"))
        with np.errstate(invalid="ignore"):
            frozen = (values == seq.previous(values, last)) & (use > sp.frozen_min_rate)
        hits, start = sustained(
            seq, ts, ctx.prior_last_ts[seq.order], frozen, since, alerted, sp.frozen_after_s, sp.frozen_after_s
        )
        last[seq.rows[seq.last]] = values[seq.last]
        return [
            self._signal(
                f"{f}_frozen",
                batch.entities[int(seq.order[i])],
                float(ts[i]),
                {
                    "field": f,
                    "value": float(values[i]),
                    "rate_field": rate,
                    "rate": float(use[i]),
                    "since": float(start[i]),
                    "frozen_s": float(ts[i] - start[i]),
                },
                0.8,
            )
            for i in hits.tolist()
        ]

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
            self._signal(
                f"{f}_stuck",
                batch.entities[int(idx[i])],
                float(batch.ts[idx[i]]),
                {"field": f, "value": float(values[i]), "repeats": int(lengths[i])},
                0.7,
            )
            for i in hit
        ]

    def _counter(self, f: str, batch: Batch, seq: EntitySequence, state: EntityState) -> list[Signal]:
        values, ts = batch.columns[f][seq.order], batch.ts[seq.order]
        keep = ~np.isnan(values)
        if not keep.any():
            return []
        seq, values, ts = seq.subset(keep), values[keep], ts[keep]
        stored = state.store[f"health.counter.{f}"]
        before = seq.previous(values, stored)  # the reading before each one in event time
        with np.errstate(invalid="ignore"):
            fell = values < before
        stored[seq.rows[seq.last]] = values[seq.last]
        return [
            self._counter_alert(f, batch.entities[int(seq.order[i])], float(ts[i]), float(values[i]), float(before[i]))
            for i in np.flatnonzero(fell)
        ]

    def _counter_alert(self, f: str, entity: str, ts: float, value: float, previous: float) -> Signal:
        kind = f"{f}_zeroed" if value == 0 else f"{f}_backwards"
        return self._signal(kind, entity, ts, {"field": f, "value": value, "previous": previous}, 0.9)

    def _signal(self, kind: str, entity: str, ts: float, evidence: dict, score: float) -> Signal:
        return Signal.at(
            source=self.source.name,
            kind=kind,
            entity=entity,
            ts=ts,
            score=score,
            severity=self.settings.severity,
            model=MODEL,
            evidence=evidence,
        )
