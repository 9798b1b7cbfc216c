"""Threshold rules from a source declaration: a field above or below a limit.

A rule ``over = "record"`` looks at each reading: a signal where a breach
begins (``min_readings`` breaking readings running; each occurrence shows on
the alert's count) and once per ``dedup_s`` period while it lasts; a rule over a window ("1m", "15m", "1h")
looks at the mean of each closed bucket (one no record can still enter), so
its verdict does not depend on how records were batched; a ``"24h"`` rule
looks at the mean of each local calendar day (``utc_offset_h``), judged once
when the day closes, as GB 3095-2012 defines a 24-hour mean.

Signals: ``<rule kind>`` (the rule's severity), score 0.5 at the limit rising
to 1 at twice it (:func:`score`). Configured by the declaration's ``[[rules]]``.

>>> import numpy as np
>>> rule = Rule(kind="hot", field="t", above=30)
>>> exceeds(rule, np.array([10.0, 31.0, np.nan])).tolist()
[False, True, False]
>>> from models.catalog import load_sources
>>> from models.engine import SourceEngine
>>> surge = [{"entity": "m-1", "ts": 1700000000 + 60 * i, "kwh": 1.0, "kw": 0.5, "voltage": 275.0} for i in range(3)]
>>> engine = SourceEngine(load_sources()["power"])
>>> _ = engine.process(surge)   # three minutes running: sustained (raised once the records are final)
>>> [(s.kind, s.evidence["limit"]) for s in engine.flush()]
[('voltage_high', 260.0)]
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field, RootModel, model_validator

from models.base import BatchContext, Detector, DetectorSettings, Severity, UtcOffsetHours
from models.signal import Signal
from state.entity_state import EntityState
from streams.registry import Source
from streams.validation import Batch

MODEL = "threshold@2"
DAY_MIN_HOURS = 20  # GB 3095-2012: a 24-hour mean needs at least 20 hourly values


class Rule(DetectorSettings):
    """A threshold rule: a field above or below a limit, per record or on a window mean."""

    kind: str
    field: str
    above: float | None = None
    below: float | None = None
    over: Literal["record", "1m", "15m", "1h", "24h"] = "record"
    severity: Severity = "warning"
    dedup_s: float = Field(3600.0, ge=60, description="one alert per entity and kind per this period")
    description: str = ""
    min_readings: int = Field(
        1, ge=1, le=1000, description="a record rule's breach counts from this many breaking readings running"
    )
    utc_offset_h: UtcOffsetHours = 8.0

    @model_validator(mode="after")
    def _check(self) -> Rule:
        if (self.above is None) == (self.below is None):
            raise ValueError("a rule needs exactly one of 'above' or 'below'")
        return self


class ThresholdSettings(RootModel[list[Rule]]):
    """The declaration's ``[[rules]]``."""

    root: list[Rule] = Field(default_factory=list)


def exceeds(rule: Rule, values: np.ndarray) -> np.ndarray:
    """Which values break the rule (NaN never does)."""
    with np.errstate(invalid="ignore"):
        return values > rule.above if rule.above is not None else values < rule.below


def score(rule: Rule, value: float) -> float:
    """0.5 at the limit, rising to 1 at twice (or zero for 'below') the limit."""
    limit = _limit(rule)
    excess = (value - limit) if rule.above is not None else (limit - value)
    return float(min(1.0, 0.5 + 0.5 * excess / max(abs(limit), 1e-9)))


