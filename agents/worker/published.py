"""Values each worker publishes under a key of its own with a TTL (metrics, shared vehicle positions),
and reading every live worker's without walking Redis's keyspace.

The publishing workers' ids are kept in a sorted set named after the family,
scored by when each last published, so a reader fetches one key per worker
however many alerts the database holds. (A SCAN for ``family:*`` visits every
key: with 10,000 alerts in Redis that was 125 ms of CPU per read, paid by
every console refresh and bench poll, and by Redis.)
"""

from __future__ import annotations

import time

import redis.asyncio as aioredis

FORGET_S = 3600  # a worker silent this long leaves the set (its key expired long before)


def key(family: str, worker_id: str) -> str:
    """The key of one worker's value, e.g. ``warden:metrics:<worker>``."""
    return f"{family}:{worker_id}"


async def publish(redis: aioredis.Redis, family: str, worker_id: str, value: bytes, ttl_s: int) -> None:
    """Store this worker's value for ``ttl_s`` seconds and list the worker in the family's set."""
    now = time.time()
    async with redis.pipeline(transaction=False) as pipe:
        pipe.set(key(family, worker_id), value, ex=ttl_s)
        pipe.zadd(family, {worker_id: now})
        pipe.zremrangebyscore(family, "-inf", now - FORGET_S)
        await pipe.execute()


async def read_all(redis: aioredis.Redis, family: str) -> list[bytes]:
    """Every listed worker's value that has not expired."""
    workers = await redis.zrange(family, 0, -1)
    if not workers:
        return []
    values = await redis.mget([key(family, w.decode()) for w in workers])
    return [v for v in values if v]
