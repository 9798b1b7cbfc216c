"""Replay logs: writing, reading, deterministic replay, training and evaluation from logs."""
