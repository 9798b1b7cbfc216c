"""Warden's one settings object, read from ``WARDEN_*`` variables and an optional ``.env``.

Nothing else in the code base reads the environment: every module takes what it
needs from :func:`get_settings` (or from a ``Settings`` passed in by a test).

>>> Settings(partitions=4).partitions
4
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator
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
    language: Literal["zh-CN", "en"] | None = Field(None, description="its annotations' language (default: language)")


class ConfigError(RuntimeError):
    """A setting that cannot work; the message names the setting and what is wrong (never a secret)."""


class Settings(BaseSettings):
    """Typed configuration for workers, tools and tests."""

    model_config = SettingsConfigDict(env_prefix="WARDEN_", env_file=".env", extra="ignore")

    # Where the data lives. None means: start the embedded broker / Redis.
    broker: str | None = Field(None, description="Kafka bootstrap servers, e.g. kafka://host:9092")
    redis_url: str | None = Field(None, description="redis://host:6379/0")
    embedded: bool = Field(False, description="set by `warden up`: the broker is Tansu")
    data_dir: Path = Path(".warden")

    # Secured connections. Each secret comes from its variable or from the file its *_FILE setting names.
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_sasl_password_file: Path | None = None
    kafka_ssl_cafile: Path | None = Field(None, description="CA bundle that signed the brokers' certificates")
    kafka_ssl_certfile: Path | None = Field(None, description="client certificate (mutual TLS)")
    kafka_ssl_keyfile: Path | None = None
    kafka_ssl_key_password: SecretStr | None = None
    kafka_ssl_key_password_file: Path | None = None
    redis_username: str | None = Field(None, description="Redis ACL user (default: the default user)")
    redis_password: SecretStr | None = None
    redis_password_file: Path | None = None
    redis_ssl_cafile: Path | None = Field(None, description="CA bundle for rediss:// (default: the system's)")
    redis_ssl_certfile: Path | None = None
    redis_ssl_keyfile: Path | None = None
    connect_timeout_s: float = Field(
        10.0, gt=0, description="a broker that does not answer fails the start (a worker waits for Redis)"
    )
    redis_timeout_s: float = Field(
        15.0, ge=2, description="a Redis reply awaited longer fails (and is retried); blocking reads wait less"
    )

    # Topics and the Faust app.
    app_id: str = "warden"
    partitions: int = Field(8, ge=1, le=1024)
    partitioner: Literal["murmur2", "crc32"] = Field(
        "murmur2",
        description="how the sources' producers pick a keyed record's partition, unless a source says: murmur2 "
        "(Java, aiokafka) or crc32 (librdkafka: confluent-kafka, kcat, Quix)",
    )
    alerts_topic: str = "warden.alerts"
    deadletter_topic: str = "warden.deadletter"
    signals_topic: str = "warden.signals"
    web_host: str = "127.0.0.1"
    web_port: int = 6066

    # Sources: the shipped declarations plus any extra folders.
    sources_dirs: Annotated[list[Path], NoDecode] = Field(default_factory=list)
    run_sources: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="run only these declared sources (names, comma-separated; default all): a worker of its "
        "own for a heavy feed",
    )

    # Fusion: patterns besides the shipped ones (models/patterns).
    fusion_patterns_dirs: Annotated[list[Path], NoDecode] = Field(default_factory=list)

    # Input limits.
    max_message_bytes: int = 1_000_000
    deadletter_original_bytes: int = Field(
        65_536, ge=0, description="head of a rejected message kept in its dead letter (its length and SHA-256 always)"
    )
    allowed_lateness_s: float = Field(
        600.0,
        ge=0,
        description="how far behind later records of its entity a record may arrive, for a source that does not "
        "declare its own lateness_s, and the most any source may: alerts wait this long for event order",
    )
    max_future_s: float = Field(86_400.0, ge=0)
    min_event_time: str = "2000-01-01T00:00:00Z"

    # State: ring-buffer length per tumbling window.
    windows: dict[str, int] = Field(default_factory=lambda: {"1m": 15, "15m": 8, "1h": 28})
    checkpoint_interval_s: float = Field(5.0, gt=0)
    checkpoint_max_share: float = Field(
        0.05,
        gt=0,
        le=1,
        description="most of a partition's time its checkpoints "
        "may take: a big state is checkpointed less often than the interval",
    )
    state_initial_capacity: int = 1024

    # Batching: producer and the consumer's hand-off.
    producer_batch_records: int = Field(500, ge=1)
    producer_linger_ms: int = Field(20, ge=0)
    hand_off_batches: int = Field(
        8, ge=1, description="fetched runs of messages a source's queue holds before the consumer waits"
    )
    consumer_fetch_bytes: int = Field(
        256 * 1024,
        ge=16 * 1024,
        description="the most one fetch brings of a partition (a bigger message still comes, alone); the consumer "
        "fetches ahead while the hand-off holds runs, and one-record messages are several times their bytes as "
        "Python objects, so a bigger fetch is more memory, not more speed",
    )
    engine_batch_records: int = Field(20_000, ge=1, description="records per engine call before yielding")

    # Alerts: merging, storage, delivery, API.
    alert_quiet_s: dict[str, float] = Field(
        default_factory=lambda: {
            "*": 7200.0,
            "silent": 86_400.0,
            "*_daily_over_limit": 86_400.0,
            "daily_limit_exceeded": 86_400.0,
            "group_renting": 172_800.0,
            # a vehicle's habit (speeding, driving in the night ban) is one case while it recurs within a week
            "speeding*": 604_800.0,
            "night_driving": 604_800.0,
        },
        description="per alert kind (shell patterns, '*' default): signals this close to the last merge into it",
    )
    alert_retention_s: float = Field(30 * 86_400.0, gt=0)
    alert_stream_maxlen: int = Field(100_000, ge=1_000)
    webhooks: list[Webhook] = Field(default_factory=list, description='JSON list, e.g. [{"name": "ops", "url": ...}]')
    api_token: SecretStr | None = Field(
        None, description="an admin token for the API and console (more, with roles: `warden tokens create`)"
    )
    audit_retention_s: float = Field(365 * 86_400.0, gt=0, description="audit entries older than this are deleted")
    refdata_refresh_s: float = Field(2.0, gt=0, description="how often workers look for new reference data")

    # What people read: the console, the CLI and webhooks.
    timezone: str = Field("Asia/Shanghai", description="the city's time zone (IANA): every time shown to people")
    language: Literal["zh-CN", "en"] = Field("zh-CN", description="default language (each console user may choose)")

    # Replay logs (the archive) and model versions.
    archive_enabled: bool = Field(True, description="write every accepted record to replay logs")
    archive_dir: Path | None = Field(None, description="replay logs (default: <data_dir>/archive)")
    archive_retention_s: float = Field(30 * 86_400.0, gt=0, description="segments older than this are deleted")
    archive_max_bytes: int = Field(50 * 2**30, gt=0, description="oldest segments go first beyond this size")
    archive_zstd_level: int = Field(1, ge=1, le=22, description="1 compresses city records as well as 3, faster")
    models_dir: Path | None = Field(None, description="model version files (default: <data_dir>/models)")
    reports_dir: Path | None = Field(None, description="daily reports (default: <data_dir>/reports)")

    # Consumer group timing (shortened automatically for the embedded broker).
    session_timeout_s: float = 30.0
    rebalance_timeout_s: float = 60.0
    heartbeat_interval_s: float = 3.0
    fetch_max_wait_ms: int = Field(100, ge=1, description="consumer long-poll; bounds latency on Tansu")

    @field_validator("sources_dirs", "fusion_patterns_dirs", "run_sources", mode="before")
    @classmethod
    def _split_lists(cls, value: object) -> object:
        if isinstance(value, str):
            return json.loads(value) if value.startswith("[") else [p.strip() for p in value.split(",") if p.strip()]
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (an IANA name, e.g. Asia/Shanghai)") from None
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

    @model_validator(mode="after")
    def _secured_connections(self) -> Settings:
        problems = []
        sasl, tls = self.kafka_security_protocol.startswith("SASL"), self.kafka_security_protocol.endswith("SSL")
        if sasl and not self.kafka_sasl_username:
            problems.append(
                f"WARDEN_KAFKA_SASL_USERNAME: required by WARDEN_KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol}"
            )
        if sasl and self.kafka_sasl_password is None and self.kafka_sasl_password_file is None:
            problems.append(
                "WARDEN_KAFKA_SASL_PASSWORD (or WARDEN_KAFKA_SASL_PASSWORD_FILE): required by "
                f"WARDEN_KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol}"
            )
        kafka_tls_files = ("kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile")
        if not tls:
            problems += [
                f"{_env(n)}: set, but WARDEN_KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol} does "
                "not use TLS (SSL or SASL_SSL)"
                for n in kafka_tls_files
                if getattr(self, n)
            ]
        for cert, key in (("kafka_ssl_certfile", "kafka_ssl_keyfile"), ("redis_ssl_certfile", "redis_ssl_keyfile")):
            if bool(getattr(self, cert)) != bool(getattr(self, key)):
                problems.append(f"{_env(cert)} and {_env(key)}: a client certificate needs both")
        redis_tls = ("redis_ssl_cafile", "redis_ssl_certfile", "redis_ssl_keyfile")
        if self.redis_url and not self.redis_url.startswith("rediss://"):
            problems += [
                f"{_env(n)}: set, but WARDEN_REDIS_URL does not use TLS (rediss://)"
                for n in redis_tls
                if getattr(self, n)
            ]
        if self.redis_url and urlsplit(self.redis_url).password and (self.redis_password or self.redis_password_file):
            problems.append("WARDEN_REDIS_URL holds a password and WARDEN_REDIS_PASSWORD(_FILE) is set too: keep one")
        for name in ("kafka_sasl_password", "kafka_ssl_key_password", "redis_password"):
            if getattr(self, name) is not None and getattr(self, f"{name}_file") is not None:
                problems.append(f"{_env(name)} and {_env(name + '_file')}: set one, not both")
        for name in (
            *kafka_tls_files,
            *redis_tls,
            "kafka_sasl_password_file",
            "kafka_ssl_key_password_file",
            "redis_password_file",
        ):
            path = getattr(self, name)
            if path is not None and not path.is_file():
                problems.append(f"{_env(name)}: no readable file at {path}")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def secret(self, name: str) -> str | None:
        """The secret setting ``name`` (e.g. ``redis_password``), from its variable or its ``*_file``."""
        value: SecretStr | None = getattr(self, name)
        if value is not None:
            return value.get_secret_value()
        path: Path | None = getattr(self, f"{name}_file")
        try:
            return path.read_text().rstrip("\r\n") if path is not None else None
        except OSError as exc:
            raise ConfigError(f"{_env(name + '_file')}: cannot read {path} ({exc.strerror})") from None

    @property
    def redis_display_url(self) -> str:
        """``redis_url`` without its password, for messages."""
        return redacted_url(self.redis_url or "")

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
    def reports_path(self) -> Path:
        return self.reports_dir or self.data_dir / "reports"

    @property
    def faust_broker(self) -> str:
        return "kafka://" + self.bootstrap_servers

    def consumer_timeouts(self) -> tuple[float, float, float]:
        """(session, rebalance, heartbeat) seconds; short for the embedded broker."""
        if self.embedded:
            return 6.0, 2.0, 1.0
        return self.session_timeout_s, self.rebalance_timeout_s, self.heartbeat_interval_s


def _env(name: str) -> str:
    return f"WARDEN_{name.upper()}"


def redacted_url(url: str) -> str:
    """``url`` with any password replaced by ``***``.

    >>> redacted_url("redis://ops:hunter2@db:6379/0")
    'redis://ops:***@db:6379/0'
    """
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def describe(error: ValidationError) -> str:
    """A settings validation error as lines ``WARDEN_<SETTING>: what is wrong``, without the values given."""
    lines = []
    for e in error.errors(include_input=False, include_url=False):
        message = e["msg"].removeprefix("Value error, ")
        field = ".".join(str(part) for part in e["loc"])
        lines += [f"{_env(field)}: {message}"] if field else message.split("; ")
    return "\n".join(lines)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once; a wrong one raises :class:`ConfigError` naming it."""
    try:
        return Settings()
    except ValidationError as exc:
        raise ConfigError("configuration error:\n" + describe(exc)) from None
