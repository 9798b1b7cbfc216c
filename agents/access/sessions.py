"""Console sessions: a login with the API token gives an HttpOnly cookie and a CSRF token, kept in Redis.

The cookie holds a random session id; Redis holds only its SHA-256, with the
session's CSRF token, who logged in, their role and language, for ``TTL_S``; a person's language
choice outlives the session (``LANGUAGE_KEY``). State-changing requests
made with the cookie must echo the CSRF token in ``X-CSRF-Token``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

import orjson
import redis.asyncio as aioredis

COOKIE = "warden_session"
KEY = "warden:session:{}"
TTL_S = 12 * 3600
TOKEN_SESSIONS_KEY = "warden:token-sessions:{}"  # a token's name -> the session keys it opened (ended on revoke)
FAILED_KEY = "warden:login-failures:{}"
LANGUAGE_KEY = "warden:language:{}"  # a person (who) -> the console language they chose
# Wrong tokens within 15 minutes: 5 from one address under one name, or 25 from one address under any names,
# and that address's further wrong tokens (under that name; under any) are refused until the window ends.
MAX_FAILURES, MAX_ADDRESS_FAILURES, FAILURE_WINDOW_S = 5, 25, 900


def _key(session_id: str) -> str:
    return KEY.format(hashlib.sha256(session_id.encode()).hexdigest())


class Sessions:
    """Creates, reads and ends console sessions."""

    def __init__(self, redis: aioredis.Redis):
        self.redis = redis

    async def create(self, who: str, role: str, token_name: str, language: str) -> tuple[str, dict]:
        """A new session for ``who`` with ``role`` in ``language``, opened with the token named ``token_name``:
        (cookie, session)."""
        session_id = secrets.token_urlsafe(32)
        session = {
            "who": who,
            "role": role,
            "language": language,
            "csrf": secrets.token_urlsafe(24),
            "since": time.time(),
        }
        opened = TOKEN_SESSIONS_KEY.format(token_name)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(_key(session_id), orjson.dumps(session), ex=TTL_S)
            pipe.sadd(opened, _key(session_id))
            pipe.expire(opened, TTL_S)
            await pipe.execute()
        return session_id, session

    async def end_all(self, token_name: str) -> None:
        """End every session opened with the token named ``token_name``."""
        opened = TOKEN_SESSIONS_KEY.format(token_name)
        keys = await self.redis.smembers(opened)
        await self.redis.delete(opened, *keys)

    async def get(self, session_id: str | None) -> dict | None:
        if not session_id:
            return None
        raw = await self.redis.get(_key(session_id))
        return orjson.loads(raw) if raw else None

    async def choose_language(self, session_id: str, session: dict, language: str) -> dict:
        """Switch the session to ``language`` and remember it for the person's next logins."""
        session = {**session, "language": language}
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(_key(session_id), orjson.dumps(session), keepttl=True, xx=True)
            pipe.set(LANGUAGE_KEY.format(session["who"]), language)
            await pipe.execute()
        return session

    async def preferred_language(self, who: str) -> str | None:
        """The language ``who`` last chose, if any."""
        raw = await self.redis.get(LANGUAGE_KEY.format(who))
        return raw.decode() if raw else None

    async def locked_out(self, client: str, name: str) -> int:
        """Seconds ``client`` must still wait to try again under ``name`` after too many failed logins (0: may)."""
        for key, limit in _failure_keys(client, name):
            if int(await self.redis.get(key) or 0) >= limit:
                return max(int(await self.redis.ttl(key)), 1)
        return 0

    async def failed(self, client: str, name: str) -> None:
        """Count a failed login by ``client`` under ``name``; each count expires ``FAILURE_WINDOW_S`` after its
        first failure."""
        async with self.redis.pipeline(transaction=True) as pipe:
            for key, _ in _failure_keys(client, name):
                pipe.set(key, 0, ex=FAILURE_WINDOW_S, nx=True)  # the window starts at the first failure
                pipe.incr(key)  # (INCR keeps the key's expiry)
            await pipe.execute()

    async def end(self, session_id: str | None) -> None:
        if session_id:
            await self.redis.delete(_key(session_id))


def _failure_keys(client: str, name: str) -> tuple[tuple[str, int], ...]:
    person = name.strip().casefold()[:64]
    return (FAILED_KEY.format(f"{client}|{person}"), MAX_FAILURES), (FAILED_KEY.format(client), MAX_ADDRESS_FAILURES)


def csrf_ok(session: dict, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(session["csrf"].encode(), given.encode())
