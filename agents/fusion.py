"""Live fusion: each signal's pieces of evidence stored per (pattern, site) in Redis, fused alerts out.

Pieces are kept in one Redis hash per pattern and site (evidence name -> the
latest piece), expiring after the pattern's window, so workers that hold
different sources' partitions (a plant's meters on one, the truck on another)
fuse what they see together. Two workers completing a pattern at once can each
emit a fused signal; the alert manager merges them into one alert (same
source, kind and site within the quiet period).
"""

from __future__ import annotations

from collections.abc import Callable

import orjson
import redis.asyncio as aioredis

from models.fusion import SOURCE, Pattern, fuse, piece, site_doc, site_pieces
from state.refdata import RefData

KEY = "warden:fusion:{}:{}"


class Fusion:
    """Turns a batch of signals into the fused signals they complete."""

    def __init__(self, redis: aioredis.Redis, patterns: list[Pattern], refdata: Callable[[], RefData]):
        self.redis, self.patterns, self.refdata = redis, patterns, refdata

    async def handle(self, signals: list[dict]) -> list[dict]:
        if not self.patterns:
            return []
        ref = self.refdata()
        found = [(pattern, site, name, sig) for sig in signals if sig["source"] != SOURCE
                 for pattern, site, name in site_pieces(sig, self.patterns, ref)]
        if not found:
            return []
        touched = {}
        async with self.redis.pipeline(transaction=False) as pipe:
            for pattern, site, name, sig in found:
                key = KEY.format(pattern.name, site.id)
                pipe.hset(key, name, orjson.dumps(piece(sig, name)))
                pipe.expire(key, int(pattern.window_s) + 60)
                touched[key] = (pattern, site)
            for key in touched:
                pipe.hgetall(key)
            held = (await pipe.execute())[-len(touched):]
        fused = {}
        for (pattern, site), pieces in zip(touched.values(), held):
            out = fuse(pattern, site_doc(site), {k.decode(): orjson.loads(v) for k, v in pieces.items()})
            if out is not None:
                fused[out["id"]] = out
        return list(fused.values())
