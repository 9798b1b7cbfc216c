"""The audit trail: every change made through the API, the console or the CLI, with who and when.

Entries go to the Redis stream ``warden:audit`` as JSON (``at``, ``who``,
``role``, ``action``, ``target``, ``detail``, ``via``); entries older than
``audit_retention_s`` are trimmed as new ones are written.
"""

from __future__ import annotations

import time

import orjson
import redis.asyncio as aioredis

from agents.access.tokens import Identity
from settings import Settings

AUDIT_STREAM = "warden:audit"


class Audit:
    """Records and reads audit entries."""

    def __init__(self, redis: aioredis.Redis, settings: Settings):
        self.redis = redis
        self.retention_ms = int(settings.audit_retention_s * 1000)

    async def record(self, identity: Identity, action: str, target: str, via: str, detail: dict | None = None) -> None:
        now = time.time()
        entry = {
            "at": now,
            "who": identity.who,
            "role": identity.role,
            "action": action,
            "target": target,
            "via": via,
            "detail": detail or {},
        }
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.xadd(AUDIT_STREAM, {"entry": orjson.dumps(entry)})
            pipe.xtrim(AUDIT_STREAM, minid=int(now * 1000) - self.retention_ms, approximate=False)
            await pipe.execute()

    async def recent(self, limit: int = 100) -> list[dict]:
        """The newest entries first."""
        rows = await self.redis.xrevrange(AUDIT_STREAM, count=limit)
        return [orjson.loads(fields[b"entry"]) for _, fields in rows]
