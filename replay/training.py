"""Training from replay logs: warm the online state on a period and fit the window-outlier model.

The period's archived records run through the engines exactly as in replay
(so the online detectors and windows warm up as they did live); the
window-outlier detector collects the features of every closed hour, and an
IsolationForest is fitted on them with the source's declared parameters.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from models.batch.isolation import WindowOutlierModel
from models.batch.window_features import names
from models.batch.window_outlier import WindowOutlier
from models.engine import SourceEngine
from replay.archive import Chunk
from replay.offline import Engines, replay_archive
from settings import Settings
from streams.registry import Source


class TrainingError(Exception):
    """The period cannot train a model (wrong source, too little data)."""


def train_window_model(
    source: Source, chunks: Iterable[Chunk], settings: Settings, on_progress=None
) -> tuple[WindowOutlierModel, dict]:
    """Fit the source's window-outlier model on ``chunks``; returns it and its training metrics."""
    if "window_outlier" not in source.detectors:
        raise TrainingError(f"source {source.name!r} does not declare the window_outlier detector")
    collectors: list[WindowOutlier] = []

    def setup(engine: SourceEngine) -> None:
        for detector in engine.detectors:
            if isinstance(detector, WindowOutlier):
                detector.collect()
                collectors.append(detector)

    engines = Engines({source.name: source}, settings, on_signal=lambda s: None, on_progress=on_progress, setup=setup)
    summary = replay_archive(chunks, engines)
    parts = [x for d in collectors for x in d.collected]
    x = np.concatenate(parts) if parts else np.empty((0, len(names(source.windowed_fields))))
    spec = WindowOutlier.settings_of(source)
    if len(x) < 50:
        raise TrainingError(
            f"only {len(x)} complete entity-hours in the period ({summary.accepted:,} records); "
            f"need 50 or more (entities need {spec.min_records} records before their hours count)"
        )
    model = WindowOutlierModel(spec.trees, spec.max_samples, spec.quantile, spec.seed).fit(x)
    entities = sum(len(e.state) for e in engines.engines.values())
    metrics = {
        "records": summary.accepted,
        "entities": entities,
        "windows": len(x),
        "threshold": model.threshold_,
        "train_flag_rate": float(model.flag(x).mean()),
        "features": names(source.windowed_fields),
    }
    return model, metrics
