"""Replay logs on real files: exactly-once archiving across a crash, corrupt segments, retention, filters,
and the partition runner's archiving (durable before commit; a failing disk)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import numpy as np
import orjson

from agents.worker.health import Health
from agents.worker.metrics import WorkerMetrics
from agents.worker.partition import Message, PartitionLinks, PartitionRunner
from models.catalog import load_sources
from replay import segments as seg
from replay.archive import PartitionArchive, prune, read_records, segments
from settings import Settings
from state.refdata.reference import RefData
from streams.record_schema import RecordSchema, plain
from tests.runners import Unstored

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
    part.sync()  # a checkpoint: offsets 0..9 durable
    part.append(*_records(range(10, 15)))  # written but not synced, then the process dies mid-frame
    path = part.writer.path
    part.writer._file.flush()
    with open(path, "ab") as f:
        f.write(b"\x50\x00\x00\x00torn")
    part.writer._file = open(path, "ab")  # (the dead process's handle)

    again = PartitionArchive(tmp_path, "metric", 0, run=part.run)  # restart from the checkpoint (same run):
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
    new = PartitionArchive(tmp_path, "metric", 0)  # no checkpoint: a new run
    assert new.run > old.run and new.last_offset == -1
    new.append(*_records(range(3), t0=T0 + 7200))
    new.close()
    assert _archived_offsets(tmp_path) == [0, 1, 2, 3, 4, 0, 1, 2]


def test_a_segment_killed_before_its_header_reached_the_disk_is_empty_not_corrupt(tmp_path):
    for torn in (b"", seg.MAGIC[:3]):
        part = PartitionArchive(tmp_path, "metric", 0)
        part.append(*_records(range(5)))
        part.close()
        killed = PartitionArchive(tmp_path, "metric", 0, run=part.run)
        killed._rotate(killed.hour + 1, 5)  # a new hour's segment, then kill -9 before a byte of it is flushed
        killed.writer._file = open(killed.writer.path, "wb")
        killed.writer._file.write(torn)
        killed.writer._file.close()
        reported = []
        assert [s.entry["records"] for s in segments(tmp_path, on_corrupt=reported.append)] == [5] and not reported
        again = PartitionArchive(tmp_path, "metric", 0, run=part.run)  # the restart drops it (nothing in it)
        assert again.last_offset == 4 and not killed.writer.path.exists()
        again.append(*_records(range(5, 8), t0=T0 + 3600))
        again.close()
        assert _archived_offsets(tmp_path) == list(range(8)) and not reported
        for path in tmp_path.rglob("*"):
            if path.is_file():
                path.unlink()


def test_an_idle_sweep_is_replayed_at_its_place_among_the_records(tmp_path):
    part = PartitionArchive(tmp_path, "metric", 0)
    part.append(*_records(range(3)))
    part.sweep(T0 + 900.0)
    part.append(*_records(range(3, 5)))
    part.close()
    [found] = segments(tmp_path)
    assert found.entry["records"] == 5 and found.entry["frames"] == 3
    chunks = [(c.sweep, [int(r["value"]) for r in c.records]) for c in read_records([found])]
    assert chunks == [(None, [0, 1, 2]), (T0 + 900.0, []), (None, [3, 4])]
    assert all(c.sweep is None for c in read_records([found], until=T0 + 600.0))  # outside the period asked for


def test_a_sweep_after_a_restart_goes_after_the_records_archived_before_it(tmp_path):
    part = PartitionArchive(tmp_path, "metric", 0)
    part.append(*_records(range(3)))
    part.close()
    again = PartitionArchive(tmp_path, "metric", 0, run=part.run)  # restored: no record processed yet
    again.sweep(T0 + 900.0)
    again.append(*_records(range(3, 5)))
    again.close()
    found = segments(tmp_path)
    assert [s.sealed for s in found] == [True] and found[0].entry["frames"] == 3
    chunks = [(c.sweep, [int(r["value"]) for r in c.records]) for c in read_records(found)]
    assert chunks == [(None, [0, 1, 2]), (T0 + 900.0, []), (None, [3, 4])]
    assert PartitionArchive(tmp_path, "metric", 1).sweep(T0) is None and segments(tmp_path) == found  # none before


def test_corrupt_segment_is_skipped_whole_and_reported(tmp_path):
    part = PartitionArchive(tmp_path, "metric", 0)
    part.append(*_records(range(180)))  # three hours: three segments
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
    part.append(*_records(range(600)))  # ten hours, ten segments
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


class _Outputs:
    """The partition runner's outputs, kept in memory (archiving is what is under test)."""

    async def signals(self, signals):
        pass

    async def dead_letters(self, letters):
        pass

    async def forward(self, topic, entity, record):
        pass

    async def flush(self):
        pass

    async def partitioner(self, topic):
        return SimpleNamespace(partitions=1)


