"""Group renting: a dwelling that uses several times what comparable dwellings use, day after day.

Each meter's day (local calendar) is summed as it goes; when its next day
begins, the closed day's mean use is compared with the median of its peers
(sites of the same categories, from the reference data) over the previous day.
Peer days go into a log-spaced histogram per day, so the median does not
depend on the order in which meters close their days, and the state stays
small however many meters a partition holds. A meter above ``factor`` times
the median for ``days`` consecutive days raises ``group_renting`` (again each
further day it stays above; the alert manager merges those).

>>> import numpy as np
>>> round(peer_median(np.bincount(bin_of(np.array([1.0, 1.0, 1.0, 9.0])), minlength=BINS)), 2)   # bin centre
1.04
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from models.base import BatchContext, Detector, DetectorSettings, Severity, UtcOffsetHours, needs_field
from models.calendar import local_day_hour
from models.signal import Signal
from state.entity_state import EntityState
from state.refdata.reference import RefData
from streams.registry import Source
from streams.validation import Batch

MODEL = "peer_use@1"
BINS, LOG_LOW, LOG_HIGH = 240, -4.0, 4.0  # 1e-4 .. 1e4 in the field's unit, 30 bins a decade
KEEP_DAYS = 3


class PeerUseSettings(DetectorSettings):
    """The ``[peer_use]`` table: a site using several times what comparable sites use in a day."""

    field: str = "kw"
    categories: list[str] = Field(default_factory=lambda: ["dwelling"])
    factor: float = Field(4.0, gt=1, description="times the peer median that counts as excessive")
    days: int = Field(3, ge=1, description="consecutive excessive days before a signal")
    min_hours: int = Field(20, ge=1, le=24, description="hours with readings for a day to count")
    peers: int = Field(200, ge=10, description="recent peer days the median is taken over")
    min_peers: int = Field(30, ge=5)
    kind: str = "group_renting"
    utc_offset_h: UtcOffsetHours = 8.0
    severity: Severity = "warning"


def bin_of(values: np.ndarray) -> np.ndarray:
    """Histogram bin of each (positive) value on the log scale."""
    logs = np.log10(np.maximum(values, 10**LOG_LOW))
    return np.clip(((logs - LOG_LOW) / (LOG_HIGH - LOG_LOW) * BINS).astype(np.int64), 0, BINS - 1)


def peer_median(hist: np.ndarray) -> float:
    """The median of a histogram's values (the middle of the bin that holds it)."""
    cum = np.cumsum(hist)
    b = int(np.searchsorted(cum, cum[-1] / 2.0))
    return float(10 ** (LOG_LOW + (b + 0.5) * (LOG_HIGH - LOG_LOW) / BINS))


