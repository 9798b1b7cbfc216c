"""The data scientists' loop end to end: archive through the live worker, replay, train, evaluate, promote."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from urllib.request import urlopen

import numpy as np
import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from replay.archive import PartitionArchive, segments
from replay.segments import index_path
from streams.kafka.partitioner import partition_for
from streams.kafka.producer import BatchingProducer
from tests.conftest import ROOT, run, wait_until

pytestmark = pytest.mark.integration
T0 = 1_767_225_600  # 2026-01-01T00:00:00Z
DAY = 86_400


def _metric(entities: list[str], start: float, count: int, step: float, seed: int) -> list[dict]:
    """Daily cycle + noise per entity, in time order."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        t = start + i * step
        for k, e in enumerate(entities):
            v = 100 + 30 * np.sin(2 * np.pi * (t % DAY) / DAY + k) + rng.normal(0, 3)
            out.append({"entity": e, "ts": t, "value": round(float(v), 3)})
    return out


def _scale(records: list[dict], entity: str, start: float, end: float, factor: float) -> None:
    for r in records:
        if r["entity"] == entity and start <= r["ts"] < end:
            r["value"] = round(r["value"] * factor, 3)


async def _produce(bootstrap: str, topic: str, records: list[dict]) -> None:
    producer = BatchingProducer(bootstrap, batch_records=200)
    await producer.start()
    try:
        for r in records:
            await producer.send(topic, r["entity"], r)
    finally:
        await producer.stop()


async def _count_topic(bootstrap: str, topic: str) -> int:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None)
    await consumer.start()
    n, idle = 0, 0
    try:
        while idle < 4:
            got = await consumer.getmany(timeout_ms=500)
            idle = 0 if got else idle + 1
            for msgs in got.values():
                for m in msgs:
                    doc = orjson.loads(m.value)
                    n += len(doc) if isinstance(doc, list) else 1
    finally:
        await consumer.stop()
    return n


