"""Record validation against a source declaration, column by column over a batch.

Valid records come out as NumPy columns (what state and detectors work on);
each invalid one comes out as a :class:`Reject` with its position and reason.

>>> from streams.registry import load_registry
>>> v = Validator(load_registry()["metric"])
>>> batch, rejects = v.validate([{"entity": "m1", "ts": 1700000000, "value": 1.5},
...                              {"entity": "m1", "ts": "yesterday", "value": 2}])
>>> batch.columns["value"].tolist(), rejects[0].reason
([1.5], 'bad_timestamp')
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from itertools import repeat

import numpy as np

from settings import Settings, get_settings
from state.held import record_prints
from streams.registry import FieldSpec, Source

_NUMBER_TYPES = frozenset({int, float, type(None)})
MAX_ENTITY_LEN = 256
# A field with no declared range still takes no more than this: beyond it, state
# (float32 last values, squared deviations) would overflow to inf.
MAX_MAGNITUDE = 1e15
# An "auto" epoch number above this is in milliseconds (1e11 s is the year 5138; 1e11 ms is 1973).
MS_ABOVE = 1e11


@dataclass(slots=True)
class Reject:
    """One record that was refused, and why."""

    position: int
    reason: str
    detail: str


@dataclass(slots=True)
class Batch:
    """Valid records of one source as columns; ``positions`` index the input list."""

    positions: np.ndarray
    entities: list[str]
    ts: np.ndarray
    columns: dict[str, np.ndarray]
    strings: dict[str, list]

    def __len__(self) -> int:
        return len(self.entities)

    def prints(self) -> np.ndarray:
        """A 64-bit print of each record's fields besides its entity and time (:func:`state.held.record_prints`):
        records with equal prints carry the same readings."""
        return record_prints(self.columns, self.strings, len(self))

    def take(self, index: np.ndarray) -> Batch:
        """The rows at ``index`` (a boolean mask or integer positions)."""
        idx = np.flatnonzero(index) if index.dtype == bool else index
        return Batch(
            positions=self.positions[idx],
            entities=[self.entities[i] for i in idx],
            ts=self.ts[idx],
            columns={k: v[idx] for k, v in self.columns.items()},
            strings={k: [v[i] for i in idx] for k, v in self.strings.items()},
        )


def parse_time(value: object, fmt: str = "auto", zone: tzinfo = UTC) -> float | None:
    """Event time as UTC epoch seconds, or None when it cannot be read; a text time without a zone is in
    ``zone``.

    >>> parse_time("2014-07-01T00:00:00Z"), parse_time(1404172800000), parse_time(True)
    (1404172800.0, 1404172800.0, None)
    >>> from zoneinfo import ZoneInfo
    >>> parse_time("2014-07-01 08:00:00", zone=ZoneInfo("Asia/Shanghai"))
    1404172800.0
    """
    kind = type(value)
    if kind is int or kind is float:
        try:
            seconds = float(value)
        except OverflowError:  # an integer beyond float range
            return None
        if fmt == "iso8601" or seconds != seconds:  # NaN
            return None
        if fmt == "epoch_ms" or (fmt == "auto" and abs(seconds) > MS_ABOVE):
            return seconds / 1000.0
        return seconds
    if kind is str and fmt in ("auto", "iso8601"):
        try:
            dt = datetime.fromisoformat(value)
        except ValueError:
            return None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=zone)
        return dt.timestamp()
    return None


def _column(rows: list[dict], name: str) -> list:
    """``[r.get(name) for r in rows]``, without a Python-level loop."""
    return list(map(dict.get, rows, repeat(name)))


def epoch_numbers(col: list, fmt: str) -> np.ndarray | None:
    """The batch's event times when every one is a plain number (the common case), as
    :func:`parse_time` reads them; None when any needs reading one by one."""
    if fmt == "iso8601" or not col or not set(map(type, col)) <= {int, float}:
        return None
    try:
        return epoch_seconds(np.array(col, dtype=np.float64), fmt)
    except OverflowError:
        return None


def epoch_seconds(ts: np.ndarray, fmt: str) -> np.ndarray:
    """Epoch numbers (float64, changed in place) as seconds, as the time format reads them."""
    if fmt == "epoch_ms":
        return ts / 1000.0
    if fmt == "auto":
        with np.errstate(invalid="ignore"):
            ms = np.abs(ts) > MS_ABOVE
        ts[ms] /= 1000.0
    return ts


def bounds(spec: FieldSpec) -> tuple[float, float]:
    """The range a numeric field's values must lie in: its declared one, else +-MAX_MAGNITUDE."""
    return (spec.min if spec.min is not None else -MAX_MAGNITUDE, spec.max if spec.max is not None else MAX_MAGNITUDE)


