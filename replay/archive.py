"""The replay-log archive: segments per source, partition and event-time hour; reading them back.

Layout under the archive folder::

    <source>/p<partition>/<YYYYmmddTHH>-<run>-<first offset>.wseg   segment (see replay.segments)
    <source>/p<partition>/<YYYYmmddTHH>-<run>-<first offset>.json   its index entry, once sealed
    labels/*.ndjson                                                 staff marks and ground-truth files

A *run* is one life of a partition's offsets: it begins when a worker starts
the partition with no checkpoint (a new topic, or a new embedded broker whose
offsets restart at 0) and continues through every restart that restores a
checkpoint, which carries the run id. Within a run each Kafka offset is
archived once: the writer starts after the run's last offset on disk, so
records a restarted worker processes again (from its checkpoint) are not
archived twice. Replay reads a partition run by run, in offset order.

>>> import tempfile, pathlib, numpy as np
>>> root = pathlib.Path(tempfile.mkdtemp())
>>> part = PartitionArchive(root, "metric", 0)
>>> part.append(np.array([0, 1, 2]), np.array([0.0, 3599.0, 3600.0]), [{"v": 0}, {"v": 1}, {"v": 2}])
>>> part.close()
>>> [(s.entry["hour"], s.entry["records"]) for s in segments(root)]
[(0, 2), (1, 1)]
>>> PartitionArchive(root, "metric", 0, run=part.run).last_offset, PartitionArchive(root, "metric", 0).last_offset
(2, -1)
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import orjson

from replay import segments as seg
from replay.segments import CorruptSegment, SegmentWriter

HOUR = 3600
ENTRY_KEYS = {
    "source",
    "partition",
    "hour",
    "run",
    "first_offset",
    "last_offset",
    "records",
    "min_ts",
    "max_ts",
    "bytes",
}
LABELS = "labels"


def _hour_name(hour: int) -> str:
    return datetime.fromtimestamp(hour * HOUR, UTC).strftime("%Y%m%dT%H")


def _partition_dir(root: Path, source: str, partition: int) -> Path:
    return root / source / f"p{partition:04d}"


class PartitionArchive:
    """Writes one source partition's accepted records: each batch one compressed frame, durable at :meth:`sync`."""

    def __init__(self, root: Path, source: str, partition: int, level: int = 3, run: str | None = None):
        self.dir = _partition_dir(root, source, partition)
        self.source, self.partition, self.level = source, partition, level
        self.run = run or _new_run()
        self.writer: SegmentWriter | None = None
        self.hour = -1
        self.last_segment: Path | None = None  # the sealed segment holding the run's last offset, when restarted
        self.last_offset = self._recover() if run else -1

    def _recover(self) -> int:
        """Seal this run's segments a crash left open; the run's last offset on disk (-1 for none), its segment
        in :attr:`last_segment`."""
        last = -1
        if not self.dir.is_dir():
            return last
        for path in sorted(self.dir.glob(f"*-{self.run}-*" + seg.SUFFIX)):
            index = seg.index_path(path)
            try:
                entry = (
                    orjson.loads(index.read_bytes())
                    if index.exists()
                    else seg.recover(path, **_named(path), source=self.source, partition=self.partition)
                )
            except CorruptSegment:
                continue  # reported by whoever reads it; its offsets are not taken as archived
            if not entry["records"]:  # killed before a frame reached it: the run writes that segment again
                path.unlink()
                index.unlink(missing_ok=True)
            elif entry["last_offset"] is not None and entry["last_offset"] > last:
                last, self.last_segment = entry["last_offset"], path
        return last

    def append(
        self,
        offsets: np.ndarray,
        ts: np.ndarray,
        records: list,
        spans: list[tuple[int, int, bytes]] = (),
        encode: Callable[[list], bytes] | None = None,
    ) -> None:
        """Accepted records in offset order (dicts, or each one's JSON as bytes), with their offsets and
        event times (epoch s); ``spans``: runs of them as they came, ``encode``: how the others are written
        (see :meth:`SegmentWriter.append`).

        Offsets at or below :attr:`last_offset` are already archived and skipped. A record
        goes to the segment of the newest event-time hour seen so far (up to the last record of its
        message), so one arriving late stays in the newer segment (each segment's index keeps its true
        time range).
        """
        new = offsets > self.last_offset
        if not new.any():
            return
        if not new.all():
            keep = np.flatnonzero(new)
            offsets, ts, records = offsets[keep], ts[keep], [records[i] for i in keep.tolist()]
            spans = ()  # partly archived before (a batch seen again after a restore): encoded
        hours = np.maximum.accumulate(np.maximum(np.floor(ts / HOUR).astype(np.int64), self.hour))
        # A message's records stay in one frame (the hour of its last): a frame on disk holds whole messages, so
        # after a crash the run's last offset on disk is a message archived whole.
        hours = hours[np.searchsorted(offsets, offsets, side="right") - 1]
        cuts = np.flatnonzero(np.diff(hours)) + 1
        for a, b in zip([0, *cuts.tolist()], [*cuts.tolist(), len(hours)]):
            hour = int(hours[a])
            if hour != self.hour:
                self._rotate(hour, int(offsets[a]))
            # A span cut by the hour goes in encoded.
            self.writer.append(
                offsets[a:b].tolist(),
                ts[a:b].tolist(),
                records[a:b],
                [(s - a, e - a, raw) for s, e, raw in spans if a <= s and e <= b],
                encode,
            )
        self.last_offset = int(offsets[-1])

    def sweep(self, now: float, sync: bool = False) -> None:
        """A sweep the live engine ran at event time ``now`` on an idle feed, after the records appended so far
        (into the run's last segment, opened again after a restart; none in the run yet: nothing to sweep, and
        none written); ``sync``: durable now (it raised signals)."""
        if self.writer is None:
            if self.last_segment is None:
                return
            self.writer = SegmentWriter.resume(self.last_segment, self.level)
            self.hour = self.writer.entry["hour"]
        self.writer.sweep(now)
        if sync:
            self.writer.sync()

    def sync(self) -> None:
        """Everything appended is on disk: call before committing the offsets it covers."""
        if self.writer is not None:
            self.writer.sync()

    def abandon(self) -> None:
        """Let go of the open segment after a write failed, unsealed (a reopen recovers it)."""
        if self.writer is not None:
            self.writer.abandon()
            self.writer = None

    def close(self) -> None:
        """Seal the open segment (on shutdown, revocation)."""
        if self.writer is not None:
            self.writer.seal()
            self.writer = None

    def _rotate(self, hour: int, first_offset: int) -> None:
        if self.writer is not None:
            self.writer.seal()
        self.hour = hour
        path = self.dir / f"{_hour_name(hour)}-{self.run}-{first_offset:012d}{seg.SUFFIX}"
        self.writer = SegmentWriter(
            path, source=self.source, partition=self.partition, hour=hour, run=self.run, level=self.level
        )


