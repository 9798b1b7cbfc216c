"""Delivery from the alert stream (the outbox) to Kafka and to webhooks, each at its own pace.

Every sink is a Redis consumer group on ``warden:alerts:stream``: an entry is
acknowledged only after the sink took it, so a failing receiver holds its own
entries (retried with exponential back-off) and loses nothing, while the
pipeline and the other sinks go on. Entries a dead worker had claimed are
taken over after ``CLAIM_IDLE_MS``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from fnmatch import fnmatchcase

import aiohttp
import orjson
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from agents.alerts.store import ALERT_STREAM
from agents.present.alert_view import AlertView
from models.lifecycle import CLOSED
from models.signal import SEVERITIES
from settings import Settings, Webhook
from streams.kafka.client import kafka_options
from streams.kafka.producer import BatchingProducer

log = logging.getLogger(__name__)

CLAIM_IDLE_MS = 30_000
FIRING = ("opened", "reopened", "escalated")
CLOSING = CLOSED


class StreamSink:
    """Reads the alert stream as consumer group ``group`` and hands batches to ``deliver``."""

    def __init__(
        self,
        redis: aioredis.Redis,
        group: str,
        consumer: str,
        deliver: Callable[[list[dict]], Awaitable[None]],
        max_backoff_s: float = 30.0,
    ):
        self.redis, self.group, self.consumer, self.deliver = redis, group, consumer, deliver
        self.max_backoff_s = max_backoff_s
        self.delivered = 0
        self.failures = 0
        self.last_error: str | None = None

    async def run(self) -> None:
        try:
            await self.redis.xgroup_create(ALERT_STREAM, self.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        backoff, pending_first = 0.5, True
        while True:
            try:
                # Our own unacknowledged entries first (after a failure or a restart), then new ones.
                batch = await self._read("0" if pending_first else ">")
                if pending_first and not batch:
                    pending_first = False
                    continue
                if not batch and not pending_first:
                    batch = await self._claim()
                if not batch:
                    continue
                ids = [entry_id for entry_id, _ in batch]
                await self.deliver([orjson.loads(fields[b"alert"]) for _, fields in batch])
                await self.redis.xack(ALERT_STREAM, self.group, *ids)
                self.delivered += len(ids)
                backoff, self.last_error = 0.5, None
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.failures += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("delivery %s failed (%s); retrying in %.1f s", self.group, self.last_error, backoff)
                pending_first = True
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff_s)

    async def _read(self, start: str) -> list:
        got = await self.redis.xreadgroup(
            self.group, self.consumer, {ALERT_STREAM: start}, count=200, block=None if start == "0" else 1000
        )
        return await self._live([e for _, entries in got or [] for e in entries])

    async def _claim(self) -> list:
        _, claimed, *_ = await self.redis.xautoclaim(
            ALERT_STREAM, self.group, self.consumer, min_idle_time=CLAIM_IDLE_MS, count=200
        )
        return await self._live(claimed)

    async def _live(self, entries: list) -> list:
        """Entries still in the stream; pending ones trimmed away meanwhile are acknowledged and reported."""
        gone = [entry_id for entry_id, fields in entries if not fields]
        if gone:
            log.error(
                "delivery %s: %d pending alert changes were trimmed from the stream before delivery",
                self.group,
                len(gone),
            )
            await self.redis.xack(ALERT_STREAM, self.group, *gone)
        return [e for e in entries if e[1]]


def kafka_deliver(producer: BatchingProducer, topic: str) -> Callable[[list[dict]], Awaitable[None]]:
    """Every alert change to the alerts topic, keyed by entity."""

    async def deliver(alerts: list[dict]) -> None:
        for alert in alerts:
            await producer.send(topic, alert["entity"], alert)
        await producer.flush()

    return deliver


def alertmanager_payload(hook: Webhook, alerts: list[dict], view: AlertView, language: str) -> dict:
    """Prometheus Alertmanager's webhook JSON (version 4) for firing and closed alerts: labels for routing,
    annotations for people (in ``language``: the title, what it means, the evidence with units), times with
    the city's UTC offset."""
    items = []
    for a in alerts:
        closed = a["event"] in CLOSING
        labels = {
            "alertname": a["kind"],
            "id": a["id"],
            "source": a["source"],
            "entity": a["entity"],
            "severity": a["severity"],
            **{k: v for k, v in (a.get("area") or {}).items() if not k.endswith("_id")},
        }
        if a.get("departments"):
            labels["department"] = a["departments"][0]
        if a.get("escalation"):
            labels["escalation"] = a["escalation"]["to"]
        shown = view.display(a, language)
        items.append(
            {
                "status": "resolved" if closed else "firing",
                "labels": labels,
                "annotations": {
                    "summary": f"{shown['title']}: {a['entity']}",
                    "description": shown["description"],
                    "evidence": "; ".join(f"{label}: {text}" for label, text in shown["evidence"]),
                    "evidence_json": orjson.dumps(a["evidence"]).decode(),
                    "severity": shown["severity"],
                    "count": str(a["count"]),
                    **({"action": shown["action"]} if shown["action"] else {}),
                    **({"escalation": shown["escalation"]} if "escalation" in shown else {}),
                },
                "startsAt": view.clock.iso(a["first_seen"]),
                "endsAt": view.clock.iso(a["last_seen"]) if closed else "0001-01-01T00:00:00Z",
                "generatorURL": f"/alerts/{a['id']}",
                "fingerprint": a["id"],
            }
        )
    status = "firing" if any(i["status"] == "firing" for i in items) else "resolved"
    return {
        "version": "4",
        "groupKey": f"warden:{hook.name}",
        "truncatedAlerts": 0,
        "status": status,
        "receiver": hook.name,
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "",
        "alerts": items,
    }


