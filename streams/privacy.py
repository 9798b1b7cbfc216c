"""Personal data: vehicle plates, person counts linked to places, and dwellings' identities.

Logs and exported files carry them masked unless asked otherwise; the API and
console show them in full only to operators and admins.

>>> mask_text("苏F·12345")
'苏F·****5'
>>> alert = {"entity": "power-0000012", "context": {"site": {"id": "site-0000012", "name": "dwelling 12",
...          "category": "dwelling"}, "vehicle": {"plate": "苏E·00042"}}}
>>> masked = mask_alert(alert)
>>> masked["entity"], masked["context"]["site"]["name"], masked["context"]["vehicle"]["plate"]
('po**********2', 'dw********2', '苏E·****2')
>>> mask_alert({"evidence": {"object": "person", "count": 41.0}})["evidence"]["count"]
'*'
"""

from __future__ import annotations

import logging
import re

# A Chinese plate: province character, letter, optional separator, 5-6 letters/digits.
PLATE = re.compile(r"[\u4e00-\u9fff][A-Z][·.\- ]?[A-HJ-NP-Z0-9]{5,6}")
PERSONAL_SITES = {"dwelling"}
PERSON_OBJECTS = {"person", "people", "pedestrian"}


def mask_text(text: str) -> str:
    """``text`` with all but its first two and last character hidden (a plate keeps its separator)."""
    if len(text) <= 3:
        return "*" * len(text)
    head, middle, tail = text[:2], text[2:-1], text[-1]
    if middle[:1] in "·.- " and PLATE.fullmatch(text):
        head, middle = text[:3], middle[1:]
    return head + "*" * len(middle) + tail


def _mask(value: object) -> object:
    if isinstance(value, dict):
        out = {k: _mask(v) for k, v in value.items()}
        if isinstance(out.get("plate"), str):
            out["plate"] = mask_text(out["plate"])
        if out.get("category") in PERSONAL_SITES:
            for key in ("id", "name"):
                if isinstance(out.get(key), str):
                    out[key] = mask_text(out[key])
        if out.get("object") in PERSON_OBJECTS and "count" in out:
            out["count"] = "*"
        site = (out.get("context") or {}).get("site") if isinstance(out.get("context"), dict) else None
        if isinstance(site, dict) and site.get("category") in PERSONAL_SITES and isinstance(out.get("entity"), str):
            out["entity"] = mask_text(out["entity"])
        return out
    if isinstance(value, list):
        return [_mask(v) for v in value]
    return value


def mask_alert(alert: dict) -> dict:
    """A copy of ``alert`` (or any alert-shaped document) with its personal data masked."""
    return _mask(alert)


def mask_logs() -> None:
    """From now on, every log record of this process has the plates in its message masked.

    Done where records are made (not per handler), so the handlers Faust or
    aiokafka set up later are covered too.
    """
    make = logging.getLogRecordFactory()
    if getattr(make, "masks_plates", False):
        return

    def masked(*args, **kwargs) -> logging.LogRecord:
        record = make(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:
            return record
        if PLATE.search(message):
            record.msg, record.args = PLATE.sub(lambda m: mask_text(m.group()), message), None
        return record

    masked.masks_plates = True
    logging.setLogRecordFactory(masked)
