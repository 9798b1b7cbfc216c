"""Module paths that tools outside the project import (../shared/tools/peers) keep resolving after a move."""

from __future__ import annotations

import importlib

import pytest


@pytest.mark.parametrize(
    "module, name",
    [
        ("streams.producer", "BatchingProducer"),
        ("agents.worker_values", "read_all"),
        ("agents.metrics", "METRICS"),
        ("agents.alert_store", "AlertStore"),
    ],
)
def test_the_old_path_gives_the_moved_object(module, name):
    moved = importlib.import_module(module).__doc__.split(":mod:`")[1].split("`")[0]
    assert getattr(importlib.import_module(module), name) is getattr(importlib.import_module(moved), name)
