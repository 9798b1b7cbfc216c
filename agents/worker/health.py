"""What is wrong with a worker right now (a dependency unavailable, a recent internal error), for /health,
/metrics and the log.

Redis is the one dependency a worker cannot do its job without: while it is
unavailable, partitions wait (their records stay in Kafka, lag grows), timers
skip their turn, and :meth:`Health.retry` keeps trying with back-off; nothing
crashes and nothing is lost. An internal error (a batch the engine could not
process) keeps the worker degraded for ``FAULT_HOLD_S`` after the last one, so
a scrape or a look at /health sees it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.exceptions import RedisError

log = logging.getLogger("warden.health")
T = TypeVar("T")
UNAVAILABLE = (RedisError, OSError, asyncio.TimeoutError)  # OSError covers ConnectionError
INTERNAL = "internal_error"
FAULT_HOLD_S = 600.0


class Health:
    """Open problems by dependency, with when they began."""

    def __init__(self) -> None:
        self.problems: dict[str, dict] = {}

    def failed(self, dependency: str, where: str, exc: BaseException) -> None:
        if dependency not in self.problems:
            log.error("%s unavailable (%s: %s); holding work back until it returns", dependency, where, exc)
            self.problems[dependency] = {"since": time.time(), "error": f"{type(exc).__name__}: {exc}"}

    def recovered(self, dependency: str) -> None:
        problem = self.problems.pop(dependency, None)
        if problem is not None:
            log.warning("%s available again after %.1f s", dependency, time.time() - problem["since"])

    def fault(self, where: str, error_id: str, exc: BaseException) -> None:
        """An internal error (logged with its traceback by the caller, under ``error_id``)."""
        now = time.time()
        problem = self.problems.setdefault(INTERNAL, {"since": now, "count": 0})
        problem.update(where=where, error_id=error_id, error=f"{type(exc).__name__}: {exc}", last=now)
        problem["count"] += 1

    @property
    def status(self) -> str:
        fault = self.problems.get(INTERNAL)
        if fault is not None and time.time() - fault["last"] > FAULT_HOLD_S:
            del self.problems[INTERNAL]
        return "degraded" if self.problems else "ok"

    async def retry(self, where: str, work: Callable[[], Awaitable[T]], max_delay_s: float = 10.0) -> T:
        """``work()`` until it gets through to Redis, backing off; reports the outage while it lasts."""
        delay = 0.2
        while True:
            try:
                result = await work()
            except UNAVAILABLE as exc:
                self.failed("redis", where, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, max_delay_s)
                continue
            self.recovered("redis")
            return result

    async def attempt(self, where: str, work: Callable[[], Awaitable[object]]) -> None:
        """One try of periodic work (a timer); an outage skips this turn instead of crashing the app."""
        try:
            await work()
        except UNAVAILABLE as exc:
            self.failed("redis", where, exc)