class PeerUse(Detector):
    """Raises the spec's kind (``group_renting``) for a site far above its peers for days on end."""

    name = "peer_use"
    settings_model = PeerUseSettings

    def __init__(self, source: Source, state: EntityState):
        super().__init__(source, state)
        state.add_lookup("peer_use.member")  # 1.0: the meter's site is one of the peer categories
        # float32 holds day numbers, counts and the 24-bit hour mask exactly, and a day's sum well enough
        for col, fill in (
            ("day", np.nan),
            ("sum", 0.0),
            ("n", 0.0),
            ("hours", 0.0),
            ("streak", 0.0),
            ("last_excess", np.nan),
        ):
            state.store.add(f"peer_use.{col}", np.float32, fill=fill)

    @classmethod
    def check(cls, source: Source, settings: PeerUseSettings) -> None:
        needs_field(source, cls.name, settings.field)

    def detect(self, batch: Batch, rows: np.ndarray, state: EntityState, ctx: BatchContext) -> list[Signal]:
        ref = ctx.refdata
        if not ref.sites:
            return []
        sp, seq = self.settings, ctx.sequence
        st = {c: state.store[f"peer_use.{c}"] for c in ("day", "sum", "n", "hours", "streak", "last_excess")}
        peers = state.lookup("peer_use.member", seq.rows, lambda entity: self._member(ref, entity)) == 1.0
        if not peers.any():
            return []
        sub = seq.subset(peers)
        ts, value = batch.ts[sub.order], batch.columns[sp.field][sub.order]
        ok = ~np.isnan(value)
        sub, ts, value = sub.subset(ok), ts[ok], value[ok]
        if not len(ts):
            return []
        r = sub.rows
        day, hour = local_day_hour(ts, sp.utc_offset_h).T
        # Segments: runs of one entity's records within one local day.
        start = sub.first | (day != np.roll(day, 1))
        idx = np.flatnonzero(start)
        seg_sum = np.add.reduceat(value, idx)
        seg_n = np.add.reduceat(np.ones_like(value), idx)
        seg_hours = np.bitwise_or.reduceat((1 << hour.astype(np.int64)), idx)
        seg_row, seg_day = r[idx], day[idx]
        seg_first, seg_last = sub.first[idx], np.append(seg_row[1:] != seg_row[:-1], True)
        # The first segment of an entity continues its stored day, or closes it.
        cont = seg_first & (st["day"][seg_row] == seg_day)
        seg_sum = seg_sum + np.where(cont, st["sum"][seg_row], 0.0)
        seg_n = seg_n + np.where(cont, st["n"][seg_row], 0.0)
        seg_hours = seg_hours | np.where(cont, st["hours"][seg_row], 0).astype(np.int64)
        closing_stored = seg_first & ~cont & ~np.isnan(st["day"][seg_row]) & (st["n"][seg_row] > 0)
        closed = [
            (
                st["day"][seg_row][closing_stored],
                seg_row[closing_stored],
                st["sum"][seg_row][closing_stored] / st["n"][seg_row][closing_stored],
                st["hours"][seg_row][closing_stored].astype(np.int64),
            )
        ]
        done = ~seg_last
        closed.append((seg_day[done], seg_row[done], seg_sum[done] / seg_n[done], seg_hours[done]))
        keep = seg_last
        st["day"][seg_row[keep]], st["sum"][seg_row[keep]] = seg_day[keep], seg_sum[keep]
        st["n"][seg_row[keep]], st["hours"][seg_row[keep]] = seg_n[keep], seg_hours[keep]
        days, rws, means, hours = (np.concatenate(parts) for parts in zip(*closed))
        full = np.bitwise_count(hours) >= sp.min_hours
        return self._judge(ref, days[full], rws[full], means[full], st, state)

    def _member(self, ref: RefData, entity: str) -> float:
        site = ref.device_site.get(entity)
        return float(site is not None and site.category in self.settings.categories)

    def _judge(
        self, ref: RefData, days: np.ndarray, rows: np.ndarray, means: np.ndarray, st: dict, state: EntityState
    ) -> list[Signal]:
        """Compare each closed day with its peers' previous day, then add it to its own day's histogram."""
        sp = self.settings
        hists = {int(d): np.array(h, dtype=np.int64) for d, h in self.recall(state, "hist", {}).items()}
        out = []
        for d in np.unique(days).tolist():  # oldest day first; judging uses only earlier days
            at = days == d
            base = hists.get(int(d) - 1)
            if base is not None and base.sum() >= sp.min_peers:
                median = peer_median(base)
                for row, mean in zip(rows[at].tolist(), means[at].tolist()):
                    if mean > sp.factor * median:
                        streak = st["streak"][row] + 1 if st["last_excess"][row] == d - 1 else 1.0
                        st["streak"][row], st["last_excess"][row] = streak, d
                        if streak >= sp.days:
                            out.append(self._signal(ref, state.slots.name(row), d, mean, median, int(streak)))
                    else:
                        st["streak"][row] = 0.0
            hist = hists.setdefault(int(d), np.zeros(BINS, dtype=np.int64))
            np.add.at(hist, bin_of(means[at]), 1)
        if not hists:
            return out
        newest = max(hists)
        self.remember(state, "hist", {str(d): h.tolist() for d, h in hists.items() if d > newest - KEEP_DAYS})
        return out

    def _signal(self, ref: RefData, entity: str, day: float, mean: float, median: float, streak: int) -> Signal:
        sp = self.settings
        end = (day + 1) * 86400.0 - sp.utc_offset_h * 3600.0  # the closed local day's end, UTC epoch
        site = ref.device_site.get(entity)
        return Signal.new(
            source=self.source.name,
            kind=sp.kind,
            entity=entity,
            ts=end,
            window_start=end - 86400.0,
            window_s=86400.0,
            score=float(min(1.0, 1.0 - median * sp.factor / mean / 2.0)),
            severity=sp.severity,
            model=MODEL,
            evidence={
                "field": sp.field,
                "day_mean": round(mean, 4),
                "peer_median": round(median, 4),
                "ratio": round(mean / median, 2),
                "days_running": streak,
                "site": site.id if site else None,
                "category": site.category if site else None,
            },
        )
