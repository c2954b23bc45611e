# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Convolutional residual layer kernels (issue 15): forward step, adjoint, weight gradient,
openings and global average pooling, float64, without the GIL.

Layer: ``u_{n+1} = u_n + h sigma(K_n * u_n + b_n)``, the state of a sample being c channels of
H x W pixels, K_n (c, c, k, k) with odd k, "same" zero padding p = k // 2, stride 1, one bias per
channel or one per layer.  ``*`` is a correlation, as ``torch.nn.functional.conv2d``:
``(K * u)[o, y, x] = sum_{i,dy,dx} K[o, i, dy, dx] u[i, y + dy - p, x + dx - p]``.

**Layout.**  A batch's states at one layer are ONE C-contiguous ``(c, H, W, batch)`` float64 block,
batch fastest.  Viewed as 2-D it is the dense kernels' ``(width, batch)`` block with
``width = c*H*W``: what an MGRIT vector holds and ships as bytes, and what a dense classifier on the
flattened state (LPT) reads unchanged.  A channel row (H*W*batch doubles) and an image row of a
channel (W*batch doubles) are contiguous, so a stencil tap ``(dy, dx)`` is a shifted contiguous
run.  K is row-major ``(c_out, c_in, k, k)`` (torch's weight layout).

**Two paths** (C parts in ``braidnet/kernels/bn_conv.c``, contracts in ``bn_conv.h``).  Both first
copy the input into a zero-padded block ``(c_in, H+2p, W+2p, batch)`` in ``work``, so no tap needs
a bounds test.

- *direct*: for each output channel (two at a time) and image row, every tap of every input
  channel is applied to the row in one pass (k = 1, 3, 5 unrolled); the weight gradient is k*k dot
  products per channel pair.  No BLAS, no columns.
- *gemm*: im2col, in tiles of image rows of at most ``COLS_DOUBLES`` doubles (2 MiB), builds
  ``(c_in*k*k, rows*W*batch)`` columns with one memcpy per (tap, row), then one BLAS ``dgemm``
  ``K (c_out, c_in*k*k) @ cols`` per tile writes Z's rows; the weight gradient is
  ``D @ cols^T`` per tile.

The adjoint ``K^T * D`` (transposed convolution) is computed as a correlation of D with the
flipped, channel-transposed kernel ``Kf[i, o, e, f] = h K[o, i, k-1-e, k-1-f]`` (exact for odd k,
same padding, stride 1), accumulated into lam_out, so it runs through the same two paths: no
col2im scatter.  The activation passes are the dense kernels' (``bn_c_update``/``bn_c_deriv`` of
``bn_kernels.c``, linked into this extension too, with their vectorised tanh), applied to the
``(c, H*W*batch)`` rows.

**Path rule** (``BN_CONV_AUTO``, :func:`conv_path`): direct when ``c_in * c_out`` is at most
16 for k = 1; 256 for k = 3 (16 when an image row ``W * batch`` holds fewer than 256 doubles); 4
for k = 5; 1 for k >= 7 (generic loop, one tap at a time); else gemm.  Measured on the build
machine (Intel Xeon, AVX2 clone, 48 KiB L1d, 2 MiB L2 per core, scipy's OpenBLAS on one thread;
thread CPU time, best of 5, the machine shared with other jobs): one layer's forward plus
backward (``conv_forward`` + ``conv_backward``, tanh), c_in = c_out = c, times in ms
direct / gemm:

    shape               k   c=1          c=2          c=4          c=8          c=16         c=24
    28x28, batch 100    1   0.38/0.51    1.08/1.42    3.02/3.28    8.92/6.61    34.7/18.2    62.8/31.0
                        3   0.50/1.64    1.42/3.29    4.90/6.19    17.7/22.6    53.6/68.1    141/114
                        5   1.19/2.99    5.74/5.43    22.7/25.4    85.2/61.6    325/166
    8x8, batch 100      1   .032/.035    .055/.063    .140/.128    .427/.293    1.55/1.00    2.75/1.79
                        3   .037/.091    .104/.188    .319/.505    1.15/1.74    4.17/4.40    7.60/7.40
                        5   .088/.237    .469/.504    1.68/1.09    6.44/3.70    25.8/12.6
    28x28, batch 1      3   .010/.017    .020/.029    .051/.059    .164/.130    .582/.477
                            (c=6: .097/.084)
    14x14, batch 32     3   .036/.092    .102/.187    .260/.561    1.14/1.74    3.26/4.51    7.18/6.92

The k = 3 direct loop (nine unrolled taps per pass over a row, two output channels at a time) beats
OpenBLAS up to c = 16 on batched rows; k = 1 (one tap per pass) and k = 5 (25 taps: register
spills) lose earlier.  ``scripts/bench_conv.py`` measures whole networks.

