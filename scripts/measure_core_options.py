#!/usr/bin/env python
"""Measure core options in One-shot training: ``braid.skip``, ``braid.final_fc_relax`` and
``braid.initial_guess``.

Not a test; the numbers are in docs/results.md section 4.  Runs on one rank (the numbers do not depend
on the rank count).  Two studies:

    python scripts/measure_core_options.py train CONFIG OUT [--set section.key=value ...]

trains CONFIG once per variant (``--variants``, default ``skip=first`` and ``skip=every``) into
OUT/<variant>/ and, at every gradient the One-shot loop evaluates, the relative error of that gradient
against the exact one at the same weights (a layer-serial forward and backward pass,
:meth:`braidnet.resnet.ResNet.loss_and_gradient`), written to OUT/<variant>/gradient_error.csv; the
trained weights go to OUT/<variant>/theta.npy.  Then one line per variant: layer steps per iteration,
gradient error (median and 90th percentile over the run), objective and accuracies at the end.

    python scripts/measure_core_options.py cold [--theta OUT/skip=first/theta.npy]

the relative error of the gradient after one cold pass (fresh cores: d = 2 primal then 2 adjoint
MGRIT iterations, 3 levels, cfactor 4) with F-relaxation and FCF, each with and without the skipped
first iteration, with and without the final FC relaxation, and from each initial guess
(``--guesses``, default both), and the layer steps of that pass (weighted as in docs/design.md
section 7), on the peaks network (width 8, 64 layers, 5000 samples; the weights of --theta, else the
configured initialisation with residual weights of scale 1) and on a width-220 network of 64 layers
with a batch of 1000 random samples and random weights.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def _relative_error(g: np.ndarray, exact: np.ndarray) -> float:
    return float(np.linalg.norm(g - exact) / np.linalg.norm(exact))


def train(args: argparse.Namespace) -> int:
    from braidnet import config as C
    from braidnet.oneshot import OneShot
    from braidnet.problem import load_data
    from braidnet.train import train as run_training

    rows = []
    for variant in args.variants:
        overrides = list(args.set) + [f"braid.{kv}" for kv in variant.split(",")]
        cfg = C.load_config(args.config, overrides)
        X, y = load_data(cfg)[:2]
        out = os.path.join(args.out, variant)
        errors: list = []
        original = OneShot.gradient

        def gradient(self, x, _orig=original, _errors=errors, _X=X, _y=y):
            g = _orig(self, x)
            exact = self.pn.net.loss_and_gradient(x, _X, _y)[1]
            _errors.append((self.pn.net.n_layers, _relative_error(g, exact)))
            return g

        OneShot.gradient = gradient
        t0 = time.perf_counter()
        try:
            result = run_training(cfg, out_dir=out, overwrite=True)
        finally:
            OneShot.gradient = original
        seconds = time.perf_counter() - t0
        np.save(os.path.join(out, "theta.npy"), result.theta)
        with open(os.path.join(out, "gradient_error.csv"), "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["call", "layers", "relative_error"])
            w.writerows((k, n, e) for k, (n, e) in enumerate(errors))
        hist = result.history
        last = hist[-1]
        steps = [r["layer_steps"] for r in hist]
        err = np.array([e for _, e in errors])
        rows.append(dict(variant=variant, iterations=len(hist) - 1, steps=steps[-1],
                         steps_per_iteration=steps[-1] / max(len(hist) - 1, 1),
                         grad_err_median=float(np.median(err)), grad_err_p90=float(np.percentile(err, 90)),
                         objective=last["objective"], train_accuracy=last["train_accuracy"],
                         val_accuracy=last["val_accuracy"], final_val=result.final_val_accuracy, seconds=seconds))
    print(json.dumps(rows, indent=1))
    return 0


def _cold_case(net, X, y, theta, options, guess) -> dict:
    from braidnet.parallel import ParallelNetwork

    exact = net.loss_and_gradient(theta, X, y)[1]
    with ParallelNetwork(net, X, y, braid=options, guess=guess) as pn:
        pn.set_params(pn.scatter(theta))
        pn.forward(max_iter=2)
        g, _ = pn.backward(max_iter=2)
        counts = pn.step_counts()
        g = pn.gather(g)
    steps = counts["primal"] + 2 * counts["adjoint"] + 2 * counts["gradient"]
    return {"relative_error": _relative_error(g, exact), "weighted_steps": steps,
            "primal_steps": counts["primal"], "adjoint_steps": counts["adjoint"]}


def cold(args: argparse.Namespace) -> int:
    from braidnet import config as C
    from braidnet.problem import Problem
    from braidnet.resnet import ResNet
    from mpi4py import MPI

    cases = []
    cfg = C.load_config(os.path.join(ROOT, "examples", "peaks_plain.toml"))
    problem = Problem(cfg, MPI.COMM_WORLD)
    net = problem.network(64)
    if args.theta:
        theta, source = np.load(args.theta), f"weights of {args.theta}"
    else:
        theta = net.init_params(seed=1, scale_opening=1e-3, scale_layers=1.0, scale_classifier=1e-3)
        source = "initial weights, residual scale 1"
    cases.append(("peaks width 8, 64 layers, batch 5000 (" + source + ")", net, problem.X, problem.y, theta))
    rng = np.random.default_rng(7)
    wide = ResNet(220, 16, 220, 64, T=5.0, activation="smoothrelu", opening="pad")
    Xw = rng.standard_normal((1000, 220))
    yw = rng.integers(0, 16, 1000)
    tw = rng.uniform(-1.0, 1.0, wide.n_params) / np.sqrt(220)
    cases.append(("random width 220, 64 layers, batch 1000", wide, Xw, yw, tw))

    base = dict(max_levels=3, cfactor=4)
    variants = [("F-relaxation, skip", dict(base, nrelax=0, skip=1)),
                ("FCF, skip", dict(base, nrelax=1, skip=1)),
                ("F-relaxation, no skip", dict(base, nrelax=0, skip=0)),
                ("FCF, no skip", dict(base, nrelax=1, skip=0))]
    for name, net_, X, y, theta_ in cases:
        for vname, opts in variants:
            for fc in (False, True):
                for guess in args.guesses:
                    t0 = time.perf_counter()
                    r = _cold_case(net_, X, y, theta_, dict(opts, final_fc_relax=fc), guess)
                    r.update(case=name, variant=vname, final_fc_relax=fc, initial_guess=guess,
                             seconds=time.perf_counter() - t0)
                    print(json.dumps(r), flush=True)
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="study", required=True)
    t = sub.add_parser("train", help="One-shot training per variant, with the gradient error of every iteration")
    t.add_argument("config")
    t.add_argument("out")
    t.add_argument("--set", action="append", default=[], help="section.key=value, for every variant")
    t.add_argument("--variants", nargs="+", default=["skip=first", "skip=every"],
                   help="braid overrides per variant, comma-separated (default: skip=first skip=every)")
    c = sub.add_parser("cold", help="gradient error after one cold pass of 2 + 2 MGRIT iterations")
    c.add_argument("--theta", help="weights (.npy) of the peaks network (default: initial weights)")
    c.add_argument("--guesses", nargs="+", default=["constant", "zero"], choices=["constant", "zero"],
                   help="braid.initial_guess of the cold passes (default: both)")
    args = p.parse_args(argv)
    return train(args) if args.study == "train" else cold(args)


if __name__ == "__main__":
    sys.exit(main())
