"""Faust's aiokafka transport with a shorter fetch long-poll and a batch hand-off, and its credentials
from the settings.

Faust hard-codes ``fetch_max_wait_ms=1500``. Kafka answers a long-poll fetch as
soon as data arrives, but Tansu (the embedded broker) holds it for the whole
wait: measured, a record's consume latency was ~420 ms median at 1500 ms and
~11 ms at 100 ms. The wait is the ``WARDEN_FETCH_MAX_WAIT_MS`` setting.

Faust hands each fetched message to the agents' buffers under its own wait for a
rebalance (four tasks and an ``asyncio.wait`` a message, so at least two turns of
the event loop, each shared with the agents' batch work). With messages of
hundreds of records that hand-off paced the worker: it saw small batches and
idled. Here one wait covers a whole fetched batch, with the same outcome when a
rebalance suspends the flow (the rest of the batch is dropped and fetched again
from the committed offsets).

Source topics go further: Faust's per-message path (a Faust message built per
record, conductor, channel, stream, ``take_events``) was most of the worker's
time when a device sends one record per message. Their records skip it: each
fetched partition's records go, as aiokafka gave them and as one list, onto the
topic's hand-off queue (``App.hand_off``), which the worker drains a partition's
run at a time. The queue is a Faust flow-control queue, so a rebalance clears and
suspends it as it does an agent's buffer.
"""

from __future__ import annotations

import asyncio

import faust
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as faust_aiokafka

from settings import Settings
from streams.kafka.client import kafka_options


def credentials(settings: Settings) -> faust.types.auth.CredentialsT | None:
    """Faust's form of the TLS/SASL settings (the same as every other client of ours gets)."""
    options = kafka_options(settings)
    if "sasl_mechanism" in options:
        return faust.SASLCredentials(
            username=options["sasl_plain_username"],
            password=options["sasl_plain_password"],
            ssl_context=options.get("ssl_context"),
            mechanism=options["sasl_mechanism"],
        )
    if "ssl_context" in options:
        return faust.SSLCredentials(options["ssl_context"])
    return None


def app_class(fetch_max_wait_ms: int) -> type[faust.App]:
    """A ``faust.App`` subclass whose consumer long-polls for at most ``fetch_max_wait_ms``, hands fetched
    messages to the agents a batch at a time and those of ``hand_off`` topics to their queues."""

    class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
        def _create_worker_consumer(self, transport):
            consumer = super()._create_worker_consumer(transport)
            consumer._fetch_max_wait_ms = fetch_max_wait_ms  # read when the consumer starts its fetcher
            return consumer

    class ShortPollConsumer(faust_aiokafka.Consumer):
        def _new_consumer_thread(self):
            return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

        async def _drain_messages(self, fetcher) -> None:
            """Faust's fetch loop (``Consumer._drain_messages``), delivering a fetched batch at a time."""
            try:
                while not (self._stopped.is_set() or fetcher._stopped.is_set()):
                    self.diag.set_flag(CONSUMER_FETCHING)
                    runs, messages = await self._fetch(timeout=1.0)
                    if (runs or messages) and not self.should_stop:
                        await self.wait_first(self._deliver(runs, messages), self.suspend_flow.wait())
                    self.diag.unset_flag(CONSUMER_FETCHING)
            except (*self.consumer_stopped_errors, asyncio.CancelledError):
                if not self.transport.app.should_stop:
                    raise
            finally:
                self.diag.unset_flag(CONSUMER_FETCHING)

        async def _fetch(self, timeout: float) -> tuple[list, list]:
            """One fetch (Faust's ``getmany``): each hand-off partition's records as one run of aiokafka's
            records, and the other topics' records as Faust messages, round-robin between partitions."""
            generation = self.app.consumer_generation_id
            records, active = await self._wait_next_records(timeout)
            if records is None or self.should_stop:
                return [], []
            if not self.flow_active:  # a rebalance began: back to the committed offsets, as Faust does
                try:
                    await self.perform_seek()
                except Exception as exc:
                    self.log.warning("exception performing seek when flow not active %r", exc)
                return [], []
            if self.app.consumer_generation_id != generation:
                return [], []
            hand_off, runs, others = self.app.hand_off, [], {}
            for tp, got in records.items():
                if active is not None and tp not in active and tp not in self._buffered_partitions:
                    continue
                if tp.topic in hand_off:
                    runs.append((tp, got))
                else:
                    others[tp] = got
            to_message = self._to_message
            return runs, [(tp, to_message(tp, r)) for tp, r in self.scheduler.iterate(others)] if others else []

        async def _deliver(self, runs: list, messages: list) -> None:
            """A fetch's new records: a hand-off partition's run onto its topic's queue, the other messages to
            the channels of their topics, in order (Faust's per-message steps: skip what was read, note gaps
            in acked topics, commit every so often)."""
            read_offset, acks_enabled_for, hand_off = (
                self._read_offset,
                self.app.topics.acks_enabled_for,
                self.app.hand_off,
            )
            for tp, records in runs:
                r_offset = read_offset[tp]
                if r_offset is not None and records[0].offset < r_offset:
                    records = [r for r in records if r.offset >= r_offset]
                if records:
                    await hand_off[tp.topic].put((tp.partition, records))
                    read_offset[tp] = records[-1].offset
            for n, (tp, message) in enumerate(messages, 1):
                if n % 100 == 0:
                    await asyncio.sleep(0)
                r_offset = read_offset[tp]
                if r_offset is not None and message.offset < r_offset:
                    continue
                if r_offset and message.offset - r_offset > 1 and acks_enabled_for(message.topic):
                    await self._add_gap(tp, r_offset + 1, message.offset)
                if self._commit_every is not None and self._n_acked >= self._commit_every:
                    self._n_acked = 0
                    await self.commit()
                await self.callback(message)
                read_offset[tp] = message.offset

    class ShortPollTransport(faust_aiokafka.Transport):
        Consumer = ShortPollConsumer

    class App(faust.App):
        hand_off: dict[str, asyncio.Queue]  # topic: the queue its fetched messages go to, bypassing agents

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.hand_off = {}

        def _new_transport(self):
            return ShortPollTransport(self.conf.broker_consumer, self)

    return App
