"""The registry of sensor sources, declared in TOML files (one per source).

A declaration names the topic, the entity and time fields, the typed fields with
units and valid ranges, the detectors that apply and the threshold rules. A new
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
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from settings import Settings, get_settings

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


class RuleSpec(BaseModel):
    """A threshold rule: a field above or below a limit, per record or on a window mean."""

    model_config = ConfigDict(extra="forbid")

    kind: str
    field: str
    above: float | None = None
    below: float | None = None
    over: Literal["record", "1m", "15m", "1h", "24h"] = "record"
    severity: Literal["info", "warning", "major", "critical"] = "warning"
    dedup_s: float = Field(3600.0, ge=60, description="one alert per entity and kind per this period")
    description: str = ""

    @model_validator(mode="after")
    def _check(self) -> RuleSpec:
        if (self.above is None) == (self.below is None):
            raise ValueError("a rule needs exactly one of 'above' or 'below'")
        return self


class AnomalySpec(BaseModel):
    """Parameters of the generic anomaly detector (one configuration for every stream)."""

    model_config = ConfigDict(extra="forbid")

    level_alpha: float = Field(0.005, gt=0, lt=1, description="EW weight of the level model")
    step_alpha: float = Field(0.15, gt=0, lt=1, description="EW weight of the step (difference) model")
    scale_floor: float = Field(0.01, ge=0, description="z-score floor as a share of the range seen")
    max_surprise: float = Field(50.0, gt=0)
    short_window: int = Field(15, ge=1, description="records in the recent-surprise mean")
    long_window: int = Field(2000, ge=10, description="records in the surprise's long-run distribution")
    warmup: int = Field(100, ge=1, description="records learned before any alert")
    threshold: float = Field(0.999995, gt=0.5, lt=1, description="likelihood that raises an alert")
    refractory: int = Field(120, ge=0, description="records after an alert before the next")
    daily_slots: int = Field(24, ge=0, le=288, description="times of day with their own level and step models "
                             "(0: none; each costs 17 bytes per entity and field)")
    slot_alpha: float = Field(0.05, gt=0, lt=1, description="EW weight of a time of day's models")
    slot_warmup: int = Field(6, ge=2, le=255, description="records a time of day has learned before its models count")
    bias_alpha: float = Field(0.005, gt=0, lt=1, description="EW weight of the offset between the level and the "
                              "time of day's mean (how fast a lasting level shift is absorbed)")
    beyond_range: float = Field(0.03, ge=0, description="a value this share of the range seen beyond it is "
                                "anomalous whatever its likelihood (0: off) ...")
    beyond_z: float = Field(3.0, ge=0, description="... if it is also this many deviations from what is expected "
                            "there (a clean cycle's noise setting a new extreme is not)")
    shape_memory: int = Field(2048, ge=0, description="records remembered per entity and field, to recognise a "
                              "shape seen before at this time of day (0: off; each costs 8 bytes per entity and field)")
    shape_length: int = Field(24, ge=2, description="records in a shape: the recent run compared with the memory")
    shape_tolerance: float = Field(0.09, ge=0, description="a remembered shape matches when no record of it is "
                                   "further than this share of the range seen from the recent run's")
    shape_phase_s: float = Field(3600.0, ge=0, le=43200, description="how far apart in time of day a remembered "
                                 "shape may end")
    severity: Literal["info", "warning", "major", "critical"] = "warning"

    @model_validator(mode="after")
    def _check(self) -> AnomalySpec:
        if 0 < self.shape_memory < 2 * self.shape_length:
            raise ValueError(f"shape_memory must be 0 (off) or at least twice shape_length ({2 * self.shape_length})")
        return self


class WindowOutlierSpec(BaseModel):
    """Parameters of the trained window-outlier model (an IsolationForest over hourly window features)."""

    model_config = ConfigDict(extra="forbid")

    trees: int = Field(100, ge=10, le=1000)
    max_samples: int = Field(256, ge=16)
    quantile: float = Field(0.999, gt=0.5, lt=1, description="alert above this share of training windows")
    min_records: int = Field(48, ge=2, description="records an entity has before its hours are scored")
    seed: int = 42
    severity: Literal["info", "warning", "major", "critical"] = "warning"


class HealthSpec(BaseModel):
    """Sensor-health checks: fields that must not repeat, registers that must not fall."""

    model_config = ConfigDict(extra="forbid")

    stuck_fields: list[str] = Field(default_factory=list)
    stuck_after: int = Field(20, ge=2, description="readings equal to the one before, in a row")
    stuck_ignore_zero: bool = Field(True, description="a run of zeros is not a stuck sensor")
    counters: list[str] = Field(default_factory=list, description="cumulative registers (kWh, m³)")
    severity: Literal["info", "warning", "major", "critical"] = "warning"


class AqiSpec(BaseModel):
    """When the hourly AQI raises an alert."""

    model_config = ConfigDict(extra="forbid")

    alert_from: float = Field(151.0, gt=0, le=500, description="AQI from which an hour is alerted")


class BanSpec(BaseModel):
    """Objects that must not be seen in some zones during a yearly period (e.g. a fishing ban)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    zones: list[str] = Field(description="zone names or shell patterns, e.g. 'river-bank-*'")
    objects: list[str]
    start: str = Field("01-01", pattern=r"^\d\d-\d\d$", description="MM-DD, local time")
    end: str = Field("12-31", pattern=r"^\d\d-\d\d$")
    severity: Literal["info", "warning", "major", "critical"] = "major"


