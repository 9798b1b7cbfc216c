"""Live fusion: each signal's pieces of evidence stored per (pattern, site) in Redis, fused alerts out.

Pieces are kept in one Redis sorted set per pattern, site and evidence name,
scored by event time, each piece once (a signal seen again after a crash is
the same member), beside the site's last completion: as :class:`models.fusion.
FusionBook` keeps them in replay, the pieces newer than the last completion, at
most the latest ``MAX_PIECES`` a name. Workers that hold different sources'
partitions (a plant's meters on one, the truck on another) fuse what they see
together. A fused signal depends only on the pieces held and the last
completion, so a worker that completes the pattern again emits the same signal
id, which the alert manager has already merged; two workers completing it at
once emit the same id too. The keys expire after a day without a piece (in wall
time), only to let go of sites that went quiet.
"""

from __future__ import annotations

from collections.abc import Callable

import orjson
import redis.asyncio as aioredis

from models.fusion import MAX_PIECES, SOURCE, Pattern, fuse, piece, site_doc, site_pieces
from models.signal import Signal
from state.refdata.reference import RefData

KEY = "warden:fusion:{}:{}:{}"
LAST = "warden:fusion:last:{}:{}"
EXPIRE_S = 86_400
# A piece in: once, and at most the latest MAX_PIECES of its name by (event time, member).
ADD = """
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
local over = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[3])
if over > 0 then redis.call('ZREMRANGEBYRANK', KEYS[1], 0, over - 1) end
redis.call('EXPIRE', KEYS[1], ARGV[4])
"""
# A completion: the site's last one moves on (never back), and the pieces it used up go.
COMPLETE = """
local last = tonumber(redis.call('GET', KEYS[1]) or '-inf')
local t = math.max(last, tonumber(ARGV[1]))
redis.call('SET', KEYS[1], string.format('%.17g', t), 'EX', ARGV[2])
for i = 2, #KEYS do redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', string.format('%.17g', t)) end
"""


class Fusion:
    """Turns a batch of signals into the fused signals they complete."""

    def __init__(self, redis: aioredis.Redis, patterns: list[Pattern], refdata: Callable[[], RefData]):
        self.redis, self.patterns, self.refdata = redis, patterns, refdata
        self.add, self.complete = redis.register_script(ADD), redis.register_script(COMPLETE)

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
                args = [sig.ts, orjson.dumps(piece(sig, name)), MAX_PIECES, EXPIRE_S]
                await self.add(keys=[KEY.format(pattern.name, site.id, name)], args=args, client=pipe)
                touched[(pattern.name, site.id)] = (pattern, site)
            for pattern, site in touched.values():
                pipe.get(LAST.format(pattern.name, site.id))
                for spec in pattern.evidence:
                    pipe.zrange(KEY.format(pattern.name, site.id, spec.name), 0, -1)
            held = iter((await pipe.execute())[len(found) :])
        fused = {}
        for pattern, site in touched.values():
            last = next(held)
            after = float(last) if last is not None else -float("inf")
            pieces = {spec.name: [orjson.loads(p) for p in next(held)] for spec in pattern.evidence}
            pieces = {name: [p for p in got if p["ts"] > after] for name, got in pieces.items()}
            done = fuse(pattern, site_doc(site), {name: got for name, got in pieces.items() if got}, after)
            for out in done:
                fused[out.id] = out  # ones already merged are skipped by the alert manager (same id)
            if done:
                keys = [LAST.format(pattern.name, site.id)]
                keys += [KEY.format(pattern.name, site.id, spec.name) for spec in pattern.evidence]
                await self.complete(keys=keys, args=[done[-1].ts, EXPIRE_S])
        return list(fused.values())
