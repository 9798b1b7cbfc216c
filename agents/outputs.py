"""Where a worker's results go: alerts (Kafka topic + Redis store and live stream),
dead letters, and records forwarded to the partition that owns them."""

from __future__ import annotations

import orjson
import redis.asyncio as aioredis

from settings import Settings
from streams.producer import BatchingProducer

ALERT_KEY = "warden:alert:{}"
ALERT_STREAM = "warden:alerts:stream"
ALERT_STREAM_MAXLEN = 100_000
ALERT_RETENTION_S = 30 * 86_400

# Store an alert and append it to the live stream, atomically and only once per id.
_STORE_ONCE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'alert', ARGV[1])
  return 1
end
return 0
"""


class Outputs:
    """Sends results through the batching producer and Redis."""

    def __init__(self, producer: BatchingProducer, redis: aioredis.Redis, settings: Settings):
        self.producer, self.redis, self.settings = producer, redis, settings

    async def alerts(self, alerts: list[dict]) -> None:
        """Publish alerts once by id: a replayed record finds its alert stored and stops there.

        Kafka gets the alert before Redis records it, so a crash in between can
        repeat an alert on the topic (same id) but never lose it.
        """
        if not alerts:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for a in alerts:
                pipe.exists(ALERT_KEY.format(a["id"]))
            known = await pipe.execute()
        new = [a for a, seen in zip(alerts, known) if not seen]
        if not new:
            return
        for a in new:
            await self.producer.send(self.settings.alerts_topic, a["entity"], a)
        await self.producer.flush()
        async with self.redis.pipeline(transaction=False) as pipe:
            for a in new:
                self._store(pipe, a)
            await pipe.execute()

    def _store(self, pipe, alert: dict) -> None:
        body = orjson.dumps(alert)
        pipe.eval(_STORE_ONCE, 2, ALERT_KEY.format(alert["id"]), ALERT_STREAM, body,
                  ALERT_RETENTION_S, ALERT_STREAM_MAXLEN)

    async def dead_letters(self, letters: list[dict]) -> None:
        for d in letters:
            await self.producer.send(self.settings.deadletter_topic, d["source"] or "unknown", d)

    async def forward(self, topic: str, entity: str, record: dict) -> None:
        await self.producer.send(topic, entity, record)

    async def flush(self) -> None:
        await self.producer.flush()
