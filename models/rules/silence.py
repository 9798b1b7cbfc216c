"""Silence: an entity that stops reporting for longer than its own cadence allows, and its recovery.

"Now" is event time: the newest event time seen on the partition, so replay
raises the same signals as the live run. A worker whose whole feed has gone
quiet advances "now" by wall-clock time instead (see ``sweep``; that path is
live only). Each entity learns its own cadence: a histogram of its gaps
between records in doubling bins (1-2 s, 2-4 s, ... 36 h), whose median bin's
geometric middle is the cadence once ``LEARN_GAPS`` gaps are in (never less
than the source's ``expected_interval_s``; an entity that has not shown it yet
is silent after a day). An entity is silent once
``silence_factor`` (default 5) x its cadence has passed since its last record:
an hourly station in a source that declares a minute is silent after 5 hours
without data, not after every hour. Its next record raises
``silence_recovered``, which ends the outage's alert (``Signal.ends``) rather
than raising one of its own. A gap found inside the records themselves raises
both, so the signals do not depend on batching.

A feed that stops as a whole (a sweep finds no record on the partition for
longer than its shortest limit) is one ``source_silent`` signal, not one per
entity; its entities are muted until it returns, and each is silent on its own
once its limit has passed since the feed's return.

>>> import numpy as np
>>> from models.catalog import load_sources
>>> from models.engine import SourceEngine
>>> e = SourceEngine(load_sources()["power"])
>>> minute = lambda entity, k: {"entity": entity, "ts": 1767225600 + 60 * k, "kwh": 1 + k, "kw": 1}
>>> _ = e.process([minute(m, k) for k in range(5) for m in "ab"])   # both show a one-minute cadence
>>> out = e.process([minute("b", k) for k in range(5, 21)])   # then "a" stops (judged the lateness later)
>>> [(s.kind, s.entity, s.evidence["limit_s"]) for s in out.signals]
[('silent', 'a', 300.0)]
"""

from __future__ import annotations

import numpy as np

from models.base import BatchContext, Detector
from models.signal import Signal
from state.entity_state import EntityState
from streams.registry import Source
from streams.validation import Batch

MODEL = "silence@2"
BINS = 18  # gap bin k holds gaps in [2**k, 2**(k+1)) seconds; the last one everything longer
LEARN_GAPS = 4  # gaps an entity shows before its cadence is known
UNLEARNED_LIMIT_S = 86_400.0  # silence before then
FULL = np.iinfo(np.uint16).max  # bin counts saturate (min(a + b, FULL) is the same in any order)
OPEN, MUTED = 1, 2  # silence.open: its own outage alerted; silent in an outage of the whole feed


def gap_bins(gaps: np.ndarray) -> np.ndarray:
    """The histogram bin of each gap (seconds > 0)."""
    return np.clip(np.floor(np.log2(np.maximum(gaps, 1.0))), 0, BINS - 1).astype(np.int64)


def cadence(hist: np.ndarray, declared: float) -> np.ndarray:
    """Each row's cadence from its gap histogram (rows, BINS): the geometric middle of the median gap's bin
    (within a factor of 1.41 of it), never under ``declared``; NaN until ``LEARN_GAPS`` gaps are in."""
    total = hist.sum(axis=1)
    median_bin = (np.cumsum(hist, axis=1) * 2 >= total[:, None]).argmax(axis=1)
    return np.where(total >= LEARN_GAPS, np.maximum(2.0 ** (median_bin + 0.5), declared), np.nan)


