"""Faust's aiokafka transport with a shorter fetch long-poll, and its credentials from the settings.

Faust hard-codes ``fetch_max_wait_ms=1500``. Kafka answers a long-poll fetch as
soon as data arrives, but Tansu (the embedded broker) holds it for the whole
wait: measured, a record's consume latency was ~420 ms median at 1500 ms and
~11 ms at 100 ms. The wait is the ``WARDEN_FETCH_MAX_WAIT_MS`` setting.
"""

from __future__ import annotations

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka

from settings import Settings
from streams.kafka_client import kafka_options


def credentials(settings: Settings) -> faust.types.auth.CredentialsT | None:
    """Faust's form of the TLS/SASL settings (the same as every other client of ours gets)."""
    options = kafka_options(settings)
    if "sasl_mechanism" in options:
        return faust.SASLCredentials(username=options["sasl_plain_username"], password=options["sasl_plain_password"],
                                     ssl_context=options.get("ssl_context"), mechanism=options["sasl_mechanism"])
    if "ssl_context" in options:
        return faust.SSLCredentials(options["ssl_context"])
    return None


def app_class(fetch_max_wait_ms: int) -> type[faust.App]:
    """A ``faust.App`` subclass whose consumer long-polls for at most ``fetch_max_wait_ms``."""

    class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
        def _create_worker_consumer(self, transport):
            consumer = super()._create_worker_consumer(transport)
            consumer._fetch_max_wait_ms = fetch_max_wait_ms  # read when the consumer starts its fetcher
            return consumer

    class ShortPollConsumer(faust_aiokafka.Consumer):
        def _new_consumer_thread(self):
            return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    class ShortPollTransport(faust_aiokafka.Transport):
        Consumer = ShortPollConsumer

    class App(faust.App):
        def _new_transport(self):
            return ShortPollTransport(self.conf.broker_consumer, self)

    return App
