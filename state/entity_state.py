"""Columnar per-entity state of one source on one partition.

Per entity: last event time; tumbling-window rings (1 min, 15 min, 1 h by
default) of every windowed field; where detectors read them, the last value of
every numeric field and each windowed field's running count/mean/variance;
plus any column a detector declares.

Records reach the columns in event order. A source's records may arrive up to
its lateness behind later ones of their entity; an accepted record is held
(:mod:`state.held`) until the partition's clock, or for an entity catching up
on its own, its entity's newest arrival, has passed it by the lateness, and is
then released with the others in event order. A record is late, and refused,
when it is more than the lateness behind its entity's newest arrival, or older
than a record of its entity already released.

>>> import numpy as np
>>> st = EntityState(numeric=["value"], windowed=["value"], windows={"1m": 4}, lateness_s=60)
>>> _ = st.update(st.locate(["m1", "m1"]), np.array([0.0, 30.0]), np.array([[1.0], [3.0]]))
>>> float(st.store["mean"][0, 0]), st.late(st.locate(["m1", "m1"]), np.array([-100.0, 40.0])).tolist()
(2.0, [True, False])
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import orjson

from settings import WINDOW_SECONDS, Settings
from state import stats, windows
from state.blocks import BlockPool
from state.columns import ColumnStore
from state.held import HeldRecords, record_keys
from state.sequence import EntitySequence
from state.slots import SlotMap

FORMAT_VERSION = 2
NEVER = np.iinfo(np.int32).min  # a bucket marker not yet set
# Columns kept only where a detector reads them: each windowed field's running count/mean/variance
# (20 bytes a field), and the last value of every numeric field (4 bytes a field).
OPTIONAL = frozenset({"running_stats", "last_values"})
SPAN_BUCKETS = 2  # of a ring's length, the buckets one update may span beyond what is read
FRESH, BEHIND = 1, 2  # an entity's records came since the last idle sweep; they came over two latenesses behind


class EntityState:
    """Slot map + columns + window rings for the entities of one source partition."""

    def __init__(
        self,
        numeric: list[str],
        windowed: list[str],
        windows: dict[str, int],
        lateness_s: float,
        capacity: int = 1024,
        keeps: frozenset[str] = OPTIONAL,
    ):
        self.numeric, self.windowed = list(numeric), list(windowed)
        self.windows = {name: (WINDOW_SECONDS[name], ring) for name, ring in windows.items()}
        self.lateness_s = lateness_s
        self._windowed_idx = [self.numeric.index(f) for f in self.windowed]
        self.slots = SlotMap()
        self.watermark = -np.inf  # the newest event time released into the columns
        self.arrived = -np.inf  # the newest event time accepted (held or released)
        self.held = HeldRecords()
        self.notes: dict[str, object] = {}  # detectors' partition-wide values, "<detector>.<key>"
        self._lookups: list[str] = []
        self.pools: dict[str, BlockPool] = {}  # history held in blocks (state/blocks.py), by name
        store = self.store = ColumnStore(capacity)
        store.add("last_ts", np.float64, fill=-np.inf)
        store.add("last_print", np.uint64)  # the print of the record at last_ts (Batch.prints): duplicates
        if lateness_s > 0:
            store.add("arrived_ts", np.float64, fill=-np.inf)  # the entity's newest accepted event time
            store.add("arrival", np.uint8)  # FRESH | BEHIND flags of its latest arrival
        if "last_values" in keeps:
            store.add("last", np.float32, (len(self.numeric),), fill=np.nan)
        nw = len(self.windowed)
        if nw and "running_stats" in keeps:
            store.add("count", np.uint32, (nw,))
            store.add("mean", np.float64, (nw,))
            store.add("m2", np.float64, (nw,))
        if nw:
            for name, (_, ring) in self.windows.items():
                store.add(f"{name}.sum", np.float32, (nw, ring))
                store.add(f"{name}.count", np.uint16, (nw, ring))
                store.add(f"{name}.head", np.int32, fill=-1)

    @classmethod
    def for_source(
        cls, source, settings: Settings, reads: dict[str, int] | None = None, keeps: frozenset[str] = OPTIONAL
    ) -> EntityState:
        """State for ``source`` with the rings its detectors read (window -> closed buckets read; all the
        settings name, at their length, if None). A ring holds what is read, the buckets late records may
        still reach, and ``SPAN_BUCKETS`` for one update's span, at most the settings' length: each bucket
        costs 6 bytes per windowed field per entity. ``keeps``: which of the :data:`OPTIONAL` columns to
        keep, those the detectors read."""
        if reads is None:
            rings = dict(settings.windows)
        else:
            rings = {w: min(n, reads[w] + 2 + SPAN_BUCKETS) for w, n in settings.windows.items() if w in reads}
        return cls(
            source.numeric_fields,
            source.windowed_fields,
            rings,
            source.allowed_lateness(settings),
            settings.state_initial_capacity,
            keeps,
        )

    def pool(self, name: str, block: int, blocks: int = 0) -> BlockPool:
        """A new pool of blocks of ``block`` values, checkpointed with the state, and each entity's table of
        its ``blocks`` blocks (-1: not given yet), the column ``<name>.blocks`` (none for 0: the caller keeps
        its own)."""
        if blocks:
            self.store.add(f"{name}.blocks", np.int32, (blocks,), fill=-1)
        pool = self.pools[name] = BlockPool(block)
        return pool

    def __len__(self) -> int:
        return len(self.slots)

    def span_for_closures(self, window: str, needed: int) -> float:
        """Widest event-time span one update may cover so that each bucket closing in it still has
        its last ``needed`` buckets in the ring when it is evaluated."""
        seconds, ring = self.windows[window]
        return seconds * (ring - needed - 2)

    def locate(self, entities: list[str], admit: Callable[[list[str]], np.ndarray] | None = None) -> np.ndarray:
        """Rows of ``entities`` (new ones that ``admit`` accepts get a row, refused ones -1), with the
        columns grown to fit."""
        rows = self.slots.lookup(entities, admit)
        self.store.ensure_rows(len(self.slots))
        return rows

    def late(self, rows: np.ndarray, ts: np.ndarray) -> np.ndarray:
        """Records more than the lateness behind their entity's newest arrival (earlier records of the batch
        included), or older than a record of their entity already released."""
        n = len(rows)
        if n == 0:
            return np.zeros(0, dtype=bool)
        released = self.store["last_ts"][rows]
        prior = np.maximum(self.store["arrived_ts"][rows], released) if "arrived_ts" in self.store else released
        # Running max per entity over the batch, exclusive of the record itself.
        _, group = np.unique(rows, return_inverse=True)
        order = np.lexsort((np.arange(n), group))
        g, t = group[order], ts[order]
        low = float(t.min())
        span = float(t.max()) - low + 1.0
        running = np.maximum.accumulate((t - low) + g * span) - g * span + low
        before = np.full(n, -np.inf)
        before[1:] = np.where(g[1:] == g[:-1], running[:-1], -np.inf)
        within = np.empty(n)
        within[order] = before
        return (ts < np.maximum(prior, within) - self.lateness_s) | (ts < released)

    def duplicates(self, rows: np.ndarray, ts: np.ndarray, prints: np.ndarray) -> np.ndarray:
        """Records that repeat their entity's latest released record, a held one, or an earlier record of the
        batch, exactly: the same event time and the same ``prints`` (see ``Batch.prints``).

        >>> st = EntityState(numeric=["v"], windowed=[], windows={}, lateness_s=60)
        >>> _ = st.update(st.locate(["a"]), np.array([10.0]), np.array([[1.0]]), np.array([7], dtype=np.uint64))
        >>> st.duplicates(st.locate(["a", "a", "a", "b"]), np.array([10.0, 10.0, 20.0, 10.0]),
        ...               np.array([7, 8, 7, 7], dtype=np.uint64)).tolist()
        [True, False, False, False]
        """
        if len(rows) == 0:
            return np.zeros(0, dtype=bool)
        found = (ts == self.store["last_ts"][rows]) & (prints == self.store["last_print"][rows])
        keys = record_keys(rows, ts, prints)
        if len(self.held):  # only a record no newer than its entity's newest arrival can repeat a held one
            maybe = ts <= self.store["arrived_ts"][rows]
            if maybe.any():
                found[maybe] |= self.held.holds(keys[maybe])
        screen = np.sort(keys)  # a cheap screen: equal records have equal keys
        if not (screen[1:] == screen[:-1]).any():
            return found
        key = np.lexsort((np.arange(len(rows)), prints, ts, rows))  # equal records together, in arrival order
        r, t, p = rows[key], ts[key], prints[key]
        found[key[1:]] |= (r[1:] == r[:-1]) & (t[1:] == t[:-1]) & (p[1:] == p[:-1])
        return found

    def hold(self, rows: np.ndarray, ts: np.ndarray, columns: dict[str, np.ndarray], strings: dict) -> None:
        """Accept records (not late, not duplicates) into the hold until :meth:`release` lets them go."""
        if not len(rows):
            return
        clock, self.arrived = self.arrived, max(self.arrived, float(ts.max()))
        if "arrived_ts" in self.store:
            arrived = self.store["arrived_ts"]
            np.maximum.at(arrived, rows, ts)
            behind = arrived[rows] < clock - 2 * self.lateness_s  # the clock as these records came
            self.store["arrival"][rows] = FRESH | np.where(behind, BEHIND, 0)
        self.held.add(rows, ts, columns, strings)

    def release(self, now: float | None = None, idle: bool = False) -> tuple | None:
        """Take the held records no earlier record of their entity can still join, in event order (see
        :meth:`HeldRecords.take`), or None.

        ``now``: the partition's clock (default: its newest arrival; infinity: the input has ended). A record
        goes once the clock has passed it by the lateness; for an entity whose records last came over two
        latenesses behind the clock (catching up on its own: a buffered upload), once its own newest arrival has.
        ``idle``: an idle timer's sweep, which also lets go all that is held of such an entity if nothing of it
        came since the previous sweep, and starts that count again.
        """
        held = self.held
        if not len(held):
            return None
        now = self.arrived if now is None else now
        if "arrived_ts" not in self.store or now == np.inf:  # no lateness, or the end of the input
            return held.take(np.ones(len(held), dtype=bool))
        arrival = self.store["arrival"][held.rows]
        behind = (arrival & BEHIND).astype(bool)
        limit = np.where(behind, self.store["arrived_ts"][held.rows], now) - self.lateness_s
        if idle:
            limit[behind & ~(arrival & FRESH).astype(bool)] = np.inf
            self.store["arrival"][: len(self)] &= ~np.uint8(FRESH)
        due = held.ts <= limit
        return held.take(due) if due.any() else None

    def update(
        self, rows: np.ndarray, ts: np.ndarray, numeric: np.ndarray, prints: np.ndarray | None = None
    ) -> tuple[EntitySequence, np.ndarray]:
        """Fold records of entity ``rows`` (numeric: records x numeric fields, NaN = absent; ``prints``: each
        record's print, see :meth:`duplicates`) in.

        Returns the records in per-entity event order and each record's entity event time before this
        update, which the detectors that run next read.
        """
        last_ts = self.store["last_ts"]
        prior_last_ts = last_ts[rows].copy()
        sequence = EntitySequence.of(rows, ts)
        if len(rows) == 0:
            return sequence, prior_last_ts
        self.watermark = max(self.watermark, float(ts.max()))
        # The newest record per entity sets last values (ties: the later record).
        newest = sequence.order[sequence.last]
        newer = ts[newest] >= last_ts[rows[newest]]
        pick = newest[newer]
        last_ts[rows[pick]] = ts[pick]
        if prints is not None:
            self.store["last_print"][rows[pick]] = prints[pick]
        if "last" in self.store:
            self.store["last"][rows[pick]] = numeric[pick].astype(np.float32)
        if self.windowed:
            values = numeric[:, self._windowed_idx]
            if "count" in self.store:
                stats.update(self.store["count"], self.store["mean"], self.store["m2"], rows, values)
            for name, (seconds, _) in self.windows.items():
                buckets = np.floor(ts / seconds).astype(np.int64)
                windows.add(
                    self.store[f"{name}.sum"],
                    self.store[f"{name}.count"],
                    self.store[f"{name}.head"],
                    rows,
                    buckets,
                    values,
                )
        return sequence, prior_last_ts

    def add_lookup(self, column: str) -> None:
        """A per-entity cache of a fact taken from reference data (NaN until looked up, see :meth:`lookup`):
        a flag, or a coordinate (float32: a metre or so)."""
        self.store.add(column, np.float32, fill=np.nan)
        self._lookups.append(column)

    @property
    def lookup_columns(self) -> list[str]:
        """The columns that cache facts from reference data (:meth:`add_lookup`)."""
        return list(self._lookups)

    def forget_lookups(self) -> None:
        """Reference data changed (or state was restored): every cached fact is looked up again."""
        for column in self._lookups:
            self.store[column][: len(self)] = np.nan

    def lookup(self, column: str, rows: np.ndarray, compute: Callable[[str], float]) -> np.ndarray:
        """Values of a lookup column (:meth:`add_lookup`) for ``rows``; entries not yet known are
        filled once from ``compute(entity id)``."""
        col = self.store[column]
        for row in np.unique(rows[np.isnan(col[rows])]).tolist():
            col[row] = compute(self.slots.name(row))
        return col[rows]

    def add_marker(self, column: str) -> None:
        """A per-entity window bucket index (int32), e.g. the last closed bucket a detector judged
        (:meth:`newly_closed`'s ``done``); :data:`NEVER` until set."""
        self.store.add(column, np.int32, fill=NEVER)

    def closed_bucket(self, rows: np.ndarray, window: str, now: float | None = None) -> np.ndarray:
        """The newest bucket of ``window`` that no record can still enter, per entity.

        ``now``: the partition's clock at a sweep (see ``SourceEngine.sweep``), which closes the buckets of an
        entity that went quiet too. An entity more than two buckets behind it keeps its own clock: it is catching
        up (a logger's buffered upload), and its buckets close on its own records."""
        seconds, _ = self.windows[window]
        clock = self.store["last_ts"][rows]
        if now is not None:
            keeping_up = clock >= now - 2 * seconds
            clock = np.where(keeping_up, np.maximum(clock, now), clock)
        return np.floor(clock / seconds).astype(np.int64) - 1

    def unjudged(self, window: str, done: np.ndarray, now: float) -> np.ndarray:
        """Entities with records whose ``window`` buckets closed by ``now`` are not all judged (``done``, a
        marker column of :meth:`newly_closed`): the ones an idle timer's sweep judges."""
        n = len(self)
        rows = np.flatnonzero(np.isfinite(self.store["last_ts"][:n]))
        return rows[done[rows] < self.closed_bucket(rows, window, now)]

    def window_means(self, window: str, rows: np.ndarray, buckets: np.ndarray) -> np.ndarray:
        """Mean of each windowed field in bucket ``buckets`` of entity ``rows`` (NaN if empty/gone)."""
        return windows.means(
            self.store[f"{window}.sum"], self.store[f"{window}.count"], self.store[f"{window}.head"], rows, buckets
        )

    def newly_closed(self, rows: np.ndarray, window: str, done: np.ndarray, now: float | None = None):
        """Yield (rows, buckets) for each ``window`` bucket with data closed since ``done`` (by ``now`` too:
        see :meth:`closed_bucket`).

        ``done`` (a per-entity column) is advanced, so each closed bucket is
        yielded once; only buckets still held in the ring can be yielded.
        """
        if not len(rows):
            return
        rows = np.unique(rows)
        _, ring = self.windows[window]
        closed = self.closed_bucket(rows, window, now)
        head = self.store[f"{window}.head"][rows].astype(np.int64)
        start = np.maximum(done[rows] + 1, head - ring + 1)
        counts = self.store[f"{window}.count"]
        for step in range(int(max(0, (closed - start).max() + 1))):
            bucket = start + step
            due = bucket <= closed
            if due.any():
                due[due] = counts[rows[due], :, bucket[due] % ring].any(axis=1)
            if due.any():
                yield rows[due], bucket[due]
        done[rows] = np.maximum(done[rows], closed)

    def span_means(self, window: str, rows: np.ndarray, last: np.ndarray, buckets: int, min_filled: int) -> np.ndarray:
        """Mean over the ``buckets`` buckets ending at ``last`` (NaN with under ``min_filled`` filled)."""
        sums, counts = self.store[f"{window}.sum"], self.store[f"{window}.count"]
        ring = sums.shape[2]
        wanted = last[:, None] - np.arange(buckets)[None, :]  # (n, k)
        ok = windows.held(self.store[f"{window}.head"], rows[:, None], wanted, ring)[:, None, :]
        pos = wanted % ring
        s = np.where(ok, np.take_along_axis(sums[rows], pos[:, None, :], axis=2), 0.0).astype(np.float64)
        c = np.where(ok, np.take_along_axis(counts[rows], pos[:, None, :], axis=2), 0).astype(np.float64)
        total, count, filled = s.sum(axis=2), c.sum(axis=2), (c > 0).sum(axis=2)
        return np.divide(total, count, out=np.full(total.shape, np.nan), where=(filled >= min_filled) & (count > 0))

    def to_bytes(self, annotations: dict | None = None) -> bytes:
        """A self-describing snapshot: header JSON line, then the columns (see :meth:`ColumnStore.to_bytes`).

        ``annotations``: what the caller keeps beside the state (JSON), given back by :meth:`load_bytes`.
        """
        header = {
            "v": FORMAT_VERSION,
            "entities": self.slots.names(),
            "watermark": self.watermark,
            "arrived": self.arrived,
            "notes": self.notes,
            "annotations": annotations or {},
            "numeric": self.numeric,
            "windowed": self.windowed,
        }
        pieces = [self.store.parts(len(self.slots))] + [pool.parts() for _, pool in sorted(self.pools.items())]
        ends = np.cumsum([sum(memoryview(p).nbytes for p in part) for part in pieces]).tolist()
        if self.pools:  # where each pool's bytes begin, after the entities' columns
            header["pools"] = dict(zip(sorted(self.pools), ends))
        if len(self.held):  # after them, the records held
            header["held"] = ends[-1]
            pieces.append(self.held.parts())
        return b"".join([orjson.dumps(header) + b"\n", *(p for part in pieces for p in part)])

    def load_bytes(self, blob: bytes) -> dict:
        """Restore from :meth:`to_bytes` (or an earlier release's snapshot); returns its annotations.

        ValueError, with nothing restored, if the snapshot is of another format or other numeric fields.
        :class:`LayoutChanged` if only the detectors' columns differ (a detector changed what it keeps): the
        entities, the clocks and the records held are restored, so no record accepted is lost; the detectors'
        state starts empty.
        """
        cut = blob.index(b"\n")
        header = _upgraded(orjson.loads(blob[:cut]))
        if header.get("v") != FORMAT_VERSION or header["numeric"] != self.numeric:
            raise ValueError("checkpoint layout differs from the source declaration")
        saved = header.get("pools", {})
        names = sorted(saved)  # in the order their bytes follow the entities' columns
        held = [cut + 1 + header["held"]] if "held" in header else []
        bounds = [cut + 1 + saved[name] for name in names] + held + [len(blob)]
        entities = header["entities"]
        try:
            if header["windowed"] != self.windowed:
                raise ValueError(f"windowed fields differ: saved {header['windowed']}, declared {self.windowed}")
            if names != sorted(self.pools):
                raise ValueError(f"block pools differ: saved {names}, declared {sorted(self.pools)}")
            rows = self.store.load_bytes(blob, cut + 1, renamed=_renamed, end=bounds[0])
            for name, start, end in zip(names, bounds, bounds[1:]):
                self.pools[name].load_bytes(blob, start, end)
            if rows != len(entities):
                raise ValueError("checkpoint entity count does not match its columns")
            changed = None
        except ValueError as exc:
            changed = exc
            self.store.reset()
            for pool in self.pools.values():
                pool.reset()
        self.slots = SlotMap(entities)
        self.store.ensure_rows(len(entities))
        self.held = HeldRecords()
        if held:
            self.held.load_bytes(blob, held[0], len(blob))
        self.watermark = -np.inf if header["watermark"] is None else float(header["watermark"])  # JSON: null
        self.arrived = max(self.watermark, -np.inf if header.get("arrived") is None else float(header["arrived"]))
        self.notes = {} if changed else header["notes"]
        if changed:
            raise LayoutChanged(f"{changed}; the detectors' state starts empty")
        return header["annotations"]


class LayoutChanged(ValueError):
    """A snapshot whose detectors' columns differ from today's: restored all but the detectors' state."""


# Column and note prefixes of detectors renamed since release 0.1.0's checkpoints.
RENAMED_PREFIXES = {"site.": "site_status.", "night.": "night_flow.", "peer.": "peer_use."}


def _renamed(name: str) -> str:
    """A saved column's or note's name as today's detectors call it."""
    for old, new in RENAMED_PREFIXES.items():
        if name.startswith(old):
            return new + name[len(old) :]
    return name


def _upgraded(header: dict) -> dict:
    """A snapshot header of an earlier release (one ``meta`` dict for the watermark, the archive run and
    detectors' values) in today's shape."""
    if "meta" not in header:
        return header
    meta = dict(header.pop("meta"))
    header["watermark"] = meta.pop("watermark", -np.inf)
    header["annotations"] = {k: meta.pop(k) for k in ("archive_run",) if k in meta}
    header["notes"] = {_renamed(k): v for k, v in meta.items()}
    return header
