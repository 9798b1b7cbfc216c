"""Vehicle positions for the console's map, shared between workers while someone is watching.

Each worker holds only the GPS partitions it was assigned. While a console has
asked for positions in the last ``WATCH_S`` seconds, every worker writes its
latest ones to Redis every couple of seconds; the console's worker merges them
(latest fix per vehicle). Nobody watching: nothing is written.
"""

from __future__ import annotations

from collections.abc import Callable

import orjson
import redis.asyncio as aioredis

from agents.worker import published

WATCHING_KEY = "warden:console:watching"
POSITIONS = "warden:positions"  # each worker's: warden:positions:<worker id>
WATCH_S, POSITIONS_TTL_S = 30, 10


async def share(redis: aioredis.Redis, worker_id: str, positions: Callable[[], list[dict]]) -> bool:
    """Write this worker's positions if a console is watching; returns whether it did."""
    if not await redis.exists(WATCHING_KEY):
        return False
    await published.publish(redis, POSITIONS, worker_id, orjson.dumps(positions()), POSITIONS_TTL_S)
    return True


async def gather(redis: aioredis.Redis, own: list[dict]) -> list[dict]:
    """Every worker's shared positions and ``own`` (this worker's, current), the latest per vehicle."""
    await redis.set(WATCHING_KEY, 1, ex=WATCH_S)
    latest: dict[str, dict] = {}
    for raw in await published.read_all(redis, POSITIONS):
        for p in orjson.loads(raw):
            if p["entity"] not in latest or p["ts"] > latest[p["entity"]]["ts"]:
                latest[p["entity"]] = p
    for p in own:
        if p["entity"] not in latest or p["ts"] >= latest[p["entity"]]["ts"]:
            latest[p["entity"]] = p
    return list(latest.values())
