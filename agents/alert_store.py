"""Moved to :mod:`agents.alerts.store`; this path stays for tools outside the project that import it
(../shared/tools/peers)."""

from agents.alerts.store import AlertStore

__all__ = ["AlertStore"]
