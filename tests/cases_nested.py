"""MPI cases of tests/test_nested.py (run by tests/mpi_entry.py through :func:`mpi_launch.run_cases`).

- ``cases_nested.run_train(comm, values)``: a nested training run (:func:`braidnet.train.train`, no
  output files) with ``values`` ({section: {key: value}}) over the configuration defaults; every
  rank returns its history and final validation accuracy;
- ``cases_nested.run_gradient(comm, layers, r, kind, braid)``: a coarse network with O(1) weights is
  solved exactly, its weights and states are refined by r, and the refined network's layer-parallel
  objective and gradient (cores started from the refined states) are compared on rank 0 with the
  layer-serial ones; rank 0 returns the relative differences, the other ranks None.
"""
from __future__ import annotations

import numpy as np

from braidnet import config, nested, train
from braidnet.parallel import ParallelNetwork
from braidnet.resnet import ResNet


def run_train(comm, values: dict) -> dict:
    cfg = config.defaults()
    for section, keys in values.items():
        cfg[section].update(keys)
    cfg["output"]["dir"] = None
    cfg["output"]["progress"] = False
    res = train.train(cfg, comm=comm)
    return {"history": res.history, "final": res.final_val_accuracy}


def run_gradient(comm, layers: int, r: int, kind: str, braid: dict) -> dict | None:
    rng = np.random.default_rng(3)
    X, Y = rng.standard_normal((40, 2)), rng.integers(0, 3, 40)
    kw = dict(T=2.0, activation="tanh", opening="dense", gamma_tik=1e-2, gamma_ddt=1e-2, gamma_class=1e-2)
    coarse = ResNet(2, 3, 4, layers, **kw)
    fine = ResNet(2, 3, 4, layers * r, **kw)
    theta = coarse.init_params(seed=5, scale_opening=1.0, scale_layers=1.0, scale_classifier=1.0) - 0.5
    with ParallelNetwork(coarse, X, Y, comm=comm, braid=braid) as pn:
        pn.set_params(pn.scatter(theta))
        pn.forward()
        pn.backward()
        warm = nested.refine_warm_states(pn.warm_states(root=None, endpoints=True), r, kind)
    theta_f = nested.interpolate_params(coarse, fine, theta, kind)
    with ParallelNetwork(fine, X, Y, comm=comm, braid=braid) as pn:
        pn.load_warm_states(warm)
        pn.set_params(pn.scatter(theta_f))
        info = pn.forward()
        g, _ = pn.backward()
        G = pn.gather(g)
    if comm.Get_rank() != 0:
        return None
    f_ser, g_ser = fine.loss_and_gradient(theta_f, X, Y)
    return {"objective_rel": abs(info["objective"] - f_ser) / abs(f_ser),
            "gradient_rel": float(np.max(np.abs(G - g_ser)) / np.max(np.abs(g_ser)))}
