"""A period of the archive: the segments of a source (or all) between two event times, read back in order.

Segments that cannot be read are collected in :attr:`ArchivePeriod.corrupt`
(and skipped), so a damaged file costs its own records, not the whole replay.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from itertools import groupby
from pathlib import Path

from replay.archive import Chunk, read_records, segments
from streams.event_time import iso


class PeriodError(ValueError):
    """No archive, or no archived records in the period; ``corrupt``: the segments skipped on the way."""

    def __init__(self, message: str, corrupt: list | None = None):
        super().__init__(message)
        self.corrupt = corrupt or []


class ArchivePeriod:
    """The archived segments under ``root`` of ``source`` (None: every source) with records in
    [``since``, ``until``) (None: open), optionally of one ``entity``."""

    def __init__(
        self,
        root: Path,
        source: str | None = None,
        since: float | None = None,
        until: float | None = None,
        entity: str | None = None,
        entity_field: Callable[[str], str] = lambda source: "entity",
    ):
        self.root, self.source, self.entity = root, source, entity
        self.since, self.until = since, until
        self.entity_field = entity_field
        self.corrupt: list = []
        if not root.is_dir():
            raise PeriodError(f"no archive at {root} (workers write it when WARDEN_ARCHIVE_ENABLED is on)")
        self.found = segments(root, source, since, until, on_corrupt=self.corrupt.append)
        if not self.found:
            raise PeriodError(
                f"no archived records{f' of source {source!r}' if source else ''} in {self.span()} under "
                f"{root} (`warden archive list` shows what is there)",
                self.corrupt_paths(),
            )
        self.records = sum(s.entry["records"] for s in self.found)

    def span(self) -> str:
        """The period in words."""
        if self.since is None and self.until is None:
            return "any period"
        lo = iso(self.since) if self.since is not None else "the beginning"
        hi = iso(self.until) if self.until is not None else "the end"
        return f"{lo} .. {hi}"

    def chunks(self, found: list | None = None, record_type=lambda source: None) -> Iterator[Chunk]:
        """The period's records (of ``found`` segments, default all), chunk by chunk in archive order."""
        return read_records(
            self.found if found is None else found,
            since=self.since,
            until=self.until,
            entity=self.entity,
            on_corrupt=self.corrupt.append,
            record_type=record_type,
            entity_field=self.entity_field,
        )

    def by_partition(self) -> list[Iterator[Chunk]]:
        """The period's records, one reader per source partition."""
        return [
            self.chunks(list(g))
            for _, g in groupby(self.found, key=lambda s: (s.entry["source"], s.entry["partition"]))
        ]

    def corrupt_paths(self) -> list:
        """Each unreadable segment once (its error), in the order found."""
        seen: dict[str, object] = {}
        for exc in self.corrupt:
            seen.setdefault(str(exc.path), exc)
        return list(seen.values())
