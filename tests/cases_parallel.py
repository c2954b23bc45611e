"""MPI cases of tests/test_parallel.py (run by tests/mpi_entry.py through :func:`mpi_launch.run_cases`).

``cases_parallel.equals_serial(comm, **case)`` builds a ResNet and a ParallelNetwork on ``comm`` and
compares, on rank 0, the layer-parallel objective, loss, accuracy and gradient with the layer-serial
ones at two parameter points (the second one after a warm restart), plus the validation accuracy and
a sequence of one-iteration drives (warm restarts), whose non-converged iterates rank 0 compares
with a run of the same case on ``COMM_SELF``.  Rank 0 returns the comparisons, the other ranks None.

Case keys: n_layers, width, batch, opening, activation, bias, T, gammas (tik, ddt, class), seed,
braid (the core options); convolutional networks (tests/test_convnet.py): kind="conv",
image_shape, kernel_size, classifier, c_in (input channels, default 1).
"""
from __future__ import annotations

import numpy as np
from mpi4py import MPI

from braidnet.parallel import ParallelNetwork
from braidnet.resnet import ResNet


def rel(a, b) -> float:
    """max |a - b| / max |b| (0 when both vanish)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    scale = float(np.max(np.abs(b))) if b.size else 0.0
    err = float(np.max(np.abs(a - b))) if a.size else 0.0
    return err / scale if scale > 0 else err


def run_case(case: dict, comm) -> dict:
    rng = np.random.default_rng(case.get("seed", 0))
    n_features, n_classes = 2, 3
    g_tik, g_ddt, g_class = case.get("gammas", (1e-2, 1e-2, 1e-2))
    conv = {}
    scale, shift = 1.0, 0.0
    if case.get("kind") == "conv":
        conv = dict(kind="conv", image_shape=tuple(case["image_shape"]), kernel_size=case.get("kernel_size", 3),
                    classifier=case.get("classifier", "dense"))
        n_features = case.get("c_in", 1) * conv["image_shape"][0] * conv["image_shape"][1]
        if case.get("opening") == "mnist":
            scale, shift = 60.0, 128.0          # pixel values around 0..255
    net = ResNet(n_features, n_classes, case["width"], case["n_layers"], T=case.get("T", 2.0),
                 activation=case.get("activation", "tanh"), opening=case.get("opening", "pad"),
                 bias=case.get("bias", "channel"), gamma_tik=g_tik, gamma_ddt=g_ddt, gamma_class=g_class,
                 **conv)
    batch = case.get("batch", 50)
    X = shift + scale * rng.standard_normal((batch, n_features))
    Y = rng.integers(0, n_classes, batch)
    Xv = shift + scale * rng.standard_normal((batch // 2 + 1, n_features))
    Yv = rng.integers(0, n_classes, Xv.shape[0])
    # O(1) weights, so that every layer and the adjoint do real work
    theta = net.init_params(seed=case.get("seed", 0), scale_opening=1.0, scale_layers=1.0,
                            scale_classifier=1.0) - 0.5

    out: dict = {"levels": None, "checks": []}
    with ParallelNetwork(net, X, Y, comm=comm, X_val=Xv, Y_val=Yv, braid=case.get("braid")) as pn:
        out["levels"] = len(pn.levels)
        out["coarse_points"] = net.n_layers // pn.levels[-1] + 1
        for rnd in range(2):
            pn.set_params(pn.scatter(theta))
            f = pn.forward()
            g, binfo = pn.backward()
            va = pn.validate()
            G = pn.gather(g)
            G_all = pn.gather(g, root=None)
            same = comm.allgather((f, binfo["rnorm"], va, float(pn.dot(g, g))))
            if comm.rank == 0:
                obj, gs = net.loss_and_gradient(theta, X, Y)
                out["checks"].append({
                    "objective": rel(f["objective"], obj),
                    "loss": rel(f["loss"], net.loss(theta, X, Y)),
                    "gradient": rel(G, gs),
                    "dot": rel(same[0][3], float(gs @ gs)),
                    "accuracy": f["accuracy"] - net.accuracy(theta, X, Y),
                    "val_accuracy": va - net.accuracy(theta, Xv, Yv),
                    "gather_all": bool(np.array_equal(G, G_all)),
                    "same_on_all_ranks": all(s == same[0] for s in same),
                    "rnorm": f["rnorm"], "adjoint_rnorm": binfo["rnorm"],
                    "iterations": f["iterations"], "adjoint_iterations": binfo["iterations"],
                })
            theta = theta + 0.1 * rng.standard_normal(theta.shape)

        # One-shot style: single-iteration warm restarts at fixed weights converge to the solution
        pn.set_params(pn.scatter(theta))
        history = []
        for _ in range(12):
            f = pn.forward(max_iter=1)
            history.append(f["loss"])
        g, binfo = pn.backward(max_iter=1)
        G = pn.gather(g)
        if comm.rank == 0:
            out["warm_loss"] = rel(history[-1], net.loss(theta, X, Y))
            out["warm_first_loss"] = rel(history[0], net.loss(theta, X, Y))
            out["warm_iterations"] = f["iterations"]
            out["warm_adjoint_iterations"] = binfo["iterations"]
            # non-converged iterates: they depend on every coarse-level operator, so they tell
            # whether the halo weights of the coarse levels are right
            out["history"] = history
            out["warm_gradient"] = G.tolist()

        # checkpoint/resume: a new network loaded with the warm states continues exactly
        pn.validate(max_iter=1)
        warm = pn.warm_states(root=None)
        theta = theta + 0.01 * rng.standard_normal(theta.shape)
        cont = one_shot_step(pn, theta)
    with ParallelNetwork(net, X, Y, comm=comm, X_val=Xv, Y_val=Yv, braid=case.get("braid")) as pn2:
        pn2.load_warm_states(warm)
        resumed = one_shot_step(pn2, theta)
    if comm.rank == 0:
        out["resume_exact"] = cont == resumed
    return out


def one_shot_step(pn: ParallelNetwork, theta: np.ndarray) -> list:
    """One One-shot iteration's solves (one MGRIT iteration each); everything they return."""
    pn.set_params(pn.scatter(theta))
    f = pn.forward(max_iter=1)
    g, b = pn.backward(max_iter=1)
    return [f, b, pn.gather(g, root=None).tolist(), pn.validate(max_iter=1)]


