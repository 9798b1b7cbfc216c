"""The registry of sensor sources, declared in TOML files (one per source).

A declaration names the topic, the entity and time fields, the typed fields with
units and valid ranges, and the detectors that apply, each with its table (kept
raw here: each detector validates its own, see ``models.catalog``). A new
file dropped in ``streams/sources/`` or a folder named in ``WARDEN_SOURCES_DIRS``
becomes a consumed topic with no code change.

>>> reg = load_registry()
>>> reg["air"].topic, reg["air"].fields["pm25"].unit
('telemetry.air', 'µg/m³')
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from settings import Settings, get_settings
from streams.kafka.partitioner import Scheme

SHIPPED_DIR = Path(__file__).parent / "sources"


class SourceError(ValueError):
    """A source declaration that cannot be used, with the file it came from."""


class FieldSpec(BaseModel):
    """One typed field of a record."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["float", "int", "string", "bool"]
    unit: str = ""
    description: str = ""
    min: float | None = None
    max: float | None = None
    required: bool = False
    values: list[str] | None = Field(None, description="allowed values of a string field")
    max_length: int = 256
    window: bool = Field(False, description="keep running statistics and window buckets")
    anomaly: bool = Field(False, description="watched by the generic anomaly detector")

    @property
    def numeric(self) -> bool:
        return self.type in ("float", "int")

    @model_validator(mode="after")
    def _check(self) -> FieldSpec:
        if (self.window or self.anomaly) and not self.numeric:
            raise ValueError("only numeric fields can be windowed or watched for anomalies")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        return self


class Source(BaseModel):
    """A declared sensor source."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    topic: str
    description: str = ""
    entity_field: str = "entity"
    time_field: str = "ts"
    time_format: Literal["auto", "iso8601", "epoch_s", "epoch_ms"] = "auto"
    timezone: str = Field("UTC", description="IANA zone of timestamps written without one (2013-03-01 03:00:00)")
    missing: list[str] = Field(
        default_factory=list, description='values that mean "no reading" in any field (["NA", ""]): left out'
    )
    numbers_as_text: bool = Field(False, description='numeric fields may come as text ("12.5") and are read')
    partitions: int | None = Field(
        None,
        ge=1,
        le=1024,
        description="partitions of the topic (default "
        "WARDEN_PARTITIONS); 1 for a small feed whose detectors compare its entities",
    )
    partitioner: Literal["murmur2", "crc32"] | None = Field(
        None,
        description="how its producers pick a keyed record's partition: murmur2 (Java, aiokafka) or crc32 "
        "(librdkafka: confluent-kafka, kcat, Quix); default WARDEN_PARTITIONER. Records are owned where it puts them",
    )
    expected_interval_s: float = Field(60.0, gt=0)
    lateness_s: float | None = Field(
        None,
        ge=0,
        description="how far behind later records of its entity a record may still arrive: records wait this long "
        "to be put in event order, so its alerts come this long after their event (default and ceiling "
        "WARDEN_ALLOWED_LATENESS_S)",
    )
    silence_factor: float = Field(5.0, gt=1, description="silent after this many expected intervals")
    detectors: list[str] = Field(default_factory=lambda: ["threshold"])
    episodes: dict[str, str] = Field(
        default_factory=dict,
        description="alert kinds (shell patterns) raised as one kind of situation: the pollutants' daily limits "
        "of one regional episode are one alert, not one per pollutant (the signal's evidence keeps its field)",
    )
    groups: dict[str, Literal["source", "site"]] = Field(
        default_factory=dict,
        description="alert kinds (shell patterns) whose signals from many entities make one incident: "
        "'source' (all of the source's entities: a regional episode) or 'site' (the devices of one site)",
    )
    fields: dict[str, FieldSpec]
    tables: dict[str, Any] = Field(default_factory=dict, description="the detectors' tables, as declared")
    path: Path | None = None

    def partition_count(self, default: int) -> int:
        """Partitions of this source's topic."""
        return self.partitions or default

    def allowed_lateness(self, settings: Settings) -> float:
        """Seconds its records may arrive behind later ones of their entity: its own, at most the deployment's."""
        ceiling = settings.allowed_lateness_s
        return ceiling if self.lateness_s is None else min(self.lateness_s, ceiling)

    def scheme(self, default: Scheme) -> Scheme:
        """The partitioner of this source's producers."""
        return self.partitioner or default

    @model_validator(mode="before")
    @classmethod
    def _gather_tables(cls, data: Any) -> Any:
        """Keys that are not the source's own are its detectors' tables, kept raw (each detector validates
        its own: ``models.catalog``)."""
        if isinstance(data, dict):
            own = set(cls.model_fields) - {"tables"}
            tables = {k: v for k, v in data.items() if k not in own}
            data = {k: v for k, v in data.items() if k in own} | {"tables": {**data.get("tables", {}), **tables}}
        return data

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, name: str) -> str:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {name!r} (an IANA name such as 'Asia/Shanghai')") from None
        return name

    @model_validator(mode="after")
    def _check(self) -> Source:
        for reserved in (self.entity_field, self.time_field):
            if reserved in self.fields:
                raise ValueError(f"'{reserved}' is the entity/time field, not a typed field")
        return self

    @property
    def zone(self) -> ZoneInfo:
        """The zone of naive timestamps."""
        return ZoneInfo(self.timezone)

    @property
    def numeric_fields(self) -> list[str]:
        return [n for n, f in self.fields.items() if f.numeric]

    @property
    def windowed_fields(self) -> list[str]:
        return [n for n, f in self.fields.items() if f.window]


