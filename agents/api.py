"""The alerts HTTP API on the worker's web server (bearer token).

- ``GET  /api/alerts?status=&kind=&area=&severity=&limit=`` newest first
- ``GET  /api/alerts/{id}`` one alert with its history
- ``POST /api/alerts/{id}/{action}`` with JSON ``{"by": ..., "note": ..., "department": ...}``;
  action is acknowledge, dispatch, resolve or false_positive

Errors are JSON ``{"error": ...}``: 401 without the right token, 404 for an
unknown alert, 409 for a step the lifecycle does not allow, 400 for a bad body,
503 when no token is configured (the API is off).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable

import faust
from faust.web import Request, Response, View

from agents.alert_store import AlertNotFound, AlertStore
from models.lifecycle import TRANSITIONS, TransitionError
from settings import Settings

MAX_LIMIT = 1000


def register(app: faust.App, settings: Settings, store: Callable[[], AlertStore | None]) -> None:
    """Add the API's views to ``app``; ``store()`` gives the worker's alert store once it has started."""
    token = settings.api_token.get_secret_value().encode() if settings.api_token else None

    class _Api(View):
        def refuse(self, request: Request) -> Response | None:
            if token is None:
                return self.error(503, "the HTTP API is off: set WARDEN_API_TOKEN")
            given = request.headers.get("Authorization", "")
            if not given.startswith("Bearer ") or not hmac.compare_digest(given[7:].strip().encode(), token):
                return self.error(401, "missing or wrong bearer token")
            if store() is None:
                return self.error(503, "the worker is starting")
            return None

    @app.page("/api/alerts")
    class Alerts(_Api):
        async def get(self, request: Request) -> Response:
            if (refused := self.refuse(request)) is not None:
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
            if (refused := self.refuse(request)) is not None:
                return refused
            try:
                return self.json(await store().get(alert_id))
            except AlertNotFound as exc:
                return self.error(404, str(exc))

    @app.page("/api/alerts/{alert_id}/{action}")
    class Transition(_Api):
        async def post(self, request: Request, alert_id: str, action: str) -> Response:
            if (refused := self.refuse(request)) is not None:
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
