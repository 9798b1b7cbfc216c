"""The entity slot map: entity id -> row of the columnar state arrays.

>>> s = SlotMap()
>>> s.lookup(["a", "b", "a"]).tolist(), len(s)
([0, 1, 0], 2)
>>> s.lookup(["c", "a", "d"], admit=lambda e: e != "c").tolist()
[-1, 0, 2]
"""

from __future__ import annotations

from collections.abc import Callable

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

    def lookup(self, entities: list[str], admit: Callable[[str], bool] | None = None) -> np.ndarray:
        """Rows of ``entities``, adding the ones never seen that ``admit`` accepts (all by default);
        -1 for the ones it refuses."""
        get = self._slot.get
        rows = [get(e, -1) for e in entities]
        if -1 in rows:
            for i, row in enumerate(rows):
                if row == -1:
                    e = entities[i]
                    row = self._slot.get(e)
                    if row is None:
                        if admit is not None and not admit(e):
                            continue
                        row = self._slot[e] = len(self.entities)
                        self.entities.append(e)
                    rows[i] = row
        return np.fromiter(rows, dtype=np.int64, count=len(rows))
