"""Generic online anomaly detection for any numeric field, with its own threshold.

Per entity and field, exponentially weighted models learn from the first
record: the level (slow mean/variance), the step (mean/variance of the first
difference), and the same two per time of day (``daily_slots``, once a slot
has ``slot_warmup`` records), so a daily cycle is learned as normal. Against a
time of day, the level is read as the slot's mean plus a slowly learned offset
(``bias_alpha``), Holt-Winters style: a day that breaks the cycle stands out,
and a lasting level shift is absorbed instead of raising an alert at every
hour. The level z-score is the mean of the all-day and the time-of-day one,
the step z-score the smaller; a record's raw surprise is the larger of the
two.
An anomaly *likelihood* turns that into a calibrated number: how unusual the
recent surprise (a short EW mean) is against the surprise's own long-run EW
distribution. An alert is raised when the likelihood passes a fixed, high
threshold, or when a value lands beyond the whole range seen so far and is
unusual where it lands (``beyond_range``, ``beyond_z``), at most once per
refractory run of records, so no per-stream tuning is needed. Last, a sequence
memory (:class:`~models.online.shape_memory.ShapeMemory`, ``shape_*``) keeps
quiet about a run of records whose shape the entity has shown before at this
time of day: a routine the hourly statistics cannot hold (a nightly job's
spike) is not news.

>>> import numpy as np
>>> det, rng = AnomalyState(AnomalySpec()), np.random.default_rng(0)
>>> ts = 1767225600 + 300 * np.arange(2001)
>>> quiet = [det.learn_score(10.0 + np.sin(i / 5) + rng.normal(0, 0.2), ts[i]) for i in range(2000)]
>>> spike = det.learn_score(14.0, ts[2000])
>>> max(quiet[300:]) < AnomalySpec().threshold <= spike
True
"""

from __future__ import annotations

import math

import numpy as np

from models.online.shape_memory import ShapeMemory
from models.signal import new_signal
from state.entity_state import EntityState
from streams.registry import AnomalySpec, Source
from streams.validation import Batch

MODEL = "anomaly@4"
# Per entity and field, in this order (one float64 column each).
COLUMNS = ("n", "mean", "var", "prev", "dmean", "dvar", "lo", "hi", "s_mean", "s_var", "s_short", "bias", "last_alert")
# Per entity, field and time of day, in this order (float32), and how often the slot was learned (uint8).
SLOT_STATS = ("mean", "var", "dmean", "dvar")
_LO, _HI = COLUMNS.index("lo"), COLUMNS.index("hi")
_SQRT2 = math.sqrt(2.0)


