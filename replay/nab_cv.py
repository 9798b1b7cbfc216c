"""Leave-one-category-out cross-validation of the anomaly detector's settings on the NAB corpus.

For each labelled category in turn: every configuration of a grid is scored on the other categories' files
together, the best is chosen there, and scored on the held-out category. The mean of those held-out scores,
beside the shipped configuration's mean over the same categories, says whether a configuration chosen on what
was seen carries to what was not; nothing is chosen by its score on all files at once.

Each configuration runs the anomaly detector's compiled loop over each stream alone (:func:`detector_rows`): a
stream is one entity, so this is what the detector alerts on in a replay through the engine, without the
engine's cost per record (the `metric` source's other detectors raise nothing on NAB); the CLI's test holds
the two equal.

>>> grid_configs({"threshold": [0.99, 0.999], "refractory": [60]})
[{'threshold': 0.99, 'refractory': 60}, {'threshold': 0.999, 'refractory': 60}]
>>> table = {("x", "a"): 10.0, ("x", "b"): 50.0, ("y", "a"): 20.0, ("y", "b"): 40.0}
>>> score = lambda cfg, cats: sum(table[cfg, c] for c in cats) / len(cats)
>>> [(f["held_out"], f["chosen"], f["score"]) for f in cross_validate(["a", "b"], ["x", "y"], score)]
[('a', 'x', 10.0), ('b', 'y', 40.0)]
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from models.online.anomaly import Anomaly, AnomalySettings, AnomalyState
from replay.nab import PROFILES, Stream, file_scores
from streams.registry import Registry

# The settings the detector's NAB score is most sensitive to, each well either side of its shipped value: the
# alert threshold on the likelihood, the records between alerts, the recent surprise's and its long-run
# distribution's windows, how far from expected a new extreme must be, and the shape memory's tolerance.
DEFAULT_GRID: dict[str, list] = {
    "threshold": [0.9999, 0.99995, 0.99999, 0.999995, 0.999999],
    "refractory": [60, 120, 240, 480],
    "short_window": [8, 15, 25],
    "long_window": [1000, 2000, 4000],
    "beyond_z": [2.0, 3.0, 4.0],
    "shape_tolerance": [0.06, 0.09, 0.12],
}


def grid_configs(grid: dict[str, list]) -> list[dict]:
    """Every combination of the grid's values, in the grid's order."""
    names = list(grid)
    return [dict(zip(names, values)) for values in itertools.product(*(grid[n] for n in names))]


def cross_validate(
    categories: list[str], configs: list, score: Callable[[object, list[str]], float], always: list[str] = ()
) -> list[dict]:
    """Per held-out category: the configuration with the best ``score(config, the other categories and
    ``always``)`` (the first of equals), its score there, and its score on the held-out category."""
    folds = []
    for held in categories:
        seen = [c for c in categories if c != held] + list(always)
        chosen = max(configs, key=lambda cfg: (score(cfg, seen), -configs.index(cfg)))
        folds.append({"held_out": held, "chosen": chosen, "seen": score(chosen, seen), "score": score(chosen, [held])})
    return folds


def with_anomaly(registry: Registry, overrides: dict) -> Registry:
    """``registry``'s ``metric`` source only, its ``[anomaly]`` table with ``overrides``."""
    source = registry["metric"]
    table = {**source.tables.get("anomaly", {}), **overrides}
    return Registry([source.model_copy(update={"tables": {**source.tables, "anomaly": table}})])


def anomaly_settings(registry: Registry, overrides: dict) -> AnomalySettings:
    """The ``metric`` source's ``[anomaly]`` settings with ``overrides``."""
    return Anomaly.settings_of(with_anomaly(registry, overrides)["metric"])


def detector_rows(streams: list[Stream], spec: AnomalySettings) -> dict[str, set[int]]:
    """Each stream's alerting rows under ``spec``, by name: the detector's loop over the stream as one entity."""
    out = {}
    for s in streams:
        _, alert = AnomalyState(spec).learn_score_many(np.asarray(s.values), np.asarray(s.ts))
        out[s.name] = set(np.flatnonzero(alert).tolist())
    return out


_streams: list[Stream] = []  # a scoring process's streams (score_configs)


def _hold(streams: list[Stream]) -> None:
    _streams[:] = streams


def _file_scores(spec: AnomalySettings) -> dict[str, list[tuple]]:
    found = detector_rows(_streams, spec)
    return {profile: file_scores(_streams, found, profile) for profile in PROFILES}


def score_configs(streams: list[Stream], specs: list[AnomalySettings], processes: int | None = None) -> Iterator:
    """Per configuration in ``specs``, in order: per profile, each stream's :func:`replay.nab.file_scores` row;
    configurations are spread over ``processes`` (default: one per core)."""
    processes = processes or os.cpu_count() or 1
    context = multiprocessing.get_context("fork")  # the compiled loop comes with the process, not compiled again
    pool = ProcessPoolExecutor(processes, mp_context=context, initializer=_hold, initargs=(streams,))
    # map submits every configuration now, so the processes fork here, before the caller starts threads of its
    # own (a progress bar's)
    chunk = max(1, min(16, len(specs) // (4 * processes)))
    return _closing(pool, pool.map(_file_scores, specs, chunksize=chunk))


def _closing(pool: ProcessPoolExecutor, results: Iterator) -> Iterator:
    with pool:
        yield from results
