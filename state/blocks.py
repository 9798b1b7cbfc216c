"""Fixed-size blocks of per-entity history, given to an entity as it needs them.

A ring of a few thousand records per entity, held as a column, costs its full
width for every entity from its first record on, and most entities of a city
report rarely. A :class:`BlockPool` holds the history in blocks instead: an
entity keeps a table of its ring's blocks (-1 until written) and is given the
next free block when its history first reaches one, so memory follows the
history an entity holds. Blocks are never given back: an entity's ring, once
full, stays full.

>>> pool = BlockPool(block=4)
>>> pool.add("values", np.float32)
>>> pool.take(2).tolist(), pool.take(1).tolist(), pool.used, pool["values"].shape[1]
([0, 1], [2], 3, 4)
"""

from __future__ import annotations

import numpy as np

from state.columns import ColumnStore


class BlockPool:
    """Named columns of ``block`` values per block; ``used`` blocks given out so far."""

    def __init__(self, block: int, capacity: int = 256):
        self.block = block
        self.store = ColumnStore(capacity)
        self.used = 0

    def add(self, name: str, dtype) -> None:
        """Declare a column of ``block`` values of ``dtype`` per block."""
        self.store.add(name, dtype, (self.block,))

    def __getitem__(self, name: str) -> np.ndarray:
        return self.store[name]

    def take(self, count: int) -> np.ndarray:
        """The numbers of ``count`` new blocks (the columns grown to hold them)."""
        self.store.ensure_rows(self.used + count)
        self.used += count
        return np.arange(self.used - count, self.used)

    def reset(self) -> None:
        """No block given (those given before zeroed, for the next to take)."""
        self.store.reset()
        self.used = 0

    def parts(self) -> list:
        """The used blocks' bytes, as :meth:`ColumnStore.parts` gives them."""
        return self.store.parts(self.used)

    def load_bytes(self, blob: bytes, start: int, end: int) -> None:
        """The blocks of a snapshot (:meth:`parts`) at ``blob[start:end]``."""
        self.used = self.store.load_bytes(blob, start, end=end)
