"""The engine's compiled loops: built ahead of time into one extension module, else compiled by numba's JIT.

``make`` builds every loop declared with :func:`njit` and an ``export`` signature into ``state/_loops`` (numba's
ahead-of-time compiler, ``python -m agents.build_loops``). A process that finds that module, built from the
sources it runs (:data:`SOURCES`' digest), calls its machine code and never loads numba or LLVM: numba's JIT
costs every worker some 120 MB resident (its import and the compiler behind its cache) for loops that do not
change. Where the module is missing or was built from other sources, or ``WARDEN_JIT`` is set, each loop is
numba's JIT as before, with the same arithmetic.

Built code takes its arguments as declared, unchecked, so every call of an exported loop goes through a guard
that refuses an array of another type or shape with a TypeError (a wrong one would be read as the declared
type). A signature is a tuple of argument specs, numba's short names: ``"f8[:]"`` (a 1-d float64 array),
``"u1[:,:]"`` (2-d uint8), ``"f8[:]*13"`` (a tuple of 13 such arrays).

>>> guard = _guard("demo", lambda a, b: None, ("i8[:]", "f4[:,:]*2"))
>>> guard(np.zeros(3, np.int64), (np.zeros((2, 2), np.float32),) * 2)
>>> guard(np.zeros(3, np.int32), ())
Traceback (most recent call last):
...
TypeError: demo: argument 0 must be an array of int64 with 1 dimension(s), not int32 with 1
"""

from __future__ import annotations

import hashlib
import importlib
import os
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
# Every module with a loop declared by njit: the built module is used only while these are as it was built from.
SOURCES = ("state/slots.py", "models/online/shape_memory.py", "models/online/anomaly.py")
MODULES = tuple(s.removesuffix(".py").replace("/", ".") for s in SOURCES)  # what the build imports
MODULE = "state._loops"
# Export name -> (the Python function, its argument specs, its return spec): filled as modules declare loops.
EXPORTS: dict[str, tuple[Callable, tuple[str, ...], str]] = {}
DECLARED: set[str] = set()  # the modules that declared a loop (a test holds them within SOURCES)
_DTYPES = {
    "i8": np.int64,
    "i4": np.int32,
    "u1": np.uint8,
    "u2": np.uint16,
    "f8": np.float64,
    "f4": np.float32,
    "b1": np.bool_,
}
_SPEC = re.compile(r"(\w\w)\[(:(?:,:)*)\](?:\*(\d+))?$")


def source_digest() -> int:
    """A digest of :data:`SOURCES` (60 bits), which the built module carries from its build."""
    digest = hashlib.sha256()
    for name in SOURCES:
        digest.update((ROOT / name).read_bytes())
    return int(digest.hexdigest()[:15], 16)


def load(expected: int | None = None):
    """The built module if it exists and was built from sources with digest ``expected`` (default: today's),
    else None."""
    if os.environ.get("WARDEN_JIT"):
        return None
    try:
        module = importlib.import_module(MODULE)
    except ImportError:
        return None
    return module if module.source_digest() == (source_digest() if expected is None else expected) else None


AHEAD = load()


def njit(export: tuple[str, ...] | None = None, returns: str = "void", **options) -> Callable:
    """``numba.njit(**options)``; a loop given ``export`` (its argument specs) and ``returns`` is also built
    ahead of time, and where the built module is in use it is that module's code, guarded, and the others are
    plain Python (they run compiled inside the loops that call them)."""

    def declare(fn: Callable) -> Callable:
        DECLARED.add(fn.__module__)
        name = export_name(fn)
        if export is not None:
            EXPORTS[name] = (fn, export, returns)
        if AHEAD is None:
            from numba import njit as jit

            return jit(**options)(fn)
        return _guard(name, getattr(AHEAD, name), export) if export is not None else fn

    return declare


def export_name(fn: Callable) -> str:
    """The name a loop has in the built module."""
    return f"{fn.__module__.replace('.', '_')}__{fn.__name__}"


def numba_type(spec: str) -> str:
    """The numba type of an argument spec, as numba's signature strings write it."""
    dtype, dims, count = _SPEC.match(spec).groups()
    array = f"{dtype}[{dims}]"
    return f"UniTuple({array}, {count})" if count else array


def _guard(name: str, loop: Callable, specs: tuple[str, ...]) -> Callable:
    checks = []
    for spec in specs:
        dtype, dims, count = _SPEC.match(spec).groups()
        checks.append((np.dtype(_DTYPES[dtype]), dims.count(":"), int(count) if count else None))

    def guarded(*args):
        if len(args) != len(checks):
            raise TypeError(f"{name}: {len(checks)} arguments, not {len(args)}")
        for i, (arg, (dtype, ndim, count)) in enumerate(zip(args, checks)):
            arrays = arg if count is not None else (arg,)
            if count is not None and not (isinstance(arg, tuple) and len(arg) == count):
                raise TypeError(f"{name}: argument {i} must be a tuple of {count} arrays")
            for a in arrays:
                if not isinstance(a, np.ndarray) or a.dtype != dtype or a.ndim != ndim:
                    got = f"{a.dtype} with {a.ndim}" if isinstance(a, np.ndarray) else type(a).__name__
                    raise TypeError(
                        f"{name}: argument {i} must be an array of {dtype} with {ndim} dimension(s), not {got}"
                    )
        return loop(*args)

    guarded.__name__ = name
    return guarded
