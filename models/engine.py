"""The detection core for one source on one partition: validate, put in event order, fold into state, detect.

Faust agents call it live; replay calls it on archived records. It has no Kafka
in it and is deterministic: the same records in the same order give the same
signals and state, however they are cut into batches; and any order in which
each record arrives at most the source's lateness after its event time gives
the signals of event-time order. Accepted records wait until no earlier one of
their entity can still come (``EntityState.release``), so signals come the
lateness after their event; :meth:`SourceEngine.flush` lets the rest go at the
end of a finite input.

>>> from models.catalog import load_sources
>>> engine = SourceEngine(load_sources()["power"])
>>> sag = [{"entity": "m-1", "ts": 1700000000 + 60 * i, "kwh": 1.0, "kw": 0.5, "voltage": 150.0} for i in range(3)]
>>> out = engine.process([*sag, {"entity": 5}])
>>> [s.kind for s in out.signals], [r.reason for r in out.rejects], [s.kind for s in engine.flush()]
([], ['wrong_type'], ['voltage_low'])
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from models import catalog
from models.base import BatchContext
from models.grouping import Episodes, Groups
from models.signal import BUILTIN, Signal
from models.versions import ModelVersion
from settings import Settings, get_settings
from state.entity_state import EntityState
from state.refdata.reference import RefData
from streams.registry import Source
from streams.validation import Batch, Reject, Validator


@dataclass(slots=True)
class Outcome:
    """What processing one message's records produced."""

    signals: list[Signal] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    forward: list[int] = field(default_factory=list)  # positions owned by another partition
    duplicates: int = 0  # records that repeat one already taken (same entity, time and fields): changed nothing
    accepted: int = 0  # held to be released in event order (see EntityState.release)
    positions: np.ndarray | None = None  # of the accepted records, in order
    ts: np.ndarray | None = None  # their event times (epoch s)


