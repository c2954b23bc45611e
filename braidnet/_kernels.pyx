# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Per-layer ResNet kernels: forward step, adjoint (vector-Jacobian product), parameter gradient.

The C-level functions (declared in ``_kernels.pxd``) run without the GIL over contiguous float64
buffers.  Two paths:

- width <= 32 (``FUSED_MAX_WIDTH``): fused C kernels sweep the batch in column tiles that stay in L1
  (all ``width`` rows, 64-256 columns): ``W u + b`` with register blocking, the activation and the
  residual update in one pass; backward likewise computes ``D = sigma'(W u + b) * lam``, the
  ``D u^T`` / bias sums and ``lam + h W^T D`` tile by tile.  No BLAS call, no ``work`` traffic.
- wider layers call BLAS (``scipy.linalg.cython_blas.dgemm``) plus one element-wise pass.  A
  row-major matrix is a column-major matrix of its transpose, so row-major ``C = A B`` is computed
  as column-major ``C^T = B^T A^T`` without copies.

The fused kernels, the element-wise passes of the BLAS path and tanh are plain C in
``braidnet/kernels/bn_kernels.c`` (contracts in ``bn_kernels.h``), compiled into this extension by
setup.py and tested on their own, without Python or BLAS, by ``braidnet/kernels/test_kernels.c``
(``scripts/check_kernels.sh``, under AddressSanitizer/UBSan).  This module keeps the BLAS path, the
per-layer and whole-net entry points of ``_kernels.pxd`` and the Python wrappers.

tanh is the kernels' own vectorised one (``tanh`` below; within 2.5 ulp of the exact value, about
10x faster than libm's scalar tanh); the derivative is ``1 - t^2`` of that same ``t``.  On x86-64
Linux with GCC every C entry point has an AVX2/FMA clone chosen at load time by CPU features.
Results differ from a BLAS-plus-numpy evaluation only by rounding (summation order, FMA contraction).

State layout: one C-contiguous ``(width, batch)`` block per layer (see ``braidnet.resnet``).

