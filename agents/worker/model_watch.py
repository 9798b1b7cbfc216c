"""The promoted model version of each source, kept current in a running worker.

A promotion (or rollback) is announced on Redis pub/sub and the worker loads
the new version at once; a poll of the active versions catches an announcement
missed while disconnected. Partition runners pick the new version up between
batches (see :class:`agents.worker.partition.PartitionRunner`). A version that cannot
be loaded is reported and the previous one stays in use.
"""

from __future__ import annotations

import asyncio
import logging

import redis.asyncio as aioredis

from agents.worker.health import UNAVAILABLE, Health
from models import versions
from models.versions import ModelVersion, VersionError

log = logging.getLogger("warden.models")


class ModelWatch:
    """source -> loaded :class:`ModelVersion` (absent: built-in detectors)."""

    def __init__(self, redis: aioredis.Redis, health: Health):
        self.redis, self.health = redis, health
        self.current: dict[str, ModelVersion] = {}
        self._task: asyncio.Task | None = None

    def get(self, source: str) -> ModelVersion | None:
        return self.current.get(source)

    def versions(self) -> dict[str, str]:
        return {s: m.version for s, m in self.current.items()}

    async def refresh(self) -> None:
        """Load any source whose active version differs from the one in use."""
        wanted = await versions.active(self.redis)
        for source in [s for s in self.current if s not in wanted]:
            log.info("%s: back to the built-in detectors", source)
            del self.current[source]
        for source, version in wanted.items():
            if source in self.current and self.current[source].version == version:
                continue
            try:
                meta = await versions.get(self.redis, version)
                model = await asyncio.to_thread(versions.load, meta)
            except VersionError as exc:
                self.health.failed("models", f"load {version}", exc)
                continue
            self.current[source] = model
            self.health.recovered("models")
            log.info("%s: now running model version %s", source, version)

    async def start(self) -> None:
        await self.refresh()
        self._task = asyncio.create_task(self._listen(), name="warden.models.listen")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _listen(self) -> None:
        """Refresh on every announcement; resubscribe after a Redis outage."""
        while True:
            try:
                async with self.redis.pubsub() as pubsub:
                    await pubsub.subscribe(versions.CHANNEL)
                    async for message in pubsub.listen():
                        if message["type"] == "message":
                            await self.refresh()
            except UNAVAILABLE as exc:
                self.health.failed("redis", "model announcements", exc)
                await asyncio.sleep(2.0)
