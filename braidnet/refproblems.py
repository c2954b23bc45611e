"""The reference problems of docs/design.md section 2 as plain-Python apps, and their serial solution.

Each class here is the numpy twin of a fast app in :mod:`braidnet.refapps` (same formulas, same
order of operations), usable with :class:`braidnet.braid.Core`:

- :class:`ScalarODE`: ``u' = -u``, backward Euler ``u <- u / (1 + dt)``, u(0) = 1, guess 0.456;
- :class:`Heat`: ``u_t = u_xx + F`` on 33 points of ``[0, pi]`` (dx = pi/32), exact solution
  ``sin(x) cos(t)``, ``F = -sin(x) sin(t) + sin(x) cos(t)``, backward Euler with ``F`` evaluated
  at the step's end ``tstop`` and Dirichlet values ``sin(x) cos(tstop)`` at both ends;
- :class:`ResNet4`: ``u <- u + h tanh(W u + b)``, h = tstop - tstart.

:func:`reference_problem` builds either version with its time interval, :func:`sequential_solution`
steps any app serially (the answer MGRIT must converge to).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from braidnet import refapps
from braidnet.refapps import HEAT_NX, RESNET4_B, RESNET4_U0, RESNET4_W

__all__ = ["ScalarODE", "Heat", "ResNet4", "Problem", "PROBLEMS", "reference_problem", "sequential_solution",
           "HEAT_NX", "RESNET4_W", "RESNET4_B", "RESNET4_U0"]


class _Recording:
    """What the final access (done = 1, level 0) shows: the latest state and, optionally, all of them.

    Same interface as the fast apps' recorder: ``keep_states(npoints)``, ``states()``, ``final``,
    ``reset_record()``.
    """

    def __init__(self) -> None:
        self._final: tuple[float, np.ndarray] | None = None
        self._states: dict[int, np.ndarray] | None = None
        self._npoints = 0

    def access(self, u: np.ndarray, status: Any) -> None:
        if not status.done or status.level != 0:
            return
        if self._final is None or status.t >= self._final[0]:
            self._final = (status.t, u.copy())
        if self._states is not None and 0 <= status.index < self._npoints:
            self._states[status.index] = u.copy()

    def keep_states(self, npoints: int) -> None:
        """Also keep every level-0 state of the final access with fine index < npoints."""
        self._states, self._npoints = {}, npoints

    def states(self) -> dict[int, np.ndarray]:
        """{fine index: state} of the final access on this rank (after keep_states)."""
        return {} if self._states is None else {i: u.copy() for i, u in self._states.items()}

    @property
    def final(self) -> tuple[float, np.ndarray] | None:
        """(t, state) at the largest time a final access showed this rank, or None."""
        return None if self._final is None else (self._final[0], self._final[1].copy())

    def reset_record(self) -> None:
        """Forget what was recorded (keep_states stays on)."""
        self._final = None
        if self._states is not None:
            self._states = {}


class ScalarODE(_Recording):
    """``u' = -u`` by backward Euler: ``u <- u / (1 + dt)``; init u0 at tstart, ``guess`` elsewhere."""

    size = 1

    def __init__(self, u0: float = 1.0, guess: float = 0.456, tstart: float = 0.0) -> None:
        super().__init__()
        self.u0, self.guess, self.tstart = float(u0), float(guess), float(tstart)

    def init(self, t: float) -> np.ndarray:
        return np.array([self.u0 if t == self.tstart else self.guess])

    def step(self, u: np.ndarray, ustop: np.ndarray, fstop: Any, status: Any) -> None:
        u[0] = u[0] / (1.0 + (status.tstop - status.tstart))


class Heat(_Recording):
    """``u_t = u_xx + F`` on 33 points of [0, pi]; backward Euler, Thomas solve (see the module text).

    init: the exact solution sin(x) cos(t) at tstart, zero elsewhere.
    """

    size = HEAT_NX

    def __init__(self, tstart: float = 0.0) -> None:
        super().__init__()
        self.tstart = float(tstart)
        self.dx = math.pi / (HEAT_NX - 1)
        self.sinx = [math.sin(j * self.dx) for j in range(HEAT_NX)]

    def init(self, t: float) -> np.ndarray:
        if t != self.tstart:
            return np.zeros(HEAT_NX)
        ct = math.cos(t)
        return np.array([s * ct for s in self.sinx])

    def step(self, u: np.ndarray, ustop: np.ndarray, fstop: Any, status: Any) -> None:
        # The same operations, in the same order, as refapps.heat_step (Python floats are C doubles).
        n, s = HEAT_NX, self.sinx
        dt = status.tstop - status.tstart
        ct, st = math.cos(status.tstop), math.sin(status.tstop)
        lam = dt / (self.dx * self.dx)
        diag, off = 1.0 + 2.0 * lam, -lam
        g0, g1 = s[0] * ct, s[n - 1] * ct
        r = u.tolist()
        for i in range(1, n - 1):
            r[i] = r[i] + dt * s[i] * (ct - st)
        r[1] = r[1] - off * g0
        r[n - 2] = r[n - 2] - off * g1
        cp = [0.0] * n
        cp[1] = off / diag
        r[1] = r[1] / diag
        for i in range(2, n - 1):
            m = diag - off * cp[i - 1]
            cp[i] = off / m
            r[i] = (r[i] - off * r[i - 1]) / m
        for i in range(n - 3, 0, -1):
            r[i] = r[i] - cp[i] * r[i + 1]
        r[0], r[n - 1] = g0, g1
        u[:] = r

    def exact(self, t: float) -> np.ndarray:
        """The exact solution sin(x) cos(t) of the PDE (not of the discretisation)."""
        return np.array(self.sinx) * math.cos(t)


