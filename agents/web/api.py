"""The HTTP API on the worker's web server (bearer token, or the console's session cookie), by role.

viewer:
- ``GET  /api/alerts?status=&kind=&area=&severity=&limit=`` newest first
- ``GET  /api/alerts/{id}`` one alert with its history (and its ``deadlines`` and ``escalation``, where it has them)
- ``GET  /api/departments`` per department: alerts acknowledged and closed, median and 90th percentile seconds
  to each, overdue now, escalated so far (:mod:`agents.alerts.accountability`)

Each alert served has a ``display``: its title, description, evidence, times and history as people read
them, in ``?lang=`` (zh-CN or en; else the console session's, else ``WARDEN_LANGUAGE``), times in
``WARDEN_TIMEZONE`` (:mod:`agents.present.alert_view`).

operator:
- ``POST /api/alerts/{id}/{action}`` with JSON ``{"note": ..., "department": ...}``; action is acknowledge,
  dispatch, resolve or false_positive; the token's name is who did it (with the shared ``WARDEN_API_TOKEN``,
  ``"by"`` must name the person); a dispatch names a department the reference data knows

admin:
- ``GET  /api/settings`` the running settings (secrets shown as ``**********``)
- ``PUT  /api/refdata`` a reference-data document (as ``warden refdata load`` stores it)
- ``GET  /api/models``; ``POST /api/models/promote`` ``{"version"}``; ``POST /api/models/rollback`` ``{"source"}``
- ``GET  /api/audit?limit=`` the audit trail, newest first

Viewers get personal data (plates, dwellings, person counts) masked. Every
write is audited. Errors are JSON ``{"error": ...}``: 401 without a valid
token, 403 for a role without the right (the message names the role needed)
or a console request without its CSRF token (``X-CSRF-Token``), 404 for an
unknown alert, 409 for a step the lifecycle does not allow, 400 for a bad body,
503 while the worker starts.
"""

from __future__ import annotations

from collections.abc import Callable

import faust
from faust.web import Request, Response

from agents.access.identity import Caller, Services, caller
from agents.access.tokens import BOOTSTRAP_NAME, Identity
from agents.alerts.store import AlertNotFound
from agents.web.views import WardenView, mount, web_context
from models import versions
from models.lifecycle import TRANSITIONS, TransitionError
from settings import Settings
from state.refdata import store as refstore
from state.refdata.reference import RefData, RefDataError
from streams.privacy import mask_alert
from streams.registry import Registry

MAX_LIMIT = 1000


def shown(alert: dict, who: Caller) -> dict:
    """``alert`` as ``who`` may see it: personal data in full for operators and admins, masked for viewers."""
    return alert if who.identity.may("operator") else mask_alert(alert)


def settings_view(settings: Settings) -> dict:
    """The settings as JSON (pydantic shows secrets as ``**********``), the Redis URL without its password."""
    return {**settings.model_dump(mode="json"), "redis_url": settings.redis_display_url or None}


class ApiView(WardenView):
    """A view of the API: the caller's role checked, JSON bodies read, writes audited."""

    async def allow(self, request: Request, need: str, writing: bool = False) -> Caller | Response:
        """The caller if it may do what needs role ``need``, else the error response (test with
        ``isinstance(..., Caller)``: the web driver's responses are not ``faust.web.Response`` instances)."""
        if self.ctx.services() is None:
            return self.error(503, "the worker is starting")
        who = await caller(request, self.ctx.services())
        if who is None:
            return self.error(401, "missing or wrong bearer token (or log in to the console)")
        if not who.identity.may(need):
            return self.error(403, f"{who.identity.who} has the {who.identity.role} role; this needs {need}")
        if writing and not who.csrf_ok(request):
            return self.error(403, "missing or wrong CSRF token (reload the console)")
        return who

    async def audited(self, who: Caller, action: str, target: str, detail: dict | None = None) -> None:
        await self.ctx.services().audit.record(who.identity, action, target, who.via, detail)


class Alerts(ApiView):
    path = "/api/alerts"

    async def get(self, request: Request) -> Response:
        if not isinstance(who := await self.allow(request, "viewer"), Caller):
            return who
        q = request.query
        try:
            limit = min(int(q.get("limit", 50)), MAX_LIMIT)
        except ValueError:
            return self.error(400, "limit must be a whole number")
        alerts = await self.ctx.services().store.list(
            status=q.get("status"),
            kind=q.get("kind"),
            area=q.get("area"),
            severity=q.get("severity"),
            limit=max(limit, 1),
        )
        language = self.language(request, who)
        return self.json({"alerts": [self.displayed(shown(a, who), language) for a in alerts]})


class OneAlert(ApiView):
    path = "/api/alerts/{alert_id}"

    async def get(self, request: Request, alert_id: str) -> Response:
        if not isinstance(who := await self.allow(request, "viewer"), Caller):
            return who
        try:
            alert = shown(await self.ctx.services().store.get(alert_id), who)
            return self.json(self.displayed(alert, self.language(request, who)))
        except AlertNotFound as exc:
            return self.error(404, str(exc))


