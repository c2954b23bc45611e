"""Optimisers: L-BFGS, dense BFGS and steepest descent with Armijo backtracking; SGD and Adam
with learning-rate schedules.

The line-search methods follow LPT's code (docs/design.md section 5): a search direction p, then
backtracking from step 1.0 by a factor 0.5 until the Armijo condition
``f(x + a p) <= f(x) + c1 a <g, p>`` (c1 = 1e-4) holds, at most ``ls_max_trials`` tries, each
try one objective evaluation (one primal solve).  After an accepted step the gradient is
evaluated once at the new point.

**Distributed vectors.**  Every inner product and norm goes through the injectable
``dot(a, b) -> float`` (default :func:`numpy.dot`).  With the parameter vector split over MPI
ranks (each rank holds its slice of x, g, s, y), pass a ``dot`` that sums the local products over
the ranks and every rank takes identical decisions; nothing here assumes it sees the whole vector.
The one exception is :class:`BFGS`, whose dense inverse-Hessian matrix couples all entries: use it
only where each process holds the whole vector.

All optimisers serialise to ``state_dict()`` (a dict of arrays and scalars, for checkpoints) and
restore with ``load_state_dict()``.

**Stochastic optimisers.**  :class:`SGD` (momentum, Nesterov) and :class:`Adam` take one gradient
per call of ``step(x, g)``, are element-wise (no reductions: a rank may hold just its slice) and
use the rate ``lr(t)`` of a :class:`LearningRate` schedule at their 0-based step t.  A schedule is a
pure function of t and the step counter is part of the state, so a run restored from
``state_dict()`` continues bit for bit like the uninterrupted run; ``load_state_dict()`` refuses a
state whose kind, hyperparameters or schedule differ from the optimiser's own.  Which samples each
step sees is :mod:`braidnet.batches`' job.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from braidnet._checks import count

log = logging.getLogger(__name__)

Dot = Callable[[np.ndarray, np.ndarray], float]
Fun = Callable[[np.ndarray], float]
Grad = Callable[[np.ndarray], np.ndarray]


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b))


def _positive(value, name: str, integer: bool = False):
    ok = isinstance(value, (int, np.integer)) if integer else isinstance(value, (int, float, np.number))
    if isinstance(value, bool) or not ok or not value > 0 or not math.isfinite(value):
        kind = "a positive integer" if integer else "a finite number > 0"
        raise ValueError(f"{name} must be {kind}, got {name}={value!r}")
    return value


@dataclass
class StepInfo:
    """Outcome of one line-search step.

    Attributes:
        f: objective at the new point (the old value when the line search failed).
        step: accepted step size (0.0 when the line search failed).
        ls_trials: objective evaluations the line search made.
        success: the Armijo condition was met.
        reset: the quasi-Newton memory was reset during this step.
    """

    f: float
    step: float
    ls_trials: int
    success: bool
    reset: bool = False


def armijo(fun: Fun, x: np.ndarray, f: float, gp: float, p: np.ndarray, step0: float = 1.0,
           factor: float = 0.5, c1: float = 1e-4, max_trials: int = 20
           ) -> Tuple[np.ndarray, float, float, int, bool]:
    """Backtracking line search: largest ``a = step0 * factor**k`` with
    ``fun(x + a p) <= f + c1 a gp`` where ``gp = <g, p> < 0``.

    Returns ``(x_new, f_new, a, trials, success)``; on failure ``(x, f, 0.0, trials, False)``.
    """
    a = step0
    for trial in range(1, max_trials + 1):
        x_new = x + a * p
        f_new = fun(x_new)
        if math.isfinite(f_new) and f_new <= f + c1 * a * gp:
            return x_new, f_new, a, trial, True
        a *= factor
    return x, f, 0.0, max_trials, False


class LineSearchOptimizer:
    """Base class: direction from the subclass, Armijo backtracking, curvature-pair update."""

    kind = "base"

    def __init__(self, dot: Dot = _dot, step0: float = 1.0, ls_factor: float = 0.5,
                 c1: float = 1e-4, ls_max_trials: int = 20) -> None:
        self.dot = dot
        self.step0 = _positive(step0, "step0")
        if not 0.0 < ls_factor < 1.0:
            raise ValueError(f"ls_factor must be in (0, 1), got ls_factor={ls_factor!r}")
        if not 0.0 < c1 < 1.0:
            raise ValueError(f"c1 must be in (0, 1), got c1={c1!r}")
        self.ls_factor = float(ls_factor)
        self.c1 = float(c1)
        self.ls_max_trials = _positive(ls_max_trials, "ls_max_trials", integer=True)
        self.n_iter = 0

    # subclass hooks
    def direction(self, g: np.ndarray) -> np.ndarray:
        return -g

    def update(self, s: np.ndarray, y: np.ndarray) -> None:
        """Take in the curvature pair s = x_new - x, y = g_new - g."""

    def reset(self) -> None:
        """Forget curvature information."""

    def _has_memory(self) -> bool:
        return False

    def step(self, fun: Fun, grad: Grad, x: np.ndarray, f: float, g: np.ndarray
             ) -> Tuple[np.ndarray, float, np.ndarray, StepInfo]:
        """One iteration from (x, f = fun(x), g = grad(x)).

        Returns ``(x_new, f_new, g_new, info)``.  A direction that is not a descent direction, or
        a failed line search along a quasi-Newton direction, resets the memory (the next step is
        steepest descent).  On failure x, f, g are returned unchanged.
        """
        p = self.direction(g)
        gp = self.dot(g, p)
        reset = False
        if not gp < 0.0:
            log.debug("not a descent direction (<g,p> = %g): memory reset", gp)
            self.reset()
            reset = True
            p = -g
            gp = -self.dot(g, g)
        x_new, f_new, a, trials, ok = armijo(fun, x, f, gp, p, self.step0, self.ls_factor,
                                             self.c1, self.ls_max_trials)
        self.n_iter += 1
        if not ok:
            log.info("Armijo line search failed after %d trials", trials)
            if self._has_memory():
                self.reset()
                reset = True
            return x, f, g, StepInfo(f, 0.0, trials, False, reset)
        g_new = grad(x_new)
        self.update(x_new - x, g_new - g)
        return x_new, f_new, g_new, StepInfo(f_new, a, trials, True, reset)

    # serialisation
    def _params(self) -> Dict[str, object]:
        return {"kind": self.kind, "n_iter": self.n_iter, "step0": self.step0,
                "ls_factor": self.ls_factor, "c1": self.c1, "ls_max_trials": self.ls_max_trials}

    def state_dict(self) -> Dict[str, object]:
        """Hyperparameters and state as a dict of numpy arrays and scalars."""
        return self._params()

    def load_state_dict(self, state: Dict[str, object]) -> None:
        """Restore what :meth:`state_dict` returned (the kind must match)."""
        if state.get("kind") != self.kind:
            raise ValueError(f"state is for optimiser kind={state.get('kind')!r}, not {self.kind!r}")
        self.n_iter = int(state["n_iter"])
        self.step0 = float(state["step0"])
        self.ls_factor = float(state["ls_factor"])
        self.c1 = float(state["c1"])
        self.ls_max_trials = int(state["ls_max_trials"])


class SteepestDescent(LineSearchOptimizer):
    """p = -g with Armijo backtracking."""

    kind = "steepest_descent"


class LBFGS(LineSearchOptimizer):
    """Limited-memory BFGS: two-loop recursion over the last ``memory`` pairs, H0 = s'y/y'y.

    Pairs with ``s'y <= curvature_eps * |s| |y|`` are skipped (Armijo alone does not guarantee
    positive curvature).
    """

    kind = "lbfgs"

    def __init__(self, memory: int = 10, dot: Dot = _dot, curvature_eps: float = 1e-12,
                 **kwargs) -> None:
        super().__init__(dot=dot, **kwargs)
        self.memory = _positive(memory, "memory", integer=True)
        self.curvature_eps = float(curvature_eps)
        self._s: List[np.ndarray] = []
        self._y: List[np.ndarray] = []
        self._rho: List[float] = []
        self.n_skipped = 0

    def reset(self) -> None:
        self._s, self._y, self._rho = [], [], []

    def _has_memory(self) -> bool:
        return bool(self._s)

    def update(self, s: np.ndarray, y: np.ndarray) -> None:
        sy = self.dot(s, y)
        if not sy > self.curvature_eps * math.sqrt(self.dot(s, s) * self.dot(y, y)):
            self.n_skipped += 1
            return
        if len(self._s) == self.memory:
            del self._s[0], self._y[0], self._rho[0]
        self._s.append(s)
        self._y.append(y)
        self._rho.append(1.0 / sy)

    def direction(self, g: np.ndarray) -> np.ndarray:
        if not self._s:
            return -g
        q = np.array(g, dtype=np.float64, copy=True)
        alpha = [0.0] * len(self._s)
        for i in range(len(self._s) - 1, -1, -1):
            alpha[i] = self._rho[i] * self.dot(self._s[i], q)
            q -= alpha[i] * self._y[i]
        s, y = self._s[-1], self._y[-1]
        q *= self.dot(s, y) / self.dot(y, y)          # H0 = s'y / y'y
        for i in range(len(self._s)):
            beta = self._rho[i] * self.dot(self._y[i], q)
            q += (alpha[i] - beta) * self._s[i]
        return -q

    def state_dict(self) -> Dict[str, object]:
        d = self._params()
        k = len(self._s)
        n = self._s[0].shape[0] if k else 0
        d.update(memory=self.memory, curvature_eps=self.curvature_eps, n_skipped=self.n_skipped,
                 s=np.array(self._s).reshape(k, n), y=np.array(self._y).reshape(k, n),
                 rho=np.array(self._rho, dtype=np.float64))
        return d

    def load_state_dict(self, state: Dict[str, object]) -> None:
        super().load_state_dict(state)
        self.memory = int(state["memory"])
        self.curvature_eps = float(state["curvature_eps"])
        self.n_skipped = int(state["n_skipped"])
        self._s = [np.array(r) for r in np.asarray(state["s"])]
        self._y = [np.array(r) for r in np.asarray(state["y"])]
        self._rho = [float(r) for r in np.asarray(state["rho"])]


class BFGS(LineSearchOptimizer):
    """Dense BFGS on the inverse Hessian H (n x n), H scaled by s'y/y'y before the first update.

    H couples all entries: use only where each process holds the whole vector.
    """

    kind = "bfgs"

    def __init__(self, dot: Dot = _dot, curvature_eps: float = 1e-12, **kwargs) -> None:
        super().__init__(dot=dot, **kwargs)
        self.curvature_eps = float(curvature_eps)
        self.H: Optional[np.ndarray] = None
        self.n_skipped = 0

    def reset(self) -> None:
        self.H = None

    def _has_memory(self) -> bool:
        return self.H is not None

    def direction(self, g: np.ndarray) -> np.ndarray:
        return -g if self.H is None else -(self.H @ g)

    def update(self, s: np.ndarray, y: np.ndarray) -> None:
        sy = self.dot(s, y)
        yy = self.dot(y, y)
        if not sy > self.curvature_eps * math.sqrt(self.dot(s, s) * yy):
            self.n_skipped += 1
            return
        if self.H is None:
            self.H = np.eye(s.shape[0]) * (sy / yy)
        rho = 1.0 / sy
        Hy = self.H @ y
        # H <- (I - rho s y') H (I - rho y s') + rho s s', expanded (H symmetric)
        self.H += (rho * rho * self.dot(y, Hy) + rho) * np.outer(s, s)
        self.H -= rho * (np.outer(Hy, s) + np.outer(s, Hy))

    def state_dict(self) -> Dict[str, object]:
        d = self._params()
        d.update(curvature_eps=self.curvature_eps, n_skipped=self.n_skipped,
                 H=np.zeros((0, 0)) if self.H is None else self.H.copy())
        return d

    def load_state_dict(self, state: Dict[str, object]) -> None:
        super().load_state_dict(state)
        self.curvature_eps = float(state["curvature_eps"])
        self.n_skipped = int(state["n_skipped"])
        H = np.asarray(state["H"], dtype=np.float64)
        self.H = None if H.size == 0 else H.copy()


@dataclass
class Result:
    """Outcome of :func:`minimize` / :func:`minimize_stochastic`.

    ``history`` holds one dict per iteration (epoch for the stochastic driver): ``iter``,
    ``objective``, ``gnorm``, ``step``, ``ls_trials``, ``time`` and whatever the callback added.
    """

    x: np.ndarray
    f: float
    g: Optional[np.ndarray]
    n_iter: int
    converged: bool
    message: str
    history: List[Dict[str, float]] = field(default_factory=list)


def minimize(opt: LineSearchOptimizer, fun: Fun, grad: Grad, x0: np.ndarray, max_iter: int = 100,
             gtol: float = 1e-6, callback: Optional[Callable[[int, np.ndarray, Dict[str, float]], Optional[bool]]] = None
             ) -> Result:
    """Iterate ``opt.step`` until ||g|| < gtol (norm through ``opt.dot``) or max_iter.

    ``callback(iteration, x, row)`` may add entries to the history row (e.g. accuracies) and
    stop the run by returning True.  Two consecutive failed line searches stop the run.
    """
    _positive(max_iter, "max_iter", integer=True)
    x = np.array(x0, dtype=np.float64, copy=True)
    f = fun(x)
    g = grad(x)
    t0 = time.perf_counter()
    history: List[Dict[str, float]] = []
    failures = 0
    message, converged = "max_iter reached", False

    def record(it: int, step: float, trials: int) -> Optional[bool]:
        row = {"iter": it, "objective": f, "gnorm": math.sqrt(opt.dot(g, g)), "step": step,
               "ls_trials": trials, "time": time.perf_counter() - t0}
        stop = callback(it, x, row) if callback is not None else None
        history.append(row)
        log.debug("iter %d: f=%.6e |g|=%.3e step=%g trials=%d", it, f, row["gnorm"], step, trials)
        return stop

    if record(0, 0.0, 0):
        return Result(x, f, g, 0, False, "stopped by callback", history)
    n_iter = 0
    while True:
        if history[-1]["gnorm"] < gtol:
            message, converged = f"gradient norm < gtol={gtol}", True
            break
        if n_iter >= max_iter:
            break
        x, f, g, info = opt.step(fun, grad, x, f, g)
        n_iter += 1
        failures = 0 if info.success else failures + 1
        if record(n_iter, info.step, info.ls_trials):
            message = "stopped by callback"
            break
        if failures >= 2:
            message = "line search failed"
            break
    return Result(x, f, g, n_iter, converged, message, history)


_SCHEDULE_KINDS = ("constant", "step", "cosine")


class LearningRate:
    """Learning-rate schedule: a pure function ``lr(t)`` of the 0-based optimiser step t.

    Because the rate depends on t alone, a resumed run (whose optimiser restores its step counter)
    gets exactly the rates of the uninterrupted run; a schedule keeps no state of its own.

    **Units.**  ``step`` and ``cosine`` change per *epoch*, as PyTorch's ``StepLR`` and
    ``CosineAnnealingLR`` stepped once per epoch: step t lies in epoch ``e = t // steps_per_epoch``,
    and ``step_size`` and ``total`` count epochs.  With ``steps_per_epoch=1`` (the default) epochs
    and steps coincide, which gives a per-step schedule.  ``warmup`` always counts optimiser steps.

    Kinds (``lr`` is the base rate):

    - ``constant``: ``lr``.
    - ``step``: ``lr * gamma ** (e // step_size)``.
    - ``cosine``: ``lr_min + (lr - lr_min) * (1 + cos(pi * e / total)) / 2`` for ``e <= total``,
      ``lr_min`` afterwards (PyTorch's closed form would rise again after ``total``; a run longer
      than its schedule stays at the floor instead).

    Linear warm-up multiplies by ``(t + 1) / warmup`` for ``t < warmup`` (the full rate is reached
    at step ``warmup - 1``).

    Args:
        lr: base rate, finite and > 0.
        kind: one of ``constant``, ``step``, ``cosine``.
        step_size: epochs per decay (``step`` only, required there).
        gamma: decay factor, finite and > 0 (``step`` only; default 0.1).
        total: epochs of the cosine (``cosine`` only, required there).
        lr_min: floor of the cosine, in [0, lr) (``cosine`` only; default 0).
        warmup: linear warm-up steps (default 0: none).
        steps_per_epoch: optimiser steps per epoch (default 1).
    """

    def __init__(self, lr: float, kind: str = "constant", *, step_size: Optional[int] = None,
                 gamma: Optional[float] = None, total: Optional[int] = None,
                 lr_min: Optional[float] = None, warmup: int = 0, steps_per_epoch: int = 1) -> None:
        if kind not in _SCHEDULE_KINDS:
            raise ValueError(f"kind must be one of {', '.join(_SCHEDULE_KINDS)}, got kind={kind!r}")
        self.kind = kind
        self.base = float(_positive(lr, "lr"))
        # a parameter of another kind is refused: silently ignoring it would hide a typo'd config
        for name, value, owner in (("step_size", step_size, "step"), ("gamma", gamma, "step"),
                                   ("total", total, "cosine"), ("lr_min", lr_min, "cosine")):
            if value is not None and kind != owner:
                raise ValueError(f"{name} applies to kind='{owner}' only, got {name}={value!r} "
                                 f"with kind={kind!r}")
        if kind == "step" and step_size is None:
            raise ValueError("kind='step' needs step_size (a positive integer), got step_size=None")
        if kind == "cosine" and total is None:
            raise ValueError("kind='cosine' needs total (a positive integer), got total=None")
        # unused parameters get neutral values so that state dicts hold plain numbers only
        self.step_size = int(_positive(step_size, "step_size", integer=True)) if kind == "step" else 0
        if gamma is not None:
            self.gamma = float(_positive(gamma, "gamma"))
        else:
            self.gamma = 0.1 if kind == "step" else 1.0   # PyTorch's StepLR default
        self.total = int(_positive(total, "total", integer=True)) if kind == "cosine" else 0
        if lr_min is not None and (isinstance(lr_min, bool)
                                   or not isinstance(lr_min, (int, float, np.number))
                                   or not 0.0 <= lr_min < self.base):
            raise ValueError(f"lr_min must be in [0, lr={self.base!r}), got lr_min={lr_min!r}")
        self.lr_min = 0.0 if lr_min is None else float(lr_min)
        self.warmup = count(warmup, "warmup")
        self.steps_per_epoch = int(_positive(steps_per_epoch, "steps_per_epoch", integer=True))

    def __call__(self, t: int) -> float:
        """The rate of 0-based optimiser step ``t``."""
        t = count(t, "t")
        e = t // self.steps_per_epoch
        if self.kind == "step":
            rate = self.base * self.gamma ** (e // self.step_size)
        elif self.kind == "cosine":
            if e >= self.total:
                rate = self.lr_min
            else:
                cos = math.cos(math.pi * e / self.total)
                rate = self.lr_min + (self.base - self.lr_min) * 0.5 * (1.0 + cos)
        else:
            rate = self.base
        if t < self.warmup:
            rate *= (t + 1) / self.warmup
        return rate

    def state_dict(self) -> Dict[str, object]:
        """The schedule as plain scalars, keys prefixed ``lr_`` (merged into optimiser states)."""
        return {"lr_kind": self.kind, "lr_base": self.base, "lr_step_size": self.step_size,
                "lr_gamma": self.gamma, "lr_total": self.total, "lr_min": self.lr_min,
                "lr_warmup": self.warmup, "lr_steps_per_epoch": self.steps_per_epoch}

    def __repr__(self) -> str:
        return (f"LearningRate(lr={self.base!r}, kind={self.kind!r}, step_size={self.step_size}, "
                f"gamma={self.gamma!r}, total={self.total}, lr_min={self.lr_min!r}, "
                f"warmup={self.warmup}, steps_per_epoch={self.steps_per_epoch})")


def _check_same(state: Dict[str, object], mine: Dict[str, object], what: str) -> None:
    # Loading a state into an optimiser configured differently would silently change the run.
    for key, value in mine.items():
        if key not in state:
            raise ValueError(f"state has no {key!r}: not a state of this optimiser's {what}")
        other = state[key]
        try:
            same = str(other) == value if isinstance(value, str) else float(other) == float(value)
        except (TypeError, ValueError):
            same = False
        if not same:
            raise ValueError(f"state is for {what} with {key}={other!r}, this optimiser has "
                             f"{key}={value!r}")


def _schedule(lr) -> LearningRate:
    if isinstance(lr, LearningRate):
        return lr
    return LearningRate(lr)


def _check_kind(state: Dict[str, object], kind: str) -> None:
    if state.get("kind") != kind:
        raise ValueError(f"state is for optimiser kind={state.get('kind')!r}, not {kind!r}")


class SGD:
    """Stochastic gradient descent with optional momentum, PyTorch's formulation.

    With ``lr_t = schedule(t)`` and momentum ``mu``: ``b <- mu b + g`` (``b = g`` on the first
    step), then ``x <- x - lr_t b``, or with ``nesterov`` ``x <- x - lr_t (g + mu b)``; without
    momentum ``x <- x - lr_t g``.  The buffer holds gradients, not steps, so a changing rate acts on
    the whole buffer at once, as in PyTorch.  No weight decay: the objective already carries its
    Tikhonov regularisation, whose gradient is part of g.  Element-wise, so each rank may hold just
    its slice of x and g.

    Args:
        lr: a :class:`LearningRate`, or a number for a constant rate.
        momentum: in [0, 1).
        nesterov: Nesterov momentum (needs momentum > 0).
    """

    kind = "sgd"

    def __init__(self, lr=0.01, momentum: float = 0.0, nesterov: bool = False) -> None:
        self.schedule = _schedule(lr)
        if isinstance(momentum, bool) or not isinstance(momentum, (int, float, np.number)) \
                or not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got momentum={momentum!r}")
        if not isinstance(nesterov, (bool, np.bool_)):
            raise ValueError(f"nesterov must be True or False, got nesterov={nesterov!r}")
        if nesterov and momentum == 0.0:
            raise ValueError(f"nesterov=True needs momentum > 0, got momentum={momentum!r}")
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)
        self.velocity: Optional[np.ndarray] = None
        self.n_iter = 0

    @property
    def lr(self) -> float:
        """The rate the next step will use."""
        return self.schedule(self.n_iter)

    def step(self, x: np.ndarray, g: np.ndarray) -> np.ndarray:
        """Return the new point (x itself is not modified)."""
        lr = self.schedule(self.n_iter)
        self.n_iter += 1
        if self.momentum == 0.0:
            return x - lr * g
        if self.velocity is None:
            self.velocity = np.array(g, copy=True)
        else:
            self.velocity *= self.momentum
            self.velocity += g
        d = g + self.momentum * self.velocity if self.nesterov else self.velocity
        return x - lr * d

    def _hyper(self) -> Dict[str, object]:
        d = {"kind": self.kind, "momentum": self.momentum, "nesterov": int(self.nesterov)}
        d.update(self.schedule.state_dict())
        return d

    def state_dict(self) -> Dict[str, object]:
        """Hyperparameters, schedule, step counter and momentum buffer (plain scalars and arrays)."""
        d = self._hyper()
        d.update(n_iter=self.n_iter,
                 velocity=np.zeros(0) if self.velocity is None else self.velocity.copy())
        return d

    def load_state_dict(self, state: Dict[str, object]) -> None:
        """Restore what :meth:`state_dict` returned; the kind, hyperparameters and schedule must
        equal this optimiser's (ValueError otherwise)."""
        _check_kind(state, self.kind)
        _check_same(state, self._hyper(), "optimiser")
        self.n_iter = int(state["n_iter"])
        v = np.asarray(state["velocity"])
        self.velocity = None if v.size == 0 else v.copy()


class Adam:
    """Adam (Kingma & Ba) with bias correction; element-wise, so no reductions.

    ``m <- b1 m + (1 - b1) g``, ``v <- b2 v + (1 - b2) g^2``, then with k = t + 1 steps taken
    ``x <- x - lr_t (m / (1 - b1^k)) / (sqrt(v / (1 - b2^k)) + eps)``, ``lr_t = schedule(t)``.

    Args:
        lr: a :class:`LearningRate`, or a number for a constant rate.
        beta1, beta2: in [0, 1).
        eps: > 0.
    """

    kind = "adam"

    def __init__(self, lr=1e-3, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8) -> None:
        self.schedule = _schedule(lr)
        for name, b in (("beta1", beta1), ("beta2", beta2)):
            if isinstance(b, bool) or not isinstance(b, (int, float, np.number)) or not 0.0 <= b < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {name}={b!r}")
        self.beta1, self.beta2 = float(beta1), float(beta2)
        self.eps = float(_positive(eps, "eps"))
        self.m: Optional[np.ndarray] = None
        self.v: Optional[np.ndarray] = None
        self.n_iter = 0

    @property
    def lr(self) -> float:
        """The rate the next step will use."""
        return self.schedule(self.n_iter)

    def step(self, x: np.ndarray, g: np.ndarray) -> np.ndarray:
        """Return the new point (x itself is not modified)."""
        lr = self.schedule(self.n_iter)
        if self.m is None:
            self.m, self.v = np.zeros_like(x), np.zeros_like(x)
        self.n_iter += 1
        self.m *= self.beta1
        self.m += (1.0 - self.beta1) * g
        self.v *= self.beta2
        self.v += (1.0 - self.beta2) * g * g
        mhat = self.m / (1.0 - self.beta1 ** self.n_iter)
        vhat = self.v / (1.0 - self.beta2 ** self.n_iter)
        return x - lr * mhat / (np.sqrt(vhat) + self.eps)

    def _hyper(self) -> Dict[str, object]:
        d = {"kind": self.kind, "beta1": self.beta1, "beta2": self.beta2, "eps": self.eps}
        d.update(self.schedule.state_dict())
        return d

    def state_dict(self) -> Dict[str, object]:
        """Hyperparameters, schedule, step counter and moments (plain scalars and arrays)."""
        empty = np.zeros(0)
        d = self._hyper()
        d.update(n_iter=self.n_iter, m=empty if self.m is None else self.m.copy(),
                 v=empty if self.v is None else self.v.copy())
        return d

    def load_state_dict(self, state: Dict[str, object]) -> None:
        """Restore what :meth:`state_dict` returned; the kind, hyperparameters and schedule must
        equal this optimiser's (ValueError otherwise)."""
        _check_kind(state, self.kind)
        _check_same(state, self._hyper(), "optimiser")
        self.n_iter = int(state["n_iter"])
        m, v = np.asarray(state["m"]), np.asarray(state["v"])
        self.m = None if m.size == 0 else m.copy()
        self.v = None if v.size == 0 else v.copy()


def minimize_stochastic(opt, batch_fun_and_grad: Callable[[np.ndarray, np.ndarray], Tuple[float, np.ndarray]],
                        x0: np.ndarray, n_samples: int, batch_size: int, epochs: int,
                        seed: Optional[int] = None, dot: Dot = _dot,
                        callback: Optional[Callable[[int, np.ndarray, Dict[str, float]], Optional[bool]]] = None
                        ) -> Result:
    """Mini-batch training with :class:`SGD` or :class:`Adam`.

    Each epoch draws a seeded permutation of ``range(n_samples)`` and calls
    ``batch_fun_and_grad(x, indices) -> (f, g)`` on consecutive batches (the last one may be
    smaller).  One history row per epoch: mean batch objective, norm of the last batch gradient
    (through ``dot``), ``step`` = the learning rate of the epoch's last step.  For the fixed-size,
    resumable batch order that layer-parallel training needs see :class:`braidnet.batches.BatchOrder`.
    """
    _positive(n_samples, "n_samples", integer=True)
    _positive(batch_size, "batch_size", integer=True)
    _positive(epochs, "epochs", integer=True)
    rng = np.random.default_rng(seed)
    x = np.array(x0, dtype=np.float64, copy=True)
    history: List[Dict[str, float]] = []
    t0 = time.perf_counter()
    f, g = math.nan, None
    message = "epochs done"
    for epoch in range(1, epochs + 1):
        perm = rng.permutation(n_samples)
        fsum, nb = 0.0, 0
        for start in range(0, n_samples, batch_size):
            f, g = batch_fun_and_grad(x, perm[start:start + batch_size])
            lr = opt.lr
            x = opt.step(x, g)
            fsum += f
            nb += 1
        row = {"iter": epoch, "objective": fsum / nb, "gnorm": math.sqrt(dot(g, g)),
               "step": lr, "ls_trials": 0, "time": time.perf_counter() - t0}
        stop = callback(epoch, x, row) if callback is not None else None
        history.append(row)
        if stop:
            message = "stopped by callback"
            break
    return Result(x, f, g, epoch, False, message, history)
