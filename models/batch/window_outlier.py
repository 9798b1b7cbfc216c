"""Hours unlike the windows a trained model has seen: the promoted model version's IsolationForest.

Inactive (and free) until a model version supplies a fitted
:class:`~models.batch.isolation.WindowOutlierModel`; then every closed hour of
an entity with enough history is scored and one more unusual than the
model's training quantile raises ``window_outlier``. Training uses the same
detector in collecting mode, so features are built by one piece of code.

Parameters (the ``[window_outlier]`` table): ``trees``, ``max_samples``,
``seed`` (the forest), ``quantile`` (of the training windows' scores: above
it, an hour is an outlier), ``min_records`` and ``min_hours`` (an entity's
history before its hours are scored: its statistics, as of each hour's end,
need a day to mean anything), ``severity``.

>>> import math
>>> import numpy as np
>>> from models.batch.isolation import WindowOutlierModel
>>> from models.catalog import load_sources
>>> from models.engine import SourceEngine
>>> from models.versions import ModelVersion
>>> source = load_sources()["metric"].model_copy(update={"detectors": ["window_outlier"]})
>>> def days(n, jump=None):
...     return [{"entity": f"m{k}", "ts": 1767225600 + 300 * i, "value": 10 + math.sin(i / 12 + k)
...              + (20 if jump and jump <= i < jump + 12 and k == 0 else 0)} for i in range(n) for k in range(3)]
>>> trainer = SourceEngine(source)
>>> trainer.detectors[0].collect(); _ = trainer.process(days(4 * 288)), trainer.flush()
>>> model = WindowOutlierModel(seed=1).fit(np.concatenate(trainer.detectors[0].collected))
>>> engine = SourceEngine(source, model=ModelVersion({"version": "v1", "source": "metric"}, model))
>>> signals = engine.process(days(2 * 288, jump=400)).signals + engine.flush()
>>> [(s.entity, s.window_start) for s in signals if s.entity == "m0"]
[('m0', 1767344400.0), ('m0', 1767348000.0)]

Reference: F. T. Liu, K. M. Ting and Z.-H. Zhou, "Isolation Forest", IEEE
ICDM 2008, 413-422.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from pydantic import Field

from models.base import BatchContext, Detector, DetectorSettings, Severity
from models.batch.window_features import CONTEXT_HOURS, hour_features, names
from models.signal import Signal
from settings import WINDOW_SECONDS
from state.entity_state import NEVER, EntityState
from streams.registry import Source
from streams.validation import Batch

if TYPE_CHECKING:  # scikit-learn is imported only where a trained version is loaded (models/versions.py)
    from models.batch.isolation import WindowOutlierModel

MODEL = "window_outlier@1"
DONE = "window_outlier.closed"
STATS = "window_outlier.as_of_hour."  # the entity's running statistics before its latest hour's records
FIRST = "window_outlier.first_hour"


class WindowOutlierSettings(DetectorSettings):
    """The ``[window_outlier]`` table: the trained IsolationForest over hourly window features."""

    trees: int = Field(100, ge=10, le=1000)
    max_samples: int = Field(256, ge=16)
    quantile: float = Field(0.999, gt=0.5, lt=1, description="alert above this share of training windows")
    min_records: int = Field(48, ge=2, description="records an entity has before its hours are scored")
    min_hours: int = Field(
        24, ge=0, description="hours an entity has reported before its hours are scored (its statistics span a day)"
    )
    seed: int = 42
    severity: Severity = "warning"


class WindowOutlier(Detector):
    """Scores each closed hour of each entity with the promoted version's window model."""

    name = "window_outlier"
    settings_model = WindowOutlierSettings
    windows = {"1h": CONTEXT_HOURS + 1}
    keeps = frozenset({"running_stats"})  # its features include the entity's count/mean/variance

    def __init__(self, source: Source, state: EntityState):
        super().__init__(source, state)
        self.fields = list(state.windowed)
        self.labels = names(self.fields)
        self.model: WindowOutlierModel | None = None
        self.collected: list[np.ndarray] | None = None  # training: feature rows of every closed hour
        state.add_marker(DONE)
        state.add_marker(FIRST)
        nw = len(self.fields)
        state.store.add(f"{STATS}count", np.uint32, (nw,))
        state.store.add(f"{STATS}mean", np.float32, (nw,))  # a feature's scale: float32 is plenty
        state.store.add(f"{STATS}m2", np.float32, (nw,))

    @classmethod
    def check(cls, source: Source, settings: WindowOutlierSettings) -> None:
        if not source.windowed_fields:
            raise ValueError("the window_outlier detector needs at least one windowed field")

    def use_model(self, model: WindowOutlierModel | None, state: EntityState) -> None:
        """Score with ``model`` from now on (hours already closed are not scored after the fact)."""
        if model is not None and not self._active() and len(state):
            rows = np.arange(len(state))
            state.store[DONE][rows] = state.closed_bucket(rows, "1h")
            self._keep_statistics(state, rows)
        self.model = model

    def slice_s(self) -> float | None:
        """Active, it judges an hour with the statistics as of its end: batches are cut at hour ends."""
        return WINDOW_SECONDS["1h"] if self._active() else None

    def _active(self) -> bool:
        return self.model is not None or self.collected is not None

    def _keep_statistics(self, state: EntityState, rows: np.ndarray) -> None:
        """Each entity's running statistics as they are now, for the hours its next records close."""
        for name in ("count", "mean", "m2"):
            state.store[f"{STATS}{name}"][rows] = state.store[name][rows]

    def collect(self) -> None:
        """Keep the features of every closed hour (see :attr:`collected`) instead of, or as well as, scoring."""
        self.collected = []

    def detect(self, batch: Batch, rows: np.ndarray, state: EntityState, ctx: BatchContext) -> list[Signal]:
        """Judge the hours the batch closed, with each entity's statistics as they were before the batch (the
        engine cuts batches at hour ends while it is active, so as of the hour's end); then keep them as of the
        batch's end."""
        first = state.store[FIRST]
        new = first[rows] == NEVER
        if new.any():  # an entity's first hour, whether or not a model is in use yet
            first[rows[new]] = np.iinfo(np.int32).max
            np.minimum.at(first, rows[new], np.floor(batch.ts[new] / WINDOW_SECONDS["1h"]).astype(np.int32))
        if not self._active():
            return []
        alerts = self._judge(rows, state)
        self._keep_statistics(state, rows)
        return alerts

    def sweep(self, state: EntityState, now: float) -> list[Signal]:
        """The hours an idle feed's clock (``now``) has closed."""
        if not self._active():
            return []
        return self._judge(state.unjudged("1h", state.store[DONE], now), state, now)

    def _judge(self, rows: np.ndarray, state: EntityState, now: float | None = None) -> list[Signal]:
        seconds, _ = state.windows["1h"]
        counts, first = state.store[f"{STATS}count"], state.store[FIRST]
        alerts = []
        for r, b in state.newly_closed(rows, "1h", state.store[DONE], now):
            ready = (counts[r].min(axis=1) >= self.settings.min_records) & (b - first[r] >= self.settings.min_hours)
            r, b = r[ready], b[ready]
            if not len(r):
                continue
            x = hour_features(state, r, b, STATS)
            seen = ~np.isnan(x[:, 0])
            r, b, x = r[seen], b[seen], x[seen]
            if self.collected is not None:
                self.collected.append(x)
            if self.model is None or not len(r):
                continue
            hit = np.flatnonzero(self.model.flag(x))
            if not len(hit):
                continue
            score = self.model.score(x[hit])
            for j, i in enumerate(hit.tolist()):
                alerts.append(
                    Signal.new(
                        source=self.source.name,
                        kind="window_outlier",
                        entity=state.slots.name(r[i]),
                        ts=float((b[i] + 1) * seconds),
                        window_start=float(b[i] * seconds),
                        window_s=float(seconds),
                        score=float(score[j]),
                        severity=self.settings.severity,
                        model=MODEL,
                        evidence={
                            "features": dict(zip(self.labels, np.round(x[i], 3).tolist())),
                            "hour_means": dict(
                                zip(
                                    self.fields,
                                    np.round(state.window_means("1h", r[i : i + 1], b[i : i + 1])[0], 4).tolist(),
                                )
                            ),
                        },
                    )
                )
        return alerts
