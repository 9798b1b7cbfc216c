"""Reference data in Redis: one validated document and a version number; workers cache it and poll the version.

Polling one small key every few seconds is cheaper and sturdier than pub/sub
(a missed message on reconnect would leave a worker on old data forever).
"""

from __future__ import annotations

import logging

import orjson
import redis.asyncio as aioredis

from state.refdata.reference import RefData

log = logging.getLogger(__name__)

DOC_KEY = "warden:refdata:doc"
VERSION_KEY = "warden:refdata:version"


async def save(redis: aioredis.Redis, ref: RefData) -> int:
    """Store validated reference data; returns its new version."""
    version = int(await redis.incr(VERSION_KEY))
    # A worker that sees the new version before the document loads the old one, notes its (old)
    # version, and picks the new one up on its next look.
    await redis.set(DOC_KEY, orjson.dumps({"version": version, "doc": ref.doc}))
    return version


async def load(redis: aioredis.Redis) -> RefData:
    """The stored reference data, or empty reference data if none was ever loaded."""
    raw = await redis.get(DOC_KEY)
    if raw is None:
        return RefData.empty()
    stored = orjson.loads(raw)
    return RefData.from_doc(stored["doc"], version=stored["version"])


class RefCache:
    """A worker's copy of the reference data, replaced when the stored version changes."""

    def __init__(self, redis: aioredis.Redis):
        self.redis = redis
        self.current = RefData.empty()

    async def refresh(self) -> bool:
        """Reload if the version in Redis differs from ours; True if it changed."""
        version = int(await self.redis.get(VERSION_KEY) or 0)
        if version == self.current.version:
            return False
        ref = await load(self.redis)
        log.info("reference data: version %d -> %d (%s)", self.current.version, ref.version, ref.counts())
        self.current = ref
        return True
