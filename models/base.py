"""The detector contract: what every detector declares, what the engine gives it, and what it returns.

A detector is named in a source declaration's ``detectors`` list and configured
by the table of the same name (``[vehicle]``, ``[anomaly]``...). The engine
builds one per source partition, bound to that partition's
:class:`~state.entity_state.EntityState`, and then, batch after batch, folds
the records into the state and calls :meth:`Detector.detect` with a
:class:`BatchContext`. What a detector keeps between batches lives in the
state's columns (one row per entity, named ``<detector name>.<column>``) and,
for a few partition-wide values, in the state's notes (:meth:`Detector.recall`,
:meth:`Detector.remember`), so a checkpoint holds all of it.

The contract every registered detector is held to (``tests/test_detector_contract.py``):

- the same records give the same signals however they are cut into batches;
- a checkpoint taken between two batches, restored into a fresh engine, gives
  the same signals as carrying on;
- a quiet normal day raises nothing but what the day's own events call for;
- its file, class, registry name and column prefix agree
  (``models/rules/night_flow.py``, ``NightFlow``, ``night_flow``, ``night_flow.*``).

A detector needs no engine to be tried: a state, a batch and its context.

>>> from models.catalog import load_sources
>>> from settings import Settings
>>> from streams.validation import Validator
>>> class Hot(Detector):
...     '''Raises ``hot`` for a value above 30.'''
...     name = "hot"
...     def detect(self, batch, rows, state, ctx):
...         return [Signal.new(source=self.source.name, kind="hot", entity=batch.entities[i], ts=batch.ts[i],
...                            window_start=batch.ts[i], window_s=0, score=1, severity="warning", model="hot@1",
...                            evidence={}) for i in np.flatnonzero(batch.columns["value"] > 30)]
>>> source = load_sources()["metric"]
>>> state = EntityState.for_source(source, Settings(), Hot.reads(source), Hot.keeps)
>>> hot = Hot(source, state)
>>> batch, _ = Validator(source, Settings()).validate([{"entity": "m1", "ts": 1767225600, "value": 31.0},
...                                                    {"entity": "m2", "ts": 1767225600, "value": 12.0}])
>>> rows = state.locate(batch.entities)
>>> sequence, prior = state.update(rows, batch.ts, batch.columns["value"][:, None])
>>> [s.entity for s in hot.detect(batch, rows, state, BatchContext(sequence, prior, state.watermark, RefData.empty()))]
['m1']
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from models.signal import Signal
from state.entity_state import EntityState
from state.refdata.reference import RefData
from state.sequence import EntitySequence
from streams.registry import Source
from streams.validation import Batch

Severity = Literal["info", "warning", "major", "critical"]
UtcOffsetHours = Annotated[
    float, Field(ge=-12, le=14, description="the local time zone of hours and days, in hours east of UTC")
]


class DetectorSettings(BaseModel):
    """Base of a detector's settings: unknown keys in its table are an error."""

    model_config = ConfigDict(extra="forbid")


class NoSettings(DetectorSettings):
    """A detector configured by nothing but the source itself."""


@dataclass(frozen=True, slots=True)
class BatchContext:
    """What the engine knows about a batch besides its records, given to every detector.

    ``sequence`` orders the batch's records per entity in event time;
    ``prior_last_ts`` is each record's (by batch position) entity event time
    before this batch (-inf for an entity first seen); ``watermark`` is the
    newest event time the partition has seen, this batch included.
    """

    sequence: EntitySequence
    prior_last_ts: np.ndarray
    watermark: float
    refdata: RefData


class Detector(ABC):
    """Reads a source's records batch by batch and raises :class:`~models.signal.Signal` objects."""

    name: ClassVar[str]  # in ``detectors = [...]``, and its columns' prefix
    table_key: ClassVar[str]  # its table in a declaration (default: its name)
    settings_model: ClassVar[type[BaseModel]] = NoSettings
    windows: ClassVar[dict[str, int]] = {}  # window -> closed buckets it reads
    keeps: ClassVar[frozenset[str]] = frozenset()  # optional state columns it reads (EntityState.OPTIONAL)

    def __init_subclass__(cls, **kwargs: Any):
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__ and "table_key" not in cls.__dict__:
            cls.table_key = cls.name

    def __init__(self, source: Source, state: EntityState):
        self.source = source
        self.settings = self.configure(source)

    @classmethod
    def settings_of(cls, source: Source) -> BaseModel:
        """This detector's table in the source's declaration, validated (its defaults when it has none);
        pydantic's ValidationError when it is wrong."""
        raw = source.tables.get(cls.table_key)
        return cls.settings_model() if raw is None else cls.settings_model.model_validate(raw)

    @classmethod
    def configure(cls, source: Source) -> BaseModel:
        """The settings for ``source``, also checked against its fields (ValueError from :meth:`check`)."""
        settings = cls.settings_of(source)
        cls.check(source, settings)
        return settings

    @classmethod
    def check(cls, source: Source, settings: Any) -> None:
        """Raise ValueError when the source's fields cannot carry these settings."""

    @classmethod
    def warm_up(cls) -> None:
        """Work done once per process before the first batch (compiling a loop), so that batch is not slow."""

    @classmethod
    def reads(cls, source: Source) -> dict[str, int]:
        """Window -> how many closed buckets this detector reads for ``source`` (sizes the state's rings)."""
        return dict(cls.windows)

    def slice_s(self) -> float | None:
        """Batches are cut where event time crosses a multiple of this (None: anywhere), for a detector that
        reads the state as of a window's end."""
        return None

    def max_span_s(self, state: EntityState) -> float:
        """The widest event-time span one update may cover before buckets this detector still has to
        judge leave the rings (the engine cuts wider batches into time slices)."""
        spans = [state.span_for_closures(window, n) for window, n in self.reads(self.source).items()]
        return min(spans, default=float("inf"))

    @abstractmethod
    def detect(self, batch: Batch, rows: np.ndarray, state: EntityState, ctx: BatchContext) -> list[Signal]:
        """Signals raised by ``batch``, whose records (of entity ``rows``) are already folded into ``state``."""

    def sweep(self, state: EntityState, now: float) -> list[Signal]:
        """Time-driven signals at event time ``now`` when no record arrives (a feed gone quiet)."""
        return []

    def use_refdata(self, ref: RefData) -> None:
        """A new reference-data version (sites, vehicles, zones, routes) for what it derives from it."""

    def use_model(self, model: Any, state: EntityState) -> None:
        """A promoted trained model (None: the built-in behaviour)."""

    def recall(self, state: EntityState, key: str, default: Any = None) -> Any:
        """A partition-wide value this detector remembered in ``state``'s notes."""
        return state.notes.get(f"{self.name}.{key}", default)

    def remember(self, state: EntityState, key: str, value: Any) -> None:
        """Keep a small JSON value in ``state``'s notes (checkpointed with the columns)."""
        state.notes[f"{self.name}.{key}"] = value


def needs_field(source: Source, detector: str, field: str, windowed: bool = False) -> None:
    """ValueError unless ``field`` is a numeric (and, if asked, windowed) field of ``source``."""
    spec = source.fields.get(field)
    if spec is None or not spec.numeric or (windowed and not spec.window):
        raise ValueError(
            f"the {detector} detector needs a numeric{' windowed' if windowed else ''} "
            f"field {field!r} (its [{detector}] table names it)"
        )
