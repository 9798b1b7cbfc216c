"""Leave-one-category-out cross-validation of the anomaly detector's settings on the NAB corpus.

For each labelled category in turn: every configuration of a grid is scored on the other categories' files
together, the best is chosen there, and scored on the held-out category. The mean of those held-out scores,
beside the shipped configuration's score on every file, says whether a configuration chosen on what was
seen carries to what was not; nothing is chosen by its score on all files at once.

>>> grid_configs({"threshold": [0.99, 0.999], "refractory": [60]})
[{'threshold': 0.99, 'refractory': 60}, {'threshold': 0.999, 'refractory': 60}]
>>> table = {("x", "a"): 10.0, ("x", "b"): 50.0, ("y", "a"): 20.0, ("y", "b"): 40.0}
>>> score = lambda cfg, cats: sum(table[cfg, c] for c in cats) / len(cats)
>>> [(f["held_out"], f["chosen"], f["score"]) for f in cross_validate(["a", "b"], ["x", "y"], score)]
[('a', 'x', 10.0), ('b', 'y', 40.0)]
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

from streams.registry import Registry

# Around the shipped defaults: the alert threshold on the likelihood, the records between alerts, and the
# recent-surprise window (the settings the detector's NAB score is most sensitive to).
DEFAULT_GRID: dict[str, list] = {
    "threshold": [0.99999, 0.999995, 0.999998],
    "refractory": [60, 120, 240],
    "short_window": [10, 15, 20],
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
