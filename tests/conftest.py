"""Shared fixtures: a fresh embedded broker + Redis per test, and worker processes against it."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import orjson
import pytest
import redis

from agents.embedded.broker import EmbeddedBroker
from agents.embedded.ports import free_port
from agents.embedded.redis_server import EmbeddedRedis
from settings import Settings
from streams.sim.city import write_city
from streams.sim.simulator import CitySimulator

ROOT = Path(__file__).resolve().parent.parent
TEST_SOURCES = ROOT / "tests" / "data" / "sources"  # the shipped sources and the tests' instant station


class Stack:
    """An embedded broker and Redis, with helpers to run workers and read results."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.broker = EmbeddedBroker(log_path=tmp / "broker.log").start()
        self.redis_server = EmbeddedRedis().start()
        self.redis = redis.Redis.from_url(self.redis_server.url)
        self.settings = Settings(
            broker=f"kafka://{self.broker.bootstrap_servers}",
            redis_url=self.redis_server.url,
            embedded=True,
            partitions=4,
            checkpoint_interval_s=0.5,
            sources_dirs=[TEST_SOURCES],
            allowed_lateness_s=5,
        )
        self.workers: list[WorkerProcess] = []

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("WARDEN_")}
        env.update(
            {
                "WARDEN_BROKER": self.settings.broker,
                "WARDEN_REDIS_URL": self.settings.redis_url,
                "WARDEN_EMBEDDED": "true",
                "WARDEN_PARTITIONS": "4",
                "WARDEN_CHECKPOINT_INTERVAL_S": "0.5",
                "WARDEN_SOURCES_DIRS": str(TEST_SOURCES),
                "WARDEN_DATA_DIR": str(self.tmp / "data"),
                "WARDEN_WEB_PORT": str(free_port()),
                # records wait at most 5 s for event order (the shipped sources wait up to 10 min, live)
                "WARDEN_ALLOWED_LATENESS_S": str(self.settings.allowed_lateness_s),
                **extra,
            }
        )
        return env

    def start_worker(self, **extra: str) -> WorkerProcess:
        w = WorkerProcess(self.env(**extra), self.tmp / f"worker-{len(self.workers)}.log")
        self.workers.append(w)
        return w

    def metrics(self) -> list[dict]:
        return [orjson.loads(self.redis.get(k)) for k in self.redis.scan_iter("warden:metrics:*")]

    def stream_alerts(self) -> list[dict]:
        return [orjson.loads(f[b"alert"]) for _, f in self.redis.xrange("warden:alerts:stream")]

    def close(self) -> None:
        for w in self.workers:
            w.stop()
        self.redis.close()
        self.redis_server.stop()
        self.broker.stop()


class WorkerProcess:
    """``warden worker`` in a subprocess."""

    def __init__(self, env: dict[str, str], log: Path):
        self.log = log
        self.port = int(env["WARDEN_WEB_PORT"])
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "agents.cli", "worker"],
            cwd=ROOT,
            env=env,
            stdout=open(log, "wb"),
            stderr=subprocess.STDOUT,
        )

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def ready(self) -> bool:
        """Its /health answers (it has started its agents)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=5) as resp:
                return resp.status == 200
        except OSError:
            return False


def wait_until(predicate, timeout: float = 60.0, every: float = 0.2, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def run(coro):
    return asyncio.run(coro)


@pytest.fixture
def stack(tmp_path):
    s = Stack(tmp_path)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture(scope="module")
def city(tmp_path_factory) -> Path:
    """A small simulated city's reference-data folder."""
    folder = tmp_path_factory.mktemp("city")
    write_city(folder, CitySimulator(entities=300, seed=3), seed=3)
    return folder


@pytest.fixture
def redis_url():
    """An embedded Redis of the test's own."""
    server = EmbeddedRedis().start()
    try:
        yield server.url
    finally:
        server.stop()
