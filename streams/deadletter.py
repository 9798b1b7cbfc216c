"""Dead letters: each rejected record with its source, reason, position and original bytes.

The original travels base64-encoded, cut to its first ``keep`` bytes so that a
dead letter fits a stock broker's message limit (1 MB) whatever was sent; its
full length and SHA-256 say what it was and find it again in the topic.

>>> dl = dead_letter("air", "telemetry.air", 3, 42, "not_json", "bad", b"\\xff")
>>> dl["reason"], base64.b64decode(dl["original"]), dl["original_bytes"], dl["original_truncated"]
('not_json', b'\\xff', 1, False)
>>> big = dead_letter("air", "telemetry.air", 3, 43, "too_large", "10 MB", b"x" * 10_000_000, keep=1000)
>>> len(base64.b64decode(big["original"])), big["original_bytes"], big["original_truncated"]
(1000, 10000000, True)
"""

from __future__ import annotations

import base64
import hashlib
import time

KEEP_BYTES = 65_536


def dead_letter(
    source: str | None,
    topic: str,
    partition: int,
    offset: int,
    reason: str,
    detail: str,
    original: bytes,
    keep: int = KEEP_BYTES,
) -> dict:
    """The dead-letter record for one rejected input: the head of ``original`` (base64), its length and hash."""
    return {
        "source": source,
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "reason": reason,
        "detail": detail,
        "original": base64.b64encode(original[:keep]).decode("ascii"),
        "original_bytes": len(original),
        "original_sha256": hashlib.sha256(original).hexdigest(),
        "original_truncated": len(original) > keep,
        "rejected_at": time.time(),
    }
