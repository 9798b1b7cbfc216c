"""The typed decoding path accepts only what the validator accepts, and gives exactly its columns."""

from __future__ import annotations

import asyncio
import base64
import tempfile
from itertools import groupby
from operator import itemgetter
from pathlib import Path

import numpy as np
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.worker.partition import Message, PartitionRunner
from replay import segments as seg
from replay.archive import segments
from streams.envelope import decode
from streams.record_schema import RecordSchema
from streams.validation import Batch, Validator
from tests.runners import Kept, kept_runner
from tests.test_garbage import REGISTRY, SETTINGS, T0, message

LIMIT = SETTINGS.max_message_bytes


def _typed_batch(source, value: bytes) -> Batch | None:
    schema = RecordSchema.for_source(source, SETTINGS)
    typed = schema.decode([value], LIMIT)
    return schema.batch(typed[0]) if typed and typed[0] else None


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def _assert_same(batch: Batch, expected: Batch) -> None:
    assert batch.positions.tolist() == expected.positions.tolist()
    assert batch.entities == expected.entities
    assert _same_bits(batch.ts, expected.ts)
    assert list(batch.columns) == list(expected.columns)
    for name, column in expected.columns.items():
        assert _same_bits(batch.columns[name], column), name
    assert batch.strings == expected.strings


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(message())
def test_the_typed_path_accepts_only_what_the_validator_accepts_with_the_same_columns(generated):
    source, value, _ = generated
    batch = _typed_batch(source, value)
    decoded = decode(value, LIMIT)
    if batch is None:
        # Declining is always safe; but a clean message of declared fields must not be declined.
        clean = (
            not decoded.reason
            and decoded.records
            and all(isinstance(r, dict) and set(r) <= {"entity", "ts", *source.fields} for r in decoded.records)
            and not Validator(source, SETTINGS).validate(decoded.records)[1]
        )
        assert not clean, f"typed path declined a clean message: {value[:300]!r}"
        return
    doc = orjson.loads(value)  # accepted messages go to the replay log as they came: orjson must read them
    expected, rejects = Validator(source, SETTINGS).validate(doc if isinstance(doc, list) else [doc])
    assert not rejects, f"typed path accepted what the validator refuses: {rejects[0]}"
    _assert_same(batch, expected)


NUMBER_TEXT = st.from_regex(r"\A-?(0|[1-9][0-9]{0,24})(\.[0-9]{1,25})?([eE][-+]?[0-9]{1,3})?\Z")


@settings(max_examples=400, deadline=None)
@given(
    st.one_of(NUMBER_TEXT, st.floats(-1e5, 1e5).map(repr), st.floats(-1e5, 1e5).map(lambda x: f"{x:.17e}")),
    st.sampled_from(["1767225600", "1767225600.5", "1767225600123", "1.7672256e9"]),
)
def test_numbers_read_to_the_same_bits_as_orjson_reads_them(number, ts):
    value = b'[{"entity": "m-1", "ts": %s, "kw": %s, "kwh": 1}]' % (ts.encode(), number.encode())
    batch = _typed_batch(REGISTRY["power"], value)
    expected, rejects = Validator(REGISTRY["power"], SETTINGS).validate(decode(value, LIMIT).records)
    assert (batch is None) == bool(rejects)
    if batch is not None:
        _assert_same(batch, expected)


def test_what_only_the_validator_can_explain_is_declined():
    power = REGISTRY["power"]
    ok = {"entity": "m-1", "ts": T0, "kwh": 1.0, "kw": 2.0}
    assert _typed_batch(power, orjson.dumps([ok, {**ok, "voltage": None}])) is not None
    for bad in (
        {**ok, "extra": 1},  # unknown field: orjson must vouch for it in the replay log
        {**ok, "kw": True},
        {**ok, "kw": "2"},  # wrong types
        {**ok, "kw": 1e6},  # out of range
        {**ok, "source": "water"},  # another source's record
        {**ok, "ts": "2026-01-01T00:00:00Z"},  # a time to read as text
        {**ok, "ts": T0 + 10 * 365 * 86400},  # absurd time
        {k: v for k, v in ok.items() if k != "kwh"},
    ):  # a required field absent
        assert _typed_batch(power, orjson.dumps([ok, bad])) is None, bad
    assert _typed_batch(power, b'[{"entity": "m-1", "ts": 1767225600, "kwh": 1, "kw": 1e400}]') is None
    assert _typed_batch(power, b'[{"entity": "m-1", "ts": 1767225600, "kwh": 1, "kw": 2, "x": "\xff"}]') is None
    # duplicate keys: the last one counts, as orjson reads them
    value = b'{"entity": "m-1", "ts": 1767225600, "kwh": 1, "kw": 2, "kw": 3}'
    assert _typed_batch(power, value).columns["kw"].tolist() == [3.0]