class ResNet4(_Recording):
    """``u <- u + h tanh(W u + b)``, h = tstop - tstart; u(tstart) = u0, zero guess elsewhere."""

    size = 4

    def __init__(self, W: Any = RESNET4_W, b: Any = RESNET4_B, u0: Any = RESNET4_U0, tstart: float = 0.0) -> None:
        super().__init__()
        self.tstart = float(tstart)
        self.u0 = np.array(u0, dtype=np.float64)
        if self.u0.shape != (4,):
            raise ValueError(f"u0 must have shape (4,), got {self.u0.shape}")
        self.set_params(W, b)

    def set_params(self, W: Any, b: Any) -> None:
        """Replace W (4x4) and b (4); the next drive() uses them (warm restart)."""
        W, b = np.array(W, dtype=np.float64), np.array(b, dtype=np.float64)
        if W.shape != (4, 4) or b.shape != (4,):
            raise ValueError(f"W must have shape (4, 4) and b (4,), got {W.shape} and {b.shape}")
        self.W, self.b = W, b

    def init(self, t: float) -> np.ndarray:
        return self.u0.copy() if t == self.tstart else np.zeros(4)

    def step(self, u: np.ndarray, ustop: np.ndarray, fstop: Any, status: Any) -> None:
        h = status.tstop - status.tstart
        u += h * np.tanh(self.W @ u + self.b)


class Problem(NamedTuple):
    """An app with the time interval it is meant for."""
    app: Any
    tstart: float
    tstop: float


PROBLEMS = ("scalar", "heat", "resnet4")


def reference_problem(name: str, ntime: int, fast: bool = True) -> Problem:
    """The reference problem ``name`` (one of PROBLEMS) for ``ntime`` steps.

    scalar: [0, ntime/2] (dt = 0.5); heat: [0, 2 pi]; resnet4: [0, 4].  ``fast`` picks the Cython
    app of :mod:`braidnet.refapps`, else the numpy one of this module.
    """
    if name not in PROBLEMS:
        raise ValueError(f"unknown problem {name!r}; choose one of {', '.join(PROBLEMS)}")
    if fast:
        classes = {"scalar": refapps.ScalarApp, "heat": refapps.HeatApp, "resnet4": refapps.ResNet4App}
    else:
        classes = {"scalar": ScalarODE, "heat": Heat, "resnet4": ResNet4}
    tstop = {"scalar": ntime / 2, "heat": 2 * math.pi, "resnet4": 4.0}[name]
    return Problem(classes[name](), 0.0, tstop)


@dataclass(frozen=True)
class _SerialStatus:
    tstart: float
    tstop: float
    index: int
    level: int = 0
    iter: int = 0
    done: int = 1


def sequential_solution(app: Any, tstart: float, tstop: float, ntime: int) -> np.ndarray:
    """Serial time stepping from init(tstart) on the core's grid; returns shape (ntime + 1, size).

    The points are ``tstart + (i / ntime) * (tstop - tstart)``, the core's own formula, so the
    result is what MGRIT converges to.  Works for Python apps and VectorApps.
    """
    times = [tstart + (i / ntime) * (tstop - tstart) for i in range(ntime + 1)]
    fast = hasattr(app, "step_vector")
    u = np.array(app.init_vector(times[0]) if fast else app.init(times[0]), dtype=np.float64).reshape(-1)
    out = np.empty((ntime + 1, u.size))
    out[0] = u
    for i in range(ntime):
        if fast:
            u = app.step_vector(u, times[i], times[i + 1], 0, i)
        else:
            res = app.step(u, u, None, _SerialStatus(times[i], times[i + 1], i))
            if res is not None:
                u = np.array(res, dtype=np.float64).reshape(-1)
        out[i + 1] = u
    return out
