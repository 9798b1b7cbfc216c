"""The command-centre console, served by the worker's web server (http://127.0.0.1:6066 by default).

- ``GET /`` the page (static HTML, JS and CSS from ``agents/web/static``; no external assets, works offline),
  sent with a strict Content-Security-Policy;
- ``POST /console/login`` ``{"token"}`` (``"name"`` too with the shared ``WARDEN_API_TOKEN``) -> session cookie
  (HttpOnly, SameSite=Strict) + CSRF token; the session carries the token's name and role
  (``"language"`` optional: zh-CN or en; else the person's last choice, else ``WARDEN_LANGUAGE``);
  after 5 wrong tokens from one address under one name (or 25 under any names) within 15 minutes,
  its further wrong tokens (under that name; under any) get 429 until the window ends; a right token still
  logs in;
  ``POST /console/logout``; ``GET /console/session`` (who, role, CSRF token, language, the city's zone and the
  page's words); ``POST /console/language`` ``{"language"}`` switches it (and remembers it for the person);
- ``GET /console/events`` the live alert feed (server-sent events from the Redis stream, resumable
  with ``Last-Event-ID``), each alert with its ``display`` in the session's language;
- ``GET /console/map`` the reference data to draw (areas, zones, routes, sites);
- ``GET /console/status`` header counters (records per source, open alerts, dead letters) and the
  latest vehicle positions (heading and hazard class where known), from every worker (see
  :mod:`agents.worker.positions`);
- ``GET /console/readings?source=&entity=&ts=`` an entity's readings around a time, from the replay logs;
- ``GET /cockpit`` the leaders' wall screen (1920x1080), fed by ``GET /console/cockpit?kind=``: the city's state
  (:mod:`agents.present.summary`), the median time to close, enforcement advice for a kind
  (:mod:`agents.present.advice`), the latest daily reports, served at ``GET /console/reports/{name}``.

Everything that came from a record is inserted by the page as text, never as markup. Viewers get
personal data masked (plates, dwellings, person counts) in the feed and the vehicle layer.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from importlib.resources import files

import faust
import orjson
from aiohttp import web as aioweb
from faust.web import Request, Response, View
from redis.exceptions import RedisError

from agents.access.identity import Caller, Services, caller
from agents.access.sessions import COOKIE, TTL_S
from agents.access.tokens import BOOTSTRAP_NAME
from agents.alerts.store import ALERT_STREAM, IDX
from agents.present.advice import concentrations
from agents.present.evidence import duration
from agents.present.summary import summarise
from agents.present.wording import LANGUAGES, Wording
from agents.web.api import shown
from agents.web.views import WardenView, mount, web_context
from agents.worker import positions as vehicles
from agents.worker.metrics import read_all, totals
from replay.archive import read_records, segments
from settings import Settings
from state.refdata.reference import RefData
from streams.registry import Registry

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
ASSETS = {
    "/": ("console.html", "text/html"),
    "/cockpit": ("cockpit.html", "text/html"),
    "/console/cockpit.js": ("cockpit.js", "application/javascript"),
    "/console/cockpit.css": ("cockpit.css", "text/css"),
    "/console/common.js": ("common.js", "application/javascript"),
    "/console/map.js": ("map.js", "application/javascript"),
    "/console/app.js": ("console.js", "application/javascript"),
    "/console/app.css": ("console.css", "text/css"),
}
REPORT_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'"
REPORT_NAME = re.compile(r"report-\d{4}-\d{2}-\d{2}\.(html|pdf)")
COCKPIT_DAYS = 30
FEED_BACKLOG = 200
log = logging.getLogger("warden.console")
READINGS_BEFORE_S, READINGS_AFTER_S, MAX_POINTS = 3 * 3600, 3600, 600


class ConsoleView(WardenView):
    """A console page: answers logged-in sessions only."""

    async def session(self, request: Request) -> Caller | None:
        """The logged-in caller (console pages take the session cookie only, not bearer tokens)."""
        if self.ctx.services() is None or not request.cookies.get(COOKIE):
            return None
        return await caller(request, self.ctx.services())

    def refused(self) -> Response:
        return self.error(401, "log in first")

    def described(self, session: dict) -> dict:
        """What the page needs of a session: who, role, CSRF token, and the words and clock of its language."""
        language = session.get("language") or self.ctx.settings.language
        words = Wording.of(language).text
        return {
            "who": session["who"],
            "role": session["role"],
            "csrf": session["csrf"],
            "language": language,
            "timezone": self.ctx.settings.timezone,
            "utc_offset": self.ctx.alert_view.clock.offset(),
            "words": {k: words[k] for k in ("ui", "words", "severity", "status", "actions", "departments", "fields")},
        }


class Login(ConsoleView):
    path = "/console/login"

    async def post(self, request: Request) -> Response:
        if self.ctx.services() is None:
            return self.error(503, "the worker is starting")
        sessions = self.ctx.services().sessions
        try:
            body = await request.json()
        except ValueError:
            return self.error(400, "the body must be JSON")
        if not isinstance(body, dict) or not isinstance(body.get("token"), str):
            return self.error(400, 'the body needs "token"')
        client = request.remote or "unknown"
        identity = await self.ctx.services().tokens.resolve(body["token"])
        if identity is None:
            # Guessing is locked out per address and name (and per address, more loosely); a right token
            # always gets in: behind a shared proxy, one person's typos must not lock out every operator.
            name = str(body.get("name") or "")
            wait = await sessions.locked_out(client, name)
            if wait:
                resp = self.error(429, f"too many failed logins: try again in {wait} s")
                resp.headers["Retry-After"] = str(wait)
                return resp
            await sessions.failed(client, name)
            await asyncio.sleep(0.5)  # slows guessing further
            return self.error(401, "wrong token")
        who = identity.who
        if who == BOOTSTRAP_NAME:  # the shared admin token: the person says who they are
            name = str(body.get("name") or "").strip()[:64]
            if not name:
                return self.error(400, "say who you are (name): this token is shared")
            who = f"{name} ({BOOTSTRAP_NAME})"
        language = body.get("language")
        if language not in LANGUAGES:
            language = await sessions.preferred_language(who) or self.ctx.settings.language
        session_id, session = await sessions.create(who, identity.role, identity.who, language)
        await self.ctx.services().audit.record(identity, "console.login", who, "console", {"client": client})
        resp = self.json(self.described(session))
        resp.set_cookie(COOKIE, session_id, max_age=TTL_S, httponly=True, samesite="Strict", path="/")
        return resp


class Logout(ConsoleView):
    path = "/console/logout"

    async def post(self, request: Request) -> Response:
        if self.ctx.services() is not None:
            await self.ctx.services().sessions.end(request.cookies.get(COOKIE))
        resp = self.json({"ok": True})
        resp.del_cookie(COOKIE, path="/")
        return resp


class Session(ConsoleView):
    path = "/console/session"

    async def get(self, request: Request) -> Response:
        if self.ctx.services() is None:
            return self.error(503, "the worker is starting")
        who = await self.session(request)
        if who is None:
            return self.refused()
        return self.json(self.described(who.session))


class Language(ConsoleView):
    path = "/console/language"

    async def post(self, request: Request) -> Response:
        if (who := await self.session(request)) is None:
            return self.refused()
        if not who.csrf_ok(request):
            return self.error(403, "missing or wrong CSRF token (reload the console)")
        if not isinstance(body := await self.body(request), dict):
            return body
        if (language := body.get("language")) not in LANGUAGES:
            return self.error(400, f"language must be one of {', '.join(LANGUAGES)}")
        sessions = self.ctx.services().sessions
        session = await sessions.choose_language(request.cookies.get(COOKIE), who.session, language)
        return self.json(self.described(session))


class Map(ConsoleView):
    path = "/console/map"

    async def get(self, request: Request) -> Response:
        if (who := await self.session(request)) is None:
            return self.refused()
        ref = self.ctx.refdata()
        doc = ref.doc
        return self.json(
            {
                "version": ref.version,
                "areas": doc.get("areas") or {},
                "zones": doc.get("zones") or {},
                "routes": doc.get("routes") or {},
                "sites": [
                    shown(
                        {
                            "id": s.id,
                            "name": s.name,
                            "lon": s.lon,
                            "lat": s.lat,
                            "category": s.category,
                            "status": s.status,
                        },
                        who,
                    )
                    for s in ref.sites.values()
                ],
                "departments": ref.department_names(),
            }
        )


class Status(ConsoleView):
    path = "/console/status"

    async def get(self, request: Request) -> Response:
        if (who := await self.session(request)) is None:
            return self.refused()
        redis, ref = self.ctx.services().store.redis, self.ctx.refdata()
        snaps = await read_all(redis)
        records, dead = totals(snaps)
        async with redis.pipeline(transaction=False) as pipe:
            for status in ("open", "acknowledged", "dispatched"):
                pipe.zcard(IDX.format(f"status:{status}"))
            open_, acked, dispatched = await pipe.execute()
        return self.json(
            {
                "records": records,
                "dead_letters": dead,
                "workers": len(snaps),
                "alerts": {"open": open_, "acknowledged": acked, "dispatched": dispatched},
                "vehicles": [shown(_classed(v, ref), who) for v in await vehicles.gather(redis, self.ctx.positions())],
            }
        )


class Readings(ConsoleView):
    path = "/console/readings"

    async def get(self, request: Request) -> Response:
        if await self.session(request) is None:
            return self.refused()
        q = request.query
        source, entity = q.get("source", ""), q.get("entity", "")
        if source not in self.ctx.registry or not entity:
            return self.error(400, "source (a declared one) and entity are required")
        try:
            ts = float(q.get("ts", ""))
        except ValueError:
            return self.error(400, "ts must be epoch seconds")
        spec = self.ctx.registry[source]
        field = q.get("field") or next(iter(spec.windowed_fields or spec.numeric_fields), None)
        if field not in spec.numeric_fields:
            return self.json({"field": None, "points": []})
        points = await asyncio.to_thread(_readings, self.ctx.settings, spec.entity_field, source, entity, field, ts)
        return self.json({"field": field, "unit": spec.fields[field].unit, "points": points})


class Events(ConsoleView):
    path = "/console/events"

    async def get(self, request: Request):
        if (who := await self.session(request)) is None:
            return self.refused()
        language = self.language(request, who)
        return await _feed(
            request,
            self.ctx.services().store.redis,
            lambda alert: self.displayed(shown(alert, who), language),
            block_ms=int(self.ctx.settings.redis_timeout_s * 1000 / 2),
        )


class Cockpit(ConsoleView):
    path = "/console/cockpit"

    async def get(self, request: Request) -> Response:
        if (who := await self.session(request)) is None:
            return self.refused()
        services, now = self.ctx.services(), time.time()
        alerts = [shown(a, who) for a in await services.store.raised_since(now - (COCKPIT_DAYS + 1) * 86_400)]
        clock, language = self.ctx.alert_view.clock, self.language(request, who)
        summary = await asyncio.to_thread(summarise, alerts, now, clock, COCKPIT_DAYS)
        kind = request.query.get("kind") or next(iter(summary["trend"]), None)
        advice = concentrations(alerts, kind, self.ctx.refdata(), clock) if kind else None
        words = Wording.of(language)
        kinds = sorted({a["kind"] for a in alerts})
        close_s = await services.accountability.median_s("close")
        return self.json(
            {
                "summary": summary,
                "close_median_s": close_s,
                "close_median": "-" if close_s is None else duration(close_s, words),
                "advice": advice,
                "titles": {k: words.title(k) for k in kinds},
                "reports": _reports(self.ctx.settings)[:7],
            }
        )


class Report(ConsoleView):
    path = "/console/reports/{name}"

    async def get(self, request: Request, name: str) -> Response:
        if await self.session(request) is None:
            return self.refused()
        if name not in _reports(self.ctx.settings):
            return self.error(404, f"no report {name!r}")
        body = (self.ctx.settings.reports_path / name).read_bytes()
        ctype = "application/pdf" if name.endswith(".pdf") else "text/html"
        return self.bytes(body, content_type=ctype, headers={**SECURITY_HEADERS, "Content-Security-Policy": REPORT_CSP})


VIEWS = (Login, Logout, Session, Language, Map, Status, Readings, Events, Cockpit, Report)


def register(
    app: faust.App,
    settings: Settings,
    registry: Registry,
    services: Callable[[], Services | None],
    refdata: Callable[[], RefData],
    positions: Callable[[], list[dict]],
) -> None:
    """Add the console's views to ``app``."""
    assets = {
        path: (files("agents.web").joinpath("static", name).read_bytes(), ctype)
        for path, (name, ctype) in ASSETS.items()
    }

    def asset_view(path: str):
        body, ctype = assets[path]

        class Asset(View):
            async def get(self, request: Request) -> Response:
                return self.bytes(body, content_type=ctype, headers=dict(SECURITY_HEADERS))

        return Asset

    for path in ASSETS:
        app.page(path)(asset_view(path))
    mount(app, VIEWS, web_context(settings, services, registry, refdata=refdata, positions=positions))


