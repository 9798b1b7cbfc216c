"""Faults around the worker: Redis going away for a while (embedded broker and Redis, real processes)."""

from __future__ import annotations

import time
import urllib.request

import orjson
import pytest

from state.redis_server import EmbeddedRedis
from tests.conftest import run, wait_until
from tests.test_worker_integration import _send

pytestmark = pytest.mark.integration
TS = 1_767_225_600


def _health(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as resp:
        return orjson.loads(resp.read())


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
    run(_send(stack.settings.bootstrap_servers, "telemetry.air", [_breach("st-before", 0)]))
    wait_until(lambda: stack.stream_alerts(), what="the first alert")
    stack.redis.save()
    stack.redis_server.stop()

    stations = [f"st-{i}" for i in range(5)]
    run(_send(stack.settings.bootstrap_servers, "telemetry.air", [_breach(s, 1) for s in stations]))
    health = wait_until(lambda: (h := _health(worker.port))["status"] == "degraded" and h, timeout=30,
                        what="the worker to report Redis as unavailable")
    assert "redis" in health["problems"]
    assert 'warden_dependency_up{dependency="redis"} 0.0' in _metrics(worker.port)
    time.sleep(8)                                   # an outage longer than a few retries and timers
    assert worker.alive()
    assert "redis" in worker.log.read_text().lower()

    stack.redis_server = EmbeddedRedis(data_dir=tmp_path / "redis", port=stack.redis_server.port).start()
    wait_until(lambda: {a["entity"] for a in stack.stream_alerts()} >= {"st-before", *stations}, timeout=60,
               what="the alerts held back during the outage")
    wait_until(lambda: _health(worker.port)["status"] == "ok", what="health back to ok")
    text = _metrics(worker.port)
    assert 'warden_dependency_up{dependency="redis"} 1.0' in text
    assert 'warden_records_total{source="air"} 6.0' in text and "warden_processing_latency_seconds_bucket" in text
    assert 'warden_alert_changes_total{event="opened"}' in text and "warden_lag_records{" in text
    opened = [a for a in stack.stream_alerts() if a["event"] == "opened"]
    assert len({a["id"] for a in opened}) == len(opened)          # each alert exactly once
    assert sorted(a["entity"] for a in opened if a["kind"] == "pm25_over_limit") == sorted(["st-before", *stations])
    assert "redis available again" in worker.log.read_text().lower()
