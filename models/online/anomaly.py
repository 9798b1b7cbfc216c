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

In formulas, per record x at time of day k, with EW(alpha) means m and
variances v, d = x - previous x, and f = ``scale_floor`` x (range seen):

    z_level = |x - m| / (sqrt(v) + f),  z_k = |x - m_k - bias| / (sqrt(v_k) + f)
    z_step  = min(|d - m_d| / (sqrt(v_d) + f), |d - m_dk| / (sqrt(v_dk) + f))
    s       = min(max((z_level + z_k) / 2, z_step), max_surprise)
    L       = Phi((EW_short(s) - mean_long(s)) / (sd_long(s) / sqrt(short_window)))

and a signal when L >= ``threshold`` (after ``warmup`` records, at most once per
``refractory`` records, unless the last ``shape_length`` records match a shape
remembered near this time of day).

Parameters (the ``[anomaly]`` table, :class:`AnomalySettings`): ``level_alpha``,
``step_alpha``, ``daily_slots``, ``slot_alpha``, ``slot_warmup``, ``bias_alpha``
(the models); ``short_window``, ``long_window``, ``max_surprise``, ``threshold``,
``warmup``, ``refractory`` (the likelihood and alerting); ``beyond_range``,
``beyond_z``; ``shape_memory``, ``shape_length``, ``shape_tolerance``,
``shape_phase_s``. Signals: ``<field>_anomaly`` with the value, the expected
level and the likelihood.

>>> import numpy as np
>>> det, rng = AnomalyState(AnomalySettings()), np.random.default_rng(0)
>>> ts = 1767225600 + 300 * np.arange(2001)
>>> quiet = [det.learn_score(10.0 + np.sin(i / 5) + rng.normal(0, 0.2), ts[i]) for i in range(2000)]
>>> spike = det.learn_score(14.0, ts[2000])
>>> max(quiet[300:]) < AnomalySettings().threshold <= spike
True

