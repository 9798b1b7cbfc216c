"""The batching producer every Warden tool sends with.

Records are grouped per (topic, partition) - the partition the topic's
partitioner picks for the entity (murmur2 unless ``partitioners`` names
another) - and sent as one JSON array per message once a batch is
full or has waited ``linger_ms``. One record alone goes as a JSON object keyed
by its entity, so any Kafka client can read what we write.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

import orjson
from aiokafka import AIOKafkaProducer

from settings import Settings
from streams.kafka.client import kafka_options
from streams.kafka.partitioner import PartitionCache, Scheme

if TYPE_CHECKING:
    from streams.registry import Registry

MAX_REQUEST_BYTES = 16 * 1024 * 1024


class BatchingProducer:
    """Sends records in per-partition JSON-array batches (size- and linger-bounded)."""

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        batch_records: int = 500,
        linger_ms: int = 20,
        client_id: str = "warden",
        partitioners: Mapping[str, Scheme] | None = None,
        **client_options,
    ):
        self.batch_records = batch_records
        self.linger_s = linger_ms / 1000.0
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap_servers,
            client_id=client_id,
            linger_ms=0,
            max_request_size=MAX_REQUEST_BYTES,
            acks="all",
            **client_options,
        )
        self._schemes = dict(partitioners or {})  # topic: its partitioner, when not murmur2
        self._partitioners: dict[str, PartitionCache] = {}
        self._buffers: dict[tuple[str, int], list] = {}
        self._born: dict[tuple[str, int], float] = {}
        self._pending: set[asyncio.Future] = set()
        self._lingerer: asyncio.Task | None = None
        self.sent_records = 0

    @classmethod
    def for_sources(cls, settings: Settings, registry: Registry, client_id: str) -> BatchingProducer:
        """A producer of the sources' records: the settings' connection and batching, each topic's partitioner
        (records land where they are owned)."""
        return cls(
            **kafka_options(settings),
            batch_records=settings.producer_batch_records,
            linger_ms=settings.producer_linger_ms,
            client_id=client_id,
            partitioners=registry.partitioners(settings),
        )

    async def start(self) -> None:
        await self._producer.start()
        self._lingerer = asyncio.create_task(self._linger_loop(), name="producer-linger")

    async def stop(self) -> None:
        if self._lingerer:
            self._lingerer.cancel()
            self._lingerer = None
        try:
            await self.flush()
        finally:
            await self._producer.stop()

    async def ping(self) -> None:
        """A metadata round trip to the cluster: raises (or hangs: bound it) when the broker does not answer."""
        await self._producer.client.fetch_all_metadata()

    async def partitions(self, topic: str) -> PartitionCache:
        """The partitioner for ``topic`` (its partition count read once from metadata)."""
        cache = self._partitioners.get(topic)
        if cache is None:
            parts = await self._producer.partitions_for(topic)
            cache = self._partitioners[topic] = PartitionCache(len(parts), self._schemes.get(topic, "murmur2"))
        return cache

    async def send(self, topic: str, entity: str, record: dict) -> None:
        """Queue one record; sends its partition's batch when full."""
        partition = (await self.partitions(topic))(entity)
        key = (topic, partition)
        buf = self._buffers.get(key)
        if buf is None:
            buf = self._buffers[key] = []
            self._born[key] = time.monotonic()
        buf.append((entity, record))
        if len(buf) >= self.batch_records:
            await self._send_batch(key)

    async def flush(self) -> None:
        """Send every queued record and wait until the broker has them all."""
        for key in list(self._buffers):
            await self._send_batch(key)
        if self._pending:
            await asyncio.gather(*self._pending)

    async def _send_batch(self, key: tuple[str, int]) -> None:
        items = self._buffers.pop(key, None)
        self._born.pop(key, None)
        if not items:
            return
        topic, partition = key
        if len(items) == 1:
            entity, record = items[0]
            value, msg_key = orjson.dumps(record), entity.encode()
        else:
            value, msg_key = orjson.dumps([r for _, r in items]), None
        future = await self._producer.send(topic, value, key=msg_key, partition=partition)
        self._pending.add(future)
        future.add_done_callback(self._pending.discard)
        self.sent_records += len(items)

    async def _linger_loop(self) -> None:
        while True:
            await asyncio.sleep(max(self.linger_s, 0.001))
            now = time.monotonic()
            for key, born in list(self._born.items()):
                if now - born >= self.linger_s:
                    await self._send_batch(key)