class Silence(Detector):
    """Raises ``silent`` when an entity misses its reports and ``silence_recovered`` when it is back.

    Configured by the source's own ``expected_interval_s`` and ``silence_factor``, not a table; each entity's
    cadence is learned from its gaps."""

    name = "silence"

    def __init__(self, source: Source, state: EntityState):
        super().__init__(source, state)
        self.factor, self.declared = source.silence_factor, float(source.expected_interval_s)
        state.store.add("silence.open", np.int8)  # its silence began at its last_ts, which stays put
        state.store.add("silence.gaps", np.uint16, (BINS,))
        state.store.add("silence.limit", np.float64, fill=max(self.factor * self.declared, UNLEARNED_LIMIT_S))

    def limits(self, hist: np.ndarray) -> np.ndarray:
        """Seconds without a record after which each entity (its gap histogram rows) is silent: a day for one
        that has not shown its cadence yet (a new hourly meter in a source that declares a minute is no
        outage), at least ``silence_factor`` x the declared interval."""
        learned = self.factor * cadence(hist, self.declared)
        return np.where(np.isnan(learned), max(self.factor * self.declared, UNLEARNED_LIMIT_S), learned)

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
        limit = state.store["silence.limit"][:n]
        active = np.isfinite(last_ts)
        # an entity muted by a feed outage has its silence counted from the feed's return
        since = np.where(open_ == MUTED, np.maximum(last_ts, self.recall(state, "feed_back", -np.inf)), last_ts)
        due = (now - since > limit) & (open_ != OPEN) & active
        if self.recall(state, "feed_quiet") is not None:
            open_[due] = MUTED
            return []
        if active.sum() >= 2 and now - state.watermark > limit[active].min():
            open_[due] = MUTED
            self.remember(state, "feed_quiet", state.watermark)
            return [self._feed_silent(state.watermark, float(limit[active].min()), int(active.sum()))]
        silent = np.flatnonzero(due)
        open_[silent] = OPEN
        return [
            self._silent(state.slots.name(r), float(last_ts[r]), float(limit[r]), float(since[r]))
            for r in silent.tolist()
        ]

    def _recoveries(self, batch: Batch, state: EntityState, ctx: BatchContext) -> list[Signal]:
        """Gaps longer than the limit inside the records, and entities back after a sweep found them silent."""
        seq = ctx.sequence
        r, t, first = seq.rows, batch.ts[seq.order], seq.first
        prior = ctx.prior_last_ts[seq.order]
        # the entity's latest time before each record: a record that came late sits behind it, and is no gap
        before = np.where(first, prior, np.maximum(np.roll(t, 1), prior))
        open_, hist = state.store["silence.open"], state.store["silence.gaps"]
        seen = np.isfinite(before) & (t > before)
        bins = np.full(len(t), -1, dtype=np.int64)
        bins[seen] = gap_bins(t[seen] - before[seen])
        # a gap under the shortest possible limit is never an outage: only longer ones need their limit, from
        # the histogram as it stood before them (the stored one and the entity's earlier gaps in the batch)
        limit = np.full(len(t), np.inf)
        start_of = np.maximum.accumulate(np.where(first, np.arange(len(t)), 0))
        for i in np.flatnonzero(seen & (t - before > self.factor * self.declared)).tolist():
            earlier = np.bincount(bins[start_of[i] : i][bins[start_of[i] : i] >= 0], minlength=BINS)
            limit[i] = self.limits(np.minimum(hist[r[i]].astype(np.int64) + earlier, FULL)[None, :])[0]
        was_open, was_muted = first & (open_[r] == OPEN), first & (open_[r] == MUTED)
        gap = ~was_open & ~was_muted & (t - before > limit) & np.isfinite(before)
        if seen.any():  # the batch's gaps join each entity's histogram, and its limit follows
            entity = np.cumsum(first) - 1  # the sequence holds each entity's records together
            ents = int(entity[-1]) + 1
            counts = np.bincount(entity[seen] * BINS + bins[seen], minlength=ents * BINS).reshape(ents, BINS)
            touched = r[first]
            hist[touched] = np.minimum(hist[touched].astype(np.int64) + counts, FULL)
            state.store["silence.limit"][touched] = self.limits(hist[touched])
        alerts = self._feed_back(state, float(t.min())) if len(t) else []
        for i in np.flatnonzero(was_open | gap).tolist():
            row, start = int(r[i]), float(before[i])
            entity = state.slots.name(row)
            if gap[i]:
                alerts.append(self._silent(entity, start, float(limit[i])))
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
                    ends="silent",
                )
            )
        open_[r[was_open | was_muted]] = 0
        return alerts

    def _feed_back(self, state: EntityState, ts: float) -> list[Signal]:
        """The first records after the whole feed went quiet: its outage's signal is ended."""
        quiet_since = self.recall(state, "feed_quiet")
        if quiet_since is None:
            return []
        self.remember(state, "feed_quiet", None)
        self.remember(state, "feed_back", ts)
        return [
            Signal.new(
                source=self.source.name,
                kind="silence_recovered",
                entity=self.source.name,
                ts=ts,
                window_start=quiet_since,
                window_s=0.0,
                score=0.1,
                severity="info",
                model=MODEL,
                evidence={"silent_since": quiet_since, "silent_for_s": ts - quiet_since},
                ends="source_silent",
            )
        ]

    def _feed_silent(self, last_seen: float, limit_s: float, entities: int) -> Signal:
        return Signal.new(
            source=self.source.name,
            kind="source_silent",
            entity=self.source.name,
            ts=last_seen + limit_s,
            window_start=last_seen,
            window_s=0.0,
            score=0.8,
            severity="major",
            model=MODEL,
            evidence={"last_seen": last_seen, "limit_s": limit_s, "entities": entities},
        )

    def _silent(self, entity: str, last_seen: float, limit_s: float, counted_from: float | None = None) -> Signal:
        """``silent`` for an entity last seen at ``last_seen``, due ``limit_s`` after ``counted_from`` (its last
        record, or its feed's return after an outage of the whole feed)."""
        return Signal.new(
            source=self.source.name,
            kind="silent",
            entity=entity,
            ts=(last_seen if counted_from is None else counted_from) + limit_s,
            window_start=last_seen,
            window_s=0.0,
            score=0.6,
            severity="warning",
            model=MODEL,
            evidence={"last_seen": last_seen, "limit_s": limit_s, "cadence_s": limit_s / self.factor},
        )
