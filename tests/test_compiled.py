"""The engine's loops built ahead of time (state/compiled.py): what `make` builds is what a worker runs, with the
JIT's arithmetic to the bit and without numba or LLVM in the process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import orjson
import pytest

import models.online.anomaly as anomaly
import state.slots
from state import compiled

ROOT = Path(__file__).resolve().parent.parent

# Runs the loops on the test NAB streams and on a seeded stream of many entities through the slot map, and prints
# whether the built module was in use and a digest of every output bit.
_BITS = """
import hashlib, sys
from pathlib import Path
import numpy as np, orjson
from models.online.anomaly import AnomalySettings, AnomalyState
from replay import nab
from state import compiled
from state.slots import SlotMap

out = hashlib.sha256()
for s in nab.load(Path(sys.argv[1])):
    likelihood, alert = AnomalyState(AnomalySettings()).learn_score_many(np.asarray(s.values), np.asarray(s.ts))
    out.update(likelihood.tobytes() + alert.tobytes())
rng = np.random.default_rng(7)
slots = SlotMap()
for _ in range(20):
    ids = [f"dev-{k}-\\u6c34" for k in rng.integers(0, 5000, 2000)]
    rows = slots.lookup(ids)
    out.update(rows.tobytes() + "|".join(slots.names(rows[::7])).encode())
print(orjson.dumps({"built": compiled.AHEAD is not None, "bits": out.hexdigest(), "numba": "numba" in sys.modules,
                    "llvmlite": "llvmlite" in sys.modules}).decode())
"""


def _run(code: str, *args: str, jit: bool = False) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "WARDEN_JIT"}
    if jit:
        env["WARDEN_JIT"] = "1"
    done = subprocess.run(
        [sys.executable, "-c", code, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return orjson.loads(done.stdout.strip().splitlines()[-1])


def test_make_built_the_loops_from_these_sources_and_a_build_from_others_is_not_used():
    assert compiled.AHEAD is not None, "state/_loops is missing or was built from other sources: run make"
    assert compiled.load(expected=compiled.source_digest()) is compiled.AHEAD
    assert compiled.load(expected=compiled.source_digest() ^ 1) is None


def test_every_module_that_declares_a_loop_is_a_source_of_the_build_and_every_export_is_built():
    assert {"state.slots", "models.online.anomaly", "models.online.shape_memory"} <= compiled.DECLARED
    assert compiled.DECLARED.issubset(compiled.MODULES)
    for name in compiled.EXPORTS:
        assert callable(getattr(compiled.AHEAD, name)), name
    assert anomaly.learn_score_runs.__name__ == "models_online_anomaly__learn_score_runs"  # the built one, guarded


def test_the_built_loops_give_the_jits_bits_and_leave_numba_and_llvm_out_of_the_process():
    nab_dir = str(ROOT / "tests" / "data" / "nab")
    built, jit = _run(_BITS, nab_dir), _run(_BITS, nab_dir, jit=True)
    assert built["built"] and not jit["built"]
    assert built["bits"] == jit["bits"]
    assert not built["numba"] and not built["llvmlite"]
    assert jit["numba"]  # so the check above can fail


def test_a_worker_process_with_the_built_loops_imports_neither_numba_nor_llvm():
    code = (
        "import sys, orjson\n"
        "import agents.worker.app\n"
        "from models.catalog import DETECTORS\n"
        "from state.slots import SlotMap\n"
        "SlotMap.warm_up()\n"
        "[d.warm_up() for d in DETECTORS.values()]\n"
        "print(orjson.dumps({m: m in sys.modules for m in ('numba', 'llvmlite', 'scipy')}).decode())\n"
    )
    assert _run(code) == {"numba": False, "llvmlite": False, "scipy": False}


def test_a_built_loop_refuses_arguments_of_another_type_instead_of_reading_them_as_declared():
    spec = anomaly.AnomalySettings()
    det = anomaly.AnomalyState(spec)
    n = 3
    args = [np.arange(n), np.zeros(n, np.int64), np.zeros(n), np.zeros(n), det.stats, *det.daily, *det.arrays]
    args += [*det.pool, det.params, np.empty(n), np.zeros(n, np.bool_), np.empty(n)]
    anomaly.learn_score_runs(*args)
    with pytest.raises(TypeError, match="argument 0 must be an array of int64 with 1 dimension"):
        anomaly.learn_score_runs(np.arange(n, dtype=np.int32), *args[1:])
    with pytest.raises(TypeError, match="argument 4 must be a tuple of 13 arrays"):
        anomaly.learn_score_runs(*args[:4], det.stats[:-1], *args[5:])
    with pytest.raises(TypeError, match="18 arguments, not 17"):
        anomaly.learn_score_runs(*args[:-1])
    with pytest.raises(TypeError, match="argument 0 must be an array of uint8"):
        state.slots._joined(np.zeros(4, np.int8), np.zeros(2, np.int64), np.zeros(1, np.int64))