class Validator:
    """Checks records of one source and turns the valid ones into columns."""

    def __init__(self, source: Source, settings: Settings | None = None):
        settings = settings or get_settings()
        self.source = source
        self.min_ts = parse_time(settings.min_event_time) or 0.0
        self.max_future_s = settings.max_future_s
        self._numeric = [(n, f) for n, f in source.fields.items() if f.numeric]
        self._strings = [(n, f) for n, f in source.fields.items() if f.type == "string"]
        self._bools = [(n, f) for n, f in source.fields.items() if f.type == "bool"]
        self._zone = source.zone
        self._missing = frozenset(source.missing)

    def validate(self, records: list) -> tuple[Batch, list[Reject]]:
        """Split ``records`` into a valid :class:`Batch` and the rejects."""
        n = len(records)
        reasons: dict[int, tuple[str, str]] = {}

        def reject(i: int, reason: str, detail: str) -> None:
            reasons.setdefault(i, (reason, detail))

        rows = records
        if set(map(type, records)) != {dict}:
            rows = []
            for i, r in enumerate(records):
                if type(r) is dict:
                    rows.append(r)
                else:
                    reject(i, "not_object", f"record is a JSON {type(r).__name__}")
                    rows.append({})

        if self._missing or self.source.numbers_as_text:
            rows = [self._read_text(r) for r in rows]
        self._source_names(rows, reject)
        entities = self._entities(rows, reject)
        ts = self._times(rows, reject)
        columns = {name: self._number_column(rows, name, spec, reject) for name, spec in self._numeric}
        columns.update({name: self._bool_column(rows, name, spec, reject) for name, spec in self._bools})
        strings = {name: self._string_column(rows, name, spec, reject) for name, spec in self._strings}

        if not reasons:
            positions = np.arange(n)
            return Batch(positions, entities, ts, columns, strings), []
        keep = np.ones(n, dtype=bool)
        keep[list(reasons)] = False
        positions = np.flatnonzero(keep)
        batch = Batch(np.arange(n), entities, ts, columns, strings).take(positions)
        rejects = [Reject(i, r, d) for i, (r, d) in sorted(reasons.items())]
        return batch, rejects

    def _read_text(self, record: dict) -> dict:
        """The record with its typed fields' missing-value tokens left out, and (``numbers_as_text``) numeric fields
        given as text read as numbers (text that is not a number stays, and is refused as the wrong type)."""
        if str not in set(map(type, record.values())):
            return record
        read = {}
        for name, value in record.items():
            spec = self.source.fields.get(name)
            if type(value) is str and spec is not None:
                if value in self._missing:
                    continue
                if self.source.numbers_as_text and spec.numeric:
                    with contextlib.suppress(ValueError):
                        value = float(value)
            read[name] = value
        return read

    def _source_names(self, rows: list[dict], reject) -> None:
        """A record may name its source; on this topic it must name this one."""
        names = _column(rows, "source")
        if set(names) <= {None, self.source.name}:
            return
        for i, name in enumerate(names):
            if name is not None and name != self.source.name:
                reject(
                    i, "unknown_source", f"record names source {str(name)[:40]!r} on the topic of {self.source.name!r}"
                )

    def _entities(self, rows: list[dict], reject) -> list[str]:
        field = self.source.entity_field
        col = _column(rows, field)
        if set(map(type, col)) == {str} and min(map(len, col)) > 0 and max(map(len, col)) <= MAX_ENTITY_LEN:
            return col
        for i, e in enumerate(col):
            if e is None:
                reject(i, "missing_field", f"'{field}' is missing")
            elif type(e) is not str:
                reject(i, "wrong_type", f"'{field}' must be a string, got {type(e).__name__}")
            elif not 0 < len(e) <= MAX_ENTITY_LEN:
                reject(i, "out_of_range", f"'{field}' must be 1..{MAX_ENTITY_LEN} characters")
        return ["" if type(e) is not str else e for e in col]

    def _times(self, rows: list[dict], reject) -> np.ndarray:
        field, fmt = self.source.time_field, self.source.time_format
        col = _column(rows, field)
        ts = epoch_numbers(col, fmt)
        if ts is None:
            ts = np.array([parse_time(v, fmt, self._zone) for v in col], dtype=np.float64)  # None -> NaN
        for i in np.flatnonzero(np.isnan(ts)):
            value = col[i]
            if value is None:
                reject(int(i), "missing_field", f"'{field}' is missing")
            else:
                reject(int(i), "bad_timestamp", f"'{field}' is unreadable: {str(value)[:40]!r}")
        for i in np.flatnonzero(self.absurd(ts)):
            reject(int(i), "absurd_timestamp", f"'{field}' = {col[i]!r} is outside the accepted range")
        return ts

    def absurd(self, ts: np.ndarray) -> np.ndarray:
        """Which event times are outside the accepted range (before ``min_event_time``, too far ahead)."""
        with np.errstate(invalid="ignore"):
            return ~np.isnan(ts) & ((ts < self.min_ts) | (ts > time.time() + self.max_future_s))

    def _number_column(self, rows: list[dict], name: str, spec, reject) -> np.ndarray:
        col = _column(rows, name)
        types = set(map(type, col))
        if not types <= _NUMBER_TYPES:
            for i, v in enumerate(col):
                if type(v) not in _NUMBER_TYPES:
                    reject(i, "wrong_type", f"'{name}' must be a number, got {type(v).__name__}")
                    col[i] = None
        try:
            values = np.array(col, dtype=np.float64)
        except OverflowError:  # an integer beyond float range
            values = np.array([float("inf") if type(v) is int and abs(v) > 1e308 else v for v in col], dtype=np.float64)
        missing = np.array([v is None for v in col]) if type(None) in types or len(types) > 2 else None
        if missing is not None and spec.required:
            for i in np.flatnonzero(missing):
                reject(int(i), "missing_field", f"'{name}' is missing")
        present = ~missing if missing is not None else np.ones(len(col), dtype=bool)
        bad = present & ~np.isfinite(values)
        for i in np.flatnonzero(bad):
            reject(int(i), "not_finite", f"'{name}' is not a finite number")
        low, high = bounds(spec)
        with np.errstate(invalid="ignore"):
            outside = present & ~bad & ((values < low) | (values > high))
            if spec.type == "int":
                outside |= present & ~bad & (values != np.floor(values))
        for i in np.flatnonzero(outside):
            reject(
                int(i),
                "out_of_range",
                f"'{name}' = {col[i]!r} outside [{low}, {high}]" + (" or not an integer" if spec.type == "int" else ""),
            )
        return values

    def _bool_column(self, rows: list[dict], name: str, spec, reject) -> np.ndarray:
        col = _column(rows, name)
        if set(map(type, col)) == {bool}:
            return np.array(col, dtype=np.float64)
        for i, v in enumerate(col):
            if v is None and spec.required:
                reject(i, "missing_field", f"'{name}' is missing")
            elif v is not None and type(v) is not bool:
                reject(i, "wrong_type", f"'{name}' must be true or false, got {type(v).__name__}")
        return np.array([1.0 if v is True else 0.0 if v is False else np.nan for v in col])

    def _string_column(self, rows: list[dict], name: str, spec, reject) -> list:
        col = _column(rows, name)
        allowed = set(spec.values) if spec.values else None
        if (
            set(map(type, col)) == {str}
            and max(map(len, col)) <= spec.max_length
            and (allowed is None or set(col) <= allowed)
        ):
            return col
        for i, v in enumerate(col):
            if v is None:
                if spec.required:
                    reject(i, "missing_field", f"'{name}' is missing")
            elif type(v) is not str:
                reject(i, "wrong_type", f"'{name}' must be a string, got {type(v).__name__}")
            elif len(v) > spec.max_length:
                reject(i, "out_of_range", f"'{name}' is longer than {spec.max_length} characters")
            elif allowed is not None and v not in allowed:
                reject(i, "out_of_range", f"'{name}' = {v[:40]!r} is not one of {sorted(allowed)}")
        return col
