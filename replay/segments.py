"""Replay-log segments: append-only files of zstandard frames, sealed with an index entry.

A segment holds records of one source partition in offset order. Each frame
is one batch the engine accepted: a 4-byte little-endian length, then a zstd
frame (with its content checksum) of the JSON ``{"o": offsets, "t": event
times, "r": records}``; a frame with no records and ``"w": now`` is a sweep the
live worker ran on an idle feed (see :meth:`SegmentWriter.sweep`). Sealing fsyncs the file and writes its index entry
(``<segment>.json``: offsets, event-time range, record count, bytes) by atomic
rename. A segment left open by a crash is still readable up to its last whole
frame; :func:`recover` cuts the torn tail and seals it.

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "s.wseg"
>>> w = SegmentWriter(path, source="metric", partition=0, hour=0, run="1")
>>> w.append([7, 7, 8], [60.0, 61.0, 62.0], [{"v": 1}, {"v": 2}, {"v": 3}])
>>> entry = w.seal()
>>> entry["records"], entry["first_offset"], entry["last_offset"], [len(f.records) for f in read(path)]
(3, 7, 8, [3])
"""

from __future__ import annotations

import contextlib
import os
import struct
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import msgspec
import orjson
import zstandard

MAGIC = b"WSEG1\n"
SUFFIX = ".wseg"
_LEN = struct.Struct("<I")


class CorruptSegment(Exception):
    """A segment whose bytes do not decode: where it broke and what was readable before that."""

    def __init__(self, path: Path, at: int, reason: str, frames_ok: int):
        super().__init__(f"{path}: corrupt at byte {at} ({reason}); {frames_ok} whole frame(s) before it")
        self.path, self.at, self.reason, self.frames_ok = path, at, reason, frames_ok


@dataclass(slots=True)
class Frame:
    offsets: list[int]
    ts: list[float]
    records: list
    typed: bool = False  # the records are structs of the record type asked for, not dicts
    sweep: float | None = None  # a sweep at this event time, between the frames before and after it


_contexts = threading.local()


def _compressor(level: int) -> zstandard.ZstdCompressor:
    """One compression context per level and thread (a context holds megabytes and segments are many;
    a context must not be shared by threads)."""
    found = getattr(_contexts, "by_level", None)
    if found is None:
        found = _contexts.by_level = {}
    if level not in found:
        found[level] = zstandard.ZstdCompressor(level=level, write_checksum=True)
    return found[level]


def index_path(segment: Path) -> Path:
    return segment.with_suffix(".json")


def empty_entry(path: Path, size: int = len(MAGIC), **known) -> dict:
    """The index entry of a segment with no frame yet (``known``: source, partition, hour, run)."""
    return {
        **known,
        "segment": path.name,
        "first_offset": None,
        "last_offset": None,
        "records": 0,
        "frames": 0,
        "min_ts": None,
        "max_ts": None,
        "bytes": size,
    }


class SegmentWriter:
    """Appends accepted batches to one segment; :meth:`sync` makes them durable, :meth:`seal` closes it."""

    def __init__(self, path: Path, *, source: str, partition: int, hour: int, run: str, level: int = 3):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.entry = empty_entry(path, source=source, partition=partition, hour=hour, run=run)
        self.level = level
        self._file = open(path, "xb")
        self._file.write(MAGIC)

    @classmethod
    def resume(cls, path: Path, level: int = 3) -> SegmentWriter:
        """A sealed segment opened to append again (its index removed until it is sealed anew)."""
        writer = cls.__new__(cls)
        writer.path, writer.level = path, level
        writer.entry = orjson.loads(index_path(path).read_bytes())
        writer._file = open(path, "ab")
        index_path(path).unlink()
        return writer

    def append(
        self,
        offsets: list[int],
        ts: list[float],
        records: list,
        spans: list[tuple[int, int, bytes]] = (),
        encode: Callable[[list], bytes] | None = None,
    ) -> None:
        """One frame of records (in offset order) with their Kafka offsets and event times. ``records``
        are dicts, or each record's JSON as bytes (as it came: it goes in without being encoded again).
        ``spans`` (start, end, raw): ``records[start:end]`` as they came, comma-separated JSON (an array
        message's elements); those go in as sent too. ``encode``: records (not in a span) to comma-separated
        JSON, for records orjson cannot encode alone."""
        if not records:
            return
        joined = b",".join(records) if type(records[0]) is bytes else _joined(records, spans, encode or _dicts)
        doc = b'{"o":%b,"t":%b,"r":[%b]}' % (orjson.dumps(offsets), orjson.dumps(ts), joined)
        body = _compressor(self.level).compress(doc)
        self._file.write(_LEN.pack(len(body)) + body)
        account(self.entry, offsets, ts, _LEN.size + len(body))

    def sweep(self, now: float) -> None:
        """A sweep the live engine ran at event time ``now`` with no record to drive it (its feed idle): replay
        runs it at the same place, so time-driven signals (silence) are the live ones."""
        body = _compressor(self.level).compress(b'{"o":[],"t":[],"r":[],"w":%b}' % orjson.dumps(now))
        self._file.write(_LEN.pack(len(body)) + body)
        account(self.entry, [], [], _LEN.size + len(body))

    def sync(self) -> None:
        """Everything appended so far is on disk (flushed and fsynced)."""
        self._file.flush()
        os.fsync(self._file.fileno())

    def abandon(self) -> None:
        """Close the file unsealed after a failed write, flushing what it can: no buffered bytes may reach
        it later (when the object is collected), after a reopen has recovered the segment."""
        with contextlib.suppress(OSError):
            self._file.close()

    def seal(self) -> dict:
        """Sync, close and write the index entry; returns it."""
        self.sync()
        self._file.close()
        _write_index(self.path, self.entry)
        return self.entry


