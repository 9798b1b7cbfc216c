"""Learning from staff: which alerts do officers confirm, and which do they keep rejecting?

Staff marks (resolved = a real situation, false_positive = not) train an
online logistic regression over alert features (kind, source, detector,
severity, score, how often it repeated). An alert whose kind staff have
judged often enough and which the model expects to be rejected goes out one
severity step lower; it is never dropped, and a rule-mandated limit breach
(threshold rules, the AQI) keeps its severity whatever the labels say.

>>> fb = StaffFeedback(min_labels=5)
>>> noisy = {"source": "power", "kind": "kw_consumption_abnormal", "model": "consumption@1", "score": 0.6,
...          "detector_severity": "warning", "count": 1}
>>> limit = dict(noisy, kind="voltage_low", model="threshold@1")
>>> for _ in range(20):
...     fb.learn_one(noisy, False)
...     fb.learn_one(limit, False)
>>> fb.adjust(noisy, "warning"), fb.adjust(limit, "warning")
('info', 'warning')
"""

from __future__ import annotations

import math
from collections import Counter

from models.signal import SEVERITIES, is_limit_breach


def features(alert: dict) -> dict[str, float]:
    """What the classifier sees of an alert."""
    return {
        f"kind={alert['kind']}": 1.0,
        f"source={alert['source']}": 1.0,
        f"model={alert['model'].split('@')[0]}": 1.0,
        f"severity={alert['detector_severity']}": 1.0,
        "score": float(alert["score"]),
        "log_count": math.log1p(float(alert.get("count", 1))),
    }


class StaffFeedback:
    """Online classifier of "will staff confirm this alert?", and the severity step it allows."""

    def __init__(self, min_labels: int = 10, reject_below: float = 0.3, learning_rate: float = 0.1):
        self.model = None  # built at the first label: River (~75 MB with SciPy) only where staff label alerts
        self.learning_rate = learning_rate
        self.min_labels, self.reject_below = min_labels, reject_below
        self.labels: Counter[str] = Counter()  # per kind

    def learn_one(self, alert: dict, confirmed: bool) -> None:
        if self.model is None:
            from river import linear_model, optim

            self.model = linear_model.LogisticRegression(optimizer=optim.SGD(self.learning_rate))
        self.model.learn_one(features(alert), confirmed)
        self.labels[alert["kind"]] += 1

    def confirm_proba(self, alert: dict) -> float:
        if self.model is None:  # no label yet: no opinion
            return 0.5
        return float(self.model.predict_proba_one(features(alert)).get(True, 0.5))

    def adjust(self, alert: dict, severity: str) -> str:
        """``severity``, one step lower if staff keep rejecting alerts like this one (never for limit breaches)."""
        if is_limit_breach(alert["model"]) or self.labels[alert["kind"]] < self.min_labels:
            return severity
        if self.confirm_proba(alert) >= self.reject_below:
            return severity
        return SEVERITIES[max(SEVERITIES.index(severity) - 1, 0)]
