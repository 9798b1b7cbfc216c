"""The worker end to end against the embedded broker and Redis (no mocks)."""

from __future__ import annotations

import base64

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from models.catalog import load_sources
from models.engine import SourceEngine
from state.checkpoint import unpack
from streams.kafka.partitioner import partition_for
from tests.conftest import run, wait_until

pytestmark = pytest.mark.integration
TS = 1_767_225_600  # 2026-01-01T00:00:00Z


async def _send(bootstrap: str, topic: str, values: list[tuple[bytes | None, bytes, int | None]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, max_request_size=4_000_000)
    await producer.start()
    try:
        for key, value, partition in values:
            await producer.send_and_wait(topic, value, key=key, partition=partition)
    finally:
        await producer.stop()


async def _read_topic(bootstrap: str, topic: str, want: int, timeout_s: float = 60.0) -> list[dict]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None, enable_auto_commit=False
    )
    await consumer.start()
    out: list[dict] = []
    try:
        import time

        deadline = time.monotonic() + timeout_s
        while len(out) < want and time.monotonic() < deadline:
            for msgs in (await consumer.getmany(timeout_ms=500)).values():
                for m in msgs:
                    doc = orjson.loads(m.value)
                    out += doc if isinstance(doc, list) else [doc]
    finally:
        await consumer.stop()
    return out


def _processed(stack, source: str) -> int:
    return sum(m["records"].get(source, 0) for m in stack.metrics())


def test_single_record_from_plain_client_raises_alert(stack):
    stack.start_worker()
    record = {"entity": "station-7", "ts": "2026-01-01T08:00:00Z", "pm25": 180.0, "pm10": 220.0}
    run(_send(stack.settings.bootstrap_servers, "telemetry.station", [(b"station-7", orjson.dumps(record), None)]))
    alerts = wait_until(lambda: stack.stream_alerts(), what="an alert in the Redis stream")
    assert [(a["kind"], a["entity"], a["source"]) for a in alerts] == [("pm25_over_limit", "station-7", "station")]
    assert alerts[0]["evidence"]["value"] == 180.0 and alerts[0]["ts"] == "2026-01-01T08:00:00.000Z"
    on_topic = run(_read_topic(stack.settings.bootstrap_servers, "warden.alerts", 1))
    assert [a["id"] for a in on_topic] == [alerts[0]["id"]]


def test_malformed_records_go_to_dead_letters_and_worker_keeps_going(stack):
    worker = stack.start_worker()
    good = {"entity": "station-1", "ts": TS, "pm25": 20.0}
    bad_messages = {
        "not_json": b"{this is not json",
        "not_object": b'"just a string"',
        "empty": b"",
        "missing_field": orjson.dumps({"entity": "s", "ts": TS}),
        "wrong_type": orjson.dumps({"entity": "s", "ts": TS, "pm25": "high"}),
        "out_of_range": orjson.dumps({"entity": "s", "ts": TS, "pm25": -5}),
        "not_finite": b'{"entity": "s", "ts": 1767225600, "pm25": 1e999}',
        "bad_timestamp": orjson.dumps({"entity": "s", "ts": "next tuesday", "pm25": 5}),
        "absurd_timestamp": orjson.dumps({"entity": "s", "ts": 12, "pm25": 5}),
        "oversize": b'{"entity": "s", "pad": "' + b"x" * 1_100_000 + b'"}',
    }
    values = [(b"s", v, 0) for v in bad_messages.values()]
    # a batch mixing good and bad records: only the bad one is rejected
    values.append((None, orjson.dumps([good, {"entity": 5, "ts": TS, "pm25": 1.0}]), None))
    run(_send(stack.settings.bootstrap_servers, "telemetry.station", values))
    letters = run(_read_topic(stack.settings.bootstrap_servers, "warden.deadletter", len(bad_messages) + 1))
    reasons = sorted(d["reason"] for d in letters)
    assert reasons == sorted([*bad_messages, "wrong_type"])
    by_reason = {d["reason"]: d for d in letters}
    assert base64.b64decode(by_reason["not_json"]["original"]) == b"{this is not json"
    assert by_reason["not_json"]["source"] == "station" and by_reason["not_json"]["partition"] == 0
    assert isinstance(by_reason["not_json"]["offset"], int) and by_reason["not_json"]["detail"]
    oversize = by_reason["oversize"]  # its head, length and hash: a dead letter a stock broker takes
    assert oversize["original_truncated"] and oversize["original_bytes"] == len(bad_messages["oversize"])
    assert len(base64.b64decode(oversize["original"])) == stack.settings.deadletter_original_bytes
    assert worker.alive()
    # late: a record far behind its entity's latest event time
    run(
        _send(
            stack.settings.bootstrap_servers,
            "telemetry.station",
            [(b"station-1", orjson.dumps({"entity": "station-1", "ts": TS - 7200, "pm25": 3.0}), None)],
        )
    )
    letters = run(_read_topic(stack.settings.bootstrap_servers, "warden.deadletter", len(letters) + 1))
    assert "late" in {d["reason"] for d in letters}
    wait_until(
        lambda: sum(sum(m["dead_letters"].values()) for m in stack.metrics()) == len(letters),
        what="dead letters counted in metrics",
    )
    assert worker.alive()


