"""A window-outlier model: an IsolationForest over window features, calibrated on its training windows.

Scores are the share of training windows less unusual than the one scored
(0..1), so the alert threshold is a quantile of the training data - chosen by
the model, not tuned per stream. Missing features (NaN) count as typical (0).

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> model = WindowOutlierModel(trees=50, quantile=0.99).fit(rng.normal(size=(2000, 3)))
>>> model.flag(np.array([[0.1, 0.0, -0.2], [9.0, 9.0, 9.0]])).tolist()
[False, True]
"""

from __future__ import annotations

import numpy as np
from sklearn.ensemble import IsolationForest


class WindowOutlierModel:
    """IsolationForest + empirical calibration; scikit-learn style ``fit``, then ``score`` / ``flag``."""

    def __init__(self, trees: int = 100, max_samples: int = 256, quantile: float = 0.999, seed: int = 42):
        self.trees, self.max_samples, self.quantile, self.seed = trees, max_samples, quantile, seed

    def fit(self, x: np.ndarray) -> WindowOutlierModel:
        if len(x) < 2:
            raise ValueError(f"need at least 2 training windows, got {len(x)}")
        x = np.nan_to_num(x)
        self.forest_ = IsolationForest(
            n_estimators=self.trees, max_samples=min(self.max_samples, len(x)), random_state=self.seed, n_jobs=1
        ).fit(x)
        self.reference_ = np.sort(self._raw(x))
        self.threshold_ = float(np.quantile(self.reference_, self.quantile))
        return self

    def _raw(self, x: np.ndarray) -> np.ndarray:
        return -self.forest_.score_samples(np.nan_to_num(x))

    def score(self, x: np.ndarray) -> np.ndarray:
        """Share of training windows scoring below each row (1.0: more unusual than all of them)."""
        return np.searchsorted(self.reference_, self._raw(x), side="left") / len(self.reference_)

    def flag(self, x: np.ndarray) -> np.ndarray:
        """Rows more unusual than the training quantile."""
        return self._raw(x) > self.threshold_
