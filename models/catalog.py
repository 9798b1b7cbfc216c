"""The catalog of detectors, by the name a source declaration uses, and the checking of declarations.

A source names its detectors in ``detectors = [...]`` and configures each by
the table of the same name; :func:`load_sources` reads every declaration and
has each detector validate its own table, so a mistake is reported when the
declarations are loaded, with the file and the key.

>>> sorted(DETECTORS)[:3], load_sources()["gps"].detectors
(['anomaly', 'aqi', 'consumption'], ['vehicle'])
"""

from __future__ import annotations

from pydantic import ValidationError

from models.base import Detector
from models.batch.window_outlier import WindowOutlier
from models.online.anomaly import Anomaly
from models.online.consumption import Consumption
from models.rules.aqi import Aqi
from models.rules.health import Health
from models.rules.night_flow import NightFlow
from models.rules.peer_use import PeerUse
from models.rules.silence import Silence
from models.rules.site_status import SiteStatus
from models.rules.spatial import Spatial
from models.rules.threshold import Threshold
from models.rules.vehicle import Vehicle
from models.rules.video import Video
from settings import Settings
from state.entity_state import EntityState
from streams.registry import Registry, Source, SourceError, describe, load_registry

DETECTORS: dict[str, type[Detector]] = {
    d.name: d
    for d in (
        Threshold,
        Anomaly,
        Health,
        Aqi,
        Silence,
        Video,
        NightFlow,
        Vehicle,
        Consumption,
        SiteStatus,
        PeerUse,
        Spatial,
        WindowOutlier,
    )
}
TABLES = {d.table_key: name for name, d in DETECTORS.items()}  # a declaration's table -> its detector


def detectors_of(source: Source) -> list[type[Detector]]:
    """The detector classes a source names, in its order; SourceError for a name the catalog lacks."""
    unknown = [d for d in source.detectors if d not in DETECTORS]
    if unknown:
        raise SourceError(
            f"{source.path or source.name}: detectors: unknown detector(s) {unknown}; known: {sorted(DETECTORS)}"
        )
    return [DETECTORS[name] for name in source.detectors]


def check_source(source: Source) -> None:
    """SourceError (naming the file and key) unless every detector the source names exists and every
    detector table is valid; the named detectors are also checked against the source's fields."""
    where = source.path or source.name
    detectors_of(source)
    stray = [key for key in source.tables if key not in TABLES]
    if stray:
        raise SourceError(f"{where}: {stray[0]}: no such key or detector table")
    for name in sorted({TABLES[key] for key in source.tables} | set(source.detectors)):
        detector = DETECTORS[name]
        try:
            if name in source.detectors:
                detector.configure(source)
            else:
                detector.settings_of(source)
        except ValidationError as exc:
            raise SourceError(f"{where}: {describe(exc, detector.table_key)}") from exc
        except ValueError as exc:
            raise SourceError(f"{where}: {detector.table_key}: {exc}") from exc


def load_sources(settings: Settings | None = None) -> Registry:
    """Every declared source (:func:`streams.registry.load_registry`), each checked by its detectors."""
    registry = load_registry(settings)
    for source in registry.values():
        check_source(source)
    return registry


def windows_needed(source: Source) -> dict[str, int]:
    """Window -> how many closed buckets a source's detectors read at most (the only rings its state keeps,
    sized by this)."""
    needed: dict[str, int] = {}
    for detector in detectors_of(source):
        for window, buckets in detector.reads(source).items():
            needed[window] = max(needed.get(window, 0), buckets)
    return needed


def keeps_needed(source: Source) -> frozenset[str]:
    """The optional state columns (``EntityState``'s ``OPTIONAL``) that the source's detectors read."""
    return frozenset().union(*(detector.keeps for detector in detectors_of(source)))


def build(source: Source, state: EntityState) -> list[Detector]:
    """The detectors a source declares, bound to its state (each configures itself from its table); window
    rings a detector needs and the settings leave out are an error."""
    detectors = detectors_of(source)
    for detector in detectors:
        missing = [w for w in detector.reads(source) if w not in state.windows]
        if missing:
            raise ValueError(
                f"source {source.name!r}: the {detector.name} detector needs the {', '.join(missing)} window "
                "(WARDEN_WINDOWS)"
            )
    return [detector(source, state) for detector in detectors]
