"""Replay into Kafka: archived records back onto their input topics, for end-to-end rehearsal.

With a speed-up, records are paced by event time (``speedup`` event seconds
per wall second, in event-time order across partitions); with 0 they go as
fast as the broker takes them, partition by partition in archive order.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from itertools import chain

from replay.archive import Chunk
from streams.kafka.partitioner import Scheme
from streams.kafka.producer import BatchingProducer
from streams.registry import Registry


def in_event_time_order(partitions: list[Iterable[Chunk]]) -> Iterator[tuple[float, str, dict]]:
    """(event time, source, record), the partitions' streams merged lazily into event-time order."""

    def one(part: Iterable[Chunk]) -> Iterator[tuple[float, str, dict]]:
        for c in part:
            yield from ((t, c.source, r) for t, r in zip(c.ts, c.records))

    return heapq.merge(*map(one, partitions), key=lambda item: item[0])


async def send(
    partitions: list[Iterable[Chunk]],
    registry: Registry,
    kafka: dict,
    *,
    partitioners: Mapping[str, Scheme] | None = None,
    speedup: float = 0.0,
    batch_records: int = 500,
    on_progress: Callable[[int], None] | None = None,
) -> int:
    """Send the records of each partition's chunk stream (``kafka``: client options; ``partitioners``: the
    topics' partitioners, when not murmur2); returns how many went."""
    producer = BatchingProducer(
        **kafka, batch_records=batch_records, linger_ms=20, client_id="warden-replay", partitioners=partitioners
    )
    await producer.start()
    sent = 0
    try:
        if speedup > 0:
            start_wall, start_event = time.monotonic(), None
            for t, source, record in in_event_time_order(partitions):
                start_event = t if start_event is None else start_event
                ahead = (t - start_event) / speedup - (time.monotonic() - start_wall)
                if ahead > 0.005:
                    await asyncio.sleep(ahead)
                spec = registry[source]
                await producer.send(spec.topic, str(record.get(spec.entity_field)), record)
                sent += 1
                if on_progress and sent % 1000 == 0:
                    on_progress(1000)
        else:
            for chunk in chain.from_iterable(partitions):
                spec = registry[chunk.source]
                for record in chunk.records:
                    await producer.send(spec.topic, str(record.get(spec.entity_field)), record)
                sent += len(chunk.records)
                if on_progress:
                    on_progress(len(chunk.records))
    finally:
        await producer.stop()
    return sent
