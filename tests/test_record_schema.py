"""The typed decoding path accepts only what the validator accepts, and gives exactly its columns."""

from __future__ import annotations

import numpy as np
import orjson
from hypothesis import HealthCheck, given, settings, strategies as st

from streams.envelope import decode
from streams.record_schema import RecordSchema
from streams.validation import Batch, Validator
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
        clean = not decoded.reason and decoded.records and all(
            isinstance(r, dict) and set(r) <= {"entity", "ts", *source.fields} for r in decoded.records) \
            and not Validator(source, SETTINGS).validate(decoded.records)[1]
        assert not clean, f"typed path declined a clean message: {value[:300]!r}"
        return
    doc = orjson.loads(value)   # accepted messages go to the replay log as they came: orjson must read them
    expected, rejects = Validator(source, SETTINGS).validate(doc if isinstance(doc, list) else [doc])
    assert not rejects, f"typed path accepted what the validator refuses: {rejects[0]}"
    _assert_same(batch, expected)


NUMBER_TEXT = st.from_regex(r"\A-?(0|[1-9][0-9]{0,24})(\.[0-9]{1,25})?([eE][-+]?[0-9]{1,3})?\Z")


@settings(max_examples=400, deadline=None)
@given(st.one_of(NUMBER_TEXT, st.floats(-1e5, 1e5).map(repr), st.floats(-1e5, 1e5).map(lambda x: f"{x:.17e}")),
       st.sampled_from(["1767225600", "1767225600.5", "1767225600123", "1.7672256e9"]))
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
    for bad in ({**ok, "extra": 1},                      # unknown field: orjson must vouch for it in the replay log
                {**ok, "kw": True}, {**ok, "kw": "2"},   # wrong types
                {**ok, "kw": 1e6},                       # out of range
                {**ok, "source": "water"},               # another source's record
                {**ok, "ts": "2026-01-01T00:00:00Z"},    # a time to read as text
                {**ok, "ts": T0 + 10 * 365 * 86400},     # absurd time
                {k: v for k, v in ok.items() if k != "kwh"}):   # a required field absent
        assert _typed_batch(power, orjson.dumps([ok, bad])) is None, bad
    assert _typed_batch(power, b'[{"entity": "m-1", "ts": 1767225600, "kwh": 1, "kw": 1e400}]') is None
    assert _typed_batch(power, b'[{"entity": "m-1", "ts": 1767225600, "kwh": 1, "kw": 2, "x": "\xff"}]') is None
    # duplicate keys: the last one counts, as orjson reads them
    value = b'{"entity": "m-1", "ts": 1767225600, "kwh": 1, "kw": 2, "kw": 3}'
    assert _typed_batch(power, value).columns["kw"].tolist() == [3.0]


def test_every_source_of_the_city_takes_the_typed_path():
    assert all(RecordSchema.for_source(source, SETTINGS) is not None for source in REGISTRY.values())
