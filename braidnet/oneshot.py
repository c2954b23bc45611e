"""One-shot optimisation: the objective and gradient of a layer-parallel network from a few MGRIT
iterations (docs/design.md section 5).

Each evaluation runs ``d`` primal MGRIT iterations, warm-started from the states of the previous
one, and each gradient ``d`` adjoint iterations: the optimiser sees inexact values, and the residual
norms of the solves behind them (:attr:`OneShot.last_forward`, :attr:`OneShot.last_backward`) say how
inexact.  A diverged solve gives NaN instead of an exception, so that a line search backs off and
the training loop can stop with :class:`TrainingDiverged`.
"""
from __future__ import annotations

import logging
import math
from typing import Any, Callable, Dict, Optional

import numpy as np

log = logging.getLogger(__name__)


class TrainingDiverged(RuntimeError):
    """The objective or the MGRIT residual became NaN or infinite; the last good state was saved."""


def is_bad(value: Optional[float]) -> bool:
    """True for a missing, NaN or infinite value."""
    return value is None or not math.isfinite(value)


def divergence(iteration: int, f: float, gnorm: float, last_forward: Dict[str, Any],
               last_backward: Dict[str, Any]) -> str:
    """What the message of :class:`TrainingDiverged` says about the iteration where it happened."""
    return (f"training diverged at iteration {iteration} (objective {f}, |g| {gnorm}, primal residual "
            f"{last_forward.get('rnorm')}, adjoint residual {last_backward.get('rnorm')})")


class OneShot:
    """Objective and gradient of a :class:`~braidnet.parallel.ParallelNetwork` from d MGRIT iterations.

    ``d`` may be changed between iterations (the paper uses more after each refinement).  With
    ``drop > 0`` each solve instead iterates until its residual fell by that factor (or below
    ``abs_tol``, or ``max_iter`` iterations).
    """

    def __init__(self, pn, d: int, drop: float = 0.0, abs_tol: float = 0.0, max_iter: int = 50) -> None:
        self.pn = pn
        self.d = d
        self.drop = drop
        self.abs_tol = abs_tol
        self.max_iter = max_iter
        self.last_forward: Dict[str, Any] = {}
        self.last_backward: Dict[str, Any] = {}

    def _solve(self, run: Callable[[int, Optional[float]], Dict[str, Any]]) -> Dict[str, Any]:
        """Run a solve with the current policy; returns its info dict (last call's, iterations summed)."""
        tol = self.abs_tol if self.abs_tol > 0 else None
        if self.drop <= 0:
            return run(self.d, tol)
        first, total, info = None, 0, {}
        while total < self.max_iter:
            info = run(1, tol)
            done = int(info.get("iterations", 1))
            if done == 0:
                break           # one MGRIT level: the solve is sequential time stepping, exact
            total += done
            r = info.get("rnorm", -1.0)
            if r is not None and r >= 0:
                if first is None:
                    first = r
                elif r <= first / self.drop or (tol is not None and r < tol):
                    break
        return {**info, "iterations": total}

    def objective(self, x: np.ndarray) -> float:
        """The objective at x (NaN when the primal solve diverged: the line search then backs off)."""
        from braidnet.braid import ERROR_DIVERGED, BraidError

        self.pn.set_params(x)
        try:
            self.last_forward = self._solve(lambda k, tol: self.pn.forward(max_iter=k, abs_tol=tol))
        except BraidError as e:
            if e.code != ERROR_DIVERGED:
                raise
            log.warning("primal solve diverged; restarting the MGRIT states")
            self.pn.restart()
            self.last_forward = {"objective": float("nan"), "rnorm": float("nan")}
        return float(self.last_forward["objective"])

    def gradient(self, x: np.ndarray) -> np.ndarray:
        """The gradient at x, the point of the last :meth:`objective` call (NaN after a diverged solve)."""
        from braidnet.braid import ERROR_DIVERGED, BraidError

        if is_bad(self.last_forward.get("objective", 0.0)):
            # the primal solve at x diverged (restarted states, no forward to differentiate)
            self.last_backward = {"rnorm": float("nan")}
            return np.full_like(x, np.nan)
        holder: Dict[str, np.ndarray] = {}

        def run(k: int, tol: Optional[float]) -> Dict[str, Any]:
            g, info = self.pn.backward(max_iter=k, abs_tol=tol)
            holder["g"] = g
            return info

        try:
            self.last_backward = self._solve(run)
        except BraidError as e:
            if e.code != ERROR_DIVERGED:
                raise
            self.last_backward = {"rnorm": float("nan")}
            return np.full_like(x, np.nan)
        return holder["g"]
