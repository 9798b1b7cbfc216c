"""The envelope codec: a Kafka message value is one JSON record or a JSON array of records.

>>> decode(b'[{"entity": "a"}, {"entity": "b"}]').records
[{'entity': 'a'}, {'entity': 'b'}]
>>> decode(b'{"entity": "a"}').batch
False
>>> decode(b'not json').reason
'not_json'
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import orjson


@dataclass(slots=True)
class Decoded:
    """What one message holds: its records, or why none could be read."""

    records: list = field(default_factory=list)
    batch: bool = False
    reason: str | None = None
    detail: str = ""


def decode(value: bytes | None, max_bytes: int = 1_000_000) -> Decoded:
    """Parse a message value; never raises."""
    if not value:
        return Decoded(reason="empty", detail="message has no value")
    if len(value) > max_bytes:
        return Decoded(reason="oversize", detail=f"{len(value)} bytes > limit {max_bytes}")
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError:
        # orjson refuses numbers that overflow to infinity and NaN literals; the
        # standard library reads them, so the finite records of a batch survive
        # and the others are rejected one by one as not_finite.
        try:
            doc = json.loads(value)
        except (ValueError, RecursionError) as exc:
            return Decoded(reason="not_json", detail=str(exc)[:200])
    if isinstance(doc, list):
        return Decoded(records=doc, batch=True)
    if isinstance(doc, dict):
        return Decoded(records=[doc])
    return Decoded(reason="not_object", detail=f"message is a JSON {type(doc).__name__}")


def encode(records: list[dict] | dict) -> bytes:
    """One record as an object, several as an array."""
    return orjson.dumps(records, option=orjson.OPT_SERIALIZE_NUMPY)
