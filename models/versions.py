"""Model versions: files on disk, the registry and the promoted version per source in Redis.

A version is a folder ``<models dir>/<source>/<version>/`` with ``model.joblib``
(the fitted batch model) and ``meta.json`` (source, data period, parameters,
metrics, the model file's SHA-256). Redis keeps every version's metadata, the
active version per source and each source's promotion history; promotion and
rollback are announced on a pub/sub channel so running workers swap at once
(and they poll too, so a missed message costs seconds, not the swap).

Keys: ``warden:models:versions`` (hash version -> meta), ``warden:models:active``
(hash source -> version), ``warden:models:history:<source>`` (list, newest
last), channel ``warden:models:promoted``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import orjson
import redis.asyncio as aioredis

from models.signal import BUILTIN

if TYPE_CHECKING:  # scikit-learn (~100 MB) is imported by a worker only when it loads a trained version
    from models.batch.isolation import WindowOutlierModel

VERSIONS = "warden:models:versions"
ACTIVE = "warden:models:active"
HISTORY = "warden:models:history:{}"
CHANNEL = "warden:models:promoted"


class VersionError(Exception):
    """An unknown, missing or damaged model version."""


@dataclass(slots=True)
class ModelVersion:
    """A loaded model version: its metadata and fitted window model."""

    meta: dict
    window_model: WindowOutlierModel

    @property
    def version(self) -> str:
        return self.meta["version"]

    @property
    def source(self) -> str:
        return self.meta["source"]


def new_version_id(source: str, model_bytes: bytes, when: datetime | None = None) -> str:
    """``<source>-<UTC time>-<hash>``: sortable by creation, unique by content."""
    stamp = (when or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S")
    return f"{source}-{stamp}-{hashlib.sha256(model_bytes).hexdigest()[:8]}"


def save(root: Path, source: str, model: WindowOutlierModel, meta: dict) -> dict:
    """Write a new version's files; returns its full metadata (with ``version``, ``sha256``, ``path``)."""
    tmp = root / source / ".incoming.joblib"
    tmp.parent.mkdir(parents=True, exist_ok=True)
    import joblib  # here and in load(): a worker with no trained version never imports it

    joblib.dump(model, tmp)
    blob = tmp.read_bytes()
    version = new_version_id(source, blob)
    folder = root / source / version
    folder.mkdir(parents=True)
    tmp.replace(folder / "model.joblib")
    meta = {
        **meta,
        "version": version,
        "source": source,
        "created": datetime.now(UTC).isoformat(),
        "sha256": hashlib.sha256(blob).hexdigest(),
        "path": str(folder.resolve()),
    }
    (folder / "meta.json").write_bytes(orjson.dumps(meta, option=orjson.OPT_INDENT_2))
    return meta


def load(meta: dict) -> ModelVersion:
    """The version's model from disk, checked against the SHA-256 it was registered with."""
    path = Path(meta["path"]) / "model.joblib"
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise VersionError(f"model version {meta['version']}: cannot read {path} ({exc.strerror})") from None
    if hashlib.sha256(blob).hexdigest() != meta["sha256"]:
        raise VersionError(f"model version {meta['version']}: {path} does not match its registered SHA-256")
    import joblib

    from models.batch.isolation import WindowOutlierModel

    model = joblib.load(path)
    if not isinstance(model, WindowOutlierModel):
        raise VersionError(f"model version {meta['version']}: {path} holds a {type(model).__name__}")
    return ModelVersion(meta, model)


async def register(redis: aioredis.Redis, meta: dict) -> None:
    await redis.hset(VERSIONS, meta["version"], orjson.dumps(meta))


async def get(redis: aioredis.Redis, version: str) -> dict:
    raw = await redis.hget(VERSIONS, version)
    if raw is None:
        raise VersionError(f"unknown model version {version!r} (`warden models list` shows them)")
    return orjson.loads(raw)


async def listing(redis: aioredis.Redis) -> list[dict]:
    """Every registered version, oldest first, with ``active`` set on the promoted ones."""
    active = {v.decode() for v in (await redis.hgetall(ACTIVE)).values()}
    metas = [orjson.loads(raw) for raw in (await redis.hgetall(VERSIONS)).values()]
    return sorted(({**m, "active": m["version"] in active} for m in metas), key=lambda m: m["created"])


async def active(redis: aioredis.Redis) -> dict[str, str]:
    """source -> promoted version."""
    return {k.decode(): v.decode() for k, v in (await redis.hgetall(ACTIVE)).items()}


async def promote(redis: aioredis.Redis, version: str) -> dict:
    """Make ``version`` its source's active version and tell the workers; returns its metadata."""
    meta = await get(redis, version)
    load(meta)  # refuse what a worker could not load
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hset(ACTIVE, meta["source"], version)
        pipe.rpush(HISTORY.format(meta["source"]), version)
        pipe.publish(CHANNEL, orjson.dumps({"source": meta["source"], "version": version}))
        await pipe.execute()
    return meta


async def rollback(redis: aioredis.Redis, source: str) -> str:
    """Back to the version promoted before the current one (or the built-in detectors); returns it."""
    history = HISTORY.format(source)
    current = await redis.hget(ACTIVE, source)
    if current is None:
        raise VersionError(f"source {source!r} runs the built-in detectors: nothing to roll back")
    async with redis.pipeline(transaction=True) as pipe:
        pipe.rpop(history)
        pipe.lindex(history, -1)
        _, previous = await pipe.execute()
    async with redis.pipeline(transaction=True) as pipe:
        if previous is None:
            pipe.hdel(ACTIVE, source)
        else:
            pipe.hset(ACTIVE, source, previous)
        back = previous.decode() if previous else BUILTIN
        pipe.publish(CHANNEL, orjson.dumps({"source": source, "version": back}))
        await pipe.execute()
    return back


VERSION_PATTERN = re.compile(r"^[a-z][a-z0-9_]*-\d{8}T\d{6}-[0-9a-f]{8}$")


def find(root: Path, version: str) -> dict:
    """A version's metadata from its files under ``root`` (no Redis needed: replay and evaluation)."""
    if not VERSION_PATTERN.match(version):
        raise VersionError(f"{version!r} is not a model version id (like power-20260101T000000-1a2b3c4d)")
    for meta in root.glob(f"*/{version}/meta.json"):
        return orjson.loads(meta.read_bytes())
    raise VersionError(f"unknown model version {version!r}: no {root}/<source>/{version}/meta.json")
