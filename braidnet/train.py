"""Layer-parallel training with nested iteration: Algorithm 1 of the paper (docs/design.md sections 5-7).

The levels of ``nested.schedule`` run coarsest first (one level when it is empty).  On each level the
network is trained One-shot (:mod:`braidnet.oneshot`): every optimisation iteration runs d primal
and d adjoint MGRIT iterations warm-started from the previous ones and takes an L-BFGS step.  Between
levels the weights and the MGRIT states are refined in time (:mod:`braidnet.nested`), the cores are
rebuilt for the new depth and start from the refined states, and the optimiser starts afresh.

Around this loop: :mod:`braidnet.level` trains one level, :mod:`braidnet.recorder` keeps the history,
work units, progress and checkpoints, :mod:`braidnet.starts` tries several initialisations of the
coarsest level, and :func:`braidnet.level.calibrate` measures the work unit.  Every rank runs the same
loop on its own slice of the parameter vector.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from braidnet import config as _config
from braidnet.level import LevelRun, calibrate
from braidnet.oneshot import TrainingDiverged  # noqa: F401  (re-exported: what train() raises)
from braidnet.problem import Problem
from braidnet.recorder import Recorder
from braidnet.starts import choose_start
from braidnet.work import WorkCounter

__all__ = ["TrainResult", "TrainingDiverged", "train"]


@dataclass
class TrainResult:
    """What :func:`train` returns on every rank."""
    theta: np.ndarray                 # the trained parameters, whole vector
    history: List[Dict[str, Any]]     # one row per iteration (braidnet.runfolder.HISTORY_FIELDS)
    message: str                      # why training stopped
    final_val_accuracy: float = float("nan")
    out_dir: Optional[str] = None
    layers: int = 0


def train(cfg: _config.Config, comm=None, resume: bool = False, out_dir: Optional[str] = None,
          theta0: Optional[np.ndarray] = None) -> TrainResult:
    """Train as configured; every rank of ``comm`` calls this.

    Args:
        cfg: the configuration, as :func:`braidnet.config.load_config` (or :func:`~braidnet.config.check`)
            returns it for this number of ranks; it is not checked again.
        comm: the MPI communicator (default ``MPI.COMM_WORLD``); its ranks share the layers.
        resume: continue from ``out_dir/checkpoint.npz`` exactly where it was written.
        out_dir: output folder (default ``cfg['output']['dir']``; ``None`` in cfg means no files).
        theta0: initial parameters of the first level's network instead of the configured initialisation
            (and instead of ``nested.starts``' choice).

    Returns the history and the trained parameters (whole vector, on every rank).  Raises
    :class:`TrainingDiverged` when the objective or a residual becomes NaN or infinite.
    """
    from mpi4py import MPI

    comm = MPI.COMM_WORLD if comm is None else comm
    problem = Problem(cfg, comm)
    plan = problem.plan
    record = Recorder(cfg, comm, cfg["output"]["dir"] if out_dir is None else out_dir, nested=len(plan) > 1)
    ckpt = record.resume() if resume else None
    if ckpt is not None:
        theta, first_level, first = ckpt.theta, ckpt.level, ckpt.iteration
        record.open(first)
    else:
        theta, first, seconds = _starting_point(problem, record, theta0)
        first_level = 0
        record.open(first, seconds)

    message = "max iterations reached"
    run: Optional[LevelRun] = None
    for level in range(first_level, len(plan)):
        layers, iterations = plan[level]
        warm = None
        if run is not None:              # refine the last level's weights and states for this depth
            theta, warm = run.refined(layers)
            record.close_level(run)
            run.close()
        run = LevelRun(problem, layers, warm)
        d = _mgrit_iterations(cfg, level)
        if ckpt is not None and level == first_level:
            run.restore(ckpt, d(first))
        else:
            run.begin(theta, d(first))
        message = _train_level(run, record, level, len(plan) - 1 - level, first, iterations, d) or message
        first = 0

    assert run is not None
    theta = run.theta()
    final_val = run.pn.validate()
    record.finish(theta, run.layers, final_val, message)
    run.close()
    return TrainResult(theta, record.history, message, final_val, record.writer.dir, run.layers)


def _starting_point(problem: Problem, record: Recorder,
                    theta0: Optional[np.ndarray]) -> Tuple[np.ndarray, int, float]:
    """(weights of the coarsest network, its first iteration, seconds spent) of a new run; measures the
    work unit of a nested run first, and tries the coarse starts (``nested.starts``)."""
    ncfg = problem.cfg["nested"]
    theta = theta0 if theta0 is not None else problem.initial_params(problem.plan[0][0])
    if record.nested and ncfg["calibrate"] > 0 and not (record.unit_seconds and record.unit_steps):
        seconds, steps = calibrate(problem, ncfg["calibrate"])
        record.unit_seconds, record.unit_steps = record.unit_seconds or seconds, record.unit_steps or steps
    if ncfg["starts"] > 1 and theta0 is None:
        # the chosen start goes on from its start_iterations-th iteration; all starts' work counts
        choice = choose_start(problem)
        record.counter = WorkCounter(choice.layer_steps)
        record.writer.starts(choice.table)
        return choice.theta, ncfg["start_iterations"], choice.seconds
    return theta, 0, 0.0


def _mgrit_iterations(cfg: _config.Config, level: int) -> Callable[[int], int]:
    """d of iteration k on plan level ``level``: ``nested.boost_d`` for the first
    ``nested.boost_iterations`` iterations after a refinement, ``braid.iterations`` otherwise."""
    boost = cfg["nested"]["boost_iterations"] if level > 0 else 0
    return lambda k: cfg["nested"]["boost_d"] if k < boost else cfg["braid"]["iterations"]


def _train_level(run: LevelRun, record: Recorder, level: int, label: int, first: int, last: int,
                 d: Callable[[int], int]) -> Optional[str]:
    """Iterations first..last of plan level ``level`` (``label`` in the history: 0 = finest); returns
    why it stopped early, or None."""
    cfg = run.problem.cfg
    for k in run.iterations(first, last, d):
        if k > first:
            record.checkpoint(run, level, k)
        row = record.row(run, label, k, last)
        if k == last:
            break
        if row["grad_norm"] < cfg["optimizer"]["gtol"]:
            return f"gradient norm {row['grad_norm']:.3e} < gtol"
        if (row["train_accuracy"] or 0.0) > cfg["nested"]["accuracy_threshold"] and label > 0:
            return "accuracy threshold reached"
    return None
