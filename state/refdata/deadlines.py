"""Deadlines of the alert lifecycle: how soon an alert must be acknowledged and resolved, by kind and severity.

From ``deadlines.toml`` in the reference data (the shipped default otherwise); the first rule whose kinds
(shell patterns) and severities both match decides.

>>> d = Deadlines.from_doc({"rules": [{"kinds": ["fire"], "acknowledge_min": 5, "resolve_min": 60},
...                                   {"severities": ["major"], "acknowledge_min": 15, "resolve_min": 480},
...                                   {"acknowledge_min": 240, "resolve_min": 4320}]}, "deadlines.toml")
>>> d.limits("fire", "info"), d.limits("dwell", "major"), d.limits("dwell", "warning")
((300.0, 3600.0), (900.0, 28800.0), (14400.0, 259200.0))
"""

from __future__ import annotations

import tomllib
from fnmatch import fnmatchcase
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from state.refdata.rule_tables import rules_of

DEFAULT_DEADLINES = Path(__file__).resolve().parent / "data" / "deadlines.toml"


class DeadlineError(ValueError):
    """A deadlines file that cannot be used; the message names the file and rule."""


class DeadlineRule(BaseModel):
    """Alerts of these kinds and severities are to be acknowledged and resolved within these minutes."""

    model_config = ConfigDict(extra="forbid")
    kinds: list[str] = Field(default_factory=lambda: ["*"], min_length=1)
    severities: list[str] = Field(default_factory=lambda: ["*"], min_length=1)
    acknowledge_min: float = Field(gt=0)
    resolve_min: float = Field(gt=0)

    @model_validator(mode="after")
    def _resolve_after_acknowledge(self) -> DeadlineRule:
        if self.resolve_min < self.acknowledge_min:
            raise ValueError("resolve_min is shorter than acknowledge_min")
        return self

    def matches(self, kind: str, severity: str) -> bool:
        return any(fnmatchcase(kind, k) for k in self.kinds) and any(fnmatchcase(severity, s) for s in self.severities)


class Deadlines:
    """The rules of one deadlines file, in order; the last should match everything."""

    def __init__(self, rules: list[DeadlineRule]):
        self.rules = rules

    @classmethod
    def from_doc(cls, doc: dict | None, origin: str) -> Deadlines:
        """Validate a parsed deadlines.toml (None: the shipped default)."""
        if doc is None:
            doc = tomllib.loads(DEFAULT_DEADLINES.read_text())
        try:
            rules = rules_of(DeadlineRule, doc, origin)
        except ValueError as exc:
            raise DeadlineError(str(exc)) from None
        if not rules or not rules[-1].matches("any_kind", "any_severity"):
            raise DeadlineError(f"{origin}: the last rule must match every kind and severity (a default)")
        return cls(rules)

    def limits(self, kind: str, severity: str) -> tuple[float, float]:
        """(acknowledge within, resolve within) in seconds for an alert of ``kind`` and ``severity``."""
        rule = next(r for r in self.rules if r.matches(kind, severity))
        return rule.acknowledge_min * 60.0, rule.resolve_min * 60.0
