"""The entity slot map: entity id -> row of the columnar state arrays.

A city has millions of entities, so the map keeps no Python object per entity
(a dict of ids costs some 140 bytes an entity in strings, ints and table):
the ids are UTF-8 bytes end to end in one array, found through an
open-addressing table of their hashes (compiled), about 50 bytes an entity in
all. A hash is only a screen: a row is found when its id's bytes are equal.

>>> s = SlotMap()
>>> s.lookup(["a", "b", "a"]).tolist(), len(s)
([0, 1, 0], 2)
>>> s.lookup(["c", "a", "d", "c"], admit=lambda new: np.array([e != "c" for e in new])).tolist()
[-1, 0, 2, -1]
>>> s.name(2), s.names(np.array([1, 0, 1])), s.get("e")
('d', ['b', 'a', 'b'], None)
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import compress

import numpy as np

from state.columns import grown
from state.compiled import njit

_EMPTY = -1  # a free place in the table
_ERRORS = "surrogatepass"  # any str an id can be (a lone surrogate included) has bytes, and back


class SlotMap:
    """Assigns each entity a stable row number, in order of first appearance."""

    def __init__(self, entities: list[str] | None = None):
        self._data = np.zeros(4096, dtype=np.uint8)  # the ids' bytes, end to end
        self._bounds = np.zeros(1025, dtype=np.int64)  # row r's id is _data[_bounds[r]:_bounds[r + 1]]
        self._hashes = np.zeros(1024, dtype=np.int64)  # hash() of each place's id
        self._places = np.full(1024, _EMPTY, dtype=np.int32)  # the row at each place
        self._n = 0
        self._nul = False  # whether an id holds a NUL (names() joins on it otherwise)
        if entities:
            self._add(list(entities))

    def __len__(self) -> int:
        return self._n

    @classmethod
    def warm_up(cls) -> None:
        """Ready the map's loops before a record waits on them (compiled or loaded from numba's cache where they
        were not built ahead of time)."""
        slots = cls(["warm"])
        slots.names(slots.lookup(["warm", "up"]))

    def get(self, entity: str, default: int | None = None) -> int | None:
        row = int(self._find([entity])[0])
        return default if row < 0 else row

    def name(self, row: int) -> str:
        """The id of ``row``."""
        return bytes(self._data[self._bounds[row] : self._bounds[row + 1]]).decode("utf-8", _ERRORS)

    def names(self, rows: np.ndarray | None = None) -> list[str]:
        """The ids of ``rows`` (default: every row, in order)."""
        rows = np.arange(self._n) if rows is None else np.asarray(rows, dtype=np.int64)
        if self._nul:
            return [self.name(r) for r in rows.tolist()]
        if not len(rows):
            return []
        joined = _joined(self._data, self._bounds, rows)
        return bytes(joined[:-1]).decode("utf-8", _ERRORS).split("\0")

    def lookup(self, entities: list[str], admit: Callable[[list[str]], np.ndarray] | None = None) -> np.ndarray:
        """Rows of ``entities``, adding the ones never seen that ``admit`` accepts (given the new ids,
        it says yes or no to each; all by default); -1 for the ones it refuses."""
        rows = self._find(entities)
        missing = rows < 0
        if missing.any():
            unseen = list(compress(entities, missing.tolist()))
            new = list(dict.fromkeys(unseen))
            if admit is not None:
                new = list(compress(new, admit(new).tolist()))
            start = self._n
            self._add(new)
            if len(new) == len(unseen):  # each once, all admitted: rows in order of appearance
                rows[missing] = np.arange(start, start + len(new))
            else:
                rows[missing] = self._find(unseen)
        return rows

    def _find(self, entities: list[str]) -> np.ndarray:
        hashes = np.fromiter(map(hash, entities), dtype=np.int64, count=len(entities))
        query, bounds = _encoded(entities)
        rows = np.empty(len(entities), dtype=np.int64)
        _found(self._hashes, self._places, self._data, self._bounds, hashes, query, bounds, rows)
        return rows

    def _add(self, entities: list[str]) -> None:
        """Rows for ``entities``, none of them known, each once."""
        if not entities:
            return
        data, bounds = _encoded(entities)
        self._nul = self._nul or bool((data == 0).any())
        start, n = self._n, self._n + len(entities)
        used = self._bounds[start]
        self._data = _room(self._data, used + len(data))
        self._data[used : used + len(data)] = data
        self._bounds = _room(self._bounds, n + 1)
        self._bounds[start + 1 : n + 1] = used + bounds[1:]
        if 2 * n > len(self._places):  # at most half full, so a search ends after a place or two
            taken = self._places != _EMPTY
            size = len(self._places)
            while 2 * n > size:
                size *= 2
            old_hashes, old_rows = self._hashes[taken], self._places[taken]
            self._hashes, self._places = np.zeros(size, dtype=np.int64), np.full(size, _EMPTY, dtype=np.int32)
            _place(self._hashes, self._places, old_hashes, old_rows)
        hashes = np.fromiter(map(hash, entities), dtype=np.int64, count=len(entities))
        _place(self._hashes, self._places, hashes, np.arange(start, n, dtype=np.int32))
        self._n = n


def _encoded(entities: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The ids' UTF-8 bytes end to end, and the bounds of each (``len + 1`` of them, from 0)."""
    joined = "".join(entities)
    data = joined.encode("utf-8", _ERRORS)
    if len(data) == len(joined):  # all ASCII: a byte a character
        lengths = map(len, entities)
    else:
        parts = [e.encode("utf-8", _ERRORS) for e in entities]
        data, lengths = b"".join(parts), map(len, parts)
    bounds = np.zeros(len(entities) + 1, dtype=np.int64)
    bounds[1:] = np.cumsum(np.fromiter(lengths, dtype=np.int64, count=len(entities)))
    return np.frombuffer(data, dtype=np.uint8), bounds