class Departments(ApiView):
    path = "/api/departments"

    async def get(self, request: Request) -> Response:
        if not isinstance(who := await self.allow(request, "viewer"), Caller):
            return who
        return self.json({"departments": await self.ctx.services().accountability.figures()})


class Transition(ApiView):
    path = "/api/alerts/{alert_id}/{action}"

    async def post(self, request: Request, alert_id: str, action: str) -> Response:
        if not isinstance(who := await self.allow(request, "operator", writing=True), Caller):
            return who
        action = action.replace("-", "_")
        if action not in TRANSITIONS:
            return self.error(400, f"unknown action {action!r}; known: {', '.join(TRANSITIONS)}")
        if not isinstance(body := await self.body(request), dict):
            return body
        note, by = str(body.get("note", "")), who.identity.who
        department = body.get("department")
        if action == "dispatch" and department not in (known := self.ctx.refdata().department_names()):
            return self.error(400, f"no department {department!r}; known: {', '.join(known)}")
        if by == BOOTSTRAP_NAME:  # the shared admin token: the body says which person acts
            if not isinstance(body.get("by"), str) or not body["by"].strip():
                return self.error(400, 'the body needs "by": who is doing this (the shared token does not say)')
            by = f"{body['by'].strip()[:64]} ({BOOTSTRAP_NAME})"
            who = Caller(Identity(by, who.identity.role), who.session)
        try:
            alert = await self.ctx.services().store.transition(alert_id, action, by, note, department)
        except AlertNotFound as exc:
            return self.error(404, str(exc))
        except TransitionError as exc:
            return self.error(409, str(exc))
        await self.audited(who, f"alert.{action}", alert_id, {"note": note, "status": alert["status"]})
        return self.json(self.displayed(alert, self.language(request, who)))


class SettingsView(ApiView):
    path = "/api/settings"

    async def get(self, request: Request) -> Response:
        if not isinstance(who := await self.allow(request, "admin"), Caller):
            return who
        return self.json(settings_view(self.ctx.settings))


class Refdata(ApiView):
    path = "/api/refdata"

    async def put(self, request: Request) -> Response:
        if not isinstance(who := await self.allow(request, "admin", writing=True), Caller):
            return who
        if not isinstance(body := await self.body(request), dict):
            return body
        try:
            ref = RefData.from_doc(body, origin="request body")
        except RefDataError as exc:
            return self.error(400, str(exc))
        version = await refstore.save(self.ctx.services().store.redis, ref)
        await self.audited(who, "refdata.load", f"version {version}", ref.counts())
        return self.json({"version": version, "counts": ref.counts()})


class Models(ApiView):
    path = "/api/models"

    async def get(self, request: Request) -> Response:
        if not isinstance(who := await self.allow(request, "admin"), Caller):
            return who
        redis = self.ctx.services().store.redis
        return self.json({"versions": await versions.listing(redis), "active": await versions.active(redis)})


class ModelStep(ApiView):
    path = "/api/models/{step}"

    async def post(self, request: Request, step: str) -> Response:
        if not isinstance(who := await self.allow(request, "admin", writing=True), Caller):
            return who
        if not isinstance(body := await self.body(request), dict):
            return body
        redis = self.ctx.services().store.redis
        try:
            if step == "promote" and isinstance(body.get("version"), str):
                meta = await versions.promote(redis, body["version"])
                source, now = meta["source"], body["version"]
            elif step == "rollback" and isinstance(body.get("source"), str):
                source, now = body["source"], await versions.rollback(redis, body["source"])
            else:
                return self.error(400, 'POST /api/models/promote {"version"} or /api/models/rollback {"source"}')
        except versions.VersionError as exc:
            return self.error(404, str(exc))
        await self.audited(who, f"model.{step}", source, {"now": now})
        return self.json({"source": source, "active": now})


class AuditTrail(ApiView):
    path = "/api/audit"

    async def get(self, request: Request) -> Response:
        if not isinstance(who := await self.allow(request, "admin"), Caller):
            return who
        try:
            limit = min(max(int(request.query.get("limit", 100)), 1), MAX_LIMIT)
        except ValueError:
            return self.error(400, "limit must be a whole number")
        return self.json({"entries": await self.ctx.services().audit.recent(limit)})


VIEWS = (Alerts, OneAlert, Departments, Transition, SettingsView, Refdata, Models, ModelStep, AuditTrail)


def register(
    app: faust.App,
    settings: Settings,
    registry: Registry,
    services: Callable[[], Services | None],
    refdata: Callable[[], RefData],
) -> None:
    """Add the API's views to ``app``; ``services()`` gives the worker's once it has started."""
    mount(app, VIEWS, web_context(settings, services, registry, refdata=refdata))
