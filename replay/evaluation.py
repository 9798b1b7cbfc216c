"""Alerts against labels: precision, recall, F1 and detection delay per alert kind; a timeline plot.

Labels are windows: ground truth (``{"kind", "entity" | "entities", "start",
"end"}``, optionally ``"alert_kinds"`` listing the alert kinds that detect it)
and staff marks exported by the archiver (a resolved alert is a true window
from its first to its last signal; a false positive adds no window, so its
alerts count against precision). An alert detects a window of its kind and
entity when its span [first seen, last seen] meets [start, end + grace].

>>> w = [Window("leak", "m1", 100.0, 200.0)]
>>> a = [{"kind": "leak", "entity": "m1", "first_seen": "1970-01-01T00:02:30Z", "last_seen": "1970-01-01T00:02:30Z"},
...      {"kind": "leak", "entity": "m2", "first_seen": "1970-01-01T00:02:30Z", "last_seen": "1970-01-01T00:02:30Z"}]
>>> r = score(a, w)["leak"]
>>> r.precision, r.recall, r.median_delay_s
(0.5, 1.0, 50.0)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median

import orjson

from streams.event_time import epoch
from streams.validation import parse_time


class LabelError(ValueError):
    """A label file line that is not a label."""


@dataclass(slots=True)
class Window:
    kind: str  # the alert kind that detects it
    entity: str
    start: float
    end: float
    source: str | None = None


@dataclass
class KindResult:
    kind: str
    alerts: int = 0
    true_alerts: int = 0
    windows: int = 0
    detected: int = 0
    delays: list[float] = field(default_factory=list)

    @property
    def precision(self) -> float | None:
        return self.true_alerts / self.alerts if self.alerts and self.windows else None

    @property
    def recall(self) -> float | None:
        return self.detected / self.windows if self.windows else None

    @property
    def f1(self) -> float | None:
        p, r = self.precision, self.recall
        return None if p is None or r is None else (2 * p * r / (p + r) if p + r else 0.0)

    @property
    def median_delay_s(self) -> float | None:
        return median(self.delays) if self.delays else None

    def row(self) -> dict:
        return {
            "kind": self.kind,
            "alerts": self.alerts,
            "true_alerts": self.true_alerts,
            "windows": self.windows,
            "detected": self.detected,
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "median_delay_s": self.median_delay_s,
        }


def _docs(paths: Iterable[Path], what: str) -> Iterator[tuple[dict, str]]:
    """(parsed line, "file:line") for each non-blank line; one that is not JSON is a :class:`LabelError`."""
    for path in paths:
        for n, line in enumerate(path.read_bytes().splitlines(), start=1):
            if line.strip():
                try:
                    yield orjson.loads(line), f"{path}:{n}"
                except orjson.JSONDecodeError as exc:
                    raise LabelError(f"{path}:{n}: not a {what} ({type(exc).__name__}: {exc})") from None


BAD_LINE = (KeyError, TypeError, ValueError, AttributeError)


def read_labels(paths: Iterable[Path]) -> list[Window]:
    """Windows from label files (ground truth and staff marks); a bad line is a :class:`LabelError`."""
    windows, seen_staff = [], set()
    for doc, where in _docs(paths, "label"):
        try:
            if doc.get("type") == "staff":
                if doc["id"] + doc["at"] in seen_staff:
                    continue  # exported twice (a crash between write and cursor)
                seen_staff.add(doc["id"] + doc["at"])
                if doc["label"]:
                    a = doc["alert"]
                    windows.append(
                        Window(a["kind"], a["entity"], epoch(a["first_seen"]), epoch(a["last_seen"]), a.get("source"))
                    )
                continue
            start, end = parse_time(doc["start"]), parse_time(doc["end"])
            if start is None or end is None or end < start:
                raise ValueError("start and end must be times, start first")
            entities = doc.get("entities") or [doc["entity"]]
            for kind in doc.get("alert_kinds") or [doc["kind"]]:
                windows += [Window(kind, str(e), start, end, doc.get("source")) for e in entities]
        except BAD_LINE as exc:
            raise LabelError(f"{where}: not a label ({type(exc).__name__}: {exc})") from None
    return windows


def concerns(alert: dict) -> list[str]:
    """The entities an alert is about: its own, or a group's members (:mod:`models.grouping`)."""
    return alert.get("members") or [alert["entity"]]


def score(alerts: list[dict], windows: list[Window], grace_s: float = 0.0) -> dict[str, KindResult]:
    """Per alert kind: alerts, how many meet a labelled window, windows detected and their delays."""
    results: dict[str, KindResult] = {}
    by_key: dict[tuple[str, str], list[Window]] = {}
    for w in windows:
        by_key.setdefault((w.kind, w.entity), []).append(w)
        results.setdefault(w.kind, KindResult(w.kind)).windows += 1
    first_hit: dict[int, float] = {}
    for a in alerts:
        r = results.setdefault(a["kind"], KindResult(a["kind"]))
        r.alerts += 1
        lo, hi = epoch(a["first_seen"]), epoch(a["last_seen"])
        hit = False
        for w in (w for e in concerns(a) for w in by_key.get((a["kind"], e), [])):
            if lo <= w.end + grace_s and hi >= w.start:
                hit = True
                first_hit[id(w)] = min(first_hit.get(id(w), float("inf")), max(lo, w.start))
        r.true_alerts += hit
    for w in windows:
        if id(w) in first_hit:
            r = results[w.kind]
            r.detected += 1
            r.delays.append(first_hit[id(w)] - w.start)
    return dict(sorted(results.items()))


