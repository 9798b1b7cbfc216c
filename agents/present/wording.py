"""The words people read, per language: alert kinds' titles and descriptions, measures, evidence labels,
statuses, actions and the console's own text, from ``text/<language>.toml``.

A kind is looked up exactly first, then by the shell patterns in the file's order; ``{field}`` in a pattern's
title is the measure its ``*`` stands for, in the same language. A kind nobody has worded reads as its name.

>>> zh, en = Wording.of("zh-CN"), Wording.of("en")
>>> zh.title("kwh_backwards"), en.title("pm25_daily_over_limit"), zh.title("value_anomaly")
('电能表读数倒退', 'PM2.5 24-hour mean over the limit', '读数异常波动')
>>> en.knows("made_up_kind"), en.title("made_up_kind")
(False, 'Made up kind')
>>> en.term("status", "false_positive"), zh.term("words", "hours", n=3)
('false positive', '3 小时')
"""

from __future__ import annotations

import re
import tomllib
from functools import cache
from importlib.resources import files

LANGUAGES = ("zh-CN", "en")


class Wording:
    """One language's words."""

    def __init__(self, text: dict):
        self.text = text
        kinds = text["kinds"]
        self.exact = {k: v for k, v in kinds.items() if "*" not in k}
        self.patterns = [(re.compile(re.escape(k).replace(r"\*", "(.+)")), v) for k, v in kinds.items() if "*" in k]

    @classmethod
    @cache
    def of(cls, language: str) -> Wording:
        """The wording of ``language`` (one of :data:`LANGUAGES`), read once."""
        if language not in LANGUAGES:
            raise ValueError(f"unknown language {language!r}; known: {', '.join(LANGUAGES)}")
        return cls(tomllib.loads(files("agents.present").joinpath(f"text/{language}.toml").read_text("utf-8")))

    @cache  # noqa: B019 - one Wording per language, alive as long as the process
    def kind(self, kind: str) -> tuple[str, str]:
        """``(title, description)`` of an alert kind."""
        if kind in self.exact:
            return self.exact[kind]["title"], self.exact[kind]["description"]
        for pattern, words in self.patterns:
            if m := pattern.fullmatch(kind):
                field = self.field(m.group(1))
                title = words["title"].format(field=field)
                return title[:1].upper() + title[1:], words["description"]
        return kind.replace("_", " ").capitalize(), ""

    def knows(self, kind: str) -> bool:
        """Whether ``kind`` has words of its own (exactly or by a pattern), not just its name."""
        return kind in self.exact or any(p.fullmatch(kind) for p, _ in self.patterns)

    def title(self, kind: str) -> str:
        return self.kind(kind)[0]

    def description(self, kind: str) -> str:
        return self.kind(kind)[1]

    def field(self, name: str) -> str:
        """A measure's name (a source field), or the field's own name where it has none."""
        return self.text["fields"].get(name, name)

    def term(self, section: str, key: str, **values: object) -> str:
        """A word from ``section`` (severity, status, actions, words, ui, evidence), filled with ``values``;
        the key itself where the section lacks it."""
        word = self.text[section].get(key)
        return key.replace("_", " ") if word is None else word.format(**values) if values else word
