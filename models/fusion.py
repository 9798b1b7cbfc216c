"""Cross-source fusion: signals from different sources about one site, within a window, become one alert.

A *pattern* (a TOML file, no code) names the pieces of evidence it needs -
each a source and the signal kinds that count, tied to the site either as one
of its devices (a meter) or by a location within ``radius_m`` (a vehicle) - the
sites it applies to (categories, registered statuses), the time window, and
how many distinct pieces make a fused alert. The shipped
``illegal_resumption`` pattern: a closed chemical plant drawing electricity
and water while a hazardous-goods vehicle dwells at its gate.

The logic is pure: :func:`site_pieces` ties a signal to (pattern, site,
piece), :func:`keep` bounds the pieces held, :func:`fuse` decides on them, and
:class:`FusionBook` keeps pieces in memory for replay; the live worker keeps
them in Redis (``agents/worker/fusion.py``).

>>> p = Pattern(name="p", kind="k", window_s=3600, min_evidence=2, evidence=[
...     EvidenceSpec(name="power", source="power", kinds=["closed_site_consumption"]),
...     EvidenceSpec(name="truck", source="gps", kinds=["dwell"], radius_m=300)])
>>> pieces = {"power": [{"name": "power", "id": "s1", "ts": 100.0, "score": 1.0}],
...           "truck": [{"name": "truck", "id": "s2", "ts": 2000.0, "score": 0.5}]}
>>> (fused,) = fuse(p, {"id": "plant-1", "name": "Plant"}, pieces)
>>> fused.kind, fused.entity, [x["name"] for x in fused.evidence["pieces"]]
('k', 'plant-1', ['power', 'truck'])
>>> fuse(p, {"id": "plant-1"}, pieces, after=fused.ts)  # evidence is used once
[]
>>> far = {"power": pieces["power"], "truck": [{"id": "s3", "ts": 9000.0, "score": 1.0}]}
>>> fuse(p, {"id": "plant-1"}, far)
[]
"""

from __future__ import annotations

import tomllib
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from models.signal import Signal
from state.refdata.reference import RefData, Site
from state.refdata.zones import metres

SOURCE = "fusion"
MODEL = "fusion@1"
PATTERNS_DIR = Path(__file__).parent / "patterns"
MAX_PIECES = 64  # per pattern, site and evidence name: the latest, of those newer than the last completion


class PatternError(ValueError):
    """A pattern file that cannot be used (names the file and what is wrong)."""


class EvidenceSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    source: str
    kinds: list[str] = Field(min_length=1, description="signal kinds that count (shell patterns)")
    radius_m: float = Field(
        0.0,
        ge=0,
        description="0: the signal's entity is one of the site's devices; "
        "else: the signal's location within this distance",
    )

    def matches(self, signal: Signal) -> bool:
        return signal.source == self.source and any(fnmatchcase(signal.kind, k) for k in self.kinds)


