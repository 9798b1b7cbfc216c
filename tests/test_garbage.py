"""Property-based: whatever bytes arrive on any source, nothing crashes, every bad record is rejected with a
reason, and every good record is processed (decode + validation + state + every detector, as a worker runs them)."""

from __future__ import annotations

import json
import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.catalog import load_sources
from models.engine import SourceEngine
from settings import Settings
from streams.envelope import decode
from streams.registry import FieldSpec

SETTINGS = Settings()
REGISTRY = load_sources(SETTINGS)
T0 = 1_767_225_600.0
REASONS = {
    "not_json",
    "not_object",
    "missing_field",
    "wrong_type",
    "out_of_range",
    "not_finite",
    "bad_timestamp",
    "absurd_timestamp",
    "late",
    "unknown_source",
    "empty",
    "oversize",
}


def _field_value(spec: FieldSpec):
    if spec.type == "float":
        return st.floats(
            min_value=spec.min if spec.min is not None else -1e12,
            max_value=spec.max if spec.max is not None else 1e12,
            allow_nan=False,
        )
    if spec.type == "int":
        return st.integers(
            min_value=int(spec.min) if spec.min is not None else -(10**9),
            max_value=int(spec.max) if spec.max is not None else 10**9,
        )
    if spec.type == "bool":
        return st.booleans()
    return st.sampled_from(spec.values) if spec.values else st.text(max_size=min(spec.max_length, 40))


def good_record(source):
    fields = {name: _field_value(f) for name, f in source.fields.items() if f.required}
    optional = {name: _field_value(f) for name, f in source.fields.items() if not f.required}
    return st.fixed_dictionaries(
        {
            "entity": st.sampled_from(["a", "b", "c", "测站-1"]),
            "ts": st.floats(min_value=T0, max_value=T0 + source.allowed_lateness(Settings()), allow_nan=False),
            **fields,
        },
        optional=optional,
    )


json_junk = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
raw_junk = st.one_of(
    st.binary(max_size=200),
    st.just(b""),
    st.just(b"NaN"),
    st.just(b'{"entity": "a", "ts": 1767225600, "value": 1e999}'),
    st.just(b"[" * 5000 + b"]" * 5000),  # deep nesting
    st.builds(lambda n: b'{"entity": "' + b"x" * n + b'", "ts": 1767225600}', st.integers(300, 3000)),
    json_junk.map(lambda doc: json.dumps(doc).encode()),
)


def mutated(source):
    """A good record made bad in one way (wrong type, missing field, out of range, absurd time...)."""
    bad_values = st.one_of(
        st.text(max_size=5),
        st.just(None),
        st.just([1, 2]),
        st.just({"x": 1}),
        st.just(10**30),
        st.just(-1e300),
        st.just(True),
    )
    return st.tuples(
        good_record(source), st.sampled_from([*source.fields, "entity", "ts"]), bad_values, st.booleans()
    ).map(lambda t: {k: v for k, v in {**t[0], t[1]: t[2]}.items() if not (t[3] and k == t[1])})


@st.composite
def message(draw):
    source = draw(st.sampled_from(list(REGISTRY.values())))
    kind = draw(st.sampled_from(["raw", "good", "mixed"]))
    if kind == "raw":
        return source, draw(raw_junk), None
    good = draw(st.lists(good_record(source), min_size=1, max_size=8))
    good += draw(st.lists(st.sampled_from(good), max_size=3))  # duplicates
    bad = draw(st.lists(mutated(source), max_size=4)) if kind == "mixed" else []
    records = draw(st.permutations(good + bad))  # any order
    return source, json.dumps(records).encode(), len(good)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(message(), min_size=1, max_size=4))
def test_garbage_never_crashes_and_every_record_is_accounted_for(messages):
    engines = {}
    for source, value, n_good in messages:
        engine = engines.setdefault(source.name, SourceEngine(source, SETTINGS))
        decoded = decode(value, SETTINGS.max_message_bytes)
        if decoded.reason:
            assert decoded.reason in REASONS and n_good is None
            continue
        out = engine.process(decoded.records)
        assert out.accepted + out.duplicates + len(out.rejects) == len(decoded.records)
        assert all(r.reason in REASONS and r.detail and 0 <= r.position < len(decoded.records) for r in out.rejects)
        rejected = {r.position for r in out.rejects}
        for i, rec in enumerate(decoded.records):
            valid = _valid(source, rec)
            if valid and rec["ts"] >= T0 and i not in rejected:
                continue
            if not valid:
                assert i in rejected, f"bad record accepted: {rec!r}"
        if n_good is not None and n_good == len(decoded.records):
            # only good records (in the lateness window, any order, duplicated): all processed, repeats once
            assert out.accepted + out.duplicates == n_good and not out.rejects
        for sig in out.signals:
            assert 0.0 <= sig.score <= 1.0 and math.isfinite(sig.score)


def _valid(source, rec: dict) -> bool:
    if not isinstance(rec, dict) or not isinstance(rec.get("entity"), str) or not rec["entity"]:
        return False
    if not isinstance(rec.get("ts"), float | int) or isinstance(rec.get("ts"), bool):
        return False
    for name, f in source.fields.items():
        v = rec.get(name)
        if v is None:  # absent, or null: fine for an optional field
            if f.required:
                return False
            continue
        if f.type in ("float", "int"):
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                return False
            low, high = (f.min if f.min is not None else -1e15), (f.max if f.max is not None else 1e15)
            if not low <= v <= high:
                return False
            if f.type == "int" and isinstance(v, float) and not v.is_integer():
                return False
        elif (f.type == "bool" and not isinstance(v, bool)) or (
            f.type == "string" and (not isinstance(v, str) or len(v) > f.max_length or (f.values and v not in f.values))
        ):
            return False
    return True
