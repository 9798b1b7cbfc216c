"""One source partition owned by this worker: its engine, offsets, outputs and checkpoints.

Messages come in as (offset, key, value). Their records go through the
:class:`~models.engine.SourceEngine` in one call; its signals go to the alert
manager at once, and with dead letters and records that belong to another
partition out through the batching producer.
A checkpoint flushes those outputs first, then stores the state with the last
offset it covers, then commits offset + 1 to Kafka - so the committed offset
never runs ahead of the state.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from itertools import groupby
from operator import itemgetter

import numpy as np
import orjson

from agents.worker.health import INTERNAL, UNAVAILABLE, Health
from agents.worker.metrics import WorkerMetrics
from agents.worker.outputs import Outputs
from models.engine import Outcome, SourceEngine
from models.signal import Signal
from replay.archive import PartitionArchive
from settings import Settings
from state.checkpoint import CheckpointStore
from state.entity_state import LayoutChanged
from state.refdata.reference import RefData
from streams.deadletter import dead_letter
from streams.envelope import Decoded, decode, from_doc, parse_all
from streams.kafka.partitioner import partitions_of
from streams.record_schema import RecordSchema, plain
from streams.registry import Source
from streams.validation import Batch

log = logging.getLogger(__name__)

SENT_RECORDS = "records"  # each message value is one record's JSON, read by orjson
SENT_MESSAGES = "messages"  # every message value was read by orjson (a record or an array of them)
SENT_TYPED = "typed"  # every message was read whole by the source schema; the records are its structs


@dataclass(slots=True)
class Message:
    """What the runner reads of a Kafka message: the fields of aiokafka's ``ConsumerRecord`` of those names, so
    the consumer's records are taken as they come."""

    offset: int
    value: bytes | None
    timestamp: int | None = None  # Kafka append (or create) time, epoch milliseconds (-1 or None: unknown)


@dataclass(slots=True)
class PartitionLinks:
    """What every partition runner of a worker reaches outside itself."""

    settings: Settings
    outputs: Outputs  # signals, dead letters, forwards
    checkpoints: CheckpointStore
    metrics: WorkerMetrics
    health: Health
    commit: Callable[[str, int, int], Awaitable[None]]  # (topic, partition, next offset)
    alert: Callable[[list[Signal]], Awaitable[None]]  # the alert manager, given a batch's signals
    refdata: Callable[[], RefData]  # the reference data loaded now
    archive: Callable[[str, int, str | None], PartitionArchive | None] = lambda source, partition, run: None
    model: Callable[[str], object | None] = lambda source: None  # a source's promoted model version