def _warden(stack, *args: str) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [sys.executable, "-m", "agents.cli", *args],
        cwd=ROOT,
        env={**stack.env(), "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def _accepted(stack, source: str) -> int:
    return sum(m["accepted"].get(source, 0) for m in stack.metrics())


def _health(worker) -> dict:
    with urlopen(f"http://127.0.0.1:{worker.port}/health", timeout=5) as resp:
        return orjson.loads(resp.read())


def _ids(path: Path) -> list[str]:
    return [orjson.loads(line)["id"] for line in path.read_bytes().splitlines()]


def test_archived_records_replay_to_the_live_alert_ids(stack, tmp_path):
    worker = stack.start_worker()
    entities = [f"meter-{i}" for i in range(6)]
    records = _metric(entities, T0, 500, 300, seed=1)
    for e in entities[:3]:
        _scale(records, e, T0 + 350 * 300, T0 + 352 * 300, 5.0)  # spikes the anomaly detector catches
    bootstrap = stack.settings.bootstrap_servers
    run(_produce(bootstrap, "telemetry.metric", records))
    wait_until(lambda: _accepted(stack, "metric") == len(records), timeout=120, what="all records processed")
    live = {a["id"] for a in stack.stream_alerts()}
    assert len(live) >= 3
    # a staff mark is copied beside the replay logs as a label
    marked = sorted(live)[0]
    _warden(stack, "alerts", "resolve", marked, "--by", "analyst")
    archive = tmp_path / "data" / "archive"
    staff = archive / "labels" / "staff.ndjson"
    wait_until(lambda: staff.exists() and marked in staff.read_text(), timeout=30, what="the staff label archived")
    worker.stop()  # a clean stop seals every open segment

    found = segments(archive, "metric")
    assert sum(s.entry["records"] for s in found) == len(records)
    assert all(s.sealed and index_path(s.path).exists() for s in found)
    assert {s.entry["partition"] for s in found} == {partition_for(e, 4) for e in entities}

    first, second = tmp_path / "replay-1.ndjson", tmp_path / "replay-2.ndjson"
    out = _warden(stack, "replay", "--alerts-out", str(first))
    assert f"{len(records):,} records" in out.stdout
    _warden(stack, "replay", "--alerts-out", str(second))
    assert set(_ids(first)) == live
    assert first.read_bytes() == second.read_bytes()

    # a corrupted segment is reported and skipped; the rest replays
    broken = tmp_path / "broken"
    shutil.copytree(archive, broken)
    victim = sorted(broken.glob("metric/*/*.wseg"))[-1]
    data = bytearray(victim.read_bytes())
    data[-5] ^= 0xFF
    victim.write_bytes(bytes(data))
    third = tmp_path / "replay-3.ndjson"
    out = _warden(stack, "replay", "--archive", str(broken), "--alerts-out", str(third))
    assert "skipped corrupt segment" in out.stdout and victim.name in out.stdout.replace("\n", "")
    assert set(_ids(third)) <= live

    # and back into Kafka for an end-to-end rehearsal
    out = _warden(stack, "replay", "--to-kafka", "--source", "metric")
    assert f"sent {len(records):,} records" in out.stdout
    assert run(_count_topic(bootstrap, "telemetry.metric")) == 2 * len(records)


def test_train_evaluate_promote_reaches_the_running_worker(stack, tmp_path):
    archive = tmp_path / "data" / "archive"
    entities = [f"m-{i}" for i in range(12)]
    history = _metric(entities, T0, 10 * 144, 600, seed=7)  # ten days, every 10 min
    incidents = [("m-3", T0 + 8 * DAY + 10 * 3600, 3, 0.2), ("m-5", T0 + 9 * DAY + 2 * 3600, 2, 2.0)]
    for entity, start, hours, factor in incidents:
        _scale(history, entity, start, start + hours * 3600, factor)
    by_part: dict[int, list[dict]] = {}
    for r in history:
        by_part.setdefault(partition_for(r["entity"], 4), []).append(r)
    for part, recs in by_part.items():
        writer = PartitionArchive(archive, "metric", part)
        writer.append(np.arange(len(recs)), np.array([r["ts"] for r in recs], dtype=float), recs)
        writer.close()
    truth = tmp_path / "truth.ndjson"
    truth.write_bytes(
        b"".join(
            orjson.dumps({"kind": "window_outlier", "entity": e, "start": s, "end": s + h * 3600}) + b"\n"
            for e, s, h, _ in incidents
        )
    )
    _warden(stack, "archive", "label", str(truth), "--name", "injected")

    _warden(stack, "train", "--source", "metric", "--until", "2026-01-09T00:00:00Z")
    (version,) = [p.name for p in (tmp_path / "data" / "models" / "metric").iterdir() if not p.name.startswith(".")]
    assert version in _warden(stack, "models", "list").stdout.replace("\n", "")

    plot = tmp_path / "evaluation.png"
    out = _warden(
        stack,
        "evaluate",
        "--source",
        "metric",
        "--since",
        "2026-01-09T00:00:00Z",
        "--model",
        "builtin",
        "--model",
        version,
        "--plot",
        str(plot),
        "--json",
    )
    results = orjson.loads(out.stdout.strip().splitlines()[-1])
    trained, builtin = results[version]["window_outlier"], results["builtin"]["window_outlier"]
    assert trained["recall"] == 1.0 and trained["precision"] >= 0.3 and trained["median_delay_s"] <= 3600
    assert builtin["recall"] == 0.0 and builtin["alerts"] == 0
    assert plot.stat().st_size > 10_000 and plot.read_bytes()[:4] == b"\x89PNG"

    # promotion reaches a running worker between batches, and it keeps its entity state
    worker = stack.start_worker()
    bootstrap = stack.settings.bootstrap_servers
    live = _metric(["live-1"], T0 + 20 * DAY, 3 * 144, 600, seed=9)
    anomaly = T0 + 22 * DAY + 10 * 3600
    _scale(live, "live-1", anomaly, anomaly + 3 * 3600, 0.2)
    before = [r for r in live if r["ts"] < T0 + 22 * DAY]
    run(_produce(bootstrap, "telemetry.metric", before))
    wait_until(lambda: _accepted(stack, "metric") == len(before), timeout=120, what="history processed")
    assert _health(worker)["model_versions"] == {}
    _warden(stack, "models", "promote", version)
    wait_until(lambda: _health(worker)["model_versions"] == {"metric": version}, what="the worker on the new version")
    run(_produce(bootstrap, "telemetry.metric", [r for r in live if r["ts"] >= T0 + 22 * DAY]))
    found = wait_until(
        lambda: [a for a in stack.stream_alerts() if a["kind"] == "window_outlier"],
        timeout=120,
        what="a window_outlier alert from the promoted version",
    )
    assert {(a["entity"], a["model_version"]) for a in found} == {("live-1", version)}
    assert "2026-01-23T11:00" <= found[0]["first_seen"] <= "2026-01-23T14:00"  # the anomalous hours closing

    _warden(stack, "models", "rollback", "--source", "metric")
    wait_until(lambda: _health(worker)["model_versions"] == {}, what="the worker back on the built-in detectors")
