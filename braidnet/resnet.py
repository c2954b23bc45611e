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

**Convolutional networks** (``kind="conv"``, issue 15, docs/design.md section 3): the same network
with convolutional residual layers ``u_{n+1} = u_n + h sigma(K_n * u_n + b_n)`` (``braidnet._convkernels``):
the state of a sample is ``width`` channels of an ``image_shape`` = (H, W) image, K_n
(width, width, k, k) with odd k (``kernel_size``), "same" zero padding, stride 1; b_n one bias per
channel or one per layer (``bias``).  A state block is the ``(width, H, W, batch)`` block of the
conv kernels, i.e. a ``(state_size, batch)`` block with ``state_size = width * H * W``, so
everything downstream of the layers (MGRIT vectors, warm states, checkpoints) sees a wider dense
state.  Inputs X are still ``(n_samples, n_features)`` rows: each row one image flattened
channel-major, ``n_features = c_in * H * W`` (images ``(n, H, W)`` are passed as
``X.reshape(n, H * W)``).  Openings: ``"replicate"`` (the image in every channel, c_in = 1),
``"mnist"`` (LPT's ``tanh(6 x / 255 - 3) + 1``, replicated, c_in = 1), ``"conv"`` (learned
``sigma(K_o * x + b_o)``, K_o (width, c_in, k, k)).  Classifier (``classifier``): ``"dense"`` on the
flattened last state (LPT) or ``"pool"`` on its per-channel average (global average pooling),
``z = W_c pool(u_N) + b_c``.  Convolutional networks are float64 only.  What differs per kind is
held by one object, :attr:`ResNet.layer` (:class:`DenseLayers` / :class:`ConvLayers`): the serial
kernels and the geometry the layer-parallel app takes (``conv_geometry``); the opening and the
classifier are chosen by name in :meth:`ResNet.opening_forward`, :meth:`ResNet.opening_gradient`,
:meth:`ResNet.classifier_features` and :meth:`ResNet.classifier_lift`.

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

from braidnet import _convkernels, _kernels

log = logging.getLogger(__name__)

