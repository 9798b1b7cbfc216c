"""Kafka: clients' connection settings, the partitioner, the batching producer, topic creation."""
