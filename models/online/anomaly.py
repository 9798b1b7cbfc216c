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
>>> likelihood, alert = det.learn_score(14.0, ts[2000])
>>> max(q for q, _ in quiet[300:]) < AnomalySettings().threshold <= likelihood, alert
(True, True)

References: S. Ahmad, A. Lavin, S. Purdy, Z. Agha, "Unsupervised real-time
anomaly detection for streaming data", Neurocomputing 262 (2017) 134-147 (the
anomaly likelihood: a short mean of the raw score against its long-run normal
distribution); C. C. Holt (1957) / P. R. Winters (1960), exponentially
weighted level and seasonal terms.
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import Field, model_validator

from models.base import BatchContext, Detector, DetectorSettings, Severity
from models.online.shape_memory import remember, seen_before
from models.signal import Signal
from state.compiled import njit
from state.entity_state import EntityState
from state.sequence import EntitySequence
from streams.registry import Source
from streams.validation import Batch

MODEL = "anomaly@5"
# Numba checks its cache of the compiled loop against this file only, not against the shape memory's functions
# compiled into it: this digest of models/online/shape_memory.py changes with it (tests/test_anomaly.py).
SHAPE_MEMORY_SHA256 = "95378baae03386d6"
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
        "(0: none; each costs 17 bytes per entity and field, held from the entity's first record at that time, "
        "in blocks of four)",
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
        if self.shape_memory % BLOCK:
            raise ValueError(f"shape_memory must be a multiple of {BLOCK} (the memory is held in blocks of {BLOCK})")
        return self


PARAMS = (
    "level_alpha",
    "step_alpha",
    "scale_floor",
    "max_surprise",
    "short_window",
    "long_window",
    "warmup",
    "threshold",
    "refractory",
    "daily_slots",
    "slot_alpha",
    "slot_warmup",
    "bias_alpha",
    "beyond_range",
    "beyond_z",
    "shape_length",
    "shape_tolerance",
    "shape_phase_s",
)
# Per entity and field, one float64 column each: records learned, level mean/variance, previous value, step
# mean/variance, range seen, the surprise's long-run mean/variance and short mean, the time-of-day offset, and
# the record count at the last alert.
COLUMNS = ("n", "mean", "var", "prev", "dmean", "dvar", "lo", "hi", "s_mean", "s_var", "s_short", "bias", "last_alert")
FRESH = (0.0,) * (len(COLUMNS) - 1) + (-1e18,)  # the COLUMNS of an entity not seen yet


def array_columns(spec: AnomalySettings) -> dict[str, tuple[type, int]]:
    """Per entity and field, the array columns besides :data:`COLUMNS`, in the compiled loop's order: dtype and
    width (0: switched off, not stored; the loop gets a zero-width stand-in)."""
    return {"memory_scale": (np.float64, 2 if spec.shape_memory else 0)}  # the shape memory's codes' scale


# The time-of-day models are held in blocks of DAILY_BLOCK times of day, a pool per field named
# "anomaly.<field>.daily", given as an entity first reports at those times: the SLOT_STATS (float32) and how often
# each time was learned ("seen", uint8). An entity that has reported for an hour holds one block, not the day's.
DAILY_BLOCK = 4
DAILY_COLUMNS = {**dict.fromkeys(SLOT_STATS, np.float32), "seen": np.uint8}


