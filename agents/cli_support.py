"""What every ``warden`` command shares: the console, clear failures, the registry and Redis."""

from __future__ import annotations

import asyncio

import typer
from rich.console import Console
from rich.markup import escape

from settings import get_settings
from streams.registry import SourceError, load_registry
from streams.validation import parse_time

console = Console()


def registry_or_fail():
    try:
        return load_registry(get_settings())
    except SourceError as exc:
        fail(str(exc))


def redis_client():
    import redis.asyncio as aioredis

    settings = get_settings()
    if not settings.redis_url:
        fail("no Redis configured: set WARDEN_REDIS_URL (`warden up` prints it)")
    return aioredis.Redis.from_url(settings.redis_url)


def with_redis(work):
    """Run ``work(redis)`` (a coroutine function) against the configured Redis, with a clear error if down."""
    import redis.exceptions

    async def run():
        client = redis_client()
        try:
            return await work(client)
        finally:
            await client.aclose()

    try:
        return asyncio.run(run())
    except redis.exceptions.ConnectionError as exc:
        fail(f"cannot reach Redis at {get_settings().redis_url}: {exc}")


def fail(message: str, code: int = 2) -> None:
    console.print(f"[red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def when(text: str | None, option: str) -> float | None:
    """``--since``/``--until``: ISO-8601 (UTC unless it says otherwise) or epoch seconds."""
    if text is None:
        return None
    try:
        found = parse_time(float(text), "epoch_s")
    except ValueError:
        found = parse_time(text, "iso8601")
    if found is None:
        fail(f"{option}: {text!r} is not a time (use ISO-8601 like 2026-01-01T00:00:00Z, or epoch seconds)")
    return found
