"""Video analytics events: detections in a zone under a ban, smoke or fire, crowds over a zone's limit.

Cameras repeat a detection every few seconds while a scene lasts; one scene
(camera, kind) raises one alert until the camera has been free of that kind
for ``scene_gap_s``. A ban or a crowd is alerted once its scene has lasted
``confirm_s`` (a passer-by in one frame is not illegal fishing); smoke and fire
at once. A crowd is of ``crowd_objects`` (people, not a traffic jam).

Parameters (the ``[video]`` table): ``bans`` (name, zone patterns, objects and
a yearly period, local), ``alarm_objects``, ``crowd_default`` and
``crowd_limits`` (per zone pattern), ``crowd_objects``, ``scene_gap_s``,
``confirm_s``, ``min_confidence``, ``utc_offset_h``.

>>> from models.catalog import load_sources
>>> from models.engine import SourceEngine
>>> engine = SourceEngine(load_sources()["video"].model_copy(update={"detectors": ["video"]}))
>>> smoke = [{"entity": "cam-1", "ts": 1767225600 + 10 * i, "object": "smoke", "count": 1, "confidence": 0.9,
...           "zone": "plant-gate"} for i in range(5)]
>>> [(s.kind, s.entity, s.severity) for s in engine.process(smoke).signals]   # five detections, one scene
[('smoke', 'cam-1', 'critical')]
"""

from __future__ import annotations

import fnmatch

import numpy as np
from pydantic import Field

from models.base import BatchContext, Detector, DetectorSettings, Severity, UtcOffsetHours
from models.calendar import in_period
from models.signal import Signal
from state.entity_state import EntityState
from state.sequence import EntitySequence
from streams.registry import Source
from streams.validation import Batch

MODEL = "video@2"


class Ban(DetectorSettings):
    """Objects that must not be seen in some zones during a yearly period (e.g. a fishing ban)."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    zones: list[str] = Field(description="zone names or shell patterns, e.g. 'river-bank-*'")
    objects: list[str]
    start: str = Field("01-01", pattern=r"^\d\d-\d\d$", description="MM-DD, local time")
    end: str = Field("12-31", pattern=r"^\d\d-\d\d$")
    severity: Severity = "major"


class VideoSettings(DetectorSettings):
    """The ``[video]`` table: bans per zone, alarm objects, crowd limits, scene merging."""

    bans: list[Ban] = Field(default_factory=list)
    alarm_objects: list[str] = Field(default_factory=lambda: ["smoke", "fire"])
    crowd_default: float = Field(50, gt=0)
    crowd_limits: dict[str, float] = Field(default_factory=dict, description="zone pattern -> limit")
    crowd_objects: list[str] = Field(default_factory=lambda: ["person"], description="what a crowd is made of")
    scene_gap_s: float = Field(600, ge=0, description="a camera quiet this long ends a scene")
    confirm_s: float = Field(60, ge=0, description="a ban or crowd scene is alerted once it has lasted this long")
    min_confidence: float = Field(0.6, ge=0, le=1)
    utc_offset_h: UtcOffsetHours = 8.0


class Video(Detector):
    """Raises ``ban_<name>``, ``smoke``/``fire`` and ``crowd`` alerts from camera analytics events."""

    name = "video"
    settings_model = VideoSettings

    def __init__(self, source: Source, state: EntityState):
        super().__init__(source, state)
        self.kinds = [f"ban_{b.name}" for b in self.settings.bans] + list(self.settings.alarm_objects) + ["crowd"]
        for kind in self.kinds:
            state.store.add(f"video.seen.{kind}", np.float64, fill=-np.inf)  # its last hit
            state.store.add(f"video.scene.{kind}", np.float64, fill=np.nan)  # when its scene began
            state.store.add(f"video.alerted.{kind}", np.float64, fill=np.nan)  # the scene last alerted

    @classmethod
    def check(cls, source: Source, settings: VideoSettings) -> None:
        if not {"object", "count", "confidence"} <= set(source.fields):
            raise ValueError("the video detector needs object, count and confidence fields")

    def detect(self, batch: Batch, rows: np.ndarray, state: EntityState, ctx: BatchContext) -> list[Signal]:
        objects = np.array(batch.strings["object"], dtype=object)
        zones = np.array([z or "" for z in self._zones(batch)], dtype=object)
        # zone patterns are matched once per distinct zone, not per record
        names, zone_of = np.unique(zones, return_inverse=True)
        count = batch.columns["count"]
        confident = batch.columns["confidence"] >= self.settings.min_confidence
        hits: list[tuple[str, np.ndarray, str]] = []
        for ban in self.settings.bans:
            mask = confident & np.isin(objects, ban.objects) & (count > 0)
            mask &= np.array([any(fnmatch.fnmatchcase(z, p) for p in ban.zones) for z in names])[zone_of]
            if mask.any():
                mask &= in_period(batch.ts, ban.start, ban.end, self.settings.utc_offset_h)
            hits.append((f"ban_{ban.name}", mask, ban.severity))
        for obj in self.settings.alarm_objects:
            hits.append((obj, confident & (objects == obj) & (count > 0), "critical"))
        limits = np.array([self._crowd_limit(z) for z in names], dtype=np.float64)[zone_of]
        hits.append(("crowd", confident & np.isin(objects, self.settings.crowd_objects) & (count > limits), "warning"))
        alerts = []
        for kind, mask, severity in hits:
            alerts += self._scenes(kind, mask, severity, batch, rows, state, ctx.sequence, limits)
        return alerts

    @staticmethod
    def _zones(batch: Batch) -> list:
        return batch.strings.get("zone") or [None] * len(batch)

    def _crowd_limit(self, zone: str) -> float:
        for pattern, limit in self.settings.crowd_limits.items():
            if fnmatch.fnmatchcase(zone, pattern):
                return float(limit)
        return float(self.settings.crowd_default)

    def _scenes(
        self,
        kind: str,
        mask: np.ndarray,
        severity: str,
        batch: Batch,
        rows: np.ndarray,
        state: EntityState,
        seq: EntitySequence,
        limits: np.ndarray,
    ) -> list[Signal]:
        """One alert per scene (a hit more than ``scene_gap_s`` after the camera's previous hit of that kind
        begins one), once it has lasted ``confirm_s`` (alarm objects: at once)."""
        if not mask.any():
            return []
        seen, scene, alerted = (state.store[f"video.{c}.{kind}"] for c in ("seen", "scene", "alerted"))
        confirm = 0.0 if kind in self.settings.alarm_objects else self.settings.confirm_s
        order = seq.order[mask[seq.order]]
        alerts = []
        for i in order.tolist():
            row, t = int(rows[i]), float(batch.ts[i])
            if t - seen[row] > self.settings.scene_gap_s:
                scene[row] = t
            seen[row] = max(seen[row], t)
            if t - scene[row] >= confirm and alerted[row] != scene[row]:
                alerted[row] = scene[row]
                obj, zone = batch.strings["object"][i], self._zones(batch)[i]
                alerts.append(
                    Signal.new(
                        source=self.source.name,
                        kind=kind,
                        entity=batch.entities[i],
                        ts=t,
                        window_start=float(scene[row]),
                        window_s=t - float(scene[row]),
                        score=float(batch.columns["confidence"][i]),
                        severity=severity,
                        model=MODEL,
                        evidence={
                            "object": obj,
                            "count": float(batch.columns["count"][i]),
                            "zone": zone,
                            "confidence": float(batch.columns["confidence"][i]),
                            **({"limit": float(limits[i])} if kind == "crowd" else {}),
                        },
                    )
                )
        return alerts