The ``def`` functions below are thin wrappers for Python and tests: they check dtype, contiguity
and shapes, then release the GIL.  The bias type is read from ``b``'s length (width or 1).
"""
from libc.string cimport memcpy, memset
from scipy.linalg.cython_blas cimport dgemm

import numpy as np

TANH = BN_TANH
RELU = BN_RELU
SMOOTHRELU = BN_SMOOTHRELU
BIAS_CHANNEL = BN_BIAS_CHANNEL
BIAS_SCALAR = BN_BIAS_SCALAR
ACTIVATIONS = {"tanh": BN_TANH, "relu": BN_RELU, "smoothrelu": BN_SMOOTHRELU}

# The SIMD C kernels (fused small-width path, element-wise passes, vectorised tanh) live in
# braidnet/kernels/bn_kernels.c, compiled into this extension (setup.py); their contracts are in
# bn_kernels.h and test_kernels.c checks them on their own (scripts/check_kernels.sh).
cdef extern from "bn_kernels.h":
    const double ETA "BN_ETA"
    const int FUSED_MAX "BN_FUSED_MAX"
    void bn_c_update(int act, int width, int batch, int scalar, double h, const double* b,
                     const double* z, const double* u_in, double* u_out) noexcept nogil
    void bn_c_deriv(int act, int width, int batch, int scalar, const double* b, double* z,
                    const double* lam) noexcept nogil
    void bn_c_tanh(int n, const double* x, double* y) noexcept nogil
    void bn_fused_forward(int act, int width, int batch, int scalar, double h, const double* W,
                          const double* b, const double* u_in, double* u_out) noexcept nogil
    void bn_fused_backward(int act, int width, int batch, int scalar, double h, const double* W,
                           const double* b, const double* u, const double* lam_in,
                           double* lam_out, double* gW, double* gb) noexcept nogil


FUSED_MAX_WIDTH = FUSED_MAX   # widest layer computed by the fused (non-BLAS) kernels


# ---------------------------------------------------------------------------------------------
# BLAS helpers (row-major in, column-major BLAS underneath)

cdef inline void _gemm_wu(int m, int n, int k, const double* A, const double* B,
                          double beta, double* C) noexcept nogil:
    """Row-major C (m x n) = A (m x k) @ B (k x n) + beta C."""
    cdef double one = 1.0
    # column-major: C^T (n x m) = B^T (n x k) A^T (k x m)
    dgemm(b"N", b"N", &n, &m, &k, &one, <double*>B, &n, <double*>A, &k, &beta, C, &n)


cdef inline void _gemm_abt(int m, int n, int k, double alpha, const double* A, const double* B,
                           double* C) noexcept nogil:
    """Row-major C (m x n) += alpha * A (m x k) @ B^T, with B (n x k)."""
    cdef double one = 1.0
    # column-major: C^T (n x m) += alpha * B (n x k, stored as B^T with ld k, op T) A^T
    dgemm(b"T", b"N", &n, &m, &k, &alpha, <double*>B, &k, <double*>A, &k, &one, C, &n)


cdef inline void _gemm_atb(int m, int n, int k, double alpha, const double* A, const double* B,
                           double* C) noexcept nogil:
    """Row-major C (m x n) += alpha * A^T @ B, with A (k x m), B (k x n)."""
    cdef double one = 1.0
    # column-major: C^T (n x m) += alpha * B^T (n x k) A (k x m, stored as A^T with ld m, op T)
    dgemm(b"N", b"T", &n, &m, &k, &alpha, <double*>B, &n, <double*>A, &m, &one, C, &n)


# ---------------------------------------------------------------------------------------------
# Helpers.  The bias is added in the element-wise pass, not in the GEMM (one pass, not two).

cdef inline int _valid(int act, int bias) noexcept nogil:
    return 0 <= act <= 2 and 0 <= bias <= 1


cdef inline double _bias(int bias, const double* b, int c) noexcept nogil:
    return b[0] if bias == BN_BIAS_SCALAR else b[c]


cdef void _bias_grad(int bias, int width, int batch, double alpha, const double* D,
                     double* gb) noexcept nogil:
    """gb += alpha * row sums of D (channel) or alpha * sum of D (scalar)."""
    cdef Py_ssize_t c, j, off
    cdef double acc, tot = 0.0
    for c in range(width):
        acc = 0.0
        off = c * <Py_ssize_t>batch
        for j in range(off, off + batch):
            acc += D[j]
        if bias == BN_BIAS_SCALAR:
            tot += acc
        else:
            gb[c] += alpha * acc
    if bias == BN_BIAS_SCALAR:
        gb[0] += alpha * tot


# ---------------------------------------------------------------------------------------------
# C-level kernels (see _kernels.pxd for the contracts)

cdef int bn_layer_forward(int act, int bias, int width, int batch, double h,
                          const double* W, const double* b, const double* u_in,
                          double* u_out, double* work) noexcept nogil:
    if not _valid(act, bias):
        return -1
    if width <= FUSED_MAX:                                     # one pass over L1 column tiles
        bn_fused_forward(act, width, batch, bias, h, W, b, u_in, u_out)
        return 0
    _gemm_wu(width, batch, width, W, u_in, 0.0, work)          # work = W u_in
    bn_c_update(act, width, batch, bias, h, b, work, u_in, u_out)
    return 0


cdef int bn_layer_backward(int act, int bias, int width, int batch, double h,
                           const double* W, const double* b, const double* u,
                           const double* lam_in, double* lam_out,
                           double* gW, double* gb, double* work) noexcept nogil:
    if not _valid(act, bias):
        return -1
    if width <= FUSED_MAX:                                     # one pass over L1 column tiles
        bn_fused_backward(act, width, batch, bias, h, W, b, u, lam_in, lam_out, gW, gb)
        return 0
    _gemm_wu(width, batch, width, W, u, 0.0, work)             # work = W u
    bn_c_deriv(act, width, batch, bias, b, work, lam_in)       # work = D = sigma' * lam_in
    if gW != NULL:
        _gemm_abt(width, width, batch, h, work, u, gW)         # gW += h D u^T
    if gb != NULL:
        _bias_grad(bias, width, batch, h, work, gb)
    if lam_out != NULL:
        if lam_out != lam_in:
            memcpy(lam_out, lam_in, <size_t>width * batch * sizeof(double))
        _gemm_atb(width, batch, width, h, W, work, lam_out)    # lam_out += h W^T D
    return 0


cdef int bn_layer_adjoint(int act, int bias, int width, int batch, double h,
                          const double* W, const double* b, const double* u,
                          const double* lam_in, double* lam_out, double* work) noexcept nogil:
    return bn_layer_backward(act, bias, width, batch, h, W, b, u, lam_in, lam_out,
                             NULL, NULL, work)


cdef int bn_layer_gradient(int act, int bias, int width, int batch, double h,
                           const double* W, const double* b, const double* u,
                           const double* lam, double* gW, double* gb, double* work) noexcept nogil:
    return bn_layer_backward(act, bias, width, batch, h, W, b, u, lam, NULL, gW, gb, work)


cdef int bn_opening_forward(int act, int bias, int width, int nfeat, int batch,
                            const double* W, const double* b, const double* x,
                            double* u_out) noexcept nogil:
    if not _valid(act, bias):
        return -1
    _gemm_wu(width, batch, nfeat, W, x, 0.0, u_out)            # u_out = W x
    bn_c_update(act, width, batch, bias, 0.0, b, u_out, NULL, u_out)
    return 0


cdef int bn_opening_gradient(int act, int bias, int width, int nfeat, int batch,
                             const double* W, const double* b, const double* x,
                             const double* lam0, double* gW, double* gb,
                             double* work) noexcept nogil:
    if not _valid(act, bias):
        return -1
    _gemm_wu(width, batch, nfeat, W, x, 0.0, work)
    bn_c_deriv(act, width, batch, bias, b, work, lam0)
    _gemm_abt(width, nfeat, batch, 1.0, work, x, gW)           # gW += D x^T
    _bias_grad(bias, width, batch, 1.0, work, gb)
    return 0


cdef void bn_opening_pad(int nfeat, int width, int batch, const double* x,
                         double* u_out) noexcept nogil:
    cdef size_t n = <size_t>nfeat * batch
    memcpy(u_out, x, n * sizeof(double))
    memset(u_out + n, 0, (<size_t>width * batch - n) * sizeof(double))


cdef int bn_net_forward(int act, int bias, int width, int batch, double h, int n_layers,
                        const double* theta, Py_ssize_t stride, double* states,
                        double* work) noexcept nogil:
    cdef Py_ssize_t n, blk = <Py_ssize_t>width * batch
    cdef const double* W
    for n in range(n_layers):
        W = theta + n * stride
        if bn_layer_forward(act, bias, width, batch, h, W, W + width * width,
                            states + n * blk, states + (n + 1) * blk, work) != 0:
            return -1
    return 0


cdef int bn_net_backward(int act, int bias, int width, int batch, double h, int n_layers,
                         const double* theta, Py_ssize_t stride, const double* states,
                         double* lam, double* grad, double* work) noexcept nogil:
    cdef Py_ssize_t n, blk = <Py_ssize_t>width * batch
    cdef const double* W
    cdef double* g
    for n in range(n_layers - 1, -1, -1):
        W = theta + n * stride
        g = grad + n * stride
        if bn_layer_backward(act, bias, width, batch, h, W, W + width * width, states + n * blk,
                             lam, lam, g, g + width * width, work) != 0:
            return -1
    return 0


# ---------------------------------------------------------------------------------------------
# Python wrappers

def _f64c(a, str name, int ndim):
    """Return a as itself after checking it is a C-contiguous float64 array of ndim dimensions."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(a).__name__}")
    if a.dtype != np.float64:
        raise ValueError(f"{name} must have dtype float64, got {a.dtype}")
    if a.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {a.shape}")
    if not a.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous")
    return a


