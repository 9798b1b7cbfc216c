"""Faults around the worker: Redis going away, a worker killed under load (embedded broker and Redis, real
processes)."""

from __future__ import annotations

import os
import signal
import time
import urllib.request
from contextlib import contextmanager

import orjson
import pytest

from agents.embedded.redis_server import EmbeddedRedis
from streams.kafka.producer import BatchingProducer
from tests.conftest import run, wait_until
from tests.test_worker_integration import _send

pytestmark = pytest.mark.integration
TS = 1_767_225_600


def _health(port: int) -> dict:
    """The worker's /health (a connection refused while it starts raises)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as resp:
        return orjson.loads(resp.read())


def _reachable(port: int) -> bool:
    try:
        return bool(_health(port))
    except OSError:
        return False


def _metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        assert resp.headers["Content-Type"].startswith("text/plain")
        return resp.read().decode()


def _breach(station: str, hour: int) -> tuple[bytes, bytes, None]:
    return station.encode(), orjson.dumps({"entity": station, "ts": TS + 3600 * hour, "pm25": 150.0}), None


def test_redis_outage_holds_alerts_back_reports_it_and_loses_nothing(stack, tmp_path):
    # Run Redis from a folder so it can come back with its data, on the same port.
    stack.redis_server.stop()
    stack.redis_server = EmbeddedRedis(data_dir=tmp_path / "redis", port=stack.redis_server.port).start()
    worker = stack.start_worker()
    run(_send(stack.settings.bootstrap_servers, "telemetry.station", [_breach("st-before", 0)]))
    wait_until(lambda: stack.stream_alerts(), what="the first alert")
    stack.redis.save()
    stack.redis_server.stop()

    stations = [f"st-{i}" for i in range(5)]
    run(_send(stack.settings.bootstrap_servers, "telemetry.station", [_breach(s, 1) for s in stations]))
    health = wait_until(
        lambda: (h := _health(worker.port))["status"] == "degraded" and h,
        timeout=30,
        what="the worker to report Redis as unavailable",
    )
    assert "redis" in health["problems"]
    assert 'warden_dependency_up{dependency="redis"} 0.0' in _metrics(worker.port)
    time.sleep(8)  # an outage longer than a few retries and timers
    assert worker.alive()
    assert "redis" in worker.log.read_text().lower()

    stack.redis_server = EmbeddedRedis(data_dir=tmp_path / "redis", port=stack.redis_server.port).start()
    wait_until(
        lambda: {a["entity"] for a in stack.stream_alerts()} >= {"st-before", *stations},
        timeout=60,
        what="the alerts held back during the outage",
    )
    wait_until(lambda: _health(worker.port)["status"] == "ok", what="health back to ok")
    text = _metrics(worker.port)
    assert 'warden_dependency_up{dependency="redis"} 1.0' in text
    assert 'warden_records_total{source="station"} 6.0' in text and "warden_processing_latency_seconds_bucket" in text
    assert 'warden_alert_changes_total{event="opened"}' in text and "warden_lag_messages{" in text
    opened = [a for a in stack.stream_alerts() if a["event"] == "opened"]
    assert len({a["id"] for a in opened}) == len(opened)  # each alert exactly once
    assert sorted(a["entity"] for a in opened if a["kind"] == "pm25_over_limit") == sorted(["st-before", *stations])
    assert "redis available again" in worker.log.read_text().lower()


def test_redis_down_at_start_the_worker_waits_says_so_and_then_catches_up(stack, tmp_path):
    port = stack.redis_server.port
    stack.redis_server.stop()
    worker = stack.start_worker()
    run(_send(stack.settings.bootstrap_servers, "telemetry.station", [_breach("st-early", 0)]))
    health = wait_until(
        lambda: _reachable(worker.port) and (h := _health(worker.port))["status"] == "degraded" and h,
        timeout=60,
        what="/health saying Redis is unavailable while the worker waits for it",
    )
    assert "redis" in health["problems"]
    time.sleep(5)
    assert worker.alive() and "redis unavailable" in worker.log.read_text().lower()
    stack.redis_server = EmbeddedRedis(data_dir=tmp_path / "redis", port=port).start()
    wait_until(lambda: [a["entity"] for a in stack.stream_alerts()] == ["st-early"], timeout=90, what="the alert")
    wait_until(lambda: _health(worker.port)["status"] == "ok", what="health back to ok")
    assert "traceback" not in worker.log.read_text().lower()


@contextmanager
def _alerting_worker_with_frozen(stack, pid_of, first: str):
    """A worker that has raised its first alert (for ``first``), then the process ``pid_of(stack)`` stopped with
    SIGSTOP until the block ends (SIGCONT); yields the worker."""
    worker = stack.start_worker()
    run(_send(stack.settings.bootstrap_servers, "telemetry.station", [_breach(first, 0)]))
    wait_until(lambda: stack.stream_alerts(), timeout=90, what="the first alert")
    pid = pid_of(stack)
    os.kill(pid, signal.SIGSTOP)
    try:
        yield worker
    finally:
        os.kill(pid, signal.SIGCONT)


def test_a_frozen_broker_shows_in_health_and_the_log_and_nothing_is_lost_or_doubled(stack):
    with _alerting_worker_with_frozen(stack, lambda s: s.broker._proc.pid, "st-1") as worker:
        health = wait_until(
            lambda: (h := _health(worker.port))["status"] == "degraded" and h,
            timeout=60,
            what="/health saying the broker does not answer",
        )
        assert "broker" in health["problems"] and 'dependency="broker"} 0.0' in _metrics(worker.port)
        assert "broker unavailable" in worker.log.read_text().lower()
        time.sleep(5)
    wait_until(lambda: _health(worker.port)["status"] == "ok", timeout=90, what="health back to ok")
    run(_send(stack.settings.bootstrap_servers, "telemetry.station", [_breach("st-2", 0)]))
    wait_until(lambda: len(stack.stream_alerts()) >= 2, timeout=90, what="the alert after the freeze")
    time.sleep(2)
    opened = [(a["kind"], a["entity"]) for a in stack.stream_alerts() if a["event"] == "opened"]
    assert sorted(opened) == [("pm25_over_limit", "st-1"), ("pm25_over_limit", "st-2")]  # once each, no silence
    assert worker.alive() and "broker available again" in worker.log.read_text().lower()


def test_a_frozen_redis_holds_alerts_back_says_so_and_loses_or_doubles_nothing(stack):
    with _alerting_worker_with_frozen(stack, lambda s: s.redis_server._server.pid, "st-0") as worker:
        run(_send(stack.settings.bootstrap_servers, "telemetry.station", [_breach(f"st-{i}", 0) for i in range(1, 6)]))
        health = wait_until(
            lambda: (h := _health(worker.port))["status"] == "degraded" and h, timeout=60, what="degraded health"
        )
        assert "redis" in health["problems"]
        time.sleep(3)
    wait_until(lambda: len({a["entity"] for a in stack.stream_alerts()}) == 6, timeout=90, what="every alert")
    wait_until(lambda: _health(worker.port)["status"] == "ok", timeout=60, what="health back to ok")
    opened = [a["entity"] for a in stack.stream_alerts() if a["event"] == "opened"]
    assert sorted(opened) == [f"st-{i}" for i in range(6)] and worker.alive()


async def _produce(bootstrap: str, topic: str, records: list[dict], pause_s: float = 0.0) -> None:
    """Records keyed by entity, in per-partition batches, as the simulator and integrators' producers send them;
    ``pause_s`` after every 100 records spreads them over time."""
    import asyncio

    producer = BatchingProducer(bootstrap, batch_records=50, linger_ms=5)
    await producer.start()
    try:
        for i, r in enumerate(records):
            await producer.send(topic, r["entity"], r)
            if pause_s and i % 100 == 99:
                await producer.flush()
                await asyncio.sleep(pause_s)
    finally:
        await producer.stop()


def test_worker_killed_under_load_partner_takes_over_every_alert_once_state_continues(stack):
    import threading

    from tests.test_worker_integration import _checkpointed

    def _checkpointed_count(stack, source: str, entity: str) -> int:  # released to the state, or held for order
        return sum(_checkpointed(stack, source, entity)[:2])

    first, second = stack.start_worker(), stack.start_worker()
    wait_until(lambda: len(stack.metrics()) == 2, what="two workers")
    counters = [f"counter-{i}" for i in range(8)]
    stations = [f"st-{i:03d}" for i in range(120)]
    bootstrap = stack.settings.bootstrap_servers

    def load(lo: int, hi: int, pause_s: float = 0.0) -> None:
        run(
            _produce(
                bootstrap,
                "telemetry.metric",
                [{"entity": c, "ts": TS + 60 * k, "value": float(k)} for k in range(lo, hi) for c in counters],
                pause_s,
            )
        )
        run(
            _produce(
                bootstrap,
                "telemetry.station",
                [{"entity": s, "ts": TS, "pm25": 150.0} for s in stations[lo // 5 : hi // 5]],
            )
        )

    load(0, 300)
    wait_until(
        lambda: sum(_checkpointed_count(stack, "metric", c) for c in counters) == 8 * 300,
        timeout=90,
        what="the first half checkpointed",
    )
    feeder = threading.Thread(target=load, args=(300, 600, 0.1))  # 24 pauses: about 2.5 s of sending
    feeder.start()
    time.sleep(1.0)
    assert feeder.is_alive()
    first.kill()  # kill -9 in the middle of the run
    feeder.join()

    # The partner takes the dead worker's partitions over, restores their state and carries on.
    wait_until(
        lambda: all(_checkpointed_count(stack, "metric", c) == 600 for c in counters),
        timeout=120,
        what="every counter at 600 records: none lost, none counted twice",
    )
    opened = wait_until(
        lambda: (
            (o := [a for a in stack.stream_alerts() if a["event"] == "opened" and a["kind"] == "pm25_over_limit"])
            and len(o) >= len(stations)
            and o
        ),
        timeout=60,
        what="an alert for every station",
    )
    time.sleep(2.0)
    opened = [a for a in stack.stream_alerts() if a["event"] == "opened" and a["kind"] == "pm25_over_limit"]
    assert sorted(a["entity"] for a in opened) == stations  # exactly once each
    counts = {
        k.decode(): int(orjson.loads(stack.redis.hget(k, "doc"))["count"])
        for k in stack.redis.scan_iter("warden:alert:*")
        if k.count(b":") == 2
    }
    assert set(counts.values()) == {1}  # redelivered signals merged once
    assert second.alive()

    restarted = stack.start_worker()  # start it again: both share the work
    wait_until(lambda: len(stack.metrics()) >= 2, what="the restarted worker reporting")
    load(600, 650)
    wait_until(
        lambda: all(_checkpointed_count(stack, "metric", c) == 650 for c in counters),
        timeout=90,
        what="counting on with two workers again",
    )
    assert restarted.alive() and second.alive()


def test_backlog_faster_than_the_worker_becomes_lag_not_memory(stack):
    import psutil

    entities = [f"m-{i:03d}" for i in range(200)]
    total = 300_000
    run(
        _produce(
            stack.settings.bootstrap_servers,
            "telemetry.metric",
            [{"entity": entities[i % 200], "ts": TS + 10 * (i // 200), "value": float(i % 97)} for i in range(total)],
        )
    )
    worker = stack.start_worker()
    proc = psutil.Process(worker.proc.pid)
    wait_until(lambda: _reachable(worker.port), what="the worker's web server")
    baseline = proc.memory_info().rss  # started: code loaded, consuming begins
    lags, peak = [], baseline
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            text = _metrics(worker.port)
        except OSError:
            time.sleep(0.2)
            continue
        lag = sum(
            float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("warden_lag_messages{")
        )
        processed = sum(m["records"].get("metric", 0) for m in stack.metrics())
        lags.append(lag)
        peak = max(peak, proc.memory_info().rss)
        if processed >= total and lag == 0:
            break
        time.sleep(0.2)
    assert processed == total and lags[-1] == 0
    assert max(lags) > 1_000  # the backlog (6,000 messages of 50) showed as lag (the worker takes it in seconds) ...
    print(
        f"backlog {total:,} records: peak lag {max(lags):,.0f} messages, RSS growth {(peak - baseline) / 2**20:.0f} MiB"
    )
    assert (
        peak - baseline < 100 * 2**20
    )  # ... and was not pulled into memory (measured: ~50 MiB, the metric state included)
