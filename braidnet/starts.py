"""Several starts on the coarsest nested level: train K initialisations briefly, keep the best.

Why: in the peaks study (docs/results.md, section 1) nested iteration's spread comes from a few
initialisations whose coarsest (16-layer) network stalls in a poor basin; refinement keeps the deeper
networks there.  The coarsest level is the cheap one (a quarter of the finest level's cost per
iteration at refinement 4), so trying several initialisations there costs little, and the training
objective after a few dozen iterations already tells the stalling starts from the others.

``nested.starts = K`` (1: the paper's Algorithm 1, unchanged) trains K networks of the coarsest depth
for ``nested.start_iterations = m`` iterations each, start k from the seed :func:`start_seed` gives.
The one with the lowest training objective (never the validation accuracy) continues; the coarsest
level's ``schedule[0]`` counts its iterations, those m included, so the other starts add
``(K - 1) * m`` coarse iterations of work (counted in the work units).  A schedule of
``schedule[0] - (K - 1) * m`` coarse iterations keeps the total work of the paper's schedule.
"""
from __future__ import annotations

import copy
import csv
import math
import time
from dataclasses import dataclass
from typing import Any, Dict, List

import numpy as np

from braidnet import config as _config

STARTS_FIELDS = ["start", "seed", "iterations", "objective", "loss", "train_accuracy", "layer_steps",
                 "seconds", "chosen"]


def start_seed(seed: int, k: int) -> int:
    """Network seed of start k: the configured seed for k = 0 (so that a single start is the
    configured run), an independent stream derived from (seed, k) for the others."""
    if k == 0:
        return seed
    return int(np.random.SeedSequence([seed, k]).generate_state(1)[0])


@dataclass
class Choice:
    """The chosen start and what the choice cost."""
    theta: np.ndarray               # its parameters after start_iterations iterations (coarsest network)
    index: int                      # which start (0-based)
    layer_steps: int                # work of all starts (weighted layer steps, braidnet.work)
    seconds: float                  # wall time of all starts
    table: List[Dict[str, Any]]     # one row per start (STARTS_FIELDS)


def start_config(cfg: _config.Config, k: int) -> _config.Config:
    """The configuration of start k: the coarsest network alone, trained start_iterations iterations,
    validated only at the end, silently, writing no files (the run's folder is the chosen run's)."""
    from braidnet.train import level_plan

    c = copy.deepcopy(cfg)
    layers = level_plan(cfg)[0][0]
    m = cfg["nested"]["start_iterations"]
    c["network"].update(layers=layers, seed=start_seed(cfg["network"]["seed"], k))
    c["nested"].update(schedule=[], starts=1)
    c["optimizer"]["iterations"] = m
    c["output"].update(dir=None, progress=False, validate_every=m, checkpoint_every=0)   # no files
    return c


def choose_start(cfg: _config.Config, comm) -> Choice:
    """Train the configured number of starts on the coarsest network and return the best (collective:
    every rank calls this; every rank gets the same choice)."""
    from mpi4py import MPI
    from braidnet.train import TrainingDiverged, train

    K = cfg["nested"]["starts"]
    rank = comm.Get_rank()
    table, thetas = [], []
    t0 = time.perf_counter()
    for k in range(K):
        c = start_config(cfg, k)
        t = time.perf_counter()
        row = {"start": k, "seed": c["network"]["seed"], "chosen": 0}
        try:
            res = train(c, comm=comm)
        except TrainingDiverged as e:        # a start that diverges is out of the choice, not the run's end
            row.update(iterations="", objective=math.nan, loss=math.nan, train_accuracy=math.nan, layer_steps=0)
            thetas.append(None)
            said = str(e)
        else:
            last = res.history[-1]
            row.update(iterations=last["iteration"], objective=last["objective"], loss=last["loss"],
                       train_accuracy=last["train_accuracy"], layer_steps=last["layer_steps"])
            thetas.append(res.theta)
            said = (f"objective {last['objective']:.6e}, training accuracy {last['train_accuracy']:.1f}% "
                    f"after {last['iteration']} iterations")
        row["seconds"] = time.perf_counter() - t
        table.append(row)
        if rank == 0 and cfg["output"]["progress"]:
            print(f"start {k + 1}/{K} (network seed {c['network']['seed']}): {said}", flush=True)
    objectives = [r["objective"] if math.isfinite(r["objective"]) else math.inf for r in table]
    if all(o == math.inf for o in objectives):
        raise TrainingDiverged(f"all {K} coarse starts diverged (nested.starts); see the messages above")
    best = comm.bcast(int(np.argmin(objectives)), root=0)   # one decision, even if ranks' floats differed
    table[best]["chosen"] = 1
    if rank == 0 and cfg["output"]["progress"]:
        print(f"start {best + 1} continues (lowest training objective)", flush=True)
    return Choice(thetas[best], best, int(sum(r["layer_steps"] for r in table)),
                  comm.allreduce(time.perf_counter() - t0, op=MPI.MAX), table)


def write_table(path: str, table: List[Dict[str, Any]]) -> None:
    """starts.csv: one row per start."""
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, STARTS_FIELDS)
        w.writeheader()
        w.writerows(table)


def _max_op():
    from mpi4py import MPI
    return MPI.MAX
