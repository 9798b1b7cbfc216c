"""Every registered detector against the contract of models/base.py, as River's check_estimator does.

Each detector runs alone on its source (``detectors = [name]``) over the
records of its case in tests/cases.py: the incidents it must find, and a quiet
normal day on which it must find nothing.
"""

from __future__ import annotations

import inspect
from functools import cache
from pathlib import Path

import numpy as np
import orjson
import pytest
from cases import CASES, in_batches, meter, to_the_end
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models import catalog
from models.catalog import DETECTORS, load_sources
from models.engine import SourceEngine
from settings import Settings
from state.entity_state import EntityState
from streams.event_time import iso

NAMES = sorted(DETECTORS)


def _engine(name: str) -> SourceEngine:
    case = CASES[name]
    source = load_sources(Settings())[case.source].model_copy(update={"detectors": [name]})
    engine = SourceEngine(source, Settings(), refdata=case.refdata())
    engine.use_model(case.model(source))
    return engine


@cache
def _records(name: str) -> list[dict]:
    return CASES[name].records()


@cache
def _whole(name: str) -> tuple[list[str], bytes]:
    """Signal ids and final state of the case's records in one batch."""
    engine = _engine(name)
    signals = to_the_end(engine, _records(name))
    return [s.id for s in signals], engine.state.to_bytes()


def test_every_registered_detector_has_a_case():
    assert set(CASES) == set(DETECTORS)


@pytest.mark.parametrize("name", NAMES)
def test_file_class_name_and_columns_agree(name):
    detector = DETECTORS[name]
    assert Path(inspect.getfile(detector)).stem == name
    assert detector.__name__ == "".join(part.title() for part in name.split("_"))
    engine = _engine(name)
    to_the_end(engine, _records(name))
    bare = EntityState.for_source(
        engine.source, Settings(), catalog.windows_needed(engine.source), catalog.keeps_needed(engine.source)
    )
    own = set(engine.state.store.names()) - set(bare.store.names())
    assert all(column.startswith(f"{name}.") for column in own), own
    assert all(key.startswith(f"{name}.") for key in engine.state.notes), engine.state.notes


@pytest.mark.parametrize("name", NAMES)
def test_finds_its_incidents(name):
    """The case is not vacuous: the detector raises each kind it is there to raise."""
    engine = _engine(name)
    kinds = {s.kind for s in to_the_end(engine, _records(name))}
    assert kinds == CASES[name].kinds


@pytest.mark.parametrize("name", NAMES)
def test_quiet_on_a_normal_day(name):
    engine, case = _engine(name), CASES[name]
    signals = to_the_end(engine, case.quiet())
    assert [(s.kind, s.entity, iso(s.ts)) for s in signals if s.ts >= case.quiet_from] == []


