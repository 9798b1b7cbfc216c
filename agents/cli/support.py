"""What every ``warden`` command shares: the console, clear failures, the registry and Redis."""

from __future__ import annotations

import asyncio
import sys

import typer
from rich.console import Console
from rich.markup import escape

from agents.present.alert_view import AlertView
from agents.present.wording import LANGUAGES
from models.catalog import load_sources
from settings import ConfigError, Settings, get_settings
from state.redis_client import RedisAway, check_redis, connected
from streams.kafka.client import check_kafka
from streams.registry import SourceError
from streams.validation import parse_time

# Piped output keeps whole lines (a table as wide as its content, a line unwrapped) for grep and files.
console = Console() if sys.stdout.isatty() else Console(width=1000, soft_wrap=True)


def registry_or_fail():
    try:
        return load_sources(get_settings())
    except SourceError as exc:
        fail(str(exc))


def preflight(settings: Settings, kafka: bool = True, redis: bool = True, wait_for_redis: bool = False) -> None:
    """Connect to the broker and Redis once; a refusal or a wrong setting ends the command with a clear error.
    ``wait_for_redis``: a Redis that does not answer (down, restarting) is only reported; the caller waits for it.
    """

    async def run():
        if kafka:
            await check_kafka(settings)
        if redis:
            try:
                await check_redis(settings)
            except RedisAway as exc:
                if not wait_for_redis:
                    raise
                console.print(f"[yellow]{exc}: waiting for it (/health says degraded until it answers)[/]")

    try:
        asyncio.run(run())
    except ConfigError as exc:
        fail(str(exc))


def with_redis(work):
    """Run ``work(redis)`` (a coroutine function) against the configured Redis, with a clear error if it fails."""
    import redis.exceptions

    settings = get_settings()

    async def run():
        client = await connected(settings)
        try:
            return await work(client)
        finally:
            await client.aclose()

    try:
        return asyncio.run(run())
    except ConfigError as exc:
        fail(str(exc))
    except redis.exceptions.ConnectionError:
        fail(f"lost the connection to Redis at {settings.redis_display_url}")


def login_name() -> str:
    import getpass

    return getpass.getuser()


async def audit(redis, action: str, target: str, detail: dict | None = None, by: str | None = None) -> None:
    """Record a change made from the command line (whoever holds the Redis credentials has the admin's rights)."""
    from agents.access.audit import Audit
    from agents.access.tokens import Identity

    await Audit(redis, get_settings()).record(Identity(by or login_name(), "admin"), action, target, "cli", detail)


LANGUAGE = typer.Option(None, "--language", help="zh-CN or en (default: WARDEN_LANGUAGE)")


def alert_view(language: str | None) -> tuple[AlertView, str]:
    """How alerts read to people here: in ``language`` (else the deployment's), times in the city's zone."""
    settings = get_settings()
    language = language or settings.language
    if language not in LANGUAGES:
        fail(f"--language: one of {', '.join(LANGUAGES)}")
    return AlertView(settings.timezone, registry_or_fail()), language


PERSONAL = typer.Option(
    False, "--personal", help="show plates, dwellings and person counts in full (masked by default)"
)


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