def plot(
    path: Path,
    series: dict[str, tuple[list[float], list[float]]],
    windows: list[Window],
    alerts_by_version: dict[str, list[dict]],
    title: str,
) -> None:
    """A PNG: per entity, its readings over time, labelled windows shaded, each version's alerts marked."""
    import matplotlib

    matplotlib.use("Agg")
    from datetime import UTC, datetime

    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    def dt(t: float) -> datetime:
        return datetime.fromtimestamp(t, UTC)

    entities = list(series)
    fig, axes = plt.subplots(len(entities), 1, figsize=(11, 2.6 * len(entities)), squeeze=False, sharex=False)
    colours = ["tab:red", "tab:blue", "tab:green", "tab:purple"]
    for ax, entity in zip(axes[:, 0], entities):
        ts, values = series[entity]
        ax.plot([dt(t) for t in ts], values, lw=0.7, color="0.3")
        for w in windows:
            if w.entity == entity:
                ax.axvspan(dt(w.start), dt(w.end), color="gold", alpha=0.35, lw=0)
        scores = ax.twinx()
        scores.set_ylim(0, 1.1)
        scores.set_ylabel("alert score", fontsize=7)
        for i, (version, alerts) in enumerate(alerts_by_version.items()):
            mine = [a for a in alerts if a["entity"] == entity]
            scores.scatter(
                [dt(epoch(a["first_seen"])) for a in mine],
                [a["score"] for a in mine],
                marker="v" if i == 0 else "^",
                s=40,
                color=colours[i % len(colours)],
                label=f"{version} ({len(mine)} alerts)",
                zorder=3,
            )
        ax.set_title(entity, fontsize=9, loc="left")
        scores.legend(fontsize=7, loc="best")
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%m-%d %H:%M"))
    fig.suptitle(title + "  (line: readings; shaded: labelled windows; triangles: alerts at their score)", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


@dataclass(slots=True)
class Truth:
    """One incident from a ground-truth file: what happened, to which entities, and what should detect it."""

    incident: str
    entities: list[str]
    start: float
    end: float
    observable: float
    alert_kinds: list[str]
    explains: list[tuple[str, str]] = field(default_factory=list)  # (entity, alert kind) it also causes


def read_ground_truth(paths: Iterable[Path]) -> list[Truth]:
    """Incidents from ground-truth files (``warden simulate`` writes them); a bad line is a :class:`LabelError`."""
    out = []
    for doc, where in _docs(paths, "ground-truth line"):
        try:
            start, end = parse_time(doc["start"]), parse_time(doc["end"])
            observable = parse_time(doc.get("observable", doc["start"]))
            if None in (start, end, observable) or end < start:
                raise ValueError("start, end (and observable) must be times, start first")
            out.append(
                Truth(
                    str(doc.get("incident") or doc["kind"]),
                    [str(e) for e in doc.get("entities") or [doc["entity"]]],
                    start,
                    end,
                    observable,
                    [str(k) for k in doc.get("alert_kinds") or [doc["kind"]]],
                    [(str(e), str(k)) for e, k in doc.get("explains", [])],
                )
            )
        except BAD_LINE as exc:
            raise LabelError(f"{where}: not a ground-truth line ({type(exc).__name__}: {exc})") from None
    return out


def unexplained(alerts: list[dict], truths: list[Truth], grace_s: float = 0.0) -> list[dict]:
    """The alerts no incident explains (of its alert kinds, or among what it also causes, on one of its
    entities, during it): every one a false alarm once normal traffic raises nothing."""

    def explains(t: Truth, a: dict) -> bool:
        if not (epoch(a["first_seen"]) <= t.end + grace_s and epoch(a["last_seen"]) >= t.start):
            return False
        ours = a["kind"] in t.alert_kinds and any(e in t.entities for e in concerns(a))
        return ours or any((e, a["kind"]) in t.explains for e in concerns(a))

    return [a for a in alerts if not any(explains(t, a) for t in truths)]


def score_incidents(
    alerts: list[dict], truths: list[Truth], grace_s: float = 0.0, until: float | None = None
) -> dict[str, KindResult]:
    """Per incident kind: recall (incidents with a matching alert), precision (of the alerts of the kinds
    that detect it, those explained by one of its incidents - alerts another incident explains are left
    out), and the median delay from when each incident became observable to its first matching alert.
    Incidents not yet observable at ``until`` (the end of the data) still explain alerts but are not
    counted as missed."""

    def during(a: dict, t: Truth) -> bool:
        return epoch(a["first_seen"]) <= t.end + grace_s and epoch(a["last_seen"]) >= t.start

    def matches(a: dict, t: Truth) -> bool:
        return a["kind"] in t.alert_kinds and any(e in t.entities for e in concerns(a)) and during(a, t)

    def explained(a: dict, t: Truth) -> bool:
        return matches(a, t) or (any((e, a["kind"]) in t.explains for e in concerns(a)) and during(a, t))

    results: dict[str, KindResult] = {}
    for kind in dict.fromkeys(t.incident for t in truths):
        mine = [t for t in truths if t.incident == kind]
        due = [t for t in mine if until is None or t.observable <= until]
        detecting = {k for t in mine for k in t.alert_kinds}
        r = results[kind] = KindResult(kind, windows=len(due))
        for a in alerts:
            if a["kind"] not in detecting:
                continue
            ours = any(matches(a, t) for t in mine)
            if not ours and any(explained(a, t) for t in truths):
                continue  # caused by another incident (or a piece of this one's fused evidence)
            r.alerts += 1
            r.true_alerts += ours
        for t in due:
            hits = [epoch(a["first_seen"]) for a in alerts if matches(a, t)]
            if hits:
                r.detected += 1
                r.delays.append(max(0.0, min(hits) - t.observable))
    return dict(sorted(results.items()))
