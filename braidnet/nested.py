"""Nested iteration (Algorithm 1 of the paper): train a shallow network, refine it in the layer
dimension, train on.

Refinement by a factor r keeps T fixed and divides h by r; the residual-layer weights are interpolated
in time (opening and classifier are copied):

- piecewise constant:  theta_{r n + k} = theta_n,                                   k = 0 .. r-1
- linear:              theta_{r n + k} = theta_n + (k / r) (theta_{n+1} - theta_n),  with theta_N := theta_{N-1}
  (for r = 2: theta_{2n} = theta_n, theta_{2n+1} = (theta_n + theta_{n+1}) / 2).

Both work per layer block, whatever the layer kind (dense or convolutional: a layer is one block of
``layout.layer_size`` parameters, a state one ``(state_size, batch)`` block).

The MGRIT states (primal, adjoint, validation; N+1 points each) are refined the same way in time,
as the initial guess of the finer network's cores (:func:`interpolate_states`):

- piecewise constant:  u_{r n + k} = u_n,                                  k = 0 .. r-1, u_{r N} = u_N
- linear:              u_{r n + k} = u_n + (k / r) (u_{n+1} - u_n)

Both keep every coarse point exactly (theta_{r n} = theta_n, u_{r n} = u_n).  Since the fine grid's
time values t_{r n} = (r n / r N) T round to the coarse grid's (n / N) T, a coarse MGRIT level of
stride r on the refined network steps with exactly the coarse network's layers and step sizes: the
refined network's stride-r coarse grid IS the coarse network, bit for bit, and the interpolated
states solve its equations as well as the coarse states solved the coarse network's.  What a refinement
preserves only up to round-off: the regulariser's Tikhonov term (constant) and time-derivative term
(linear; constant multiplies it by r); up to the discretisation, O(h): the network's output.

The training loop that runs the levels is :func:`braidnet.train.train` (``nested.schedule`` in the
configuration).
"""
from __future__ import annotations

import dataclasses
from typing import Dict, Optional

import numpy as np

from braidnet.resnet import ResNet

INTERPOLATIONS = ("constant", "linear")


def _check(r, kind: str) -> None:
    if kind not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {kind!r}")
    if isinstance(r, bool) or not isinstance(r, (int, np.integer)) or r < 2:
        raise ValueError(f"refinement factor must be an integer >= 2, got r={r!r}")


def interpolate_layers(layers: np.ndarray, r: int, kind: str = "constant") -> np.ndarray:
    """Refine per-layer parameter blocks (N, p) to (r N, p) by the rule of the module text."""
    _check(r, kind)
    layers = np.asarray(layers, dtype=np.float64)
    if layers.ndim != 2 or layers.shape[0] < 1:
        raise ValueError(f"layers must be a (N >= 1, p) array, got shape {layers.shape}")
    fine = np.repeat(layers, r, axis=0)
    if kind == "linear":
        nxt = np.vstack([layers[1:], layers[-1:]])       # theta_{n+1}, constant past the end
        for k in range(1, r):
            fine[k::r] = layers + (k / r) * (nxt - layers)
    return fine


def interpolate_params(coarse: ResNet, fine: ResNet, theta: np.ndarray, kind: str = "constant") -> np.ndarray:
    """Parameters of ``fine`` (r times the layers of ``coarse``, same everything else) from ``theta``."""
    Lc, Lf = coarse.layout, fine.layout
    if Lf.n_layers % Lc.n_layers or Lf.n_layers == Lc.n_layers:
        raise ValueError(f"the fine network's {Lf.n_layers} layers are not a multiple r >= 2 of the coarse "
                         f"network's {Lc.n_layers}")
    if dataclasses.replace(Lc, n_layers=Lf.n_layers) != Lf:      # any layer kind: blocks of layer_size
        raise ValueError("coarse and fine networks differ in more than their number of layers")
    theta = np.asarray(theta, dtype=np.float64)
    if theta.shape != (Lc.size,):
        raise ValueError(f"theta must have shape ({Lc.size},) for the coarse network, got {theta.shape}")
    out = np.empty(Lf.size)
    out[Lf.opening_slice] = theta[Lc.opening_slice]
    out[Lf.classifier_slice] = theta[Lc.classifier_slice]
    blocks = theta[Lc.layers_slice()].reshape(Lc.n_layers, Lc.layer_size)
    out[Lf.layers_slice()] = interpolate_layers(blocks, Lf.n_layers // Lc.n_layers, kind).ravel()
    return out


def interpolate_states(states: np.ndarray, r: int, kind: str = "constant") -> np.ndarray:
    """Refine a trajectory of N+1 points (N+1, ...) to r N + 1 points by the rule of the module text.

    float32 states stay float32 (interpolated in float64, rounded once); any other input gives float64.
    """
    _check(r, kind)
    dtype = np.float32 if np.asarray(states).dtype == np.float32 else np.float64
    states = np.asarray(states, dtype=np.float64)
    if states.ndim < 1 or states.shape[0] < 2:
        raise ValueError(f"states must have N+1 >= 2 points along axis 0, got shape {states.shape}")
    N = states.shape[0] - 1
    fine = np.empty((r * N + 1,) + states.shape[1:])
    fine[-1] = states[-1]
    left = states[:-1]
    for k in range(r):
        fine[k:r * N:r] = left if kind == "constant" or k == 0 else left + (k / r) * (states[1:] - left)
    return fine.astype(dtype, copy=False)


def refine_warm_states(states: Dict[str, Optional[np.ndarray]], r: int,
                       kind: str = "constant") -> Dict[str, np.ndarray]:
    """:meth:`ParallelNetwork.warm_states` (with endpoints) of a coarse network, refined for one with
    r times the layers: the input of the finer network's ``load_warm_states``.  None entries (ranks
    other than the root) are left out."""
    return {name: interpolate_states(u, r, kind) for name, u in states.items() if u is not None}
