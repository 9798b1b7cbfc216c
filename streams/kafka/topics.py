"""Creating the topics Warden reads and writes, each with its partition count."""

from __future__ import annotations

import asyncio
import contextlib

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, TopicAlreadyExistsError

from settings import Settings
from streams.kafka.client import kafka_options
from streams.registry import Registry


def warden_topics(settings: Settings, registry: Registry) -> dict[str, int]:
    """Every input topic of the registry plus alerts, dead letters and signals, with their partitions."""
    topics = {s.topic: s.partition_count(settings.partitions) for s in registry.values()}
    topics.update(
        dict.fromkeys((settings.alerts_topic, settings.deadletter_topic, settings.signals_topic), settings.partitions)
    )
    return topics


async def ensure_topics(settings: Settings, topics: dict[str, int], timeout_s: float = 30.0) -> None:
    """Create the missing ones among ``topics`` (existing topics are left as they are)."""
    admin = AIOKafkaAdminClient(**kafka_options(settings))
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        try:
            await admin.start()
            break
        except KafkaConnectionError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.2)
    try:
        existing = set(await admin.list_topics())
        missing = [NewTopic(t, num_partitions=n, replication_factor=1) for t, n in topics.items() if t not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(missing)
    finally:
        await admin.close()
