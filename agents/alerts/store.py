"""Alerts in Redis: one hash per alert, indexes, transition history, the live stream and staff labels.

Keys (``<id>`` is the alert id):

- ``warden:alert:<id>`` hash: ``doc`` (the alert's JSON), ``incident`` (the merge state), ``status``, ``first_seen``,
  ``stored_at``, ``updated_at``, the ``department`` it was dispatched to (who did what: the history), its
  deadlines ``ack_by`` and ``resolve_by`` and its ``escalation`` (:mod:`agents.alerts.accountability`)
- ``warden:alert:<id>:history`` list of transitions (JSON: action, from, to, by, at, note), and of re-openings
  (action ``reopen`` by ``engine``, at the re-opening signal's time, with that ``signal``)
- ``warden:situation:<source>|<kind>|<entity>`` id of the situation's latest alert
- ``warden:signal:<signal id>`` marks a signal already merged (redelivery changes nothing)
- ``warden:alerts:idx:{time,status:<s>,kind:<k>,area:<id>,severity:<s>}`` sorted sets by the time
  the alert was raised (or re-opened) here
- ``warden:alerts:stream`` every change as it happens (the outbox: the console, ``alerts tail``,
  the Kafka relay and the webhooks read it)
- ``warden:labels`` stream of staff marks (resolved = true, false_positive = false) for learning

Everything expires after ``alert_retention_s``; :meth:`AlertStore.trim` drops index entries as old.
"""

from __future__ import annotations

import time

import orjson
import redis.asyncio as aioredis
from redis.exceptions import WatchError

from agents.alerts import accountability
from agents.alerts.keys import (
    ALERT_KEY,
    ALERT_STREAM,
    DUE,
    HISTORY_KEY,
    IDX,
    LABEL_STREAM,
    OVERDUE,
    SIGNAL_KEY,
    SITUATION_KEY,
)
from models.alert import Alert
from models.incidents import situation
from models.lifecycle import LABELS, TransitionError, next_status
from settings import Settings
from state.refdata.deadlines import Deadlines
from streams.event_time import iso

# AlertStore.commit's batch, atomically: each alert's hash, expiry, situation, indexes and deadlines (when
# opened or reopened) and stream entry, then the merged signals' marks.
_COMMIT = """
local call = cjson.decode(ARGV[1])
local now, ttl = call.now, call.ttl
for _, c in ipairs(call.changes) do
  if c.status then
    redis.call('ZREM', call.resolved, c.id)
    for _, idx in ipairs(c.indexes) do redis.call('ZADD', idx, now, c.id) end
    redis.call('HSET', c.key, 'incident', c.incident, 'doc', c.doc, 'updated_at', now,
               'status', c.status, 'stored_at', now, 'ack_by', c.ack_by, 'resolve_by', c.resolve_by)
    redis.call('HDEL', c.key, 'escalation')
    redis.call('HDEL', call.overdue, c.id)
    redis.call('ZADD', call.due, c.ack_by, c.id)
  else
    redis.call('HSET', c.key, 'incident', c.incident, 'doc', c.doc, 'updated_at', now)
  end
  redis.call('EXPIRE', c.key, ttl)
  if c.history then
    redis.call('RPUSH', c.history_key, c.history)
    redis.call('EXPIRE', c.history_key, ttl)
  end
  redis.call('SET', c.situation, c.id, 'EX', ttl)
  redis.call('XADD', call.stream, 'MAXLEN', '~', call.maxlen, '*', 'alert', c.alert)
end
for _, key in ipairs(call.signals) do redis.call('SET', key, 1, 'EX', ttl) end
return #call.changes
"""


class AlertNotFound(KeyError):
    """No alert with that id (never raised, or past retention)."""

    def __str__(self) -> str:
        return f"no alert {self.args[0]!r}"


_READ_FIELDS = ("doc", "status", "department", "ack_by", "resolve_by", "escalation")


def _alert(row: list) -> dict | None:
    """An alert from its hash fields (:data:`_READ_FIELDS`), or None if it is gone: with where it was dispatched,
    its deadlines and its escalation, where it has them."""
    doc, status, department, ack_by, resolve_by, escalation = row
    if doc is None:
        return None
    alert = {**orjson.loads(doc), "status": status.decode()}
    if department:
        alert["dispatched_to"] = department.decode()
    if ack_by:
        alert["deadlines"] = {"acknowledge_by": iso(float(ack_by)), "resolve_by": iso(float(resolve_by))}
    if escalation:
        alert["escalation"] = orjson.loads(escalation)
    return alert


def _index_keys(alert: dict) -> list[str]:
    keys = [IDX.format("time"), IDX.format(f"kind:{alert['kind']}"), IDX.format(f"severity:{alert['severity']}")]
    keys += [IDX.format(f"area:{v}") for k, v in alert["area"].items() if k.endswith("_id")]
    return keys


def _reopen_step(incident: dict) -> dict:
    signal = incident["reopened_by"]
    return {"action": "reopen", "from": "resolved", "to": "open", "by": "engine", "at": signal["at"], "signal": signal}


