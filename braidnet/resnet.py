"""The residual network of the paper: opening layer, N residual layers, softmax classifier.

Network (docs/design.md section 3), h = T / N::

    u_0     = [x; 0]                      zero-padding opening (no parameters), or
    u_0     = sigma(W_o x + b_o)          dense opening
    u_{n+1} = u_n + h sigma(W_n u_n + b_n),   n = 0 .. N-1
    z       = W_c u_N + b_c,   loss = mean over the batch of -<y, z> + log sum exp z

with sigma one of ``tanh``, ``relu``, ``smoothrelu`` (LPT's smoothed ReLU, eta = 0.1) and b_n one
bias per channel (``bias="channel"``, default) or one scalar per layer (``bias="scalar"``, as in
LPT's code).  The opening uses the same activation and bias type; the classifier has a bias per
class.

**State layout.**  The states of a batch at one layer are one C-contiguous block of shape
``(width, batch)``: row c is channel c of every sample, i.e. the paper's ``U = [u^1 ... u^B]``, so
the layer map is literally ``W @ U``.  This layout was chosen because (a) the per-channel bias and
its gradient, and the scalar bias, work on contiguous rows of length ``batch`` (long vectorisable
loops even at width 8, no strided column sums), (b) the layer GEMMs map onto column-major BLAS
without copies, and (c) one block per layer is exactly what an MGRIT vector holds and ships as
bytes.  User-facing inputs ``X`` are ``(n_samples, n_features)`` (one sample per row, like the
data sets); they are transposed once, on entry, to ``(n_features, batch)``.

**Parameters** live in ONE flat float64 vector, described by :class:`ParamLayout`::

    [ opening: W_o (width, n_features) row-major, b_o (nb) ]   absent for zero-padding
    [ layer 0: W_0 (width, width) row-major, b_0 (nb) ]
    ...
    [ layer N-1 ]
    [ classifier: W_c (n_classes, width) row-major, b_c (n_classes) ]

with nb = width (per-channel bias) or 1 (scalar bias).  Residual layers [a, b) are the contiguous
slice ``layout.layers_slice(a, b)``, so a rank that owns those layers addresses its share directly.

**Precision** (``dtype``, docs/design.md section 3).  ``"float64"`` (default) or ``"float32"``: the
dtype of the states, the inputs in the state layout and the residual and opening kernels.  The
parameters stay float64 (the optimiser's vector); a float32 network rounds them to float32 for its
kernels at every evaluation, and returns float64 gradients (each layer's computed in float32, then
widened).  The classifier, the loss, its gradient and lambda_N, the accuracy and the regulariser are
computed in float64 from the (widened) float32 u_N.

**Regularisation** (the same continuous quantity at every depth N)::

    R = gamma_tik/2 * (||W_o||^2 + ||b_o||^2)                                  opening
      + gamma_tik/2 * sum_{n=0}^{N-1} h (||W_n||^2 + ||b_n||^2)                Tikhonov, layers
      + gamma_ddt/2 * sum_{n=0}^{N-2} h ||(theta_{n+1} - theta_n) / h||^2      time derivative
      + gamma_class/2 * (||W_c||^2 + ||b_c||^2)                                classifier

**Splitting R over ranks.**  :meth:`ResNet.regularizer_layers` for the layer range [a, b) returns
the share: the Tikhonov terms of n in [a, b) and the time-derivative pairs (n, n+1) for n in
[a, b) with n + 1 <= N - 1 (this needs theta_b, the ``next_layer`` argument, when b < N); and the
gradient of the WHOLE R with respect to theta_a .. theta_{b-1} (which also needs the pair
(a-1, a), i.e. theta_{a-1}, the ``prev_layer`` argument, when a > 0).  For ranks whose ranges partition
[0, N), the shares' values sum to the layer part of R and their gradients are disjoint slices of
its gradient.  Opening and classifier terms come from :meth:`ResNet.regularizer_opening` and
:meth:`ResNet.regularizer_classifier`.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

from braidnet import _kernels

log = logging.getLogger(__name__)

ACTIVATIONS = ("tanh", "relu", "smoothrelu")
DTYPES = ("float64", "float32")
OPENINGS = ("pad", "dense")
BIASES = ("channel", "scalar")


def _positive_int(value, name: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {name}={value!r}")
    return int(value)


def _choice(value, name: str, allowed: Tuple[str, ...]) -> str:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {name}={value!r}")
    return value


@dataclass(frozen=True)
class ParamLayout:
    """Offsets of the layer groups in the flat parameter vector (see the module docstring).

    All ``*_slice`` members are Python slices into the flat vector; the ``*_view`` methods return
    numpy views (writing into them writes into ``theta``).
    """

    n_features: int
    width: int
    n_layers: int
    n_classes: int
    opening: str = "pad"
    bias: str = "channel"

    def __post_init__(self) -> None:
        for name in ("n_features", "width", "n_layers", "n_classes"):
            _positive_int(getattr(self, name), name)
        _choice(self.opening, "opening", OPENINGS)
        _choice(self.bias, "bias", BIASES)
        if self.n_classes < 2:
            raise ValueError(f"n_classes must be >= 2, got n_classes={self.n_classes}")
        if self.opening == "pad" and self.width < self.n_features:
            raise ValueError(f"width={self.width} < n_features={self.n_features}: the zero-padding "
                             "opening needs width >= n_features (use opening='dense')")

    # sizes -------------------------------------------------------------------------------------
    @property
    def nb(self) -> int:
        """Bias entries per hidden layer: width (per channel) or 1 (scalar)."""
        return self.width if self.bias == "channel" else 1

    @property
    def opening_size(self) -> int:
        return 0 if self.opening == "pad" else self.width * self.n_features + self.nb

    @property
    def layer_size(self) -> int:
        """Entries of one residual layer's block: W_n then b_n."""
        return self.width * self.width + self.nb

    @property
    def classifier_size(self) -> int:
        return self.n_classes * self.width + self.n_classes

    @property
    def classifier_offset(self) -> int:
        return self.layer_offset(self.n_layers)

    @property
    def size(self) -> int:
        return self.classifier_offset + self.classifier_size

    # slices ------------------------------------------------------------------------------------
    def layer_offset(self, n: int) -> int:
        """Offset of layer n's block (n = N gives the classifier's offset)."""
        if not 0 <= n <= self.n_layers:
            raise ValueError(f"layer index must be in [0, {self.n_layers}], got n={n}")
        return self.opening_size + n * self.layer_size

    @property
    def opening_slice(self) -> slice:
        return slice(0, self.opening_size)

    def layer_slice(self, n: int) -> slice:
        if not 0 <= n < self.n_layers:
            raise ValueError(f"layer index must be in [0, {self.n_layers}), got n={n}")
        return slice(self.layer_offset(n), self.layer_offset(n + 1))

    def layers_slice(self, a: int = 0, b: Optional[int] = None) -> slice:
        """Contiguous slice of residual layers [a, b) (default: all)."""
        b = self.n_layers if b is None else b
        if not 0 <= a <= b <= self.n_layers:
            raise ValueError(f"layer range must satisfy 0 <= a <= b <= {self.n_layers}, got [{a}, {b})")
        return slice(self.layer_offset(a), self.layer_offset(b))

    @property
    def classifier_slice(self) -> slice:
        return slice(self.classifier_offset, self.size)

    # views -------------------------------------------------------------------------------------
    def _check(self, theta: np.ndarray) -> None:
        if theta.shape != (self.size,):
            raise ValueError(f"theta must have shape ({self.size},), got {theta.shape}")

    def opening_view(self, theta: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """(W_o (width, n_features), b_o (nb,)) views; both empty for zero-padding."""
        self._check(theta)
        if self.opening == "pad":
            return theta[0:0].reshape(0, self.n_features), theta[0:0]
        nw = self.width * self.n_features
        return theta[:nw].reshape(self.width, self.n_features), theta[nw:self.opening_size]

    def layer_view(self, theta: np.ndarray, n: int) -> Tuple[np.ndarray, np.ndarray]:
        """(W_n (width, width), b_n (nb,)) views of residual layer n."""
        self._check(theta)
        blk = theta[self.layer_slice(n)]
        ww = self.width * self.width
        return blk[:ww].reshape(self.width, self.width), blk[ww:]

    def layers_view(self, theta: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """(W (N, width, width), b (N, nb)) strided views of all residual layers."""
        self._check(theta)
        blk = theta[self.layers_slice()].reshape(self.n_layers, self.layer_size)
        ww = self.width * self.width
        return blk[:, :ww].reshape(self.n_layers, self.width, self.width), blk[:, ww:]

    def classifier_view(self, theta: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """(W_c (n_classes, width), b_c (n_classes,)) views."""
        self._check(theta)
        blk = theta[self.classifier_slice]
        nw = self.n_classes * self.width
        return blk[:nw].reshape(self.n_classes, self.width), blk[nw:]


class ResNet:
    """ResNet of docs/design.md section 3 with layer-serial exact forward and backward.

    Args:
        n_features: input dimension (2 for peaks).
        n_classes: number of classes.
        width: channels of the residual layers.
        n_layers: residual layers N.
        T: final time; h = T / N.
        activation: ``"tanh"``, ``"relu"`` or ``"smoothrelu"``.
        opening: ``"pad"`` (zero-padding, no parameters) or ``"dense"``.
        bias: ``"channel"`` (one per channel) or ``"scalar"`` (one per layer).
        gamma_tik, gamma_ddt, gamma_class: regularisation weights (module docstring).
        dtype: ``"float64"`` (default) or ``"float32"``: the precision of the states and kernels
            (module docstring); parameters and gradients stay float64.
    """

    def __init__(self, n_features: int, n_classes: int, width: int, n_layers: int, T: float = 5.0,
                 activation: str = "smoothrelu", opening: str = "pad", bias: str = "channel",
                 gamma_tik: float = 0.0, gamma_ddt: float = 0.0, gamma_class: float = 0.0,
                 dtype: str = "float64") -> None:
        self.layout = ParamLayout(n_features, width, n_layers, n_classes, opening, bias)
        if isinstance(dtype, np.dtype) or (isinstance(dtype, type) and issubclass(dtype, np.generic)):
            dtype = np.dtype(dtype).name      # numpy.float32 / np.dtype("float32") as the name
        #: the precision of states and kernels: numpy.float64 or numpy.float32
        self.dtype = np.dtype(_choice(dtype, "dtype", DTYPES))
        if not np.isfinite(T) or T <= 0:
            raise ValueError(f"T must be a finite number > 0, got T={T!r}")
        self.activation = _choice(activation, "activation", ACTIVATIONS)
        for name, g in (("gamma_tik", gamma_tik), ("gamma_ddt", gamma_ddt), ("gamma_class", gamma_class)):
            if not np.isfinite(g) or g < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {name}={g!r}")
        self.T = float(T)
        self.h = self.T / n_layers
        self.gamma_tik = float(gamma_tik)
        self.gamma_ddt = float(gamma_ddt)
        self.gamma_class = float(gamma_class)
        self._act = _kernels.ACTIVATIONS[activation]

    def __repr__(self) -> str:
        L = self.layout
        return (f"ResNet(n_features={L.n_features}, n_classes={L.n_classes}, width={L.width}, "
                f"n_layers={L.n_layers}, T={self.T}, activation={self.activation!r}, "
                f"opening={L.opening!r}, bias={L.bias!r}, gamma_tik={self.gamma_tik}, "
                f"gamma_ddt={self.gamma_ddt}, gamma_class={self.gamma_class}"
                + (f", dtype={self.dtype.name!r})" if self.dtype != np.float64 else ")"))

    # shorthands
    @property
    def n_layers(self) -> int:
        return self.layout.n_layers

    @property
    def width(self) -> int:
        return self.layout.width

    @property
    def n_params(self) -> int:
        return self.layout.size

    # ------------------------------------------------------------------------------------------
    # parameters
    def init_params(self, seed: Optional[int] = None, scale_opening: float = 1e-3,
                    scale_layers: float = 0.0, scale_classifier: float = 1e-3) -> np.ndarray:
        """LPT's initialisation: every parameter uniform on [0, 1) times its group's scale.

        The paper's residual scale w_i is 0 or 1e-6; LPT used 1e-3 for opening and classifier.
        Draws are made for the whole vector in layout order from ``numpy.random.default_rng(seed)``.
        """
        L = self.layout
        theta = np.random.default_rng(seed).random(L.size)
        theta[L.opening_slice] *= scale_opening
        theta[L.layers_slice()] *= scale_layers
        theta[L.classifier_slice] *= scale_classifier
        return theta

    def _theta(self, theta) -> np.ndarray:
        theta = np.asarray(theta)
        if theta.dtype != np.float64:
            raise ValueError(f"theta must have dtype float64, got {theta.dtype}")
        if theta.shape != (self.layout.size,):
            raise ValueError(f"theta must have shape ({self.layout.size},), got {theta.shape}")
        if not np.all(np.isfinite(theta)):
            raise ValueError("theta contains NaN or inf")
        return np.ascontiguousarray(theta)

    # ------------------------------------------------------------------------------------------
    # data in the state layout
    def prepare_inputs(self, X) -> np.ndarray:
        """Validate X (n_samples, n_features) and return it as a (n_features, n_samples) block of
        the network's dtype."""
        X = np.asarray(X)
        nf = self.layout.n_features
        if X.ndim != 2 or X.shape[1] != nf:
            raise ValueError(f"X must have shape (n_samples, n_features={nf}), got {X.shape}")
        if X.shape[0] == 0:
            raise ValueError("X holds no samples (shape[0] == 0)")
        if not np.issubdtype(X.dtype, np.number) or np.iscomplexobj(X):
            raise ValueError(f"X must be real numbers, got dtype {X.dtype}")
        X = X.astype(np.float64, copy=False)
        if not np.all(np.isfinite(X)):
            raise ValueError("X contains NaN or inf")
        return np.ascontiguousarray(X.T, dtype=self.dtype)

    def prepare_targets(self, Y, n_samples: int) -> np.ndarray:
        """Validate labels and return one-hot targets as a (n_classes, n_samples) block.

        Y is either integer labels (n_samples,) in [0, n_classes) or one-hot / probability rows
        (n_samples, n_classes).
        """
        C = self.layout.n_classes
        Y = np.asarray(Y)
        if Y.ndim == 1:
            if Y.shape[0] != n_samples:
                raise ValueError(f"labels must have shape ({n_samples},), got {Y.shape}")
            if Y.dtype.kind not in "iu":
                if Y.dtype.kind != "f" or not np.all(np.isfinite(Y)) or np.any(Y != np.round(Y)):
                    raise ValueError(f"labels must be integers, got dtype {Y.dtype}")
            if Y.size and (Y.min() < 0 or Y.max() >= C):
                bad = Y[(Y < 0) | (Y >= C)][0]
                raise ValueError(f"labels must be in [0, n_classes={C}), got label {bad}")
            out = np.zeros((C, n_samples))
            out[Y.astype(np.intp), np.arange(n_samples)] = 1.0
            return out
        if Y.ndim == 2:
            if Y.shape != (n_samples, C):
                raise ValueError(f"one-hot targets must have shape ({n_samples}, n_classes={C}), "
                                 f"got {Y.shape}")
            Y = Y.astype(np.float64, copy=False)
            if not np.all(np.isfinite(Y)):
                raise ValueError("targets contain NaN or inf")
            if np.any(Y < 0) or not np.allclose(Y.sum(axis=1), 1.0, rtol=0, atol=1e-8):
                raise ValueError("one-hot targets must be non-negative rows summing to 1")
            return np.ascontiguousarray(Y.T)
        raise ValueError(f"labels must be 1-D integer labels or 2-D one-hot rows, got shape {Y.shape}")

    # ------------------------------------------------------------------------------------------
    # per-group pieces (reused by the layer-parallel code); all blocks in the state layout
    def opening_forward(self, theta_open: np.ndarray, x: np.ndarray) -> np.ndarray:
        """u_0 (width, batch) from inputs x (n_features, batch, the network's dtype);
        theta_open = theta[opening_slice]."""
        L = self.layout
        if L.opening == "pad":
            u0 = np.zeros((L.width, x.shape[1]), self.dtype)
            u0[:L.n_features] = x
            return u0
        W, b = self._open_views(theta_open)
        return _kernels.opening_forward(W, b, x, self._act)

    def opening_gradient(self, theta_open: np.ndarray, x: np.ndarray, lam0: np.ndarray) -> np.ndarray:
        """Data gradient of the opening's parameters given lam0 = dJ/du_0 (empty for padding)."""
        L = self.layout
        g = np.zeros(L.opening_size, self.dtype)
        if L.opening == "dense":
            W, b = self._open_views(theta_open)
            nw = L.width * L.n_features
            _kernels.opening_gradient(W, b, x, np.asarray(lam0, self.dtype), self._act,
                                      g[:nw].reshape(W.shape), g[nw:])
        return g.astype(np.float64, copy=False)

    def _open_views(self, theta_open: np.ndarray):
        L = self.layout
        theta_open = np.ascontiguousarray(theta_open, dtype=self.dtype)   # float32: rounded once
        if theta_open.shape != (L.opening_size,):
            raise ValueError(f"theta_open must have shape ({L.opening_size},), got {theta_open.shape}")
        nw = L.width * L.n_features
        return theta_open[:nw].reshape(L.width, L.n_features), theta_open[nw:]

    def layers_forward(self, theta_layers: np.ndarray, u0: np.ndarray) -> np.ndarray:
        """All states (N+1, width, batch, the network's dtype) from u_0;
        theta_layers = theta[layers_slice()]."""
        L = self.layout
        states = np.empty((L.n_layers + 1,) + u0.shape, self.dtype)
        states[0] = u0
        _kernels.net_forward(np.ascontiguousarray(theta_layers, dtype=self.dtype), L.width, L.nb,
                             L.n_layers, self.h, self._act, states)
        return states

    def layers_backward(self, theta_layers: np.ndarray, states: np.ndarray,
                        lamN: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """(data gradient of the residual layers (float64), lambda_0) from lambda_N = dJ/du_N."""
        L = self.layout
        lam = np.array(lamN, dtype=self.dtype, order="C")
        g = np.zeros(theta_layers.shape[0], self.dtype)
        _kernels.net_backward(np.ascontiguousarray(theta_layers, dtype=self.dtype), L.width, L.nb,
                              L.n_layers, self.h, self._act, states, lam, g)
        return g.astype(np.float64, copy=False), lam

    def classifier_loss(self, theta_cls: np.ndarray, uN: np.ndarray,
                        targets: np.ndarray) -> Tuple[float, np.ndarray, np.ndarray]:
        """(loss, data gradient of the classifier's parameters, lambda_N = dJ/du_N), all float64.

        uN is (width, batch) (float32 is widened: the classifier runs in float64), targets the
        (n_classes, batch) one-hot block of :meth:`prepare_targets`; the loss is the batch mean of
        the softmax cross-entropy.
        """
        L = self.layout
        uN = np.asarray(uN, dtype=np.float64)
        nw = L.n_classes * L.width
        Wc = theta_cls[:nw].reshape(L.n_classes, L.width)
        bc = theta_cls[nw:]
        batch = uN.shape[1]
        z = Wc @ uN
        z += bc[:, None]
        z -= z.max(axis=0)                     # shift by the max: exp cannot overflow
        ez = np.exp(z)
        s = ez.sum(axis=0)
        loss = float((np.log(s) - np.einsum("cj,cj->j", targets, z)).sum() / batch)
        G = ez / s
        G -= targets
        G /= batch                             # dJ/dz
        g = np.empty(L.classifier_size)
        g[:nw] = (G @ uN.T).ravel()
        g[nw:] = G.sum(axis=1)
        return loss, g, Wc.T @ G

    def logits(self, theta: np.ndarray, X) -> np.ndarray:
        """Classifier outputs z (n_samples, n_classes)."""
        theta = self._theta(theta)
        uN = self._forward(theta, self.prepare_inputs(X))[-1]
        Wc, bc = self.layout.classifier_view(theta)
        return (Wc @ uN + bc[:, None]).T

    # ------------------------------------------------------------------------------------------
    # regularisation
    def regularizer_opening(self, theta_open: np.ndarray) -> Tuple[float, np.ndarray]:
        """gamma_tik/2 ||theta_open||^2 and its gradient."""
        g = self.gamma_tik * theta_open
        return 0.5 * self.gamma_tik * float(np.dot(theta_open, theta_open)), g

    def regularizer_classifier(self, theta_cls: np.ndarray) -> Tuple[float, np.ndarray]:
        """gamma_class/2 ||theta_cls||^2 and its gradient."""
        g = self.gamma_class * theta_cls
        return 0.5 * self.gamma_class * float(np.dot(theta_cls, theta_cls)), g

    def regularizer_layers(self, theta_ab: np.ndarray, a: int = 0, b: Optional[int] = None,
                           prev_layer: Optional[np.ndarray] = None,
                           next_layer: Optional[np.ndarray] = None) -> Tuple[float, np.ndarray]:
        """Share of the residual layers [a, b) in R, and the gradient of R w.r.t. those layers.

        Args:
            theta_ab: the contiguous parameters of layers a .. b-1 (``theta[layers_slice(a, b)]``).
            prev_layer: parameters of layer a-1 (needed when a > 0 and gamma_ddt > 0).
            next_layer: parameters of layer b (needed when b < N and gamma_ddt > 0).

        The value holds the Tikhonov terms of layers [a, b) and the time-derivative pairs
        (n, n+1), n in [a, b), n+1 < N; summing it over ranges that partition [0, N) gives the
        total.  The gradient is the full gradient of R for layers [a, b).
        """
        L = self.layout
        N, ls, h = L.n_layers, L.layer_size, self.h
        b = N if b is None else b
        if not 0 <= a < b <= N:
            raise ValueError(f"layer range must satisfy 0 <= a < b <= {N}, got [{a}, {b})")
        theta_ab = np.asarray(theta_ab, dtype=np.float64)
        if theta_ab.shape != ((b - a) * ls,):
            raise ValueError(f"theta_ab must have shape ({(b - a) * ls},), got {theta_ab.shape}")
        val = 0.5 * self.gamma_tik * h * float(np.dot(theta_ab, theta_ab))
        grad = self.gamma_tik * h * theta_ab
        if self.gamma_ddt == 0.0:
            return val, grad
        need_prev, need_next = a > 0, b < N
        for name, arr, need in (("prev_layer", prev_layer, need_prev), ("next_layer", next_layer, need_next)):
            if need and (arr is None or np.shape(arr) != (ls,)):
                raise ValueError(f"{name} (the parameters of layer {a - 1 if name == 'prev_layer' else b}, "
                                 f"shape ({ls},)) is needed for layers [{a}, {b}) with gamma_ddt > 0")
        # extended block: [prev] + layers + [next]
        blocks = [theta_ab.reshape(b - a, ls)]
        if need_prev:
            blocks.insert(0, np.asarray(prev_layer, dtype=np.float64)[None])
        if need_next:
            blocks.append(np.asarray(next_layer, dtype=np.float64)[None])
        ext = np.concatenate(blocks) if len(blocks) > 1 else blocks[0]
        d = np.diff(ext, axis=0)                    # d[k] = theta_{k+1} - theta_k (extended index)
        c = self.gamma_ddt / h                      # gamma/2 * h * ||d/h||^2 = gamma/(2h) ||d||^2
        # value: pairs starting in [a, b) (skip the (a-1, a) pair)
        own = d[1:] if need_prev else d
        val += 0.5 * c * float(np.dot(own.ravel(), own.ravel()))
        # gradient: d/dtheta_n of c/2 ||theta_{n+1}-theta_n||^2 = -c d_n, of the pair (n-1, n): +c d_{n-1}
        gext = np.zeros_like(ext)
        gext[:-1] -= c * d
        gext[1:] += c * d
        lo = 1 if need_prev else 0
        grad += gext[lo:lo + (b - a)].ravel()
        return val, grad

    def regularizer(self, theta: np.ndarray) -> Tuple[float, np.ndarray]:
        """Total regularisation R(theta) and its gradient (full vector)."""
        L = self.layout
        g = np.zeros(L.size)
        v0, g[L.opening_slice] = self.regularizer_opening(theta[L.opening_slice])
        v1, g[L.layers_slice()] = self.regularizer_layers(theta[L.layers_slice()])
        v2, g[L.classifier_slice] = self.regularizer_classifier(theta[L.classifier_slice])
        return v0 + v1 + v2, g

    # ------------------------------------------------------------------------------------------
    # layer-serial evaluation
    def _forward(self, theta: np.ndarray, x: np.ndarray) -> np.ndarray:
        L = self.layout
        u0 = self.opening_forward(theta[L.opening_slice], x)
        return self.layers_forward(theta[L.layers_slice()], u0)

    def _data_gradient(self, theta, x, targets, states) -> Tuple[float, np.ndarray]:
        L = self.layout
        g = np.empty(L.size)
        loss, g[L.classifier_slice], lam = self.classifier_loss(theta[L.classifier_slice],
                                                               states[-1], targets)
        g[L.layers_slice()], lam0 = self.layers_backward(theta[L.layers_slice()], states, lam)
        g[L.opening_slice] = self.opening_gradient(theta[L.opening_slice], x, lam0)
        return loss, g

    def loss(self, theta, X, Y) -> float:
        """Batch-mean cross-entropy (no regularisation)."""
        theta = self._theta(theta)
        x = self.prepare_inputs(X)
        targets = self.prepare_targets(Y, x.shape[1])
        L = self.layout
        loss, _, _ = self.classifier_loss(theta[L.classifier_slice], self._forward(theta, x)[-1], targets)
        return loss

    def objective(self, theta, X, Y) -> float:
        """Loss plus regularisation."""
        return self.loss(theta, X, Y) + self.regularizer(self._theta(theta))[0]

    def loss_and_gradient(self, theta, X, Y, regularize: bool = True) -> Tuple[float, np.ndarray]:
        """(objective, gradient) by an exact layer-serial forward and backward pass.

        With ``regularize=False`` only the data loss and its gradient.
        """
        return Objective(self, X, Y, regularize=regularize).fun_and_grad(theta)

    def predict(self, theta, X) -> np.ndarray:
        """Predicted class (argmax of the logits) per sample, int64 (n_samples,)."""
        return np.argmax(self.logits(theta, X), axis=1)

    def accuracy(self, theta, X, Y) -> float:
        """Percentage of samples classified correctly (Y: labels or one-hot rows)."""
        theta = self._theta(theta)
        x = self.prepare_inputs(X)
        targets = self.prepare_targets(Y, x.shape[1])
        Wc, bc = self.layout.classifier_view(theta)
        pred = np.argmax(Wc @ self._forward(theta, x)[-1] + bc[:, None], axis=0)
        return 100.0 * float(np.mean(pred == np.argmax(targets, axis=0)))


class Objective:
    """Objective of a fixed data set for the optimisers: ``fun(theta)``, ``grad(theta)``.

    Inputs are validated and converted to the state layout once.  ``fun`` keeps the forward
    states of its last point, so ``grad`` at that same point (what a line search does after
    accepting a step) costs only the backward pass.  Counts forward and backward passes.
    """

    def __init__(self, net: ResNet, X, Y, regularize: bool = True) -> None:
        self.net = net
        self.x = net.prepare_inputs(X)
        self.targets = net.prepare_targets(Y, self.x.shape[1])
        self.regularize = regularize
        self.n_forward = 0
        self.n_backward = 0
        self._theta: Optional[np.ndarray] = None
        self._states: Optional[np.ndarray] = None
        self._loss = 0.0

    def _ensure(self, theta) -> np.ndarray:
        theta = self.net._theta(theta)
        if self._theta is None or not np.array_equal(theta, self._theta):
            self._states = self.net._forward(theta, self.x)
            L = self.net.layout
            self._loss, _, _ = self.net.classifier_loss(theta[L.classifier_slice], self._states[-1],
                                                        self.targets)
            self._theta = theta.copy()
            self.n_forward += 1
        return theta

    def loss(self, theta) -> float:
        """Data loss only."""
        self._ensure(theta)
        return self._loss

    def fun(self, theta) -> float:
        """Objective value (loss + regularisation when enabled)."""
        theta = self._ensure(theta)
        return self._loss + (self.net.regularizer(theta)[0] if self.regularize else 0.0)

    def grad(self, theta) -> np.ndarray:
        return self.fun_and_grad(theta)[1]

    def fun_and_grad(self, theta) -> Tuple[float, np.ndarray]:
        theta = self._ensure(theta)
        loss, g = self.net._data_gradient(theta, self.x, self.targets, self._states)
        self.n_backward += 1
        if self.regularize:
            r, gr = self.net.regularizer(theta)
            loss += r
            g += gr
        return loss, g
