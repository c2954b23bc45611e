"""MPI cases of tests/test_trace_replay.py (run by tests/mpi_entry.py through :func:`mpi_launch.run_cases`).

- ``cases_trace.core_trace(comm, problem, ntime, options, drives)`` solves a reference problem with
  the event trace on, ``drives`` times (warm restarts), and returns on every rank its trace (as lists)
  and the step counter of every drive (``Core.step_calls``), plus its rank;
- ``cases_trace.network(comm, layers, width, batch)`` runs a ParallelNetwork's forward and backward
  solves twice, on two networks built alike, one tracing and one not, and returns on every rank
  whether the objective and the gradient slice are bit for bit equal, the trace's event counts per
  kind, and that untraced network's (empty) trace lengths.
"""
from __future__ import annotations

import numpy as np

from braidnet.braid import TRACE_KINDS, Core
from braidnet.parallel import ParallelNetwork
from braidnet.refproblems import reference_problem
from braidnet.resnet import ResNet


def core_trace(comm, problem: str, ntime: int, options: dict, drives: int) -> dict:
    app, tstart, tstop = reference_problem(problem, ntime, fast=True)
    steps = []
    with Core(app, tstart, tstop, ntime, comm, **options) as core:
        before = core.trace.size
        core.set_trace(True)
        for _ in range(drives):
            core.drive()
            steps.append(core.step_calls)
        core.set_trace(False)
        core.drive()                # not recorded: the trace was stopped
        tr = core.trace
    return {"rank": comm.Get_rank(), "before": before, "steps": steps,
            "events": {name: tr[name].tolist() for name in tr.dtype.names}}


def network(comm, layers: int, width: int, batch: int) -> dict:
    rng = np.random.default_rng(3)
    net = ResNet(2, 3, width, layers, T=2.0, activation="tanh", opening="dense")
    X, Y = rng.standard_normal((batch, 2)), rng.integers(0, 3, batch)
    theta = net.init_params(seed=1, scale_opening=1.0, scale_layers=1.0, scale_classifier=1.0) - 0.5
    braid = dict(max_levels=3, cfactor=2, min_coarse=2, nrelax=1)
    results = []
    for trace in (False, True):
        with ParallelNetwork(net, X, Y, comm=comm, braid=braid) as pn:
            if trace:
                pn.set_trace(True)
            x = pn.scatter(theta)
            out = []
            for _ in range(2):
                pn.set_params(x)
                f = pn.forward(max_iter=2, abs_tol=0.0)
                g, _ = pn.backward(max_iter=2, abs_tol=0.0)
                out.append((f["objective"], g.copy()))
                x = x - 0.01 * g
            tr = pn.traces()
            results.append((out, tr))
    (plain, tr0), (traced, tr1) = results
    same = all(a[0] == b[0] and np.array_equal(a[1], b[1]) for a, b in zip(plain, traced))
    kinds = {name: {c: int(np.sum(tr1[c]["kind"] == k)) for c in ("primal", "adjoint")}
             for name, k in TRACE_KINDS.items()}
    return {"same": bool(same), "kinds": kinds, "untraced": {c: int(tr0[c].size) for c in tr0},
            "drives": {c: sorted(set(tr1[c]["drive"].tolist())) for c in tr1}}