@pytest.mark.parametrize("name", NAMES)
@settings(
    max_examples=4,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_the_same_signals_and_state_however_batched(name, data):
    records = _records(name)
    cuts = data.draw(
        st.one_of(st.integers(1, 500), st.lists(st.integers(1, len(records) - 1), max_size=12)), label="cuts"
    )
    engine = _engine(name)
    ids, state = _whole(name)
    assert sorted(s.id for s in in_batches(engine, records, cuts)) == sorted(ids)
    _same_state(engine.state.to_bytes(), state, engine.state.lookup_columns)


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=3, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_a_checkpoint_restored_carries_on_as_if_never_stopped(name, data):
    """Stopped after a batch and restored from its checkpoint, or carrying on: the same batches give the same
    signals and state (whether other cuts would is the test above)."""
    records = _records(name)
    at = data.draw(st.integers(1, len(records) - 1), label="checkpoint at")
    carrying_on = _engine(name)
    expected = carrying_on.process(records[:at]).signals + to_the_end(carrying_on, records[at:])
    before = _engine(name)
    signals = before.process(records[:at]).signals
    after = _engine(name)
    after.state.load_bytes(before.state.to_bytes())
    after.use_refdata(after.refdata)  # as the worker does after a restore
    signals += to_the_end(after, records[at:])
    assert [s.id for s in signals] == [s.id for s in expected]
    _same_state(after.state.to_bytes(), carrying_on.state.to_bytes(), after.state.lookup_columns)


def _same_state(got: bytes, expected: bytes, caches: list[str]) -> None:
    """The same entities, watermark and columns, floats to float32 rounding (window sums are added up in
    another order; the anomaly detector's time-of-day models are float32 between batches). Detectors' notes
    may differ (when a sweep last ran moves with batching), and so may ``caches`` of reference data, which a
    restore clears, and the flags of how each entity's latest records came (``arrival``: with which others)."""
    (a_head, a_cols), (b_head, b_cols) = _parts(got), _parts(expected)
    assert (a_head["entities"], a_head["watermark"]) == (b_head["entities"], b_head["watermark"])
    assert a_cols.keys() == b_cols.keys()
    for name, column in a_cols.items():
        if name not in caches and name != "arrival":
            assert (
                np.allclose(column, b_cols[name], rtol=1e-5, atol=1e-6, equal_nan=True)
                if column.dtype.kind == "f"
                else np.array_equal(column, b_cols[name])
            ), name


def _parts(blob: bytes) -> tuple[dict, dict[str, np.ndarray]]:
    """A state snapshot's header and its columns, with the block pools' as ``<pool>/<column>``."""
    first = blob.index(b"\n")
    header = orjson.loads(blob[:first])
    columns = _columns(blob, first + 1)
    pools = header.get("pools", {})
    for pool, at in pools.items():  # each entity's blocks as it holds them, wherever they lie
        if f"{pool}.blocks" in columns:
            table = columns.pop(f"{pool}.blocks")
        elif f"{pool}.first" in columns:  # the first block inline, the others in a table of the pool <pool>.tables
            inline, row = columns.pop(f"{pool}.first"), columns.pop(f"{pool}.table")
            tables = _columns(blob, first + 1 + pools[f"{pool}.tables"])["blocks"]
            table = np.full((len(row), tables.shape[1]), -1, np.int32)
            table[row >= 0] = tables[row[row >= 0]]
            table[:, 0] = inline
        else:  # a pool of tables, compared through the blocks they name
            continue
        for name, column in _columns(blob, first + 1 + at).items():
            held = column[table.clip(0)] if len(column) else np.zeros((*table.shape, *column.shape[1:]), column.dtype)
            columns[f"{pool}/{name}"] = np.where((table >= 0)[..., None], held, 0)
        columns[f"{pool}.given"] = table >= 0
    return header, columns


def _columns(blob: bytes, start: int) -> dict[str, np.ndarray]:
    """The columns of a column store's bytes that begin at ``start``."""
    cut = blob.index(b"\n", start)
    layout = orjson.loads(blob[start:cut])
    columns, at = {}, cut + 1
    for name, dtype, tail in layout["columns"]:
        count = layout["rows"] * int(np.prod(tail, dtype=np.int64))
        columns[name] = np.frombuffer(blob, dtype=dtype, count=count, offset=at).reshape(layout["rows"], *tail)
        at += count * np.dtype(dtype).itemsize
    return columns


SOURCES = sorted({case.source for case in CASES.values()})


@pytest.mark.parametrize("source", SOURCES)
@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_entities_at_any_times_in_any_batches_never_raise(source, data):
    """Valid records of the source's cases, re-stamped to a few entities at arbitrary times (out of order,
    duplicated, hours apart) and cut anywhere: every detector of the source takes them without raising."""
    pool = [r for case in CASES.values() if case.source == source for r in case.records()[:200]]
    picks = data.draw(st.lists(st.integers(0, len(pool) - 1), min_size=1, max_size=40), label="records")
    stamps = data.draw(st.lists(st.integers(-3 * 86400, 3 * 86400), min_size=len(picks), max_size=len(picks)))
    owners = data.draw(st.lists(st.integers(0, 3), min_size=len(picks), max_size=len(picks)), label="entities")
    records = [{**pool[i], "entity": f"e{who}", "ts": pool[0]["ts"] + dt} for i, dt, who in zip(picks, stamps, owners)]
    cuts = data.draw(st.lists(st.integers(1, max(len(records) - 1, 1)), max_size=6), label="cuts")
    ref = next(case for case in CASES.values() if case.source == source).refdata()
    engine = SourceEngine(load_sources(Settings())[source], Settings(), refdata=ref)
    in_batches(engine, records, cuts)
    engine.sweep(pool[0]["ts"] + 4 * 86400)


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=4, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_a_record_sent_again_changes_nothing(name, data):
    """Exact duplicates (a retrying gateway, a backlog produced twice in one message) are taken once: anywhere
    later in the batch, or right after their original across any cut."""
    records = _records(name)
    ids, state = _whole(name)
    again = data.draw(st.lists(st.integers(0, len(records) - 1), min_size=1, max_size=30, unique=True), label="again")
    later = data.draw(st.lists(st.integers(0, 40), min_size=len(again), max_size=len(again)), label="how much later")
    stream = list(records)
    for i, gap in sorted(zip(again, later), reverse=True):
        stream.insert(min(i + 1 + gap, len(records)), dict(records[i]))
    engine = _engine(name)
    assert sorted(s.id for s in to_the_end(engine, stream)) == sorted(ids)
    _same_state(engine.state.to_bytes(), state, engine.state.lookup_columns)
    stream = [r for i, record in enumerate(records) for r in ([record, dict(record)] if i in again else [record])]
    cuts = data.draw(st.lists(st.integers(1, len(stream) - 1), max_size=12), label="cuts")
    engine = _engine(name)
    assert sorted(s.id for s in in_batches(engine, stream, cuts)) == sorted(ids)


@settings(max_examples=20, deadline=None, derandomize=True)
@given(data=st.data())
def test_readings_of_a_rising_register_out_of_order_within_the_lateness_raise_nothing(data):
    """The readings of a meter whose register only rises, each arriving up to the allowed lateness after later
    ones (some twice), in any batches: no register runs backwards."""
    lateness = load_sources(Settings())["power"].allowed_lateness(Settings())
    readings = meter(120)
    delay = data.draw(st.lists(st.floats(0, lateness), min_size=len(readings), max_size=len(readings)))
    arrival = sorted(range(len(readings)), key=lambda i: readings[i]["ts"] + delay[i])
    twice = data.draw(st.sets(st.integers(0, len(readings) - 1), max_size=10), label="sent twice")
    stream = [readings[i] for i in arrival] + [readings[i] for i in sorted(twice)]
    cuts = data.draw(st.lists(st.integers(1, len(stream) - 1), max_size=12), label="cuts")
    engine = SourceEngine(load_sources(Settings())["power"], Settings())
    signals = in_batches(engine, stream, cuts)
    assert [(s.kind, s.evidence) for s in signals if s.kind.startswith("kwh")] == []


def _arrivals(name: str, seed: int) -> list[dict]:
    """The case's records as they might arrive: each delayed by up to its source's lateness."""
    records = _records(name)
    delay = np.random.default_rng(seed).uniform(0, _engine(name).state.lateness_s, len(records))
    return [records[i] for i in sorted(range(len(records)), key=lambda i: records[i]["ts"] + delay[i])]


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=4, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1))
def test_a_batch_in_any_arrival_order_within_the_lateness_gives_the_signals_of_event_time_order(name, seed):
    ids, _ = _whole(name)
    assert sorted(s.id for s in to_the_end(_engine(name), _arrivals(name, seed))) == sorted(ids)


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=4, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), size=st.integers(50, 500))
def test_batches_in_any_arrival_order_within_the_lateness_give_the_signals_of_event_time_order(name, seed, size):
    """Each record delayed by up to the source's lateness, in batches of any size: each is held until no earlier
    one of its entity can come, so every detector sees event order."""
    ids, _ = _whole(name)
    assert sorted(s.id for s in in_batches(_engine(name), _arrivals(name, seed), size)) == sorted(ids)
