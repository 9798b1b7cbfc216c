"""Generic online anomaly detection for any numeric field, with its own threshold.

Per entity and field, two exponentially weighted models learn from the first
record: the level (slow mean/variance) and the step (mean/variance of the first
difference). A record's raw surprise is the larger of its two z-scores. An
anomaly *likelihood* turns that into a calibrated number: how unusual the
recent surprise (a short EW mean) is against the surprise's own long-run EW
distribution. An alert is raised when the likelihood passes a fixed, very
high threshold, at most once per refractory run of records, so no per-stream
tuning is needed.

>>> import numpy as np
>>> det = AnomalyState(AnomalySpec())
>>> quiet = [det.learn_score(10.0 + 0.1 * np.sin(i / 5)) for i in range(600)]
>>> spike = det.learn_score(40.0)
>>> max(quiet) < 0.99999 <= spike
True
"""

from __future__ import annotations

import math

import numpy as np

from models.signal import new_signal
from state.entity_state import EntityState
from streams.registry import AnomalySpec, Source
from streams.validation import Batch

MODEL = "anomaly@1"
# Per entity and field, in this order (one float64 column each).
COLUMNS = ("n", "mean", "var", "prev", "dmean", "dvar", "lo", "hi", "s_mean", "s_var", "s_short", "last_alert")
_SQRT2 = math.sqrt(2.0)


class AnomalyState:
    """The detector's state for one entity and field; ``learn_one`` and score in one step."""

    __slots__ = ("spec", "v")

    def __init__(self, spec: AnomalySpec, values: list[float] | None = None):
        self.spec = spec
        self.v = values if values is not None else [0.0] * len(COLUMNS)
        if values is None:
            self.v[COLUMNS.index("last_alert")] = -1e18

    def learn_score(self, x: float) -> float:
        """Likelihood in [0, 1] that ``x`` starts something unusual; then learn ``x``."""
        n, mean, var, prev, dmean, dvar, lo, hi, s_mean, s_var, s_short, last = self.v
        sp = self.spec
        if n == 0:
            mean, prev, lo, hi = x, x, x, x
        lo, hi = min(lo, x), max(hi, x)
        floor = sp.scale_floor * max(hi - lo, 1e-9)
        z = abs(x - mean) / (math.sqrt(var) + floor)
        d = x - prev
        zd = abs(d - dmean) / (math.sqrt(dvar) + floor)
        raw = min(max(z, zd), sp.max_surprise)
        s_short = raw if n == 0 else s_short + (2.0 / (sp.short_window + 1)) * (raw - s_short)
        likelihood = 0.5
        if n >= sp.warmup:
            spread = math.sqrt(max(s_var, 1e-12)) / math.sqrt(sp.short_window)
            likelihood = 0.5 * math.erfc(-(s_short - s_mean) / spread / _SQRT2)
        a_long = 1.0 / sp.long_window
        if n == 0:
            s_mean = raw
        else:
            delta = raw - s_mean
            s_mean += a_long * delta
            s_var = (1 - a_long) * (s_var + a_long * delta * delta)
        a = sp.level_alpha
        delta = x - mean
        mean += a * delta
        var = (1 - a) * (var + a * delta * delta)
        a = sp.step_alpha
        delta = d - dmean
        dmean += a * delta
        dvar = (1 - a) * (dvar + a * delta * delta)
        self.v = [n + 1, mean, var, x, dmean, dvar, lo, hi, s_mean, s_var, s_short, last]
        return likelihood

    def should_alert(self, likelihood: float) -> bool:
        """Past the threshold and outside the refractory run after the last alert."""
        n, last = self.v[0], self.v[-1]
        if likelihood >= self.spec.threshold and n - last > self.spec.refractory:
            self.v[-1] = n
            return True
        return False


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

    def detect(self, batch: Batch, rows: np.ndarray, state: EntityState) -> list[dict]:
        """Score and learn every record in order; alerts for the ones that pass."""
        alerts = []
        for name in self.fields:
            cols = [state.store[f"anomaly.{name}.{c}"] for c in COLUMNS]
            values = batch.columns[name]
            live: dict[int, AnomalyState] = {}
            for i in np.flatnonzero(~np.isnan(values)).tolist():
                row = int(rows[i])
                det = live.get(row)
                if det is None:
                    det = live[row] = AnomalyState(self.spec, [float(c[row]) for c in cols])
                expected = det.v[1]
                x = float(values[i])
                likelihood = det.learn_score(x)
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
        return alerts