def load_source(path: Path) -> Source:
    """Read and validate one declaration; errors name the file and the field."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise SourceError(f"{path}: {exc}") from exc
    try:
        return Source(**data, path=path)
    except ValidationError as exc:
        raise SourceError(f"{path}: {describe(exc)}") from exc


def describe(exc: ValidationError, table: str = "") -> str:
    """Each problem of a validation error as ``key.path: message``, under ``table`` if given."""
    return "; ".join(
        f"{'.'.join(str(p) for p in (table, *err['loc']) if p != '') or '(top)'}: {err['msg']}" for err in exc.errors()
    )


class Registry(Mapping[str, Source]):
    """Sources by name, with a lookup by topic."""

    def __init__(self, sources: Iterable[Source]):
        self._by_name = {s.name: s for s in sources}
        self._by_topic = {s.topic: s for s in self._by_name.values()}

    def __getitem__(self, name: str) -> Source:
        return self._by_name[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_name)

    def __len__(self) -> int:
        return len(self._by_name)

    def by_topic(self, topic: str) -> Source | None:
        return self._by_topic.get(topic)

    @property
    def topics(self) -> list[str]:
        return list(self._by_topic)

    def partitioners(self, settings: Settings) -> dict[str, Scheme]:
        """Each source topic's partitioner, for a producer that writes records to them."""
        return {s.topic: s.scheme(settings.partitioner) for s in self._by_name.values()}


def load_registry(settings: Settings | None = None) -> Registry:
    """All sources: the shipped ones, then each configured folder (later names win)."""
    settings = settings or get_settings()
    sources: dict[str, Source] = {}
    for folder in [SHIPPED_DIR, *settings.sources_dirs]:
        if not folder.is_dir():
            raise SourceError(f"sources folder {folder} does not exist")
        for path in sorted(folder.glob("*.toml")):
            source = load_source(path)
            sources[source.name] = source
    if unknown := set(settings.run_sources) - set(sources):
        raise SourceError(f"WARDEN_RUN_SOURCES names no declared source: {', '.join(sorted(unknown))}")
    if settings.run_sources:
        sources = {name: s for name, s in sources.items() if name in settings.run_sources}
    for source in sources.values():
        if source.groups and source.partition_count(settings.partitions) != 1:
            raise SourceError(
                f"{source.path}: 'groups' needs 'partitions = 1' (one worker sees every entity of a group, so its "
                "incident is merged in one place)"
            )
    return Registry(sources.values())