ACTIVATIONS = ("tanh", "relu", "smoothrelu")
DTYPES = ("float64", "float32")
KINDS = ("dense", "conv")
#: openings of each layer kind
OPENINGS_OF = {"dense": ("pad", "dense"), "conv": ("replicate", "mnist", "conv")}
OPENINGS = OPENINGS_OF["dense"] + OPENINGS_OF["conv"]
#: openings without parameters
FIXED_OPENINGS = ("pad", "replicate", "mnist")
CLASSIFIERS = ("dense", "pool")
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
    kind: str = "dense"
    kernel_size: int = 3
    image_shape: Tuple[int, ...] = ()
    classifier: str = "dense"

    def __post_init__(self) -> None:
        for name in ("n_features", "width", "n_layers", "n_classes"):
            _positive_int(getattr(self, name), name)
        _choice(self.kind, "kind", KINDS)
        _choice(self.opening, "opening", OPENINGS)
        _choice(self.bias, "bias", BIASES)
        _choice(self.classifier, "classifier", CLASSIFIERS)
        if self.n_classes < 2:
            raise ValueError(f"n_classes must be >= 2, got n_classes={self.n_classes}")
        if self.opening not in OPENINGS_OF[self.kind]:
            raise ValueError(f"opening={self.opening!r} is not an opening of kind={self.kind!r} "
                             f"networks; use one of {OPENINGS_OF[self.kind]}")
        if self.kind == "dense":
            if self.classifier != "dense":
                raise ValueError(f"classifier={self.classifier!r} needs kind='conv' (dense networks "
                                 "have the dense classifier)")
            if self.image_shape:
                raise ValueError(f"image_shape={self.image_shape!r} needs kind='conv'")
            if self.opening == "pad" and self.width < self.n_features:
                raise ValueError(f"width={self.width} < n_features={self.n_features}: the zero-padding "
                                 "opening needs width >= n_features (use opening='dense')")
            return
        shape = tuple(self.image_shape)
        if len(shape) != 2 or any(isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer))
                                  or v < 1 for v in shape):
            raise ValueError(f"image_shape must be (H, W) with H, W >= 1, got image_shape={self.image_shape!r}")
        object.__setattr__(self, "image_shape", (int(shape[0]), int(shape[1])))
        k = self.kernel_size
        if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)) or k < 1 or k % 2 == 0:
            raise ValueError(f"kernel_size must be an odd integer >= 1, got kernel_size={k!r}")
        pixels = shape[0] * shape[1]
        if self.n_features % pixels:
            raise ValueError(f"n_features={self.n_features} is not a whole number of {shape[0]} x {shape[1]} "
                             f"images (c_in * H * W)")
        if self.opening in ("replicate", "mnist") and self.c_in != 1:
            raise ValueError(f"opening={self.opening!r} replicates one image channel, but the inputs have "
                             f"c_in={self.c_in} channels (use opening='conv')")

    # sizes -------------------------------------------------------------------------------------
    @property
    def nb(self) -> int:
        """Bias entries per hidden layer: width (per channel) or 1 (scalar)."""
        return self.width if self.bias == "channel" else 1

    @property
    def c_in(self) -> int:
        """Input channels of a convolutional network (n_features / (H W)); n_features when dense."""
        return self.n_features // (self.image_shape[0] * self.image_shape[1]) if self.kind == "conv" \
            else self.n_features

    @property
    def state_size(self) -> int:
        """Values of one sample's state: width (dense) or width * H * W (conv)."""
        if self.kind == "conv":
            return self.width * self.image_shape[0] * self.image_shape[1]
        return self.width

    @property
    def opening_shape(self) -> Tuple[int, ...]:
        """Shape of the opening's weights: (width, n_features) dense, (width, c_in, k, k) conv,
        (0, n_features) without parameters."""
        if self.opening in FIXED_OPENINGS:
            return (0, self.n_features)
        if self.opening == "conv":
            return (self.width, self.c_in, self.kernel_size, self.kernel_size)
        return (self.width, self.n_features)

    @property
    def layer_shape(self) -> Tuple[int, ...]:
        """Shape of a residual layer's weights: (width, width) or (width, width, k, k)."""
        if self.kind == "conv":
            return (self.width, self.width, self.kernel_size, self.kernel_size)
        return (self.width, self.width)

    @property
    def classifier_inputs(self) -> int:
        """Features the classifier reads per sample: the state (dense) or one per channel (pool)."""
        return self.width if self.classifier == "pool" else self.state_size

    @property
    def opening_size(self) -> int:
        return 0 if self.opening in FIXED_OPENINGS else int(np.prod(self.opening_shape)) + self.nb

    @property
    def layer_size(self) -> int:
        """Entries of one residual layer's block: W_n then b_n."""
        return int(np.prod(self.layer_shape)) + self.nb

    @property
    def classifier_size(self) -> int:
        return self.n_classes * self.classifier_inputs + self.n_classes

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
        """(W_o (:attr:`opening_shape`), b_o (nb,)) views; both empty without parameters."""
        self._check(theta)
        if self.opening in FIXED_OPENINGS:
            return theta[0:0].reshape(0, self.n_features), theta[0:0]
        nw = int(np.prod(self.opening_shape))
        return theta[:nw].reshape(self.opening_shape), theta[nw:self.opening_size]

    def layer_view(self, theta: np.ndarray, n: int) -> Tuple[np.ndarray, np.ndarray]:
        """(W_n (:attr:`layer_shape`), b_n (nb,)) views of residual layer n."""
        self._check(theta)
        blk = theta[self.layer_slice(n)]
        ww = self.layer_size - self.nb
        return blk[:ww].reshape(self.layer_shape), blk[ww:]

    def layers_view(self, theta: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """``(W, b)``: strided views of all residual layers, W ``(N, *layer_shape)``, b ``(N, nb)``."""
        self._check(theta)
        blk = theta[self.layers_slice()].reshape(self.n_layers, self.layer_size)
        ww = self.layer_size - self.nb
        return blk[:, :ww].reshape((self.n_layers,) + self.layer_shape), blk[:, ww:]

    def classifier_view(self, theta: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """(W_c (n_classes, classifier_inputs), b_c (n_classes,)) views."""
        self._check(theta)
        blk = theta[self.classifier_slice]
        nw = self.n_classes * self.classifier_inputs
        return blk[:nw].reshape(self.n_classes, self.classifier_inputs), blk[nw:]


class DenseLayers:
    """The dense residual layer kind: ``u <- u + h sigma(W u + b)`` (``braidnet._kernels``).

    One of the two layer-kind objects (:attr:`ResNet.layer`): what the serial network runs for all
    residual layers at once, and the geometry the layer-parallel app takes
    (``conv_geometry`` None: dense).
    """

    kind = "dense"
    conv_geometry: Optional[Tuple[int, int, int, int]] = None

    def __init__(self, layout: ParamLayout, act: int, h: float) -> None:
        self.layout, self.act, self.h = layout, act, h
        # sigma' of the last forward, with the states and parameters it belongs to: the backward
        # of those skips one GEMM per layer (where the kernels say it pays: _kernels.keeps_derivs)
        self._derivs: Optional[Tuple[np.ndarray, np.ndarray, np.ndarray]] = None

    def forward(self, theta_layers: np.ndarray, states: np.ndarray) -> None:
        """states[0] = u_0 on entry; states[n] = u_n on exit (theta_layers in the states' dtype)."""
        L = self.layout
        self._derivs = None
        derivs = None
        if _kernels.keeps_derivs(L.width, states.dtype):
            shape, dt = _kernels.deriv_block(self.act, L.width, states.shape[2], states.dtype)
            derivs = np.empty((L.n_layers,) + shape, dtype=dt)
        _kernels.net_forward(theta_layers, L.width, L.nb, L.n_layers, self.h, self.act, states,
                             derivs=derivs)
        if derivs is not None:
            self._derivs = (states, theta_layers.copy(), derivs)

    def backward(self, theta_layers: np.ndarray, states: np.ndarray, lam: np.ndarray,
                 g: np.ndarray) -> None:
        """lam: lambda_N on entry, lambda_0 on exit; g (the layers' block layout) accumulated.
        Bit for bit the same whether or not the last forward's sigma' is reused."""
        L = self.layout
        kept, derivs = self._derivs, None
        if kept is not None and kept[0] is states and np.array_equal(kept[1], theta_layers):
            derivs = kept[2]
        _kernels.net_backward(theta_layers, L.width, L.nb, L.n_layers, self.h, self.act, states, lam, g,
                              derivs=derivs)


class ConvLayers(DenseLayers):
    """The convolutional residual layer kind: ``u <- u + h sigma(K * u + b)``
    (``braidnet._convkernels``, float64); ``conv_geometry = (width, kernel_size, H, W)``."""

    kind = "conv"

    def __init__(self, layout: ParamLayout, act: int, h: float) -> None:
        super().__init__(layout, act, h)
        H, W = layout.image_shape
        self.conv_geometry = (layout.width, layout.kernel_size, H, W)

    def _blocks(self, theta_layers: np.ndarray):
        L = self.layout
        blk = theta_layers.reshape(L.n_layers, L.layer_size)
        nw = L.layer_size - L.nb
        return [(blk[n, :nw].reshape(L.layer_shape), blk[n, nw:]) for n in range(L.n_layers)]

    def _image(self, u: np.ndarray) -> np.ndarray:
        c, k, H, W = self.conv_geometry
        return u.reshape(c, H, W, -1)

    def forward(self, theta_layers: np.ndarray, states: np.ndarray) -> None:
        c, k, H, W = self.conv_geometry
        work = np.empty(_convkernels.conv_work_size(c, c, k, H, W, states.shape[-1]))
        for n, (K, b) in enumerate(self._blocks(theta_layers)):
            _convkernels.conv_forward(K, b, self._image(states[n]), self.h, self.act,
                                      u_out=self._image(states[n + 1]), work=work)

    def backward(self, theta_layers: np.ndarray, states: np.ndarray, lam: np.ndarray,
                 g: np.ndarray) -> None:
        L = self.layout
        c, k, H, W = self.conv_geometry
        work = np.empty(_convkernels.conv_work_size(c, c, k, H, W, states.shape[-1]))
        gblk = g.reshape(L.n_layers, L.layer_size)
        nw = L.layer_size - L.nb
        lam4 = self._image(lam)
        for n, (K, b) in reversed(list(enumerate(self._blocks(theta_layers)))):
            gK = gblk[n, :nw].reshape(L.layer_shape)
            _convkernels.conv_backward(K, b, self._image(states[n]), lam4, self.h, self.act, gK,
                                       gblk[n, nw:], lam_out=lam4, work=work)


class ResNet:
    """ResNet of docs/design.md section 3 with layer-serial exact forward and backward.

    Args:
        n_features: input dimension (2 for peaks).
        n_classes: number of classes.
        width: channels of the residual layers.
        n_layers: residual layers N.
        T: final time; h = T / N.
        activation: ``"tanh"``, ``"relu"`` or ``"smoothrelu"``.
        opening: dense networks ``"pad"`` (zero-padding, no parameters; the default) or ``"dense"``;
            convolutional ones ``"replicate"`` (the default), ``"mnist"`` or ``"conv"``.
        bias: ``"channel"`` (one per channel) or ``"scalar"`` (one per layer).
        gamma_tik, gamma_ddt, gamma_class: regularisation weights (module docstring).
        dtype: ``"float64"`` (default) or ``"float32"``: the precision of the states and kernels
            (module docstring); parameters and gradients stay float64.  Dense networks only.
        kind: ``"dense"`` (default) or ``"conv"``: the residual layer kind (module docstring);
            ``width`` is then the number of channels.
        kernel_size, image_shape, classifier: of convolutional networks: odd k (default 3), (H, W)
            with n_features = c_in H W, and ``"dense"`` (default) or ``"pool"``.
    """

    def __init__(self, n_features: int, n_classes: int, width: int, n_layers: int, T: float = 5.0,
                 activation: str = "smoothrelu", opening: Optional[str] = None, bias: str = "channel",
                 gamma_tik: float = 0.0, gamma_ddt: float = 0.0, gamma_class: float = 0.0,
                 dtype: str = "float64", kind: str = "dense", kernel_size: int = 3,
                 image_shape: Optional[Tuple[int, int]] = None, classifier: str = "dense") -> None:
        _choice(kind, "kind", KINDS)
        if opening is None:
            opening = "pad" if kind == "dense" else "replicate"
        self.layout = ParamLayout(n_features, width, n_layers, n_classes, opening, bias, kind, kernel_size,
                                  tuple(image_shape) if image_shape is not None else (), classifier)
        if isinstance(dtype, np.dtype) or (isinstance(dtype, type) and issubclass(dtype, np.generic)):
            dtype = np.dtype(dtype).name      # numpy.float32 / np.dtype("float32") as the name
        #: the precision of states and kernels: numpy.float64 or numpy.float32
        self.dtype = np.dtype(_choice(dtype, "dtype", DTYPES))
        if kind == "conv" and self.dtype != np.float64:
            raise ValueError(f"dtype={self.dtype.name!r} is for dense networks only: convolutional networks "
                             "(kind='conv') are float64")
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
        #: the residual layer kind (DenseLayers | ConvLayers): serial kernels, app geometry
        self.layer = (ConvLayers if kind == "conv" else DenseLayers)(self.layout, self._act, self.h)

    def __repr__(self) -> str:
        L = self.layout
        conv = (f", kind='conv', kernel_size={L.kernel_size}, image_shape={L.image_shape}, "
                f"classifier={L.classifier!r}") if L.kind == "conv" else ""
        return (f"ResNet(n_features={L.n_features}, n_classes={L.n_classes}, width={L.width}, "
                f"n_layers={L.n_layers}, T={self.T}, activation={self.activation!r}, "
                f"opening={L.opening!r}, bias={L.bias!r}, gamma_tik={self.gamma_tik}, "
                f"gamma_ddt={self.gamma_ddt}, gamma_class={self.gamma_class}"
                + (f", dtype={self.dtype.name!r}" if self.dtype != np.float64 else "") + conv + ")")

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

    @property
    def state_size(self) -> int:
        """Rows of a state block (values of one sample's state): width, or width * H * W (conv)."""
        return self.layout.state_size

    @property
    def conv_geometry(self) -> Optional[Tuple[int, int, int, int]]:
        """(channels, kernel_size, H, W) of a convolutional network, None for a dense one: the
        ``conv`` argument of :class:`braidnet._layerapp.LayerApp`."""
        return self.layer.conv_geometry

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
        """u_0 (state_size, batch) from inputs x (n_features, batch, the network's dtype);
        theta_open = theta[opening_slice]."""
        L = self.layout
        if L.opening == "pad":
            u0 = np.zeros((L.width, x.shape[1]), self.dtype)
            u0[:L.n_features] = x
            return u0
        if L.opening in ("replicate", "mnist"):
            img = np.ascontiguousarray(x).reshape(L.image_shape + (x.shape[1],))
            fill = _convkernels.opening_replicate if L.opening == "replicate" else _convkernels.opening_mnist
            return fill(img, L.width).reshape(L.state_size, x.shape[1])
        W, b = self._open_views(theta_open)
        if L.opening == "conv":
            return _convkernels.conv_opening_forward(W, b, self._images(x, L.c_in), self._act
                                                     ).reshape(L.state_size, x.shape[1])
        return _kernels.opening_forward(W, b, x, self._act)

    def opening_gradient(self, theta_open: np.ndarray, x: np.ndarray, lam0: np.ndarray) -> np.ndarray:
        """Data gradient of the opening's parameters given lam0 = dJ/du_0 (empty without parameters)."""
        L = self.layout
        g = np.zeros(L.opening_size, self.dtype)
        if L.opening_size:
            W, b = self._open_views(theta_open)
            nw = W.size
            lam0 = np.ascontiguousarray(lam0, self.dtype)
            if L.opening == "conv":
                _convkernels.conv_opening_gradient(W, b, self._images(x, L.c_in), self._images(lam0, L.width),
                                                   self._act, g[:nw].reshape(W.shape), g[nw:])
            else:
                _kernels.opening_gradient(W, b, x, lam0, self._act, g[:nw].reshape(W.shape), g[nw:])
        return g.astype(np.float64, copy=False)

    def _images(self, a: np.ndarray, channels: int) -> np.ndarray:
        """A (channels * H * W, batch) block as the (channels, H, W, batch) block it is."""
        return np.ascontiguousarray(a).reshape((channels,) + self.layout.image_shape + (a.shape[-1],))

    def _open_views(self, theta_open: np.ndarray):
        L = self.layout
        theta_open = np.ascontiguousarray(theta_open, dtype=self.dtype)   # float32: rounded once
        if theta_open.shape != (L.opening_size,):
            raise ValueError(f"theta_open must have shape ({L.opening_size},), got {theta_open.shape}")
        nw = int(np.prod(L.opening_shape))
        return theta_open[:nw].reshape(L.opening_shape), theta_open[nw:]

    def layers_forward(self, theta_layers: np.ndarray, u0: np.ndarray) -> np.ndarray:
        """All states (N+1, width, batch, the network's dtype) from u_0;
        theta_layers = theta[layers_slice()]."""
        L = self.layout
        states = np.empty((L.n_layers + 1,) + u0.shape, self.dtype)
        states[0] = u0
        self.layer.forward(np.ascontiguousarray(theta_layers, dtype=self.dtype), states)
        return states

    def layers_backward(self, theta_layers: np.ndarray, states: np.ndarray,
                        lamN: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """(data gradient of the residual layers (float64), lambda_0) from lambda_N = dJ/du_N."""
        lam = np.array(lamN, dtype=self.dtype, order="C")
        g = np.zeros(theta_layers.shape[0], self.dtype)
        self.layer.backward(np.ascontiguousarray(theta_layers, dtype=self.dtype), states, lam, g)
        return g.astype(np.float64, copy=False), lam

    def classifier_loss(self, theta_cls: np.ndarray, uN: np.ndarray,
                        targets: np.ndarray) -> Tuple[float, np.ndarray, np.ndarray]:
        """(loss, data gradient of the classifier's parameters, lambda_N = dJ/du_N), all float64.

        uN is (width, batch) (float32 is widened: the classifier runs in float64), targets the
        (n_classes, batch) one-hot block of :meth:`prepare_targets`; the loss is the batch mean of
        the softmax cross-entropy.
        """
        L = self.layout
        uN = self.classifier_features(np.asarray(uN, dtype=np.float64))
        nw = L.n_classes * L.classifier_inputs
        Wc = theta_cls[:nw].reshape(L.n_classes, L.classifier_inputs)
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
        return loss, g, self.classifier_lift(Wc.T @ G)

    def classifier_features(self, uN: np.ndarray) -> np.ndarray:
        """What the classifier reads from u_N (state_size, batch): u_N itself (dense classifier) or
        its per-channel averages (width, batch) (``classifier="pool"``)."""
        L = self.layout
        if L.classifier == "pool":
            return _convkernels.pool(self._images(np.asarray(uN, dtype=np.float64), L.width))
        return uN

    def classifier_lift(self, v: np.ndarray) -> np.ndarray:
        """The transpose of :meth:`classifier_features`: dJ/du_N from dJ/d(features)."""
        L = self.layout
        if L.classifier == "pool":
            H, W = L.image_shape
            return _convkernels.pool_transpose(np.ascontiguousarray(v), H, W).reshape(L.state_size, -1)
        return v

    def classifier_logits(self, theta_cls: np.ndarray, uN: np.ndarray) -> np.ndarray:
        """z = W_c features(u_N) + b_c, (n_classes, batch)."""
        L = self.layout
        nw = L.n_classes * L.classifier_inputs
        return theta_cls[:nw].reshape(L.n_classes, L.classifier_inputs) @ self.classifier_features(uN) \
            + theta_cls[nw:, None]

    def logits(self, theta: np.ndarray, X) -> np.ndarray:
        """Classifier outputs z (n_samples, n_classes)."""
        theta = self._theta(theta)
        uN = self._forward(theta, self.prepare_inputs(X))[-1]
        return self.classifier_logits(theta[self.layout.classifier_slice], uN).T

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
                           next_layer: Optional[np.ndarray] = None, gradient: bool = True,
                           out: Optional[np.ndarray] = None) -> Tuple[float, Optional[np.ndarray]]:
        """Share of the residual layers [a, b) in R, and the gradient of R w.r.t. those layers.

        Args:
            theta_ab: the contiguous parameters of layers a .. b-1 (``theta[layers_slice(a, b)]``).
            prev_layer: parameters of layer a-1 (needed when a > 0 and gamma_ddt > 0).
            next_layer: parameters of layer b (needed when b < N and gamma_ddt > 0).

        The value holds the Tikhonov terms of layers [a, b) and the time-derivative pairs
        (n, n+1), n in [a, b), n+1 < N; summing it over ranges that partition [0, N) gives the
        total.  The gradient is the full gradient of R for layers [a, b): written into ``out``
        when given; ``gradient=False`` skips it (None), which saves several parameter-sized
        temporaries.
        """
        L = self.layout
        N, ls, h = L.n_layers, L.layer_size, self.h
        b = N if b is None else b
        if not 0 <= a < b <= N:
            raise ValueError(f"layer range must satisfy 0 <= a < b <= {N}, got [{a}, {b})")
        theta_ab = np.asarray(theta_ab, dtype=np.float64)
        if theta_ab.shape != ((b - a) * ls,):
            raise ValueError(f"theta_ab must have shape ({(b - a) * ls},), got {theta_ab.shape}")
        if self.gamma_tik != 0.0:
            val = 0.5 * self.gamma_tik * h * float(np.dot(theta_ab, theta_ab))
            grad = np.multiply(self.gamma_tik * h, theta_ab, out=out) if gradient else None
        else:       # no passes over the parameters for a zero weight (a wide net's are 10s of MB)
            val, grad = 0.0, None
            if gradient:
                grad = np.zeros_like(theta_ab) if out is None else out
                grad[...] = 0.0
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
        if not gradient:
            return val, None
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
        pred = np.argmax(self.classifier_logits(theta[self.layout.classifier_slice],
                                                self._forward(theta, x)[-1]), axis=0)
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