def test_every_source_of_the_city_takes_the_typed_path():
    assert all(RecordSchema.for_source(source, SETTINGS) is not None for source in REGISTRY.values())


def _present(record: dict) -> dict:
    return {name: value for name, value in record.items() if value is not None}


async def _through_runner(source, messages: list[Message], root: Path, typed: bool) -> tuple:
    runner, outputs = await kept_runner(source, root)
    if typed:
        await runner.process(messages)
    else:  # dicts only, in the typed runner's batches: a call per run of messages the schema reads, and per
        # run of the others; one with nothing to read in it (a dead letter, no records) stays in the run it is in
        runs, run = [], None
        for msg, got in zip(messages, runner.schema.decode([m.value for m in messages], LIMIT)):
            if got is not None or not decode(msg.value, LIMIT).reason:
                run = got is not None
            runs.append((run, msg))
        runner.schema = None
        for _, run in groupby(runs, key=itemgetter(0)):
            await runner.process([m for _, m in run])
    await runner.close()
    # A field sent as null is one left out, to the validator and to every reader after it; the schema's structs
    # do not keep the difference, so records it re-encodes (forwarded, late, cut by the hour) drop such fields.
    archived = [
        (o, _present(r))
        for s in segments(root)
        for frame in seg.read(s.path)
        for o, r in zip(frame.offsets, frame.records)
    ]
    # a late record of an array is re-encoded: the same JSON either way, not the same bytes
    letters = [
        (
            d["reason"],
            d["detail"],
            d["offset"],
            _present(orjson.loads(base64.b64decode(d["original"]))) if d["reason"] == "late" else d["original"],
        )
        for d in outputs.letters
    ]
    forwards = [(topic, entity, _present(record)) for topic, entity, record in outputs.forwards]
    return (
        outputs.sent,
        letters,
        forwards,
        archived,
        runner.metrics.records,
        runner.metrics.dead_letters,
        runner.engine.state.to_bytes(),
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(message(), min_size=1, max_size=6))
def test_a_partition_gives_the_same_alerts_dead_letters_forwards_log_and_state_either_way(generated):
    """The same messages through a partition runner with the typed path and with dicts only: the same signals,
    dead letters, forwarded records, replay log (read back) and entity state (bit for bit: the dict runner
    gets the same batches, each run of messages the schema can or cannot read)."""
    by_source: dict[str, list[Message]] = {}
    for source, value, _ in generated:
        got = by_source.setdefault(source.name, [])
        got.append(Message(len(got), value))
    for name, messages in by_source.items():
        with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
            typed = asyncio.run(_through_runner(REGISTRY[name], messages, Path(a), typed=True))
            plain_only = asyncio.run(_through_runner(REGISTRY[name], messages, Path(b), typed=False))
        assert typed == plain_only


async def _typed_offsets(messages: list[Message], root: Path) -> tuple[list[int], Kept, PartitionRunner]:
    runner, outputs = await kept_runner(REGISTRY["air"], root)
    taken_typed: list[int] = []
    process_typed = runner._process_typed

    async def spy(messages, typed, dead):
        taken_typed.extend(m.offset for m in messages)
        await process_typed(messages, typed, dead)

    runner._process_typed = spy
    await runner.process(messages)
    await runner.close()
    return taken_typed, outputs, runner


def test_a_message_the_schema_cannot_read_leaves_the_rest_of_its_fetch_on_the_typed_path(tmp_path):
    """Unreadable messages are dead letters that leave the typed run whole; a record the validator refuses
    (out of range) sends that run's slice to the validator, which does not see the unreadable ones again."""
    good = [orjson.dumps({"entity": f"st-{i}", "ts": T0 + i, "pm25": 10.0 + i}) for i in range(6)]
    good[2] = orjson.dumps({"entity": "st-2", "ts": T0 + 2, "pm25": -5.0})
    values = [good[0], good[1], b"{not json", good[2], b"", good[3], good[4], b'{"entity": "st-9"}', good[5]]
    typed, outputs, runner = asyncio.run(_typed_offsets([Message(i, v) for i, v in enumerate(values)], tmp_path))
    assert typed == [0, 1, 3, 5, 6, 8]
    assert [(d["offset"], d["reason"]) for d in outputs.letters] == [
        (2, "not_json"),
        (3, "out_of_range"),
        (4, "empty"),
        (7, "missing_field"),
    ]
    # every message counted once: here, or (forwarded) by the partition that owns its entity
    assert runner.metrics.records["air"] + len(outputs.forwards) == 9
    assert len(runner.engine.state) + len(outputs.forwards) == 5
