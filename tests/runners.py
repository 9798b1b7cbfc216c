"""A partition runner without Kafka: real replay-log files under a folder, its outputs kept for comparison."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from agents.worker.health import Health
from agents.worker.metrics import WorkerMetrics
from agents.worker.partition import PartitionLinks, PartitionRunner
from replay.archive import PartitionArchive
from settings import Settings
from state.refdata.reference import RefData


class Unstored:
    """Checkpoints measured and dropped: a runner always starts afresh."""

    async def save(self, source, partition, offset, blob):
        return len(blob)  # the bytes stored

    async def load(self, source, partition):
        return None

    async def run(self, source, partition):
        return None

    async def begin_run(self, source, partition, run):
        pass


class Kept:
    """A partition runner's outputs, kept for comparison."""

    def __init__(self):
        self.sent, self.letters, self.forwards = [], [], []

    async def signals(self, signals):
        self.sent += signals

    async def dead_letters(self, letters):
        self.letters += letters

    async def forward(self, topic, entity, record):
        self.forwards.append((topic, entity, record))

    async def flush(self):
        pass

    async def partitioner(self, topic):
        return SimpleNamespace(partitions=2)


async def kept_runner(source, root: Path, health: Health | None = None, **overrides) -> tuple[PartitionRunner, Kept]:
    """A restored partition runner (partition 0 of 2) with a replay log under ``root``, and what it sends."""
    settings, outputs, ref = (
        Settings(partitions=2, data_dir=root, checkpoint_interval_s=3600.0, **overrides),
        Kept(),
        RefData.empty(),
    )

    async def ignore(*_):
        pass

    runner = PartitionRunner(
        source,
        0,
        PartitionLinks(
            settings,
            outputs,
            Unstored(),
            WorkerMetrics(),
            health or Health(),
            commit=ignore,
            alert=ignore,
            refdata=lambda: ref,
            archive=lambda name, partition, run: PartitionArchive(root, name, partition, run=run),
        ),
    )
    await runner.restore()
    return runner, outputs
