"""The Numenta Anomaly Benchmark: its streams as `metric` records, and its scoring rules.

Scoring follows Lavin & Ahmad (2015): the earliest detection in a labelled
window earns a scaled sigmoid of its position (1 at the left edge); each
detection outside windows costs the profile's fp weight times a sigmoid of its
distance from the last window; each missed window costs the fn weight; the
first 15% of a file (at most 750 rows) is probation. Totals are normalised so
that detecting nothing scores 0 and a perfect detector 100.
"""

from __future__ import annotations

import bisect
import csv
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import orjson

PROFILES = {
    "standard": {"tp": 1.0, "fp": 0.11, "fn": 1.0},
    "reward_low_FP_rate": {"tp": 1.0, "fp": 0.22, "fn": 1.0},
    "reward_low_FN_rate": {"tp": 1.0, "fp": 0.11, "fn": 2.0},
}


@dataclass
class Stream:
    name: str  # e.g. "realKnownCause/nyc_taxi.csv"
    ts: list[float]
    values: list[float]
    windows: list[tuple[float, float]]


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.strip().replace(" ", "T")).replace(tzinfo=UTC).timestamp()


def load(nab_dir: Path) -> list[Stream]:
    """Every stream named in ``windows.json``, with its labelled windows."""
    windows = orjson.loads((nab_dir / "windows.json").read_bytes())
    streams = []
    for name in sorted(windows):
        ts, values = [], []
        with open(nab_dir / "data" / name, newline="") as f:
            for row in csv.DictReader(f):
                ts.append(_epoch(row["timestamp"]))
                values.append(float(row["value"]))
        streams.append(Stream(name, ts, values, [(_epoch(a), _epoch(b)) for a, b in windows[name]]))
    return streams


def records(streams: list[Stream]) -> list[dict]:
    """All rows as `metric` records, merged in time order (ties: by stream name)."""
    rows = [(t, s.name, v) for s in streams for t, v in zip(s.ts, s.values)]
    rows.sort(key=lambda r: (r[0], r[1]))
    return [{"source": "metric", "entity": name, "ts": t, "value": v} for t, name, v in rows]


def _sigmoid(pos: float) -> float:
    return -1.0 if pos > 3.0 else 2.0 / (1.0 + math.exp(5.0 * pos)) - 1.0


def _file_score(stream: Stream, detected: set[int], w: dict) -> tuple[float, int, int, int]:
    n = len(stream.ts)
    probation = min(math.floor(0.15 * n), 750)
    index = {t: i for i, t in enumerate(stream.ts)}
    spans = [(index[a], index[b]) for a, b in stream.windows]
    in_window: dict[int, tuple[int, int, int]] = {}
    for k, (left, right) in enumerate(spans):
        for i in range(left, right + 1):
            in_window[i] = (k, left, right)
    max_tp = _sigmoid(-1.0)
    best: dict[int, float] = {}
    scorable = {k for k, (left, right) in enumerate(spans) if right >= probation}
    fp_sum, fp = 0.0, 0
    for i in sorted(detected):
        if i < probation:
            continue
        hit = in_window.get(i)
        if hit is not None:
            k, left, right = hit
            s = _sigmoid(-(right - i + 1) / float(right - left + 1)) * w["tp"] / max_tp
            best[k] = max(best.get(k, -math.inf), s)
            continue
        before = [(lo, hi) for lo, hi in spans if hi < i]
        if before:
            left, right = before[-1]
            s = _sigmoid(abs(right - i) / (float(right - left + 1) - 1.0))
        else:
            s = -1.0
        fp_sum += s * w["fp"]
        fp += 1
    tp = len(best)
    fn = len(scorable) - tp
    return fp_sum + sum(best.values()) - w["fn"] * fn, tp, fp, fn


def detections(streams: list[Stream], alerts: list[dict]) -> dict[str, set[int]]:
    """Each stream's rows an alert falls on (its latest row at or before the alert's time), by stream name."""
    detected: dict[str, set[int]] = {s.name: set() for s in streams}
    by_name = {s.name: s for s in streams}
    for a in alerts:
        s = by_name.get(a.get("entity"))
        if s is None:
            continue
        t = a["ts"] if isinstance(a["ts"], (int, float)) else _epoch(a["ts"].replace("Z", ""))
        i = bisect.bisect_right(s.ts, t + 1e-6) - 1
        if i >= 0:
            detected[s.name].add(i)
    return detected


def file_scores(streams: list[Stream], detected: dict[str, set[int]], profile: str = "standard") -> list[tuple]:
    """Per stream, in order: its raw score for the rows ``detected`` in it, the raw score of detecting
    nothing, of detecting every window, and its tp/fp/fn counts (what :func:`normalised` adds up)."""
    w = PROFILES[profile]
    out = []
    for s in streams:
        raw, tp, fp, fn = _file_score(s, detected[s.name], w)
        null, _, _, _ = _file_score(s, set(), w)
        out.append((raw, null, w["tp"] * len(s.windows), tp, fp, fn))
    return out


def normalised(rows: list[tuple]) -> dict:
    """The normalised score and tp/fp/fn counts of some streams' :func:`file_scores` rows together."""
    raw, null, perfect, tp, fp, fn = (sum(r[j] for r in rows) for j in range(6))
    norm = 100.0 * (raw - null) / (perfect - null) if perfect != null else 0.0
    return {"score": round(norm, 2), "tp": tp, "fp": fp, "fn": fn}


def score(streams: list[Stream], alerts: list[dict], profile: str = "standard") -> dict:
    """Normalised score overall and per category, with tp/fp/fn counts."""
    groups: dict[str, list] = {}
    for s, row in zip(streams, file_scores(streams, detections(streams, alerts), profile)):
        for g in ("all", s.name.split("/")[0]):
            groups.setdefault(g, []).append(row)
    return {g: normalised(rows) for g, rows in groups.items()}