def compare_with_one_rank(case: dict, res: dict) -> dict:
    """Rank 0: the same case on COMM_SELF; iteration counts and MGRIT iterates must agree."""
    ref = run_case(case, MPI.COMM_SELF)
    iters = lambda r: [(c["iterations"], c["adjoint_iterations"]) for c in r["checks"]]
    return {"same_iterations_as_1_rank": iters(res) == iters(ref),
            "history_vs_1_rank": rel(res["history"], ref["history"]),
            "warm_gradient_vs_1_rank": rel(res["warm_gradient"], ref["warm_gradient"])}


def equals_serial(comm, **case) -> dict | None:
    """The comparisons of one case (see the module text) on rank 0; None on the other ranks."""
    res = run_case(case, comm)
    if comm.rank != 0:
        return None
    if comm.size > 1:
        res.update(compare_with_one_rank(case, res))
    del res["history"], res["warm_gradient"]
    return res


def cold_guess(comm, **case) -> dict | None:
    """A cold pass of ``case["iterations"]`` primal and adjoint iterations and one validation
    iteration with each initial guess (``braidnet.parallel.GUESSES``); rank 0 returns, per guess, the
    largest difference from the same pass on COMM_SELF and the gradient's error against the exact one."""
    from braidnet.parallel import GUESSES

    rng = np.random.default_rng(case["seed"])
    net = ResNet(2, 3, case["width"], case["n_layers"], T=2.0, activation="tanh", opening="dense",
                 gamma_tik=1e-2, gamma_ddt=1e-2, gamma_class=1e-2)
    X, Y = rng.standard_normal((40, 2)), rng.integers(0, 3, 40)
    theta = net.init_params(seed=case["seed"], scale_opening=1.0, scale_layers=1.0, scale_classifier=1.0) - 0.5
    k = case["iterations"]

    def run(c, guess):
        with ParallelNetwork(net, X, Y, comm=c, X_val=X[:9], Y_val=Y[:9], braid=case["braid"], guess=guess) as pn:
            pn.set_params(pn.scatter(theta))
            f = pn.forward(max_iter=k)
            g, _ = pn.backward(max_iter=k)
            v = pn.validate(max_iter=1)
            return [f["objective"], v], pn.gather(g, root=0 if c.size > 1 else None), pn.warm_states(root=0)

    out = {}
    exact = net.loss_and_gradient(theta, X, Y)[1] if comm.rank == 0 else None
    for guess in GUESSES:
        scalars, g, warm = run(comm, guess)
        if comm.rank == 0:
            ref_scalars, ref_g, ref_warm = run(MPI.COMM_SELF, guess)
            out[guess] = {"vs_1_rank": max(rel(scalars, ref_scalars), rel(g, ref_g),
                                           *(rel(warm[n], ref_warm[n]) for n in warm)),
                          "error": float(np.linalg.norm(g - exact) / np.linalg.norm(exact))}
    return out if comm.rank == 0 else None

