"""Where a partition's results go: signals (for downstream consumers), dead letters, and
records forwarded to the partition that owns them - all through the batching producer."""

from __future__ import annotations

from models.signal import Signal
from settings import Settings
from streams.kafka.partitioner import PartitionCache
from streams.kafka.producer import BatchingProducer


class Outputs:
    """Sends a partition's results through the batching producer."""

    def __init__(self, producer: BatchingProducer, settings: Settings):
        self.producer, self.settings = producer, settings

    async def signals(self, signals: list[Signal]) -> None:
        """Detector signals to ``warden.signals`` as JSON, keyed by entity (a grouped one by its group, so one
        alert manager owns the group's incident), for consumers downstream."""
        for sig in signals:
            await self.producer.send(self.settings.signals_topic, sig.group or sig.entity, sig.doc())

    async def dead_letters(self, letters: list[dict]) -> None:
        for d in letters:
            await self.producer.send(self.settings.deadletter_topic, d["source"] or "unknown", d)

    async def forward(self, topic: str, entity: str, record: dict) -> None:
        await self.producer.send(topic, entity, record)

    async def partitioner(self, topic: str) -> PartitionCache:
        """Entity -> partition for ``topic`` as its metadata says (what forwarding will use)."""
        return await self.producer.partitions(topic)

    async def flush(self) -> None:
        await self.producer.flush()
