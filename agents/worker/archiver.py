"""The archiver: replay logs for each owned partition, staff labels beside them, retention.

Records are archived by the partition runner that processed them (the archive
is written from the batch already in memory instead of consuming every topic a
second time); this module opens those per-partition writers, copies staff
marks from Redis into ``labels/staff.ndjson`` and deletes segments past
retention.
"""

from __future__ import annotations

import asyncio
import logging
import time

import orjson
import redis.asyncio as aioredis

from agents.alerts.store import LABEL_STREAM
from replay.archive import PartitionArchive, append_labels, prune
from settings import Settings
from streams.privacy import mask_alert

log = logging.getLogger("warden.archiver")
CURSOR = "warden:archive:labels:cursor"
LOCK = "warden:archive:labels:lock"


class Archiver:
    """Opens partition archives and keeps the archive's labels and size in order."""

    def __init__(self, settings: Settings, redis: aioredis.Redis):
        self.settings, self.redis = settings, redis
        self.root = settings.archive_path

    def partition(self, source: str, partition: int, run: str | None) -> PartitionArchive | None:
        """The writer of a partition's run (None: a new run), or None when archiving is off."""
        if not self.settings.archive_enabled:
            return None
        return PartitionArchive(self.root, source, partition, self.settings.archive_zstd_level, run=run)

    async def export_labels(self) -> int:
        """Copy staff marks made since the last export to the archive; one worker at a time."""
        if not self.settings.archive_enabled or not await self.redis.set(LOCK, b"1", nx=True, ex=60):
            return 0
        try:
            cursor = (await self.redis.get(CURSOR) or b"0-0").decode()
            got = await self.redis.xread({LABEL_STREAM: cursor}, count=10_000)
            entries = [(i.decode(), orjson.loads(f[b"label"])) for _, batch in got or [] for i, f in batch]
            if not entries:
                return 0
            labels = [mask_alert({"type": "staff", "stream_id": i, **label}) for i, label in entries]  # an export
            await asyncio.to_thread(append_labels, self.root, "staff", labels)
            await self.redis.set(CURSOR, entries[-1][0])
            return len(entries)
        finally:
            await self.redis.delete(LOCK)

    async def prune(self) -> int:
        """Delete segments past the archive's retention (age, then size)."""
        if not self.settings.archive_enabled or not self.root.is_dir():
            return 0
        s = self.settings
        gone = await asyncio.to_thread(prune, self.root, time.time(), s.archive_retention_s, s.archive_max_bytes)
        if gone:
            log.info("archive retention deleted %d segment(s), oldest %s", len(gone), gone[0].name)
        return len(gone)
