"""Warden's one settings object, read from ``WARDEN_*`` variables and an optional ``.env``.

Nothing else in the code base reads the environment: every module takes what it
needs from :func:`get_settings` (or from a ``Settings`` passed in by a test).

>>> Settings(partitions=4).partitions
4
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import json
from typing import Annotated

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

WINDOW_SECONDS = {"1m": 60, "15m": 900, "1h": 3600}


class Webhook(BaseModel):
    """An HTTP receiver of alerts in Prometheus Alertmanager's webhook format."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    url: str = Field(pattern=r"^https?://")
    min_severity: str = "info"
    kinds: list[str] = Field(default_factory=lambda: ["*"])
    timeout_s: float = Field(5.0, gt=0)
    max_backoff_s: float = Field(30.0, gt=0)


class Settings(BaseSettings):
    """Typed configuration for workers, tools and tests."""

    model_config = SettingsConfigDict(env_prefix="WARDEN_", env_file=".env", extra="ignore")

    # Where the data lives. None means: start the embedded broker / Redis.
    broker: str | None = Field(None, description="Kafka bootstrap servers, e.g. kafka://host:9092")
    redis_url: str | None = Field(None, description="redis://host:6379/0")
    embedded: bool = Field(False, description="set by `warden up`: the broker is Tansu")
    data_dir: Path = Path(".warden")

    # Topics and the Faust app.
    app_id: str = "warden"
    partitions: int = Field(8, ge=1, le=1024)
    alerts_topic: str = "warden.alerts"
    deadletter_topic: str = "warden.deadletter"
    signals_topic: str = "warden.signals"
    web_host: str = "127.0.0.1"
    web_port: int = 6066

    # Sources: the shipped declarations plus any extra folders.
    sources_dirs: Annotated[list[Path], NoDecode] = Field(default_factory=list)

    # Fusion: patterns besides the shipped ones (models/patterns).
    fusion_patterns_dirs: Annotated[list[Path], NoDecode] = Field(default_factory=list)

    # Input limits.
    max_message_bytes: int = 1_000_000
    allowed_lateness_s: float = Field(600.0, ge=0)
    max_future_s: float = Field(86_400.0, ge=0)
    min_event_time: str = "2000-01-01T00:00:00Z"

    # State: ring-buffer length per tumbling window.
    windows: dict[str, int] = Field(default_factory=lambda: {"1m": 15, "15m": 8, "1h": 28})
    checkpoint_interval_s: float = Field(5.0, gt=0)
    state_initial_capacity: int = 1024

    # Batching: producer and agent.
    producer_batch_records: int = Field(500, ge=1)
    producer_linger_ms: int = Field(20, ge=0)
    agent_take_messages: int = Field(500, ge=1)
    agent_take_within_s: float = Field(0.02, gt=0)
    engine_batch_records: int = Field(20_000, ge=1, description="records per engine call before yielding")

    # Alerts: merging, storage, delivery, API.
    alert_quiet_s: dict[str, float] = Field(
        default_factory=lambda: {"*": 7200.0, "silent": 86_400.0, "*_daily_over_limit": 86_400.0,
                                 "group_renting": 172_800.0},
        description="per alert kind (shell patterns, '*' default): signals this close to the last merge into it")
    alert_retention_s: float = Field(30 * 86_400.0, gt=0)
    alert_stream_maxlen: int = Field(100_000, ge=1_000)
    webhooks: list[Webhook] = Field(default_factory=list, description='JSON list, e.g. [{"name": "ops", "url": ...}]')
    api_token: SecretStr | None = Field(None, description="bearer token for the HTTP API")
    refdata_refresh_s: float = Field(2.0, gt=0, description="how often workers look for new reference data")

    # Replay logs (the archive) and model versions.
    archive_enabled: bool = Field(True, description="write every accepted record to replay logs")
    archive_dir: Path | None = Field(None, description="replay logs (default: <data_dir>/archive)")
    archive_retention_s: float = Field(30 * 86_400.0, gt=0, description="segments older than this are deleted")
    archive_max_bytes: int = Field(50 * 2**30, gt=0, description="oldest segments go first beyond this size")
    archive_zstd_level: int = Field(1, ge=1, le=22, description="1 compresses city records as well as 3, faster")
    models_dir: Path | None = Field(None, description="model version files (default: <data_dir>/models)")

    # Consumer group timing (shortened automatically for the embedded broker).
    session_timeout_s: float = 30.0
    rebalance_timeout_s: float = 60.0
    heartbeat_interval_s: float = 3.0
    fetch_max_wait_ms: int = Field(100, ge=1, description="consumer long-poll; bounds latency on Tansu")

    @field_validator("sources_dirs", "fusion_patterns_dirs", mode="before")
    @classmethod
    def _split_dirs(cls, value: object) -> object:
        if isinstance(value, str):
            return json.loads(value) if value.startswith("[") else [p for p in value.split(",") if p.strip()]
        return value

    @field_validator("windows")
    @classmethod
    def _known_windows(cls, value: dict[str, int]) -> dict[str, int]:
        unknown = set(value) - set(WINDOW_SECONDS)
        if unknown:
            raise ValueError(f"unknown window(s) {sorted(unknown)}; known: {sorted(WINDOW_SECONDS)}")
        if any(n < 1 for n in value.values()):
            raise ValueError("each window needs at least one bucket")
        return value

    @property
    def bootstrap_servers(self) -> str:
        """The broker as aiokafka wants it (no ``kafka://`` scheme)."""
        if not self.broker:
            raise RuntimeError("no broker configured: set WARDEN_BROKER or run `warden up`")
        return ",".join(s.split("://", 1)[-1] for s in self.broker.split(","))

    @property
    def archive_path(self) -> Path:
        return self.archive_dir or self.data_dir / "archive"

    @property
    def models_path(self) -> Path:
        return self.models_dir or self.data_dir / "models"

    @property
    def faust_broker(self) -> str:
        return "kafka://" + self.bootstrap_servers

    def consumer_timeouts(self) -> tuple[float, float, float]:
        """(session, rebalance, heartbeat) seconds; short for the embedded broker."""
        if self.embedded:
            return 6.0, 2.0, 1.0
        return self.session_timeout_s, self.rebalance_timeout_s, self.heartbeat_interval_s


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
