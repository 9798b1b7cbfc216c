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
from faust.web import View

from agents.access.identity import Services
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


class WardenView(View):
    """A view of Warden's web server: answers at ``path``, reads ``ctx``."""

    path: ClassVar[str]
    ctx: ClassVar[WebContext]


def mount(app: faust.App, views: Iterable[type[WardenView]], ctx: WebContext) -> None:
    """Add ``views`` to ``app``, each bound to ``ctx``."""
    for view in views:
        app.page(view.path)(type(view.__name__, (view,), {"ctx": ctx}))