def _writable(a, str name):
    if not a.flags.writeable:
        raise ValueError(f"{name} must be writeable")
    return a


def _act_code(activation):
    if isinstance(activation, str):
        try:
            return ACTIVATIONS[activation]
        except KeyError:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, "
                             f"got {activation!r}") from None
    if activation not in (BN_TANH, BN_RELU, BN_SMOOTHRELU):
        raise ValueError(f"activation code must be 0, 1 or 2, got {activation!r}")
    return int(activation)


def _bias_code(b, int width):
    _f64c(b, "b", 1)
    if b.shape[0] == width:
        return BN_BIAS_CHANNEL
    if b.shape[0] == 1:
        return BN_BIAS_SCALAR
    raise ValueError(f"b must have {width} (per channel) or 1 (scalar) entries, got {b.shape[0]}")


def _check_layer(W, b, u, str uname):
    _f64c(W, "W", 2)
    _f64c(u, uname, 2)
    width = W.shape[0]
    if W.shape[1] != width:
        raise ValueError(f"W must be square, got shape {W.shape}")
    if u.shape[0] != width:
        raise ValueError(f"{uname} must have shape (width={width}, batch), got {u.shape}")
    return width, u.shape[1], _bias_code(b, width)


def _same_shape(a, str name, shape):
    _f64c(a, name, 2)
    if a.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {a.shape}")
    return a


