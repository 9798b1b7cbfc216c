"""Accountability: every alert is followed against its deadlines until it is closed; one not acknowledged in
time is escalated one level (its town's -> its county's), one not resolved in time one more (-> the city's);
and per department, how fast alerts are acknowledged and closed and how many are overdue.

Deadlines come from the reference data (:mod:`state.refdata.deadlines`), fixed when an alert is raised (or
re-opened) here. Keys, beside the alert store's:

- ``warden:alerts:due`` sorted set: alert id -> its next deadline to check
- ``warden:alerts:overdue`` hash: an escalated alert not yet closed -> the department answering for it
- ``warden:dept:<department>:acknowledge`` / ``:close`` lists of the latest 1,000 durations (s) from raised
  to acknowledged (the first step taken) and to closed; ``warden:dept:escalations`` hash: escalations so far
- ``warden:depts`` set of the departments with figures

>>> escalation_step("open", ack_by=100.0, resolve_by=500.0, done=[], now=120.0)
('acknowledge', 500.0)
>>> escalation_step("dispatched", ack_by=100.0, resolve_by=500.0, done=["acknowledge"], now=600.0)
('resolve', None)
>>> escalation_step("acknowledged", ack_by=100.0, resolve_by=500.0, done=[], now=120.0)  # acknowledged in time
(None, 500.0)
"""

from __future__ import annotations

import statistics
from collections import Counter

import orjson
import redis.asyncio as aioredis
from redis.exceptions import WatchError

from agents.alerts.keys import ALERT_KEY, ALERT_STREAM, DEPARTMENTS, DUE, DURATIONS, ESCALATIONS, HISTORY_KEY, OVERDUE
from models.lifecycle import ACTIVE
from streams.event_time import iso

LEVELS = ("town", "county", "city")
KEEP = 1000
BATCH, MAX_BATCHES = 200, 10


def answering(doc: dict, dispatched: str | None) -> str:
    """The department that answers for an alert: where it was dispatched, else the first it was routed to."""
    return dispatched or next(iter(doc.get("departments") or []), "unrouted")


def escalation_step(
    status: str, ack_by: float, resolve_by: float, done: list[str], now: float
) -> tuple[str | None, float | None]:
    """(The deadline an alert has just missed, if any: acknowledge or resolve; when to look at it next)."""
    missed = None
    if status == "open" and now >= ack_by and "acknowledge" not in done:
        missed = "acknowledge"
    elif status in ACTIVE and now >= resolve_by and "resolve" not in done:
        missed = "resolve"
    pending = status in ACTIVE and "resolve" not in done and missed != "resolve"
    return missed, resolve_by if pending else None


def follow_step(
    pipe, alert_id: str, doc: dict, step: dict, now: float, stored_at: float, resolve_by: float | None
) -> None:
    """Queue on ``pipe`` what a staff ``step`` (from, to, department) at ``now`` changes for accountability:
    the answering department's durations, and the alert's next deadline."""
    department = answering(doc, step.get("department") or doc.get("dispatched_to"))
    pipe.sadd(DEPARTMENTS, department)
    spans = []
    if step["from"] == "open":
        spans.append("acknowledge")
    if step["to"] not in ACTIVE:
        spans.append("close")
        pipe.zrem(DUE, alert_id)
        pipe.hdel(OVERDUE, alert_id)
    elif resolve_by is not None:
        pipe.zadd(DUE, {alert_id: resolve_by})
    for span in spans:
        pipe.lpush(DURATIONS.format(department, span), round(max(0.0, now - stored_at), 3))
        pipe.ltrim(DURATIONS.format(department, span), 0, KEEP - 1)


