"""Moved to :mod:`agents.worker.published`; this path stays for tools outside the project that import it
(../shared/tools/peers)."""

from agents.worker.published import read_all

__all__ = ["read_all"]
