"""Records accepted but not yet released to the state and detectors, waiting to be put in event order.

Kafka, gateways and clients without keys deliver a source's records out of
order; detectors that learn from each record or keep runs would take them in
arrival order. So each record waits here until no earlier record of its entity
can still be accepted, and leaves in event order (see
``EntityState.release``). The held records are columns like the state's and
are checkpointed with it: a record accepted is processed, held in a
checkpoint, or still in Kafka.

>>> held = HeldRecords()
>>> held.add(np.array([0, 1]), np.array([20.0, 10.0]), np.zeros(2, np.uint64), {"v": np.array([2.0, 1.0])}, {})
>>> rows, ts, _, columns, _ = held.take(np.array([True, True]))
>>> rows.tolist(), ts.tolist(), columns["v"].tolist(), len(held)
([1, 0], [10.0, 20.0], [1.0, 2.0], 0)
"""

from __future__ import annotations

import numpy as np
import orjson

from state.columns import ColumnStore

_SPREAD = np.uint64(0x9E3779B97F4A7C15)  # spreads entity rows over 64 bits before their time and print are mixed in


def record_keys(rows: np.ndarray, ts: np.ndarray, prints: np.ndarray) -> np.ndarray:
    """A 64-bit key per record of its entity, event time and print: equal records, equal keys."""
    with np.errstate(over="ignore"):
        return (rows.astype(np.uint64) * _SPREAD ^ ts.astype(np.float64).view(np.uint64)) * _SPREAD ^ prints


class HeldRecords:
    """Held records as columns: entity rows, event times, prints (``Batch.prints``), the batch's value
    columns and its string columns."""

    def __init__(self):
        self.rows = np.empty(0, dtype=np.int64)
        self.ts = np.empty(0, dtype=np.float64)
        self.prints = np.empty(0, dtype=np.uint64)
        self.columns: dict[str, np.ndarray] = {}
        self.strings: dict[str, np.ndarray] = {}  # object arrays

    def __len__(self) -> int:
        return len(self.rows)

    def add(
        self,
        rows: np.ndarray,
        ts: np.ndarray,
        prints: np.ndarray,
        columns: dict[str, np.ndarray],
        strings: dict[str, list],
    ) -> None:
        """Hold these records (after the ones held)."""
        if not len(rows):
            return
        fresh = not len(self)
        self.rows = np.concatenate((self.rows, rows))
        self.ts = np.concatenate((self.ts, ts))
        self.prints = np.concatenate((self.prints, prints))
        for name, values in columns.items():
            self.columns[name] = values if fresh else np.concatenate((self.columns[name], values))
        for name, values in strings.items():
            values = _objects(values)
            self.strings[name] = values if fresh else np.concatenate((self.strings[name], values))

    def holds(self, keys: np.ndarray) -> np.ndarray:
        """Which of these record keys (:func:`record_keys`) a held record has."""
        if not len(self) or not len(keys):
            return np.zeros(len(keys), dtype=bool)
        return np.isin(keys, record_keys(self.rows, self.ts, self.prints))

    def take(self, index: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict, dict]:
        """Remove the records at ``index`` (a mask) and return them in event order (ties: as they came):
        rows, times, prints, value columns and string columns (lists)."""
        order = np.flatnonzero(index)
        order = order[np.argsort(self.ts[order], kind="stable")]
        taken = (
            self.rows[order],
            self.ts[order],
            self.prints[order],
            {name: values[order] for name, values in self.columns.items()},
            {name: values[order].tolist() for name, values in self.strings.items()},
        )
        keep = ~index
        self.rows, self.ts, self.prints = self.rows[keep], self.ts[keep], self.prints[keep]
        self.columns = {name: values[keep] for name, values in self.columns.items()}
        self.strings = {name: values[keep] for name, values in self.strings.items()}
        return taken

    def parts(self) -> list:
        """A snapshot's pieces: a JSON line with the string columns, then the other columns as a
        :class:`~state.columns.ColumnStore` gives them."""
        store = ColumnStore(max(len(self), 1))
        arrays = {"rows": self.rows, "ts": self.ts, "prints": self.prints}
        arrays.update({f"column.{name}": values for name, values in self.columns.items()})
        for name, values in arrays.items():
            store.add(name, values.dtype)
            store[name][: len(values)] = values
        strings = {name: values.tolist() for name, values in self.strings.items()}
        return [orjson.dumps({"strings": strings}) + b"\n", *store.parts(len(self))]

    def load_bytes(self, blob: bytes, start: int, end: int) -> None:
        """The held records of a snapshot (:meth:`parts`) at ``blob[start:end]``."""
        cut = blob.index(b"\n", start)
        strings = orjson.loads(blob[start:cut])["strings"]
        layout = orjson.loads(blob[cut + 1 : blob.index(b"\n", cut + 1)])["columns"]
        store = ColumnStore(1)
        for name, dtype, _ in layout:
            store.add(name, np.dtype(dtype))
        rows = store.load_bytes(blob, cut + 1, end=end)
        self.rows, self.ts, self.prints = (store[k][:rows].copy() for k in ("rows", "ts", "prints"))
        self.columns = {
            name.removeprefix("column."): store[name][:rows].copy()
            for name in store.names()
            if name.startswith("column.")
        }
        self.strings = {name: _objects(values) for name, values in strings.items()}


def _objects(values: list | np.ndarray) -> np.ndarray:
    """A string column as a one-dimensional object array (its elements as they are, lists included)."""
    if isinstance(values, np.ndarray):
        return values
    return np.fromiter(values, dtype=object, count=len(values))
