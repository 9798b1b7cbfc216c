"""In-process replay: records from NDJSON files through the same detection code, no broker.

Each source gets one :class:`~models.engine.SourceEngine` over all its
entities; per-entity state does not depend on partitioning or batching, so the
signals are those a live worker raises for the same records, and merged by an
:class:`~models.incidents.IncidentBook` they give the same alerts (same ids).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from models.engine import SourceEngine
from settings import Settings
from streams.registry import Registry

CHUNK = 20_000


@dataclass
class ReplaySummary:
    records: int = 0
    accepted: int = 0
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


def replay(records: Iterable[object], registry: Registry, settings: Settings, *, source: str | None = None,
           on_signal: Callable[[dict], None], on_progress: Callable[[int], None] | None = None) -> ReplaySummary:
    """Run ``records`` through the engines in order; ``on_signal`` gets every detector signal."""
    engines: dict[str, SourceEngine] = {}
    pending: dict[str, list] = defaultdict(list)
    summary = ReplaySummary()

    def run(name: str) -> None:
        batch, pending[name] = pending[name], []
        engine = engines.get(name)
        if engine is None:
            engine = engines[name] = SourceEngine(registry[name], settings)
        out = engine.process(batch)
        summary.accepted += out.accepted
        summary.rejects.update(r.reason for r in out.rejects)
        for sig in out.signals:
            on_signal(sig)
        summary.signals += len(out.signals)
        if on_progress:
            on_progress(len(batch))

    for record in records:
        summary.records += 1
        name = record.get("source", source) if isinstance(record, dict) else source
        if name is None or name not in registry:
            summary.rejects["unknown_source" if isinstance(record, dict) else "not_json"] += 1
            continue
        if not isinstance(record, dict) and not isinstance(record, list):
            summary.rejects["not_json"] += 1
            continue
        pending[name].append(record)
        if len(pending[name]) >= CHUNK:
            run(name)
    for name in list(pending):
        if pending[name]:
            run(name)
    return summary
