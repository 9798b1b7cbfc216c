"""``warden bench``: worker throughput, the raw consume ceiling, alert latency, bytes per entity.

1. The simulated city (the default source mix) is written to the broker.
2. A plain aiokafka consumer reads and decodes all of it, three times: the ceiling is the median pass
   (one pass of a million records takes a second or two, and single passes varied by 40% on a shared machine).
3. One worker process consumes the same backlog: records/s through the worker.
4. With the worker caught up, background load runs at ``--latency-rate`` while
   single records that must raise an alert are sent; the time from send to
   the alert's entry in the Redis stream gives p50/p99.
5. The worker's resident memory at the end, and its growth divided by its entities: bytes per entity.
6. The replay log it wrote (in a temporary folder, deleted after): bytes per record.
7. That log replayed in this process, as ``warden replay`` does: records/s, and whether it gives the
   alerts the live worker stored (same ids).
8. The `metric` source alone, on a fifth of the records and entities: one record per message (as any Kafka
   client sends) and batched, each through a worker of its own, and replayed (agents/tools/bench_metric.py).
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import orjson
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from agents.alerts.store import ALERT_STREAM, AlertStore
from agents.embedded.stack import embedded_stack
from agents.tools.bench_metric import run_metric_modes
from agents.tools.bench_workers import start_worker, wait_processed
from agents.worker.metrics import read_all
from replay.archive import read_records, segments
from replay.offline import Engines, replay_archive
from replay.pipeline import AlertPipeline
from settings import Settings
from state.redis_client import redis_client
from streams.kafka.client import kafka_options
from streams.kafka.producer import BatchingProducer
from streams.kafka.topics import ensure_topics, warden_topics
from streams.registry import Registry
from streams.sim.simulator import CitySimulator, pump

BENCH_START_TS = 1_767_225_600.0  # simulated clock starts 2026-01-01T00:00:00Z
console = Console(stderr=True)


def run_bench(
    settings: Settings,
    registry: Registry,
    *,
    records: int,
    entities: int,
    as_json: bool,
    latency_rate: float = 10_000.0,
    latency_probes: int = 200,
) -> dict:
    """Run the whole benchmark and print its figures; returns them."""
    with embedded_stack(settings) as live:
        result = asyncio.run(_bench(live, registry, records, entities, latency_rate, latency_probes))
    table = Table(title=f"warden bench: {records:,} records, {entities:,} entities")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key, value in result.items():
        table.add_row(key, _shown(value))
    console.print(table)
    if as_json:
        print(orjson.dumps(result).decode())
    return result


def _shown(value) -> str:
    if isinstance(value, list):
        return " / ".join(map(_shown, value))
    if isinstance(value, dict):
        return ", ".join(f"{k} {_shown(v)}" for k, v in value.items()) or "-"
    return f"{value:,.1f}" if isinstance(value, float) else f"{value:,}"


async def _bench(
    settings: Settings, registry: Registry, records: int, entities: int, latency_rate: float, probes: int
) -> dict:
    sim, producer, topics = await send_backlog(settings, registry, records, entities)
    raw_rates = await raw_ceiling(settings, registry, records)
    raw_rate = float(np.median(raw_rates))
    redis = redis_client(settings)
    archive = Path(tempfile.mkdtemp(prefix="warden-bench-archive-"))
    worker = start_worker(settings, archive)
    try:
        snap = (await wait_processed(redis, records, [worker]))[0]
        rate = records / max(snap["last_record_at"] - snap["first_record_at"], 1e-9)
        latencies = await _latency(settings, redis, producer, sim, topics, latency_rate, probes)
        deadline = time.monotonic() + 15  # the worker publishes its counters every few seconds
        while sum((snap := (await read_all(redis))[0])["alerts"].values()) < len(latencies):
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        worker.terminate()
        worker.wait(30)
        live = {a["id"]: a["kind"] for a in await AlertStore(redis, settings).list(limit=2**31)}
        archived = sum(p.stat().st_size for p in archive.rglob("*.wseg"))
        replayed, replay_rate, replay = replay_log(settings, registry, archive)
    finally:
        worker.terminate()
        worker.wait(30)
        await producer.stop()
        await redis.aclose()
        shutil.rmtree(archive, ignore_errors=True)
    metric = await run_metric_modes(settings, max(records // 5, 1), max(entities // 5, 1))
    known = max(snap["entities"], 1)
    return {
        "records": records,
        "entities": snap["entities"],
        "records_per_s": round(rate, 1),
        "raw_records_per_s": round(raw_rate, 1),
        "raw_passes_per_s": [round(r, 1) for r in raw_rates],
        "worker_vs_raw": round(rate / raw_rate, 3),
        "p50_latency_ms": round(float(np.percentile(latencies, 50)), 1) if latencies else None,
        "p99_latency_ms": round(float(np.percentile(latencies, 99)), 1) if latencies else None,
        "alerts_measured": len(latencies),
        "signals": sum(snap["signals"].values()),
        "alert_changes": sum(snap["alerts"].values()),
        "bytes_per_entity": round((snap["rss"] - snap["rss_at_start"]) / known, 1),
        "worker_rss_mb": round(snap["rss"] / 2**20, 1),
        "checkpoint_bytes_per_entity": round(snap["checkpoint_bytes"] / max(snap["checkpoint_entities"], 1), 1),
        "archive_bytes_per_record": round(archived / max(sum(snap["records"].values()), 1), 1),
        "replay_records": replayed,
        "replay_records_per_s": round(replay_rate, 1),
        "alerts_live": len(live),
        "alerts_replayed": len(replay),
        "replay_alerts_differ": len(live.keys() ^ replay.keys()),
        "replay_differ_kinds": dict(Counter({**live, **replay}[i] for i in live.keys() ^ replay.keys())),
        **metric,
    }


def replay_log(settings: Settings, registry: Registry, archive: Path) -> tuple[int, float, dict[str, str]]:
    """Records, records/s and alerts (id: kind) of replaying the replay log under ``archive`` in this process,
    through the engines, fusion and merging that ``warden replay`` uses."""
    found = segments(archive)
    pipeline = AlertPipeline(settings)
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("replaying the log", total=sum(s.entry["records"] for s in found))
        engines = Engines(registry, settings, on_signal=pipeline.add, on_progress=lambda n: progress.advance(task, n))
        start = time.perf_counter()
        summary = replay_archive(
            read_records(found, entity_field=lambda s: registry[s].entity_field, record_type=engines.record_type),
            engines,
        )
        elapsed = time.perf_counter() - start
    return summary.records, summary.records / max(elapsed, 1e-9), {a.id: a.kind for a in pipeline.alerts()}


async def send_backlog(
    settings: Settings, registry: Registry, records: int, entities: int
) -> tuple[CitySimulator, BatchingProducer, dict[str, str]]:
    """Write ``records`` of the seeded city to the source topics; returns the simulator, the started producer
    (the caller stops it) and each source's topic."""
    topics = {name: s.topic for name, s in registry.items()}
    await ensure_topics(settings, warden_topics(settings, registry))
    sim = CitySimulator(entities=entities, seed=7, start_ts=BENCH_START_TS, missing=0.0)
    producer = BatchingProducer.for_sources(settings, registry, "warden-bench")
    await producer.start()
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("sending", total=records)
        await pump(sim, producer, topics, max_records=records, on_tick=lambda n, _ts: progress.advance(task, n))
    return sim, producer, topics


