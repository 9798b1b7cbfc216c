"""Worker processes for the benches: started on the bench's broker and Redis, waited on until they have
processed a backlog."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from rich.console import Console
from rich.progress import Progress

from agents.embedded.ports import free_port
from agents.embedded.stack import child_env
from agents.worker.metrics import read_all
from settings import Settings

console = Console(stderr=True)


def start_worker(settings: Settings, archive: Path, name: str = "bench-worker", **env: str) -> subprocess.Popen:
    """One ``warden worker`` on the bench's broker and Redis; ``env``: more WARDEN_* variables."""
    env = {
        **os.environ,
        **child_env(settings),
        "WARDEN_WEB_PORT": str(free_port()),
        "WARDEN_ARCHIVE_DIR": str(archive),
        **env,
    }
    log = open(settings.data_dir / f"{name}.log", "wb")
    return subprocess.Popen(
        [sys.executable, "-m", "agents.cli", "worker", "--loglevel", "warn"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


async def wait_processed(
    redis: aioredis.Redis, records: int, workers: list[subprocess.Popen], on_poll=None
) -> list[dict]:
    """Every worker's snapshot once together they have processed ``records``; ``on_poll(done)`` at each look."""
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task(f"{len(workers)} worker(s)", total=records)
        while True:
            if any(w.poll() is not None for w in workers):
                raise RuntimeError("a bench worker exited; see its log in the data folder (.warden)")
            snaps = await read_all(redis)
            done = sum(sum(s["records"].values()) for s in snaps)
            progress.update(task, completed=done)
            if on_poll is not None:
                on_poll(done)
            if snaps and done >= records:
                return snaps
            await asyncio.sleep(0.25)


def with_db(url: str, db: int) -> str:
    """The same Redis, another database.

    >>> with_db("redis://:secret@127.0.0.1:6390/0", 3)
    'redis://:secret@127.0.0.1:6390/3'
    """
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{db}"))
