"""MPI cases of tests/test_braid_mpi.py (run by tests/mpi_entry.py through :func:`mpi_launch.run_cases`).

- ``cases_braid.solve(comm, problem, ntime, fast, options, variant=None)`` solves a reference
  problem (or, for ``variant="pack"``, a numpy app with all optional methods that counts its
  pack/unpack calls) and returns, on every rank, what that rank saw: ``iterations``, ``levels``,
  ``residual_norms``, ``distribution`` (its (ilower, iupper)), ``pack_calls``, ``accessed`` (the fine
  indices of its final access) and ``err`` (max abs difference of those states from sequential time
  stepping; 0 when it has none);
- ``cases_braid.fail(comm, callback, rank)`` makes one callback fail on one rank and returns, on
  every rank, the type, text, code, rank and traceback of what ``drive()`` raised there (or None);
- ``cases_braid.bad_init(comm, mode, rank)`` builds a Core whose vectors are wrong on one rank
  (``mode``: "size", "complex", "raise" for a Python app's ``init(tstart)``, "vector-size" for a
  VectorApp's ``size``) and returns, on every rank, what the constructor raised there (or None).
"""
from __future__ import annotations

import traceback
from typing import Any

import numpy as np
from mpi4py import MPI

from braidnet.braid import Core
from braidnet.refapps import FailingScalarApp, HeatApp, ScalarApp
from braidnet.refproblems import ScalarODE, reference_problem, sequential_solution

COMM = MPI.COMM_WORLD


class PackingScalar(ScalarODE):
    """ScalarODE with every optional method of a Python app, counting pack/unpack calls."""

    def __init__(self) -> None:
        super().__init__()
        self.pack_calls = 0

    def clone(self, u: np.ndarray) -> np.ndarray:
        return u.copy()

    def sum(self, alpha: float, x: np.ndarray, beta: float, y: np.ndarray) -> None:
        y[:] = alpha * x + beta * y

    def norm(self, u: np.ndarray) -> float:
        return float(np.sqrt(np.sum(u * u)))

    def bufsize(self) -> int:
        return 8

    def pack(self, u: np.ndarray) -> bytes:
        self.pack_calls += 1
        return u.astype("<f8").tobytes()

    def unpack(self, data: bytes) -> np.ndarray:
        self.pack_calls += 1
        return np.frombuffer(data, dtype="<f8")   # read only: the wrapper copies it


class FailOn(ScalarODE):
    """ScalarODE whose callback ``name`` raises LookupError on rank ``rank``."""

    def __init__(self, name: str, rank: int) -> None:
        super().__init__()
        self.fail = COMM.rank == rank
        self.name = name
        # the optional methods exist only when they are the one to fail (the wrapper's defaults
        # serve the other cases)
        if name in ("clone", "sum", "norm", "bufsize"):
            setattr(self, name, getattr(self, "_" + name))

    def _clone(self, u: np.ndarray) -> np.ndarray:
        self._maybe_fail("clone")
        return u.copy()

    def _sum(self, alpha: float, x: np.ndarray, beta: float, y: np.ndarray) -> None:
        self._maybe_fail("sum")
        y[:] = alpha * x + beta * y

    def _norm(self, u: np.ndarray) -> float:
        self._maybe_fail("norm")
        return float(np.sqrt(np.sum(u * u)))

    def _bufsize(self) -> int:
        self._maybe_fail("bufsize")
        return len(self.pack(self.init(0.0)))

    def _maybe_fail(self, name: str) -> None:
        if self.fail and name == self.name:
            raise LookupError(f"{name} failed on purpose on rank {COMM.rank}")

    def init(self, t: float) -> np.ndarray:
        self._maybe_fail("init")
        return super().init(t)

    def step(self, u: np.ndarray, ustop: np.ndarray, fstop: Any, status: Any) -> None:
        if status.iter >= 1:
            self._maybe_fail("step")
        super().step(u, ustop, fstop, status)

    def access(self, u: np.ndarray, status: Any) -> None:
        self._maybe_fail("access")
        super().access(u, status)

    def pack(self, u: np.ndarray) -> bytes:
        self._maybe_fail("pack")
        return u.tobytes()

    def unpack(self, data: bytes) -> np.ndarray:
        self._maybe_fail("unpack")
        return np.frombuffer(data).copy()


class BadInitOn(ScalarODE):
    """ScalarODE whose init on rank ``rank`` returns 2 entries ("size"), complex ones ("complex") or
    raises LookupError ("raise")."""

    def __init__(self, mode: str, rank: int) -> None:
        super().__init__()
        self.bad = COMM.rank == rank
        self.mode = mode

    def init(self, t: float) -> np.ndarray:
        u = super().init(t)
        if not self.bad:
            return u
        if self.mode == "raise":
            raise LookupError(f"init failed on purpose on rank {COMM.rank}")
        return np.zeros(2) if self.mode == "size" else u.astype(complex)


def _mixed_vector_app(big: bool) -> Any:
    """A VectorApp of size 33 (big) or 1, whose class is called Mixed either way."""
    class Mixed(HeatApp if big else ScalarApp):   # one name on every rank: one message
        pass
    return Mixed()


def _outcome(exc: BaseException) -> dict:
    return {"type": type(exc).__name__, "message": str(exc), "code": getattr(exc, "code", None),
            "rank": getattr(exc, "rank", None),
            "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))}


def bad_init(comm, mode: str, rank: int) -> dict | None:
    app = _mixed_vector_app(comm.rank == rank) if mode == "vector-size" else BadInitOn(mode, rank)
    try:
        core = Core(app, 0.0, 8.0, 16, comm, print_level=0)
    except BaseException as exc:  # noqa: BLE001 - reporting whatever the constructor raised is the point
        return _outcome(exc)
    core.close()
    return None


def solve(comm, problem: str, ntime: int, fast: bool, options: dict, variant: str | None = None) -> dict:
    if variant == "pack":
        app, tstart, tstop = PackingScalar(), 0.0, ntime / 2
    else:
        app, tstart, tstop = reference_problem(problem, ntime, fast=fast)
    app.keep_states(ntime + 1)
    with Core(app, tstart, tstop, ntime, comm, **options) as core:
        res = core.drive()
        dist = core.distribution
    states = app.states()
    packs = getattr(app, "pack_calls", 0)
    seq = sequential_solution(app, tstart, tstop, ntime)
    err = max((float(np.abs(u - seq[i]).max()) for i, u in states.items()), default=0.0)
    return {"iterations": res.iterations, "levels": res.levels, "residual_norms": res.residual_norms,
            "distribution": dist, "pack_calls": packs, "accessed": sorted(states), "err": err}


def fail(comm, callback: str, rank: int) -> dict | None:
    if callback.startswith("fast-"):
        # fail on the level-0 step into the first point `rank` owns (that rank computes it)
        ntime = 32
        q, r = divmod(ntime + 1, comm.size)
        first = rank * q + min(rank, r)
        app: Any = FailingScalarApp(max(first - 1, 0), 1, callback[5:])
    else:
        ntime = 32
        app = FailOn(callback, rank)
    outcome = None
    try:
        with Core(app, 0.0, ntime / 2, ntime, comm, print_level=0, max_levels=3, abs_tol=1e-12) as core:
            core.drive()
    except BaseException as exc:  # noqa: BLE001 - reporting whatever drive() raised is the point
        outcome = _outcome(exc)
    return outcome
