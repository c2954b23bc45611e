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

import math
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

import numpy as np

from braidnet.level import LevelRun
from braidnet.oneshot import TrainingDiverged, divergence, is_bad
from braidnet.problem import Problem
from braidnet.runfolder import progress


def start_seed(seed: int, k: int) -> int:
    """Network seed of start k: the configured seed for k = 0 (so that a single start is the
    configured run), an independent stream derived from (seed, k) for the others."""
    if k == 0:
        return seed
    return int(np.random.SeedSequence([seed, k]).generate_state(1)[0])


@dataclass
class Start:
    """One start after its iterations (``theta`` None when it diverged)."""
    theta: Optional[np.ndarray]     # its parameters (coarsest network, whole vector)
    row: Dict[str, Any]             # its row of starts.csv
    said: str                       # its progress line


@dataclass
class Choice:
    """The chosen start and what the choice cost."""
    theta: np.ndarray               # its parameters after start_iterations iterations (coarsest network)
    index: int                      # which start (0-based)
    layer_steps: int                # work of all starts (weighted layer steps, braidnet.work)
    seconds: float                  # wall time of all starts
    table: List[Dict[str, Any]]     # one row per start (braidnet.runfolder.STARTS_FIELDS)


def train_start(problem: Problem, k: int) -> Start:
    """Start k: the coarsest network from seed :func:`start_seed` trained for start_iterations iterations
    with the level's base d, stopping early on the gradient tolerance (collective)."""
    cfg = problem.cfg
    layers = problem.plan[0][0]
    seed = start_seed(cfg["network"]["seed"], k)
    m, d, gtol = cfg["nested"]["start_iterations"], cfg["braid"]["iterations"], cfg["optimizer"]["gtol"]
    row: Dict[str, Any] = {"start": k, "seed": seed, "chosen": 0}
    t = time.perf_counter()
    run = LevelRun(problem, layers)
    try:
        run.begin(problem.initial_params(layers, seed), d)
        for it in run.iterations(0, m, lambda _: d):
            gnorm = run.grad_norm()
            if is_bad(run.f) or is_bad(gnorm):
                raise TrainingDiverged(divergence(it, run.f, gnorm, run.oneshot.last_forward,
                                                  run.oneshot.last_backward) + "; no checkpoint was written before it")
            if gnorm < gtol:
                break
        fw = run.oneshot.last_forward
        row.update(iterations=it, objective=run.f, loss=fw.get("loss"), train_accuracy=fw.get("accuracy"),
                   layer_steps=run.work())
        theta: Optional[np.ndarray] = run.theta()
        said = f"objective {run.f:.6e}, training accuracy {fw.get('accuracy'):.1f}% after {it} iterations"
    except TrainingDiverged as e:      # a start that diverges is out of the choice, not the run's end
        row.update(iterations="", objective=math.nan, loss=math.nan, train_accuracy=math.nan, layer_steps=0)
        theta, said = None, str(e)
    finally:
        run.close()
    row["seconds"] = time.perf_counter() - t
    return Start(theta, row, said)


def choose_start(problem: Problem) -> Choice:
    """Train the configured number of starts on the coarsest network and return the best (collective:
    every rank gets the same choice)."""
    from mpi4py import MPI

    K = problem.cfg["nested"]["starts"]
    comm = problem.comm
    show = comm.Get_rank() == 0 and problem.cfg["output"]["progress"]
    t0 = time.perf_counter()
    tried = []
    for k in range(K):
        tried.append(train_start(problem, k))
        if show:
            progress.info(f"start {k + 1}/{K} (network seed {tried[-1].row['seed']}): {tried[-1].said}")
    table = [s.row for s in tried]
    objectives = [r["objective"] if math.isfinite(r["objective"]) else math.inf for r in table]
    if all(o == math.inf for o in objectives):
        raise TrainingDiverged(f"all {K} coarse starts diverged (nested.starts); see the messages above")
    best = comm.bcast(int(np.argmin(objectives)), root=0)   # one decision, even if ranks' floats differed
    table[best]["chosen"] = 1
    if show:
        progress.info(f"start {best + 1} continues (lowest training objective)")
    theta = tried[best].theta
    assert theta is not None
    return Choice(theta, best, int(sum(r["layer_steps"] for r in table)),
                  comm.allreduce(time.perf_counter() - t0, op=MPI.MAX), table)
