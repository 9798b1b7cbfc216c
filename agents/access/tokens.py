"""Access tokens and roles: who may see, act on, or administer Warden.

A token is 32 random bytes shown once when created; Redis keeps only its
SHA-256 (a fast hash is enough for a secret with 256 bits of entropy: there is
nothing to guess that a slow hash would protect), with its name and role.
``WARDEN_API_TOKEN``, when set, is one more token with the admin role.

Roles are ordered; each has the rights of those before it:

- ``viewer``: sees alerts and maps (personal data masked);
- ``operator``: plus acknowledge, dispatch, resolve, mark false positive; sees personal data in full;
- ``admin``: plus reference data, model promotion and the settings view.

>>> allowed("operator", "viewer"), allowed("viewer", "operator")
(True, False)
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

import orjson
import redis.asyncio as aioredis

from settings import Settings

ROLES = ("viewer", "operator", "admin")
TOKENS_KEY = "warden:tokens"  # hash: name -> {"role", "hash", "created_at", "created_by"}
TOKEN_KEY = "warden:token:{}"  # SHA-256 of a token -> its name
BOOTSTRAP_NAME = "WARDEN_API_TOKEN"


class TokenError(ValueError):
    """A token that cannot be created or revoked as asked."""


@dataclass(frozen=True)
class Identity:
    """Who made a request: a person's (or system's) name and the role their token carries."""

    who: str
    role: str

    def may(self, need: str) -> bool:
        return allowed(self.role, need)


def allowed(role: str, need: str) -> bool:
    """Whether ``role`` has the rights of ``need``."""
    return ROLES.index(role) >= ROLES.index(need)


def digest(token: str) -> str:
    return hashlib.sha256(token.strip().encode()).hexdigest()


class TokenStore:
    """Creates, resolves, lists and revokes tokens."""

    def __init__(self, redis: aioredis.Redis, settings: Settings):
        self.redis = redis
        bootstrap = settings.api_token.get_secret_value() if settings.api_token else None
        self._bootstrap = digest(bootstrap) if bootstrap else None

    async def create(self, name: str, role: str, created_by: str) -> str:
        """A new token for ``name`` with ``role``; the token itself is returned once and never stored."""
        if role not in ROLES:
            raise TokenError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
        name = name.strip()
        if not name or len(name) > 64 or name == BOOTSTRAP_NAME:
            raise TokenError("a token needs a name (at most 64 characters, not WARDEN_API_TOKEN)")
        token = "wdn_" + secrets.token_urlsafe(32)
        entry = {"role": role, "hash": digest(token), "created_at": time.time(), "created_by": created_by}
        if not await self.redis.hsetnx(TOKENS_KEY, name, orjson.dumps(entry)):
            raise TokenError(f"a token named {name!r} exists: revoke it first")
        await self.redis.set(TOKEN_KEY.format(entry["hash"]), name)
        return token

    async def resolve(self, token: str) -> Identity | None:
        """The identity ``token`` stands for, or None if it is no valid token."""
        if not token.strip():
            return None
        hashed = digest(token)
        if self._bootstrap is not None and hmac.compare_digest(hashed, self._bootstrap):
            return Identity(BOOTSTRAP_NAME, "admin")
        name = await self.redis.get(TOKEN_KEY.format(hashed))
        if name is None:
            return None
        raw = await self.redis.hget(TOKENS_KEY, name)
        return Identity(name.decode(), orjson.loads(raw)["role"]) if raw else None

    async def listing(self) -> list[dict]:
        """Every token's name, role and creation (never the token or its hash)."""
        rows = await self.redis.hgetall(TOKENS_KEY)
        out = []
        for name, raw in sorted(rows.items()):
            entry = orjson.loads(raw)
            out.append(
                {
                    "name": name.decode(),
                    "role": entry["role"],
                    "created_at": entry["created_at"],
                    "created_by": entry["created_by"],
                }
            )
        return out

    async def revoke(self, name: str) -> None:
        raw = await self.redis.hget(TOKENS_KEY, name)
        if raw is None:
            raise TokenError(f"no token named {name!r}")
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(TOKEN_KEY.format(orjson.loads(raw)["hash"]))
            pipe.hdel(TOKENS_KEY, name)
            await pipe.execute()