def test_records_on_the_wrong_partition_are_forwarded(stack):
    stack.start_worker()
    entity = "meter-x"
    owner = partition_for(entity, 4)
    wrong = (owner + 1) % 4
    record = {"entity": entity, "ts": TS, "value": 3.0}
    run(_send(stack.settings.bootstrap_servers, "telemetry.metric", [(None, orjson.dumps([record]), wrong)]))
    wait_until(lambda: sum(m["forwarded"].get("metric", 0) for m in stack.metrics()) == 1, what="forward")
    wait_until(lambda: sum(m["accepted"].get("metric", 0) for m in stack.metrics()) == 1, what="processing")
    assert _processed(stack, "metric") == 1  # counted once, where it is owned
    key = f"warden:ckpt:warden:metric:{owner}"
    wait_until(lambda: stack.redis.exists(key), what="owner's checkpoint")


def _checkpointed(stack, source: str, entity: str) -> tuple[int, int, float]:
    """The entity in its partition's checkpoint: records released to the state (its running count), records
    still held for event order, and the running mean."""
    reg = load_sources(stack.settings)
    for part in range(4):
        blob = stack.redis.hget(f"warden:ckpt:warden:{source}:{part}", "state")
        if blob:
            st = SourceEngine(reg[source], stack.settings).state  # with its detectors' columns
            st.load_bytes(unpack(blob))
            row = st.slots.get(entity)
            if row is not None:
                held = int((st.held.rows == row).sum())
                return int(st.store["count"][row, 0]), held, float(st.store["mean"][row, 0])
    return 0, 0, float("nan")


def test_killed_worker_restores_state_from_checkpoint(stack):
    """Killed, a worker's successor carries on from the checkpoint: the records released to the state and
    those still held for event order (the last seconds of its lateness) are all there, none counted twice."""
    worker = stack.start_worker()
    entity = "sensor-1"
    # 15 records in one message: the batch shape that trips Tansu's ListOffsets(latest).
    first = [{"entity": entity, "ts": TS + i * 60, "value": float(i)} for i in range(15)]
    run(_send(stack.settings.bootstrap_servers, "telemetry.metric", [(None, orjson.dumps(first), None)]))
    wait_until(lambda: _checkpointed(stack, "metric", entity)[:2] == (14, 1), what="checkpoint of 14 + 1 held")
    worker.kill()
    stack.start_worker()
    second = [{"entity": entity, "ts": TS + (15 + i) * 60, "value": float(15 + i)} for i in range(10)]
    run(_send(stack.settings.bootstrap_servers, "telemetry.metric", [(None, orjson.dumps(second), None)]))
    # The count continues from 14 and takes the record held across the kill (not restarting, not re-counting).
    wait_until(lambda: _checkpointed(stack, "metric", entity)[:2] == (24, 1), what="count continuing to 24 + 1")
    assert _checkpointed(stack, "metric", entity)[2] == pytest.approx(11.5)  # mean of 0..23


def _librdkafka_send(bootstrap: str, topic: str, entities: list[str]) -> dict[str, int]:
    """One record per message, keyed by entity, from confluent-kafka with its default settings (librdkafka's
    partitioner); returns the partition each entity landed on."""
    from confluent_kafka import Producer

    landed: dict[str, int] = {}
    producer = Producer({"bootstrap.servers": bootstrap})
    for i, entity in enumerate(entities):
        record = {"entity": entity, "ts": TS + i, "value": float(i)}
        producer.produce(
            topic,
            orjson.dumps(record),
            key=entity,
            on_delivery=lambda err, m: landed.update({m.key().decode(): m.partition()}),
        )
    assert producer.flush(30) == 0
    return landed


@pytest.mark.parametrize("partitioner", ["crc32", "murmur2"])
def test_records_of_a_librdkafka_client_are_owned_where_they_land_when_the_deployment_says_crc32(stack, partitioner):
    stack.start_worker(WARDEN_PARTITIONER=partitioner)
    wait_until(lambda: stack.metrics(), what="worker metrics")
    entities = [f"gw-{partitioner}-{i}" for i in range(40)]
    landed = _librdkafka_send(stack.settings.bootstrap_servers, "telemetry.metric", entities)
    assert landed == {e: partition_for(e, 4, "crc32") for e in entities}  # our CRC-32 is librdkafka's
    wait_until(lambda: sum(m["accepted"].get("metric", 0) for m in stack.metrics()) == 40, what="processing")
    forwarded = sum(m["forwarded"].get("metric", 0) for m in stack.metrics())
    assert _processed(stack, "metric") == 40  # each counted once
    if partitioner == "crc32":
        assert forwarded == 0
    else:  # murmur2 owns most of them elsewhere: each takes a second pass through Kafka
        assert forwarded == sum(partition_for(e, 4) != landed[e] for e in entities) > 20
