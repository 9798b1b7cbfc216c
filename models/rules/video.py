"""Video analytics events: detections in a zone under a ban, smoke or fire, crowds over a zone's limit.

Cameras repeat a detection every few seconds while a scene lasts; one scene
(camera, kind) raises one alert until the camera has been free of that kind
for ``scene_gap_s``.
"""

from __future__ import annotations

import fnmatch

import numpy as np

from models.signal import new_signal
from models.calendar import in_period
from state.entity_state import EntityState
from streams.registry import Source
from streams.validation import Batch

MODEL = "video@1"


class VideoEvents:
    """Raises ``ban_<name>``, ``smoke``/``fire`` and ``crowd`` alerts from camera analytics events."""

    name = "video"

    def __init__(self, source: Source, state: EntityState):
        self.source, self.spec = source, source.video
        self.kinds = [f"ban_{b.name}" for b in self.spec.bans] + list(self.spec.alarm_objects) + ["crowd"]
        for kind in self.kinds:
            state.store.add(f"video.seen.{kind}", np.float64, fill=-np.inf)

    def detect(self, batch: Batch, rows: np.ndarray, state: EntityState) -> list[dict]:
        objects = np.array(batch.strings["object"], dtype=object)
        zones = np.array([z or "" for z in self._zones(batch)], dtype=object)
        # zone patterns are matched once per distinct zone, not per record
        names, zone_of = np.unique(zones, return_inverse=True)
        count = batch.columns["count"]
        confident = batch.columns["confidence"] >= self.spec.min_confidence
        hits: list[tuple[str, np.ndarray, str]] = []
        for ban in self.spec.bans:
            mask = confident & np.isin(objects, ban.objects) & (count > 0)
            mask &= np.array([any(fnmatch.fnmatchcase(z, p) for p in ban.zones) for z in names])[zone_of]
            if mask.any():
                mask &= in_period(batch.ts, ban.start, ban.end, self.spec.utc_offset_h)
            hits.append((f"ban_{ban.name}", mask, ban.severity))
        for obj in self.spec.alarm_objects:
            hits.append((obj, confident & (objects == obj) & (count > 0), "critical"))
        limits = np.array([self._crowd_limit(z) for z in names], dtype=np.float64)[zone_of]
        hits.append(("crowd", confident & (count > limits), "warning"))
        alerts = []
        for kind, mask, severity in hits:
            alerts += self._scenes(kind, mask, severity, batch, rows, state, limits)
        return alerts

    @staticmethod
    def _zones(batch: Batch) -> list:
        return batch.strings.get("zone") or [None] * len(batch)

    def _crowd_limit(self, zone: str) -> float:
        for pattern, limit in self.spec.crowd_limits.items():
            if fnmatch.fnmatchcase(zone, pattern):
                return float(limit)
        return float(self.spec.crowd_default)

    def _scenes(self, kind: str, mask: np.ndarray, severity: str, batch: Batch, rows: np.ndarray,
                state: EntityState, limits: np.ndarray) -> list[dict]:
        """One alert per scene: a hit more than ``scene_gap_s`` after the camera's previous hit of that kind."""
        if not mask.any():
            return []
        seen = state.store[f"video.seen.{kind}"]
        order = state.sequence.order[mask[state.sequence.order]]
        alerts = []
        for i in order.tolist():
            row, t = int(rows[i]), float(batch.ts[i])
            if t - seen[row] > self.spec.scene_gap_s:
                obj, zone = batch.strings["object"][i], self._zones(batch)[i]
                alerts.append(new_signal(
                    source=self.source.name, kind=kind, entity=batch.entities[i], ts=t, window_start=t,
                    window_s=0.0, score=float(batch.columns["confidence"][i]), severity=severity, model=MODEL,
                    evidence={"object": obj, "count": float(batch.columns["count"][i]), "zone": zone,
                              "confidence": float(batch.columns["confidence"][i]),
                              **({"limit": float(limits[i])} if kind == "crowd" else {})}))
            seen[row] = max(seen[row], t)
        return alerts