class VideoSpec(BaseModel):
    """Camera-event rules: bans per zone, alarm objects, crowd limits, scene merging."""

    model_config = ConfigDict(extra="forbid")

    bans: list[BanSpec] = Field(default_factory=list)
    alarm_objects: list[str] = Field(default_factory=lambda: ["smoke", "fire"])
    crowd_default: float = Field(50, gt=0)
    crowd_limits: dict[str, float] = Field(default_factory=dict, description="zone pattern -> limit")
    scene_gap_s: float = Field(600, ge=0, description="a camera quiet this long ends a scene")
    min_confidence: float = Field(0.6, ge=0, le=1)
    utc_offset_h: float = Field(8.0, ge=-12, le=14, description="local time of the ban periods")


class NightFlowSpec(BaseModel):
    """Minimum-night-flow leak check."""

    model_config = ConfigDict(extra="forbid")

    field: str = "flow"
    night_start_h: int = Field(1, ge=0, le=23, description="local hour the quiet night begins")
    night_end_h: int = Field(5, ge=1, le=24)
    min_flow: float = Field(0.02, ge=0, description="a night whose every reading is above this leaks")
    min_readings: int = Field(30, ge=1, description="readings a night needs to be judged")
    utc_offset_h: float = Field(8.0, ge=-12, le=14)
    severity: Literal["info", "warning", "major", "critical"] = "warning"


class VehicleSpec(BaseModel):
    """Vehicle-movement checks: dwell, restricted zones, night ban, lost signal."""

    model_config = ConfigDict(extra="forbid")

    zones: str = Field("city_zones.geojson", description="GeoJSON beside the TOML or in state/data/")
    restricted_kind: str = "restricted"
    restricted_hazardous_only: bool = Field(True, description="zone entry alerts only for hazardous vehicles")
    authorised_kind: str = "authorised_site"
    stationary_kmh: float = Field(3.0, ge=0)
    dwell_radius_m: float = Field(100.0, gt=0, description="moving less than this between fixes is standing")
    dwell_limit_s: float = Field(1800.0, gt=0)
    hazardous: list[str] = Field(default_factory=list, description="entity patterns of hazardous-goods vehicles "
                                 "(used only while the reference data registers no vehicles)")
    night_start_h: int = Field(22, ge=0, le=23)
    night_end_h: int = Field(6, ge=0, le=23)
    signal_lost_s: float = Field(120.0, gt=0)
    hazardous_max_kmh: float = Field(80.0, gt=0, description="speed limit of hazardous-goods vehicles")
    utc_offset_h: float = Field(8.0, ge=-12, le=14)


class ConsumptionSpec(BaseModel):
    """Per-meter hour-of-week profile: when an hour's use is abnormal for this meter."""

    model_config = ConfigDict(extra="forbid")

    field: str = "kw"
    floor: float = Field(0.05, gt=0, description="added to both sides of the ratio (near-zero use)")
    min_change: float = Field(0.5, ge=0, description="smallest absolute difference worth an alert")
    warmup: int = Field(3, ge=1, le=15, description="times a slot is seen before it can alert")
    z_alert: float = Field(4.0, gt=0, description="log-ratio spreads that make an hour abnormal")
    min_spread: float = Field(0.1, gt=0)
    alpha: float = Field(0.2, gt=0, lt=1, description="EW weight of a new hour in the profile")
    utc_offset_h: float = Field(8.0, ge=-12, le=14)
    severity: Literal["info", "warning", "major", "critical"] = "warning"


class SiteStatusSpec(BaseModel):
    """Use at a site whose registered status says it should have none (reference data)."""

    model_config = ConfigDict(extra="forbid")

    field: str = "kw"
    min_use: float = Field(0.5, ge=0, description="readings above this are use")
    statuses: list[str] = Field(default_factory=lambda: ["closed"])
    dedup_s: float = Field(3600.0, gt=0, description="one signal per meter per this period")
    severity: Literal["info", "warning", "major", "critical"] = "major"


class PeerUseSpec(BaseModel):
    """A site using several times what comparable sites (same category) use in a day."""

    model_config = ConfigDict(extra="forbid")

    field: str = "kw"
    categories: list[str] = Field(default_factory=lambda: ["dwelling"])
    factor: float = Field(4.0, gt=1, description="times the peer median that counts as excessive")
    days: int = Field(3, ge=1, description="consecutive excessive days before a signal")
    min_hours: int = Field(20, ge=1, le=24, description="hours with readings for a day to count")
    peers: int = Field(200, ge=10, description="recent peer days the median is taken over")
    min_peers: int = Field(30, ge=5)
    kind: str = "group_renting"
    utc_offset_h: float = Field(8.0, ge=-12, le=14)
    severity: Literal["info", "warning", "major", "critical"] = "warning"


