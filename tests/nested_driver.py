"""MPI driver of tests/test_nested.py: ``mpiexec -n P python tests/nested_driver.py CASES.json``.

CASES.json is a list of objects, each either

- ``{"train": {section: {key: value}}}``: a nested training run (:func:`braidnet.train.train`, no
  output files) with these configuration values over the defaults; rank 0 prints its history;
- ``{"gradient": {"layers", "r", "kind", "braid"}}``: a coarse network with O(1) weights is solved
  exactly, its weights and states are refined by r, and the refined network's layer-parallel
  objective and gradient (cores started from the refined states) are compared on rank 0 with the
  layer-serial ones; prints the relative differences.

Rank 0 prints one line ``RESULT {json}`` per case; an exception anywhere aborts every rank.
"""
from __future__ import annotations

import json
import sys
import traceback

import numpy as np
from mpi4py import MPI

from braidnet import config, nested, train
from braidnet.parallel import ParallelNetwork
from braidnet.resnet import ResNet


def run_train(values: dict, comm) -> dict:
    cfg = config.defaults()
    for section, keys in values.items():
        cfg[section].update(keys)
    cfg["output"]["dir"] = None
    cfg["output"]["progress"] = False
    res = train.train(cfg, comm=comm)
    return {"history": res.history, "final": res.final_val_accuracy}


def run_gradient(case: dict, comm) -> dict:
    rng = np.random.default_rng(3)
    X, Y = rng.standard_normal((40, 2)), rng.integers(0, 3, 40)
    kw = dict(T=2.0, activation="tanh", opening="dense", gamma_tik=1e-2, gamma_ddt=1e-2, gamma_class=1e-2)
    coarse = ResNet(2, 3, 4, case["layers"], **kw)
    fine = ResNet(2, 3, 4, case["layers"] * case["r"], **kw)
    theta = coarse.init_params(seed=5, scale_opening=1.0, scale_layers=1.0, scale_classifier=1.0) - 0.5
    with ParallelNetwork(coarse, X, Y, comm=comm, braid=case["braid"]) as pn:
        pn.set_params(pn.scatter(theta))
        pn.forward()
        pn.backward()
        warm = nested.refine_warm_states(pn.warm_states(root=None, endpoints=True), case["r"], case["kind"])
    theta_f = nested.interpolate_params(coarse, fine, theta, case["kind"])
    with ParallelNetwork(fine, X, Y, comm=comm, braid=case["braid"]) as pn:
        pn.load_warm_states(warm)
        pn.set_params(pn.scatter(theta_f))
        info = pn.forward()
        g, _ = pn.backward()
        G = pn.gather(g)
    if comm.Get_rank() != 0:
        return {}
    f_ser, g_ser = fine.loss_and_gradient(theta_f, X, Y)
    return {"objective_rel": abs(info["objective"] - f_ser) / abs(f_ser),
            "gradient_rel": float(np.max(np.abs(G - g_ser)) / np.max(np.abs(g_ser)))}


def main() -> None:
    comm = MPI.COMM_WORLD
    with open(sys.argv[1]) as f:
        cases = json.load(f)
    try:
        for case in cases:
            out = run_train(case["train"], comm) if "train" in case else run_gradient(case["gradient"], comm)
            if comm.Get_rank() == 0:
                print("RESULT " + json.dumps(out), flush=True)
    except BaseException:
        traceback.print_exc()
        sys.stderr.flush()
        comm.Abort(1)


if __name__ == "__main__":
    main()
