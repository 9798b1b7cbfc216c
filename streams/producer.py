"""Moved to :mod:`streams.kafka.producer`; this path stays for tools outside the project that import it
(../shared/tools/peers)."""

from streams.kafka.producer import BatchingProducer

__all__ = ["BatchingProducer"]
