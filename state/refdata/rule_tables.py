"""Rule tables of the reference data's TOML files (``[[rules]]``), each rule validated by its model.

>>> from pydantic import BaseModel
>>> class R(BaseModel):
...     n: int
>>> [r.n for r in rules_of(R, {"rules": [{"n": 1}]}, "x.toml")]
[1]
>>> rules_of(R, {"rules": [{"n": "one"}]}, "x.toml")
Traceback (most recent call last):
...
ValueError: x.toml: rules[0]: n: Input should be a valid integer, unable to parse string as an integer
"""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


def rules_of(model: type[M], doc: dict, origin: str) -> list[M]:
    """``doc["rules"]`` as ``model`` instances; ValueError naming the file, the rule and the field otherwise."""
    rules = []
    for k, rule in enumerate(doc.get("rules", [])):
        try:
            rules.append(model.model_validate(rule))
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(map(str, err["loc"]))
            raise ValueError(f"{origin}: rules[{k}]{': ' + where if where else ''}: {err['msg']}") from None
    return rules