class Threshold(Detector):
    """Raises a signal for every threshold rule a source declares that a reading or window mean breaks."""

    name = "threshold"
    table_key = "rules"
    settings_model = ThresholdSettings

    def __init__(self, source: Source, state: EntityState):
        super().__init__(source, state)
        rules = self.settings.root
        self.record_rules = [r for r in rules if r.over == "record"]
        self.window_rules = [r for r in rules if r.over != "record"]
        if self.record_rules:
            # per rule: breaking readings running up to the entity's latest, and that reading's dedup period
            # (int32: periods are a minute or more)
            state.store.add("threshold.running", np.uint16, (len(self.record_rules),))
            state.store.add("threshold.period", np.int32, (len(self.record_rules),), fill=-1)
        for window in {_bucket_window(r.over) for r in self.window_rules}:
            state.add_marker(f"threshold.closed.{window}")

    @classmethod
    def check(cls, source: Source, settings: ThresholdSettings) -> None:
        for rule in settings.root:
            spec = source.fields.get(rule.field)
            if spec is None or not spec.numeric:
                raise ValueError(f"rule {rule.kind!r}: no numeric field {rule.field!r}")
            if rule.over != "record" and not spec.window:
                raise ValueError(f"rule {rule.kind!r}: field {rule.field!r} is not windowed")

    @classmethod
    def reads(cls, source: Source) -> dict[str, int]:
        """Window -> closed buckets the source's rules read (a 24-hour mean reads 24 of the 1-hour ring)."""
        out: dict[str, int] = {}
        for rule in cls.settings_of(source).root:
            if rule.over != "record":
                window = _bucket_window(rule.over)
                out[window] = max(out.get(window, 0), 24 if rule.over == "24h" else 1)
        return out

    def detect(self, batch: Batch, rows: np.ndarray, state: EntityState, ctx: BatchContext) -> list[Signal]:
        """Alerts raised by ``batch`` (already folded into ``state`` at ``rows``)."""
        alerts = []
        for k, rule in enumerate(self.record_rules):
            alerts += self._record_rule(k, rule, batch, state, ctx)
        if self.window_rules and len(rows):
            alerts += self._window_rules(rows, state)
        return alerts

    def _record_rule(self, k: int, rule: Rule, batch: Batch, state: EntityState, ctx: BatchContext) -> list[Signal]:
        """Signals where a reading breaks the rule after one that did not (each occurrence counts on the
        alert), and once per ``dedup_s`` period while the breach goes on; a reading without the field
        changes nothing."""
        seq = ctx.sequence
        values, ts = batch.columns[rule.field][seq.order], batch.ts[seq.order]
        running, last_period = state.store["threshold.running"][:, k], state.store["threshold.period"][:, k]
        known = ~np.isnan(values)
        breaks = known & exceeds(rule, values)
        period = np.floor(ts / rule.dedup_s).astype(np.int64)
        if not breaks.any() and not running[seq.rows].any():  # the usual batch: no run to count or carry
            last_period[seq.rows[seq.last]] = period[seq.last]
            return []
        # breaking readings running (a reading without the field neither counts nor ends the run)
        _, last_ok = seq.run_start(known & ~breaks)
        start = np.maximum.accumulate(np.where(seq.first, np.arange(len(values)), 0))
        counted = np.cumsum(breaks)
        base = np.where(last_ok >= start, counted[last_ok.clip(min=0)], np.where(start > 0, counted[start - 1], 0))
        run = counted - base + np.where(last_ok >= start, 0, running[seq.rows].astype(np.int64))
        breach = run >= rule.min_readings
        before = seq.previous(run, running) >= rule.min_readings
        fire = breach & known & (~before | (period != seq.previous(period, last_period)))
        running[seq.rows[seq.last]] = np.minimum(run[seq.last], np.iinfo(np.uint16).max)
        last_period[seq.rows[seq.last]] = period[seq.last]
        return [
            Signal.at(
                source=self.source.name,
                kind=rule.kind,
                entity=batch.entities[seq.order[i]],
                ts=float(ts[i]),
                score=score(rule, float(values[i])),
                severity=rule.severity,
                model=MODEL,
                evidence={
                    "field": rule.field,
                    "value": float(values[i]),
                    "limit": _limit(rule),
                    "over": "record",
                    "description": rule.description,
                },
            )
            for i in np.flatnonzero(fire).tolist()
        ]

    def sweep(self, state: EntityState, now: float) -> list[Signal]:
        """The windows an idle feed's clock (``now``) has closed."""
        return self._window_rules(None, state, now)

    def _window_rules(self, rows: np.ndarray | None, state: EntityState, now: float | None = None) -> list[Signal]:
        """Window rules over the buckets closed for ``rows`` (None: every entity with unjudged buckets at
        ``now``)."""
        alerts = []
        for window in sorted({_bucket_window(r.over) for r in self.window_rules}):
            seconds, _ring = state.windows[window]
            done = state.store[f"threshold.closed.{window}"]
            due = state.unjudged(window, done, now) if rows is None else rows
            for r, b in state.newly_closed(due, window, done, now):
                hour_means, day_means = None, {}  # day means by zone: only the buckets that end a local day
                for rule in self.window_rules:
                    if _bucket_window(rule.over) != window:
                        continue
                    if rule.over == "24h":
                        if rule.utc_offset_h not in day_means:
                            ends = _ends_local_day(b, seconds, rule.utc_offset_h)
                            means = np.full((len(r), len(state.windowed)), np.nan)
                            if ends.any():
                                means[ends] = state.span_means(window, r[ends], b[ends], 24, DAY_MIN_HOURS)
                            day_means[rule.utc_offset_h] = means
                        means, start = day_means[rule.utc_offset_h], (b - 23) * seconds
                    else:
                        if hour_means is None:
                            hour_means = state.window_means(window, r, b)
                        means, start = hour_means, b * seconds
                    col = means[:, state.windowed.index(rule.field)]
                    for i in np.flatnonzero(exceeds(rule, col)):
                        alerts.append(
                            Signal.new(
                                source=self.source.name,
                                kind=rule.kind,
                                entity=state.slots.name(r[i]),
                                ts=float((b[i] + 1) * seconds),
                                window_start=float(start[i]),
                                window_s=float((b[i] + 1) * seconds - start[i]),
                                score=score(rule, float(col[i])),
                                severity=rule.severity,
                                model=MODEL,
                                evidence={
                                    "field": rule.field,
                                    "mean": float(col[i]),
                                    "limit": _limit(rule),
                                    "over": rule.over,
                                    "description": rule.description,
                                },
                            )
                        )
        return alerts


def _ends_local_day(buckets: np.ndarray, seconds: int, utc_offset_h: float) -> np.ndarray:
    """Whether each hourly bucket is its local day's last: GB 3095-2012's 24-hour mean is a calendar day's."""
    return ((buckets + 1) * seconds + round(utc_offset_h * 3600)) % 86_400 == 0


def _bucket_window(over: str) -> str:
    """The ring a rule reads: a 24-hour mean is built from the 1-hour buckets."""
    return "1h" if over == "24h" else over


def _limit(rule: Rule) -> float:
    return rule.above if rule.above is not None else rule.below