def _runner(tmp_path, archive_factory):
    """A partition runner of the metric source; returns it and the offsets it committed, in order."""
    committed: list[int] = []

    async def commit(topic, partition, offset):
        committed.append(offset)

    async def alert(signals):
        pass

    settings, ref = Settings(partitions=1, data_dir=tmp_path, checkpoint_interval_s=3600.0), RefData.empty()
    runner = PartitionRunner(
        load_sources()["metric"],
        0,
        PartitionLinks(
            settings,
            _Outputs(),
            Unstored(),
            WorkerMetrics(),
            Health(),
            commit=commit,
            alert=alert,
            refdata=lambda: ref,
            archive=lambda source, partition, run: archive_factory(run),
        ),
    )
    return runner, committed


def _messages(first: int, n: int) -> list[Message]:
    return [
        Message(o, orjson.dumps({"entity": f"m{o % 3}", "ts": T0 + 60.0 * o, "value": float(o)}))
        for o in range(first, first + n)
    ]


def _frames(root) -> list[seg.Frame]:
    return [frame for path in sorted(root.rglob("*.wseg")) for frame in seg.read(path)]


def _frames_offsets(root) -> list[int]:
    return [o for frame in _frames(root) for o in frame.offsets]


def test_every_record_is_archived_and_synced_before_its_offset_is_committed(tmp_path):
    """What a crash right after the commit leaves on disk holds every record the commit covers."""

    async def run():
        runner, committed = _runner(tmp_path, lambda run: PartitionArchive(tmp_path / "archive", "metric", 0, run=run))
        await runner.restore()
        for first in (0, 40, 80):
            await runner.process(_messages(first, 40))
        await runner._checkpoint()
        on_disk = _frames_offsets(tmp_path / "archive")  # what a crash right after the commit would leave
        await runner.close()
        return committed, on_disk

    committed, on_disk = asyncio.run(run())
    assert committed == [120]
    assert on_disk == list(range(120))
    assert _archived_offsets(tmp_path / "archive") == list(range(120))


def test_a_failing_disk_loses_archive_records_never_detection(tmp_path):
    """The failed log is let go of explicitly (its buffered frame flushed, its file closed) before the
    reopen recovers it: nothing depends on when the old object is collected (this test keeps it alive)."""
    opened: list[PartitionArchive] = []

    def factory(run):
        opened.append(PartitionArchive(tmp_path / "archive", "metric", 0, run=run))
        if len(opened) == 1:  # the first log's disk fills up at its second batch
            real, calls = opened[0].append, []

            def append(*args):
                calls.append(1)
                if len(calls) == 2:
                    raise OSError(28, "No space left on device")
                real(*args)

            opened[0].append = append
        return opened[-1]

    async def run():
        runner, committed = _runner(tmp_path, factory)
        await runner.restore()
        for first in (0, 40, 80):
            await runner.process(_messages(first, 40))
        problems = dict(runner.health.problems)
        await runner._checkpoint()  # reopens the log
        await runner.process(_messages(120, 40))
        await runner.close()
        return runner, committed, problems

    runner, committed, problems = asyncio.run(run())
    assert sum(runner.metrics.records.values()) == 160  # every record went through detection
    assert "archive" in problems and "No space left" in problems["archive"]["error"]
    assert len(opened) == 2 and committed[-1] == 160
    # The first batch, then nothing until the log was reopened: the gap is 40..119, and it was reported.
    assert _archived_offsets(tmp_path / "archive") == [*range(40), *range(120, 160)]


def test_records_are_archived_as_they_were_read_whether_sent_alone_or_in_arrays(tmp_path):
    """A batch of one-record messages is archived from the messages' own bytes; in a batch with an array,
    a bad message and a NaN literal (read by the standard library), the array is archived as a run of its
    own and the rest record by record. Replay reads back exactly the accepted records, with their offsets."""

    def rec(o, **extra):
        return {"entity": f"m{o % 3}", "ts": T0 + 60.0 * o, "value": float(o), **extra}

    alone = [Message(o, b" " + orjson.dumps(rec(o, note='\u6c34 "q"')) + b"\n") for o in range(4)]
    mixed = [
        Message(4, orjson.dumps([rec(4), rec(5)])),
        Message(5, b"{not json"),
        Message(6, b'{"entity": "m0", "ts": %r, "value": 6.0, "spare": NaN}' % (T0 + 360.0)),
        Message(7, orjson.dumps(rec(7, value="seven"))),
    ]  # rejected: wrong type

    async def run():
        runner, _ = _runner(tmp_path, lambda run: PartitionArchive(tmp_path / "archive", "metric", 0, run=run))
        await runner.restore()
        await runner.process(alone)
        await runner.process(mixed)
        await runner.close()
        return runner

    runner = asyncio.run(run())
    frames = _frames(tmp_path / "archive")
    assert [f.offsets for f in frames] == [[0, 1, 2, 3], [4, 4], [6]]
    assert [r for f in frames for r in f.records] == [
        *(rec(o, note='\u6c34 "q"') for o in range(4)),
        rec(4),
        rec(5),
        {"entity": "m0", "ts": T0 + 360.0, "value": 6.0, "spare": None},
    ]
    assert runner.metrics.dead_letters == {"metric:not_json": 1, "metric:wrong_type": 1}


