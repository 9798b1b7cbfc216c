"""The Faust app: one agent per declared source, the alert manager, archiver, model watch, delivery and the API.

Offsets are ours, not Faust's: input topics are consumed with acks off, so
Faust never commits them; each :class:`PartitionRunner` commits offset + 1 after
it has stored a checkpoint covering that offset (see docs/architecture.md on why
a Faust changelog is not trusted with the embedded broker).

The alert manager runs inside the ingest agent, right after detection: input
topics are keyed by entity, so the partition that detects a signal already owns
its situation (source, kind, entity), and merging there saves a Kafka round
trip. Signals still go to ``warden.signals`` for consumers downstream (fusion).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict

import faust
import numpy as np
import redis.asyncio as aioredis
from aiokafka.errors import KafkaError
from faust.types import TP

from agents.access.audit import Audit
from agents.access.identity import Services
from agents.access.sessions import Sessions
from agents.access.tokens import Identity, TokenStore
from agents.alerts.accountability import Accountability
from agents.alerts.delivery import Delivery
from agents.alerts.manager import AlertManager
from agents.alerts.store import AlertStore
from agents.present.alert_view import AlertView
from agents.web import api
from agents.web import console as web_console
from agents.web.prometheus import CONTENT_TYPE, WorkerCollector, WorkerPrometheus
from agents.worker import positions as vehicles
from agents.worker.archiver import Archiver
from agents.worker.fusion import Fusion
from agents.worker.health import Health
from agents.worker.metrics import WorkerMetrics
from agents.worker.model_watch import ModelWatch
from agents.worker.outputs import Outputs
from agents.worker.partition import Message, PartitionLinks, PartitionRunner
from agents.worker.transport import app_class, credentials
from models.catalog import detectors_of
from models.fusion import load_patterns
from models.incidents import QuietPeriods
from models.signal import Signal
from settings import Settings
from state import compiled
from state.checkpoint import CheckpointStore
from state.redis_client import redis_client
from state.refdata.reference import RefData
from state.refdata.store import RefCache
from state.slots import SlotMap
from streams.kafka.producer import BatchingProducer
from streams.kafka.topics import ensure_topics, warden_topics
from streams.registry import Registry, Source

log = logging.getLogger("warden.worker")
BROKER = "broker"  # its problem's name in /health
BROKER_PING_S = 5.0
ESCALATE_EVERY_S = 5.0
ENGINE = Identity("engine", "engine")  # who the audit trail names for what the engine does itself


class Worker:
    """Holds the Faust app and everything its agents share."""

    def __init__(self, settings: Settings, registry: Registry):
        self.settings, self.registry = settings, registry
        session, rebalance, heartbeat = settings.consumer_timeouts()
        self.app = app_class(settings.fetch_max_wait_ms)(
            settings.app_id,
            broker=settings.faust_broker,
            broker_credentials=credentials(settings),
            store="memory://",
            topic_partitions=settings.partitions,
            consumer_auto_offset_reset="earliest",
            consumer_max_fetch_size=settings.consumer_fetch_bytes,
            broker_session_timeout=session,
            broker_rebalance_timeout=rebalance,
            broker_heartbeat_interval=heartbeat,
            web_host=settings.web_host,
            web_bind=settings.web_host,
            web_port=settings.web_port,
        )
        self.metrics = WorkerMetrics()
        self.health = Health()
        self.departments: dict[str, dict] = {}  # per-department figures, from Redis (the same on every worker)
        self.prometheus = WorkerPrometheus(
            WorkerCollector(self.metrics.snapshot, self._lag, lambda: self.health.problems, lambda: self.departments)
        )
        self.metrics.on_latency = self.prometheus.latency.observe
        self.redis: aioredis.Redis | None = None
        self.outputs: Outputs | None = None
        self.producer: BatchingProducer | None = None
        self.runners: dict[tuple[str, int], PartitionRunner] = {}
        self.store: AlertStore | None = None
        self.alert_manager: AlertManager | None = None
        self.delivery: Delivery | None = None
        self.refdata: RefCache | None = None
        self.archiver: Archiver | None = None
        self.models: ModelWatch | None = None
        self.services: Services | None = None  # the API's and console's, once started
        self.links: PartitionLinks | None = None  # what every partition runner shares, once started
        self.fusion: Fusion | None = None
        self.patterns = load_patterns(settings.fusion_patterns_dirs)  # a bad pattern file stops the start
        self.ready = asyncio.Event()  # agents wait for start(): Faust may start them first
        if compiled.AHEAD is None:
            log.warning(
                "compiled loops: numba's JIT (state/_loops not built from these sources: run make); "
                "some 120 MB more per worker"
            )
        SlotMap.warm_up()  # the compiled parts of the state and the detectors, before any record waits on them
        for detector in {d for source in registry.values() for d in detectors_of(source)}:
            detector.warm_up()
        for source in registry.values():
            self._add_ingest(source)
        self.app.on_partitions_revoked.connect(self._on_revoked)
        self.app.service(self._Lifecycle(self))
        # Periodic work, from start() on; a Redis outage skips a turn (and is reported) instead of crashing the app.
        refresh = settings.refdata_refresh_s
        for name, every, work in (
            ("checkpoint_all", settings.checkpoint_interval_s, self._checkpoint_all),
            ("publish_metrics", 1.0, lambda: self.metrics.publish(self.redis)),
            ("share_positions", 2.0, lambda: vehicles.share(self.redis, self.metrics.worker_id, self.positions)),
            ("sweep_idle", 5.0, self._sweep_idle),
            ("ping_broker", BROKER_PING_S, self._ping_broker),
            ("refresh_refdata", refresh, self._refresh_refdata),
            ("learn_labels", refresh, lambda: self.alert_manager.learn_labels()),
            ("refresh_models", refresh, lambda: self.models.refresh()),
            ("trim_alerts", 3600.0, lambda: self.store.trim()),
            ("escalate", ESCALATE_EVERY_S, self._escalate),
            ("export_labels", 10.0, lambda: self.archiver.export_labels()),
            ("prune_archive", 3600.0, lambda: self.archiver.prune()),
        ):
            self.app.timer(every, name=f"warden.{name}")(self._guarded(name, work))
        self.app.page("/health")(self._health_view())
        self.app.page("/metrics")(self._metrics_view())
        refdata = lambda: self.refdata.current if self.refdata else RefData.empty()  # noqa: E731
        api.register(self.app, settings, registry, lambda: self.services, refdata)
        web_console.register(self.app, settings, registry, lambda: self.services, refdata, self.positions)

    class _Lifecycle(faust.Service):
        """Starts the producer and Redis client before agents run; flushes and checkpoints on stop."""

        def __init__(self, worker: Worker, **kwargs):
            super().__init__(**kwargs)
            self.worker = worker

        async def on_start(self) -> None:
            await self.worker.start()

        async def on_stop(self) -> None:
            await self.worker.stop()

    async def start(self) -> None:
        s = self.settings
        await ensure_topics(s, warden_topics(s, self.registry))
        self.redis = redis_client(s)
        await self.health.retry("start", self.redis.ping)  # Redis down at start: wait (and say so), not die
        self.producer = BatchingProducer.for_sources(s, self.registry, f"{s.app_id}-worker")  # forwards land owned
        await self.producer.start()
        self.outputs = Outputs(self.producer, s)
        self.checkpoints = CheckpointStore(self.redis, s.app_id)
        self.refdata = RefCache(self.redis)
        await self.health.retry("start", self.refdata.refresh)
        self.store = AlertStore(self.redis, s)
        self.alert_manager = AlertManager(self.store, self.refdata, QuietPeriods(s.alert_quiet_s))
        await self.health.retry("start", self.alert_manager.learn_labels)
        self.delivery = Delivery(self.redis, s, self.metrics.worker_id, AlertView(s.timezone, self.registry))
        await self.delivery.start()
        self.fusion = Fusion(self.redis, self.patterns, lambda: self.refdata.current)
        self.archiver = Archiver(s, self.redis)
        self.models = ModelWatch(self.redis, self.health)
        await self.health.retry("start", self.models.refresh)
        await self.models.start()
        self.links = PartitionLinks(
            s,
            self.outputs,
            self.checkpoints,
            self.metrics,
            self.health,
            commit=self._commit,
            alert=self._manage,
            refdata=lambda: self.refdata.current,
            archive=self.archiver.partition,
            model=self.models.get,
        )
        self.accountability = Accountability(self.redis, s.alert_stream_maxlen)
        self.services = Services(
            self.store, Sessions(self.redis), TokenStore(self.redis, s), Audit(self.redis, s), self.accountability
        )
        self.ready.set()

    async def stop(self) -> None:
        for runner in list(self.runners.values()):
            try:
                await runner.close()
            except Exception:
                log.exception("final checkpoint of %s/%d failed", runner.source.name, runner.partition)
        if self.models:
            await self.models.stop()
        if self.delivery:
            await self.delivery.stop()
        if self.producer:
            await self.producer.stop()
        if self.redis:
            await self.health.attempt("final metrics", lambda: self.metrics.publish(self.redis))
            await self.redis.aclose()

    def _add_ingest(self, source: Source) -> None:
        """Subscribe to the source's topic and process what the consumer hands off, a partition's run of
        messages at a time (see agents/worker/transport.py: no agent, no per-message path)."""
        topic = self.app.topic(
            source.topic,
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
            acks=False,
            partitions=source.partition_count(self.settings.partitions),
        )
        self.app.topics.add(topic)
        queue = self.app.hand_off[source.topic] = self.app.FlowControlQueue(
            maxsize=self.settings.hand_off_batches, clear_on_resume=True
        )

        async def ingest() -> None:
            while True:
                waiting = [await queue.get()]
                while not queue.empty():  # behind on this source: every run waiting, merged per partition
                    waiting.append(queue.get_nowait())
                by_partition: dict[int, list[Message]] = defaultdict(list)  # aiokafka's records, read as Messages
                for partition, records in waiting:
                    by_partition[partition] += records
                owned = self.app.consumer.assignment()
                for partition, messages in by_partition.items():
                    if TP(source.topic, partition) not in owned:  # revoked meanwhile: its owner reads them
                        continue
                    runner = await self._runner(source, partition)
                    try:
                        await runner.process(messages)
                    except Exception as exc:  # not a detector's (dead-lettered in the runner): stop, never skip
                        first = messages[0].offset
                        log.exception(
                            "%s/%d: offsets from %d not processed; the worker stops", source.name, partition, first
                        )
                        await self.app.crash(exc)
                        return

        ingest.__name__ = f"warden.ingest.{source.name}"
        self.app.task(ingest)

    def _guarded(self, name: str, work):
        async def guarded() -> None:
            if self.ready.is_set():  # Faust may start timers before start() has run
                await self.health.attempt(name, work)

        guarded.__name__ = name
        return guarded

    async def _escalate(self) -> None:
        """Escalate the alerts past their deadlines (each once, whichever worker gets there first), audited; then
        refresh the per-department figures."""
        for alert in await self.accountability.escalate_due(time.time()):
            await self.services.audit.record(ENGINE, "alert.escalate", alert["id"], "engine", alert["escalation"])
        self.departments = await self.accountability.figures()

    async def _manage(self, signals: list[Signal]) -> None:
        """Merge and store a batch's signals, retrying (with back-off) while Redis is unavailable."""
        if not signals:
            return
        alerts = await self.health.retry("alert manager", lambda: self.alert_manager.handle(signals))
        self.metrics.alerted(alerts)
        fused = await self.health.retry("fusion", lambda: self.fusion.handle(signals))
        if fused:
            alerts = await self.health.retry("alert manager", lambda: self.alert_manager.handle(fused))
            self.metrics.alerted(alerts)

    async def _runner(self, source: Source, partition: int) -> PartitionRunner:
        key = (source.name, partition)
        runner = self.runners.get(key)
        if runner is None:
            await self.ready.wait()
            runner = PartitionRunner(source, partition, self.links)
            await runner.restore()
            self.runners[key] = runner
        return runner

    async def _commit(self, topic: str, partition: int, offset: int) -> None:
        await self.app.consumer._commit_offsets({TP(topic, partition): offset})

    async def _on_revoked(self, app, revoked, **_) -> None:
        for tp in revoked:
            source = self.registry.by_topic(tp.topic)
            runner = self.runners.pop((source.name, tp.partition), None) if source else None
            if runner is not None:
                await runner.close()
                self.metrics.released(source.name, tp.partition)

    async def _checkpoint_all(self) -> None:
        for runner in list(self.runners.values()):
            await runner.checkpoint()

    async def _sweep_idle(self) -> None:
        if BROKER in self.health.problems:  # records may be waiting in a broker that does not answer: not idle
            return
        for runner in list(self.runners.values()):
            await runner.sweep_idle()

    async def _ping_broker(self) -> None:
        """A broker that stops answering (frozen, partitioned away) shows in /health, /metrics and the log."""
        try:
            await asyncio.wait_for(self.producer.ping(), BROKER_PING_S)
        except (TimeoutError, KafkaError, OSError) as exc:
            self.health.failed(BROKER, "metadata request", exc)
        else:
            self.health.recovered(BROKER)

    async def _refresh_refdata(self) -> None:
        try:
            await self.health.retry("start", self.refdata.refresh)
        except ValueError as exc:  # stored by an older or newer release: keep what we have
            log.error("reference data not refreshed: %s", exc)

    def positions(self, limit: int = 5000) -> list[dict]:
        """The latest position of each vehicle in the GPS partitions this worker owns (at most ``limit``)."""
        out: list[dict] = []
        for runner in list(self.runners.values()):
            state = runner.engine.state
            if not {"lat", "lon"} <= set(state.numeric) or "last" not in state.store:
                continue
            last = state.store["last"][: len(state)]
            lat, lon = last[:, state.numeric.index("lat")], last[:, state.numeric.index("lon")]
            seen = np.flatnonzero(~np.isnan(lat) & ~np.isnan(lon))[: limit - len(out)]
            heading = (
                last[:, state.numeric.index("heading")] if "heading" in state.numeric else np.full(len(last), np.nan)
            )
            out += [
                {"entity": e, "lat": a, "lon": o, "ts": t, **({"heading": h} if h == h else {})}
                for e, a, o, t, h in zip(
                    state.slots.names(seen),
                    lat[seen].round(6).tolist(),
                    lon[seen].round(6).tolist(),
                    state.store["last_ts"][seen].tolist(),
                    heading[seen].round(1).tolist(),
                )
            ]
        return out

    def _lag(self) -> dict[tuple[str, int], int]:
        """Per owned partition: messages in Kafka beyond the last one processed."""
        out = {}
        for runner in list(self.runners.values()):
            try:
                high = self.app.consumer.highwater(TP(runner.source.topic, runner.partition))
            except Exception:
                continue
            if high is not None and high >= 0:
                out[(runner.source.topic, runner.partition)] = max(0, int(high) - runner.offset - 1)
        return out

    def _metrics_view(self):
        worker = self

        async def metrics(web, request):
            return web.bytes(worker.prometheus.render(), content_type=CONTENT_TYPE)

        return metrics

    def _health_view(self):
        worker = self

        async def health(web, request):
            snap = worker.metrics.snapshot()
            return web.json(
                {
                    "status": worker.health.status,
                    "problems": worker.health.problems,
                    "worker": snap["worker"],
                    "partitions": len(worker.runners),
                    "records": snap["records"],
                    "dead_letters": snap["dead_letters"],
                    "alerts": snap["alerts"],
                    "lag": sum(worker._lag().values()),
                    "refdata_version": worker.refdata.current.version if worker.refdata else None,
                    "model_versions": worker.models.versions() if worker.models else {},
                    "delivery": worker.delivery.status() if worker.delivery else {},
                }
            )

        return health