The C-level API is ``_convkernels.pxd`` (``noexcept nogil``, caller-provided scratch, 0 / -1).
The ``def`` functions are thin wrappers for Python and tests: they check dtype, contiguity and
shapes, then release the GIL.  The bias kind is read from ``b``'s length (c or 1); ``path`` is
``"auto"``, ``"direct"`` or ``"gemm"`` (or its code).
"""
from libc.string cimport memcpy, memset

from braidnet._blas cimport NoTrans, Trans, bn_dgemm
from braidnet._kernels cimport BN_BIAS_CHANNEL, BN_BIAS_SCALAR, BN_RELU, BN_SMOOTHRELU, BN_TANH

import numpy as np

# the dense kernels' argument checks: one wording of every error for both layer kinds
from braidnet._kernels import ACTIVATIONS, _act_code, _realc, _writable

# The activation passes and tanh of the dense kernels (braidnet/kernels/bn_kernels.c, linked into
# this extension as well): one definition of every activation.
cdef extern from "bn_kernels.h":
    void bn_c_update(int act, int width, int batch, int scalar, double h, const double* b,
                     const double* z, const double* u_in, double* u_out) noexcept nogil
    void bn_c_deriv(int act, int width, int batch, int scalar, const double* b, double* z,
                    const double* lam) noexcept nogil
    void bn_c_tanh(int n, const double* x, double* y) noexcept nogil

cdef extern from "bn_conv.h":
    void bn_conv_pad(int c, int H, int W, int B, int p, const double* U, double* P) noexcept nogil
    void bn_conv_direct(int c_out, int c_in, int k, int H, int W, int B, const double* K,
                        const double* P, double* Z, int accumulate) noexcept nogil
    void bn_conv_im2col(int c_in, int k, int H, int W, int B, int y0, int y1, const double* P,
                        double* cols) noexcept nogil
    void bn_conv_wgrad_direct(int c_out, int c_in, int k, int H, int W, int B, double alpha,
                              const double* D, const double* P, double* gK) noexcept nogil

TANH = BN_TANH
RELU = BN_RELU
SMOOTHRELU = BN_SMOOTHRELU
BIAS_CHANNEL = BN_BIAS_CHANNEL
BIAS_SCALAR = BN_BIAS_SCALAR
PATH_AUTO = BN_CONV_AUTO
PATH_DIRECT = BN_CONV_DIRECT
PATH_GEMM = BN_CONV_GEMM
PATHS = {"auto": BN_CONV_AUTO, "direct": BN_CONV_DIRECT, "gemm": BN_CONV_GEMM}

cdef enum:
    _COLS_DOUBLES = 262144        # im2col tile: at most this many doubles (2 MiB), >= one row

COLS_DOUBLES = _COLS_DOUBLES


# ---------------------------------------------------------------------------------------------
# Shapes, paths, scratch

cdef inline int _valid(int act, int bias, int k) noexcept nogil:
    return 0 <= act <= 2 and 0 <= bias <= 1 and k >= 1 and k % 2 == 1


cdef inline Py_ssize_t _direct_max_pairs(int k, Py_ssize_t row) noexcept nogil:
    """The largest c_in * c_out the direct path takes for k and image-row length W*batch
    (measured: module docstring)."""
    if k == 3:
        return 256 if row >= 256 else 16
    if k == 1:
        return 16
    if k == 5:
        return 4
    return 1


cdef int bn_conv_path(int path, int c_out, int c_in, int k, int H, int W, int batch) noexcept nogil:
    if path == BN_CONV_DIRECT or path == BN_CONV_GEMM:
        return path
    if path != BN_CONV_AUTO:
        return -1
    if <Py_ssize_t>c_in * c_out <= _direct_max_pairs(k, <Py_ssize_t>W * batch):
        return BN_CONV_DIRECT
    return BN_CONV_GEMM


cdef inline int _tile_rows(int cmax, int k, int H, int W, int batch) noexcept nogil:
    """Image rows per im2col tile: the most whose columns fit in _COLS_DOUBLES, at least 1."""
    cdef Py_ssize_t per_row = <Py_ssize_t>cmax * k * k * W * batch
    cdef Py_ssize_t rows = _COLS_DOUBLES // per_row if per_row > 0 else H
    if rows < 1:
        rows = 1
    if rows > H:
        rows = H
    return <int>rows


cdef Py_ssize_t bn_conv_work_size(int path, int c_out, int c_in, int k, int H, int W,
                                  int batch) noexcept nogil:
    cdef int pth = bn_conv_path(path, c_out, c_in, k, H, W, batch)
    if pth < 0 or k < 1:
        return -1
    cdef int p = k // 2
    cdef int cmax = c_in if c_in > c_out else c_out
    cdef Py_ssize_t n = <Py_ssize_t>H * W * batch
    cdef Py_ssize_t size = c_out * n                                         # Z / D
    size += <Py_ssize_t>cmax * (H + 2 * p) * (W + 2 * p) * batch             # padded input
    size += <Py_ssize_t>c_out * c_in * k * k                                 # flipped kernel
    if pth == BN_CONV_GEMM:
        size += <Py_ssize_t>cmax * k * k * _tile_rows(cmax, k, H, W, batch) * W * batch
    return size


cdef inline double* _padded(int c_out, int H, int W, int batch, double* work) noexcept nogil:
    return work + <Py_ssize_t>c_out * H * W * batch


cdef inline double* _kflip(int c_out, int c_in, int k, int H, int W, int batch,
                           double* work) noexcept nogil:
    cdef int p = k // 2
    cdef int cmax = c_in if c_in > c_out else c_out
    return (_padded(c_out, H, W, batch, work)
            + <Py_ssize_t>cmax * (H + 2 * p) * (W + 2 * p) * batch)


cdef inline double* _cols(int c_out, int c_in, int k, int H, int W, int batch,
                          double* work) noexcept nogil:
    return _kflip(c_out, c_in, k, H, W, batch, work) + <Py_ssize_t>c_out * c_in * k * k


# ---------------------------------------------------------------------------------------------
# The two paths

cdef void _corr(int path, int c_out, int c_in, int k, int H, int W, int batch, const double* K,
                const double* P, double* Z, int accumulate, double* cols) noexcept nogil:
    """Z (c_out, H, W, batch) (=|+=) K * (padded P); K (c_out, c_in, k, k)."""
    if path == BN_CONV_DIRECT:
        bn_conv_direct(c_out, c_in, k, H, W, batch, K, P, Z, accumulate)
        return
    cdef int cmax = c_in if c_in > c_out else c_out
    cdef int rows = _tile_rows(cmax, k, H, W, batch)
    cdef int n = W * batch, ckk = c_in * k * k, ldz = H * W * batch, nt, y0, y1
    cdef double beta = 1.0 if accumulate else 0.0
    y0 = 0
    while y0 < H:
        y1 = y0 + rows if y0 + rows < H else H
        nt = (y1 - y0) * n
        bn_conv_im2col(c_in, k, H, W, batch, y0, y1, P, cols)
        # Z[:, y0 rows] (c_out x nt, ld ldz) = K (c_out x ckk) @ cols (ckk x nt)
        bn_dgemm(NoTrans, NoTrans, c_out, nt, ckk, 1.0, K, ckk, cols, nt, beta,
                 Z + <Py_ssize_t>y0 * n, ldz)
        y0 = y1


cdef void _wgrad(int path, int c_out, int c_in, int k, int H, int W, int batch, double alpha,
                 const double* D, const double* P, double* gK, double* cols) noexcept nogil:
    """gK (c_out, c_in, k, k) += alpha * correlations of D (c_out, H, W, batch) with padded P."""
    if path == BN_CONV_DIRECT:
        bn_conv_wgrad_direct(c_out, c_in, k, H, W, batch, alpha, D, P, gK)
        return
    cdef int cmax = c_in if c_in > c_out else c_out
    cdef int rows = _tile_rows(cmax, k, H, W, batch)
    cdef int n = W * batch, ckk = c_in * k * k, ldd = H * W * batch, nt, y0, y1
    y0 = 0
    while y0 < H:
        y1 = y0 + rows if y0 + rows < H else H
        nt = (y1 - y0) * n
        bn_conv_im2col(c_in, k, H, W, batch, y0, y1, P, cols)
        # gK (c_out x ckk) += alpha D[:, tile] (c_out x nt, ld ldd) @ cols^T
        bn_dgemm(NoTrans, Trans, c_out, ckk, nt, alpha, D + <Py_ssize_t>y0 * n, ldd, cols, nt,
                 1.0, gK, ckk)
        y0 = y1


cdef void _bias_grad(int bias, int c, Py_ssize_t n, double alpha, const double* D,
                     double* gb) noexcept nogil:
    """gb += alpha * per-channel sums of D (c rows of n) (channel), or alpha * its total (scalar)."""
    cdef Py_ssize_t ch, j, off
    cdef double a0, a1, a2, a3, tot = 0.0
    for ch in range(c):
        off = ch * n
        a0 = a1 = a2 = a3 = 0.0
        j = 0
        while j + 4 <= n:
            a0 += D[off + j]
            a1 += D[off + j + 1]
            a2 += D[off + j + 2]
            a3 += D[off + j + 3]
            j += 4
        while j < n:
            a0 += D[off + j]
            j += 1
        a0 = (a0 + a2) + (a1 + a3)
        if bias == BN_BIAS_SCALAR:
            tot += a0
        else:
            gb[ch] += alpha * a0
    if bias == BN_BIAS_SCALAR:
        gb[0] += alpha * tot


cdef void _flip(int c_out, int c_in, int k, double h, const double* K, double* Kf) noexcept nogil:
    """Kf[i, o, e, f] = h K[o, i, k-1-e, k-1-f]: the kernel of the transposed convolution."""
    cdef Py_ssize_t o, i, e, f, kk = <Py_ssize_t>k * k
    for o in range(c_out):
        for i in range(c_in):
            for e in range(k):
                for f in range(k):
                    Kf[(i * c_out + o) * kk + e * k + f] = h * K[(o * c_in + i) * kk
                                                                 + (k - 1 - e) * k + (k - 1 - f)]


# ---------------------------------------------------------------------------------------------
# C-level kernels (contracts in _convkernels.pxd)

cdef int bn_conv_forward(int act, int bias, int path, int c, int k, int H, int W, int batch,
                         double h, const double* K, const double* b, const double* u_in,
                         double* u_out, double* work) noexcept nogil:
    if not _valid(act, bias, k):
        return -1
    cdef int pth = bn_conv_path(path, c, c, k, H, W, batch)
    if pth < 0:
        return -1
    cdef double* P = _padded(c, H, W, batch, work)
    bn_conv_pad(c, H, W, batch, k // 2, u_in, P)
    _corr(pth, c, c, k, H, W, batch, K, P, work, 0, _cols(c, c, k, H, W, batch, work))
    bn_c_update(act, c, H * W * batch, bias, h, b, work, u_in, u_out)   # work = K * u_in
    return 0


cdef double* _deriv_grads(int act, int bias, int pth, int c, int c_in, int k, int H, int W,
                         int batch, double s, const double* K, const double* b, const double* x,
                         const double* lam, double* gK, double* gb, double* work) noexcept nogil:
    """The part a layer's backward and the learned opening's gradient share: D = sigma'(K * x + b) lam
    (returned, at the start of work), gK += s D (x) x-patches and gb += s sum D (each skipped if NULL);
    the padded x is left in work's padded block."""
    cdef int n = H * W * batch
    cdef double* D = work
    cdef double* P = _padded(c, H, W, batch, work)
    cdef double* cols = _cols(c, c_in, k, H, W, batch, work)
    bn_conv_pad(c_in, H, W, batch, k // 2, x, P)
    _corr(pth, c, c_in, k, H, W, batch, K, P, D, 0, cols)                # D = K * x
    bn_c_deriv(act, c, n, bias, b, D, lam)                               # D = sigma'(.. + b) lam
    if gK != NULL:
        _wgrad(pth, c, c_in, k, H, W, batch, s, D, P, gK, cols)
    if gb != NULL:
        _bias_grad(bias, c, n, s, D, gb)
    return D


cdef int bn_conv_backward(int act, int bias, int path, int c, int k, int H, int W, int batch,
                          double h, const double* K, const double* b, const double* u,
                          const double* lam_in, double* lam_out, double* gK, double* gb,
                          double* work) noexcept nogil:
    if not _valid(act, bias, k):
        return -1
    cdef int pth = bn_conv_path(path, c, c, k, H, W, batch)
    if pth < 0:
        return -1
    cdef int n = H * W * batch
    cdef double* D = _deriv_grads(act, bias, pth, c, c, k, H, W, batch, h, K, b, u, lam_in, gK, gb, work)
    cdef double* P = _padded(c, H, W, batch, work)
    cdef double* Kf = _kflip(c, c, k, H, W, batch, work)
    cdef double* cols = _cols(c, c, k, H, W, batch, work)
    if lam_out != NULL:
        _flip(c, c, k, h, K, Kf)
        bn_conv_pad(c, H, W, batch, k // 2, D, P)                        # P = padded D
        if lam_out != lam_in:
            memcpy(lam_out, lam_in, <size_t>c * n * sizeof(double))
        _corr(pth, c, c, k, H, W, batch, Kf, P, lam_out, 1, cols)        # += h K^T * D
    return 0


cdef int bn_conv_adjoint(int act, int bias, int path, int c, int k, int H, int W, int batch,
                         double h, const double* K, const double* b, const double* u,
                         const double* lam_in, double* lam_out, double* work) noexcept nogil:
    return bn_conv_backward(act, bias, path, c, k, H, W, batch, h, K, b, u, lam_in, lam_out,
                            NULL, NULL, work)


cdef int bn_conv_gradient(int act, int bias, int path, int c, int k, int H, int W, int batch,
                          double h, const double* K, const double* b, const double* u,
                          const double* lam, double* gK, double* gb, double* work) noexcept nogil:
    return bn_conv_backward(act, bias, path, c, k, H, W, batch, h, K, b, u, lam, NULL, gK, gb,
                            work)


cdef int bn_conv_apply(int path, int c_out, int c_in, int k, int H, int W, int batch,
                       const double* K, const double* x, double* z, double* work) noexcept nogil:
    if k < 1 or k % 2 == 0:
        return -1
    cdef int pth = bn_conv_path(path, c_out, c_in, k, H, W, batch)
    if pth < 0:
        return -1
    cdef double* P = _padded(c_out, H, W, batch, work)
    bn_conv_pad(c_in, H, W, batch, k // 2, x, P)
    _corr(pth, c_out, c_in, k, H, W, batch, K, P, z, 0, _cols(c_out, c_in, k, H, W, batch, work))
    return 0


cdef int bn_conv_opening_forward(int act, int bias, int path, int c, int c_in, int k, int H,
                                 int W, int batch, const double* K, const double* b,
                                 const double* x, double* u_out, double* work) noexcept nogil:
    if not _valid(act, bias, k):
        return -1
    if bn_conv_apply(path, c, c_in, k, H, W, batch, K, x, u_out, work) != 0:
        return -1
    bn_c_update(act, c, H * W * batch, bias, 0.0, b, u_out, NULL, u_out)
    return 0


cdef int bn_conv_opening_gradient(int act, int bias, int path, int c, int c_in, int k, int H,
                                  int W, int batch, const double* K, const double* b,
                                  const double* x, const double* lam0, double* gK, double* gb,
                                  double* work) noexcept nogil:
    if not _valid(act, bias, k):
        return -1
    cdef int pth = bn_conv_path(path, c, c_in, k, H, W, batch)
    if pth < 0:
        return -1
    _deriv_grads(act, bias, pth, c, c_in, k, H, W, batch, 1.0, K, b, x, lam0, gK, gb, work)
    return 0


cdef void bn_conv_opening_replicate(int c, int H, int W, int batch, const double* x,
                                    double* u_out) noexcept nogil:
    cdef Py_ssize_t ch, n = <Py_ssize_t>H * W * batch
    for ch in range(c):
        memcpy(u_out + ch * n, x, <size_t>n * sizeof(double))


cdef void bn_conv_opening_mnist(int c, int H, int W, int batch, const double* x,
                                double* u_out) noexcept nogil:
    cdef Py_ssize_t j, ch, n = <Py_ssize_t>H * W * batch
    if c < 1 or n == 0:
        return
    for j in range(n):
        u_out[j] = 6.0 * x[j] / 255.0 - 3.0
    bn_c_tanh(<int>n, u_out, u_out)
    for j in range(n):
        u_out[j] += 1.0
    for ch in range(1, c):
        memcpy(u_out + ch * n, u_out, <size_t>n * sizeof(double))


cdef void bn_conv_pool(int c, int H, int W, int batch, const double* u, double* p) noexcept nogil:
    cdef Py_ssize_t ch, q, s, S = <Py_ssize_t>H * W
    cdef const double* row
    cdef double* pc
    cdef double scale = 1.0 / <double>S if S > 0 else 0.0
    for ch in range(c):
        pc = p + ch * batch
        memset(pc, 0, <size_t>batch * sizeof(double))
        for q in range(S):
            row = u + (ch * S + q) * batch
            for s in range(batch):
                pc[s] += row[s]
        for s in range(batch):
            pc[s] *= scale


cdef void bn_conv_pool_transpose(int c, int H, int W, int batch, const double* g,
                                 double* lam) noexcept nogil:
    cdef Py_ssize_t ch, q, s, S = <Py_ssize_t>H * W
    cdef double scale = 1.0 / <double>S if S > 0 else 0.0
    cdef double* row
    for ch in range(c):
        row = lam + ch * S * batch
        for s in range(batch):
            row[s] = scale * g[ch * batch + s]
        for q in range(1, S):
            memcpy(row + q * batch, row, <size_t>batch * sizeof(double))


# ---------------------------------------------------------------------------------------------
# Python wrappers

_INT_MAX = 2**31 - 1


def _f64c(a, str name, int ndim):
    """Return a after checking it is a C-contiguous float64 numpy array of ndim dimensions."""
    return _realc(a, name, ndim, np.float64)


def _shape(a, str name, shape, bint write=False):
    _f64c(a, name, len(shape))
    if a.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {a.shape}")
    return _writable(a, name) if write else a


def _path_code(path):
    if isinstance(path, str):
        try:
            return PATHS[path]
        except KeyError:
            raise ValueError(f"path must be one of {sorted(PATHS)}, got {path!r}") from None
    if path not in (BN_CONV_AUTO, BN_CONV_DIRECT, BN_CONV_GEMM):
        raise ValueError(f"path code must be 0, 1 or 2, got {path!r}")
    return int(path)


def _bias_code(b, int c):
    _f64c(b, "b", 1)
    if b.shape[0] == c:
        return BN_BIAS_CHANNEL
    if b.shape[0] == 1:
        return BN_BIAS_SCALAR
    raise ValueError(f"b must have {c} (per channel) or 1 (scalar) entries, got {b.shape[0]}")


def _kernel(K, c_in=None):
    """Check K (c_out, c_in, k, k) with odd k; return (c_out, c_in, k)."""
    _f64c(K, "K", 4)
    c_out, ci, k, k2 = K.shape
    if k != k2 or k % 2 == 0:
        raise ValueError(f"K must have shape (c_out, c_in, k, k) with odd k, got {K.shape}")
    if c_in is not None and ci != c_in:
        raise ValueError(f"K must have shape (c_out, c_in={c_in}, k, k), got {K.shape}")
    return c_out, ci, k


def _geometry(x, str name, int c, str cname="c"):
    """Check x (c, H, W, batch); return (H, W, batch)."""
    _f64c(x, name, 4)
    if x.shape[0] != c:
        raise ValueError(f"{name} must have shape ({cname}={c}, H, W, batch), got {x.shape}")
    _, H, W, batch = x.shape
    if max(c, 1) * H * W * batch > _INT_MAX:
        raise ValueError(f"{name} is too large: {x.size} doubles, at most 2^31 - 1")
    return H, W, batch


def _work(work, Py_ssize_t n):
    if work is None:
        return np.empty(max(n, 1))
    _f64c(work, "work", 1)
    if work.shape[0] < n:
        raise ValueError(f"work must hold at least {n} doubles, got {work.shape[0]}")
    return _writable(work, "work")


def conv_path(int c_out, int c_in, int k, int H, int W, int batch, path="auto"):
    """The path ("direct" or "gemm") the kernels take for this shape."""
    cdef int code = bn_conv_path(_path_code(path), c_out, c_in, k, H, W, batch)
    return "direct" if code == BN_CONV_DIRECT else "gemm"


def conv_work_size(int c_out, int c_in, int k, int H, int W, int batch, path="auto"):
    """Doubles of scratch (``work``) the kernels need for this shape and path."""
    if k < 1 or k % 2 == 0:
        raise ValueError(f"k must be odd and positive, got {k}")
    return int(bn_conv_work_size(_path_code(path), c_out, c_in, k, H, W, batch))


def _layer_args(K, b, u, str uname):
    c, _, k = _kernel(K)
    if K.shape[1] != c:
        raise ValueError(f"K must have shape (c, c, k, k), got {K.shape}")
    H, W, batch = _geometry(u, uname, c)
    return c, k, H, W, batch, _bias_code(b, c)


def conv_forward(K, b, u_in, double h, activation, u_out=None, work=None, path="auto"):
    """Residual step ``u_out = u_in + h * sigma(K * u_in + b)`` on a (c, H, W, batch) block.

    ``u_out=None`` allocates the result; ``u_out is u_in`` updates in place.  Returns u_out.
    """
    c, k, H, W, batch, bias = _layer_args(K, b, u_in, "u_in")
    cdef int act = _act_code(activation), pth = _path_code(path)
    if u_out is None:
        u_out = np.empty_like(u_in)
    _shape(u_out, "u_out", u_in.shape, True)
    work = _work(work, bn_conv_work_size(pth, c, c, k, H, W, batch))
    cdef const double[:, :, :, ::1] Kv = K
    cdef const double[::1] bv = b
    cdef const double[:, :, :, ::1] uv = u_in
    cdef double[:, :, :, ::1] ov = u_out
    cdef double[::1] wv = work
    cdef int ci = c, ki = k, Hi = H, Wi = W, nb = batch, bt = bias
    if ci * Hi * Wi * nb > 0:
        with nogil:
            bn_conv_forward(act, bt, pth, ci, ki, Hi, Wi, nb, h, &Kv[0, 0, 0, 0], &bv[0],
                            &uv[0, 0, 0, 0], &ov[0, 0, 0, 0], &wv[0])
    return u_out


def _backward(K, b, u, lam_in, double h, activation, lam_out, gK, gb, work, path, bint adjoint,
              bint gradient):
    c, k, H, W, batch, bias = _layer_args(K, b, u, "u")
    cdef int act = _act_code(activation), pth = _path_code(path)
    _shape(lam_in, "lam_in", u.shape)
    if adjoint:
        if lam_out is None:
            lam_out = np.empty_like(u)
        _shape(lam_out, "lam_out", u.shape, True)
        if lam_out is u or lam_in is u:
            raise ValueError("lam_in / lam_out must not alias u")
    if gradient:
        _shape(gK, "gK", K.shape, True)
        _shape(gb, "gb", b.shape, True)
    work = _work(work, bn_conv_work_size(pth, c, c, k, H, W, batch))
    cdef const double[:, :, :, ::1] Kv = K
    cdef const double[::1] bv = b
    cdef const double[:, :, :, ::1] uv = u
    cdef const double[:, :, :, ::1] lv = lam_in
    cdef double[:, :, :, ::1] ov
    cdef double[:, :, :, ::1] gKv
    cdef double[::1] gbv
    cdef double[::1] wv = work
    cdef double* plo = NULL
    cdef double* pgK = NULL
    cdef double* pgb = NULL
    if adjoint:
        ov = lam_out
        plo = &ov[0, 0, 0, 0]
    if gradient:
        gKv = gK
        gbv = gb
        pgK = &gKv[0, 0, 0, 0]
        pgb = &gbv[0]
    cdef int ci = c, ki = k, Hi = H, Wi = W, nb = batch, bt = bias
    if ci * Hi * Wi * nb > 0:
        with nogil:
            bn_conv_backward(act, bt, pth, ci, ki, Hi, Wi, nb, h, &Kv[0, 0, 0, 0], &bv[0],
                             &uv[0, 0, 0, 0], &lv[0, 0, 0, 0], plo, pgK, pgb, &wv[0])
    return lam_out


def conv_backward(K, b, u, lam_in, double h, activation, gK, gb, lam_out=None, work=None,
                  path="auto"):
    """Adjoint and gradient of one convolutional step at primal input ``u``, sharing one pass.

    ``lam_out = lam_in + h K^T * (sigma'(K * u + b) * lam_in)`` (``lam_out=None`` allocates,
    ``lam_out is lam_in`` works in place) and ACCUMULATES ``gK += h D (x) u`` (correlations),
    ``gb += h * (channel sums | total sum) of D`` with D = sigma'(K * u + b) * lam_in.
    Returns lam_out.
    """
    return _backward(K, b, u, lam_in, h, activation, lam_out, gK, gb, work, path, True, True)


def conv_adjoint(K, b, u, lam_in, double h, activation, lam_out=None, work=None, path="auto"):
    """``lam_out = lam_in + h J^T lam_in``, J the Jacobian of ``sigma(K * u + b)`` at ``u``."""
    return _backward(K, b, u, lam_in, h, activation, lam_out, None, None, work, path, True, False)


def conv_gradient(K, b, u, lam, double h, activation, gK, gb, work=None, path="auto"):
    """ACCUMULATE the step's parameter gradient ``gK``, ``gb`` (see conv_backward)."""
    _backward(K, b, u, lam, h, activation, None, gK, gb, work, path, False, True)


def conv_apply(K, x, z=None, work=None, path="auto"):
    """The plain correlation ``z = K * x`` (no bias, no activation): K (c_out, c_in, k, k),
    x (c_in, H, W, batch), z (c_out, H, W, batch).  Returns z."""
    c_out, c_in, k = _kernel(K)
    H, W, batch = _geometry(x, "x", c_in, "c_in")
    if max(c_out, 1) * H * W * batch > _INT_MAX:
        raise ValueError("z would be too large: at most 2^31 - 1 doubles")
    cdef int pth = _path_code(path)
    if z is None:
        z = np.empty((c_out, H, W, batch))
    _shape(z, "z", (c_out, H, W, batch), True)
    work = _work(work, bn_conv_work_size(pth, c_out, c_in, k, H, W, batch))
    cdef const double[:, :, :, ::1] Kv = K
    cdef const double[:, :, :, ::1] xv = x
    cdef double[:, :, :, ::1] zv = z
    cdef double[::1] wv = work
    cdef int co = c_out, ci = c_in, ki = k, Hi = H, Wi = W, nb = batch
    if co * Hi * Wi * nb > 0:
        if ci == 0:
            z[...] = 0.0
        else:
            with nogil:
                bn_conv_apply(pth, co, ci, ki, Hi, Wi, nb, &Kv[0, 0, 0, 0], &xv[0, 0, 0, 0],
                              &zv[0, 0, 0, 0], &wv[0])
    return z


def _opening_args(K, b, x):
    c, c_in, k = _kernel(K)
    if c_in < 1:
        raise ValueError(f"K must have at least one input channel, got shape {K.shape}")
    H, W, batch = _geometry(x, "x", c_in, "c_in")
    if c * H * W * batch > _INT_MAX:
        raise ValueError("u would be too large: at most 2^31 - 1 doubles")
    return c, c_in, k, H, W, batch, _bias_code(b, c)


def conv_opening_forward(K, b, x, activation, u_out=None, work=None, path="auto"):
    """Learned convolution opening ``u_out = sigma(K * x + b)``, K (c, c_in, k, k),
    x (c_in, H, W, batch), u_out (c, H, W, batch).  Returns u_out."""
    c, c_in, k, H, W, batch, bias = _opening_args(K, b, x)
    cdef int act = _act_code(activation), pth = _path_code(path)
    if u_out is None:
        u_out = np.empty((c, H, W, batch))
    _shape(u_out, "u_out", (c, H, W, batch), True)
    work = _work(work, bn_conv_work_size(pth, c, c_in, k, H, W, batch))
    cdef const double[:, :, :, ::1] Kv = K
    cdef const double[::1] bv = b
    cdef const double[:, :, :, ::1] xv = x
    cdef double[:, :, :, ::1] ov = u_out
    cdef double[::1] wv = work
    cdef int co = c, ci = c_in, ki = k, Hi = H, Wi = W, nb = batch, bt = bias
    if co * Hi * Wi * nb > 0:
        with nogil:
            bn_conv_opening_forward(act, bt, pth, co, ci, ki, Hi, Wi, nb, &Kv[0, 0, 0, 0],
                                    &bv[0], &xv[0, 0, 0, 0], &ov[0, 0, 0, 0], &wv[0])
    return u_out


def conv_opening_gradient(K, b, x, lam0, activation, gK, gb, work=None, path="auto"):
    """ACCUMULATE the learned opening's gradient: with D = sigma'(K * x + b) * lam0,
    ``gK += D (x) x`` (correlations) and ``gb += (channel sums | total sum) of D``."""
    c, c_in, k, H, W, batch, bias = _opening_args(K, b, x)
    cdef int act = _act_code(activation), pth = _path_code(path)
    _shape(lam0, "lam0", (c, H, W, batch))
    _shape(gK, "gK", K.shape, True)
    _shape(gb, "gb", b.shape, True)
    work = _work(work, bn_conv_work_size(pth, c, c_in, k, H, W, batch))
    cdef const double[:, :, :, ::1] Kv = K
    cdef const double[::1] bv = b
    cdef const double[:, :, :, ::1] xv = x
    cdef const double[:, :, :, ::1] lv = lam0
    cdef double[:, :, :, ::1] gKv = gK
    cdef double[::1] gbv = gb
    cdef double[::1] wv = work
    cdef int co = c, ci = c_in, ki = k, Hi = H, Wi = W, nb = batch, bt = bias
    if co * Hi * Wi * nb > 0:
        with nogil:
            bn_conv_opening_gradient(act, bt, pth, co, ci, ki, Hi, Wi, nb, &Kv[0, 0, 0, 0],
                                     &bv[0], &xv[0, 0, 0, 0], &lv[0, 0, 0, 0], &gKv[0, 0, 0, 0],
                                     &gbv[0], &wv[0])


def _image_args(x, int c, u_out):
    _f64c(x, "x", 3)
    if c < 1:
        raise ValueError(f"c must be at least 1, got {c}")
    H, W, batch = x.shape
    if c * H * W * batch > _INT_MAX:
        raise ValueError("u would be too large: at most 2^31 - 1 doubles")
    if u_out is None:
        u_out = np.empty((c, H, W, batch))
    return H, W, batch, _shape(u_out, "u_out", (c, H, W, batch), True)


def opening_replicate(x, int c, u_out=None):
    """Replicating opening: ``u_out[ch] = x`` for every channel ch < c; x (H, W, batch)."""
    H, W, batch, u_out = _image_args(x, c, u_out)
    cdef const double[:, :, ::1] xv = x
    cdef double[:, :, :, ::1] ov = u_out
    cdef int ci = c, Hi = H, Wi = W, nb = batch
    if Hi * Wi * nb > 0:
        with nogil:
            bn_conv_opening_replicate(ci, Hi, Wi, nb, &xv[0, 0, 0], &ov[0, 0, 0, 0])
    return u_out


def opening_mnist(x, int c, u_out=None):
    """LPT's MNIST opening: ``u_out[ch] = tanh(6 x / 255 - 3) + 1`` for every channel ch < c;
    x (H, W, batch) with pixel values 0..255."""
    H, W, batch, u_out = _image_args(x, c, u_out)
    cdef const double[:, :, ::1] xv = x
    cdef double[:, :, :, ::1] ov = u_out
    cdef int ci = c, Hi = H, Wi = W, nb = batch
    if Hi * Wi * nb > 0:
        with nogil:
            bn_conv_opening_mnist(ci, Hi, Wi, nb, &xv[0, 0, 0], &ov[0, 0, 0, 0])
    return u_out


def pool(u, p=None):
    """Global average pooling ``p[ch, s] = mean_{y,x} u[ch, y, x, s]``: u (c, H, W, batch) ->
    p (c, batch).  Returns p."""
    _f64c(u, "u", 4)
    c, H, W, batch = u.shape
    if p is None:
        p = np.empty((c, batch))
    _shape(p, "p", (c, batch), True)
    cdef const double[:, :, :, ::1] uv = u
    cdef double[:, ::1] pv = p
    cdef int ci = c, Hi = H, Wi = W, nb = batch
    if ci * nb > 0:
        if Hi * Wi == 0:
            p[...] = 0.0
        else:
            with nogil:
                bn_conv_pool(ci, Hi, Wi, nb, &uv[0, 0, 0, 0], &pv[0, 0])
    return p


def pool_transpose(g, int H, int W, lam=None):
    """Transpose of :func:`pool`: ``lam[ch, y, x, s] = g[ch, s] / (H W)`` (overwritten);
    g (c, batch) -> lam (c, H, W, batch).  Returns lam."""
    _f64c(g, "g", 2)
    c, batch = g.shape
    if H < 0 or W < 0:
        raise ValueError(f"H and W must be non-negative, got {H}, {W}")
    if lam is None:
        lam = np.empty((c, H, W, batch))
    _shape(lam, "lam", (c, H, W, batch), True)
    cdef const double[:, ::1] gv = g
    cdef double[:, :, :, ::1] lv = lam
    cdef int ci = c, Hi = H, Wi = W, nb = batch
    if ci * Hi * Wi * nb > 0:
        with nogil:
            bn_conv_pool_transpose(ci, Hi, Wi, nb, &gv[0, 0], &lv[0, 0, 0, 0])
    return lam