async def raw_ceiling(settings: Settings, registry: Registry, records: int, passes: int = 3) -> list[float]:
    """Records/s of a bare aiokafka consume + orjson decode + per-entity dict update, per pass over the backlog."""
    sources = {s.topic for s in registry.values()}
    topics = {t: n for t, n in warden_topics(settings, registry).items() if t in sources}
    consumer = AIOKafkaConsumer(
        **kafka_options(settings), group_id=None, enable_auto_commit=False, max_partition_fetch_bytes=8 * 1024 * 1024
    )
    await consumer.start()
    try:
        tps = [TopicPartition(t, p) for t, n in topics.items() for p in range(n)]
        consumer.assign(tps)
        rates = []
        for _ in range(passes):
            await consumer.seek_to_beginning(*tps)
            seen: dict[str, float] = {}
            n, start = 0, time.perf_counter()
            while n < records:
                for msgs in (await consumer.getmany(timeout_ms=1000, max_records=5000)).values():
                    for m in msgs:
                        doc = orjson.loads(m.value)
                        for r in doc if isinstance(doc, list) else [doc]:
                            seen[r["entity"]] = r["ts"]
                            n += 1
            rates.append(n / (time.perf_counter() - start))
        return rates
    finally:
        await consumer.stop()


async def _latency(
    settings: Settings,
    redis: aioredis.Redis,
    producer: BatchingProducer,
    sim: CitySimulator,
    topics: dict[str, str],
    rate: float,
    probes: int,
) -> list[float]:
    """Send-to-stream milliseconds for ``probes`` alert-raising records under background load."""
    last_id = (await redis.xrevrange(ALERT_STREAM, count=1) or [(b"0-0", None)])[0][0]
    load = asyncio.create_task(pump(sim, producer, topics, rate=rate))
    probe = AIOKafkaProducer(**kafka_options(settings), linger_ms=0)
    await probe.start()
    sent: dict[str, float] = {}
    try:
        await asyncio.sleep(1.0)
        for i in range(probes):
            entity = f"bench-probe-{i:05d}"
            # Stamped on the simulated city's clock: a wall-clock stamp would move the partition's event time
            # months ahead and make every camera "silent" at once, and that storm is what got measured. Smoke
            # is alerted on its first detection.
            record = {"entity": entity, "ts": sim.ts, "object": "smoke", "count": 1, "confidence": 0.9, "zone": "x"}
            sent[entity] = time.time()
            await probe.send_and_wait(topics["video"], orjson.dumps(record), key=entity.encode())
            await asyncio.sleep(0.02)
        arrived: dict[str, float] = {}
        deadline = time.monotonic() + 30
        while len(arrived) < len(sent) and time.monotonic() < deadline:
            for _, entries in await redis.xread({ALERT_STREAM: last_id}, count=1000, block=500) or []:
                for entry_id, fields in entries:
                    last_id = entry_id
                    alert = orjson.loads(fields[b"alert"])
                    if alert["entity"] in sent:  # its first alert; later ones are merges and other kinds
                        arrived.setdefault(alert["entity"], int(entry_id.split(b"-")[0]) / 1000.0)
    finally:
        load.cancel()
        await probe.stop()
    return [(arrived[e] - sent[e]) * 1000.0 for e in arrived]
