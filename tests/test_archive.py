"""Replay logs on real files: exactly-once archiving across a crash, corrupt segments, retention, filters."""

from __future__ import annotations

import numpy as np

from replay import segments as seg
from replay.archive import PartitionArchive, prune, read_records, segments

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def _records(offsets, t0=T0, step=60.0, entity=lambda o: f"e{o % 3}"):
    offsets = np.asarray(offsets)
    ts = t0 + offsets * step
    return offsets, ts, [{"entity": entity(int(o)), "ts": float(t), "value": float(o)} for o, t in zip(offsets, ts)]


def _archived_offsets(root) -> list[int]:
    return [int(r["value"]) for c in read_records(segments(root)) for r in c.records]


def test_a_crash_mid_frame_loses_nothing_and_archives_nothing_twice(tmp_path):
    part = PartitionArchive(tmp_path, "metric", 0)
    part.append(*_records(range(10)))
    part.sync()                       # a checkpoint: offsets 0..9 durable
    part.append(*_records(range(10, 15)))   # written but not synced, then the process dies mid-frame
    path = part.writer.path
    part.writer._file.flush()
    with open(path, "ab") as f:
        f.write(b"\x50\x00\x00\x00torn")
    part.writer._file = open(path, "ab")   # (the dead process's handle)

    again = PartitionArchive(tmp_path, "metric", 0, run=part.run)   # restart from the checkpoint (same run):
    # recovery cuts the torn tail and seals
    assert again.last_offset == 14
    assert seg.index_path(path).exists()
    # the worker replays from its checkpoint (offset 10): those are already archived
    again.append(*_records(range(10, 20)))
    again.close()
    assert _archived_offsets(tmp_path) == list(range(20))


def test_a_partition_started_afresh_is_a_new_run_replayed_after_the_old(tmp_path):
    """A new embedded broker restarts offsets at 0: its records are archived, not taken as duplicates."""
    old = PartitionArchive(tmp_path, "metric", 0)
    old.append(*_records(range(5)))
    old.close()
    new = PartitionArchive(tmp_path, "metric", 0)   # no checkpoint: a new run
    assert new.run > old.run and new.last_offset == -1
    new.append(*_records(range(3), t0=T0 + 7200))
    new.close()
    assert _archived_offsets(tmp_path) == [0, 1, 2, 3, 4, 0, 1, 2]


def test_corrupt_segment_is_skipped_whole_and_reported(tmp_path):
    part = PartitionArchive(tmp_path, "metric", 0)
    part.append(*_records(range(180)))   # three hours: three segments
    part.close()
    found = segments(tmp_path)
    assert [s.entry["records"] for s in found] == [60, 60, 60]
    middle = found[1].path
    data = bytearray(middle.read_bytes())
    data[len(data) // 2] ^= 0xFF
    middle.write_bytes(bytes(data))
    reported = []
    offsets = [int(r["value"]) for c in read_records(found, on_corrupt=reported.append) for r in c.records]
    assert offsets == list(range(60)) + list(range(120, 180))
    assert [e.path for e in reported] == [middle] and "corrupt" in str(reported[0])
    # a truncated sealed segment is corrupt too (its index says how long it is)
    last = found[2].path
    last.write_bytes(last.read_bytes()[:-7])
    reported.clear()
    assert len([c for c in read_records(found, on_corrupt=reported.append)]) == 1
    assert {e.path for e in reported} == {middle, last}


def test_time_and_entity_filters(tmp_path):
    part = PartitionArchive(tmp_path, "metric", 1)
    part.append(*_records(range(300)))
    part.close()
    since, until = T0 + 100 * 60, T0 + 200 * 60
    found = segments(tmp_path, "metric", since, until)
    assert [s.entry["hour"] for s in found] == [int(T0 // 3600) + 1, int(T0 // 3600) + 2, int(T0 // 3600) + 3]
    got = [r for c in read_records(found, since=since, until=until, entity="e1") for r in c.records]
    assert [int(r["value"]) for r in got] == [o for o in range(100, 200) if o % 3 == 1]
    assert segments(tmp_path, "power") == []


def test_retention_by_age_then_size(tmp_path):
    part = PartitionArchive(tmp_path, "metric", 0)
    part.append(*_records(range(600)))   # ten hours, ten segments
    part.close()
    found = segments(tmp_path)
    now = T0 + 600 * 60
    gone = prune(tmp_path, now, retention_s=4 * 3600 + 100, max_bytes=10**9)
    assert len(gone) == 5 and not any(p.exists() for p in gone)
    assert _archived_offsets(tmp_path)[0] == 300
    sizes = [s.entry["bytes"] for s in segments(tmp_path)]
    prune(tmp_path, now, retention_s=10**9, max_bytes=sum(sizes[-2:]))
    assert _archived_offsets(tmp_path) == list(range(480, 600))
    assert len(found) == 10
