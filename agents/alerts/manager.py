"""The alert manager: signals in, alerts out - merged by situation, routed, stored once.

It runs on ``warden.signals`` (keyed by entity, so one worker owns each
situation). A batch of signals is merged against the incidents in Redis, routed
with the current reference data, and written in one Redis transaction together
with the marks of the signals it merged; a redelivered signal finds its mark
and changes nothing, so counts stay exact across crashes.
"""

from __future__ import annotations

from agents.alerts.store import AlertStore
from models.alert import Alert
from models.incidents import IncidentBook, QuietPeriods, to_alert
from models.online.feedback import StaffFeedback
from models.routing import route
from models.signal import Signal
from state.refdata.reference import RefData
from state.refdata.store import RefCache

_RANK = {"merged": 0, "reopened": 1, "opened": 2}


class AlertManager:
    """Merges, routes and stores a batch of signals; returns the alerts it changed."""

    def __init__(
        self, store: AlertStore, refdata: RefCache, quiet: QuietPeriods, feedback: StaffFeedback | None = None
    ):
        self.store, self.refdata, self.quiet = store, refdata, quiet
        self.feedback = feedback or StaffFeedback()
        self.label_cursor = "0-0"

    async def learn_labels(self) -> int:
        """Train the staff-feedback model on marks made since the last call; returns how many."""
        n = 0
        while True:
            got = await self.store.labels_after(self.label_cursor)
            if not got:
                return n
            for entry_id, label in got:
                self.feedback.learn_one(label["alert"], bool(label["label"]))
                self.label_cursor = entry_id
            n += len(got)

    def _routed(self, incident: dict, ref: RefData) -> dict:
        routed = route(incident, ref)
        adjusted = self.feedback.adjust(incident, routed["severity"])
        if adjusted != routed["severity"]:
            routed["context"]["feedback"] = {
                "severity_was": routed["severity"],
                "p_confirm": round(self.feedback.confirm_proba(incident), 3),
            }
            routed["severity"] = adjusted
        return routed

    async def handle(self, signals: list[Signal]) -> list[Alert]:
        unique = list({s.id: s for s in signals}.values())
        fresh = [s for s, new in zip(unique, await self.store.unseen([s.id for s in unique])) if new]
        if not fresh:
            return []
        book = IncidentBook(self.quiet)
        book.seed(await self.store.latest(sorted({s.situation for s in fresh})))
        changed: dict[str, tuple[dict, str]] = {}
        for signal in fresh:
            incident, event = book.add(signal)
            before = changed.get(incident["id"])
            if before is None or _RANK[event] > _RANK[before[1]]:
                changed[incident["id"]] = (incident, event)
        ref = self.refdata.current
        rows = [(inc, to_alert(inc, self._routed(inc, ref), event), event) for inc, event in changed.values()]
        await self.store.commit(rows, [s.id for s in fresh], ref.deadlines)
        return [alert for _, alert, _ in rows]
