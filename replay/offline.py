"""In-process replay: records from NDJSON files or the archive through the same detection code, no broker.

Each (source, partition) gets its own :class:`~models.engine.SourceEngine`,
as live; per-entity state does not depend on batching, so the signals are
those a live worker raises for the same records, and merged by an
:class:`~models.incidents.IncidentBook` they give the same alerts (same ids).
Archived records come with the partition that processed them live; NDJSON
records are split by partition exactly as the live topics split them.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from models.engine import SourceEngine
from models.signal import Signal
from models.versions import ModelVersion
from replay.archive import Chunk
from settings import Settings
from state.refdata.reference import RefData
from streams.kafka.partitioner import partition_for
from streams.record_schema import RecordSchema, plain
from streams.registry import Registry

CHUNK = 20_000


@dataclass
class ReplaySummary:
    records: int = 0
    accepted: int = 0
    duplicates: int = 0
    signals: int = 0
    rejects: Counter = field(default_factory=Counter)


def read_ndjson(paths: Iterable[Path]) -> Iterator[object]:
    """Each line of each file, parsed; an unreadable line comes back as the bytes it was."""
    for path in paths:
        with open(path, "rb") as f:
            for line in f:
                line = line.strip()
                if line:
                    try:
                        yield orjson.loads(line)
                    except orjson.JSONDecodeError:
                        yield line


class Engines:
    """One engine per (source, partition), created on first use, with the given model versions."""

    def __init__(
        self,
        registry: Registry,
        settings: Settings,
        *,
        refdata: RefData | None = None,
        models: dict[str, ModelVersion] | None = None,
        on_signal: Callable[[Signal], None],
        on_progress: Callable[[int], None] | None = None,
        setup: Callable[[SourceEngine], None] | None = None,
    ):
        self.registry, self.settings, self.refdata, self.models = registry, settings, refdata, models or {}
        self.on_signal, self.on_progress, self.setup = on_signal, on_progress, setup
        self.engines: dict[tuple[str, int], SourceEngine] = {}
        self.schemas: dict[str, RecordSchema | None] = {}
        self.summary = ReplaySummary()

    def engine(self, source: str, partition: int) -> SourceEngine:
        found = self.engines.get((source, partition))
        if found is None:
            found = self.engines[(source, partition)] = SourceEngine(
                self.registry[source], self.settings, refdata=self.refdata, model=self.models.get(source)
            )
            if self.setup:
                self.setup(found)
        return found

    def schema(self, source: str) -> RecordSchema | None:
        if source not in self.schemas:
            self.schemas[source] = (
                RecordSchema.for_source(self.registry[source], self.settings) if source in self.registry else None
            )
        return self.schemas[source]

    def record_type(self, source: str) -> type | None:
        """The struct type archived records of ``source`` are read as (``read_records(record_type=...)``)."""
        schema = self.schema(source)
        return schema.record if schema is not None else None

    def sweep(self, source: str, partition: int, now: float) -> None:
        """The time-driven signals of a partition's idle feed at event time ``now``, as live."""
        self._emit(self.engine(source, partition).sweep(now))

    def flush(self) -> None:
        """The input has ended: every engine's held records are released (``SourceEngine.flush``)."""
        for engine in self.engines.values():
            self._emit(engine.flush())

    def _emit(self, signals: list[Signal]) -> None:
        for sig in signals:
            self.on_signal(sig)
        self.summary.signals += len(signals)

    def run(self, source: str, partition: int, batch: list, typed: bool = False) -> None:
        """``batch``: records as dicts, or (``typed``) as the source's record structs."""
        engine = self.engine(source, partition)
        valid = self.schema(source).batch(batch) if typed else None
        if valid is not None:
            out = engine.process_batch(valid)
        else:  # the validator says which records it refuses, and why
            out = engine.process([plain(r) for r in batch] if typed else batch)
        summary = self.summary
        summary.records += len(batch)
        summary.accepted += out.accepted
        summary.duplicates += out.duplicates
        summary.rejects.update(r.reason for r in out.rejects)
        self._emit(out.signals)
        if self.on_progress:
            self.on_progress(len(batch))


def replay_archive(chunks: Iterable[Chunk], engines: Engines) -> ReplaySummary:
    """Archived chunks through their partition's engine, in the order they were archived (a sweep where the
    live worker swept its idle feed). What the live engines still held for event order at the log's end stays
    held here too."""
    for chunk in chunks:
        if chunk.sweep is not None:
            if chunk.source in engines.registry:
                engines.sweep(chunk.source, chunk.partition, chunk.sweep)
        elif chunk.source in engines.registry:
            engines.run(chunk.source, chunk.partition, chunk.records, chunk.typed)
        else:
            engines.summary.records += len(chunk.records)
            engines.summary.rejects["unknown_source"] += len(chunk.records)
    return engines.summary


def replay(
    records: Iterable[object],
    registry: Registry,
    settings: Settings,
    *,
    source: str | None = None,
    refdata: RefData | None = None,
    models: dict[str, ModelVersion] | None = None,
    on_signal: Callable[[Signal], None],
    on_progress: Callable[[int], None] | None = None,
    ended: bool = True,
) -> ReplaySummary:
    """Run ``records`` through the engines in order; ``on_signal`` gets every detector signal.

    Records are split by partition exactly as the live topics split them
    (``WARDEN_PARTITIONS``), each partition with its own engine, so detectors
    that compare an entity with its partition's peers see what they saw live.
    ``ended``: the records are the whole input, so at their end what engines
    hold for event order is released; False for a stream that goes on (what
    is held stays held, as in a live worker).
    """
    engines = Engines(registry, settings, refdata=refdata, models=models, on_signal=on_signal, on_progress=on_progress)
    pending: dict[tuple[str, int], list] = defaultdict(list)
    partitions = {name: s.partition_count(settings.partitions) for name, s in registry.items()}
    schemes = {name: s.scheme(settings.partitioner) for name, s in registry.items()}
    entity_field = {name: s.entity_field for name, s in registry.items()}
    key_of: dict[str, dict[str, tuple[str, int]]] = {name: {} for name in registry}  # entity -> engine key
    summary = engines.summary

    def run(key: tuple[str, int]) -> None:
        batch, pending[key] = pending[key], []
        engines.run(key[0], key[1], batch)

    # The per-record loop is replay's hot path: plain dict lookups only.
    n = 0
    for n, record in enumerate(records, start=1):  # noqa: B007 - the count read after the loop
        if type(record) is not dict:
            summary.rejects["not_object" if isinstance(record, list) else "not_json"] += 1
            continue
        name = record.get("source", source)
        keys = key_of.get(name)
        if keys is None:
            summary.rejects["unknown_source"] += 1
            continue
        entity = record.get(entity_field[name])
        key = keys.get(entity) if type(entity) is str else (name, 0)
        if key is None:
            key = keys[entity] = (name, partition_for(entity, partitions[name], schemes[name]))
        batch = pending[key]
        batch.append(record)
        if len(batch) >= CHUNK:
            run(key)
    for key in list(pending):
        if pending[key]:
            run(key)
    if ended:
        engines.flush()
    summary.records = n
    return summary
