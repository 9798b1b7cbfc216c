"""A set of NumPy columns sharing one row index (the entity slot), grown together.

>>> c = ColumnStore(capacity=2)
>>> c.add("last_ts", np.float64, fill=np.nan)
>>> c.ensure_rows(5); c["last_ts"].shape[0] >= 5
True
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import orjson

GROWTH = 1.25  # doubling would leave up to half of a million entities' columns allocated and unused


class ColumnStore:
    """Named arrays whose first axis is the entity slot; capacity grows by a quarter on demand."""

    def __init__(self, capacity: int = 1024):
        self.capacity = max(1, capacity)
        self._cols: dict[str, np.ndarray] = {}
        self._fill: dict[str, object] = {}
        self._filled = 0  # rows given their columns' fill so far: the rows asked for (ensure_rows)

    def add(self, name: str, dtype, tail: tuple[int, ...] = (), fill: object = 0) -> None:
        """Declare a column of ``dtype`` with per-entity shape ``tail``."""
        self._cols[name] = grown(np.empty((0, *tail), dtype=dtype), self.capacity)
        self._fill[name] = fill
        if not _zero(fill):
            self._cols[name][: self._filled] = fill

    def __getitem__(self, name: str) -> np.ndarray:
        return self._cols[name]

    def __contains__(self, name: str) -> bool:
        return name in self._cols

    def names(self) -> list[str]:
        return list(self._cols)

    def ensure_rows(self, rows: int) -> None:
        """Grow every column so that ``rows`` entities fit, and give the rows up to there their fill.

        Rows are filled as they are asked for, not as they are reserved: zeros come from calloc, and the OS
        maps their pages only when a row is written, so the rows reserved past those in use (a quarter more
        after each growth) cost no resident memory.
        """
        if rows > self.capacity:
            capacity = max(rows, int(self.capacity * GROWTH) + 1)
            for name, col in self._cols.items():
                self._cols[name] = grown(col[: self._filled], capacity)
            self.capacity = capacity
        if rows > self._filled:
            for name, col in self._cols.items():
                if not _zero(self._fill[name]):
                    col[self._filled : rows] = self._fill[name]
            self._filled = rows

    def reset(self) -> None:
        """Every row asked for so far back to its column's fill, as never written."""
        for name, col in self._cols.items():
            col[: self._filled] = self._fill[name]

    def to_bytes(self, rows: int, prefix: bytes = b"") -> bytes:
        """``prefix``, then :meth:`parts` joined: a JSON header line and the raw arrays in its order."""
        return b"".join([prefix, *self.parts(rows)])

    def parts(self, rows: int) -> list:
        """The first ``rows`` rows of every column, as the pieces of :meth:`to_bytes` (a header line, then one
        byte view per column), for a caller that joins several stores' pieces into one blob.

        Each column is copied once, straight into the blob (a million entities' state is serialised on
        every checkpoint; the caller's own header goes in as a prefix rather than by copying it again).
        """
        header = {
            "rows": rows,
            "columns": [[name, col.dtype.str, list(col.shape[1:])] for name, col in self._cols.items()],
        }
        return [orjson.dumps(header) + b"\n", *(col[:rows].reshape(-1).view(np.uint8) for col in self._cols.values())]

    def load_bytes(
        self, blob: bytes, start: int = 0, renamed: Callable[[str], str] | None = None, end: int | None = None
    ) -> int:
        """Fill declared columns from :meth:`to_bytes` output that begins at ``start`` in ``blob`` and runs to
        ``end`` (default: the blob's end; read in place, not copied); returns the row count. ``renamed``:
        today's name of a saved column.

        Raises ValueError when the blob's columns do not match the declared ones, or it is cut short.
        """
        cut = blob.find(b"\n", start)
        if cut < 0:
            raise ValueError("no column header")
        try:
            header = orjson.loads(blob[start:cut])
            rows, saved = int(header["rows"]), header["columns"]
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"unreadable column header: {exc}") from exc
        if renamed is not None:
            saved = [[renamed(name), dtype, tail] for name, dtype, tail in saved]
        names = [name for name, _, _ in saved]
        if sorted(names) != sorted(self._cols):
            raise ValueError(f"columns differ: saved {sorted(names)}, declared {sorted(self._cols)}")
        for name, dtype, tail in saved:
            col = self._cols[name]
            if tuple(tail) != col.shape[1:] or np.dtype(dtype) != col.dtype:
                raise ValueError(
                    f"column {name!r} has shape/dtype {tuple(tail)}/{np.dtype(dtype)}, "
                    f"declared {col.shape[1:]}/{col.dtype}"
                )
        sizes = [rows * self._cols[name][0].nbytes for name in names]
        at, end = cut + 1, len(blob) if end is None else end
        if sum(sizes) != end - at:
            raise ValueError(f"column data is {end - at} bytes, its header says {sum(sizes)}")
        self.ensure_rows(rows)
        for name, size in zip(names, sizes):
            col = self._cols[name]
            col[:rows] = np.frombuffer(blob, dtype=col.dtype, count=size // col.itemsize, offset=at).reshape(
                (rows, *col.shape[1:])
            )
            at += size
        return rows


def grown(col: np.ndarray, capacity: int) -> np.ndarray:
    """``col`` in the first rows of a zeroed column of ``capacity`` rows (growing a million entities' columns is a
    measurable share of taking them on: each row is written once)."""
    grown = np.zeros((capacity, *col.shape[1:]), dtype=col.dtype)
    grown[: len(col)] = col
    return grown


def _zero(fill: object) -> bool:
    """Whether a column's fill is what a zeroed column holds already."""
    return fill is not None and fill == 0
