"""Run many braidnet.braid solves in one MPI launch; rank 0 prints one JSON list of results.

    mpiexec -n P python tests/mpi_driver.py cases.json

Each case is a dict.  ``{"kind": "solve", "name", "problem", "ntime", "fast", "options",
"variant"}`` solves a reference problem and reports ``iterations``, ``levels``,
``residual_norms``, ``err`` (max abs difference from sequential time stepping over all points,
gathered from every rank's final access), ``distribution`` (each rank's (ilower, iupper)) and
``pack_calls`` (per rank, for the ``"pack"`` variant, a numpy app with all optional methods).
``{"kind": "fail", "name", "callback", "rank", ...}`` makes one callback fail on one rank and
reports, per rank, the type and text of what ``drive()`` raised (or null).  Used by
test_braid_mpi.py.
"""
from __future__ import annotations

import json
import sys
import traceback
from typing import Any

import numpy as np
from mpi4py import MPI

from braidnet.braid import Core
from braidnet.refapps import FailingScalarApp
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


def solve(case: dict) -> dict | None:
    ntime = case["ntime"]
    if case.get("variant") == "pack":
        app, tstart, tstop = PackingScalar(), 0.0, ntime / 2
    else:
        app, tstart, tstop = reference_problem(case["problem"], ntime, fast=case["fast"])
    app.keep_states(ntime + 1)
    with Core(app, tstart, tstop, ntime, COMM, **case["options"]) as core:
        res = core.drive()
        dist = COMM.gather(core.distribution, root=0)
    states = COMM.gather(app.states(), root=0)
    packs = COMM.gather(getattr(app, "pack_calls", 0), root=0)
    if COMM.rank != 0:
        return None
    got: dict[int, np.ndarray] = {}
    for part in states:
        got.update(part)
    missing = sorted(set(range(ntime + 1)) - set(got))
    seq = sequential_solution(app, tstart, tstop, ntime)
    err = float("inf") if missing else float(np.abs(np.array([got[i] for i in range(ntime + 1)]) - seq).max())
    return {"iterations": res.iterations, "levels": res.levels, "residual_norms": res.residual_norms,
            "err": err, "missing": missing, "distribution": dist, "pack_calls": packs}


def fail(case: dict) -> list | None:
    rank = case["rank"]
    if case["callback"].startswith("fast-"):
        # fail on the level-0 step into the first point `rank` owns (that rank computes it)
        ntime = 32
        q, r = divmod(ntime + 1, COMM.size)
        first = rank * q + min(rank, r)
        app: Any = FailingScalarApp(max(first - 1, 0), 1, case["callback"][5:])
    else:
        ntime = 32
        app = FailOn(case["callback"], rank)
    outcome = None
    try:
        with Core(app, 0.0, ntime / 2, ntime, COMM, print_level=0, max_levels=3, abs_tol=1e-12) as core:
            core.drive()
    except BaseException as exc:  # noqa: BLE001 - reporting whatever drive() raised is the point
        outcome = {"type": type(exc).__name__, "message": str(exc), "code": getattr(exc, "code", None),
                   "rank": getattr(exc, "rank", None),
                   "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))}
    return COMM.gather(outcome, root=0)


def main(path: str) -> None:
    with open(path) as f:
        cases = json.load(f)
    results = {}
    for case in cases:
        out = solve(case) if case["kind"] == "solve" else fail(case)
        if COMM.rank == 0:
            results[case["name"]] = out
    if COMM.rank == 0:
        sys.stdout.write(json.dumps({"size": COMM.size, "results": results}) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1])
