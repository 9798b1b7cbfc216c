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
    """A ``faust.App`` subclass whose consumer long-polls for at most ``fetch_max_wait_ms`` and hands
    fetched messages to the agents a batch at a time."""

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
                    fetched = [pair async for pair in self.getmany(timeout=1.0)]
                    if fetched and not self.should_stop:
                        await self.wait_first(self._deliver(fetched), self.suspend_flow.wait())
                    self.diag.unset_flag(CONSUMER_FETCHING)
            except (*self.consumer_stopped_errors, asyncio.CancelledError):
                if not self.transport.app.should_stop:
                    raise
            finally:
                self.diag.unset_flag(CONSUMER_FETCHING)

        async def _deliver(self, fetched: list) -> None:
            """The new messages of a fetched batch to the channels of their topics, in order (Faust's
            per-message steps: skip what was read, note gaps in acked topics, commit every so often)."""
            read_offset, acks_enabled_for = self._read_offset, self.app.topics.acks_enabled_for
            for n, (tp, message) in enumerate(fetched, 1):
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
        def _new_transport(self):
            return ShortPollTransport(self.conf.broker_consumer, self)

    return App