class SpatialSpec(BaseModel):
    """A station far above its neighbours in the same closed hour (needs every station in one partition)."""

    model_config = ConfigDict(extra="forbid")

    field: str = "pm25"
    radius_km: float = Field(20.0, gt=0)
    min_neighbours: int = Field(2, ge=1)
    factor: float = Field(2.0, gt=1, description="times the neighbours' median")
    min_excess: float = Field(35.0, ge=0, description="and at least this much above it, in the field's unit")
    grace_s: float = Field(3600.0, ge=0, description="wait past the lateness before judging an hour")
    severity: Literal["info", "warning", "major", "critical"] = "warning"


# Detectors whose table names one field: whether that field must be windowed.
FIELD_DETECTORS = {"night_flow": False, "consumption": True, "site_status": False, "peer_use": False,
                   "spatial": True}


class Source(BaseModel):
    """A declared sensor source."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    topic: str
    description: str = ""
    entity_field: str = "entity"
    time_field: str = "ts"
    time_format: Literal["auto", "iso8601", "epoch_s", "epoch_ms"] = "auto"
    partitions: int | None = Field(None, ge=1, le=1024, description="partitions of the topic (default "
                                   "WARDEN_PARTITIONS); 1 for a small feed whose detectors compare its entities")
    expected_interval_s: float = Field(60.0, gt=0)
    silence_factor: float = Field(5.0, gt=1, description="silent after this many expected intervals")
    detectors: list[str] = Field(default_factory=lambda: ["threshold"])
    fields: dict[str, FieldSpec]
    rules: list[RuleSpec] = Field(default_factory=list)
    anomaly: AnomalySpec = Field(default_factory=AnomalySpec)
    health: HealthSpec = Field(default_factory=HealthSpec)
    aqi: AqiSpec = Field(default_factory=AqiSpec)
    video: VideoSpec = Field(default_factory=VideoSpec)
    night_flow: NightFlowSpec = Field(default_factory=NightFlowSpec)
    vehicle: VehicleSpec = Field(default_factory=VehicleSpec)
    consumption: ConsumptionSpec = Field(default_factory=ConsumptionSpec)
    site_status: SiteStatusSpec = Field(default_factory=SiteStatusSpec)
    peer_use: PeerUseSpec = Field(default_factory=PeerUseSpec)
    spatial: SpatialSpec = Field(default_factory=SpatialSpec)
    window_outlier: WindowOutlierSpec = Field(default_factory=WindowOutlierSpec)
    path: Path | None = None

    def partition_count(self, default: int) -> int:
        """Partitions of this source's topic."""
        return self.partitions or default

    @model_validator(mode="after")
    def _check(self) -> Source:
        for reserved in (self.entity_field, self.time_field):
            if reserved in self.fields:
                raise ValueError(f"'{reserved}' is the entity/time field, not a typed field")
        for rule in self.rules:
            spec = self.fields.get(rule.field)
            if spec is None or not spec.numeric:
                raise ValueError(f"rule {rule.kind!r}: no numeric field {rule.field!r}")
            if rule.over != "record" and not spec.window:
                raise ValueError(f"rule {rule.kind!r}: field {rule.field!r} is not windowed")
        for name in [*self.health.stuck_fields, *self.health.counters]:
            if name not in self.fields or not self.fields[name].numeric:
                raise ValueError(f"health: no numeric field {name!r}")
        if "video" in self.detectors and not {"object", "count", "confidence"} <= set(self.fields):
            raise ValueError("the video detector needs object, count and confidence fields")
        if "window_outlier" in self.detectors and not self.windowed_fields:
            raise ValueError("the window_outlier detector needs at least one windowed field")
        if "anomaly" in self.detectors and not any(f.anomaly for f in self.fields.values()):
            raise ValueError("the anomaly detector needs a field marked anomaly = true")
        for detector, windowed in FIELD_DETECTORS.items():
            name = getattr(self, detector).field
            spec = self.fields.get(name)
            if detector in self.detectors and (spec is None or not spec.numeric or (windowed and not spec.window)):
                raise ValueError(f"the {detector} detector needs a numeric{' windowed' if windowed else ''} "
                                 f"field {name!r} (its [{detector}] table names it)")
        return self

    @property
    def numeric_fields(self) -> list[str]:
        return [n for n, f in self.fields.items() if f.numeric]

    @property
    def windowed_fields(self) -> list[str]:
        return [n for n, f in self.fields.items() if f.window]

    @property
    def required_fields(self) -> list[str]:
        return [n for n, f in self.fields.items() if f.required]


def load_source(path: Path) -> Source:
    """Read and validate one declaration; errors name the file and the field."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise SourceError(f"{path}: {exc}") from exc
    try:
        return Source(**data, path=path)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg']}" for err in exc.errors()
        )
        raise SourceError(f"{path}: {problems}") from exc


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
    return Registry(sources.values())
