"""How every Redis client of ours connects: URL, ACL user and password, TLS from the settings.

:func:`connected` pings before handing a client out and turns a refusal into a
:class:`settings.ConfigError` naming the setting (never the password).
"""

from __future__ import annotations

import asyncio
import ssl

import redis.asyncio as aioredis
from redis import exceptions

from settings import ConfigError, Settings


def redis_client(settings: Settings) -> aioredis.Redis:
    """A client for the configured Redis (``redis://`` or ``rediss://``), with its user, password and TLS files."""
    if not settings.redis_url:
        raise ConfigError("WARDEN_REDIS_URL: not set (`warden up` prints one)")
    # explicit: the client's default (5 s in redis-py 8) is shorter than the live feed's blocking read once was
    options: dict = {"socket_connect_timeout": settings.connect_timeout_s, "socket_timeout": settings.redis_timeout_s}
    password = settings.secret("redis_password")
    if password is not None:
        options["password"] = password
    if settings.redis_username:
        options["username"] = settings.redis_username
    if settings.redis_url.startswith("rediss://"):
        options.update(
            ssl_ca_certs=_path(settings.redis_ssl_cafile),
            ssl_certfile=_path(settings.redis_ssl_certfile),
            ssl_keyfile=_path(settings.redis_ssl_keyfile),
        )
    return aioredis.Redis.from_url(settings.redis_url, **options)


def _path(p) -> str | None:
    return str(p) if p else None


def _explain(exc: BaseException, settings: Settings) -> str:
    where = f"Redis at {settings.redis_display_url}"
    if isinstance(exc, exceptions.AuthenticationError) or "NOAUTH" in str(exc) or "WRONGPASS" in str(exc):
        user = settings.redis_username or "default"
        given = (
            "no password"
            if settings.secret("redis_password") is None and "@" not in settings.redis_url
            else "the password given"
        )
        return (
            f"{where} refused the login of user {user!r} with {given}: check WARDEN_REDIS_USERNAME and "
            "WARDEN_REDIS_PASSWORD (or WARDEN_REDIS_PASSWORD_FILE)"
        )
    cause = exc.__cause__ or exc.__context__
    if isinstance(cause, ssl.SSLCertVerificationError):
        return f"{where}: its TLS certificate is not trusted ({cause.verify_message}); check WARDEN_REDIS_SSL_CAFILE"
    if isinstance(cause, ssl.SSLError) or "SSL" in str(exc):
        return f"{where}: the TLS handshake failed; does the server speak TLS (rediss://) and WARDEN_REDIS_URL agree?"
    if isinstance(exc, exceptions.TimeoutError):
        return f"{where}: no answer within {settings.connect_timeout_s:.0f} s (WARDEN_REDIS_URL)"
    if isinstance(exc, exceptions.ConnectionError):
        return f"{where}: cannot connect (WARDEN_REDIS_URL)"
    return f"{where}: {exc.__class__.__name__} while connecting"


class RedisAway(ConfigError):
    """Redis did not answer at all (refused, timed out), as opposed to refusing what it was given."""


def _away(exc: BaseException) -> bool:
    cause = exc.__cause__ or exc.__context__
    if isinstance(exc, exceptions.AuthenticationError) or isinstance(cause, ssl.SSLError) or "SSL" in str(exc):
        return False
    return isinstance(exc, exceptions.TimeoutError | exceptions.ConnectionError) and not (
        "NOAUTH" in str(exc) or "WRONGPASS" in str(exc)
    )


async def connected(settings: Settings) -> aioredis.Redis:
    """A client that has answered a ping; a refusal raises :class:`ConfigError` saying what is wrong
    (:class:`RedisAway` when nothing answered)."""
    client = redis_client(settings)
    try:
        await asyncio.wait_for(client.ping(), settings.connect_timeout_s + 1)
        return client
    except TimeoutError:
        await client.aclose()
        raise RedisAway(
            f"Redis at {settings.redis_display_url}: no answer within "
            f"{settings.connect_timeout_s:.0f} s (WARDEN_REDIS_URL)"
        ) from None
    except exceptions.RedisError as exc:
        await client.aclose()
        raise (RedisAway if _away(exc) else ConfigError)(_explain(exc, settings)) from None


async def check_redis(settings: Settings) -> None:
    """Ping the configured Redis once; raise :class:`ConfigError` saying what is wrong if that fails."""
    await (await connected(settings)).aclose()
