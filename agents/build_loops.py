"""Build the engine's compiled loops ahead of time (``make`` runs it): ``python -m agents.build_loops``.

Every loop declared with :func:`state.compiled.njit` and an export signature goes into one extension module,
``state/_loops``, with the digest of the sources it was built from (see state/compiled.py). The loops are
compiled from numba's form of them, so the build runs in a process of its own with ``WARDEN_JIT`` set. Where
numba's ahead-of-time compiler is missing or fails, it says so and the engine compiles its loops by JIT as before.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

from state import compiled


def build(output_dir: Path) -> Path:
    """Compile every exported loop and the source digest into ``output_dir`` (in a process where the loops
    are numba's: ``WARDEN_JIT`` set); the built file."""
    from numba.core.compiler import Flags
    from numba.pycc import CC, compiler

    for module in compiled.MODULES:  # each declares its loops
        importlib.import_module(module)

    class ReleasingGil(Flags):  # as the JIT's nogil=True: partitions' threads run loops side by side
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.release_gil = True

    compiler.Flags = ReleasingGil
    cc = CC(compiled.MODULE.rsplit(".", 1)[1])
    cc.output_dir = str(output_dir)
    for name, (fn, specs, returns) in compiled.EXPORTS.items():
        cc.export(name, f"{returns}({', '.join(compiled.numba_type(s) for s in specs)})")(fn)
    digest = compiled.source_digest()
    cc.export("source_digest", "i8()")(lambda: digest)
    cc.compile()
    return output_dir / cc.output_file


def main() -> int:
    if not os.environ.get("WARDEN_JIT"):
        env = {**os.environ, "WARDEN_JIT": "1"}
        return subprocess.run([sys.executable, "-m", "agents.build_loops"], env=env, cwd=compiled.ROOT).returncode
    try:
        built = build(compiled.ROOT / "state")
    except Exception as exc:  # numba without its ahead-of-time compiler, no C compiler: the JIT still works
        print(f"build_loops: not built ({type(exc).__name__}: {exc}); loops will compile by JIT", file=sys.stderr)
        return 0
    print(f"build_loops: {len(compiled.EXPORTS)} loops in {built.relative_to(compiled.ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