def _dicts(records: list) -> bytes:
    return orjson.dumps(records)[1:-1]


def _joined(records: list, spans: list[tuple[int, int, bytes]], encode: Callable[[list], bytes]) -> bytes:
    """The records as comma-separated JSON: the spans' bytes as they came, the rest encoded."""
    parts, at = [], 0
    for start, end, raw in spans:
        if at < start:
            parts.append(encode(records[at:start]))
        parts.append(raw)
        at = end
    if at < len(records):
        parts.append(encode(records[at:]))
    return b",".join(parts)


def read(path: Path, verify: bool = True, size: int | None = None, record_type: type | None = None) -> Iterator[Frame]:
    """The frames of a segment, in order. A torn tail (an unsealed segment cut by a crash) ends it
    quietly; anything else undecodable raises :class:`CorruptSegment` - before any frame is
    yielded when ``verify`` (a segment is replayed whole or not at all: its frames are all
    decompressed, once, before the first is parsed). ``size`` is a sealed segment's length from
    its index: a file of another length is corrupt. ``record_type``: a msgspec struct type to read the
    records as, in one C pass (a frame with any record that does not fit it is read as dicts)."""
    typed = _typed_frames(record_type) if record_type is not None else None
    if size is not None and path.stat().st_size != size:
        raise CorruptSegment(
            path, min(size, path.stat().st_size), f"{path.stat().st_size} bytes, its index says {size}", 0
        )
    for raw in list(_frames(path)) if verify else _frames(path):
        if typed is not None:
            try:
                frame = typed(raw)
                yield Frame(frame.o, frame.t, frame.r, typed=True, sweep=frame.w)
                continue
            except (msgspec.DecodeError, ValueError):
                pass
        doc = orjson.loads(raw)
        yield Frame(doc["o"], doc["t"], doc["r"], sweep=doc.get("w"))


@lru_cache(maxsize=32)
def _typed_frames(record_type: type) -> Callable[[bytes], object]:
    """A decoder of frames whose records are ``record_type`` structs."""
    return msgspec.json.Decoder(
        msgspec.defstruct(
            "TypedFrame", [("o", list[int]), ("t", list[float]), ("r", list[record_type]), ("w", float | None, None)]
        )
    ).decode


def recover(path: Path, **known) -> dict:
    """Seal a segment a crash left open: cut it after its last whole frame and write its index entry
    (``known``: source, partition, hour, run)."""
    entry = empty_entry(path, **known)
    for raw, size in _frames(path, sizes=True):
        doc = orjson.loads(raw)
        account(entry, doc["o"], doc["t"], size)
    with open(path, "r+b") as f:
        if f.read(len(MAGIC)) != MAGIC:  # torn at birth (see _frames)
            f.seek(0)
            f.write(MAGIC)
        f.truncate(entry["bytes"])
        os.fsync(f.fileno())
    _write_index(path, entry)
    return entry


def _frames(path: Path, sizes: bool = False) -> Iterator:
    """Decompressed frame payloads (with their on-disk size when ``sizes``)."""
    unzstd = zstandard.ZstdDecompressor()
    frames = 0
    with open(path, "rb") as f:
        head = f.read(len(MAGIC))
        if len(head) < len(MAGIC) and MAGIC.startswith(head):
            return  # created, then killed before its header reached the disk: no frames
        if head != MAGIC:
            raise CorruptSegment(path, 0, "not a Warden segment", 0)
        at = len(MAGIC)
        while True:
            head = f.read(_LEN.size)
            if len(head) < _LEN.size:
                return  # end, or a length torn by a crash
            (length,) = _LEN.unpack(head)
            body = f.read(length)
            if len(body) < length:
                return  # a frame torn by a crash
            try:
                raw = unzstd.decompress(body)
            except zstandard.ZstdError as exc:
                raise CorruptSegment(path, at, str(exc), frames) from None
            frames += 1
            at += _LEN.size + length
            yield (raw, _LEN.size + length) if sizes else raw


def account(entry: dict, offsets: list[int], ts: list[float], size: int) -> None:
    if offsets:  # a sweep frame has none
        if entry["first_offset"] is None:
            entry["first_offset"], entry["min_ts"], entry["max_ts"] = offsets[0], min(ts), max(ts)
        entry["last_offset"] = offsets[-1]
        entry["min_ts"], entry["max_ts"] = min(entry["min_ts"], min(ts)), max(entry["max_ts"], max(ts))
        entry["records"] += len(offsets)
    entry["frames"] += 1
    entry["bytes"] += size


def _write_index(path: Path, entry: dict) -> None:
    tmp = index_path(path).with_suffix(".json.tmp")
    tmp.write_bytes(orjson.dumps(entry, option=orjson.OPT_INDENT_2))
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, index_path(path))
