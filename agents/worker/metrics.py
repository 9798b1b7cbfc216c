"""Worker counters (records, dead letters by reason, signals, alerts, state size), published to Redis."""

from __future__ import annotations

import os
import socket
import time
from collections import Counter

import orjson
import psutil
import redis.asyncio as aioredis

from agents.worker import published
from models.alert import Alert

METRICS = "warden:metrics"  # each worker's snapshot: warden:metrics:<worker id>
METRICS_TTL_S = 30


class WorkerMetrics:
    """Counts what one worker did; :meth:`publish` writes a snapshot to Redis."""

    def __init__(self, worker_id: str | None = None):
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}"
        self.records: Counter[str] = Counter()
        self.accepted: Counter[str] = Counter()
        self.signals: Counter[str] = Counter()
        self.alerts: Counter[str] = Counter()  # alert changes by event (opened, merged, ...)
        self.forwarded: Counter[str] = Counter()
        self.duplicates: Counter[str] = Counter()  # records repeating one already taken: no effect
        self.dead_letters: Counter[str] = Counter()
        # per "source:partition" held here: entities in state and records waiting for event order now, and bytes
        # and entities of the last checkpoint
        self.entities: dict[str, int] = {}
        self.waiting: dict[str, int] = {}
        self.state_bytes: dict[str, int] = {}
        self.checkpoint_entities: dict[str, int] = {}
        self.started = time.time()
        self.first_record_at: float | None = None
        self.last_record_at: float | None = None
        self.rss_at_start = psutil.Process().memory_info().rss
        self.on_latency = None  # set by the worker: its Prometheus histogram's observe

    def processed(
        self, source: str, records: int, accepted: int, signals: int, forwarded: int, duplicates: int = 0
    ) -> None:
        now = time.time()
        self.first_record_at = self.first_record_at or now
        self.last_record_at = now
        self.records[source] += records
        self.accepted[source] += accepted
        self.signals[source] += signals
        self.forwarded[source] += forwarded
        self.duplicates[source] += duplicates

    def alerted(self, alerts: list[Alert]) -> None:
        self.alerts.update(a.event for a in alerts)

    def batch_latency(self, seconds: float) -> None:
        if self.on_latency is not None:
            self.on_latency(max(seconds, 0.0))

    def dead(self, source: str, reason: str) -> None:
        self.dead_letters[f"{source}:{reason}"] += 1

    def held(self, source: str, partition: int, entities: int, waiting: int) -> None:
        self.entities[f"{source}:{partition}"] = entities
        self.waiting[f"{source}:{partition}"] = waiting

    def checkpointed(self, source: str, partition: int, nbytes: int, entities: int) -> None:
        self.state_bytes[f"{source}:{partition}"] = nbytes
        self.checkpoint_entities[f"{source}:{partition}"] = entities

    def released(self, source: str, partition: int) -> None:
        """The partition went to another worker: its state is no longer counted here."""
        for counts in (self.entities, self.waiting, self.state_bytes, self.checkpoint_entities):
            counts.pop(f"{source}:{partition}", None)

    def snapshot(self) -> dict:
        return {
            "worker": self.worker_id,
            "at": time.time(),
            "started": self.started,
            "records": dict(self.records),
            "accepted": dict(self.accepted),
            "signals": dict(self.signals),
            "alerts": dict(self.alerts),
            "forwarded": dict(self.forwarded),
            "duplicates": dict(self.duplicates),
            "dead_letters": dict(self.dead_letters),
            "entities": sum(self.entities.values()),
            "waiting": sum(self.waiting.values()),
            "checkpoint_bytes": sum(self.state_bytes.values()),
            "checkpoint_entities": sum(self.checkpoint_entities.values()),
            "first_record_at": self.first_record_at,
            "last_record_at": self.last_record_at,
            "rss": psutil.Process().memory_info().rss,
            "rss_at_start": self.rss_at_start,
        }

    async def publish(self, redis: aioredis.Redis) -> None:
        await published.publish(redis, METRICS, self.worker_id, orjson.dumps(self.snapshot()), METRICS_TTL_S)


async def read_all(redis: aioredis.Redis) -> list[dict]:
    """Every live worker's latest snapshot."""
    return [orjson.loads(v) for v in await published.read_all(redis, METRICS)]


def totals(snapshots: list[dict]) -> tuple[dict[str, int], int]:
    """Records per source and dead letters, summed over workers' snapshots."""
    records: dict[str, int] = {}
    for snap in snapshots:
        for source, n in snap["records"].items():
            records[source] = records.get(source, 0) + n
    return records, sum(sum(snap["dead_letters"].values()) for snap in snapshots)
