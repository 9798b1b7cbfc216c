"""Records accepted but not yet released to the state and detectors, waiting to be put in event order.

Kafka, gateways and clients without keys deliver a source's records out of
order; detectors that learn from each record or keep runs would take them in
arrival order. So each record waits here until no earlier record of its entity
can still be accepted, and leaves in event order (see
``EntityState.release``). The held records are columns like the state's and
are checkpointed with it: a record accepted is processed, held in a
checkpoint, or still in Kafka.

>>> held = HeldRecords()
>>> held.add(np.array([0, 1]), np.array([20.0, 10.0]), {"v": np.array([2.0, 1.0])}, {})
>>> rows, ts, _, columns, _ = held.take(np.array([True, True]))
>>> rows.tolist(), ts.tolist(), columns["v"].tolist(), len(held)
([1, 0], [10.0, 20.0], [1.0, 2.0], 0)
"""

from __future__ import annotations

import zlib

import numpy as np
import orjson

from state.columns import ColumnStore

_INITIAL = 1024  # rows the hold starts with
_PRIME = np.uint64(0x100000001B3)  # FNV-1a's 64-bit prime: mixes one field's bits into a record's print
_SPREAD = np.uint64(0x9E3779B97F4A7C15)  # spreads entity rows over 64 bits before their time and print are mixed in


def record_prints(columns: dict[str, np.ndarray], strings: dict[str, list], n: int) -> np.ndarray:
    """A 64-bit print of each of ``n`` records' fields besides its entity and time, from its value columns and
    its string columns (NaN, an absent field, is one value): records with equal prints carry the same readings."""
    mixed = np.zeros(n, dtype=np.uint64)
    values = [np.nan_to_num(columns[k].astype(np.float64), nan=np.inf, posinf=np.inf) for k in sorted(columns)]
    values += [
        np.fromiter((zlib.crc32(repr(v).encode()) for v in strings[k]), dtype=np.float64, count=n)
        for k in sorted(strings)
    ]
    with np.errstate(over="ignore"):
        for column in values:
            mixed = (mixed ^ column.view(np.uint64)) * _PRIME
    return mixed


def record_keys(rows: np.ndarray, ts: np.ndarray, prints: np.ndarray) -> np.ndarray:
    """A 64-bit key per record of its entity, event time and print: equal records, equal keys."""
    with np.errstate(over="ignore"):
        return (rows.astype(np.uint64) * _SPREAD ^ ts.astype(np.float64).view(np.uint64)) * _SPREAD ^ prints


class HeldRecords:
    """Held records as columns: entity rows, event times, the batch's value columns and its string columns
    (a record's print is computed again from them where it is wanted). They are written in place into columns
    grown as needed and compacted as records leave, so a steady hold costs its records' bytes and no more."""

    def __init__(self):
        self._numbers = ColumnStore(_INITIAL)  # "rows", "ts", then "column.<name>"
        self._numbers.add("rows", np.int32)
        self._numbers.add("ts", np.float64)
        self._strings = ColumnStore(_INITIAL)  # object columns
        self._n = 0

    def __len__(self) -> int:
        return self._n

    @property
    def rows(self) -> np.ndarray:
        return self._numbers["rows"][: self._n]

    @property
    def ts(self) -> np.ndarray:
        return self._numbers["ts"][: self._n]

    def add(self, rows: np.ndarray, ts: np.ndarray, columns: dict[str, np.ndarray], strings: dict[str, list]) -> None:
        """Hold these records (after the ones held)."""
        if not len(rows):
            return
        for name, values in columns.items():
            if f"column.{name}" not in self._numbers:
                self._numbers.add(f"column.{name}", values.dtype)
        for name in strings:
            if name not in self._strings:
                self._strings.add(name, object, fill=None)
        at, self._n = self._n, self._n + len(rows)
        self._numbers.ensure_rows(self._n)
        self._strings.ensure_rows(self._n)
        arrays = {"rows": rows, "ts": ts, **{f"column.{k}": v for k, v in columns.items()}}
        for name, values in arrays.items():
            self._numbers[name][at : self._n] = values
        for name, values in strings.items():
            self._strings[name][at : self._n] = _objects(values)

    def holds(self, keys: np.ndarray) -> np.ndarray:
        """Which of these record keys (:func:`record_keys`) a held record has."""
        if not len(self) or not len(keys):
            return np.zeros(len(keys), dtype=bool)
        columns, strings = self._columns()
        return np.isin(keys, record_keys(self.rows, self.ts, record_prints(columns, strings, self._n)))

    def take(self, index: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict, dict]:
        """Remove the records at ``index`` (a mask) and return them in event order (ties: as they came):
        rows, times, prints, value columns and string columns (lists)."""
        order = np.flatnonzero(index)
        order = order[np.argsort(self.ts[order], kind="stable")]
        columns, strings = self._columns()
        taken_columns = {name: values[order] for name, values in columns.items()}
        taken_strings = {name: values[order].tolist() for name, values in strings.items()}
        taken = (
            self.rows[order].astype(np.int64),
            self.ts[order],
            record_prints(taken_columns, taken_strings, len(order)),
            taken_columns,
            taken_strings,
        )
        keep = np.flatnonzero(~index)
        numbers = [self._numbers[name][: self._n] for name in self._numbers.names()]
        for values in (*numbers, *strings.values()):
            values[: len(keep)] = values[keep]
        for values in strings.values():
            values[len(keep) :] = None  # let go of the strings that left
        self._n = len(keep)
        return taken

    def _columns(self) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """The held records' value columns and string columns (object arrays), by field."""
        n = self._n
        columns = {
            name.removeprefix("column."): self._numbers[name][:n]
            for name in self._numbers.names()
            if name.startswith("column.")
        }
        return columns, {name: self._strings[name][:n] for name in self._strings.names()}

    def parts(self) -> list:
        """A snapshot's pieces: a JSON line with the string columns, then the other columns as a
        :class:`~state.columns.ColumnStore` gives them."""
        strings = {name: self._strings[name][: self._n].tolist() for name in self._strings.names()}
        return [orjson.dumps({"strings": strings}) + b"\n", *self._numbers.parts(self._n)]

    def load_bytes(self, blob: bytes, start: int, end: int) -> None:
        """The held records of a snapshot (:meth:`parts`) at ``blob[start:end]``, held after any held now."""
        cut = blob.index(b"\n", start)
        strings = orjson.loads(blob[start:cut])["strings"]
        layout = orjson.loads(blob[cut + 1 : blob.index(b"\n", cut + 1)])["columns"]
        saved = ColumnStore(1)
        for name, dtype, _ in layout:
            saved.add(name, np.dtype(dtype))
        n = saved.load_bytes(blob, cut + 1, end=end)
        columns = {
            name.removeprefix("column."): saved[name][:n] for name in saved.names() if name.startswith("column.")
        }
        self.add(saved["rows"][:n], saved["ts"][:n], columns, strings)  # an earlier release's prints: computed again


def _objects(values: list | np.ndarray) -> np.ndarray:
    """A string column as a one-dimensional object array (its elements as they are, lists included)."""
    if isinstance(values, np.ndarray):
        return values
    return np.fromiter(values, dtype=object, count=len(values))