_last_run = 0


def _new_run() -> str:
    """A run id: wall-clock milliseconds, so later runs sort after earlier ones (unique in a process)."""
    global _last_run
    _last_run = max(time.time_ns() // 1_000_000, _last_run + 1)
    return f"{_last_run:013d}"


def _named(path: Path) -> dict:
    """hour and run from a segment's file name."""
    hour, run, _ = path.stem.split("-")
    stamp = datetime.strptime(hour, "%Y%m%dT%H").replace(tzinfo=UTC)
    return {"hour": int(stamp.timestamp()) // HOUR, "run": run}


@dataclass(slots=True)
class Segment:
    path: Path
    entry: dict  # the index entry; for an unsealed segment, what a scan of it found
    sealed: bool


def segments(
    root: Path,
    source: str | None = None,
    since: float | None = None,
    until: float | None = None,
    on_corrupt: Callable[[CorruptSegment], None] | None = None,
) -> list[Segment]:
    """Segments holding records of ``source`` with event times in [since, until), in replay order
    (source, partition, run, first offset). An unsealed segment (being written, or cut by a crash) is
    scanned for its range; one that cannot be read goes to ``on_corrupt``."""
    found = []
    for src_dir in sorted(p for p in root.glob("*") if p.is_dir() and p.name != LABELS):
        if source is not None and src_dir.name != source:
            continue
        for path in sorted(src_dir.glob("p*/*" + seg.SUFFIX)):
            index = seg.index_path(path)
            try:
                if index.exists():
                    entry, sealed = orjson.loads(index.read_bytes()), True
                    if not isinstance(entry, dict) or not entry.keys() >= ENTRY_KEYS:
                        raise CorruptSegment(path, 0, f"its index {index.name} is not a segment index", 0)
                else:
                    entry, sealed = _scan(path, src_dir.name), False
            except (CorruptSegment, orjson.JSONDecodeError, OSError, ValueError) as exc:
                if on_corrupt:
                    on_corrupt(exc if isinstance(exc, CorruptSegment) else CorruptSegment(path, 0, str(exc), 0))
                continue
            if not entry["records"]:
                continue
            if (since is not None and entry["max_ts"] < since) or (until is not None and entry["min_ts"] >= until):
                continue
            found.append(Segment(path, entry, sealed))
    found.sort(key=lambda s: (s.entry["source"], s.entry["partition"], s.entry["run"], s.entry["first_offset"]))
    return found


def _scan(path: Path, source: str) -> dict:
    entry = seg.empty_entry(
        path, path.stat().st_size, source=source, partition=int(path.parent.name[1:]), **_named(path)
    )
    for frame in seg.read(path, verify=False):
        seg.account(entry, frame.offsets, frame.ts, 0)
    return entry


@dataclass(slots=True)
class Chunk:
    """Archived records of one source partition, in the order the live worker processed them."""

    source: str
    partition: int
    records: list
    ts: list[float]  # event times (epoch s), one per record
    typed: bool = False  # the records are structs of the source's record type (see read_records), not dicts
    sweep: float | None = None  # no records: a sweep the live engine ran at this event time (feed idle)


def read_records(
    found: list[Segment],
    *,
    since: float | None = None,
    until: float | None = None,
    entity: str | None = None,
    entity_field: Callable[[str], str] = lambda s: "entity",
    on_corrupt: Callable[[CorruptSegment], None] | None = None,
    record_type: Callable[[str], type | None] = lambda s: None,
) -> Iterator[Chunk]:
    """The records of ``found`` segments (filtered by event time and entity), one chunk per frame.

    A corrupt segment is skipped whole and goes to ``on_corrupt``: replay goes on with the rest.
    ``record_type(source)``: a msgspec struct type to read that source's records as, where they fit it
    (see :func:`replay.segments.read`; not with an ``entity`` filter, which reads them as dicts).
    """
    for s in found:
        src, part = s.entry["source"], s.entry["partition"]
        field = entity_field(src)
        try:
            for frame in seg.read(
                s.path,
                size=s.entry["bytes"] if s.sealed else None,
                record_type=record_type(src) if entity is None else None,
            ):
                if frame.sweep is not None:
                    if (since is None or frame.sweep >= since) and (until is None or frame.sweep < until):
                        yield Chunk(src, part, [], [], sweep=frame.sweep)
                    continue
                records, ts = frame.records, frame.ts
                if since is not None or until is not None:
                    t = np.asarray(ts)
                    keep = np.ones(len(t), dtype=bool)
                    if since is not None:
                        keep &= t >= since
                    if until is not None:
                        keep &= t < until
                    if not keep.all():
                        pick = np.flatnonzero(keep).tolist()
                        records, ts = [records[i] for i in pick], [ts[i] for i in pick]
                if entity is not None:
                    pick = [i for i, r in enumerate(records) if r.get(field) == entity]
                    records, ts = [records[i] for i in pick], [ts[i] for i in pick]
                if records:
                    yield Chunk(src, part, records, ts, frame.typed)
        except CorruptSegment as exc:
            if on_corrupt:
                on_corrupt(exc)


def prune(root: Path, now: float, retention_s: float, max_bytes: int) -> list[Path]:
    """Delete sealed segments whose newest record is older than ``retention_s`` before ``now``, then
    the oldest ones until the archive is within ``max_bytes``; returns what was deleted."""
    sealed = [s for s in segments(root) if s.sealed]
    sealed.sort(key=lambda s: s.entry["max_ts"])
    total = sum(s.entry["bytes"] for s in sealed)
    gone = []
    for s in sealed:
        if s.entry["max_ts"] >= now - retention_s and total <= max_bytes:
            break
        total -= s.entry["bytes"]
        s.path.unlink(missing_ok=True)
        seg.index_path(s.path).unlink(missing_ok=True)
        gone.append(s.path)
    return gone


def append_labels(root: Path, name: str, labels: list[dict]) -> Path:
    """Append labels (one JSON object each) to ``labels/<name>.ndjson`` and fsync it."""
    path = root / LABELS / f"{name}.ndjson"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab") as f:
        f.write(b"".join(orjson.dumps(x) + b"\n" for x in labels))
        f.flush()
        os.fsync(f.fileno())
    return path


def label_files(root: Path) -> list[Path]:
    return sorted((root / LABELS).glob("*.ndjson"))
