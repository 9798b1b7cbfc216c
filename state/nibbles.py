"""Counters of 0..15 packed two to a byte, for per-entity counts where only "seen k times yet" matters.

>>> import numpy as np
>>> packed = np.zeros((2, 24), np.uint8)            # 2 entities x 48 counters in 24 bytes each
>>> for _ in range(20):
...     bump(packed, np.array([0, 1]), np.array([5, 4]))
>>> bump(packed, np.array([0]), np.array([4]))
>>> counts(packed, np.array([0, 0, 1, 1]), np.array([4, 5, 4, 5])).tolist()
[1, 15, 15, 0]
"""

from __future__ import annotations

import numpy as np

MAX = 15


def counts(packed: np.ndarray, rows: np.ndarray, slots: np.ndarray) -> np.ndarray:
    """Counter ``slots[i]`` of entity ``rows[i]``."""
    return (packed[rows, slots >> 1] >> ((slots & 1) << 2).astype(np.uint8)) & MAX


def bump(packed: np.ndarray, rows: np.ndarray, slots: np.ndarray) -> None:
    """Add one to counter ``slots[i]`` of entity ``rows[i]``, stopping at 15; ``rows`` must be distinct."""
    shift = ((slots & 1) << 2).astype(np.uint8)
    byte = packed[rows, slots >> 1]
    packed[rows, slots >> 1] = byte + ((((byte >> shift) & MAX) < MAX).astype(np.uint8) << shift)
