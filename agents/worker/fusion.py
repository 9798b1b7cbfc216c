"""Live fusion: each signal's pieces of evidence stored per (pattern, site) in Redis, fused alerts out.

Pieces are kept in one Redis list per pattern, site and evidence name (capped,
expiring after two windows), so workers that hold different sources'
partitions (a plant's meters on one, the truck on another) fuse what they see
together. A fused signal depends only on the pieces held, so a worker that
completes the pattern again emits the same signal id, which the alert manager
has already merged; two workers completing it at once emit the same id too.
"""

from __future__ import annotations

from collections.abc import Callable

import orjson
import redis.asyncio as aioredis

from models.fusion import MAX_PIECES, SOURCE, Pattern, fuse, piece, site_doc, site_pieces
from models.signal import Signal
from state.refdata.reference import RefData

KEY = "warden:fusion:{}:{}:{}"


class Fusion:
    """Turns a batch of signals into the fused signals they complete."""

    def __init__(self, redis: aioredis.Redis, patterns: list[Pattern], refdata: Callable[[], RefData]):
        self.redis, self.patterns, self.refdata = redis, patterns, refdata

    async def handle(self, signals: list[Signal]) -> list[Signal]:
        if not self.patterns:
            return []
        ref = self.refdata()
        found = [
            (pattern, site, name, sig)
            for sig in signals
            if sig.source != SOURCE
            for pattern, site, name in site_pieces(sig, self.patterns, ref)
        ]
        if not found:
            return []
        touched = {}
        async with self.redis.pipeline(transaction=False) as pipe:
            for pattern, site, name, sig in found:
                key = KEY.format(pattern.name, site.id, name)
                pipe.rpush(key, orjson.dumps(piece(sig, name)))
                pipe.ltrim(key, -MAX_PIECES, -1)
                pipe.expire(key, int(2 * pattern.window_s) + 60)
                touched[(pattern.name, site.id)] = (pattern, site)
            for pattern, site in touched.values():
                for spec in pattern.evidence:
                    pipe.lrange(KEY.format(pattern.name, site.id, spec.name), 0, -1)
            held = iter((await pipe.execute())[3 * len(found) :])
        fused = {}
        for pattern, site in touched.values():
            pieces = {spec.name: [orjson.loads(p) for p in next(held)] for spec in pattern.evidence}
            for out in fuse(pattern, site_doc(site), {name: got for name, got in pieces.items() if got}):
                fused[out.id] = out  # ones already merged are skipped by the alert manager (same id)
        return list(fused.values())
