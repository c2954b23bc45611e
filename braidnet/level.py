"""One level of training: a network of a given depth, distributed over the ranks, optimised One-shot.

:class:`LevelRun` builds the network, its :class:`~braidnet.parallel.ParallelNetwork` (the MGRIT
cores) and a fresh optimiser, and steps through the optimisation iterations.  Nested iteration
(:mod:`braidnet.train`), the coarse starts (:mod:`braidnet.starts`) and the work-unit calibration
(:func:`calibrate`) all train through it.  Every method is collective: every rank calls it, and
reductions make every decision identical on all ranks.
"""
from __future__ import annotations

import math
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np

from braidnet import nested, work
from braidnet.oneshot import OneShot
from braidnet.problem import Problem
from braidnet.runfolder import Checkpoint


class LevelRun:
    """The ``layers``-layer network of ``problem`` on its ranks, with its cores and optimiser.

    ``warm``: MGRIT states to start the cores from (whole trajectories, as
    :func:`braidnet.nested.refine_warm_states` makes them), instead of zeros.  ``steps``: the
    optimisation steps the level will take (the span of a cosine learning-rate schedule).

    With mini-batches (``problem.order``) the current objective and gradient are those of batch
    :attr:`batch_step` of the order (a global counter: nested levels continue it); each step uses
    its batch's gradient, and the next batch is evaluated at the new point.
    """

    def __init__(self, problem: Problem, layers: int, warm: Optional[Dict[str, np.ndarray]] = None,
                 steps: int = 0) -> None:
        from braidnet.parallel import ParallelNetwork

        self.problem = problem
        self.net = problem.network(layers)
        X_val, y_val = problem.validation
        self.pn = ParallelNetwork(self.net, problem.X, problem.y, comm=problem.layer_comm, X_val=X_val,
                                  Y_val=y_val, braid=problem.braid_options(), data_comm=problem.data_comm,
                                  batch_size=problem.batch_size, warm=problem.cfg["optimizer"]["warm"],
                                  guess=problem.cfg["braid"]["initial_guess"])
        if warm is not None:
            self.pn.load_warm_states(warm)
        braid = problem.cfg["braid"]
        self.oneshot = OneShot(self.pn, braid["iterations"], braid["drop"], braid["abs_tol"], braid["max_iter"])
        self.opt = problem.optimizer(self.pn.dot, steps)
        self.stochastic = problem.stochastic
        self.batch_step = 0                 # the batch of the order that f and g are of
        self.x = np.zeros(0)                # this rank's slice of the parameters, and f, g there
        self.f = math.nan
        self.g = np.zeros(0)
        self.step = 0.0                     # the last accepted step and its line-search trials
        self.ls_trials = 0
        self.failed_steps = 0               # line searches failed in a row (a stalled run)

    @property
    def layers(self) -> int:
        return self.net.n_layers

    # ---- starting points -----------------------------------------------------------------------
    @property
    def epoch(self) -> float:
        """Epochs done when the current batch comes (fractional; full batch: the steps taken)."""
        return self.batch_step / self.problem.batches_per_epoch

    def use_batch(self, batch_step: int) -> None:
        """Train on batch ``batch_step`` of the order from now on (mini-batches only)."""
        order = self.problem.order
        self.batch_step = batch_step
        if order is not None:
            self.pn.use_batch(order.batch(*order.position(batch_step)))

    def begin(self, theta: np.ndarray, d: int, batch_step: int = 0) -> None:
        """Start from the whole parameter vector ``theta``: objective and gradient with d MGRIT
        iterations (on batch ``batch_step`` with mini-batches)."""
        self.x = self.pn.scatter(theta)
        self.use_batch(batch_step)
        self.evaluate(d)

    def evaluate(self, d: int) -> None:
        """Objective and gradient at the current parameters (d primal and d adjoint MGRIT iterations)."""
        self.oneshot.d = d
        self.f = self.oneshot.objective(self.x)
        self.g = self.oneshot.gradient(self.x)

    def restore(self, ckpt: Checkpoint, d: int) -> None:
        """Continue exactly where ``ckpt`` was taken: parameters, objective, gradient, optimiser, states."""
        self.x = self.pn.scatter(ckpt.theta)
        if ckpt.optimizer:
            self.opt.load_state_dict(_scatter_memory(self.pn, ckpt.optimizer))
        self.pn.set_params(self.x)
        self.f, self.g = ckpt.f, self.pn.scatter(ckpt.g)
        self.oneshot.d = d
        self.oneshot.last_forward, self.oneshot.last_backward = ckpt.last_forward, ckpt.last_backward
        self.pn.load_warm_states(ckpt.warm)
        self.use_batch(int(ckpt.batches.get("step", 0)))
        self.step, self.ls_trials, self.failed_steps = ckpt.step, ckpt.ls_trials, ckpt.failed_steps

    # ---- iterating -----------------------------------------------------------------------------
    def advance(self, d: int) -> None:
        """One optimisation iteration: a line-search step, each trial and the gradient with d
        iterations; or an SGD / Adam step.  With mini-batches the next batch is evaluated at the
        new point (one more One-shot evaluation)."""
        if self.stochastic:
            self.step, self.ls_trials = self.opt.lr, 0     # the step's learning rate
            self.x = self.opt.step(self.x, self.g)
            self.use_batch(self.batch_step + 1)
            self.evaluate(d)
            return
        self.oneshot.d = d
        self.x, self.f, self.g, info = self.opt.step(self.oneshot.objective, self.oneshot.gradient,
                                                     self.x, self.f, self.g)
        self.failed_steps = 0 if info.success else self.failed_steps + 1
        self.step, self.ls_trials = info.step, info.ls_trials
        if self.problem.order is not None:
            # stochastic L-BFGS: the step used batch k throughout; f and g of the next batch at x
            self.use_batch(self.batch_step + 1)
            self.evaluate(d)
            return
        self.batch_step += 1
        if not info.success:
            # the rejected trials moved the warm-start states: bring them back to x
            self.evaluate(d)

    def iterations(self, first: int, last: int, d: Callable[[int], int]) -> Iterator[int]:
        """Yield k = first, ..., last with the state of iteration k current; the step from k to k + 1
        (with ``d(k + 1)`` MGRIT iterations) is taken when the caller asks for the next k."""
        for k in range(first, last + 1):
            yield k
            if k < last:
                self.advance(d(k + 1))

    def grad_norm(self) -> float:
        return math.sqrt(self.pn.dot(self.g, self.g))

    def validate(self) -> float:
        """Validation accuracy (%) with as many MGRIT iterations as the last solves."""
        return self.pn.validate(max_iter=self.oneshot.d)

    def work(self) -> int:
        """Cost-weighted layer steps of this level so far (braidnet.work)."""
        return work.cost(self.pn.step_counts())

    # ---- leaving -------------------------------------------------------------------------------
    def theta(self) -> np.ndarray:
        """The whole parameter vector, on every rank."""
        return self.pn.gather(self.x, root=None)

    def checkpoint(self, level: int, iteration: int, history: List[Dict[str, Any]], layer_steps: int,
                   units: Tuple[Optional[float], Optional[float]]) -> Checkpoint:
        """Everything needed to continue exactly (the states and memory gathered on rank 0)."""
        return Checkpoint(level=level, iteration=iteration, theta=self.theta(), f=self.f,
                          g=self.pn.gather(self.g, root=None), step=self.step, ls_trials=self.ls_trials,
                          history=history, layer_steps=layer_steps, unit_seconds=units[0], unit_steps=units[1],
                          last_forward=self.oneshot.last_forward, last_backward=self.oneshot.last_backward,
                          optimizer=_gather_memory(self.pn, self.opt.state_dict()),
                          warm=self.pn.warm_states(), failed_steps=self.failed_steps,
                          batches={"step": np.array(self.batch_step)})

    def refined(self, layers: int) -> Tuple[np.ndarray, Optional[Dict[str, np.ndarray]]]:
        """The parameters and MGRIT states of this level refined in time for ``layers`` layers
        (``nested.interpolation``; states only with ``nested.states = 'interpolate'``)."""
        ncfg = self.problem.cfg["nested"]
        kind = ncfg["interpolation"]
        theta = nested.interpolate_params(self.net, self.problem.network(layers), self.theta(), kind)
        warm = None
        if ncfg["states"] == "interpolate":
            warm = nested.refine_warm_states(self.pn.warm_states(root=None, endpoints=True),
                                             layers // self.layers, kind)
        return theta, warm

    def close(self) -> None:
        self.pn.close()


#: the element-wise optimisers' state vectors (SGD's momentum buffer, Adam's moments)
_DISTRIBUTED = ("velocity", "m", "v")


def _gather_memory(pn, state: Dict[str, Any]) -> Dict[str, Any]:
    """Optimiser memory with every distributed vector made whole (so any rank count can resume)."""
    out = {}
    for k, v in state.items():
        if k in _DISTRIBUTED and isinstance(v, np.ndarray) and v.size:   # SGD / Adam: this rank's slice
            out[k] = pn.gather(v, root=None)
        elif k in ("s", "y") and isinstance(v, np.ndarray):
            # an empty memory (fresh, or reset by a failed line search) stays a (0, 0) array
            out[k] = np.array([pn.gather(row, root=None) for row in v]).reshape(len(v), -1) if len(v) \
                else np.zeros((0, 0))
        elif isinstance(v, str):
            out[k] = np.array(v)
        else:
            out[k] = np.asarray(v)
    return out


def _scatter_memory(pn, state: Dict[str, Any]) -> Dict[str, Any]:
    out = dict(state)
    for k in _DISTRIBUTED:
        if k in state and np.asarray(state[k]).size:
            out[k] = pn.scatter(np.asarray(state[k]))
    for k in ("s", "y"):
        if k in state and np.asarray(state[k]).size:
            out[k] = np.array([pn.scatter(row) for row in np.asarray(state[k])])
    return out


def calibrate(problem: Problem, iterations: int) -> Tuple[float, float]:
    """(seconds, weighted layer steps) of one finest-level non-nested One-shot iteration, on average.

    Runs ``iterations`` iterations of the non-nested run (finest network, its initial weights, base d,
    validation as configured) and measures them, set-up and first evaluation excluded.  The time is
    the slowest rank's, so every rank returns the same numbers.
    """
    from mpi4py import MPI

    cfg = problem.cfg
    layers, d = cfg["network"]["layers"], cfg["braid"]["iterations"]
    every = cfg["output"]["validate_every"]
    run = LevelRun(problem, layers)
    try:
        run.begin(problem.initial_params(layers), d)
        run.validate()
        problem.comm.Barrier()
        steps0, t0 = run.work(), time.perf_counter()
        for k in range(1, iterations + 1):
            run.advance(d)
            if k % every == 0:
                run.validate()
        seconds = problem.comm.allreduce(time.perf_counter() - t0, op=MPI.MAX)
        steps = run.work() - steps0
    finally:
        run.close()
    return seconds / iterations, steps / iterations