def webhook_deliver(
    hook: Webhook, session: aiohttp.ClientSession, view: AlertView, language: str
) -> Callable[[list[dict]], Awaitable[None]]:
    """Firing and closing changes that pass the hook's filters, as one POST; raises unless 2xx."""
    floor = SEVERITIES.index(hook.min_severity)

    async def deliver(alerts: list[dict]) -> None:
        wanted = [
            a
            for a in alerts
            if a["event"] in FIRING + CLOSING
            and SEVERITIES.index(a["severity"]) >= floor
            and any(fnmatchcase(a["kind"], k) for k in hook.kinds)
        ]
        if not wanted:
            return
        async with session.post(
            hook.url,
            data=orjson.dumps(alertmanager_payload(hook, wanted, view, language)),
            headers={"Content-Type": "application/json"},
            timeout=aiohttp.ClientTimeout(total=hook.timeout_s),
        ) as resp:
            if resp.status >= 300:
                raise RuntimeError(f"{hook.name}: HTTP {resp.status}")

    return deliver


class Delivery:
    """The worker's sinks: the Kafka alerts topic and each configured webhook."""

    def __init__(self, redis: aioredis.Redis, settings: Settings, consumer: str, view: AlertView):
        self.session = aiohttp.ClientSession()
        # Its own producer: flushing alerts must not wait on (or hold up) the ingest path's batches.
        self.producer = BatchingProducer(
            **kafka_options(settings),
            batch_records=settings.producer_batch_records,
            linger_ms=settings.producer_linger_ms,
            client_id=f"{settings.app_id}-alerts",
        )
        self.sinks = [StreamSink(redis, "kafka", consumer, kafka_deliver(self.producer, settings.alerts_topic))]
        self.sinks += [
            StreamSink(
                redis,
                f"webhook:{h.name}",
                consumer,
                webhook_deliver(h, self.session, view, h.language or settings.language),
                h.max_backoff_s,
            )
            for h in settings.webhooks
        ]
        self.tasks: list[asyncio.Task] = []

    async def start(self) -> None:
        await self.producer.start()
        self.tasks = [asyncio.create_task(s.run(), name=f"delivery-{s.group}") for s in self.sinks]

    async def stop(self) -> None:
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.session.close()
        await self.producer.stop()

    def status(self) -> dict:
        return {
            s.group: {"delivered": s.delivered, "failures": s.failures, "last_error": s.last_error} for s in self.sinks
        }
