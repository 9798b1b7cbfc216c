"""A batch's records in per-entity event order, computed once per update and shared by detectors.

>>> import numpy as np
>>> s = EntitySequence.of(np.array([1, 0, 1]), np.array([5.0, 7.0, 3.0]))
>>> s.order.tolist(), s.first.tolist(), s.last.tolist()
([1, 2, 0], [True, True, False], [True, False, True])
>>> s.previous(np.array([70.0, 30.0, 50.0]), stored=np.array([-1.0, -2.0])).tolist()
[-1.0, -2.0, 30.0]
>>> EntitySequence.of(np.array([], dtype=int), np.array([])).first.tolist()
[]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class EntitySequence:
    """``order`` sorts records by (entity row, event time, arrival); ``rows``, ``first`` and ``last``
    are in that order and mark each entity's first and last record."""

    order: np.ndarray
    rows: np.ndarray
    first: np.ndarray
    last: np.ndarray

    @classmethod
    def of(cls, rows: np.ndarray, ts: np.ndarray) -> EntitySequence:
        order = np.lexsort((np.arange(len(rows)), ts, rows))
        return cls._sorted(order, rows[order])

    @classmethod
    def _sorted(cls, order: np.ndarray, rows: np.ndarray) -> EntitySequence:
        change = rows[1:] != rows[:-1]
        edge = np.ones(min(len(rows), 1), dtype=bool)  # an empty batch has no first or last record
        return cls(order, rows, np.concatenate((edge, change)), np.concatenate((change, edge)))

    @classmethod
    def of_sorted(cls, rows: np.ndarray) -> EntitySequence:
        """A sequence over rows that are already grouped by entity and in event order."""
        return cls._sorted(np.arange(len(rows)), rows)

    def subset(self, keep: np.ndarray) -> EntitySequence:
        """The records where ``keep`` (a mask in sequence order), still in sequence order."""
        return self._sorted(self.order[keep], self.rows[keep])

    def previous(self, values: np.ndarray, stored: np.ndarray) -> np.ndarray:
        """For ``values`` in sequence order: the entity's previous value (``stored[row]`` for its first)."""
        return np.where(self.first, stored[self.rows], np.roll(values, 1))

    def run_start(self, broken: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per record: the index of its entity's first record, and of the last record marked ``broken``
        (-1 when none yet); a run unbroken since the entity's first record carries over from before."""
        idx = np.arange(len(self.rows))
        start = np.maximum.accumulate(np.where(self.first, idx, 0))
        last_break = np.maximum.accumulate(np.where(broken, idx, -1))
        return start, last_break
