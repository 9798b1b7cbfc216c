"""``warden bench``'s `metric` modes: the generic sensor source alone, as integrators feed it.

Two modes over the same seeded records (each entity a Gaussian sensor with its
own level and spread, one reading a minute), each with its own topic, worker,
consumer group and Redis database:

* ``one_record``: one record per message, keyed by entity, from a plain
  aiokafka producer with its default partitioner, as a device gateway or any
  Kafka client sends them;
* ``metric_batched``: the same records in Warden's batched envelopes.

Each reports records/s through the worker, its resident memory and the growth
per entity; ``metric_replay_records_per_s`` is the records replayed in this
process through a fresh engine (its start included).
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson
from aiokafka import AIOKafkaProducer
from rich.progress import Progress

from agents.tools.bench_workers import console, start_worker, wait_processed, with_db
from replay.offline import replay
from settings import Settings
from state.redis_client import redis_client
from streams.kafka.client import kafka_options
from streams.kafka.producer import BatchingProducer
from streams.kafka.topics import ensure_topics
from streams.registry import SHIPPED_DIR, Registry, load_registry

METRIC_DBS = {"one_record": 14, "metric_batched": 15}  # Redis databases of their own (the mix uses 0)
START_TS = 1_767_225_600.0


def metric_records(records: int, entities: int, seed: int = 11) -> list[dict]:
    """``records`` readings of ``entities`` sensors, round robin, one a minute each (seeded)."""
    rng = np.random.default_rng(seed)
    level, spread = rng.uniform(0, 100, entities), rng.uniform(0.5, 5.0, entities)
    i = np.arange(records)
    entity = i % entities
    values = rng.normal(level[entity], spread[entity]).round(3)
    ts = START_TS + (i // entities) * 60.0 + entity * (60.0 / entities)
    return [
        {"entity": f"dev-{e:06d}", "ts": t, "value": v}
        for e, t, v in zip(entity.tolist(), ts.round(3).tolist(), values.tolist())
    ]


async def run_metric_modes(settings: Settings, records: int, entities: int) -> dict:
    """Both modes and the in-process replay."""
    recs = metric_records(records, entities)
    out: dict = {}
    for mode, db in METRIC_DBS.items():
        folder = Path(tempfile.mkdtemp(prefix=f"warden-bench-{mode}-"))
        topic = f"bench.metric.{mode}"
        (folder / "sources").mkdir()
        shipped = (SHIPPED_DIR / "metric.toml").read_text(encoding="utf-8")
        (folder / "sources" / "metric.toml").write_text(
            shipped.replace('topic = "telemetry.metric"', f'topic = "{topic}"'), encoding="utf-8"
        )
        step = settings.model_copy(update={"redis_url": with_db(settings.redis_url, db)})
        registry = load_registry(step.model_copy(update={"sources_dirs": [folder / "sources"]}))
        await ensure_topics(step, {topic: step.partitions})
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task(f"sending {mode}", total=len(recs))
            send = _send_single if mode == "one_record" else _send_batched
            await send(step, registry, topic, recs, lambda n, task=task: progress.advance(task, n))
        redis = redis_client(step)
        await redis.flushdb()
        worker = start_worker(
            step,
            folder / "archive",
            name=f"bench-{mode}",
            WARDEN_APP_ID=f"{settings.app_id}-bench-{mode}",
            WARDEN_SOURCES_DIRS=str(folder / "sources"),
            WARDEN_RUN_SOURCES="metric",
        )
        try:
            snap = (await wait_processed(redis, len(recs), [worker]))[0]
        finally:
            worker.terminate()
            worker.wait(30)
            await redis.flushdb()
            await redis.aclose()
            shutil.rmtree(folder, ignore_errors=True)
        span = max(snap["last_record_at"] - snap["first_record_at"], 1e-9)
        out[mode] = {
            "records": len(recs),
            "entities": snap["entities"],
            "records_per_s": round(len(recs) / span, 1),
            "worker_rss_mb": round(snap["rss"] / 2**20, 1),
            "bytes_per_entity": round((snap["rss"] - snap["rss_at_start"]) / max(snap["entities"], 1), 1),
            "forwarded": sum(snap["forwarded"].values()),
        }
    start = time.perf_counter()
    replay(recs, load_registry(settings), settings, source="metric", on_signal=lambda _s: None)
    out["metric_replay_records_per_s"] = round(len(recs) / (time.perf_counter() - start), 1)
    return out


async def _send_single(settings: Settings, registry: Registry, topic: str, recs: list[dict], advance) -> None:
    """One message per record, keyed by entity, with aiokafka's default partitioner."""
    producer = AIOKafkaProducer(**kafka_options(settings), linger_ms=5)
    await producer.start()
    try:
        for at in range(0, len(recs), 5000):
            chunk = recs[at : at + 5000]
            sent = [await producer.send(topic, orjson.dumps(r), key=r["entity"].encode()) for r in chunk]
            await asyncio.gather(*sent)
            advance(len(chunk))
    finally:
        await producer.stop()


async def _send_batched(settings: Settings, registry: Registry, topic: str, recs: list[dict], advance) -> None:
    """Warden's batched envelopes (per-partition JSON arrays)."""
    producer = BatchingProducer.for_sources(settings, registry, "warden-bench")
    await producer.start()
    try:
        for r in recs:
            await producer.send(topic, r["entity"], r)
        advance(len(recs))
    finally:
        await producer.stop()
