"""``warden bench --workers 1,2,4,8``: how throughput grows with the workers of one consumer group.

The city's backlog is written once and the raw consume ceiling measured once. Then, for each count, that
many workers start as a new consumer group (an app id of their own, so offsets and checkpoints of their own)
over a Redis database of their own (so every step raises the same alerts into an empty store), read the
whole backlog, and stop. A step's records/s is the backlog over the span from the group's first record
to its last, so the rebalances as its workers join count against it; its start skew (the last worker's first
record after the group's first) and a worker's own rate (median over the workers, each over its own span)
tell that cost apart from the work. Beside them come the CPU cores each part of the pipeline used
while it ran (the workers, the broker, Redis) and the share of the machine's cores that were busy: a part
near one whole core (Redis is single-threaded) or a machine near all its cores is where growth stops.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import tempfile
import time
from operator import itemgetter
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import orjson
import psutil
from rich.table import Table

from agents.alerts.store import AlertStore
from agents.embedded.stack import embedded_stack
from agents.tools.bench import console, raw_ceiling, send_backlog
from agents.tools.bench_workers import start_worker, wait_processed, with_db
from settings import Settings
from state.redis_client import redis_client
from streams.registry import Registry

MAX_STEPS = 15  # Redis databases 1..15, one a step (0 is left to the bench's own use)


def worker_counts(text: str, partitions: int) -> list[int]:
    """The counts of ``--workers``, checked against the partitions.

    >>> worker_counts("1,2,4", 8)
    [1, 2, 4]
    >>> worker_counts("1,12", 8)
    Traceback (most recent call last):
    ...
    ValueError: 12 workers for 8 partitions (WARDEN_PARTITIONS): the workers beyond 8 would idle
    """
    try:
        counts = [int(c) for c in text.split(",")]
    except ValueError:
        raise ValueError(f"{text!r}: worker counts separated by commas, e.g. 1,2,4,8") from None
    if not 1 <= len(counts) <= MAX_STEPS or min(counts) < 1:
        raise ValueError(f"between 1 and {MAX_STEPS} counts, each at least 1")
    if max(counts) > partitions:
        raise ValueError(
            f"{max(counts)} workers for {partitions} partitions (WARDEN_PARTITIONS): "
            f"the workers beyond {partitions} would idle"
        )
    return counts


def run_scale(
    settings: Settings,
    registry: Registry,
    *,
    counts: list[int],
    records: int,
    entities: int,
    as_json: bool,
    plot: Path | None = None,
) -> dict:
    """Measure each worker count in ``counts`` over one backlog; print the table (and ``plot`` it);
    returns the figures."""
    with embedded_stack(settings) as live:
        result = asyncio.run(_scale(live, registry, counts, records, entities))
    if plot is not None:
        plot_scale(plot, result)
    table = Table(
        title=f"warden bench --workers: {records:,} records, {entities:,} entities, "
        f"{result['cpu_count']} cores; raw ceiling {result['raw_records_per_s']:,.0f} rec/s"
    )
    for column in (
        "workers",
        "records/s",
        "speed-up",
        "a worker's own rec/s",
        "span s",
        "start skew s",
        "worker cores",
        "broker cores",
        "redis cores",
        "machine busy",
        "alerts",
    ):
        table.add_column(column, justify="right")
    for step in result["steps"]:
        table.add_row(
            str(step["workers"]),
            f"{step['records_per_s']:,.0f}",
            f"{step['speedup']:.2f}x",
            f"{step['worker_median_records_per_s']:,.0f}",
            f"{step['span_s']:.1f}",
            f"{step['start_skew_s']:.1f}",
            *(_cores(step["cores"][part]) for part in ("workers", "broker", "redis")),
            f"{step['machine_busy']:.0%}",
            f"{step['alerts']:,} ({step['alerts_digest'][:6]})",
        )
    console.print(table)
    if as_json:
        print(orjson.dumps(result).decode())
    return result


def plot_scale(path: Path, result: dict) -> None:
    """A PNG: records/s against workers beside linear growth from the first step, and the cores each part used."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = result["steps"]
    workers = [s["workers"] for s in steps]
    fig, (rate_ax, cores_ax) = plt.subplots(1, 2, figsize=(11, 4))
    rate_ax.plot(workers, [s["records_per_s"] for s in steps], "o-", label="measured")
    per_worker = steps[0]["records_per_s"] / steps[0]["workers"]
    rate_ax.plot(workers, [per_worker * w for w in workers], "--", color="0.5", label="linear from the first step")
    rate_ax.set(xlabel="workers", ylabel="records/s", xticks=workers, title="throughput")
    rate_ax.legend(fontsize=8)
    bottom = np.zeros(len(steps))
    for part in ("workers", "broker", "redis"):
        used = np.array([s["cores"][part] or 0.0 for s in steps])
        cores_ax.bar([str(w) for w in workers], used, bottom=bottom, label=part)
        bottom += used
    cores_ax.axhline(result["cpu_count"], color="0.5", ls="--", lw=0.8, label=f"{result['cpu_count']} cores")
    cores_ax.set(xlabel="workers", ylabel="CPU cores used", title="CPU while the backlog was read")
    cores_ax.legend(fontsize=8)
    fig.suptitle(f"warden bench --workers: {result['records']:,} records, {result['entities']:,} entities", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


async def _scale(settings: Settings, registry: Registry, counts: list[int], records: int, entities: int) -> dict:
    _, producer, _ = await send_backlog(settings, registry, records, entities)
    await producer.stop()
    raw_rates = await raw_ceiling(settings, registry, records)
    steps = []
    for db, count in enumerate(counts, start=1):
        steps.append(await _step(settings, count, db, records))
        # Against one worker; when the first step has more, its rate per worker stands for one.
        steps[-1]["speedup"] = round(steps[-1]["records_per_s"] / steps[0]["records_per_s"] * counts[0], 2)
    return {
        "records": records,
        "entities": entities,
        "cpu_count": os.cpu_count(),
        "raw_records_per_s": round(float(np.median(raw_rates)), 1),
        "raw_passes_per_s": [round(r, 1) for r in raw_rates],
        "steps": steps,
    }


async def _step(settings: Settings, count: int, db: int, records: int) -> dict:
    """``count`` workers, a new consumer group, Redis database ``db``: the whole backlog once."""
    step = settings.model_copy(update={"redis_url": with_db(settings.redis_url, db)})
    redis = redis_client(step)
    if await redis.dbsize():
        await redis.aclose()
        raise RuntimeError(
            f"Redis database {db} is not empty: the scale bench uses databases 1..{MAX_STEPS} "
            "and clears each one it used, so it needs them empty"
        )
    archive = Path(tempfile.mkdtemp(prefix="warden-bench-archive-"))
    workers = [
        start_worker(
            step, archive / str(i), name=f"bench-worker-{count}w-{i}", WARDEN_APP_ID=f"{settings.app_id}-bench-{count}w"
        )
        for i in range(count)
    ]
    meter = _CpuMeter(settings, workers)
    try:
        snaps = await wait_processed(redis, records, workers, on_poll=lambda _done: meter.read())
        await asyncio.sleep(0.3)  # a reading after the last record (snapshots are published each second)
        meter.read()
        alerts, digest = await _stored_alerts(AlertStore(redis, step))
    finally:
        for w in workers:
            w.terminate()
        for w in workers:
            w.wait(30)
        await redis.flushdb()
        await redis.aclose()
        shutil.rmtree(archive, ignore_errors=True)
    busy_workers = [s for s in snaps if s["first_record_at"]]
    starts = [s["first_record_at"] for s in busy_workers]
    first, last = min(starts), max(s["last_record_at"] for s in busy_workers)
    own_rates = [
        sum(s["records"].values()) / max(s["last_record_at"] - s["first_record_at"], 1e-9) for s in busy_workers
    ]
    cores, busy = meter.between(first, last)
    return {
        "workers": count,
        "records_per_s": round(records / max(last - first, 1e-9), 1),
        "span_s": round(last - first, 2),
        "start_skew_s": round(max(starts) - first, 2),
        "worker_median_records_per_s": round(float(np.median(own_rates)), 1),
        "workers_reporting": len(snaps),
        "cores": cores,
        "machine_busy": busy,
        "signals": sum(sum(s["signals"].values()) for s in snaps),
        "alert_changes": sum(sum(s["alerts"].values()) for s in snaps),
        "alerts": alerts,
        "alerts_digest": digest,
    }


WALL_CLOCK = ("deadlines", "escalation")  # an alert's accountability: when it was raised here, not what


async def _stored_alerts(store: AlertStore) -> tuple[int, str]:
    """How many alerts the store holds, and a digest of them (the same records give the same one).

    The changes each worker counted are not compared: one alert change stands for however many of a
    situation's signals fell in one batch, and where batches end depends on timing. Nor are the deadlines
    (and escalations) that follow from when the alert was raised here, by the wall clock.
    """
    alerts = [{k: v for k, v in a.items() if k not in WALL_CLOCK} for a in await store.list(limit=2**31)]
    digest = hashlib.sha256(b"\n".join(sorted(orjson.dumps(a, option=orjson.OPT_SORT_KEYS) for a in alerts)))
    return len(alerts), digest.hexdigest()[:16]


def _cores(value: float | None) -> str:
    return "elsewhere" if value is None else f"{value:.2f}"


class _CpuMeter:
    """CPU cores used by the workers, the broker and Redis (where they run on this machine) between readings."""

    def __init__(self, settings: Settings, workers: list):
        listeners = {
            c.laddr.port: c.pid for c in psutil.net_connections("tcp") if c.status == psutil.CONN_LISTEN and c.pid
        }
        self.parts = {"workers": [psutil.Process(w.pid) for w in workers]}
        for part, url in (("broker", settings.broker), ("redis", settings.redis_url)):
            port = urlsplit(url.split(",")[0]).port  # the first of several bootstrap servers
            if port in listeners:
                self.parts[part] = [psutil.Process(listeners[port])]
        self.readings: list[tuple[float, dict[str, float], float]] = []

    def read(self) -> None:
        """Note the time, each part's CPU seconds so far and the machine's idle seconds so far."""
        seconds = {part: sum(_cpu_seconds(p) for p in procs) for part, procs in self.parts.items()}
        times = psutil.cpu_times()
        self.readings.append((time.time(), seconds, times.idle + getattr(times, "iowait", 0.0)))

    def between(self, start: float, end: float) -> tuple[dict[str, float | None], float]:
        """Cores used by each part from the last reading at or before ``start`` (wall clock) to the first
        at or after ``end`` (None: not on this machine), and the share of the machine's cores that were busy."""
        t0, s0, idle0 = max((r for r in self.readings if r[0] <= start), default=self.readings[0], key=itemgetter(0))
        t1, s1, idle1 = min((r for r in self.readings if r[0] >= end), default=self.readings[-1], key=itemgetter(0))
        wall = max(t1 - t0, 1e-9)
        idle_share = (idle1 - idle0) / (wall * (os.cpu_count() or 1))
        cores = {
            part: round((s1[part] - s0[part]) / wall, 2) if part in s0 else None
            for part in ("workers", "broker", "redis")
        }
        return cores, round(max(0.0, 1.0 - idle_share), 3)


def _cpu_seconds(proc: psutil.Process) -> float:
    try:
        t = proc.cpu_times()
    except psutil.Error:
        return 0.0
    return t.user + t.system