def _work(work, Py_ssize_t n):
    if work is None:
        return np.empty(n)
    _f64c(work, "work", 1)
    if work.shape[0] < n:
        raise ValueError(f"work must hold at least {n} doubles, got {work.shape[0]}")
    return _writable(work, "work")


def layer_forward(W, b, u_in, double h, activation, u_out=None, work=None):
    """Residual step ``u_out = u_in + h * sigma(W @ u_in + b)`` on a (width, batch) block.

    ``u_out=None`` allocates the result; ``u_out is u_in`` updates in place.  Returns u_out.
    """
    width, batch, bias = _check_layer(W, b, u_in, "u_in")
    cdef int act = _act_code(activation)
    if u_out is None:
        u_out = np.empty_like(u_in)
    _writable(_same_shape(u_out, "u_out", u_in.shape), "u_out")
    work = _work(work, width * batch)
    cdef const double[:, ::1] Wv = W
    cdef const double[::1] bv = b
    cdef const double[:, ::1] uv = u_in
    cdef double[:, ::1] ov = u_out
    cdef double[::1] wv = work
    cdef int w = width, nb = batch, bt = bias
    if w * nb > 0:
        with nogil:
            bn_layer_forward(act, bt, w, nb, h, &Wv[0, 0], &bv[0], &uv[0, 0], &ov[0, 0], &wv[0])
    return u_out


def layer_backward(W, b, u, lam_in, double h, activation, lam_out=None, gW=None, gb=None,
                   work=None):
    """Adjoint and parameter gradient of one residual step at primal input ``u``.

    Computes ``lam_out = lam_in + h W^T (sigma'(W u + b) * lam_in)`` (``lam_out=None`` allocates,
    ``lam_out is lam_in`` works in place) and, when given, ACCUMULATES
    ``gW += h D u^T`` and ``gb += h * (row sums | total sum) of D`` with D = sigma'(W u + b) * lam_in.
    Returns lam_out.
    """
    width, batch, bias = _check_layer(W, b, u, "u")
    cdef int act = _act_code(activation)
    _same_shape(lam_in, "lam_in", u.shape)
    if lam_out is None:
        lam_out = np.empty_like(u)
    _writable(_same_shape(lam_out, "lam_out", u.shape), "lam_out")
    if lam_out is u or lam_in is u:
        raise ValueError("lam_in / lam_out must not alias u")
    if (gW is None) != (gb is None):
        raise ValueError("give both gW and gb, or neither")
    work = _work(work, width * batch)
    cdef const double[:, ::1] Wv = W
    cdef const double[::1] bv = b
    cdef const double[:, ::1] uv = u
    cdef const double[:, ::1] lv = lam_in
    cdef double[:, ::1] ov = lam_out
    cdef double[::1] wv = work
    cdef double[:, ::1] gWv
    cdef double[::1] gbv
    cdef double* pgW = NULL
    cdef double* pgb = NULL
    if gW is not None:
        _writable(_same_shape(gW, "gW", W.shape), "gW")
        _writable(_f64c(gb, "gb", 1), "gb")
        if gb.shape != b.shape:
            raise ValueError(f"gb must have shape {b.shape}, got {gb.shape}")
        gWv = gW
        gbv = gb
        pgW = &gWv[0, 0]
        pgb = &gbv[0]
    cdef int w = width, nb = batch, bt = bias
    if w * nb > 0:
        with nogil:
            bn_layer_backward(act, bt, w, nb, h, &Wv[0, 0], &bv[0], &uv[0, 0], &lv[0, 0],
                              &ov[0, 0], pgW, pgb, &wv[0])
    return lam_out


