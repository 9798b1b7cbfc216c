"""The alerts HTTP API on the worker's web server (bearer token, or the console's session cookie).

- ``GET  /api/alerts?status=&kind=&area=&severity=&limit=`` newest first
- ``GET  /api/alerts/{id}`` one alert with its history
- ``POST /api/alerts/{id}/{action}`` with JSON ``{"by": ..., "note": ..., "department": ...}``;
  action is acknowledge, dispatch, resolve or false_positive

Errors are JSON ``{"error": ...}``: 401 without the right token, 404 for an
unknown alert, 409 for a step the lifecycle does not allow, 400 for a bad body,
503 when no token is configured (the API is off). A request authenticated by
the console's cookie that changes something must carry its CSRF token
(``X-CSRF-Token``), else 403.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable

import faust
from faust.web import Request, Response, View

from agents.alert_store import AlertNotFound, AlertStore
from agents.sessions import COOKIE, Sessions, csrf_ok
from models.lifecycle import TRANSITIONS, TransitionError
from settings import Settings

MAX_LIMIT = 1000


def token_ok(settings: Settings, given: str) -> bool:
    """Whether ``given`` is the configured API token."""
    token = settings.api_token.get_secret_value().encode() if settings.api_token else None
    return token is not None and hmac.compare_digest(given.strip().encode(), token)


def register(app: faust.App, settings: Settings, store: Callable[[], AlertStore | None],
             sessions: Callable[[], Sessions | None]) -> None:
    """Add the API's views to ``app``; ``store()`` and ``sessions()`` give the worker's once it has started."""

    class _Api(View):
        async def refuse(self, request: Request, writing: bool = False) -> Response | None:
            if settings.api_token is None:
                return self.error(503, "the HTTP API is off: set WARDEN_API_TOKEN")
            if store() is None or sessions() is None:
                return self.error(503, "the worker is starting")
            given = request.headers.get("Authorization", "")
            if given.startswith("Bearer "):
                return None if token_ok(settings, given[7:]) else self.error(401, "missing or wrong bearer token")
            session = await sessions().get(request.cookies.get(COOKIE))
            if session is None:
                return self.error(401, "missing or wrong bearer token")
            if writing and not csrf_ok(session, request.headers.get("X-CSRF-Token")):
                return self.error(403, "missing or wrong CSRF token (reload the console)")
            return None

    @app.page("/api/alerts")
    class Alerts(_Api):
        async def get(self, request: Request) -> Response:
            if (refused := await self.refuse(request)) is not None:
                return refused
            q = request.query
            try:
                limit = min(int(q.get("limit", 50)), MAX_LIMIT)
            except ValueError:
                return self.error(400, "limit must be a whole number")
            alerts = await store().list(status=q.get("status"), kind=q.get("kind"), area=q.get("area"),
                                        severity=q.get("severity"), limit=max(limit, 1))
            return self.json({"alerts": alerts})

    @app.page("/api/alerts/{alert_id}")
    class OneAlert(_Api):
        async def get(self, request: Request, alert_id: str) -> Response:
            if (refused := await self.refuse(request)) is not None:
                return refused
            try:
                return self.json(await store().get(alert_id))
            except AlertNotFound as exc:
                return self.error(404, str(exc))

    @app.page("/api/alerts/{alert_id}/{action}")
    class Transition(_Api):
        async def post(self, request: Request, alert_id: str, action: str) -> Response:
            if (refused := await self.refuse(request, writing=True)) is not None:
                return refused
            action = action.replace("-", "_")
            if action not in TRANSITIONS:
                return self.error(400, f"unknown action {action!r}; known: {', '.join(TRANSITIONS)}")
            try:
                body = await request.json()
            except ValueError:
                return self.error(400, "the body must be JSON")
            if not isinstance(body, dict) or not isinstance(body.get("by"), str) or not body["by"].strip():
                return self.error(400, 'the body needs "by": who is doing this')
            try:
                alert = await store().transition(alert_id, action, body["by"].strip(), str(body.get("note", "")),
                                                 body.get("department"))
            except AlertNotFound as exc:
                return self.error(404, str(exc))
            except TransitionError as exc:
                return self.error(409, str(exc))
            return self.json(alert)
