"""``GET /metrics``: the worker's figures in Prometheus' text format (prometheus-client).

Counters come from :class:`~agents.worker.metrics.WorkerMetrics` at scrape time; the
processing-latency histogram (Kafka append time to the end of processing, per
batch) is observed by the partition runners.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

CONTENT_TYPE = "text/plain; version=0.0.4"


class WorkerCollector:
    """Reads a worker's state when Prometheus scrapes."""

    def __init__(
        self,
        snapshot: Callable[[], dict],
        lag: Callable[[], dict[tuple[str, int], int]],
        problems: Callable[[], dict],
        departments: Callable[[], dict[str, dict]],
    ):
        self.snapshot, self.lag, self.problems, self.departments = snapshot, lag, problems, departments

    def collect(self):
        snap = self.snapshot()
        for name, key, doc in (
            (
                "records",
                "records",
                "records judged here (a forwarded one where it is owned; an unreadable message: one)",
            ),
            ("accepted", "accepted", "records accepted"),
            ("signals", "signals", "detector signals"),
            ("forwarded", "forwarded", "records forwarded to their partition"),
            ("duplicates", "duplicates", "records repeating one already taken (entity, time, fields): no effect"),
        ):
            family = CounterMetricFamily(f"warden_{name}", doc, labels=["source"])
            for source, n in snap[key].items():
                family.add_metric([source], n)
            yield family
        dead = CounterMetricFamily(
            "warden_dead_letters", "records sent to the dead-letter topic", labels=["source", "reason"]
        )
        for key, n in snap["dead_letters"].items():
            dead.add_metric(key.split(":", 1), n)
        yield dead
        alerts = CounterMetricFamily("warden_alert_changes", "alert changes by event", labels=["event"])
        for event, n in snap["alerts"].items():
            alerts.add_metric([event], n)
        yield alerts
        lag = GaugeMetricFamily(
            "warden_lag_messages",
            "messages in Kafka not yet processed (a message holds one record or a batch)",
            labels=["topic", "partition"],
        )
        for (topic, partition), n in self.lag().items():
            lag.add_metric([topic, str(partition)], n)
        yield lag
        yield GaugeMetricFamily("warden_entities", "entities in state", value=snap["entities"])
        yield GaugeMetricFamily(
            "warden_records_waiting",
            "records accepted and held until no earlier one of their entity can come (each source's lateness)",
            value=snap["waiting"],
        )
        yield GaugeMetricFamily(
            "warden_checkpoint_bytes", "bytes of the latest checkpoints", value=snap["checkpoint_bytes"]
        )
        yield GaugeMetricFamily("warden_resident_bytes", "resident memory of the worker", value=snap["rss"])
        up = GaugeMetricFamily("warden_dependency_up", "1 when the dependency is reachable", labels=["dependency"])
        problems = self.problems()
        for dependency in ("redis", "broker"):
            up.add_metric([dependency], 0.0 if dependency in problems else 1.0)
        yield up
        yield from _department_families(self.departments())


def _department_families(departments: dict[str, dict]):
    """Accountability per department (from Redis: every worker reports the same figures)."""
    overdue = GaugeMetricFamily(
        "warden_department_overdue_alerts", "escalated alerts not yet closed", labels=["department"]
    )
    escalated = CounterMetricFamily("warden_department_escalations", "alerts escalated", labels=["department"])
    spans = GaugeMetricFamily(
        "warden_department_seconds",
        "seconds from raised to acknowledged / closed, over the latest 1,000 of each",
        labels=["department", "span", "quantile"],
    )
    for department, f in sorted(departments.items()):
        overdue.add_metric([department], f["overdue"])
        escalated.add_metric([department], f["escalated"])
        for span in ("acknowledge", "close"):
            for quantile, key in (("0.5", "median"), ("0.9", "p90")):
                if (value := f[f"{span}_{key}_s"]) is not None:
                    spans.add_metric([department, span, quantile], value)
    yield from (overdue, escalated, spans)


class WorkerPrometheus:
    """A registry per worker, with its latency histogram."""

    def __init__(self, collector: WorkerCollector):
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(collector)
        self.latency = Histogram(
            "warden_processing_latency_seconds",
            "Kafka append time of a batch's newest message to the end of its processing",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
