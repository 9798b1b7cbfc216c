"""How the web server's views reach the worker: one context, bound to each view class when it is mounted.

Views are plain classes at module level (``path`` says where they answer);
:func:`mount` gives each a subclass carrying the app's :class:`WebContext`, so
a view reads ``self.ctx.services()`` instead of a variable closed over.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import ClassVar

import faust
from faust.web import Request, Response, View

from agents.access.identity import Caller, Services
from agents.present.alert_view import AlertView
from agents.present.wording import LANGUAGES
from settings import Settings
from state.refdata.reference import RefData
from streams.registry import Registry


@dataclass(frozen=True)
class WebContext:
    """What views read: the settings, and the worker's services once it has started (None before)."""

    settings: Settings
    services: Callable[[], Services | None]
    registry: Registry | None = None
    refdata: Callable[[], RefData] | None = None
    positions: Callable[[], list[dict]] | None = None
    alert_view: AlertView | None = None


def web_context(settings: Settings, services: Callable[[], Services | None], registry: Registry, **more) -> WebContext:
    """The context of views that show alerts to people (in their language, the city's time)."""
    return WebContext(settings, services, registry, alert_view=AlertView(settings.timezone, registry), **more)


class WardenView(View):
    """A view of Warden's web server: answers at ``path``, reads ``ctx``."""

    path: ClassVar[str]
    ctx: ClassVar[WebContext]

    def language(self, request: Request, who: Caller | None) -> str:
        """``?lang=``, else the console session's language, else the deployment's."""
        asked = request.query.get("lang")
        if asked in LANGUAGES:
            return asked
        return (who and who.session and who.session.get("language")) or self.ctx.settings.language

    async def body(self, request: Request) -> dict | Response:
        """The request's JSON object, or the 400 response saying what is wrong."""
        try:
            body = await request.json()
        except ValueError:
            return self.error(400, "the body must be JSON")
        return body if isinstance(body, dict) else self.error(400, "the body must be a JSON object")

    def displayed(self, alert: dict, language: str) -> dict:
        """``alert`` with its ``display`` (:class:`AlertView`) in ``language``."""
        return {**alert, "display": self.ctx.alert_view.display(alert, language)}


def mount(app: faust.App, views: Iterable[type[WardenView]], ctx: WebContext) -> None:
    """Add ``views`` to ``app``, each bound to ``ctx``."""
    for view in views:
        app.page(view.path)(type(view.__name__, (view,), {"ctx": ctx}))
