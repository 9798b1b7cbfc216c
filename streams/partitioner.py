"""Kafka's own partitioner: murmur2 of the entity id, as the Java client and aiokafka pick.

>>> partition_for("21", 4)   # murmur2(b"21") == -973932308 in the Java client
0
"""

from __future__ import annotations

from aiokafka.partitioner import murmur2


def partition_for(entity: str, partitions: int) -> int:
    """The partition a record keyed by ``entity`` lands on."""
    return (murmur2(entity.encode("utf-8")) & 0x7FFFFFFF) % partitions


class PartitionCache:
    """Memoised :func:`partition_for` (murmur2 in Python costs ~3 µs per key)."""

    def __init__(self, partitions: int, max_entries: int = 4_000_000):
        self.partitions = partitions
        self._cache: dict[str, int] = {}
        self._max = max_entries

    def __call__(self, entity: str) -> int:
        p = self._cache.get(entity)
        if p is None:
            if len(self._cache) >= self._max:
                self._cache.clear()
            p = self._cache[entity] = partition_for(entity, self.partitions)
        return p