def _reports(settings: Settings) -> list[str]:
    """The daily reports written so far (``warden report``), newest first."""
    folder = settings.reports_path
    if not folder.is_dir():
        return []
    return sorted((p.name for p in folder.iterdir() if REPORT_NAME.fullmatch(p.name)), reverse=True)


def _classed(vehicle: dict, ref: RefData) -> dict:
    """A vehicle's position with its hazard class (UN class of its goods; empty: not a hazardous-goods vehicle)."""
    registered = ref.vehicles.get(vehicle["entity"])
    return {**vehicle, "hazard_class": registered.hazard_class if registered else ""}


def _readings(settings: Settings, entity_field: str, source: str, entity: str, field: str, ts: float) -> list:
    """(time, value) of ``field`` for ``entity`` around ``ts``, from the replay logs (empty if none)."""
    root = settings.archive_path
    if not root.is_dir():
        return []
    since, until = ts - READINGS_BEFORE_S, ts + READINGS_AFTER_S
    points = []
    for chunk in read_records(
        segments(root, source, since, until),
        since=since,
        until=until,
        entity=entity,
        entity_field=lambda s: entity_field,
    ):
        for t, r in zip(chunk.ts, chunk.records):
            v = r.get(field)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                points.append((t, float(v)))
    points.sort()
    step = max(1, len(points) // MAX_POINTS)
    return points[::step]


async def _feed(request: Request, redis, shown: Callable[[dict], dict], block_ms: int) -> aioweb.StreamResponse:
    """Server-sent events: recent alert changes, then each new one as it is stored, as ``shown`` makes it for
    the caller (masked for viewers, with its display). A quiet stream gets a keep-alive every ``block_ms``
    (half the Redis reply timeout, so the blocking read never times out); when Redis goes away the stream ends
    and the browser reconnects with ``Last-Event-ID``, from where it was."""
    resp = aioweb.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", **SECURITY_HEADERS}
    )
    await resp.prepare(request)
    last = request.headers.get("Last-Event-ID")
    try:
        if last:
            entries = await redis.xrange(ALERT_STREAM, min=f"({last}", count=FEED_BACKLOG)
        else:
            entries = list(reversed(await redis.xrevrange(ALERT_STREAM, count=FEED_BACKLOG)))
        while True:
            for entry_id, fields in entries:
                last = entry_id.decode()
                data = orjson.dumps(shown(orjson.loads(fields[b"alert"])))
                await resp.write(b"id: " + entry_id + b"\ndata: " + data + b"\n\n")
            got = await redis.xread({ALERT_STREAM: last or "$"}, block=block_ms, count=500)
            entries = [e for _, batch in got or [] for e in batch]
            if not entries:
                await resp.write(b": keep-alive\n\n")
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    except RedisError as exc:
        log.info("live feed ended (Redis: %s); the browser reconnects", exc)
    return resp