class SourceEngine:
    """Runs one source's records through validation, state and its detectors."""

    def __init__(
        self,
        source: Source,
        settings: Settings | None = None,
        state: EntityState | None = None,
        refdata: RefData | None = None,
        model: ModelVersion | None = None,
    ):
        settings = settings or get_settings()
        self.source = source
        self.validator = Validator(source, settings)
        self.state = state or EntityState.for_source(
            source, settings, catalog.windows_needed(source), catalog.keeps_needed(source)
        )
        self.detectors = catalog.build(source, self.state)
        self._numeric = source.numeric_fields
        self._max_span = min((d.max_span_s(self.state) for d in self.detectors), default=float("inf"))
        if self._max_span <= 0:
            raise ValueError(
                f"source {source.name!r}: window rings too short for its detectors "
                "(raise the 1h ring in WARDEN_WINDOWS)"
            )
        self.groups, self.episodes = Groups(source.groups), Episodes(source.episodes)
        self.refdata = RefData.empty()
        self.use_refdata(refdata or self.refdata)
        self.model: ModelVersion | None = None
        self.model_version = BUILTIN
        self.use_model(model)

    def use_refdata(self, ref: RefData) -> None:
        """Give detectors that consult reference data (sites, vehicles, zones, routes) a new version."""
        self.refdata = ref
        self.state.forget_lookups()
        for detector in self.detectors:
            detector.use_refdata(ref)

    def use_model(self, model: ModelVersion | None) -> None:
        """Run with a trained model version (None: the built-in detectors only); entity state is kept."""
        if model is not None and model.source != self.source.name:
            raise ValueError(f"model version {model.version} is for {model.source!r}, not {self.source.name!r}")
        self.model, self.model_version = model, model.version if model else BUILTIN
        for detector in self.detectors:
            detector.use_model(model.window_model if model else None, self.state)

    def process(self, records: list, owner: Callable[[list[str]], np.ndarray] | None = None) -> Outcome:
        """Process records in order; ``owner(entities)`` says which entities new to this state the
        partition owns (records of the others are to be forwarded)."""
        batch, rejects = self.validator.validate(records)
        return self.process_batch(batch, owner, rejects)

    def process_batch(
        self, batch: Batch, owner: Callable[[list[str]], np.ndarray] | None = None, rejects: list[Reject] | None = None
    ) -> Outcome:
        """Process records already validated into ``batch`` (its positions index the records it came
        from; ``rejects``: the ones refused), as :meth:`process` does."""
        out = Outcome(rejects=rejects or [])
        rows = self.state.locate(batch.entities, owner)
        if owner is not None and len(batch):
            mine = rows >= 0
            if not mine.all():
                out.forward = batch.positions[~mine].tolist()
                batch, rows = batch.take(mine), rows[mine]
        late = self.state.late(rows, batch.ts)
        if late.any():
            out.rejects += [
                Reject(
                    int(p),
                    "late",
                    f"event time more than {self.state.lateness_s:g} s behind the entity's latest, "
                    "or before a record of the entity already judged",
                )
                for p in batch.positions[late]
            ]
            out.rejects.sort(key=lambda r: r.position)
            batch, rows = batch.take(~late), rows[~late]
        repeated = self.state.duplicates(rows, batch.ts, batch.prints())
        if repeated.any():
            out.duplicates = int(repeated.sum())
            batch, rows = batch.take(~repeated), rows[~repeated]
        out.accepted, out.positions, out.ts = len(batch), batch.positions, batch.ts
        self.state.hold(rows, batch.ts, batch.columns, batch.strings)
        out.signals = self._released(self.state.release())
        return out

    def sweep(self, now: float) -> list[Signal]:
        """At the partition's clock ``now`` (an idle timer's tick): the records held that it lets go, then
        time-driven signals (silence, windows of entities gone quiet) as of ``now`` less the lateness, the
        time up to which every record has come."""
        if not len(self.state):
            return []
        released = self._released(self.state.release(now, idle=True))
        judged = now - self.state.lateness_s
        return released + self._stamped([s for d in self.detectors for s in d.sweep(self.state, judged)])

    def flush(self) -> list[Signal]:
        """The end of a finite input (a file replayed, a data set scored): every record held is released."""
        return self._released(self.state.release(np.inf))

    def _released(self, released: tuple | None) -> list[Signal]:
        """Signals of records the hold let go (``EntityState.release``), as one batch in event order."""
        if released is None:
            return []
        rows, ts, prints, columns, strings = released
        batch = Batch(np.arange(len(rows)), self.state.slots.names(rows), ts, columns, strings)
        signals = []
        for piece in self._time_slices(batch, rows):
            whole = len(piece) == len(batch)
            signals += self._fold_and_detect(batch if whole else batch.take(piece), rows[piece], prints[piece])
        return signals

    def _stamped(self, signals: list[Signal]) -> list[Signal]:
        """The signals with the model version, each one's episode kind and group (:mod:`models.grouping`)."""
        for sig in signals:
            sig.model_version = self.model_version
            if self.episodes.kinds:
                sig.kind = self.episodes(sig.kind)
            if self.groups.scopes:
                sig.group = self.groups.of(sig.kind, sig.entity, self.refdata)
        return signals

    def _time_slices(self, batch: Batch, rows: np.ndarray) -> list[np.ndarray]:
        """Consecutive pieces (index ranges) of the batch (in event order), each narrow enough for the detectors.

        Folding a piece advances each window ring to the piece's newest record;
        detectors that evaluate closed buckets say how wide a piece may be
        before buckets they still need are evicted, and one that reads the
        state as of a bucket's end has pieces cut at bucket ends
        (``Detector.slice_s``). Slicing keeps their results independent of
        batching.
        """
        if not len(batch):
            return []
        span, ts = self._max_span, batch.ts
        cut = min((s for d in self.detectors if (s := d.slice_s())), default=None)
        cuts = np.flatnonzero(np.diff(np.floor(ts / cut))) + 1 if cut else np.empty(0, np.int64)
        wide = float(ts[-1] - ts[0]) >= span and _entity_span(rows, ts) >= span
        if not len(cuts) and not wide:
            return [np.arange(len(batch))]
        bounds = [0]
        while wide and (nxt := int(np.searchsorted(ts, ts[bounds[-1]] + span))) < len(ts):
            bounds.append(nxt)
        bounds = sorted({*bounds, *cuts.tolist(), len(batch)})
        return [np.arange(a, b) for a, b in itertools.pairwise(bounds) if b > a]

    def _fold_and_detect(self, batch: Batch, rows: np.ndarray, prints: np.ndarray) -> list[Signal]:
        numeric = (
            np.column_stack([batch.columns[f] for f in self._numeric]) if self._numeric else np.empty((len(batch), 0))
        )
        sequence, prior_last_ts = self.state.update(rows, batch.ts, numeric, prints)
        ctx = BatchContext(sequence, prior_last_ts, self.state.watermark, self.refdata)
        alerts = []
        for detector in self.detectors:
            alerts += detector.detect(batch, rows, self.state, ctx)
        return self._stamped(alerts)


def _entity_span(rows: np.ndarray, ts: np.ndarray) -> float:
    """The widest event-time span of any one entity's records in the batch."""
    _, group = np.unique(rows, return_inverse=True)
    low = np.full(group.max() + 1, np.inf)
    high = np.full(group.max() + 1, -np.inf)
    np.minimum.at(low, group, ts)
    np.maximum.at(high, group, ts)
    return float((high - low).max())
