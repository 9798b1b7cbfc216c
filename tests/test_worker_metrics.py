"""A worker's counters of the state it holds: what `warden bench` and Prometheus read."""

from __future__ import annotations

import asyncio

from tests.test_archive import _messages, _runner


def test_entities_are_counted_as_held_now_and_as_of_the_last_checkpoint(tmp_path):
    async def run():
        runner, _ = _runner(tmp_path, lambda run: None)
        await runner.restore()
        await runner.process(_messages(0, 40))          # entities m0, m1, m2
        before = runner.metrics.snapshot()
        await runner._checkpoint()
        after = runner.metrics.snapshot()
        runner.metrics.released("metric", 0)             # the partition went to another worker
        return before, after, runner.metrics.snapshot()

    before, after, released = asyncio.run(run())
    assert (before["entities"], before["checkpoint_entities"]) == (3, 0)   # not only once checkpointed
    assert (after["entities"], after["checkpoint_entities"]) == (3, 3) and after["checkpoint_bytes"] > 0
    assert (released["entities"], released["checkpoint_entities"], released["checkpoint_bytes"]) == (0, 0, 0)
