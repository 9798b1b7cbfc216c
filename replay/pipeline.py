"""The alert pipeline in-process: signals merged into alerts as a worker's alert manager and fusion merge them.

Replay, evaluation and the benchmark all turn detector signals into alerts
here, so the alerts they report are the ones a live worker would store (same
ids, counts, first and last seen).

>>> import msgspec
>>> from models.signal import Signal
>>> from settings import Settings
>>> pipeline = AlertPipeline(Settings())
>>> first = Signal.new(source="air", kind="aqi_polluted", entity="st-1", ts=1767225600, window_start=1767225600,
...                    window_s=3600, score=0.9, severity="warning", model="threshold@1", evidence={})
>>> pipeline.add(first); pipeline.add(msgspec.structs.replace(first, id="s2", ts=1767226200.0))
>>> [(a["id"] == first.id, a["count"], a["last_seen"]) for a in pipeline.scored()]
[(True, 2, '2026-01-01T00:10:00.000Z')]
"""

from __future__ import annotations

from collections.abc import Callable

from models.alert import Alert
from models.fusion import FusionBook, Pattern, load_patterns
from models.incidents import IncidentBook, QuietPeriods, to_alert
from models.routing import route
from models.signal import Signal
from settings import Settings
from state.refdata.reference import RefData
from streams.event_time import iso


class AlertPipeline:
    """Signals in (:meth:`add`), merged alerts out; ``also`` sees every signal, fused ones included."""

    def __init__(
        self,
        settings: Settings,
        ref: RefData | None = None,
        patterns: list[Pattern] | None = None,
        also: Callable[[Signal], None] | None = None,
    ):
        self.ref = ref if ref is not None else RefData.empty()
        self.book = IncidentBook(QuietPeriods(settings.alert_quiet_s))
        self.fusion = FusionBook(patterns if patterns is not None else load_patterns(settings.fusion_patterns_dirs))
        self.also = also

    def add(self, sig: Signal) -> None:
        """Merge a detector's signal, and the fused signals it completes, into the alerts."""
        self.book.add(sig)
        if self.also:
            self.also(sig)
        for fused in self.fusion.add(sig, self.ref):
            self.book.add(fused)
            if self.also:
                self.also(fused)

    @property
    def ids(self) -> set[str]:
        """The alerts' ids."""
        return set(self.book.incidents)

    def alerts(self) -> list[Alert]:
        """Each alert as consumers see it, routed, as it stands now; ordered by first seen, then id."""
        incidents = sorted(self.book.incidents.values(), key=lambda i: (i["first_seen"], i["id"]))
        return [to_alert(inc, route(inc, self.ref), "opened") for inc in incidents]

    def scored(self) -> list[dict]:
        """The merged incidents with first and last seen as ISO strings (as the scorers read them), by first
        seen."""
        return sorted(
            (
                {**inc, "first_seen": iso(inc["first_seen"]), "last_seen": iso(inc["last_seen"])}
                for inc in self.book.incidents.values()
            ),
            key=lambda a: a["first_seen"],
        )
