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
from braidnet.problem import Problem, level_plan
from braidnet.recorder import Recorder
from braidnet.runfolder import Checkpoint, progress
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
    status: str = "completed"         # "completed", or "stalled": the line search kept failing


@dataclass
class _LevelEnd:
    iteration: int                    # the last iteration recorded on the level
    message: Optional[str] = None     # why it stopped before its schedule's end
    stalled: bool = False             # the run stops here


def train(cfg: _config.Config, comm=None, resume: bool = False, out_dir: Optional[str] = None,
          theta0: Optional[np.ndarray] = None, overwrite: bool = False) -> TrainResult:
    """Train as configured; every rank of ``comm`` calls this.

    Args:
        cfg: the configuration, as :func:`braidnet.config.load_config` (or :func:`~braidnet.config.check`)
            returns it for this number of ranks; it is not checked again.
        comm: the MPI communicator (default ``MPI.COMM_WORLD``); its ranks share the layers, or with
            ``parallel.data`` = Q > 1 form Q data-parallel groups that each share the layers.
        resume: continue the run in the output folder from its checkpoint, exactly where it was
            written; a configuration that would change the run's model, data or algorithm is refused.
        out_dir: output folder (default ``cfg['output']['dir']``; ``None`` in cfg means no files).
        theta0: initial parameters of the first level's network instead of the configured initialisation
            (and instead of ``nested.starts``' choice).
        overwrite: replace a run the output folder holds (its files are removed first).

    Returns the history and the trained parameters (whole vector, on every rank).  Raises
    :class:`TrainingDiverged` when the objective or a residual becomes NaN or infinite, and
    :class:`braidnet.runfolder.RunFolderError` when the folder cannot be used as asked.
    """
    from mpi4py import MPI

    comm = MPI.COMM_WORLD if comm is None else comm
    if out_dir is not None:
        cfg = {**cfg, "output": {**cfg["output"], "dir": out_dir}}
    record = Recorder(cfg, comm, cfg["output"]["dir"], nested=len(level_plan(cfg)) > 1)
    ckpt = record.claim(resume, overwrite)
    problem = None
    try:
        problem = Problem(cfg, comm)
        record.show_epoch = problem.batch_size is not None
        return _train(problem, record, ckpt, theta0)
    finally:
        if problem is not None:
            problem.close()
        record.close()


def _train(problem: Problem, record: Recorder, ckpt: Optional[Checkpoint],
           theta0: Optional[np.ndarray]) -> TrainResult:
    """Algorithm 1 from a new start or from a checkpoint."""
    cfg, plan = problem.cfg, problem.plan
    if ckpt is None:
        theta, first, seconds = _starting_point(problem, record, theta0)
        first_level = 0
        record.open(first, seconds)
    elif ckpt.kind == "end" and ckpt.level == len(plan) - 1 and ckpt.iteration >= plan[-1][1]:
        return _nothing_to_resume(record, ckpt, plan[-1][0])
    else:
        theta, first_level, first = ckpt.theta, ckpt.level, ckpt.iteration
        record.open(first)
    # the global batch (mini-batches) / step counter: nested levels continue it
    batch_step = first if ckpt is None else int(ckpt.batches.get("step", 0))

    end = _LevelEnd(first)
    run: Optional[LevelRun] = None
    message = "max iterations reached"
    for level in range(first_level, len(plan)):
        layers, iterations = plan[level]
        d = _mgrit_iterations(cfg, level)
        warm = ckpt.warm or None if ckpt is not None and ckpt.kind == "level" else None
        if run is not None:              # refine the last level's weights and states for this depth
            theta, warm = run.refined(layers)
            batch_step = run.batch_step  # the new level starts on the batch the last one ended on
            record.close_level(run)
            run.close()
            record.level_start(level, theta, warm, batch_step)
        run = LevelRun(problem, layers, warm, steps=iterations)
        if ckpt is not None and level == first_level and ckpt.kind != "level":
            run.restore(ckpt, d(first))
            if ckpt.kind == "end":       # its row is written: go on with the next step
                first += 1
                run.advance(d(first))
                record.checkpoint(run, level, first)
        else:
            run.begin(theta, d(first), batch_step)
        end = _train_level(run, record, level, len(plan) - 1 - level, first, iterations, d)
        first = 0
        message = end.message or message
        if end.stalled:
            break

    assert run is not None
    record.end(run, level, end.iteration)       # before the final validation moves its states
    theta = run.theta()
    final_val = run.pn.validate()
    record.finish(theta, run.layers, final_val, message)
    run.close()
    return TrainResult(theta, record.history, message, final_val, record.writer.dir, run.layers,
                       "stalled" if end.stalled else "completed")


def _nothing_to_resume(record: Recorder, ckpt: Checkpoint, layers: int) -> TrainResult:
    """A finished run resumed with its schedule unchanged: nothing is trained and nothing written."""
    what = "epochs" if record.per_epoch else "iterations"
    what += ("; raise optimizer.epochs" if record.cfg["optimizer"]["epochs"] > 0
             else "; raise optimizer.iterations (or the last entry of nested.schedule)")
    message = (f"nothing to resume: the run in {record.writer.dir} finished its {record.iterations_done()} "
               f"{what} to train on")
    if record.show:
        progress.info(message)
    return TrainResult(ckpt.theta, record.history, message, float("nan"), record.writer.dir, layers)
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
                 d: Callable[[int], int]) -> _LevelEnd:
    """Iterations first..last of plan level ``level`` (``label`` in the history: 0 = finest)."""
    cfg = run.problem.cfg
    for k in run.iterations(first, last, d):
        if k > first:
            record.checkpoint(run, level, k)
        row = record.row(run, label, k, last)
        if k == last:
            break
        if row is None:                  # no row of its own (epoch rows): the same checks
            row = {"grad_norm": run.grad_norm(), "train_accuracy": run.oneshot.last_forward.get("accuracy")}
        if run.failed_steps >= cfg["optimizer"]["stall_steps"]:
            return _LevelEnd(k, f"stalled: the line search failed in {run.failed_steps} iterations in a row "
                                f"(optimizer.stall_steps)", stalled=True)
        if row["grad_norm"] < cfg["optimizer"]["gtol"]:
            return _LevelEnd(k, f"gradient norm {row['grad_norm']:.3e} < gtol")
        if (row["train_accuracy"] or 0.0) > cfg["nested"]["accuracy_threshold"] and label > 0:
            return _LevelEnd(k, "accuracy threshold reached")
    return _LevelEnd(last)
