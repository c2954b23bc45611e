"""MPI cases of tests/test_data_parallel.py (run by tests/mpi_entry.py through :func:`mpi_launch.run_cases`).

``cases_data.groups_equal_one_rank(comm, Q, **case)`` splits the ranks into Q data-parallel groups
of P = size / Q ranks (:func:`braidnet.parallel.split_comm`), runs a few One-shot steps (fixed MGRIT
iterations, a gradient step each) on them and, on every rank, the same steps on ``COMM_SELF`` with
the whole batch; every rank returns the largest relative differences, its own objective and gradient
checksum (so the test sees every rank agree), and what a network built afresh on (P, Q) from the
one-rank run's warm states computes next (resume on another rank split).
"""
from __future__ import annotations

import numpy as np
from mpi4py import MPI

from braidnet.parallel import ParallelNetwork, split_comm
from braidnet.resnet import ResNet

from cases_parallel import rel


def _problem(case: dict):
    rng = np.random.default_rng(case.get("seed", 3))
    net = ResNet(2, 3, case.get("width", 5), case.get("n_layers", 12), T=2.0,
                 activation=case.get("activation", "tanh"), opening=case.get("opening", "dense"),
                 gamma_tik=1e-2, gamma_ddt=1e-2, gamma_class=1e-2, dtype=case.get("dtype", "float64"))
    batch, n_val = case.get("batch", 31), case.get("n_val", 9)
    X, Xv = rng.standard_normal((batch, 2)), rng.standard_normal((n_val, 2))
    Y, Yv = rng.integers(0, 3, batch), rng.integers(0, 3, n_val)
    theta = net.init_params(seed=1, scale_opening=1.0, scale_layers=1.0, scale_classifier=1.0) - 0.5
    return net, X, Y, Xv, Yv, theta


def _steps(pn: ParallelNetwork, theta: np.ndarray, steps: int, d: int, drop: bool = False) -> dict:
    """``steps`` gradient steps from theta, each with d primal and d adjoint iterations (or, with
    ``drop``, one-iteration adjoint drives until the residual fell 10x: a decision from rnorm)."""
    rows, th = [], theta.copy()
    for _ in range(steps):
        pn.set_params(pn.scatter(th))
        f = pn.forward(max_iter=d, abs_tol=0.0)
        if drop:
            first, n = None, 0
            while n < 8:
                g, b = pn.backward(max_iter=1, abs_tol=0.0)
                n += 1
                first = b["rnorm"] if first is None else first
                if b["rnorm"] <= first / 10:
                    break
            b["iterations"] = n
        else:
            g, b = pn.backward(max_iter=d, abs_tol=0.0)
        g = pn.gather(g, root=None)
        rows.append({"f": f, "b": b, "g": g, "val": pn.validate(max_iter=d, abs_tol=0.0)})
        th = th - 0.2 * g
    return {"rows": rows, "theta": th, "warm": pn.warm_states(root=None), "steps": pn.step_counts()}


def _diff(a: dict, b: dict) -> dict:
    """Largest relative differences of run a against the reference run b."""
    out = {"objective": 0.0, "loss": 0.0, "gradient": 0.0, "rnorm": 0.0, "accuracy": 0.0, "val": 0.0,
           "iterations_equal": True}
    for ra, rb in zip(a["rows"], b["rows"]):
        for key in ("objective", "loss"):
            out[key] = max(out[key], rel(ra["f"][key], rb["f"][key]))
        out["gradient"] = max(out["gradient"], rel(ra["g"], rb["g"]))
        out["rnorm"] = max(out["rnorm"], rel(ra["f"]["rnorm"], rb["f"]["rnorm"]),
                           rel(ra["b"]["rnorm"], rb["b"]["rnorm"]))
        out["accuracy"] = max(out["accuracy"], abs(ra["f"]["accuracy"] - rb["f"]["accuracy"]))
        out["val"] = max(out["val"], abs(ra["val"] - rb["val"]))
        out["iterations_equal"] &= (ra["f"]["iterations"] == rb["f"]["iterations"]
                                    and ra["b"]["iterations"] == rb["b"]["iterations"])
    out["warm"] = max(rel(a["warm"][k], b["warm"][k]) for k in b["warm"])
    out["steps_equal"] = a["steps"] == b["steps"]
    return out


def groups_equal_one_rank(comm, Q: int, steps: int = 3, d: int = 2, drop: bool = False, **case) -> dict:
    net, X, Y, Xv, Yv, theta = _problem(case)
    braid = case.get("braid", dict(max_levels=3, cfactor=2, nrelax=1))
    lcomm, dcomm = split_comm(comm, Q)
    try:
        with ParallelNetwork(net, X, Y, comm=MPI.COMM_SELF, X_val=Xv, Y_val=Yv, braid=braid) as pn:
            ref = _steps(pn, theta, steps, d, drop)
        with ParallelNetwork(net, X, Y, comm=lcomm, data_comm=dcomm, X_val=Xv, Y_val=Yv, braid=braid) as pn:
            assert (pn.size, pn.data_groups) == (comm.Get_size() // Q, Q)
            got = _steps(pn, theta, steps, d, drop)
        out = _diff(got, ref)
        # resume on this split from the one-rank run's warm states: the next steps are the reference's
        with ParallelNetwork(net, X, Y, comm=MPI.COMM_SELF, X_val=Xv, Y_val=Yv, braid=braid) as pn:
            pn.load_warm_states(ref["warm"])
            ref_next = _steps(pn, ref["theta"], 1, d, drop)
        with ParallelNetwork(net, X, Y, comm=lcomm, data_comm=dcomm, X_val=Xv, Y_val=Yv, braid=braid) as pn:
            pn.load_warm_states(ref["warm"])
            got_next = _steps(pn, ref["theta"], 1, d, drop)
        out["resumed"] = _diff(got_next, ref_next)
        last = got["rows"][-1]
        out["mine"] = [last["f"]["objective"], float(np.sum(last["g"])), last["val"]]
        return out
    finally:
        lcomm.Free()
        dcomm.Free()
