"""Checkpoints: per-partition state in Redis, stored together with the Kafka offset it covers.

A checkpoint at offset K means "every record up to and including K is in this
state". On assignment the worker restores it and consumes from K + 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis


@dataclass(slots=True)
class Checkpoint:
    offset: int
    state: bytes


class CheckpointStore:
    """Reads and writes checkpoints under ``warden:ckpt:<app>:<source>:<partition>``."""

    def __init__(self, client: aioredis.Redis, app_id: str):
        self.client = client
        self.prefix = f"warden:ckpt:{app_id}"

    def key(self, source: str, partition: int) -> str:
        return f"{self.prefix}:{source}:{partition}"

    async def save(self, source: str, partition: int, offset: int, state: bytes) -> None:
        await self.client.hset(self.key(source, partition), mapping={"offset": offset, "state": state})

    async def load(self, source: str, partition: int) -> Checkpoint | None:
        found = await self.client.hmget(self.key(source, partition), "offset", "state")
        if found[0] is None or found[1] is None:
            return None
        return Checkpoint(int(found[0]), found[1])
