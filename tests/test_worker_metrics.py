"""A worker's counters of the state it holds: what `warden bench` and Prometheus read."""

from __future__ import annotations

import asyncio

import orjson
import redis.asyncio as aioredis

from agents.embedded.redis_server import EmbeddedRedis
from agents.worker import published
from agents.worker.metrics import METRICS, read_all
from tests.test_archive import _messages, _runner


def test_entities_are_counted_as_held_now_and_as_of_the_last_checkpoint(tmp_path):
    async def run():
        runner, _ = _runner(tmp_path, lambda run: None)
        await runner.restore()
        await runner.process(_messages(0, 40))  # entities m0, m1, m2
        before = runner.metrics.snapshot()
        await runner._checkpoint()
        after = runner.metrics.snapshot()
        runner.metrics.released("metric", 0)  # the partition went to another worker
        return before, after, runner.metrics.snapshot()

    before, after, released = asyncio.run(run())
    assert (before["entities"], before["checkpoint_entities"]) == (3, 0)  # not only once checkpointed
    assert (after["entities"], after["checkpoint_entities"]) == (3, 3) and after["checkpoint_bytes"] > 0
    assert (released["entities"], released["checkpoint_entities"], released["checkpoint_bytes"]) == (0, 0, 0)


def test_every_live_workers_snapshot_is_read_without_walking_the_keyspace(tmp_path):
    async def run(url: str):
        redis = aioredis.Redis.from_url(url)
        try:
            await redis.mset({f"warden:alert:{i}": b"{}" for i in range(5000)})  # alerts elsewhere in Redis
            for worker, ttl in (("w1", 30), ("w2", 30), ("gone", 1)):
                await published.publish(redis, METRICS, worker, orjson.dumps({"worker": worker}), ttl)
            await asyncio.sleep(1.5)  # "gone" has expired
            await redis.config_resetstat()
            snapshots = await read_all(redis)
            commands = (await redis.info("stats"))["total_commands_processed"]
            return sorted(s["worker"] for s in snapshots), commands
        finally:
            await redis.aclose()

    with EmbeddedRedis(tmp_path) as server:
        workers, commands = asyncio.run(run(server.url))
    assert workers == ["w1", "w2"]
    assert commands <= 3  # the set and one MGET (and INFO itself), not a SCAN round trip per ten keys