class Pattern(BaseModel):
    """A fusion pattern: which evidence about one site, within which window, makes which alert."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    kind: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    description: str = ""
    severity: Literal["info", "warning", "major", "critical"] = "major"
    window_s: float = Field(gt=0)
    min_evidence: int = Field(2, ge=1)
    site_categories: list[str] = Field(default_factory=lambda: ["*"])
    site_statuses: list[str] = Field(default_factory=lambda: ["operating", "suspended", "closed"])
    evidence: list[EvidenceSpec] = Field(min_length=1)

    def applies_to(self, site: Site) -> bool:
        return site.status in self.site_statuses and any(fnmatchcase(site.category, c) for c in self.site_categories)


def load_patterns(dirs: list[Path] | None = None) -> list[Pattern]:
    """The shipped patterns plus any ``*.toml`` in ``dirs``; a bad file is a :class:`PatternError`."""
    found: dict[str, Pattern] = {}
    for folder in [PATTERNS_DIR, *(dirs or [])]:
        for path in sorted(Path(folder).glob("*.toml")):
            try:
                pattern = Pattern(**tomllib.loads(path.read_text()))
            except (tomllib.TOMLDecodeError, UnicodeDecodeError, TypeError) as exc:
                raise PatternError(f"{path}: {exc}") from None
            except ValidationError as exc:
                err = exc.errors()[0]
                raise PatternError(f"{path}: {'.'.join(map(str, err['loc']))}: {err['msg']}") from None
            found[pattern.name] = pattern
    return list(found.values())


def site_pieces(signal: Signal, patterns: list[Pattern], ref: RefData) -> list[tuple[Pattern, Site, str]]:
    """(pattern, site, evidence name) for each piece of evidence ``signal`` gives about a site."""
    out = []
    for pattern in patterns:
        for spec in pattern.evidence:
            if not spec.matches(signal):
                continue
            for site in _sites(signal, spec, ref):
                if pattern.applies_to(site):
                    out.append((pattern, site, spec.name))
    return out


def _sites(signal: Signal, spec: EvidenceSpec, ref: RefData) -> list[Site]:
    if spec.radius_m <= 0:
        site = ref.device_site.get(signal.entity)
        return [site] if site else []
    ev = signal.evidence or {}
    lon, lat = ev.get("lon"), ev.get("lat")
    if not isinstance(lon, (int, float)) or not isinstance(lat, (int, float)) or not ref.sites:
        return []
    sites = list(ref.sites.values())
    d = metres(np.float64(lon), np.float64(lat), np.array([s.lon for s in sites]), np.array([s.lat for s in sites]))
    return [sites[i] for i in np.flatnonzero(d <= spec.radius_m).tolist()]


def piece(signal: Signal, name: str) -> dict:
    """What a fused alert cites of one signal."""
    return {
        "name": name,
        "id": signal.id,
        "source": signal.source,
        "kind": signal.kind,
        "entity": signal.entity,
        "ts": signal.ts,
        "score": signal.score,
        "evidence": signal.evidence,
    }


def fuse(pattern: Pattern, site: dict, pieces: dict[str, list[dict]], after: float = -float("inf")) -> list[Signal]:
    """The fused signals the site's pieces (evidence name -> its pieces) make after its last completion
    (``after``), oldest first.

    The pattern completes at each time ``T`` (a piece's time) by which
    ``min_evidence`` names each have a piece that is within ``window_s`` before
    ``T`` and newer than the previous completion: evidence is used once, so a
    recurrence gives a new fused signal (which merges into the same alert while
    it is open). A fused signal cites, per name, its first piece in the span:
    the one that arrives first when each source delivers in order, so the result
    does not depend on how sources interleave (a replay interleaves them
    differently from the live run), only on the pieces and the last completion.
    """
    out: list[Signal] = []
    last = after
    for t in sorted({p["ts"] for held in pieces.values() for p in held if p["ts"] > after}):
        cited = [
            min(
                (p for p in held if p["ts"] > last and t - pattern.window_s <= p["ts"] <= t),
                key=lambda p: (p["ts"], p["id"]),
                default=None,
            )
            for held in pieces.values()
        ]
        cited = sorted((p for p in cited if p is not None), key=lambda p: p["ts"])
        if len(cited) < pattern.min_evidence:
            continue
        last = t
        score = sum(p["score"] for p in cited) / len(pattern.evidence)  # mean score, missing pieces counting 0
        out.append(
            Signal.new(
                source=SOURCE,
                kind=pattern.kind,
                entity=site["id"],
                ts=t,
                window_start=t,
                window_s=pattern.window_s,
                score=score,
                severity=pattern.severity,
                model=MODEL,
                evidence={
                    "pattern": pattern.name,
                    "description": pattern.description,
                    "site": site,
                    "pieces": cited,
                    "lon": site.get("lon"),
                    "lat": site.get("lat"),
                },
            )
        )
    return out


def keep(held: list[dict], new: dict, after: float) -> list[dict]:
    """A name's pieces with ``new`` added, each signal once, by event time: those newer than the site's last
    completion (``after``: older ones are used up), at most the latest ``MAX_PIECES``. The live store keeps the
    same (``agents/worker/fusion.py``)."""
    held = {p["id"]: p for p in [*held, new] if p["ts"] > after}.values()
    return sorted(held, key=lambda p: (p["ts"], p["id"]))[-MAX_PIECES:]


def site_doc(site: Site) -> dict:
    return {
        "id": site.id,
        "name": site.name,
        "category": site.category,
        "status": site.status,
        "lon": site.lon,
        "lat": site.lat,
    }


class FusionBook:
    """Pieces per (pattern, site) in memory: fusion for replay, and the logic the live store follows."""

    def __init__(self, patterns: list[Pattern]):
        self.patterns = patterns
        self.pieces: dict[tuple[str, str], dict[str, list[dict]]] = {}
        self.last: dict[tuple[str, str], float] = {}  # each (pattern, site)'s last completion
        self.emitted: set[str] = set()  # live, the alert manager's merged-signal marks do this

    def add(self, signal: Signal, ref: RefData) -> list[Signal]:
        """Fused signals that ``signal`` completes (each fused signal once)."""
        out = []
        for pattern, site, name in site_pieces(signal, self.patterns, ref):
            key = (pattern.name, site.id)
            held, after = self.pieces.setdefault(key, {}), self.last.get(key, -float("inf"))
            held[name] = keep(held.get(name, []), piece(signal, name), after)
            done = fuse(pattern, site_doc(site), held, after)
            for fused in done:
                if fused.id not in self.emitted:
                    self.emitted.add(fused.id)
                    out.append(fused)
            if done:  # the evidence it used up goes (as the live store's COMPLETE does)
                after = self.last[key] = done[-1].ts
                for held_name, got in held.items():
                    held[held_name] = [p for p in got if p["ts"] > after]
        return out