def _room(array: np.ndarray, size: int) -> np.ndarray:
    """``array``, or a copy grown by half as much again, with room for ``size`` values."""
    return array if size <= len(array) else grown(array, max(size, len(array) * 3 // 2))


@njit(export=("i8[:]", "i4[:]", "u1[:]", "i8[:]", "i8[:]", "u1[:]", "i8[:]", "i8[:]"), cache=True, nogil=True)
def _found(hashes, places, data, bounds, wanted, query, query_bounds, rows):
    """``rows[i]``: the row of the id ``query[query_bounds[i]:query_bounds[i + 1]]`` (hash ``wanted[i]``), or -1."""
    mask = len(places) - 1
    for i in range(len(wanted)):
        at = wanted[i] & mask
        rows[i] = -1
        a, b = query_bounds[i], query_bounds[i + 1]
        while places[at] != _EMPTY:
            row = places[at]
            if hashes[at] == wanted[i] and bounds[row + 1] - bounds[row] == b - a:
                start = bounds[row]
                same = True
                for k in range(b - a):
                    if data[start + k] != query[a + k]:
                        same = False
                        break
                if same:
                    rows[i] = row
                    break
            at = (at + 1) & mask


@njit(export=("i8[:]", "i4[:]", "i8[:]", "i4[:]"), cache=True, nogil=True)
def _place(hashes, places, new_hashes, new_rows):
    """Put each row in the first free place from its hash on."""
    mask = len(places) - 1
    for i in range(len(new_hashes)):
        at = new_hashes[i] & mask
        while places[at] != _EMPTY:
            at = (at + 1) & mask
        hashes[at], places[at] = new_hashes[i], new_rows[i]


@njit(export=("u1[:]", "i8[:]", "i8[:]"), returns="u1[:]", cache=True, nogil=True)
def _joined(data, bounds, rows):
    """The ids of ``rows``, each followed by a NUL."""
    size = 0
    for r in rows:
        size += bounds[r + 1] - bounds[r] + 1
    out = np.empty(size, dtype=np.uint8)
    at = 0
    for r in rows:
        for k in range(bounds[r], bounds[r + 1]):
            out[at] = data[k]
            at += 1
        out[at] = 0
        at += 1
    return out
