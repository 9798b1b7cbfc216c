"""The entity slot map: entity id -> row of the columnar state arrays.

>>> s = SlotMap()
>>> s.lookup(["a", "b", "a"]).tolist(), len(s)
([0, 1, 0], 2)
>>> s.lookup(["c", "a", "d", "c"], admit=lambda new: np.array([e != "c" for e in new])).tolist()
[-1, 0, 2, -1]
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import compress, repeat

import numpy as np


class SlotMap:
    """Assigns each entity a stable row number, in order of first appearance."""

    def __init__(self, entities: list[str] | None = None):
        self.entities: list[str] = list(entities or [])
        self._slot = {e: i for i, e in enumerate(self.entities)}

    def __len__(self) -> int:
        return len(self.entities)

    def get(self, entity: str, default: int | None = None) -> int | None:
        return self._slot.get(entity, default)

    def lookup(self, entities: list[str], admit: Callable[[list[str]], np.ndarray] | None = None) -> np.ndarray:
        """Rows of ``entities``, adding the ones never seen that ``admit`` accepts (given the new ids,
        it says yes or no to each; all by default); -1 for the ones it refuses."""
        get = self._slot.get
        rows = np.fromiter(map(get, entities, repeat(-1)), dtype=np.int64, count=len(entities))
        missing = rows < 0
        if missing.any():
            unseen = list(compress(entities, missing.tolist()))
            new = list(dict.fromkeys(unseen))
            if admit is not None:
                new = list(compress(new, admit(new).tolist()))
            start = len(self.entities)
            self._slot.update(zip(new, range(start, start + len(new))))
            self.entities += new
            if len(new) == len(unseen):  # each once, all admitted: rows in order of appearance
                rows[missing] = np.arange(start, start + len(new))
            else:
                rows[missing] = np.fromiter(map(get, unseen, repeat(-1)), dtype=np.int64, count=len(unseen))
        return rows