class AlertStore:
    """Reads and writes alerts; the alert manager merges into it, staff move alerts through their lifecycle."""

    def __init__(self, redis: aioredis.Redis, settings: Settings):
        self.redis = redis
        self.retention = int(settings.alert_retention_s)
        self.maxlen = settings.alert_stream_maxlen
        self._commit_script = redis.register_script(_COMMIT)  # EVALSHA, loaded again after a Redis restart

    # -- the alert manager's side -------------------------------------------------------------

    async def unseen(self, signal_ids: list[str]) -> list[bool]:
        """Per signal id: True if it has not been merged yet."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for sid in signal_ids:
                pipe.exists(SIGNAL_KEY.format(sid))
            return [not seen for seen in await pipe.execute()]

    async def latest(self, situations: list[str]) -> dict[str, dict]:
        """The latest incident (internal form, with its current status) of each situation that has one."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in situations:
                pipe.get(SITUATION_KEY.format(key))
            ids = await pipe.execute()
        found = [(key, i.decode()) for key, i in zip(situations, ids) if i]
        async with self.redis.pipeline(transaction=False) as pipe:
            for _, alert_id in found:
                pipe.hmget(ALERT_KEY.format(alert_id), "incident", "status")
            rows = await pipe.execute()
        out = {}
        for (key, _), (raw, status) in zip(found, rows):
            if raw is not None:
                out[key] = {**orjson.loads(raw), "status": status.decode()}
        return out

    async def commit(self, changes: list[tuple[dict, Alert, str]], signal_ids: list[str], deadlines: Deadlines) -> None:
        """Store changed incidents ``(incident, public alert, event)`` and mark their signals merged, atomically;
        an alert opened or re-opened gets its deadlines (:mod:`agents.alerts.accountability`) from ``deadlines``.

        One Lua call for the whole batch: a MULTI/EXEC pipeline costs ten commands an alert, each packed
        and its reply parsed in Python (2.1x the alerts/s on the embedded Redis). Documents go in as
        orjson wrote them (strings inside the call's JSON), so the stored bytes do not depend on Lua.
        """
        now = time.time()
        rows = []
        for incident, alert, event in changes:
            doc = alert.doc()
            row = {
                "key": ALERT_KEY.format(alert.id),
                "id": alert.id,
                "incident": orjson.dumps({k: v for k, v in incident.items() if k != "status"}).decode(),
                "doc": orjson.dumps({k: v for k, v in doc.items() if k not in ("event", "status")}).decode(),
                "situation": SITUATION_KEY.format(situation(incident)),
                "alert": orjson.dumps(doc).decode(),
            }
            if event != "merged":  # opened or reopened: the merge decides the status
                acknowledge_s, resolve_s = deadlines.limits(alert.kind, alert.severity)
                row["status"] = alert.status
                row["indexes"] = [IDX.format(f"status:{alert.status}"), *_index_keys(doc)]
                row["ack_by"], row["resolve_by"] = repr(now + acknowledge_s), repr(now + resolve_s)
            if event == "reopened":  # the history says which signal re-opened it
                row["history_key"] = HISTORY_KEY.format(alert.id)
                row["history"] = orjson.dumps(_reopen_step(incident)).decode()
            rows.append(row)
        call = {
            "now": repr(now),
            "ttl": self.retention,
            "due": DUE,
            "overdue": OVERDUE,
            "maxlen": self.maxlen,
            "stream": ALERT_STREAM,
            "resolved": IDX.format("status:resolved"),
            "changes": rows,
            "signals": [SIGNAL_KEY.format(sid) for sid in signal_ids],
        }
        await self._commit_script(args=[orjson.dumps(call)])

    # -- staff's side ---------------------------------------------------------------------------

    async def get(self, alert_id: str, history: bool = True) -> dict:
        """One alert with its current status (and its transitions)."""
        alert = _alert(await self.redis.hmget(ALERT_KEY.format(alert_id), *_READ_FIELDS))
        if alert is None:
            raise AlertNotFound(alert_id)
        if history:
            alert["history"] = [orjson.loads(h) for h in await self.redis.lrange(HISTORY_KEY.format(alert_id), 0, -1)]
        return alert

    async def list(
        self,
        *,
        status: str | None = None,
        kind: str | None = None,
        area: str | None = None,
        severity: str | None = None,
        limit: int = 50,
    ) -> list[dict]:
        """Newest first (by when raised), filtered by any of status, kind, area id and severity."""
        filters = {"status": status, "kind": kind, "area": area, "severity": severity}
        keys = [IDX.format(f"{name}:{value}") for name, value in filters.items() if value]
        if len(keys) > 1:
            tmp = f"warden:alerts:tmp:{time.monotonic_ns()}"
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.zinterstore(tmp, keys, aggregate="MAX")
                pipe.zrevrange(tmp, 0, limit - 1)
                pipe.delete(tmp)
                ids = (await pipe.execute())[1]
        else:
            ids = await self.redis.zrevrange(keys[0] if keys else IDX.format("time"), 0, limit - 1)
        async with self.redis.pipeline(transaction=False) as pipe:
            for alert_id in ids:
                pipe.hmget(ALERT_KEY.format(alert_id.decode()), *_READ_FIELDS)
            rows = await pipe.execute()
        # An alert expired between index and hash is skipped; trim() drops its index entries.
        return [alert for alert in map(_alert, rows) if alert is not None]

    async def raised_since(self, since: float, limit: int = 100_000) -> list[dict]:
        """Alerts raised (or re-opened) here since ``since``, oldest first, each with its ``raised_at`` (epoch s)."""
        ids = await self.redis.zrangebyscore(IDX.format("time"), since, "+inf", start=0, num=limit, withscores=True)
        async with self.redis.pipeline(transaction=False) as pipe:
            for alert_id, _ in ids:
                pipe.hmget(ALERT_KEY.format(alert_id.decode()), *_READ_FIELDS)
            rows = await pipe.execute()
        return [
            {**alert, "raised_at": raised} for (_, raised), alert in zip(ids, map(_alert, rows)) if alert is not None
        ]

    async def indexed(self, name: str, value: str) -> bool:
        """Whether any alert is indexed under ``name`` (kind, area, status, severity) ``value``."""
        return bool(await self.redis.exists(IDX.format(f"{name}:{value}")))

    async def indexed_values(self, name: str) -> list[str]:
        """The values of ``name`` that alerts are indexed under."""
        prefix = IDX.format(f"{name}:")
        return sorted([k.decode()[len(prefix) :] async for k in self.redis.scan_iter(match=prefix + "*", count=500)])

    async def transition(
        self, alert_id: str, action: str, by: str, note: str = "", department: str | None = None
    ) -> dict:
        """Move an alert one lifecycle step; raises :class:`TransitionError` for a step not allowed."""
        if not by:
            raise TransitionError("who did it is required")
        if action == "dispatch" and not department:
            raise TransitionError("dispatch needs the department it goes to")
        key = ALERT_KEY.format(alert_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(key)
                    doc, current, stored_at, resolve_by, dispatched, escalation = await pipe.hmget(
                        key, "doc", "status", "stored_at", "resolve_by", "department", "escalation"
                    )
                    if doc is None:
                        raise AlertNotFound(alert_id)
                    current = current.decode()
                    to = next_status(current, action)
                    now = time.time()
                    step = {
                        "action": action,
                        "from": current,
                        "to": to,
                        "by": by,
                        "at": iso(now),
                        "note": note,
                        **({"department": department} if department else {}),
                    }
                    alert = {**orjson.loads(doc), "status": to, "event": to}
                    if dispatched:
                        alert["dispatched_to"] = dispatched.decode()
                    if escalation:
                        alert["escalation"] = orjson.loads(escalation)
                    pipe.multi()
                    accountability.follow_step(
                        pipe, alert_id, alert, step, now, float(stored_at), float(resolve_by) if resolve_by else None
                    )
                    pipe.hset(
                        key,
                        mapping={"status": to, "updated_at": now, **({"department": department} if department else {})},
                    )
                    pipe.rpush(HISTORY_KEY.format(alert_id), orjson.dumps(step))
                    pipe.expire(HISTORY_KEY.format(alert_id), self.retention)
                    pipe.zrem(IDX.format(f"status:{current}"), alert_id)
                    pipe.zadd(IDX.format(f"status:{to}"), {alert_id: float(stored_at)})
                    pipe.xadd(
                        ALERT_STREAM,
                        {"alert": orjson.dumps({**alert, "transition": step})},
                        maxlen=self.maxlen,
                        approximate=True,
                    )
                    if to in LABELS:
                        pipe.xadd(
                            LABEL_STREAM,
                            {
                                "label": orjson.dumps(
                                    {"id": alert_id, "label": LABELS[to], "by": by, "at": step["at"], "alert": alert}
                                )
                            },
                        )
                    await pipe.execute()
                    return {**alert, "transition": step}
                except WatchError:
                    continue  # changed under us (a merge, another officer): read again

    async def labels_after(self, cursor: str, count: int = 1000) -> list[tuple[str, dict]]:
        """Staff labels after stream id ``cursor``, oldest first."""
        got = await self.redis.xread({LABEL_STREAM: cursor}, count=count)
        return [(i.decode(), orjson.loads(f[b"label"])) for _, entries in got or [] for i, f in entries]

    async def trim(self, now: float | None = None) -> int:
        """Drop index entries, stream entries and labels past retention; returns how many index entries."""
        cutoff = (now or time.time()) - self.retention
        dropped = 0
        async for key in self.redis.scan_iter(match=IDX.format("*"), count=500):
            dropped += await self.redis.zremrangebyscore(key, "-inf", cutoff)
        for stream in (LABEL_STREAM, ALERT_STREAM):
            await self.redis.xtrim(stream, minid=f"{int(cutoff * 1000)}-0")
        return dropped