class PartitionRunner:
    """Processes, checkpoints and restores one (source, partition)."""

    def __init__(self, source: Source, partition: int, links: PartitionLinks):
        settings = links.settings
        self.source, self.partition, self.links, self.settings = source, partition, links, settings
        self.outputs, self.checkpoints, self.metrics, self.health = (
            links.outputs,
            links.checkpoints,
            links.metrics,
            links.health,
        )
        self.engine = SourceEngine(source, settings, refdata=links.refdata(), model=links.model(source.name))
        self.schema = RecordSchema.for_source(source, settings)
        self.archive: PartitionArchive | None = None
        self.archiving = settings.archive_enabled  # a replay log to keep (reopened after a failure)
        self._appending: tuple[asyncio.Future, int] | None = None  # the append in flight, its first offset
        self.partitions = source.partition_count(settings.partitions)  # the topic's real count, in restore()
        self.scheme = source.scheme(settings.partitioner)
        self.lock = asyncio.Lock()
        self.offset = -1  # last offset processed
        self.checkpointed = -1
        self.last_checkpoint = time.monotonic()
        self.checkpoint_cost = 0.0  # seconds the last checkpoint took
        self.archive_run: str | None = None  # the replay log's run this state continues (in its checkpoint)
        self.last_message_at = time.time()
        self.swept_to = -np.inf  # event time of the last sweep this runner ran

    async def restore(self) -> None:
        """Learn the topic's real partition count; load the partition's checkpoint, if any (after a layout
        change, what :meth:`_load` can keep of it)."""
        declared = self.partitions
        self.partitions = (await self.outputs.partitioner(self.source.topic)).partitions
        if self.partitions != declared:
            log.warning(
                "%s has %d partitions, %d declared: ownership follows the topic (create it with "
                "%d to get the declared layout)",
                self.source.topic,
                self.partitions,
                declared,
                declared,
            )
        found = await self.health.retry(
            "checkpoint restore", lambda: self.checkpoints.load(self.source.name, self.partition)
        )
        if found is not None:
            self._load(found)
        elif self.archiving:  # killed before its first checkpoint: the run it began goes on
            self.archive_run = await self.health.retry(
                "archive run", lambda: self.checkpoints.run(self.source.name, self.partition)
            )
        began = self.archive_run is None
        self.archive = await self._archive_call("open", self._reopen_archive)
        if began and self.archive is not None:
            await self.health.retry(
                "archive run", lambda: self.checkpoints.begin_run(self.source.name, self.partition, self.archive_run)
            )

    def _reopen_archive(self) -> PartitionArchive | None:
        """The replay log of this partition's run: the checkpoint's, or a new one when starting afresh."""
        archive = self.links.archive(self.source.name, self.partition, self.archive_run)
        if archive is not None:
            self.archive_run = archive.run
        return archive

    def _load(self, found) -> None:
        """State from a checkpoint; for a change in what the detectors keep, its entities and held records without
        the detectors' state; for a change in the source's fields, empty state at its offset."""
        try:
            self.archive_run = self.engine.state.load_bytes(found.state).get("archive_run")
        except LayoutChanged as exc:  # a new replay log begins here, as the detectors' state does
            log.warning(
                "%s/%d: a detector keeps other columns than this checkpoint (%s); its %d entities and %d records "
                "held are restored at offset %d",
                self.source.name,
                self.partition,
                exc,
                len(self.engine.state),
                len(self.engine.state.held),
                found.offset,
            )
        except ValueError as exc:
            log.warning(
                "%s/%d: checkpoint not restored (%s); state starts empty at offset %d",
                self.source.name,
                self.partition,
                exc,
                found.offset,
            )
        self.engine.use_refdata(self.links.refdata())  # lookups cached in the restored state may be stale
        self.offset = self.checkpointed = found.offset
        self._report_held()
        log.info(
            "%s/%d: restored %d entities at offset %d",
            self.source.name,
            self.partition,
            len(self.engine.state),
            found.offset,
        )

    async def process(self, messages: list[Message]) -> None:
        """Process messages of this partition, in offset order."""
        async with self.lock:
            await self._process(messages)

    async def _process(self, messages: list[Message]) -> None:
        source = self.source.name
        dead: list[dict] = []
        fresh = messages
        if messages and messages[0].offset <= self.offset:  # some are in the state (restored, or fetched again)
            fresh = [m for m in messages if m.offset > self.offset]
        await (self._process_parsed(fresh, dead) if self.schema is None else self._process_read(fresh, dead))
        dead.sort(key=itemgetter("offset"))  # whichever path read them: in the order they came
        for d in dead:
            self.metrics.dead(source, d["reason"])
        await self.outputs.dead_letters(dead)
        if messages:
            self.offset = max(self.offset, messages[-1].offset)
            self.last_message_at = time.time()
            if (stamped := messages[-1].timestamp) and stamped > 0:
                self.metrics.batch_latency(self.last_message_at - stamped / 1000)
        if self._checkpoint_due():
            await self._checkpoint()

    async def _process_read(self, messages: list[Message], dead: list[dict]) -> None:
        """Messages through the source schema: runs of those it reads take the typed path, in offset order,
        and the others are parsed as dicts. One with nothing to read in it (empty, not JSON) is a dead letter
        that does not break a typed run: a bad message costs only itself."""
        limit = self.settings.max_message_bytes
        held = []
        for msg, got in zip(messages, self.schema.decode([m.value for m in messages], limit)):
            if got is None and (unread := decode(msg.value, limit)).reason:
                dead.append(self._unreadable(msg, unread))
            else:
                held.append((msg, got))
        for read, run in groupby(held, key=lambda pair: pair[1] is not None):
            taken, docs = map(list, zip(*run))
            # a run of dicts is parsed again: rare, and the dict path reads its messages' bytes its own way
            await (self._process_typed(taken, docs, dead) if read else self._process_parsed(taken, dead))

    def _unreadable(self, msg: Message, got: Decoded) -> dict:
        """The dead letter of a message with nothing to read in it."""
        self.metrics.processed(self.source.name, 1, 0, 0, 0)
        return self._dead(msg.offset, got.reason, got.detail, msg.value or b"")

    def _dead(self, offset: int, reason: str, detail: str, original: bytes) -> dict:
        return dead_letter(
            self.source.name,
            self.source.topic,
            self.partition,
            offset,
            reason,
            detail,
            original,
            self.settings.deadletter_original_bytes,
        )

    async def _process_parsed(self, messages: list[Message], dead: list[dict]) -> None:
        """Messages parsed as dicts, for the validator."""
        limit = self.settings.max_message_bytes
        docs = parse_all([m.value for m in messages], limit)
        if docs is None:  # a message orjson cannot read alone: one by one, each bad one with its reason
            await self._process_each(messages, (decode(m.value, limit) for m in messages), dead)
        elif set(map(type, docs)) == {dict}:  # each message one record
            async for records, starts, taken in self._slices(zip(messages, ([doc] for doc in docs))):
                await self._run(records, starts, taken, dead, SENT_RECORDS)
        else:
            await self._process_each(messages, map(from_doc, docs), dead, sent=SENT_MESSAGES)

    async def _process_typed(self, messages: list[Message], typed: list[list], dead: list[dict]) -> None:
        """Messages the source schema decoded whole (``typed``: each one's structs); a slice with any record
        the validator would refuse is parsed again as dicts, and the validator says which and why."""
        async for records, starts, taken in self._slices(zip(messages, typed)):
            batch = self.schema.batch(records)
            if batch is None:
                await self._process_parsed(taken, dead)
            else:
                await self._run(records, starts, taken, dead, SENT_TYPED, batch)

    async def _process_each(
        self, messages: list[Message], held: Iterable[Decoded], dead: list[dict], sent: str | None = None
    ) -> None:
        """Messages with what each holds: batches of records through the engine, bad messages to ``dead``."""

        def readable() -> Iterator[tuple[Message, list]]:
            for msg, got in zip(messages, held):
                if got.reason:
                    dead.append(self._unreadable(msg, got))
                else:
                    yield msg, got.records

        async for records, starts, taken in self._slices(readable()):
            await self._run(records, starts, taken, dead, sent)

    async def _slices(self, held: Iterable[tuple[Message, list]]) -> AsyncIterator[tuple[list, list, list]]:
        """Consecutive messages' records (``held``: each message with its records) in slices of about
        ``engine_batch_records``: the records, each message's first index among them, the messages.

        A bounded slice at a time, yielding in between: other partitions (and the alerts they hold) do
        not wait behind one partition's backlog.
        """
        records: list = []
        starts: list[int] = []
        taken: list[Message] = []
        for msg, got in held:
            starts.append(len(records))
            taken.append(msg)
            records += got
            if len(records) >= self.settings.engine_batch_records:
                yield records, starts, taken
                records, starts, taken = [], [], []
                await asyncio.sleep(0)
        if records:
            yield records, starts, taken

    async def _run(
        self,
        records: list,
        starts: list[int],
        decoded_from: list[Message],
        dead: list[dict],
        sent: str | None = None,
        batch: Batch | None = None,
    ) -> None:
        """Records of consecutive messages through the engine; results out; rejects mapped to their message.

        ``sent``: what the message values are to the replay log (see :meth:`_archive`); ``batch``: the
        records already validated (the schema's structs, all accepted by validation).
        """
        source, topic = self.source.name, self.source.topic
        ref, model = self.links.refdata(), self.links.model(self.source.name)
        if ref is not self.engine.refdata:
            self.engine.use_refdata(ref)
        if model is not self.engine.model:
            self.engine.use_model(model)  # a promoted version: swapped between batches, state kept
        try:
            out = (
                self.engine.process(records, self._owns)
                if batch is None
                else self.engine.process_batch(batch, self._owns)
            )
        except Exception as exc:  # a detector's fault costs these messages, never the partition
            self._failed(decoded_from, dead, exc)
            return
        starts.append(len(records))
        if self.archive is not None and out.accepted:
            await self._archive(records, starts, decoded_from, out, sent)
        for rej in out.rejects:
            m_i = bisect.bisect_right(starts, rej.position) - 1
            msg = decoded_from[m_i]
            alone = starts[m_i + 1] - starts[m_i] == 1
            raw = msg.value if alone else _bytes(records[rej.position])
            dead.append(self._dead(msg.offset, rej.reason, rej.detail, raw))
        for pos in out.forward:
            rec = plain(records[pos])
            await self.outputs.forward(topic, rec[self.source.entity_field], rec)
        await self.links.alert(out.signals)
        await self.outputs.signals(out.signals)
        taken = len(records) - len(out.forward)  # forwarded ones are counted where they are owned
        self.metrics.processed(source, taken, out.accepted, len(out.signals), len(out.forward), out.duplicates)
        self._report_held()

    def _report_held(self) -> None:
        """Entities in state and records waiting for event order, to the metrics."""
        self.metrics.held(self.source.name, self.partition, len(self.engine.state), len(self.engine.state.held))

    def _failed(self, messages: list[Message], dead: list[dict], exc: Exception) -> None:
        """Messages the engine raised on: each to the dead letters as ``internal_error`` with an error id that
        the log has with the traceback; the worker reports itself degraded."""
        first, last = messages[0].offset, messages[-1].offset
        error_id = f"{self.source.name}-p{self.partition}-o{first}"
        log.exception(
            "internal error %s: %s/%d offsets %d-%d not processed; sent to the dead letters",
            error_id,
            self.source.name,
            self.partition,
            first,
            last,
        )
        self.health.fault(f"{self.source.name}/{self.partition}", error_id, exc)
        detail = f"error {error_id}: {type(exc).__name__}: {exc}"
        dead += [self._dead(msg.offset, INTERNAL, detail, msg.value or b"") for msg in messages]
        self.metrics.processed(self.source.name, len(messages), 0, 0, 0)

    def _owns(self, entities: list[str]) -> np.ndarray:
        """Which of these entities, new to the state, this partition owns (judged once, at first sight)."""
        return partitions_of(entities, self.partitions, self.scheme) == self.partition

    async def _archive(
        self, records: list, starts: list[int], decoded_from: list[Message], out: Outcome, sent: str | None
    ) -> None:
        """Accepted records to the replay log, each with the offset of the message it came in.

        Records go in as their message's bytes, not encoded again, where those are known to be their JSON:
        ``sent`` is SENT_RECORDS when each message is one record read by orjson, SENT_MESSAGES when every
        message was read by orjson (a message whose records are all accepted goes in as sent), SENT_TYPED when
        every message was read by the source schema (the same, and it encodes the records of the others: its
        structs). The append runs in a thread (zstd releases the GIL) while this partition goes on with its
        next batch: one append in flight at a time, in order, and settled before a checkpoint syncs the log.
        """
        message_offsets = np.fromiter((m.offset for m in decoded_from), dtype=np.int64, count=len(decoded_from))
        offsets = message_offsets[np.searchsorted(starts, out.positions, side="right") - 1]
        positions = out.positions.tolist()
        if sent == SENT_RECORDS:
            accepted, spans = [decoded_from[i].value for i in positions], ()
        else:
            accepted = [records[i] for i in positions]
            spans = _whole_messages(starts, out.positions, decoded_from) if sent in (SENT_MESSAGES, SENT_TYPED) else ()
        encode = self.schema.encode if sent == SENT_TYPED else None
        await self._archive_settled()
        if self.archive is not None:  # None: the append before failed
            append = asyncio.ensure_future(
                asyncio.to_thread(self.archive.append, offsets, out.ts, accepted, spans, encode)
            )
            self._appending = append, int(offsets[0])

    async def _archive_settled(self) -> None:
        """Wait for the append in flight, if any; a failed one is reported as a gap from its first offset."""
        if self._appending is None:
            return
        (append, first), self._appending = self._appending, None
        try:
            await append
        except OSError as exc:
            self._archive_failed("append", exc, first)

    def _archive_failed(self, where: str, exc: OSError, from_offset: int) -> None:
        """A full or failing disk loses archive records, never live detection: report the gap's start."""
        self.health.failed("archive", f"{self.source.name}/{self.partition} {where}", exc)
        log.error(
            "%s/%d: replay log not written from offset %d on (%s); it reopens at the next checkpoint",
            self.source.name,
            self.partition,
            from_offset,
            exc,
        )
        if self.archive is not None:
            self.archive.abandon()
        self.archive = None

    async def _archive_call(self, where: str, work: Callable[[], object]) -> object:
        try:
            result = await asyncio.to_thread(work)
        except OSError as exc:
            self._archive_failed(where, exc, self.offset + 1)
            return None
        self.health.recovered("archive")
        return result

    async def sweep_idle(self) -> None:
        """Time-driven signals and window closes at the partition's clock, every tick of the timer.

        The clock is the partition's watermark, the newest event time it accepted: it releases the records held
        for event order (``EntityState.release``), and its other entities' records close the windows of one that
        went quiet (hours judged within a tick of their end plus the lateness). When no record has come for an
        expected interval, it runs on with the wall clock, so a feed that dies entirely still goes silent. The
        wall clock and the timer are live only, so each sweep goes into the replay log at its place among the
        records, and replay runs it there.
        """
        async with self.lock:
            idle = time.time() - self.last_message_at
            watermark = self.engine.state.arrived
            if watermark == -np.inf:
                return
            now = watermark + idle if idle >= self.source.expected_interval_s else watermark
            if now <= self.swept_to:
                return
            self.swept_to = now
            try:
                signals = self.engine.sweep(now)
            except Exception as exc:  # as a batch's: never the partition (its timer runs again)
                error_id = f"{self.source.name}-p{self.partition}-sweep-{now:.0f}"
                log.exception("internal error %s: the idle sweep of %s/%d", error_id, self.source.name, self.partition)
                self.health.fault(f"{self.source.name}/{self.partition}", error_id, exc)
                return
            await self._archive_settled()
            if self.archive is not None:  # replay sweeps here too: the same signals and state after
                await self._archive_call("sweep", partial(self.archive.sweep, now, sync=bool(signals)))
            await self.links.alert(signals)
            await self.outputs.signals(signals)
            self.metrics.processed(self.source.name, 0, 0, len(signals), 0)
            self._report_held()

    async def checkpoint(self) -> None:
        """Flush outputs, store the state with its offset, commit the next offset (when one is due)."""
        async with self.lock:
            if self._checkpoint_due():
                await self._checkpoint()

    def _checkpoint_due(self) -> bool:
        """The interval has passed, and long enough since the last one that checkpoints take at most
        ``checkpoint_max_share`` of the time (a million entities' state takes a while to write)."""
        wait = max(self.settings.checkpoint_interval_s, self.checkpoint_cost / self.settings.checkpoint_max_share)
        return time.monotonic() - self.last_checkpoint >= wait

    async def close(self) -> None:
        """A last checkpoint, then seal the replay log (shutdown, revocation)."""
        async with self.lock:
            await self._checkpoint()
            if self.archive is not None:
                await self._archive_call("close", self.archive.close)
                self.archive = None

    async def _checkpoint(self) -> None:
        started = self.last_checkpoint = time.monotonic()
        await self._archive_settled()
        if self.offset <= self.checkpointed:
            return
        await self.outputs.flush()
        if self.archive is None and self.archiving:  # failed earlier: reopen (recovery cuts a torn tail)
            self.archive = await self._archive_call("reopen", self._reopen_archive)
        elif self.archive is not None:  # durable before the offsets it covers are committed
            await self._archive_call("sync", self.archive.sync)
        # In a thread, so other partitions go on; this one's state is still, under its lock.
        blob = await asyncio.to_thread(self.engine.state.to_bytes, {"archive_run": self.archive_run})
        try:
            stored = await self.checkpoints.save(self.source.name, self.partition, self.offset, blob)
        except UNAVAILABLE as exc:  # nothing committed: the next checkpoint covers these records
            self.health.failed("redis", "checkpoint", exc)
            return
        self.checkpointed = self.offset
        self.metrics.checkpointed(self.source.name, self.partition, stored, len(self.engine.state))
        await self.links.commit(self.source.topic, self.partition, self.offset + 1)
        self.checkpoint_cost = time.monotonic() - started


def _whole_messages(starts: list[int], positions: np.ndarray, messages: list[Message]) -> list[tuple[int, int, bytes]]:
    """Runs of the accepted records (``positions``; indexes into them) that are all the records of one message
    (``starts``: each message's first record, then the end), with the message's JSON elements as sent."""
    bounds = np.searchsorted(positions, starts).tolist()
    spans = []
    for i, message in enumerate(messages):
        took = bounds[i + 1] - bounds[i]
        if took and took == starts[i + 1] - starts[i]:
            raw = message.value.strip()  # whitespace as JSON reads it: orjson refused any other
            spans.append((bounds[i], bounds[i + 1], raw[1:-1] if raw[:1] == b"[" else raw))
    return spans


def _bytes(record: object) -> bytes:
    """A batch element re-encoded as JSON (its exact bytes are not kept by the parser)."""
    try:
        return orjson.dumps(plain(record))
    except TypeError:
        return repr(record).encode()