class Accountability:
    """Escalates alerts past their deadlines and reports per-department figures."""

    def __init__(self, redis: aioredis.Redis, stream_maxlen: int):
        self.redis, self.maxlen = redis, stream_maxlen

    async def escalate_due(self, now: float) -> list[dict]:
        """Escalate every alert whose deadline has passed by ``now`` (at most ``MAX_BATCHES`` batches a call, the
        rest the next); returns them, as the stream carries them (``event`` escalated, with their ``escalation``)."""
        escalated = []
        for _ in range(MAX_BATCHES):
            ids = await self.redis.zrangebyscore(DUE, "-inf", now, start=0, num=BATCH)
            for alert_id in ids:
                if (alert := await self._escalate(alert_id.decode(), now)) is not None:
                    escalated.append(alert)
            if len(ids) < BATCH:
                break
        return escalated

    async def _escalate(self, alert_id: str, now: float) -> dict | None:
        key = ALERT_KEY.format(alert_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(key)  # (an escalation changes the alert: a second worker looks again)
                    fields = ("doc", "status", "ack_by", "resolve_by", "escalation", "department")
                    doc, status, ack_by, resolve_by, previous, dispatched = await pipe.hmget(key, *fields)
                    if doc is None or ack_by is None:
                        pipe.multi()
                        pipe.zrem(DUE, alert_id)  # expired, or raised before deadlines were kept
                        await pipe.execute()
                        return None
                    doc, status = orjson.loads(doc), status.decode()
                    previous = orjson.loads(previous) if previous else None
                    ack_by, resolve_by = float(ack_by), float(resolve_by)
                    done = previous["reasons"] if previous else []
                    missed, next_due = escalation_step(status, ack_by, resolve_by, done, now)
                    pipe.multi()
                    if next_due is None:
                        pipe.zrem(DUE, alert_id)
                    else:
                        pipe.zadd(DUE, {alert_id: next_due})
                    if missed is None:
                        await pipe.execute()
                        return None
                    level = min((previous["level"] if previous else 0) + 1, len(LEVELS) - 1)
                    department = answering(doc, dispatched.decode() if dispatched else None)
                    escalation = {
                        "level": level,
                        "to": LEVELS[level],
                        "area": (doc.get("area") or {}).get(LEVELS[level], ""),
                        "reasons": [*done, missed],
                        "deadline": iso(ack_by if missed == "acknowledge" else resolve_by),
                        "at": iso(now),
                        "department": department,
                    }
                    step = {"action": "escalate", "from": status, "to": status, "by": "engine", "at": iso(now)}
                    alert = {**doc, "status": status, "event": "escalated", "escalation": escalation}
                    pipe.hset(key, "escalation", orjson.dumps(escalation))
                    pipe.rpush(HISTORY_KEY.format(alert_id), orjson.dumps({**step, "escalation": escalation}))
                    pipe.hset(OVERDUE, alert_id, department)
                    pipe.hincrby(ESCALATIONS, department, 1)
                    pipe.sadd(DEPARTMENTS, department)
                    pipe.xadd(ALERT_STREAM, {"alert": orjson.dumps(alert)}, maxlen=self.maxlen, approximate=True)
                    await pipe.execute()
                    return alert
                except WatchError:
                    continue  # a staff step or another worker got there first: look again

    async def median_s(self, span: str) -> float | None:
        """The median seconds from raised to ``span`` (acknowledge or close) over every department's latest."""
        departments = [d.decode() for d in await self.redis.smembers(DEPARTMENTS)]
        async with self.redis.pipeline(transaction=False) as pipe:
            for d in departments:
                pipe.lrange(DURATIONS.format(d, span), 0, -1)
            return _median(await pipe.execute())

    async def figures(self) -> dict[str, dict]:
        """Per department: alerts acknowledged and closed (``*_count``, of the latest 1,000 each), the median
        and 90th percentile seconds from raised to each, alerts overdue now, escalations so far."""
        departments = sorted(d.decode() for d in await self.redis.smembers(DEPARTMENTS))
        overdue = Counter(d.decode() for d in await self.redis.hvals(OVERDUE))
        async with self.redis.pipeline(transaction=False) as pipe:
            for d in departments:
                pipe.lrange(DURATIONS.format(d, "acknowledge"), 0, -1)
                pipe.lrange(DURATIONS.format(d, "close"), 0, -1)
            pipe.hgetall(ESCALATIONS)
            *durations, escalations = await pipe.execute()
        out = {}
        for i, d in enumerate(departments):
            out[d] = {
                **_spread("acknowledge", durations[2 * i]),
                **_spread("close", durations[2 * i + 1]),
                "overdue": overdue.get(d, 0),
                "escalated": int(escalations.get(d.encode(), 0)),
            }
        return out


def _median(lists: list[list[bytes]]) -> float | None:
    values = [float(v) for raw in lists for v in raw]
    return statistics.median(values) if values else None


def _spread(span: str, raw: list[bytes]) -> dict:
    values = sorted(float(v) for v in raw)
    median = statistics.median(values) if values else None
    p90 = values[min(len(values) - 1, int(0.9 * len(values)))] if values else None
    return {f"{span}_count": len(values), f"{span}_median_s": median, f"{span}_p90_s": p90}