def _opening_args(W, b, x):
    """Check a dense opening's W (width, nfeat), b and x (nfeat, batch); (width, nfeat, bias code)."""
    _f64c(W, "W", 2)
    _f64c(x, "x", 2)
    width, nfeat = W.shape
    if x.shape[0] != nfeat:
        raise ValueError(f"x must have shape (n_features={nfeat}, batch), got {x.shape}")
    return width, nfeat, _bias_code(b, width)


def opening_forward(W, b, x, activation, u_out=None):
    """Dense opening ``u_out = sigma(W @ x + b)``, W (width, nfeat), x (nfeat, batch)."""
    width, nfeat, bias = _opening_args(W, b, x)
    cdef int act = _act_code(activation)
    if u_out is None:
        u_out = np.empty((width, x.shape[1]))
    _writable(_same_shape(u_out, "u_out", (width, x.shape[1])), "u_out")
    cdef const double[:, ::1] Wv = W
    cdef const double[::1] bv = b
    cdef const double[:, ::1] xv = x
    cdef double[:, ::1] ov = u_out
    cdef int w = width, nf = nfeat, nb = x.shape[1], bt = bias
    if w * nb * nf > 0:
        with nogil:
            bn_opening_forward(act, bt, w, nf, nb, &Wv[0, 0], &bv[0], &xv[0, 0], &ov[0, 0])
    return u_out


def opening_gradient(W, b, x, lam0, activation, gW, gb, work=None):
    """ACCUMULATE the dense opening's gradient: ``gW += D x^T``, ``gb += sums of D``,
    with D = sigma'(W x + b) * lam0."""
    width, nfeat, bias = _opening_args(W, b, x)
    cdef int act = _act_code(activation)
    _same_shape(lam0, "lam0", (width, x.shape[1]))
    _writable(_same_shape(gW, "gW", W.shape), "gW")
    _writable(_f64c(gb, "gb", 1), "gb")
    if gb.shape != b.shape:
        raise ValueError(f"gb must have shape {b.shape}, got {gb.shape}")
    work = _work(work, width * x.shape[1])
    cdef const double[:, ::1] Wv = W
    cdef const double[::1] bv = b
    cdef const double[:, ::1] xv = x
    cdef const double[:, ::1] lv = lam0
    cdef double[:, ::1] gWv = gW
    cdef double[::1] gbv = gb
    cdef double[::1] wv = work
    cdef int w = width, nf = nfeat, nb = x.shape[1], bt = bias
    if w * nb * nf > 0:
        with nogil:
            bn_opening_gradient(act, bt, w, nf, nb, &Wv[0, 0], &bv[0], &xv[0, 0], &lv[0, 0],
                                &gWv[0, 0], &gbv[0], &wv[0])


