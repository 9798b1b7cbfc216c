"""Per-kind settings written as shell patterns of alert kinds (``"*_daily_over_limit"``), looked up once per kind.

>>> table = KindPatterns({"*_daily_over_limit": 86_400.0, "*": 7200.0})
>>> table("no2_daily_over_limit"), table("crowd")
(86400.0, 7200.0)
>>> KindPatterns({"speeding*": "vehicle"}, default="")("silent")
''
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Generic, TypeVar

T = TypeVar("T")


class KindPatterns(Generic[T]):
    """The value of the first pattern (other than ``*``) that matches a kind; ``*``'s, else ``default``."""

    def __init__(self, patterns: dict[str, T], default: T | None = None):
        self.patterns = patterns
        self.default = patterns.get("*", default)
        self._cache: dict[str, T | None] = {}

    def __call__(self, kind: str) -> T | None:
        if kind not in self._cache:
            self._cache[kind] = next(
                (v for p, v in self.patterns.items() if p != "*" and fnmatchcase(kind, p)), self.default
            )
        return self._cache[kind]