class AnomalyState:
    """The detector's state for one entity and field; ``learn_one`` and score in one step."""

    __slots__ = ("spec", "v", "slots", "seen", "memory")

    def __init__(self, spec: AnomalySpec, values: list[float] | None = None,
                 slots: list[float] | None = None, seen: list[int] | None = None,
                 memory: tuple[np.ndarray, np.ndarray] | None = None):
        self.spec = spec
        # ``memory``: the entity's rows of the shape-memory columns (values, times of day), learned in place
        self.memory = ShapeMemory(spec.shape_memory, spec.shape_length, spec.shape_phase_s, *(memory or ())) \
            if spec.shape_memory else None
        self.v = values if values is not None else [0.0] * len(COLUMNS)
        if values is None:
            self.v[COLUMNS.index("last_alert")] = -1e18
        self.slots = slots if slots is not None else [0.0] * (spec.daily_slots * len(SLOT_STATS))
        self.seen = seen if seen is not None else [0] * spec.daily_slots

    def learn_score(self, x: float, ts: float = 0.0) -> float:
        """Likelihood in [0, 1] that ``x`` (at event time ``ts``) starts something unusual; then learn ``x``."""
        n, mean, var, prev, dmean, dvar, lo0, hi0, s_mean, s_var, s_short, bias, last = self.v
        sp = self.spec
        if n == 0:
            mean, prev, lo0, hi0 = x, x, x, x
        lo, hi = min(lo0, x), max(hi0, x)
        floor = sp.scale_floor * max(hi - lo, 1e-9)
        d = x - prev
        z = abs(x - mean) / (math.sqrt(var) + floor)
        zd = abs(d - dmean) / (math.sqrt(dvar) + floor)
        near = z      # how far x is from what is expected where it lands, for beyond_range
        k = int(ts % 86400.0 * sp.daily_slots // 86400.0) if sp.daily_slots else -1
        at = 4 * k
        slot = self.slots
        if k >= 0 and self.seen[k] >= sp.slot_warmup:
            # EW variances start from zero: unbias them by the weight learned so far
            unbias = 1.0 / (1.0 - (1.0 - sp.slot_alpha) ** (self.seen[k] - 1))
            z_slot = abs(x - slot[at] - bias) / (math.sqrt(slot[at + 1] * unbias) + floor)
            near = min(z, z_slot)
            z = 0.5 * (z + z_slot)   # neither model alone: early slots are noisy, all-day ones blind to the hour
            zd = min(zd, abs(d - slot[at + 2]) / (math.sqrt(slot[at + 3] * unbias) + floor))
            bias += sp.bias_alpha * (x - slot[at] - bias)
        raw = min(max(z, zd), sp.max_surprise)
        s_short = raw if n == 0 else s_short + (2.0 / (sp.short_window + 1)) * (raw - s_short)
        likelihood = 0.5
        if n >= sp.warmup:
            spread = math.sqrt(max(s_var, 1e-12)) / math.sqrt(sp.short_window)
            likelihood = 0.5 * math.erfc(-(s_short - s_mean) / spread / _SQRT2)
            reach = sp.beyond_range * (hi0 - lo0)
            if sp.beyond_range and near >= sp.beyond_z and (x > hi0 + reach or x < lo0 - reach):
                likelihood = max(likelihood, sp.threshold)
        a_long = 1.0 / sp.long_window
        if n == 0:
            s_mean = raw
        else:
            delta = raw - s_mean
            s_mean += a_long * delta
            s_var = (1 - a_long) * (s_var + a_long * delta * delta)
        mean, var = _ew(mean, var, x, sp.level_alpha)
        dmean, dvar = _ew(dmean, dvar, d, sp.step_alpha)
        if k >= 0:
            if self.seen[k] == 0:
                slot[at], slot[at + 2] = x, d
            else:
                slot[at], slot[at + 1] = _ew(slot[at], slot[at + 1], x, sp.slot_alpha)
                slot[at + 2], slot[at + 3] = _ew(slot[at + 2], slot[at + 3], d, sp.slot_alpha)
            self.seen[k] = min(self.seen[k] + 1, 255)
        if self.memory is not None:
            self.memory.learn_one(int(n), x, ts)
        self.v = [n + 1, mean, var, x, dmean, dvar, lo, hi, s_mean, s_var, s_short, bias, last]
        return likelihood

    def should_alert(self, likelihood: float) -> bool:
        """Past the threshold, outside the refractory run after the last alert, and not a shape seen before."""
        sp, (n, last) = self.spec, (self.v[0], self.v[-1])
        if likelihood < sp.threshold or n - last <= sp.refractory:
            return False
        if self.memory is not None:
            seen_range = self.v[_HI] - self.v[_LO]
            if self.memory.seen_before(int(n), sp.shape_tolerance * max(seen_range, 1e-12)):
                return False
        self.v[-1] = n
        return True


def _ew(mean: float, var: float, x: float, alpha: float) -> tuple[float, float]:
    """One exponentially weighted update of a mean and variance."""
    delta = x - mean
    return mean + alpha * delta, (1 - alpha) * (var + alpha * delta * delta)


class AnomalyDetector:
    """Flags unusual values of every field a source marks ``anomaly = true``."""

    name = "anomaly"

    def __init__(self, source: Source, state: EntityState):
        self.source, self.spec = source, source.anomaly
        self.fields = [n for n, f in source.fields.items() if f.anomaly]
        fresh = AnomalyState(self.spec).v
        for name in self.fields:
            for col, start in zip(COLUMNS, fresh):
                state.store.add(f"anomaly.{name}.{col}", np.float64, fill=start)
            if self.spec.daily_slots:
                state.store.add(f"anomaly.{name}.slots", np.float32, (self.spec.daily_slots * len(SLOT_STATS),))
                state.store.add(f"anomaly.{name}.seen", np.uint8, (self.spec.daily_slots,))
            for col in ("memory", "memory_tod") if self.spec.shape_memory else ():
                state.store.add(f"anomaly.{name}.{col}", np.float32, (self.spec.shape_memory,))

    def detect(self, batch: Batch, rows: np.ndarray, state: EntityState) -> list[dict]:
        """Score and learn every record in order; alerts for the ones that pass."""
        alerts = []
        sp = self.spec
        daily = sp.daily_slots > 0
        for name in self.fields:
            cols = [state.store[f"anomaly.{name}.{c}"] for c in COLUMNS]
            slots, seen = (state.store[f"anomaly.{name}.{c}"] for c in ("slots", "seen")) if daily else (None, None)
            memory, tod = (state.store[f"anomaly.{name}.{c}"] for c in ("memory", "memory_tod")) \
                if sp.shape_memory else (None, None)
            values = batch.columns[name]
            live: dict[int, AnomalyState] = {}
            for i in np.flatnonzero(~np.isnan(values)).tolist():
                row = int(rows[i])
                det = live.get(row)
                if det is None:
                    det = live[row] = AnomalyState(
                        sp, [float(c[row]) for c in cols], slots[row].tolist() if daily else None,
                        seen[row].tolist() if daily else None, (memory[row], tod[row]) if memory is not None else None)
                expected = det.v[1]
                x = float(values[i])
                likelihood = det.learn_score(x, float(batch.ts[i]))
                if det.should_alert(likelihood):
                    ts = float(batch.ts[i])
                    alerts.append(new_signal(
                        source=self.source.name, kind=f"{name}_anomaly", entity=batch.entities[i], ts=ts,
                        window_start=ts, window_s=0.0, score=likelihood, severity=self.spec.severity,
                        model=MODEL, evidence={"field": name, "value": x, "expected": round(expected, 6),
                                               "likelihood": likelihood}))
            for row, det in live.items():
                for c, value in zip(cols, det.v):
                    c[row] = value
                if daily:
                    slots[row], seen[row] = det.slots, det.seen
        return alerts
