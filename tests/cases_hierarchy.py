"""Rank side of tests/test_hierarchy.py (run through mpi_launch.run_cases / mpi_entry.py).

:func:`hierarchy` solves with a Python app that records every step it is asked to take, and returns
what the solve really did next to what the cores and ParallelNetwork say, for the test to compare.
"""
from __future__ import annotations

import numpy as np

from braidnet.braid import Core
from braidnet.parallel import ParallelNetwork
from braidnet.resnet import ResNet


class _RecordingApp:
    """u' = -u (a scalar) whose step records (level, fine index of tstart, fine index of tstop)."""

    def __init__(self, ntime: int, T: float) -> None:
        self.h = T / ntime
        self.steps: list = []

    def init(self, t):
        return np.array([1.0 if t == 0.0 else 0.5])

    def step(self, u, ustop, fstop, status):
        i0, i1 = round(status.tstart / self.h), round(status.tstop / self.h)
        stride = i1 - i0
        if stride <= 0 or abs(status.tstop - status.tstart - stride * self.h) > 1e-9 * self.h:
            raise AssertionError(f"step {status!r} spans no whole number of fine intervals")
        if status.index * stride != i0:
            raise AssertionError(f"level-local index {status.index} * stride {stride} != fine index {i0}")
        self.steps.append((status.level, i0, i1))
        u *= 1.0 / (1.0 + (status.tstop - status.tstart))


def _observed(steps: list) -> dict:
    """Per level (as a string, for JSON): the strides seen and the fine indices stepped into."""
    out: dict = {}
    for level, i0, i1 in steps:
        d = out.setdefault(str(level), {"strides": set(), "into": set()})
        d["strides"].add(i1 - i0)
        d["into"].add(i1)
    return {k: {"strides": sorted(v["strides"]), "into": sorted(v["into"])} for k, v in out.items()}


def _solve(comm, ntime: int, options: dict):
    app = _RecordingApp(ntime, 1.0)
    # skip 0 and FC-relaxation: every level is stepped on in the first iteration, every fine point
    # is stepped into
    core = Core(app, 0.0, 1.0, ntime, comm=comm, max_iter=2, skip=0, nrelax=1, print_level=0, **options)
    claimed = {"strides": list(core.level_strides), "distributions": [list(r) for r in core.distributions],
               "distribution": list(core.distribution)}
    res = core.drive()
    claimed["strides_after"] = list(core.level_strides)
    claimed["levels_built"] = res.levels
    core.close()
    return claimed, _observed(app.steps)


def hierarchy(comm, ntime: int, options: dict) -> dict:
    P, r = comm.Get_size(), comm.Get_rank()
    primal, primal_seen = _solve(comm, ntime, options)
    acomm = comm.Split(0, P - 1 - r)            # as ParallelNetwork's adjoint core
    adjoint, adjoint_seen = _solve(acomm, ntime, options)
    acomm.Free()

    net = ResNet(2, 2, 2, ntime, T=1.0, activation="tanh", opening="dense")
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((3, 2)), np.array([0, 1, 0])
    with ParallelNetwork(net, X, Y, comm=comm, braid=dict(options)) as pn:
        theta = net.init_params(seed=1)
        pn.set_params(pn.scatter(theta))
        # a few iterations on every level: a wrong halo plan fails here (missing weights or states)
        pn.forward(max_iter=2)
        pn.backward(max_iter=2)
        network = {"levels": list(pn.levels), "point_range": list(pn.point_range),
                   "adjoint_range": list(pn.adjoint_range)}
    return {"rank": r, "primal": primal, "primal_seen": primal_seen, "adjoint": adjoint,
            "adjoint_seen": adjoint_seen, "network": network}
