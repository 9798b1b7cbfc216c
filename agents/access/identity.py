"""Who is asking: a request's identity from its bearer token or its console session, and the services behind it."""

from __future__ import annotations

from dataclasses import dataclass

from faust.web import Request

from agents.access.audit import Audit
from agents.access.sessions import COOKIE, Sessions, csrf_ok
from agents.access.tokens import Identity, TokenStore
from agents.alerts.accountability import Accountability
from agents.alerts.store import AlertStore


@dataclass(frozen=True)
class Services:
    """What the API and console use once the worker has started."""

    store: AlertStore
    sessions: Sessions
    tokens: TokenStore
    audit: Audit
    accountability: Accountability


@dataclass(frozen=True)
class Caller:
    """An authenticated request: its identity, and whether it came with a console session (not a bearer token)."""

    identity: Identity
    session: dict | None = None

    @property
    def via(self) -> str:
        return "console" if self.session is not None else "api"

    def csrf_ok(self, request: Request) -> bool:
        """Bearer requests cannot be forged cross-site; session requests must echo the session's CSRF token."""
        return self.session is None or csrf_ok(self.session, request.headers.get("X-CSRF-Token"))


async def caller(request: Request, services: Services) -> Caller | None:
    """The request's caller, or None if it carries no valid token or session."""
    given = request.headers.get("Authorization", "")
    if given.startswith("Bearer "):
        identity = await services.tokens.resolve(given[7:])
        return Caller(identity) if identity else None
    session = await services.sessions.get(request.cookies.get(COOKIE))
    if session is None:
        return None
    return Caller(Identity(session["who"], session.get("role", "viewer")), session)
