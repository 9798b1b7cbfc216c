"""Alerts after detection: the alert manager, the store in Redis, delivery to Kafka and webhooks."""
