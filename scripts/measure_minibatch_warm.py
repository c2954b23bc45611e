#!/usr/bin/env python
"""Measure how the MGRIT states should start when the mini-batch changes (``optimizer.warm``).

Not a test; the numbers are in docs/guide/training.md ("Mini-batches").  One rank (the numbers do not
depend on the rank split).  For each optimiser (Adam, SGD with momentum) and each policy (``sample``,
``batch``, ``zero``, each with d = 2, 3 and 4 MGRIT iterations per solve) it trains the configured network One-shot
on mini-batches for ``--epochs`` epochs and records at every step:

- the relative error of the One-shot gradient against the exact gradient of the step's batch at the
  same weights (a layer-serial pass, :meth:`braidnet.resnet.ResNet.loss_and_gradient`);
- the primal and adjoint MGRIT residual norms after the d iterations;
- the seconds of the step (the exact gradient not included).

One line per run: the median and 90th percentile of the gradient error over the steps after the first
epoch (before it every sample is new to ``sample``), the median residuals, the mean batch objective of
the last epoch, the validation accuracy at the end (exact solve) and the seconds per step.

    python scripts/measure_minibatch_warm.py [CONFIG] [--epochs 3] [--batch 500] [--set section.key=value ...]

CONFIG defaults to examples/peaks_plain.toml (peaks, width 8, 64 layers, braid defaults, d = 2).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

#: (optimiser overrides) of the two optimisers measured
OPTIMISERS = {
    "adam": ["optimizer.method=adam", "optimizer.lr=0.01"],     # lr: a rate that trains, not tuned
    "sgd": ["optimizer.method=sgd", "optimizer.lr=0.5", "optimizer.momentum=0.9"],
}
#: (label, policy, d) of the policies measured
POLICIES = [(policy, policy, d) for d in (2, 3, 4) for policy in ("sample", "batch", "zero")]


def measure(config: str, overrides: list, epochs: int) -> dict:
    from mpi4py import MPI

    from braidnet import config as C
    from braidnet.level import LevelRun
    from braidnet.problem import Problem

    cfg = C.load_config(config, overrides + ["nested.schedule=[]", f"optimizer.epochs={epochs}"], nprocs=1)
    problem = Problem(cfg, MPI.COMM_SELF)
    layers, steps = problem.plan[0]
    order, d = problem.order, cfg["braid"]["iterations"]
    run = LevelRun(problem, layers, steps=steps)
    X, y = problem.X, problem.y
    rows = []
    try:
        run.begin(problem.initial_params(layers), d)
        for k in range(steps + 1):
            batch = order.batch(*order.position(run.batch_step))
            exact = run.net.loss_and_gradient(run.theta(), X[batch], y[batch])[1]
            g = run.pn.gather(run.g, root=None)
            rows.append({"error": float(np.linalg.norm(g - exact) / np.linalg.norm(exact)),
                         "primal": run.oneshot.last_forward["rnorm"], "adjoint": run.oneshot.last_backward["rnorm"],
                         "objective": run.f, "seconds": rows[-1]["next_seconds"] if rows else np.nan})
            if k < steps:
                t0 = time.perf_counter()
                run.advance(d)
                rows[-1]["next_seconds"] = time.perf_counter() - t0
        val = run.pn.validate()
    finally:
        run.close()
        problem.close()
    bpe = order.batches_per_epoch
    later = rows[bpe:]
    err = np.array([r["error"] for r in later])
    return {"error_median": float(np.median(err)), "error_p90": float(np.percentile(err, 90)),
            "primal": float(np.median([r["primal"] for r in later])),
            "adjoint": float(np.median([r["adjoint"] for r in later])),
            "objective": float(np.mean([r["objective"] for r in rows[-bpe:]])),
            "val": val, "seconds": float(np.nanmean([r.get("next_seconds", np.nan) for r in rows[:-1]]))}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", nargs="?", default=os.path.join(ROOT, "examples", "peaks_plain.toml"))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--optimizers", default="adam,sgd")
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    args = parser.parse_args(argv)
    print(f"# {args.config}, batch {args.batch}, {args.epochs} epochs; gradient error: median / 90th percentile "
          f"after epoch 1")
    print("| optimiser | warm | d | gradient error (median / p90) | residual primal / adjoint | "
          "last-epoch objective | validation % | s / step |")
    print("|---|---|---|---|---|---|---|---|")
    for name in args.optimizers.split(","):
        for label, policy, d in POLICIES:
            r = measure(args.config, args.overrides + OPTIMISERS[name] + [
                f"optimizer.batch_size={args.batch}", f"optimizer.warm={policy}", f"braid.iterations={d}",
                "output.dir=-"], args.epochs)
            print(f"| {name} | {label} | {d} | {r['error_median']:.2e} / {r['error_p90']:.2e} | "
                  f"{r['primal']:.1e} / {r['adjoint']:.1e} | {r['objective']:.4f} | {r['val']:.1f} | "
                  f"{r['seconds']:.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
