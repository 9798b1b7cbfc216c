"""Detectors and the detection engine: pure Python/NumPy, no Kafka."""
