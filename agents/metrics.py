"""Moved to :mod:`agents.worker.metrics`; this path stays for tools outside the project that import it
(../shared/tools/peers)."""

from agents.worker.metrics import METRICS, WorkerMetrics

__all__ = ["METRICS", "WorkerMetrics"]
