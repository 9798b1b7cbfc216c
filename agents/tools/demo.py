"""The demo: embedded stack, a worker, the simulated city and a live terminal summary."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections import deque
from pathlib import Path

import orjson
from rich.console import Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table

from agents.alerts.store import ALERT_STREAM
from agents.embedded.ports import free_port
from agents.embedded.stack import child_env, embedded_stack
from agents.present.alert_view import AlertView
from agents.worker.metrics import read_all, totals
from settings import Settings
from state.redis_client import redis_client
from state.refdata import store as refstore
from state.refdata.reference import RefData
from streams.kafka.producer import BatchingProducer
from streams.kafka.topics import ensure_topics, warden_topics
from streams.registry import Registry
from streams.sim.city import write_city
from streams.sim.scenario import KINDS, Scenario
from streams.sim.simulator import CitySimulator, pump

SEVERITY_STYLE = {"info": "cyan", "warning": "yellow", "major": "bold red", "critical": "bold white on red"}


class Summary:
    """Turns worker metrics and the alert stream into the live panel."""

    def __init__(self, view: AlertView, language: str, console_url: str = "", token: str = "") -> None:
        self.history: deque[tuple[float, dict[str, int]]] = deque(maxlen=6)
        self.view, self.language = view, language
        self.console_url, self.token = console_url, token
        self.scenario: Scenario | None = None

    def render(self, metrics: list[dict], alerts: list[dict], sent: int, sim_ts: float) -> Group:
        records, dead = totals(metrics)
        now = time.monotonic()
        self.history.append((now, records))
        then, old = self.history[0]
        span = max(now - then, 1e-9)
        rates = Table(title="records per second", expand=True)
        for col in ("source", "records/s", "total"):
            rates.add_column(col, justify="right" if col != "source" else "left")
        for source in sorted(records):
            rate = (records[source] - old.get(source, 0)) / span if span > 0.5 else 0.0
            rates.add_row(source, f"{rate:,.0f}", f"{records[source]:,}")
        raised = sum(m["alerts"].get("opened", 0) for m in metrics)
        header = (
            f"workers {len(metrics)}   sent {sent:,}   simulated clock "
            f"{self.view.clock.text(sim_ts)} ({self.view.clock.offset(sim_ts)})   "
            f"dead letters {dead:,}   alerts {raised:,}\n"
            f"web console {self.console_url}   leaders' cockpit {self.console_url}cockpit   (token {self.token})\n"
            f"incidents injected {len(self.scenario.started) if self.scenario else 0} "
            f"(ground truth in .warden/ground-truth.ndjson; the detection report prints on Ctrl-C)"
        )
        latest = Table(title="latest alert changes", expand=True)
        for col in ("seen", "event", "severity", "kind", "entity", "count", "town", "department"):
            latest.add_column(col, overflow="ellipsis", no_wrap=True)
        for a in alerts:
            area, shown = a.get("area") or {}, self.view.display(a, self.language)
            latest.add_row(
                shown["last_seen"][11:],
                a["event"],
                shown["severity"],
                shown["title"],
                a["entity"],
                str(a["count"]),
                area.get("town", ""),
                ", ".join(shown["departments"]),
                style=SEVERITY_STYLE.get(a["severity"], ""),
            )
        return Group(Panel(header, title="Warden - city operations demo (Ctrl-C stops)"), rates, latest)


def run_demo(settings: Settings, registry: Registry, *, entities: int, speed: float) -> None:
    """Run until Ctrl-C, then stop the simulator, the worker and the embedded stack."""
    token = settings.api_token.get_secret_value() if settings.api_token else secrets.token_urlsafe(12)
    port = settings.web_port if _port_free(settings.web_host, settings.web_port) else free_port()
    archive = settings.data_dir / "demo-archive"  # the demo's own replay logs, fresh each run
    shutil.rmtree(archive, ignore_errors=True)
    truth = settings.data_dir / "ground-truth.ndjson"
    truth.parent.mkdir(parents=True, exist_ok=True)
    truth.write_bytes(b"")
    with embedded_stack(settings) as live:
        asyncio.run(ensure_topics(live, warden_topics(live, registry)))
        log = open(live.data_dir / "worker.log", "wb")
        worker = subprocess.Popen(
            [sys.executable, "-m", "agents.cli", "worker"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={
                **os.environ,
                **child_env(live),
                "WARDEN_API_TOKEN": token,
                "WARDEN_WEB_PORT": str(port),
                "WARDEN_ARCHIVE_DIR": str(archive),
            },
        )
        # A token of the user's own is a secret and is not shown; the demo's fresh one is its login, shown once.
        summary = Summary(
            AlertView(settings.timezone, registry),
            settings.language,
            f"http://{settings.web_host}:{port}/",
            "your WARDEN_API_TOKEN" if settings.api_token else token,
        )
        try:
            asyncio.run(_demo_loop(live, registry, entities, speed, summary, truth))
        except KeyboardInterrupt:
            pass
        finally:
            worker.terminate()
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
            log.close()
    if truth.stat().st_size:  # the detection report over what the demo ran
        from agents.cli.data import incident_report

        incident_report([truth], archive=archive, refdata=settings.data_dir / "city")


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


async def _demo_loop(
    settings: Settings, registry: Registry, entities: int, speed: float, summary: Summary, truth: Path
) -> None:
    sim = CitySimulator(entities=entities, seed=42, start_ts=time.time() - 2 * 3600)
    redis = redis_client(settings)
    write_city(settings.data_dir / "city", sim, seed=42)
    ref = RefData.load_dir(settings.data_dir / "city")
    await refstore.save(redis, ref)
    # Group renting shows after three whole days of a dwelling's use: longer than a demo runs (`warden simulate
    # --incidents` over days injects it, and tests/test_scenario.py detects it).
    kinds = tuple(k for k in KINDS if k != "group_renting")
    scenario = Scenario(sim, ref, seed=42, first_at=sim.ts + 600, every_s=600, truth=truth, kinds=kinds)
    summary.scenario = scenario
    producer = BatchingProducer.for_sources(settings, registry, "warden-simulator")
    await producer.start()
    topics = {name: s.topic for name, s in registry.items()}
    feeder = asyncio.create_task(pump(sim, producer, topics, speed=speed, not_after_now=True, ticks=scenario.ticks()))
    url = summary.console_url
    print(f"web console: {url}  cockpit: {url}cockpit  token: {summary.token}", flush=True)
    try:
        with Live(refresh_per_second=2, screen=False) as view:
            while not feeder.done():
                metrics = await read_all(redis)
                latest = [orjson.loads(f[b"alert"]) for _, f in await redis.xrevrange(ALERT_STREAM, count=12)]
                view.update(summary.render(metrics, latest, producer.sent_records, sim.ts))
                await asyncio.sleep(1.0)
            feeder.result()
    finally:
        feeder.cancel()
        await producer.stop()
        await redis.aclose()
