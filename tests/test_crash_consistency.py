"""Crash consistency: a worker killed with SIGKILL three times gives the alerts of a clean run, and its replay
log holds each Kafka offset once and replays to exactly the live alerts (embedded broker and Redis, real
processes)."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections import defaultdict

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from agents.alerts.store import AlertStore
from models.catalog import load_sources
from replay import segments as seg
from replay.archive import read_records, segments
from replay.offline import Engines, replay, replay_archive
from replay.pipeline import AlertPipeline
from state.redis_client import redis_client
from streams.kafka.client import kafka_options
from streams.kafka.producer import BatchingProducer
from streams.kafka.topics import ensure_topics, warden_topics
from streams.sim.city import city_ref
from streams.sim.scenario import Scenario
from streams.sim.simulator import CitySimulator
from tests.conftest import run, wait_until

pytestmark = pytest.mark.integration
TS = 1_767_225_600
# Sources whose idle timer (5 x the expected interval, at least a minute of wall time) cannot fire in the test:
# an idle sweep is wall-clock driven, so two live runs would not agree on it (replay does: it is archived).
SOURCES = ("power", "water", "air", "metric")
RECORDS = 16_000


def _backlog() -> list[dict]:
    """A seeded city with incidents (meters tampered, sensors dying, pollution, leaks), in event-time order."""
    sim = CitySimulator(entities=100, seed=23, start_ts=TS, missing=0.0)
    ticks = Scenario(sim, city_ref(sim), seed=23, first_at=TS + 60, every_s=200).ticks()
    kept = (r for tick in ticks for r in tick if r["source"] in SOURCES)
    return list(itertools.islice(kept, RECORDS))


async def _produce(settings, registry, records: list[dict]) -> None:
    producer = BatchingProducer(**kafka_options(settings), batch_records=50, linger_ms=5, client_id="crash-test")
    await producer.start()
    try:
        for r in records:
            await producer.send(registry[r["source"]].topic, r["entity"], r)
    finally:
        await producer.stop()


async def _ends(settings, registry) -> dict[tuple[str, int], int]:
    consumer = AIOKafkaConsumer(**kafka_options(settings), group_id=None)
    await consumer.start()
    try:
        tps = [TopicPartition(registry[s].topic, p) for s in SOURCES for p in range(registry[s].partition_count(4))]
        ends = await consumer.end_offsets(tps)
        return {(registry.by_topic(tp.topic).name, tp.partition): n for tp, n in ends.items()}
    finally:
        await consumer.stop()


async def _logged(settings, registry, ends: dict[tuple[str, int], int]) -> dict[tuple[str, int], list[int]]:
    """Each partition's offsets as the log holds them, an offset once per record its message carries."""
    consumer = AIOKafkaConsumer(**kafka_options(settings), group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = {TopicPartition(registry[source].topic, p): (source, p) for (source, p), end in ends.items() if end}
        consumer.assign(list(tps))
        await consumer.seek_to_beginning(*tps)
        logged: dict[tuple[str, int], list[int]] = defaultdict(list)
        while any(not logged[key] or logged[key][-1] < ends[key] - 1 for key in tps.values()):
            for tp, messages in (await consumer.getmany(timeout_ms=1000)).items():
                for m in messages:
                    doc = orjson.loads(m.value)
                    logged[tps[tp]] += [m.offset] * (len(doc) if isinstance(doc, list) else 1)
        return dict(logged)
    finally:
        await consumer.stop()


def _accepted(stack) -> int:
    """Records accepted by every worker so far (a killed worker's last published figures stay)."""
    return sum(sum(m["accepted"].values()) for m in stack.metrics())


def _checkpointed(stack, ends: dict[tuple[str, int], int]) -> bool:
    """Every partition's checkpoint covers its topic's last offset."""
    for (source, partition), end in ends.items():
        offset = stack.redis.hget(f"warden:ckpt:warden:{source}:{partition}", "offset")
        if end and (offset is None or int(offset) < end - 1):
            return False
    return True


async def _live(settings) -> dict[str, dict]:
    redis = redis_client(settings)
    try:
        return {a["id"]: a for a in await AlertStore(redis, settings).list(limit=2**31)}
    finally:
        await redis.aclose()


def _essence(alerts) -> dict[str, tuple]:
    return {
        a["id"]: (a["kind"], a["entity"], a["count"], a["first_seen"], a["last_seen"], orjson.dumps(a["evidence"]))
        for a in alerts
    }


def test_three_kill_9s_give_the_clean_runs_alerts_and_a_replay_log_that_replays_them(stack):
    settings, registry = stack.settings, load_sources(stack.settings)
    backlog = _backlog()
    run(ensure_topics(settings, warden_topics(settings, registry)))
    rng = random.Random(7)
    cuts = sorted(rng.sample(range(1000, RECORDS - 1000), 3))
    sent = 0
    # Part of the backlog, a worker on it, killed with SIGKILL a random moment after it began processing: with
    # a checkpoint interval longer than its life (its replay log begun, nothing committed), or a short one.
    for cut, interval in zip(cuts, ("30", "1", "30")):
        run(_produce(settings, registry, backlog[sent:cut]))
        sent = cut
        before = _accepted(stack)
        worker = stack.start_worker(WARDEN_CHECKPOINT_INTERVAL_S=interval)
        wait_until(lambda b=before: _accepted(stack) > b, timeout=60, what="the worker processing")
        asyncio.run(asyncio.sleep(rng.uniform(0.0, 1.5)))
        worker.kill()
    run(_produce(settings, registry, backlog[sent:]))
    worker = stack.start_worker(WARDEN_CHECKPOINT_INTERVAL_S="1")
    _same_as_a_clean_run(stack, backlog, [worker])


def test_two_workers_one_killed_give_the_clean_runs_alerts_and_a_replay_log_that_replays_them(stack):
    settings, registry = stack.settings, load_sources(stack.settings)
    backlog = _backlog()
    run(ensure_topics(settings, warden_topics(settings, registry)))
    first, second = stack.start_worker(), stack.start_worker()
    wait_until(lambda: len(stack.metrics()) == 2, timeout=90, what="two workers")
    half = RECORDS // 2
    run(_produce(settings, registry, backlog[:half]))
    wait_until(lambda: _accepted(stack) > half // 2, timeout=60, what="both processing")
    first.kill()  # its partitions go to the partner, from their checkpoints
    run(_produce(settings, registry, backlog[half:]))
    _same_as_a_clean_run(stack, backlog, [second])


def _same_as_a_clean_run(stack, backlog: list[dict], workers) -> None:
    """Once every record is checkpointed: the live alerts (ids, counts, first and last seen, evidence) are a clean
    in-process run's, the replay log holds each record of each offset once, and replay over it gives them too."""
    settings, registry = stack.settings, load_sources(stack.settings)
    ends = run(_ends(settings, registry))
    wait_until(lambda: _checkpointed(stack, ends), timeout=120, what="every record processed and checkpointed")
    for worker in workers:
        worker.stop()  # seals the replay log
    live = _essence(run(_live(settings)).values())

    clean = AlertPipeline(settings)  # the same records, no broker, no crash; a stream that goes on, as live
    replay(backlog, registry, settings, on_signal=clean.add, ended=False)
    assert live == _essence(a.doc() for a in clean.alerts())
    assert len(live) >= 20 and {k for k, *_ in live.values()} >= {"kwh_backwards", "silent"}

    found = segments(stack.tmp / "data" / "archive")
    archived = defaultdict(list)
    for s in found:
        for frame in seg.read(s.path):
            archived[(s.entry["source"], s.entry["partition"])] += frame.offsets
    assert dict(archived) == run(_logged(settings, registry, ends))  # each record of each offset, once

    replayed = AlertPipeline(settings)
    engines = Engines(registry, settings, on_signal=replayed.add)
    replay_archive(read_records(found), engines)
    assert _essence(a.doc() for a in replayed.alerts()) == live
