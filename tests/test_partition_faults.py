"""A batch the engine raises on costs its own messages, never the partition: they go to the dead letters as
``internal_error`` with an error id the log has with the traceback, they are counted, and health says so."""

from __future__ import annotations

import asyncio
import base64
import logging

import orjson
import pytest

from agents.worker.health import INTERNAL, Health
from agents.worker.partition import Message
from models.catalog import load_sources
from models.rules.threshold import Threshold
from settings import Settings
from streams.kafka.partitioner import partition_for
from tests.conftest import TEST_SOURCES
from tests.runners import kept_runner
from tests.test_garbage import REGISTRY, T0

STATION = load_sources(Settings(sources_dirs=[TEST_SOURCES]))["station"]  # one reading over 75: an alert

OWNED = [e for e in (f"st-{i}" for i in range(20)) if partition_for(e, 2) == 0][:2]  # by the runner's partition


def _message(offset: int, entity: str, pm25: float) -> Message:
    return Message(offset, orjson.dumps({"entity": entity, "ts": T0 + 60 * offset, "pm25": pm25}))


def test_a_detector_that_raises_dead_letters_its_messages_and_the_partition_goes_on(
    tmp_path, monkeypatch, caplog: pytest.LogCaptureFixture
):
    real = Threshold.detect

    def fragile(self, batch, rows, state, ctx):
        if (batch.columns["pm25"] == 666.0).any():
            raise RuntimeError("a detector bug")
        return real(self, batch, rows, state, ctx)

    monkeypatch.setattr(Threshold, "detect", fragile)
    health = Health()

    async def scenario():
        runner, outputs = await kept_runner(STATION, tmp_path, health=health)
        await runner.process([_message(0, OWNED[0], 20.0), _message(1, OWNED[1], 666.0)])  # one batch: both lost
        await runner.process([_message(2, OWNED[0], 300.0)])  # the partition goes on, and detects
        await runner.close()
        return runner, outputs

    with caplog.at_level(logging.ERROR, logger="agents.worker.partition"):
        runner, outputs = asyncio.run(scenario())
    letters = outputs.letters
    assert [(d["offset"], d["reason"]) for d in letters] == [(0, INTERNAL), (1, INTERNAL)]
    error_id = health.problems[INTERNAL]["error_id"]
    assert all(error_id in d["detail"] and "RuntimeError: a detector bug" in d["detail"] for d in letters)
    assert orjson.loads(base64.b64decode(letters[1]["original"]))["pm25"] == 666.0
    logged = [r for r in caplog.records if error_id in r.getMessage()]
    assert logged and logged[0].exc_info and "a detector bug" in str(logged[0].exc_info[1])
    assert health.status == "degraded" and health.problems[INTERNAL]["count"] == 1
    assert [s.kind for s in outputs.sent] == ["pm25_over_limit"]
    assert runner.links.metrics.records["station"] == 3  # each message counted once: two lost, one processed


def test_a_sweep_that_raises_costs_that_sweep_only(tmp_path, monkeypatch):
    def broken(self, state, now):
        raise ValueError("a sweep bug")

    monkeypatch.setattr(Threshold, "sweep", broken)
    health = Health()

    async def scenario():
        runner, outputs = await kept_runner(STATION, tmp_path, health=health)
        await runner.process([_message(0, OWNED[0], 20.0)])
        runner.last_message_at -= 3600  # an hour without a message: the idle timer sweeps
        await runner.sweep_idle()
        await runner.process([_message(1, OWNED[0], 300.0)])  # and the partition goes on
        await runner.close()
        return outputs

    outputs = asyncio.run(scenario())
    assert health.problems[INTERNAL]["error"] == "ValueError: a sweep bug" and health.status == "degraded"
    assert [s.kind for s in outputs.sent] == ["pm25_over_limit"] and not outputs.letters


def test_a_busy_partitions_clock_judges_the_hour_of_a_station_gone_quiet_and_replay_agrees(tmp_path):
    """One station reports once and goes quiet while another keeps reporting: the timer's sweep at the
    partition's watermark judges the quiet one's hour (AQI) once the clock passes its end plus the lateness;
    the sweep is in the replay log, and replay raises the same."""
    from replay.archive import read_records, segments
    from replay.offline import Engines, replay_archive
    from settings import Settings

    quiet, busy = OWNED
    hour = T0 + 3600

    def at(offset: int, entity: str, ts: float, pm25: float) -> Message:
        return Message(offset, orjson.dumps({"entity": entity, "ts": ts, "pm25": pm25}))

    async def scenario():
        runner, outputs = await kept_runner(REGISTRY["air"], tmp_path)
        polluted = [at(k, quiet, hour + 1800 - 3600 * (2 - k), 400.0) for k in range(3)]  # three hours running
        await runner.process([*polluted, at(3, busy, hour + 1800, 10.0)])
        for k in range(1, 6):  # the busy one every ten minutes, past the hour's end plus the lateness
            await runner.process([at(3 + k, busy, hour + 1800 + 600 * k, 10.0)])
            await runner.sweep_idle()  # the timer's tick: the partition is busy, its clock is the watermark
        await runner.close()
        return outputs

    outputs = asyncio.run(scenario())
    live = sorted((s.kind, s.entity, s.window_start) for s in outputs.sent if s.kind == "aqi_polluted")
    assert live == [("aqi_polluted", quiet, hour)]
    replayed = []
    replay_archive(read_records(segments(tmp_path)), Engines(load_sources(), Settings(), on_signal=replayed.append))
    assert sorted(s.id for s in replayed) == sorted(s.id for s in outputs.sent)


def test_messages_fetched_again_after_a_seek_are_not_processed_twice(tmp_path):
    """A rebalance seeks the consumer back to the committed offset, so messages the runner has processed can come
    again: they change nothing and are not counted twice."""

    async def scenario():
        runner, outputs = await kept_runner(STATION, tmp_path)
        first = [_message(0, OWNED[0], 20.0), _message(1, OWNED[0], 300.0)]
        await runner.process(first)
        await runner.process([*first, _message(2, OWNED[1], 300.0)])  # 0 and 1 again, then one new
        return outputs, runner.metrics.snapshot()

    outputs, snap = asyncio.run(scenario())
    assert [(s.entity, s.kind) for s in outputs.sent] == [(OWNED[0], "pm25_over_limit"), (OWNED[1], "pm25_over_limit")]
    assert snap["records"]["station"] == 3
