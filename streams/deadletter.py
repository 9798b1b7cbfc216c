"""Dead letters: each rejected record with its source, reason, position and original bytes.

>>> dl = dead_letter("air", "telemetry.air", 3, 42, "not_json", "bad", b"\\xff")
>>> dl["reason"], base64.b64decode(dl["original"])
('not_json', b'\\xff')
"""

from __future__ import annotations

import base64
import time


def dead_letter(
    source: str | None, topic: str, partition: int, offset: int, reason: str, detail: str, original: bytes
) -> dict:
    """The dead-letter record for one rejected input (``original`` base64-encoded)."""
    return {
        "source": source,
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "reason": reason,
        "detail": detail,
        "original": base64.b64encode(original).decode("ascii"),
        "rejected_at": time.time(),
    }