References: S. Ahmad, A. Lavin, S. Purdy, Z. Agha, "Unsupervised real-time
anomaly detection for streaming data", Neurocomputing 262 (2017) 134-147 (the
anomaly likelihood: a short mean of the raw score against its long-run normal
distribution); C. C. Holt (1957) / P. R. Winters (1960), exponentially
weighted level and seasonal terms.
"""

from __future__ import annotations

import math
import operator

import numpy as np
from pydantic import Field, model_validator

from models.base import BatchContext, Detector, DetectorSettings, Severity
from models.online.shape_memory import ShapeMemory
from models.signal import Signal
from state.entity_state import EntityState
from streams.registry import Source
from streams.validation import Batch

MODEL = "anomaly@4"
# Per entity, field and time of day, in this order (float32), and how often the slot was learned (uint8).
SLOT_STATS = ("mean", "var", "dmean", "dvar")
_SQRT2 = math.sqrt(2.0)


class AnomalySettings(DetectorSettings):
    """The ``[anomaly]`` table: one configuration for every stream."""

    level_alpha: float = Field(0.005, gt=0, lt=1, description="EW weight of the level model")
    step_alpha: float = Field(0.15, gt=0, lt=1, description="EW weight of the step (difference) model")
    scale_floor: float = Field(0.01, ge=0, description="z-score floor as a share of the range seen")
    max_surprise: float = Field(50.0, gt=0)
    short_window: int = Field(15, ge=1, description="records in the recent-surprise mean")
    long_window: int = Field(2000, ge=10, description="records in the surprise's long-run distribution")
    warmup: int = Field(100, ge=1, description="records learned before any alert")
    threshold: float = Field(0.999995, gt=0.5, lt=1, description="likelihood that raises an alert")
    refractory: int = Field(120, ge=0, description="records after an alert before the next")
    daily_slots: int = Field(
        24,
        ge=0,
        le=288,
        description="times of day with their own level and step models "
        "(0: none; each costs 17 bytes per entity and field)",
    )
    slot_alpha: float = Field(0.05, gt=0, lt=1, description="EW weight of a time of day's models")
    slot_warmup: int = Field(6, ge=2, le=255, description="records a time of day has learned before its models count")
    bias_alpha: float = Field(
        0.005,
        gt=0,
        lt=1,
        description="EW weight of the offset between the level and the "
        "time of day's mean (how fast a lasting level shift is absorbed)",
    )
    beyond_range: float = Field(
        0.03,
        ge=0,
        description="a value this share of the range seen beyond it is anomalous whatever its likelihood (0: off) ...",
    )
    beyond_z: float = Field(
        3.0,
        ge=0,
        description="... if it is also this many deviations from what is expected "
        "there (a clean cycle's noise setting a new extreme is not)",
    )
    shape_memory: int = Field(
        2048,
        ge=0,
        description="records remembered per entity and field, to recognise a "
        "shape seen before at this time of day (0: off; each costs 8 bytes per entity and field)",
    )
    shape_length: int = Field(24, ge=2, description="records in a shape: the recent run compared with the memory")
    shape_tolerance: float = Field(
        0.09,
        ge=0,
        description="a remembered shape matches when no record of it is "
        "further than this share of the range seen from the recent run's",
    )
    shape_phase_s: float = Field(
        3600.0, ge=0, le=43200, description="how far apart in time of day a remembered shape may end"
    )
    severity: Severity = "warning"

    @model_validator(mode="after")
    def _check(self) -> AnomalySettings:
        if 0 < self.shape_memory < 2 * self.shape_length:
            raise ValueError(f"shape_memory must be 0 (off) or at least twice shape_length ({2 * self.shape_length})")
        return self


class AnomalyState:
    """The detector's state for one entity and field; ``learn_score`` scores a value and learns it."""

    # Per entity and field, one float64 column each: records learned, level mean/variance, previous value,
    # step mean/variance, range seen, the surprise's long-run mean/variance and short mean, the time-of-day
    # offset, and the record count at the last alert.
    COLUMNS = (
        "n",
        "mean",
        "var",
        "prev",
        "dmean",
        "dvar",
        "lo",
        "hi",
        "s_mean",
        "s_var",
        "s_short",
        "bias",
        "last_alert",
    )
    __slots__ = ("spec", "slots", "seen", "memory", *COLUMNS)

    def __init__(
        self,
        spec: AnomalySettings,
        values: list[float] | None = None,
        slots: list[float] | None = None,
        seen: list[int] | None = None,
        memory: tuple[np.ndarray, np.ndarray] | None = None,
    ):
        self.spec = spec
        # ``memory``: the entity's rows of the shape-memory columns (values, times of day), learned in place
        self.memory = (
            ShapeMemory(spec.shape_memory, spec.shape_length, spec.shape_phase_s, *(memory or ()))
            if spec.shape_memory
            else None
        )
        # one unpacking, not a setattr per column: a state is built per entity and batch
        (
            self.n,
            self.mean,
            self.var,
            self.prev,
            self.dmean,
            self.dvar,
            self.lo,
            self.hi,
            self.s_mean,
            self.s_var,
            self.s_short,
            self.bias,
            self.last_alert,
        ) = values if values is not None else self.fresh()
        self.slots = slots if slots is not None else [0.0] * (spec.daily_slots * len(SLOT_STATS))
        self.seen = seen if seen is not None else [0] * spec.daily_slots

    @classmethod
    def fresh(cls) -> list[float]:
        """The :attr:`COLUMNS` of an entity not seen yet."""
        return [0.0] * (len(cls.COLUMNS) - 1) + [-1e18]

    def values(self) -> tuple[float, ...]:
        """The :attr:`COLUMNS`, in order, as stored."""
        return _columns_of(self)

    def learn_score(self, x: float, ts: float = 0.0) -> float:
        """Likelihood in [0, 1] that ``x`` (at event time ``ts``) starts something unusual; then learn ``x``."""
        n, mean, var, prev, lo0, hi0 = self.n, self.mean, self.var, self.prev, self.lo, self.hi
        sp = self.spec
        if n == 0:
            mean, prev, lo0, hi0 = x, x, x, x
        lo, hi = min(lo0, x), max(hi0, x)
        floor = sp.scale_floor * max(hi - lo, 1e-9)
        d = x - prev
        z = abs(x - mean) / (math.sqrt(var) + floor)
        zd = abs(d - self.dmean) / (math.sqrt(self.dvar) + floor)
        near = z  # how far x is from what is expected where it lands, for beyond_range
        k = int(ts % 86400.0 * sp.daily_slots // 86400.0) if sp.daily_slots else -1
        at = 4 * k
        slot = self.slots
        if k >= 0 and self.seen[k] >= sp.slot_warmup:
            # EW variances start from zero: unbias them by the weight learned so far
            unbias = 1.0 / (1.0 - (1.0 - sp.slot_alpha) ** (self.seen[k] - 1))
            z_slot = abs(x - slot[at] - self.bias) / (math.sqrt(slot[at + 1] * unbias) + floor)
            near = min(z, z_slot)
            z = 0.5 * (z + z_slot)  # neither model alone: early slots are noisy, all-day ones blind to the hour
            zd = min(zd, abs(d - slot[at + 2]) / (math.sqrt(slot[at + 3] * unbias) + floor))
            self.bias += sp.bias_alpha * (x - slot[at] - self.bias)
        raw = min(max(z, zd), sp.max_surprise)
        s_short = self.s_short = raw if n == 0 else self.s_short + (2.0 / (sp.short_window + 1)) * (raw - self.s_short)
        likelihood = 0.5
        if n >= sp.warmup:
            spread = math.sqrt(max(self.s_var, 1e-12)) / math.sqrt(sp.short_window)
            likelihood = 0.5 * math.erfc(-(s_short - self.s_mean) / spread / _SQRT2)
            reach = sp.beyond_range * (hi0 - lo0)
            if sp.beyond_range and near >= sp.beyond_z and (x > hi0 + reach or x < lo0 - reach):
                likelihood = max(likelihood, sp.threshold)
        a_long = 1.0 / sp.long_window
        if n == 0:
            self.s_mean = raw
        else:
            delta = raw - self.s_mean
            self.s_mean += a_long * delta
            self.s_var = (1 - a_long) * (self.s_var + a_long * delta * delta)
        self.mean, self.var = _ew(mean, var, x, sp.level_alpha)
        self.dmean, self.dvar = _ew(self.dmean, self.dvar, d, sp.step_alpha)
        if k >= 0:
            if self.seen[k] == 0:
                slot[at], slot[at + 2] = x, d
            else:
                slot[at], slot[at + 1] = _ew(slot[at], slot[at + 1], x, sp.slot_alpha)
                slot[at + 2], slot[at + 3] = _ew(slot[at + 2], slot[at + 3], d, sp.slot_alpha)
            self.seen[k] = min(self.seen[k] + 1, 255)
        if self.memory is not None:
            self.memory.learn_one(int(n), x, ts)
        self.n, self.prev, self.lo, self.hi = n + 1, x, lo, hi
        return likelihood

    def should_alert(self, likelihood: float) -> bool:
        """Past the threshold, outside the refractory run after the last alert, and not a shape seen before."""
        sp, n = self.spec, self.n
        if likelihood < sp.threshold or n - self.last_alert <= sp.refractory:
            return False
        if self.memory is not None and self.memory.seen_before(
            int(n), sp.shape_tolerance * max(self.hi - self.lo, 1e-12)
        ):
            return False
        self.last_alert = n
        return True


_columns_of = operator.attrgetter(*AnomalyState.COLUMNS)


def _ew(mean: float, var: float, x: float, alpha: float) -> tuple[float, float]:
    """One exponentially weighted update of a mean and variance."""
    delta = x - mean
    return mean + alpha * delta, (1 - alpha) * (var + alpha * delta * delta)


class Anomaly(Detector):
    """Flags unusual values of every field a source marks ``anomaly = true``."""

    name = "anomaly"
    settings_model = AnomalySettings

    def __init__(self, source: Source, state: EntityState):
        super().__init__(source, state)
        self.fields = [n for n, f in source.fields.items() if f.anomaly]
        for name in self.fields:
            for col, start in zip(AnomalyState.COLUMNS, AnomalyState.fresh()):
                state.store.add(f"anomaly.{name}.{col}", np.float64, fill=start)
            if self.settings.daily_slots:
                state.store.add(f"anomaly.{name}.slots", np.float32, (self.settings.daily_slots * len(SLOT_STATS),))
                state.store.add(f"anomaly.{name}.seen", np.uint8, (self.settings.daily_slots,))
            for col in ("memory", "memory_tod") if self.settings.shape_memory else ():
                state.store.add(f"anomaly.{name}.{col}", np.float32, (self.settings.shape_memory,))

    @classmethod
    def check(cls, source: Source, settings: AnomalySettings) -> None:
        if not any(f.anomaly for f in source.fields.values()):
            raise ValueError("the anomaly detector needs a field marked anomaly = true")

    def detect(self, batch: Batch, rows: np.ndarray, state: EntityState, ctx: BatchContext) -> list[Signal]:
        """Score and learn every record in event order (each entity's records of the batch by time); alerts for
        the ones that pass."""
        alerts = []
        sp = self.settings
        daily = sp.daily_slots > 0
        for name in self.fields:
            cols = [state.store[f"anomaly.{name}.{c}"] for c in AnomalyState.COLUMNS]
            slots, seen = (state.store[f"anomaly.{name}.{c}"] for c in ("slots", "seen")) if daily else (None, None)
            memory, tod = (
                (state.store[f"anomaly.{name}.{c}"] for c in ("memory", "memory_tod"))
                if sp.shape_memory
                else (None, None)
            )
            values = batch.columns[name]
            live: dict[int, AnomalyState] = {}
            order = ctx.sequence.order
            for i in order[~np.isnan(values[order])].tolist():
                row = int(rows[i])
                det = live.get(row)
                if det is None:
                    det = live[row] = AnomalyState(
                        sp,
                        [float(c[row]) for c in cols],
                        slots[row].tolist() if daily else None,
                        seen[row].tolist() if daily else None,
                        (memory[row], tod[row]) if memory is not None else None,
                    )
                expected = det.mean
                x = float(values[i])
                likelihood = det.learn_score(x, float(batch.ts[i]))
                if det.should_alert(likelihood):
                    ts = float(batch.ts[i])
                    alerts.append(
                        Signal.at(
                            source=self.source.name,
                            kind=f"{name}_anomaly",
                            entity=batch.entities[i],
                            ts=ts,
                            score=likelihood,
                            severity=self.settings.severity,
                            model=MODEL,
                            evidence={
                                "field": name,
                                "value": x,
                                "expected": round(expected, 6),
                                "likelihood": likelihood,
                            },
                        )
                    )
            for row, det in live.items():
                for c, value in zip(cols, det.values()):
                    c[row] = value
                if daily:
                    slots[row], seen[row] = det.slots, det.seen
        return alerts
