"""Detectors by the name a source declaration uses in its ``detectors`` list."""

from __future__ import annotations

from models.batch.window_outlier import WindowOutlier
from models.online.anomaly import AnomalyDetector
from models.online.consumption import ConsumptionProfile
from models.rules.aqi import AirQualityIndex
from models.rules.night_flow import NightFlow
from models.rules.peer_use import PeerUse
from models.rules.sensor_health import SensorHealth
from models.rules.silence import SilenceWatch
from models.rules.site_status import ClosedSiteUse
from models.rules.spatial import SpatialOutlier
from models.rules.threshold import ThresholdRules
from models.rules.vehicle import VehicleMovements
from models.rules.video import VideoEvents

DETECTORS = {d.name: d for d in (ThresholdRules, AnomalyDetector, SensorHealth, AirQualityIndex, SilenceWatch,
                                      VideoEvents, NightFlow, VehicleMovements,
                                      ConsumptionProfile, ClosedSiteUse, PeerUse, SpatialOutlier, WindowOutlier)}


def _reads(detector: type, source) -> dict[str, int]:
    """Window -> closed buckets a detector reads: its ``windows``, or ``reads(source)`` where its source's
    rules decide."""
    return detector.reads(source) if hasattr(detector, "reads") else getattr(detector, "windows", {})


def windows_needed(source) -> dict[str, int]:
    """Window -> how many closed buckets a source's detectors read at most (the only rings its state keeps,
    sized by this)."""
    needed: dict[str, int] = {}
    for name in source.detectors:
        for window, buckets in _reads(DETECTORS.get(name), source).items():
            needed[window] = max(needed.get(window, 0), buckets)
    return needed


def keeps_needed(source) -> frozenset[str]:
    """The optional state columns (``EntityState``'s ``OPTIONAL``) that the source's detectors read."""
    return frozenset().union(*(getattr(DETECTORS.get(name), "keeps", ()) for name in source.detectors))


def build(source, state) -> list:
    """The detectors a source declares, bound to its state; unknown names, or window rings a detector needs
    and the settings leave out, are an error."""
    unknown = [d for d in source.detectors if d not in DETECTORS]
    if unknown:
        raise ValueError(f"source {source.name!r} names unknown detector(s) {unknown}; "
                         f"known: {sorted(DETECTORS)}")
    for name in source.detectors:
        missing = [w for w in _reads(DETECTORS[name], source) if w not in state.windows]
        if missing:
            raise ValueError(f"source {source.name!r}: the {name} detector needs the {', '.join(missing)} "
                             "window (WARDEN_WINDOWS)")
    return [DETECTORS[name](source, state) for name in source.detectors]
