"""A source declaration compiled into a typed JSON decoder: well-formed messages straight to columns.

The common case - every record of every message well-formed, with declared
fields only - decodes in one C pass (msgspec) into typed structs, whose
columns need no per-value checks in Python: types, string lengths and the
record's source name are checked while decoding, ranges and required fields
over whole columns after. A message it cannot read is None in what
:meth:`RecordSchema.decode` answers, a slice of records it would refuse makes
:meth:`RecordSchema.batch` answer None, and the caller parses those messages as
dicts for the :class:`~streams.validation.Validator`, which gives each bad
record its reason. The schema never accepts a record the validator refuses,
and gives the same columns (tests/test_record_schema.py holds it to that), so
live and replayed records raise the same alerts.

Unknown fields are refused rather than skipped: msgspec skips them without
reading them as strictly as orjson, and accepted records go to the replay log,
which orjson must be able to read back.

>>> from streams.registry import load_registry
>>> schema = RecordSchema(load_registry()["air"])
>>> messages = schema.decode([b'[{"entity": "st-1", "ts": 1700000000, "pm25": 35.5}]'], max_bytes=1000)
>>> schema.batch(messages[0]).columns["pm25"].tolist()
[35.5]
>>> schema.decode([b'{"entity": "st-1", "ts": 1700000000, "pm25": "high"}', b'[]'], max_bytes=1000)
[None, []]
"""

from __future__ import annotations

from operator import attrgetter
from typing import Annotated, Literal

import msgspec
import numpy as np

from settings import Settings
from streams.registry import FieldSpec, Source
from streams.validation import MAX_ENTITY_LEN, Batch, Validator, bounds, epoch_seconds

# ValidationError is a DecodeError; invalid UTF-8 raises a ValueError; a message without a value a TypeError.
_REFUSED = (msgspec.DecodeError, ValueError, TypeError)


def _annotation(spec: FieldSpec) -> object:
    if spec.numeric:
        return float  # JSON integers too; ranges and integrality are checked over the column
    if spec.type == "bool":
        return bool
    return Annotated[str, msgspec.Meta(max_length=spec.max_length)]


class RecordSchema:
    """Decodes a source's messages into typed structs, and those into a :class:`Batch`."""

    def __init__(self, source: Source, settings: Settings | None = None):
        self.source = source
        self.validator = Validator(source, settings)  # its time range and rules, shared
        names = [source.entity_field, source.time_field, "source", *source.fields]
        attrs = [f"f{i}" for i in range(len(names))]  # any field name works, keywords included
        kinds = [Literal[source.name], *map(_annotation, source.fields.values())]
        self.record = msgspec.defstruct(
            f"{source.name}_record",
            [(attrs[0], Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ENTITY_LEN)]), (attrs[1], float)]
            + [(a, kind | None, None) for a, kind in zip(attrs[2:], kinds)],
            rename=dict(zip(attrs, names)),
            forbid_unknown_fields=True,
            omit_defaults=True,
        )
        self._decode = msgspec.json.Decoder(list[self.record] | self.record).decode
        self._encode = msgspec.json.Encoder().encode
        self._get = dict(zip(names, map(attrgetter, attrs)))
        fields = source.fields.items()
        self._numeric = [(n, f, bounds(f)) for n, f in fields if f.numeric]
        self._bools = [(n, f) for n, f in fields if f.type == "bool"]
        self._strings = [(n, f) for n, f in fields if f.type == "string"]

    @classmethod
    def for_source(cls, source: Source, settings: Settings | None = None) -> RecordSchema | None:
        """The schema, or None where records cannot take the typed path: ISO-8601 event times (strings),
        or a field named ``source`` (that name is the record's own source)."""
        if source.time_format == "iso8601" or "source" in (*source.fields, source.entity_field, source.time_field):
            return None
        return cls(source, settings)

    def decode(self, values: list[bytes | None], max_bytes: int) -> list[list | None]:
        """Each message's records as structs, or None for a message that is empty, over ``max_bytes``, not
        JSON, or holds a record of the wrong shape (a missing entity or time, a mistyped or unknown field)."""
        try:  # all of them in one pass, the common case; one by one only when some message is refused
            if values and max(map(len, values)) <= max_bytes:
                return [doc if type(doc) is list else [doc] for doc in map(self._decode, values)]
        except _REFUSED:
            pass
        return [self._records(value, max_bytes) for value in values]

    def _records(self, value: bytes | None, max_bytes: int) -> list | None:
        if not value or len(value) > max_bytes:
            return None
        try:
            doc = self._decode(value)
        except _REFUSED:
            return None
        return doc if type(doc) is list else [doc]

    def batch(self, records: list) -> Batch | None:
        """The structs as a :class:`Batch`, exactly as the validator would give them; None when it would
        refuse any (a time outside the accepted range, a value out of range, a required field absent)."""
        src, get = self.source, self._get
        # msgspec read every time as a float: no type pass, as the validator needs over dicts
        ts = epoch_seconds(np.array(list(map(get[src.time_field], records)), dtype=np.float64), src.time_format)
        if self.validator.absurd(ts).any():
            return None
        columns: dict[str, np.ndarray] = {}
        for name, spec, (low, high) in self._numeric:
            values = np.array(list(map(get[name], records)), dtype=np.float64)  # absent (None): NaN
            absent = np.isnan(values)
            present = values[~absent]
            if (
                (present < low).any()
                or (present > high).any()
                or (spec.required and absent.any())
                or (spec.type == "int" and (present != np.floor(present)).any())
            ):
                return None
            columns[name] = values
        for name, spec in self._bools:
            col = list(map(get[name], records))
            if spec.required and None in col:
                return None
            columns[name] = np.array(col, dtype=np.float64)  # None: NaN
        strings = {}
        for name, spec in self._strings:
            col = strings[name] = list(map(get[name], records))
            if (spec.required and None in col) or (spec.values and not set(col) - {None} <= set(spec.values)):
                return None
        return Batch(np.arange(len(records)), list(map(get[src.entity_field], records)), ts, columns, strings)

    def encode(self, records: list) -> bytes:
        """The structs as comma-separated JSON objects (absent fields left out), for the replay log."""
        return self._encode(records)[1:-1]


def plain(record: object) -> object:
    """A record as dicts and lists: structs converted, anything else as it is."""
    return msgspec.to_builtins(record) if isinstance(record, msgspec.Struct) else record