def test_array_messages_go_to_the_replay_log_as_sent_unless_a_record_is_refused(tmp_path):
    """Messages all read by orjson (the typed path off): an array whose records are all accepted is archived
    as its own bytes, in one frame even across an hour (the hour of its last record); one with a rejected
    record is encoded; a lone record keeps its bytes. Replay reads back exactly the accepted records with their
    offsets either way."""

    def rec(o, minute=None, **extra):
        return {"entity": f"m{o % 3}", "ts": T0 + 60.0 * (o if minute is None else minute), "value": float(o), **extra}

    whole = (
        b'[ {"entity": "m1",  "ts": %r, "value": 1.0, "note": "\\u6c34"},\n {"entity": "m2", "ts": %r, '
        b'"value": 2.0} ]' % (T0 + 60.0, T0 + 120.0)
    )
    batch = [
        Message(0, b"[]"),
        Message(1, whole),
        Message(2, orjson.dumps([rec(3), rec(4, value="four"), rec(5)])),  # one rejected: wrong type
        Message(3, b' {"entity": "m0",   "ts": %r, "value": 6.0}' % (T0 + 360.0)),
        Message(4, orjson.dumps([rec(7, minute=59), rec(8, minute=61)])),  # across an hour
    ]

    async def run():
        runner, _ = _runner(tmp_path, lambda run: PartitionArchive(tmp_path / "archive", "metric", 0, run=run))
        runner.schema = None
        await runner.restore()
        await runner.process(batch)
        await runner.close()
        return runner

    runner = asyncio.run(run())
    frames = _frames(tmp_path / "archive")
    assert [f.offsets for f in frames] == [[1, 1, 2, 2, 3], [4, 4]]
    assert [r for f in frames for r in f.records] == [
        {"entity": "m1", "ts": T0 + 60.0, "value": 1.0, "note": "\u6c34"},
        {"entity": "m2", "ts": T0 + 120.0, "value": 2.0},
        rec(3),
        rec(5),
        {"entity": "m0", "ts": T0 + 360.0, "value": 6.0},
        rec(7, minute=59),
        rec(8, minute=61),
    ]
    payload = b"".join(raw for path in sorted((tmp_path / "archive").rglob("*.wseg")) for raw in seg._frames(path))
    assert whole.strip()[1:-1] in payload and b' {"entity": "m0",   "ts"' not in payload  # stripped, as sent
    assert b'{"entity": "m0",   "ts"' in payload and orjson.dumps(rec(3)) in payload
    assert runner.metrics.dead_letters == {"metric:wrong_type": 1}


def test_typed_messages_go_to_the_replay_log_as_sent_and_read_back_the_same_as_structs_or_dicts(tmp_path):
    """Messages of declared fields only take the schema's typed path: a whole array is archived as its own
    bytes, the accepted records of one with a record refused (late) are encoded by the schema. Replay reads the
    same records back, as the source's structs in one pass or as dicts."""
    whole = b'[ {"entity": "m1",  "ts": %r, "value": 1},\n {"entity": "m2", "ts": %r, "value": 2.5} ]' % (
        T0 + 60.0,
        T0 + 120.0,
    )
    cut = orjson.dumps(
        [
            {"entity": "m0", "ts": T0 + 3540.0, "value": 8},
            {"entity": "m0", "ts": T0 + 2540.0, "value": 7},  # late
            {"entity": "m1", "ts": T0 + 3660.0, "value": 9.25, "source": "metric"},
        ]
    )

    async def run():
        runner, _ = _runner(tmp_path, lambda run: PartitionArchive(tmp_path / "archive", "metric", 0, run=run))
        await runner.restore()
        await runner.process([Message(0, whole), Message(1, cut)])
        await runner.close()
        return runner

    runner = asyncio.run(run())
    expected = [
        {"entity": "m1", "ts": T0 + 60.0, "value": 1.0},
        {"entity": "m2", "ts": T0 + 120.0, "value": 2.5},
        {"entity": "m0", "ts": T0 + 3540.0, "value": 8.0},
        {"entity": "m1", "ts": T0 + 3660.0, "value": 9.25, "source": "metric"},
    ]
    assert [r for f in _frames(tmp_path / "archive") for r in f.records] == expected
    payload = b"".join(raw for path in sorted((tmp_path / "archive").rglob("*.wseg")) for raw in seg._frames(path))
    assert whole.strip()[1:-1] in payload  # as sent
    assert b'"value":8.0' in payload and b'"value":8}' not in payload  # encoded by the schema, not orjson
    assert sum(runner.metrics.records.values()) == 5 and runner.metrics.dead_letters == {"metric:late": 1}
    schema = RecordSchema(load_sources()["metric"])
    chunks = list(read_records(segments(tmp_path / "archive"), record_type=lambda source: schema.record))
    assert all(c.typed for c in chunks) and [plain(r) for c in chunks for r in c.records] == expected
