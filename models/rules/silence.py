"""Silence: an entity that stops reporting for longer than its source allows, and its recovery.

"Now" is event time: the newest event time seen on the partition, so replay
raises the same signals as the live run. A worker whose whole feed has gone
quiet advances "now" by wall-clock time instead (see ``sweep``; that path is
live only). An entity is silent once ``silence_factor`` (default 5) x its source's
expected interval has passed since its last record; its next record raises
``silence_recovered``, which closes the episode. A gap found inside the
records themselves raises both, so the signals do not depend on batching.

>>> import numpy as np
>>> from models.catalog import load_sources
>>> from models.engine import SourceEngine
>>> e = SourceEngine(load_sources()["power"])
>>> _ = e.process([{"entity": "a", "ts": 1767225600, "kwh": 1, "kw": 1},
...                {"entity": "b", "ts": 1767225600, "kwh": 1, "kw": 1}])
>>> out = e.process([{"entity": "b", "ts": 1767225600 + 60 * k, "kwh": 1 + k, "kw": 1} for k in range(1, 8)])
>>> [(s.kind, s.entity) for s in out.signals]
[('silent', 'a')]
"""

from __future__ import annotations

import numpy as np

from models.base import BatchContext, Detector
from models.signal import Signal
from state.entity_state import EntityState
from streams.registry import Source
from streams.validation import Batch

MODEL = "silence@1"


class Silence(Detector):
    """Raises ``silent`` when an entity misses its reports and ``silence_recovered`` when it is back.

    Configured by the source's own ``expected_interval_s`` and ``silence_factor``, not a table."""

    name = "silence"

    def __init__(self, source: Source, state: EntityState):
        super().__init__(source, state)
        self.limit_s = source.silence_factor * source.expected_interval_s
        state.store.add("silence.open", np.int8)  # its silence began at its last_ts, which stays put

    def detect(self, batch: Batch, rows: np.ndarray, state: EntityState, ctx: BatchContext) -> list[Signal]:
        alerts = self._recoveries(batch, state, ctx)
        if ctx.watermark - float(self.recall(state, "swept", -np.inf)) >= self.source.expected_interval_s:
            alerts += self.sweep(state, ctx.watermark)
        return alerts

    def sweep(self, state: EntityState, now: float) -> list[Signal]:
        """Signals for every entity silent at event time ``now``.

        An entity whose slot was taken for a later slice of the batch has no record yet (its last time is
        -inf): it is not silent, it has not begun."""
        self.remember(state, "swept", now)
        n = len(state)
        last_ts, open_ = state.store["last_ts"][:n], state.store["silence.open"][:n]
        silent = np.flatnonzero((now - last_ts > self.limit_s) & (open_ == 0) & np.isfinite(last_ts))
        open_[silent] = 1
        return [self._silent(state.slots.entities[r], float(last_ts[r])) for r in silent.tolist()]

    def _recoveries(self, batch: Batch, state: EntityState, ctx: BatchContext) -> list[Signal]:
        """Gaps longer than the limit inside the records, and entities back after a sweep found them silent."""
        seq = ctx.sequence
        r, t, first = seq.rows, batch.ts[seq.order], seq.first
        prior = ctx.prior_last_ts[seq.order]
        # the entity's latest time before each record: a record that came late sits behind it, and is no gap
        before = np.where(first, prior, np.maximum(np.roll(t, 1), prior))
        open_ = state.store["silence.open"]
        was_open = first & (open_[r] == 1)
        gap = ~was_open & (t - before > self.limit_s) & np.isfinite(before)
        alerts = []
        for i in np.flatnonzero(was_open | gap).tolist():
            row, start = int(r[i]), float(before[i])
            entity = state.slots.entities[row]
            if gap[i]:
                alerts.append(self._silent(entity, start))
            alerts.append(
                Signal.new(
                    source=self.source.name,
                    kind="silence_recovered",
                    entity=entity,
                    ts=float(t[i]),
                    window_start=start,
                    window_s=0.0,
                    score=0.1,
                    severity="info",
                    model=MODEL,
                    evidence={"silent_since": start, "silent_for_s": float(t[i] - start)},
                )
            )
        open_[r[was_open]] = 0
        return alerts

    def _silent(self, entity: str, last_seen: float) -> Signal:
        return Signal.new(
            source=self.source.name,
            kind="silent",
            entity=entity,
            ts=last_seen + self.limit_s,
            window_start=last_seen,
            window_s=0.0,
            score=0.6,
            severity="warning",
            model=MODEL,
            evidence={
                "last_seen": last_seen,
                "limit_s": self.limit_s,
                "expected_interval_s": self.source.expected_interval_s,
            },
        )
