"""MPI cases of tests/test_f32.py (run by tests/mpi_entry.py through :func:`mpi_launch.run_cases`).

``cases_f32.equals_serial(comm, **case)`` builds a float32 ResNet and its ParallelNetwork on ``comm``,
solves forward and backward to the float32 round-off floor and returns, on rank 0, the relative
differences of objective, loss and gradient from the float32 and the float64 layer-serial network,
the dtypes it saw, and whether loading its own warm states into a new network repeats the next
One-shot iteration exactly.  The other ranks return None.
"""
from __future__ import annotations

import numpy as np

from braidnet.parallel import ParallelNetwork
from braidnet.resnet import ResNet


def rel(a, b) -> float:
    """max |a - b| / max |b|."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def _one_shot(pn: ParallelNetwork, theta: np.ndarray):
    pn.set_params(pn.scatter(theta))
    f = pn.forward(max_iter=2)
    g, _ = pn.backward(max_iter=2)
    return f, pn.gather(g, root=None)


def equals_serial(comm, width: int, n_layers: int, activation: str = "tanh", opening: str = "dense",
                  bias: str = "channel", batch: int = 40, seed: int = 0, braid: dict = None):
    rng = np.random.default_rng(seed)
    kw = dict(T=2.0, activation=activation, opening=opening, bias=bias, gamma_tik=1e-3,
              gamma_ddt=1e-3, gamma_class=1e-3)
    net = ResNet(2, 3, width, n_layers, dtype="float32", **kw)
    net64 = ResNet(2, 3, width, n_layers, **kw)
    X = rng.standard_normal((batch, 2))
    Y = rng.integers(0, 3, batch)
    theta = (net.init_params(seed=seed, scale_opening=1.0, scale_layers=1.0, scale_classifier=1.0) - 0.5)
    theta[net.layout.layers_slice()] /= np.sqrt(width)
    out = None
    with ParallelNetwork(net, X, Y, comm=comm, X_val=X[:9], Y_val=Y[:9], braid=braid) as pn:
        pn.set_params(pn.scatter(theta))
        f = pn.forward()
        g, binfo = pn.backward()
        G = pn.gather(g)
        warm = pn.warm_states(root=None)
        theta2 = theta + 0.01 * rng.standard_normal(theta.shape)
        f2, g2 = _one_shot(pn, theta2)
        if comm.rank == 0:
            obj32, g32 = net.loss_and_gradient(theta, X, Y)
            obj64, g64 = net64.loss_and_gradient(theta, X, Y)
            out = {"objective_vs_f32": rel(f["objective"], obj32), "gradient_vs_f32": rel(G, g32),
                   "loss_vs_f32": rel(f["loss"], net.loss(theta, X, Y)),
                   "objective_vs_f64": rel(f["objective"], obj64), "gradient_vs_f64": rel(G, g64),
                   "serial_objective_f32_vs_f64": rel(obj32, obj64),
                   "iterations": f["iterations"], "adjoint_iterations": binfo["iterations"],
                   "gradient_dtype": str(G.dtype),
                   "warm_dtypes": sorted({str(v.dtype) for v in warm.values()})}
    # a new network started from the warm states repeats the One-shot iteration bit for bit
    with ParallelNetwork(net, X, Y, comm=comm, X_val=X[:9], Y_val=Y[:9], braid=braid) as pn:
        pn.load_warm_states(warm)
        f3, g3 = _one_shot(pn, theta2)
        if comm.rank == 0:
            out["resume_objective_equal"] = f3["objective"] == f2["objective"]
            out["resume_gradient_equal"] = bool(np.array_equal(g3, g2))
            try:
                pn.load_warm_states({"primal": warm["primal"].astype(np.float64)})
                out["float64_warm_refused"] = ""
            except (ValueError, RuntimeError) as e:
                out["float64_warm_refused"] = str(e)
    return out