def daily_blocks(spec: AnomalySettings) -> int:
    """Blocks of an entity's day of time-of-day models."""
    return -(-spec.daily_slots // DAILY_BLOCK)


# The shape memory (models/online/shape_memory.py) is held in blocks of BLOCK records (state/blocks.py), a pool
# per field named "anomaly.<field>.memory": value codes and times of day. Which block holds each stretch of an
# entity's ring: the first in the column "anomaly.<field>.memory.first", the others in a table of the ring's blocks
# from the pool "anomaly.<field>.memory.tables" (its row in "anomaly.<field>.memory.table"), given with the
# entity's second block: most entities of a city never fill one block, and hold 8 bytes of table, not 128.
BLOCK = 64
POOL_COLUMNS = {"codes": np.uint8, "tod": np.uint16}


def params_of(spec: AnomalySettings) -> np.ndarray:
    """The settings the compiled loop reads, in :data:`PARAMS` order."""
    return np.array([float(getattr(spec, name)) for name in PARAMS])


# learn_score_runs' arguments, as the built loop takes them (state/compiled.py)
LOOP_ARGS = (
    "i8[:]", "i8[:]", "f8[:]", "f8[:]", f"f8[:]*{len(COLUMNS)}", "i4[:,:]", f"f4[:,:]*{len(SLOT_STATS)}", "u1[:,:]",
    "f8[:,:]", "i4[:]", "i4[:]", "i4[:,:]", "u1[:,:]", "u2[:,:]", "f8[:]", "f8[:]", "b1[:]", "f8[:]",
)  # fmt: skip


@njit(export=LOOP_ARGS, cache=True, nogil=True)
def learn_score_runs(
    positions, rows, xs, ts, stats, daily, slots, seen, scale, first, table, tables, codes, tod, p, likelihood,
    alert, expected,
):  # fmt: skip
    """Score and learn the records at ``positions`` (grouped by entity, each entity's in event order): for each,
    the likelihood, whether it alerts and the level expected before it, written at its position.

    ``rows``: each record's entity row in ``stats`` (a tuple of the :data:`COLUMNS`, float64); ``daily``: each
    entity's blocks of time-of-day models (those its records will learn given), ``slots`` a tuple of their
    :data:`SLOT_STATS` columns (float32) and ``seen`` their uint8 column (how often each time of day was learned);
    ``scale``: each entity's shape-memory codes' scale; ``first``/``table``/``tables``: its blocks (see
    :data:`BLOCK`; those its records will write given); ``codes``/``tod``: the pool of blocks (value codes and
    times of day);
    ``p``: :func:`params_of`. An entity's time-of-day
    models are worked in float64 while its records of the call are learned, and stored in float32 after.
    """
    level_alpha, step_alpha, scale_floor, max_surprise = p[0], p[1], p[2], p[3]
    short_window, long_window, warmup, threshold, refractory = p[4], p[5], p[6], p[7], p[8]
    daily_slots, slot_alpha, slot_warmup, bias_alpha = p[9], p[10], p[11], p[12]
    beyond_range, beyond_z, shape_length, shape_tolerance, shape_phase_s = p[13], p[14], int(p[15]), p[16], p[17]
    n_slots, remembers = int(daily_slots), tables.shape[1] > 0
    one = np.full(tables.shape[1], -1, np.int32)  # the table of an entity that holds one block
    width = daily.shape[1] * DAILY_BLOCK  # times of day an entity's blocks hold
    slot, times = np.empty(4 * width), np.empty(width, np.int64)
    a_short, a_long = 2.0 / (short_window + 1), 1.0 / long_window
    j, total = 0, len(positions)
    while j < total:
        row = rows[positions[j]]
        n, mean, var, prev = stats[0][row], stats[1][row], stats[2][row], stats[3][row]
        dmean, dvar, lo, hi = stats[4][row], stats[5][row], stats[6][row], stats[7][row]
        s_mean, s_var, s_short = stats[8][row], stats[9][row], stats[10][row]
        bias, last_alert = stats[11][row], stats[12][row]
        ring = one
        if remembers:
            if table[row] >= 0:
                ring = tables[table[row]]
            else:
                one[0] = first[row]
        for g in range(daily.shape[1]):
            block = daily[row, g]
            for h in range(DAILY_BLOCK):
                s = g * DAILY_BLOCK + h  # the time of day
                times[s] = seen[block, h] if block >= 0 else 0
                for q in range(4):
                    slot[4 * s + q] = slots[q][block, h] if block >= 0 else 0.0
        while j < total and rows[positions[j]] == row:
            i = positions[j]
            j += 1
            x, t = xs[i], ts[i]
            expected[i] = mean
            lo0, hi0 = lo, hi
            if n == 0:
                mean, prev, lo0, hi0 = x, x, x, x
            lo = x if x < lo0 else lo0
            hi = x if x > hi0 else hi0
            floor = scale_floor * max(hi - lo, 1e-9)
            d = x - prev
            z = abs(x - mean) / (math.sqrt(var) + floor)
            zd = abs(d - dmean) / (math.sqrt(dvar) + floor)
            near = z  # how far x is from what is expected where it lands, for beyond_range
            k = int(t % 86400.0 * daily_slots // 86400.0) if n_slots else -1
            at = 4 * k
            if k >= 0 and times[k] >= slot_warmup:
                # EW variances start from zero: unbias them by the weight learned so far
                unbias = 1.0 / (1.0 - (1.0 - slot_alpha) ** float(times[k] - 1))
                z_slot = abs(x - slot[at] - bias) / (math.sqrt(slot[at + 1] * unbias) + floor)
                near = z_slot if z_slot < z else z
                z = 0.5 * (z + z_slot)  # neither model alone: early slots are noisy, all-day ones blind to the hour
                zd_slot = abs(d - slot[at + 2]) / (math.sqrt(slot[at + 3] * unbias) + floor)
                zd = zd_slot if zd_slot < zd else zd
                bias += bias_alpha * (x - slot[at] - bias)
            raw = zd if zd > z else z
            raw = max_surprise if max_surprise < raw else raw
            s_short = raw if n == 0 else s_short + a_short * (raw - s_short)
            score = 0.5
            if n >= warmup:
                spread = math.sqrt(max(s_var, 1e-12)) / math.sqrt(short_window)
                score = 0.5 * math.erfc(-(s_short - s_mean) / spread / _SQRT2)
                reach = beyond_range * (hi0 - lo0)
                if beyond_range and near >= beyond_z and (x > hi0 + reach or x < lo0 - reach):
                    score = threshold if threshold > score else score
            if n == 0:
                s_mean = raw
            else:
                delta = raw - s_mean
                s_mean += a_long * delta
                s_var = (1 - a_long) * (s_var + a_long * delta * delta)
            mean, var = _ew(mean, var, x, level_alpha)
            dmean, dvar = _ew(dmean, dvar, d, step_alpha)
            if k >= 0:
                if times[k] == 0:
                    slot[at], slot[at + 2] = x, d
                else:
                    slot[at], slot[at + 1] = _ew(slot[at], slot[at + 1], x, slot_alpha)
                    slot[at + 2], slot[at + 3] = _ew(slot[at + 2], slot[at + 3], d, slot_alpha)
                times[k] = min(times[k] + 1, 255)
            if remembers:
                remember(ring, codes, tod, scale[row], int(n), x, t, lo, hi)
            n, prev = n + 1, x
            likelihood[i] = score
            # past the threshold, outside the refractory run after the last alert, and not a shape seen before
            fires = score >= threshold and n - last_alert > refractory
            if fires and remembers:
                tolerance = shape_tolerance * max(hi - lo, 1e-12)
                fires = not seen_before(ring, codes, tod, scale[row], int(n), shape_length, shape_phase_s, tolerance)
            if fires:
                last_alert = n
            alert[i] = fires
        for c, value in enumerate((n, mean, var, prev, dmean, dvar, lo, hi, s_mean, s_var, s_short, bias, last_alert)):
            stats[c][row] = value
        for g in range(daily.shape[1]):
            block = daily[row, g]
            if block >= 0:
                for h in range(DAILY_BLOCK):
                    s = g * DAILY_BLOCK + h
                    seen[block, h] = times[s]
                    for q in range(4):
                        slots[q][block, h] = slot[4 * s + q]


def _daily_columns(columns) -> list:
    """The daily pool's columns as the loop takes them: the :data:`SLOT_STATS` as one tuple, then ``seen``."""
    *stats, seen = columns
    return [tuple(stats), seen]


@njit(cache=True, nogil=True, inline="always")
def _ew(mean: float, var: float, x: float, alpha: float) -> tuple[float, float]:
    """One exponentially weighted update of a mean and variance."""
    delta = x - mean
    return mean + alpha * delta, (1 - alpha) * (var + alpha * delta * delta)


class AnomalyState:
    """One entity and field's state, for scoring a stream by hand; the detector keeps its entities' in columns.

    ``learn_score`` scores a value and learns it: its likelihood, and whether it raises an alert;
    ``learn_score_many`` does the same for a whole run of values in one compiled call.
    """

    def __init__(self, spec: AnomalySettings):
        self.params = params_of(spec)
        self.stats = tuple(np.array([v]) for v in FRESH)
        days = daily_blocks(spec)  # its own pools: the day's blocks and the ring's, in order
        self.daily = [np.arange(days, dtype=np.int32)[None, :]]
        self.daily += _daily_columns(np.zeros((max(days, 1), DAILY_BLOCK), dtype) for dtype in DAILY_COLUMNS.values())
        self.arrays = [np.zeros((1, width), dtype) for dtype, width in array_columns(spec).values()]
        ring = spec.shape_memory // BLOCK
        self.pool = [np.zeros(1, np.int32), np.zeros(1, np.int32), np.arange(ring, dtype=np.int32)[None, :]]
        self.pool += [np.zeros((max(ring, 1), BLOCK), dtype) for dtype in POOL_COLUMNS.values()]

    def learn_score(self, x: float, ts: float = 0.0) -> tuple[float, bool]:
        """Likelihood in [0, 1] that ``x`` (at event time ``ts``) starts something unusual, and whether it
        raises an alert; then learn ``x``."""
        likelihood, alert = self.learn_score_many(np.array([x]), np.array([ts]))
        return float(likelihood[0]), bool(alert[0])

    def learn_score_many(self, xs: np.ndarray, ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`learn_score` for each of ``xs`` at event times ``ts``, in order: the likelihoods and alerts.

        >>> det = AnomalyState(AnomalySettings())
        >>> xs = np.r_[np.zeros(300), 9.0]
        >>> likelihood, alert = det.learn_score_many(xs, 300.0 * np.arange(301))
        >>> np.flatnonzero(alert).tolist()
        [300]
        """
        xs, ts = np.asarray(xs, np.float64), np.asarray(ts, np.float64)
        n = len(xs)
        likelihood, alert, expected = np.empty(n), np.zeros(n, np.bool_), np.empty(n)
        learn_score_runs(
            np.arange(n, dtype=np.int64), np.zeros(n, np.int64), xs, ts, self.stats, *self.daily, *self.arrays,
            *self.pool,
            self.params, likelihood, alert, expected,
        )  # fmt: skip
        return likelihood, alert


class Anomaly(Detector):
    """Flags unusual values of every field a source marks ``anomaly = true``."""

    name = "anomaly"
    settings_model = AnomalySettings

    def __init__(self, source: Source, state: EntityState):
        super().__init__(source, state)
        self.fields = [n for n, f in source.fields.items() if f.anomaly]
        self.params = params_of(self.settings)
        sp = self.settings
        for name in self.fields:
            for col, start in zip(COLUMNS, FRESH):
                state.store.add(f"anomaly.{name}.{col}", np.float64, fill=start)
            for col, (dtype, width) in array_columns(sp).items():
                if width:
                    state.store.add(f"anomaly.{name}.{col}", dtype, (width,))
            if sp.daily_slots:
                pool = state.pool(f"anomaly.{name}.daily", DAILY_BLOCK, daily_blocks(sp))
                for col, dtype in DAILY_COLUMNS.items():
                    pool.add(col, dtype)
            if sp.shape_memory:
                pool = state.pool(f"anomaly.{name}.memory", BLOCK)
                for col, dtype in POOL_COLUMNS.items():
                    pool.add(col, dtype)
                state.store.add(f"anomaly.{name}.memory.first", np.int32, fill=-1)
                state.store.add(f"anomaly.{name}.memory.table", np.int32, fill=-1)
                state.pool(f"anomaly.{name}.memory.tables", sp.shape_memory // BLOCK).add("blocks", np.int32)

    @classmethod
    def warm_up(cls) -> None:
        """Ready the loop before a record waits on it: where it was not built ahead of time (state/compiled.py),
        compile it or load it from numba's cache (about a second cold, and some 120 MB of numba and LLVM)."""
        AnomalyState(AnomalySettings()).learn_score(0.0)

    @classmethod
    def check(cls, source: Source, settings: AnomalySettings) -> None:
        if not any(f.anomaly for f in source.fields.values()):
            raise ValueError("the anomaly detector needs a field marked anomaly = true")

    def detect(self, batch: Batch, rows: np.ndarray, state: EntityState, ctx: BatchContext) -> list[Signal]:
        """Score and learn every record in event order (each entity's records of the batch by time), in one
        compiled call per field; alerts for the ones that pass."""
        alerts = []
        rows = rows.astype(np.int64, copy=False)
        for name in self.fields:
            values = batch.columns[name].astype(np.float64, copy=False)
            keep = ~np.isnan(values[ctx.sequence.order])
            if not keep.any():
                continue
            sequence = ctx.sequence.subset(keep)  # the records with a value, grouped by entity, in event order
            scored = sequence.order.astype(np.int64)
            likelihood, expected = np.empty(len(values)), np.empty(len(values))
            alert = np.zeros(len(values), np.bool_)
            arrays = [
                state.store[f"anomaly.{name}.{col}"] if width else np.zeros((1, 0), dtype)
                for col, (dtype, width) in array_columns(self.settings).items()
            ]
            stats = tuple(state.store[f"anomaly.{name}.{c}"] for c in COLUMNS)
            ts = batch.ts.astype(np.float64, copy=False)
            learn_score_runs(
                scored,
                rows,
                values,
                ts,
                stats,
                *self._daily_for(state, name, sequence, ts),
                *arrays,
                *self._blocks_for(state, name, sequence, stats[0]),
                self.params,
                likelihood,
                alert,
                expected,
            )
            for i in scored[alert[scored]].tolist():
                x, ts = float(values[i]), float(batch.ts[i])
                alerts.append(
                    Signal.at(
                        source=self.source.name,
                        kind=f"{name}_anomaly",
                        entity=batch.entities[i],
                        ts=ts,
                        score=float(likelihood[i]),
                        severity=self.settings.severity,
                        model=MODEL,
                        evidence={
                            "field": name,
                            "value": x,
                            "expected": round(float(expected[i]), 6),
                            "likelihood": float(likelihood[i]),
                        },
                    )
                )
        return alerts

    def _daily_for(self, state: EntityState, name: str, sequence: EntitySequence, ts: np.ndarray) -> list:
        """Give the entities of a batch's records (``sequence``; ``ts``: the batch's times) the blocks of the
        times of day their records learn; returns the table and the pool's columns as the loop takes them."""
        if not self.settings.daily_slots:
            return [np.zeros((1, 0), np.int32), *_daily_columns(np.zeros((1, 0), t) for t in DAILY_COLUMNS.values())]
        pool, table = state.pools[f"anomaly.{name}.daily"], state.store[f"anomaly.{name}.daily.blocks"]
        days, rows = table.shape[1], sequence.rows
        k = (ts[sequence.order] % 86400.0 * float(self.settings.daily_slots) // 86400.0).astype(np.int64)
        block = k // DAILY_BLOCK  # as the loop finds each record's time of day
        new = np.unique((rows * days + block)[table[rows, block] < 0])  # by entity, then block
        table[new // days, new % days] = pool.take(len(new))
        return [table, *_daily_columns(pool[col] for col in DAILY_COLUMNS)]

    def _blocks_for(
        self, state: EntityState, name: str, sequence: EntitySequence, learned: np.ndarray
    ) -> list[np.ndarray]:
        """Give the entities of a batch's records (``sequence``; ``learned``: each entity's record count) the
        shape-memory blocks their records first write, entity by entity; returns the tables (see :data:`BLOCK`)
        and the pool's columns (zero-width stand-ins with the memory off)."""
        if not self.settings.shape_memory:
            off = [np.zeros(1, np.int32), np.zeros(1, np.int32), np.zeros((1, 0), np.int32)]
            return off + [np.zeros((1, 0), dtype) for dtype in POOL_COLUMNS.values()]
        memory = f"anomaly.{name}.memory"
        pool, first, table = state.pools[memory], state.store[f"{memory}.first"], state.store[f"{memory}.table"]
        size, ring = self.settings.shape_memory, self.settings.shape_memory // BLOCK
        rows = sequence.rows
        start, _ = sequence.run_start(np.zeros(len(rows), dtype=bool))
        n = learned[rows].astype(np.int64) + np.arange(len(rows)) - start  # each record's number: its slot
        block = n % size // BLOCK
        table_pool = state.pools[f"{memory}.tables"]
        tables = table_pool["blocks"]
        given = np.where(
            block == 0, first[rows] >= 0, (table[rows] >= 0) & (tables[table[rows].clip(0), block] >= 0)
        )  # fmt: skip
        new = np.unique((rows * ring + block)[(n < size) & ~given])  # by entity, then block
        owners, stretch, blocks = new // ring, new % ring, pool.take(len(new))
        first[owners[stretch == 0]] = blocks[stretch == 0]
        later = stretch > 0
        if later.any():
            unlisted = np.unique(owners[later & (table[owners] < 0)])  # a second block: the entity's table
            if len(unlisted):
                table[unlisted] = table_pool.take(len(unlisted))
                tables = table_pool["blocks"]  # taking may have grown it
                tables[table[unlisted]] = -1
                tables[table[unlisted], 0] = first[unlisted]
            tables[table[owners[later]], stretch[later]] = blocks[later]
        return [first, table, tables] + [pool[col] for col in POOL_COLUMNS]