def _check_net(theta_layers, int width, int nb_bias, int n_layers, states, str sname):
    _f64c(theta_layers, "theta_layers", 1)
    stride = width * width + nb_bias
    if nb_bias not in (1, width):
        raise ValueError(f"nb_bias must be 1 or width={width}, got {nb_bias}")
    if theta_layers.shape[0] != n_layers * stride:
        raise ValueError(f"theta_layers must hold n_layers*(width^2+nb_bias) = "
                         f"{n_layers * stride} entries, got {theta_layers.shape[0]}")
    _f64c(states, sname, 3)
    if states.shape[0] != n_layers + 1 or states.shape[1] != width:
        raise ValueError(f"{sname} must have shape (n_layers+1={n_layers + 1}, width={width}, "
                         f"batch), got {states.shape}")
    return stride, (BN_BIAS_SCALAR if nb_bias == 1 and width != 1 else BN_BIAS_CHANNEL)


def net_forward(theta_layers, int width, int nb_bias, int n_layers, double h, activation,
                states, work=None):
    """Step all residual layers: ``states[n+1] = states[n] + h sigma(W_n states[n] + b_n)``.

    ``theta_layers`` is the contiguous slice of the flat parameter vector holding the layers
    (each W_n row-major then b_n with nb_bias entries); ``states`` (n_layers+1, width, batch)
    holds u_0 in block 0 on entry and is filled in place.
    """
    stride, bias = _check_net(theta_layers, width, nb_bias, n_layers, states, "states")
    _writable(states, "states")
    cdef int act = _act_code(activation)
    work = _work(work, width * states.shape[2])
    cdef const double[::1] tv = theta_layers
    cdef double[:, :, ::1] sv = states
    cdef double[::1] wv = work
    cdef int w = width, nb = states.shape[2], bt = bias, nl = n_layers
    cdef Py_ssize_t st = stride
    if nl > 0 and w * nb > 0:
        with nogil:
            bn_net_forward(act, bt, w, nb, h, nl, &tv[0], st, &sv[0, 0, 0], &wv[0])
    return states


def net_backward(theta_layers, int width, int nb_bias, int n_layers, double h, activation,
                 states, lam, grad_layers, work=None):
    """Backward over all residual layers: lam (width, batch) holds lambda_N on entry and
    lambda_0 on exit; grad_layers (same layout as theta_layers) is ACCUMULATED."""
    stride, bias = _check_net(theta_layers, width, nb_bias, n_layers, states, "states")
    cdef int act = _act_code(activation)
    _writable(_same_shape(lam, "lam", (width, states.shape[2])), "lam")
    _writable(_f64c(grad_layers, "grad_layers", 1), "grad_layers")
    if grad_layers.shape != theta_layers.shape:
        raise ValueError(f"grad_layers must have shape {theta_layers.shape}, "
                         f"got {grad_layers.shape}")
    work = _work(work, width * states.shape[2])
    cdef const double[::1] tv = theta_layers
    cdef const double[:, :, ::1] sv = states
    cdef double[:, ::1] lv = lam
    cdef double[::1] gv = grad_layers
    cdef double[::1] wv = work
    cdef int w = width, nb = states.shape[2], bt = bias, nl = n_layers
    cdef Py_ssize_t st = stride
    if nl > 0 and w * nb > 0:
        with nogil:
            bn_net_backward(act, bt, w, nb, h, nl, &tv[0], st, &sv[0, 0, 0], &lv[0, 0],
                            &gv[0], &wv[0])
    return lam


def tanh(x, out=None):
    """The kernels' own vectorised tanh of a 1-D float64 array (for tests and benchmarks).

    Within a few ulp of the correctly rounded tanh; the derivative the kernels use is 1 - t^2 of
    this same t.  ``out=None`` allocates; ``out`` may be ``x``.
    """
    _f64c(x, "x", 1)
    if out is None:
        out = np.empty_like(x)
    _writable(_f64c(out, "out", 1), "out")
    if out.shape != x.shape:
        raise ValueError(f"out must have shape {x.shape}, got {out.shape}")
    cdef const double[::1] xv = x
    cdef double[::1] ov = out
    cdef int n = x.shape[0]
    if n > 0:
        with nogil:
            bn_c_tanh(n, &xv[0], &ov[0])
    return out
