"""A set of NumPy columns sharing one row index (the entity slot), grown together.

>>> c = ColumnStore(capacity=2)
>>> c.add("last_ts", np.float64, fill=np.nan)
>>> c.ensure_rows(5); c["last_ts"].shape[0] >= 5
True
"""

from __future__ import annotations

import io

import numpy as np


GROWTH = 1.25   # doubling would leave up to half of a million entities' columns allocated and unused


class ColumnStore:
    """Named arrays whose first axis is the entity slot; capacity grows by a quarter on demand."""

    def __init__(self, capacity: int = 1024):
        self.capacity = max(1, capacity)
        self._cols: dict[str, np.ndarray] = {}
        self._fill: dict[str, object] = {}

    def add(self, name: str, dtype, tail: tuple[int, ...] = (), fill: object = 0) -> None:
        """Declare a column of ``dtype`` with per-entity shape ``tail``."""
        self._cols[name] = np.full((self.capacity, *tail), fill, dtype=dtype)
        self._fill[name] = fill

    def __getitem__(self, name: str) -> np.ndarray:
        return self._cols[name]

    def __contains__(self, name: str) -> bool:
        return name in self._cols

    def names(self) -> list[str]:
        return list(self._cols)

    def ensure_rows(self, rows: int) -> None:
        """Grow every column so that ``rows`` entities fit."""
        if rows <= self.capacity:
            return
        capacity = max(rows, int(self.capacity * GROWTH) + 1)
        for name, col in self._cols.items():
            grown = np.full((capacity, *col.shape[1:]), self._fill[name], dtype=col.dtype)
            grown[: self.capacity] = col
            self._cols[name] = grown
        self.capacity = capacity

    def to_bytes(self, rows: int) -> bytes:
        """The first ``rows`` rows of every column as an .npz blob."""
        buf = io.BytesIO()
        np.savez(buf, **{name: col[:rows] for name, col in self._cols.items()})
        return buf.getvalue()

    def load_bytes(self, blob: bytes) -> int:
        """Fill declared columns from :meth:`to_bytes` output; returns the row count.

        Raises ValueError when the blob's columns do not match the declared ones.
        """
        with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
            if set(npz.files) != set(self._cols):
                raise ValueError(f"columns differ: saved {sorted(npz.files)}, declared {sorted(self._cols)}")
            arrays = {name: npz[name] for name in npz.files}
        rows = next(iter(arrays.values())).shape[0] if arrays else 0
        for name, arr in arrays.items():
            if arr.shape[1:] != self._cols[name].shape[1:] or arr.dtype != self._cols[name].dtype:
                raise ValueError(f"column {name!r} has shape/dtype {arr.shape[1:]}/{arr.dtype}, "
                                 f"declared {self._cols[name].shape[1:]}/{self._cols[name].dtype}")
        self.ensure_rows(rows)
        for name, arr in arrays.items():
            self._cols[name][:rows] = arr
        return rows
