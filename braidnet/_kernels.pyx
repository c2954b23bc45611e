# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Per-layer ResNet kernels: forward step, adjoint (vector-Jacobian product), parameter gradient.

The C-level functions (declared in ``_kernels.pxd``) run without the GIL over contiguous float64
or float32 buffers (generic over the fused type ``real``; one source for both precisions, and the
float64 results bit for bit those of the float64-only kernels).  Two paths:

- width <= 32 (``FUSED_MAX_WIDTH``): fused C kernels sweep the batch in column tiles that stay in L1
  (all ``width`` rows, 64-256 columns): ``W u + b`` with register blocking, the activation and the
  residual update in one pass; backward likewise computes ``D = sigma'(W u + b) * lam``, the
  ``D u^T`` / bias sums and ``lam + h W^T D`` tile by tile.  No BLAS call, no ``work`` traffic.
- wider layers call BLAS (row-major ``dgemm``, ``sgemm`` in float32, of the OpenBLAS that
  ``braidnet/_blas.pxd`` names) plus one element-wise pass.

Where sigma' is kept for a backward (``keeps_derivs``), a layer's block of it is the values, or for
ReLU on the BLAS path one bit per value (``deriv_block``): the same results, 32-64x less memory.

The fused kernels, the element-wise passes of the BLAS path and tanh are plain C in
``braidnet/kernels/bn_kernels.c`` (contracts in ``bn_kernels.h``), compiled into this extension by
setup.py and tested on their own, without Python or BLAS, by ``braidnet/kernels/test_kernels.c``
(``scripts/check_kernels.sh``, under AddressSanitizer/UBSan).  This module keeps the BLAS path, the
per-layer and whole-net entry points of ``_kernels.pxd`` and the Python wrappers.

tanh is the kernels' own vectorised one (``tanh`` below; within 2.5 ulp of the exact value, about
10x faster than libm's scalar tanh); the derivative is ``1 - t^2`` of that same ``t``.  In float32
it is computed in float32, 8 lanes at a time, by the same method (within 2.5 float32 ulp).  On x86-64
Linux with GCC every C entry point has an AVX2/FMA clone chosen at load time by CPU features.
Results differ from a BLAS-plus-numpy evaluation only by rounding (summation order, FMA contraction).

State layout: one C-contiguous ``(width, batch)`` block per layer (see ``braidnet.resnet``).

The ``def`` functions below are thin wrappers for Python and tests: they check dtype, contiguity
and shapes, then release the GIL.  The bias type is read from ``b``'s length (width or 1).  The
state argument (``u_in``, ``u``, ``x``, ``states``) chooses the precision, float64 or float32; every
other array must have the same dtype.
"""
from libc.string cimport memcpy, memset

from braidnet._blas cimport NoTrans, Trans, bn_blas_config, bn_dgemm, bn_sgemm, bn_trans

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
    void bn_c_update_ds(int act, int width, int batch, int scalar, double h, const double* b,
                        const double* z, const double* u_in, double* u_out,
                        double* ds) noexcept nogil
    void bn_c_deriv_gb(int act, int width, int batch, int scalar, const double* b, double* z,
                       const double* lam, double alpha, double* gb) noexcept nogil
    void bn_c_dmul_gb(int width, int batch, int scalar, const double* ds, const double* lam,
                      double* D, double alpha, double* gb) noexcept nogil
    Py_ssize_t BITS_ROW "BN_BITS_ROW"(Py_ssize_t batch) noexcept nogil
    void bn_c_update_bits(int width, int batch, int scalar, double h, const double* b,
                          const double* z, const double* u_in, double* u_out,
                          unsigned char* bits) noexcept nogil
    void bn_c_bitsmul_gb(int width, int batch, int scalar, const unsigned char* bits,
                         const double* lam, double* D, double alpha, double* gb) noexcept nogil
    void bn_fused_forward(int act, int width, int batch, int scalar, double h, const double* W,
                          const double* b, const double* u_in, double* u_out) noexcept nogil
    void bn_fused_backward(int act, int width, int batch, int scalar, double h, const double* W,
                           const double* b, const double* u, const double* lam_in,
                           double* lam_out, double* gW, double* gb) noexcept nogil
    void bn_c_update_f32(int act, int width, int batch, int scalar, double h, const float* b,
                         const float* z, const float* u_in, float* u_out) noexcept nogil
    void bn_c_deriv_f32(int act, int width, int batch, int scalar, const float* b, float* z,
                        const float* lam) noexcept nogil
    void bn_c_tanh_f32(int n, const float* x, float* y) noexcept nogil
    void bn_fused_forward_ds(int act, int width, int batch, int scalar, double h,
                             const double* W, const double* b, const double* u_in,
                             double* u_out, double* ds) noexcept nogil
    void bn_fused_backward_ds(int width, int batch, int scalar, double h, const double* W,
                              const double* u, const double* ds, const double* lam_in,
                              double* lam_out, double* gW, double* gb) noexcept nogil
    void bn_fused_forward_ds_f32(int act, int width, int batch, int scalar, double h,
                                 const float* W, const float* b, const float* u_in,
                                 float* u_out, float* ds) noexcept nogil
    void bn_fused_backward_ds_f32(int width, int batch, int scalar, double h, const float* W,
                                  const float* u, const float* ds, const float* lam_in,
                                  float* lam_out, float* gW, float* gb) noexcept nogil
    void bn_c_update_ds_f32(int act, int width, int batch, int scalar, double h, const float* b,
                            const float* z, const float* u_in, float* u_out,
                            float* ds) noexcept nogil
    void bn_c_deriv_gb_f32(int act, int width, int batch, int scalar, const float* b, float* z,
                           const float* lam, double alpha, float* gb) noexcept nogil
    void bn_c_dmul_gb_f32(int width, int batch, int scalar, const float* ds, const float* lam,
                          float* D, double alpha, float* gb) noexcept nogil
    void bn_c_update_bits_f32(int width, int batch, int scalar, double h, const float* b,
                              const float* z, const float* u_in, float* u_out,
                              unsigned char* bits) noexcept nogil
    void bn_c_bitsmul_gb_f32(int width, int batch, int scalar, const unsigned char* bits,
                             const float* lam, float* D, double alpha, float* gb) noexcept nogil
    void bn_fused_forward_f32(int act, int width, int batch, int scalar, double h, const float* W,
                              const float* b, const float* u_in, float* u_out) noexcept nogil
    void bn_fused_backward_f32(int act, int width, int batch, int scalar, double h,
                               const float* W, const float* b, const float* u,
                               const float* lam_in, float* lam_out, float* gW,
                               float* gb) noexcept nogil


FUSED_MAX_WIDTH = FUSED_MAX   # widest layer computed by the fused (non-BLAS) kernels
# the BLAS of the wider layers: OpenBLAS's build string (version, kernels chosen for this CPU)
BLAS = bn_blas_config().decode()


# ---------------------------------------------------------------------------------------------
# BLAS helpers (row-major)

cdef inline void _gemm(bn_trans ta, bn_trans tb, int m, int n, int k, double alpha, const real* A,
                       int lda, const real* B, int ldb, double beta, real* C,
                       int ldc) noexcept nogil:
    """C = alpha op(A) op(B) + beta C in the precision of real (alpha and beta rounded to it)."""
    if real is float:
        bn_sgemm(ta, tb, m, n, k, <float>alpha, A, lda, B, ldb, <float>beta, C, ldc)
    else:
        bn_dgemm(ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc)


cdef inline void _gemm_wu(int m, int n, int k, const real* A, const real* B,
                          double beta, real* C) noexcept nogil:
    """C (m x n) = A (m x k) @ B (k x n) + beta C."""
    _gemm(NoTrans, NoTrans, m, n, k, 1.0, A, k, B, n, beta, C, n)


cdef inline void _gemm_abt(int m, int n, int k, double alpha, const real* A, const real* B,
                           real* C) noexcept nogil:
    """C (m x n) += alpha * A (m x k) @ B^T, with B (n x k)."""
    _gemm(NoTrans, Trans, m, n, k, alpha, A, k, B, k, 1.0, C, n)


cdef inline void _gemm_atb(int m, int n, int k, double alpha, const real* A, const real* B,
                           real* C) noexcept nogil:
    """C (m x n) += alpha * A^T @ B, with A (k x m), B (k x n)."""
    _gemm(Trans, NoTrans, m, n, k, alpha, A, m, B, n, 1.0, C, n)


# The SIMD C kernels in the precision of real.
cdef inline void _c_update(int act, int width, int batch, int scalar, double h, const real* b,
                           const real* z, const real* u_in, real* u_out) noexcept nogil:
    if real is float:
        bn_c_update_f32(act, width, batch, scalar, h, b, z, u_in, u_out)
    else:
        bn_c_update(act, width, batch, scalar, h, b, z, u_in, u_out)


cdef inline void _c_update_ds(int act, int width, int batch, int scalar, double h,
                              const real* b, const real* z, const real* u_in, real* u_out,
                              void* ds) noexcept nogil:
    """u_out = u_in + h sigma(z + b) and the kept sigma' ds (values or bits: _ds_bits)."""
    if _ds_bits(act, width):
        if real is float:
            bn_c_update_bits_f32(width, batch, scalar, h, b, z, u_in, u_out, <unsigned char*>ds)
        else:
            bn_c_update_bits(width, batch, scalar, h, b, z, u_in, u_out, <unsigned char*>ds)
    elif real is float:
        bn_c_update_ds_f32(act, width, batch, scalar, h, b, z, u_in, u_out, <float*>ds)
    else:
        bn_c_update_ds(act, width, batch, scalar, h, b, z, u_in, u_out, <double*>ds)


cdef inline void _c_deriv_gb(int act, int width, int batch, int scalar, const real* b, real* z,
                             const real* lam, double alpha, real* gb) noexcept nogil:
    """z <- D = sigma'(z + b) * lam and (gb != NULL) gb += alpha * bias sums of D, one pass."""
    if real is float:
        bn_c_deriv_gb_f32(act, width, batch, scalar, b, z, lam, alpha, gb)
    else:
        bn_c_deriv_gb(act, width, batch, scalar, b, z, lam, alpha, gb)


cdef inline void _c_dmul_gb(int act, int width, int batch, int scalar, const void* ds,
                            const real* lam, real* D, double alpha, real* gb) noexcept nogil:
    """D = ds * lam (a kept sigma', values or bits: _ds_bits) and (gb != NULL) gb += alpha * bias
    sums of D, one pass."""
    if _ds_bits(act, width):
        if real is float:
            bn_c_bitsmul_gb_f32(width, batch, scalar, <const unsigned char*>ds, lam, D, alpha, gb)
        else:
            bn_c_bitsmul_gb(width, batch, scalar, <const unsigned char*>ds, lam, D, alpha, gb)
    elif real is float:
        bn_c_dmul_gb_f32(width, batch, scalar, <const float*>ds, lam, D, alpha, gb)
    else:
        bn_c_dmul_gb(width, batch, scalar, <const double*>ds, lam, D, alpha, gb)


# ---------------------------------------------------------------------------------------------
# Helpers.  The bias is added in the element-wise pass, not in the GEMM (one pass, not two).

cdef inline int _valid(int act, int bias) noexcept nogil:
    return 0 <= act <= 2 and 0 <= bias <= 1


cdef inline bint _ds_bits(int act, int width) noexcept nogil:
    """Whether a kept sigma' is bits (ReLU's is 0 or 1; on the BLAS path, where the fused
    kernels' tiles do not read it) rather than values: 32 (float) or 64 (double) times less memory
    to write in the forward and to read in every adjoint step."""
    return act == BN_RELU and width > FUSED_MAX


cdef Py_ssize_t bn_deriv_bytes(int act, int width, int batch, size_t itemsize) noexcept nogil:
    if _ds_bits(act, width):
        return <Py_ssize_t>width * BITS_ROW(batch)
    return <Py_ssize_t>width * batch * <Py_ssize_t>itemsize


# ---------------------------------------------------------------------------------------------
# C-level kernels (see _kernels.pxd for the contracts)

cdef int bn_layer_forward(int act, int bias, int width, int batch, double h,
                          const real* W, const real* b, const real* u_in,
                          real* u_out, real* work) noexcept nogil:
    if not _valid(act, bias):
        return -1
    if width <= FUSED_MAX:                                     # one pass over L1 column tiles
        if real is float:
            bn_fused_forward_f32(act, width, batch, bias, h, W, b, u_in, u_out)
        else:
            bn_fused_forward(act, width, batch, bias, h, W, b, u_in, u_out)
        return 0
    if u_out != u_in:                                          # u_out = W u_in, then in place
        _gemm_wu(width, batch, width, W, u_in, 0.0, u_out)
        _c_update(act, width, batch, bias, h, b, u_out, u_in, u_out)
    else:
        _gemm_wu(width, batch, width, W, u_in, 0.0, work)      # work = W u_in
        _c_update(act, width, batch, bias, h, b, work, u_in, u_out)
    return 0


cdef int bn_layer_backward(int act, int bias, int width, int batch, double h,
                           const real* W, const real* b, const real* u,
                           const real* lam_in, real* lam_out,
                           real* gW, real* gb, real* work) noexcept nogil:
    if not _valid(act, bias):
        return -1
    if width <= FUSED_MAX:                                     # one pass over L1 column tiles
        if real is float:
            bn_fused_backward_f32(act, width, batch, bias, h, W, b, u, lam_in, lam_out, gW, gb)
        else:
            bn_fused_backward(act, width, batch, bias, h, W, b, u, lam_in, lam_out, gW, gb)
        return 0
    _gemm_wu(width, batch, width, W, u, 0.0, work)             # work = W u
    _c_deriv_gb(act, width, batch, bias, b, work, lam_in, h, gb)   # work = D, gb += h sums of D
    _backward_gemms(width, batch, h, W, u, lam_in, lam_out, gW, work)
    return 0


cdef inline void _backward_gemms(int width, int batch, double h, const real* W, const real* u,
                                 const real* lam_in, real* lam_out, real* gW,
                                 const real* D) noexcept nogil:
    """gW += h D u^T (gW != NULL), lam_out = lam_in + h W^T D (lam_out != NULL)."""
    if gW != NULL:
        _gemm_abt(width, width, batch, h, D, u, gW)            # gW += h D u^T
    if lam_out != NULL:
        if lam_out != lam_in:
            memcpy(lam_out, lam_in, <size_t>width * batch * sizeof(real))
        _gemm_atb(width, batch, width, h, W, D, lam_out)       # lam_out += h W^T D


cdef int bn_layer_adjoint(int act, int bias, int width, int batch, double h,
                          const real* W, const real* b, const real* u,
                          const real* lam_in, real* lam_out, real* work) noexcept nogil:
    return bn_layer_backward(act, bias, width, batch, h, W, b, u, lam_in, lam_out,
                             <real*>NULL, <real*>NULL, work)


cdef int bn_layer_gradient(int act, int bias, int width, int batch, double h,
                           const real* W, const real* b, const real* u,
                           const real* lam, real* gW, real* gb, real* work) noexcept nogil:
    return bn_layer_backward(act, bias, width, batch, h, W, b, u, lam, <real*>NULL, gW, gb, work)


cdef inline void _forward_ds(int act, int bias, int width, int batch, double h, const real* W,
                             const real* b, const real* u_in, real* u_out, void* ds,
                             real* work) noexcept nogil:
    """u_out = u_in + h sigma(W u_in + b) and ds = sigma'(W u_in + b); u_out may equal u_in (then
    W u_in goes into work first; the fused kernels work in place)."""
    cdef real* z = work if u_out == u_in else u_out
    if width <= FUSED_MAX:
        if real is float:
            bn_fused_forward_ds_f32(act, width, batch, bias, h, W, b, u_in, u_out, <float*>ds)
        else:
            bn_fused_forward_ds(act, width, batch, bias, h, W, b, u_in, u_out, <double*>ds)
    else:                                                      # z = W u_in, then the update
        _gemm_wu(width, batch, width, W, u_in, 0.0, z)
        _c_update_ds(act, width, batch, bias, h, b, z, u_in, u_out, ds)


cdef int bn_layer_forward_ds(int act, int bias, int width, int batch, double h, const real* W,
                             const real* b, const real* u_in, real* u_out, void* ds,
                             real* work) noexcept nogil:
    if not _valid(act, bias):
        return -1
    _forward_ds(act, bias, width, batch, h, W, b, u_in, u_out, ds, work)
    return 0


cdef int bn_layer_derivs(int act, int bias, int width, int batch, const real* W, const real* b,
                         const real* u, void* ds, real* work) noexcept nogil:
    if not _valid(act, bias):
        return -1
    _forward_ds(act, bias, width, batch, 0.0, W, b, u, work, ds, work)   # the step is not kept
    return 0


cdef int bn_layer_backward_ds(int act, int bias, int width, int batch, double h, const real* W,
                              const real* u, const void* ds, const real* lam_in, real* lam_out,
                              real* gW, real* gb, real* work) noexcept nogil:
    if not _valid(act, bias):
        return -1
    if width <= FUSED_MAX:
        if real is float:
            bn_fused_backward_ds_f32(width, batch, bias, h, W, u, <const float*>ds, lam_in,
                                     lam_out, gW, gb)
        else:
            bn_fused_backward_ds(width, batch, bias, h, W, u, <const double*>ds, lam_in, lam_out,
                                 gW, gb)
        return 0
    # D = ds * lam (no W u GEMM, no activation), gb += h sums of D, then the GEMMs
    _c_dmul_gb(act, width, batch, bias, ds, lam_in, work, h, gb)
    _backward_gemms(width, batch, h, W, u, lam_in, lam_out, gW, work)
    return 0


cdef int bn_opening_forward(int act, int bias, int width, int nfeat, int batch,
                            const real* W, const real* b, const real* x,
                            real* u_out) noexcept nogil:
    if not _valid(act, bias):
        return -1
    _gemm_wu(width, batch, nfeat, W, x, 0.0, u_out)            # u_out = W x
    _c_update(act, width, batch, bias, 0.0, b, u_out, <real*>NULL, u_out)
    return 0


cdef int bn_opening_gradient(int act, int bias, int width, int nfeat, int batch,
                             const real* W, const real* b, const real* x,
                             const real* lam0, real* gW, real* gb,
                             real* work) noexcept nogil:
    if not _valid(act, bias):
        return -1
    _gemm_wu(width, batch, nfeat, W, x, 0.0, work)
    _c_deriv_gb(act, width, batch, bias, b, work, lam0, 1.0, gb)   # work = D, gb += sums of D
    _gemm_abt(width, nfeat, batch, 1.0, work, x, gW)           # gW += D x^T
    return 0


cdef void bn_opening_pad(int nfeat, int width, int batch, const real* x,
                         real* u_out) noexcept nogil:
    cdef size_t n = <size_t>nfeat * batch
    memcpy(u_out, x, n * sizeof(real))
    memset(u_out + n, 0, (<size_t>width * batch - n) * sizeof(real))


cdef inline bint _keep_derivs(int width, size_t itemsize) noexcept nogil:
    """Whether a serial net stores sigma' (derivs) for its backward at this width.  Storing it
    costs writing and reading one value per state value; it saves W u (2 width flops per value)
    and the activation.  Measured (one thread): it pays from width 17 in float32 (at width 32,
    fwd+bwd 7.2 ms instead of 7.8 ms; at width 8 it loses: 2.8 against 2.5 ms) and above the
    fused widths in float64 (at width 32 float64 the fused kernels are bound by memory traffic
    already: 21.5 against 14.6 ms; at 220 and 512 it saves a quarter of the GEMMs)."""
    return width * 4 > 16 * <int>itemsize


cdef int bn_net_forward(int act, int bias, int width, int batch, double h, int n_layers,
                        const real* theta, Py_ssize_t stride, real* states,
                        real* work, void* derivs) noexcept nogil:
    cdef Py_ssize_t n, blk = <Py_ssize_t>width * batch
    cdef Py_ssize_t dblk = bn_deriv_bytes(act, width, batch, sizeof(real))
    cdef const real* W
    if not _valid(act, bias):
        return -1
    for n in range(n_layers):
        W = theta + n * stride
        if derivs == NULL or not _keep_derivs(width, sizeof(real)):
            if bn_layer_forward(act, bias, width, batch, h, W, W + width * width,
                                states + n * blk, states + (n + 1) * blk, work) != 0:
                return -1
        else:
            # u_{n+1} = u_n + h sigma(W u_n + b) and derivs[n] = sigma'(W u_n + b): the backward
            # then needs no W u GEMM and no activation pass
            _forward_ds(act, bias, width, batch, h, W, W + width * width, states + n * blk,
                        states + (n + 1) * blk, <char*>derivs + n * dblk, work)
    return 0


cdef int bn_net_backward(int act, int bias, int width, int batch, double h, int n_layers,
                         const real* theta, Py_ssize_t stride, const real* states,
                         real* lam, real* grad, real* work, const void* derivs) noexcept nogil:
    cdef Py_ssize_t n, blk = <Py_ssize_t>width * batch
    cdef Py_ssize_t dblk = bn_deriv_bytes(act, width, batch, sizeof(real))
    cdef const real* W
    cdef real* g
    if not _valid(act, bias):
        return -1
    for n in range(n_layers - 1, -1, -1):
        W = theta + n * stride
        g = grad + n * stride
        if derivs == NULL or not _keep_derivs(width, sizeof(real)):
            if bn_layer_backward(act, bias, width, batch, h, W, W + width * width,
                                 states + n * blk, lam, lam, g, g + width * width, work) != 0:
                return -1
        else:
            bn_layer_backward_ds(act, bias, width, batch, h, W, states + n * blk,
                                 <const char*>derivs + n * dblk, lam, lam, g, g + width * width,
                                 work)
    return 0


# ---------------------------------------------------------------------------------------------
# Python wrappers.  Each checks its arrays, then calls a cdef twin specialised to the precision of
# the state argument (float64 or float32), which releases the GIL.

DTYPES = (np.dtype(np.float64), np.dtype(np.float32))   # the precisions of the kernels


def _state_dtype(a, str name):
    """The precision a kernel call runs in: the dtype of its state argument ``a``."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(a).__name__}")
    if a.dtype not in DTYPES:
        raise ValueError(f"{name} must have dtype float64 or float32, got {a.dtype}")
    return a.dtype


def _realc(a, str name, int ndim, dtype):
    """Return a as itself after checking it is a C-contiguous array of ``dtype`` and ndim dimensions."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(a).__name__}")
    if a.dtype != dtype:
        raise ValueError(f"{name} must have dtype {np.dtype(dtype).name}, got {a.dtype}")
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


def _bias_code(b, int width, dtype):
    _realc(b, "b", 1, dtype)
    if b.shape[0] == width:
        return BN_BIAS_CHANNEL
    if b.shape[0] == 1:
        return BN_BIAS_SCALAR
    raise ValueError(f"b must have {width} (per channel) or 1 (scalar) entries, got {b.shape[0]}")


def _check_layer(W, b, u, str uname):
    """(width, batch, bias code, dtype) of a residual layer's W, b and state u."""
    dtype = _state_dtype(u, uname)
    _realc(W, "W", 2, dtype)
    _realc(u, uname, 2, dtype)
    width = W.shape[0]
    if W.shape[1] != width:
        raise ValueError(f"W must be square, got shape {W.shape}")
    if u.shape[0] != width:
        raise ValueError(f"{uname} must have shape (width={width}, batch), got {u.shape}")
    return width, u.shape[1], _bias_code(b, width, dtype), dtype


def _same_shape(a, str name, shape, dtype):
    _realc(a, name, 2, dtype)
    if a.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {a.shape}")
    return a


def _work(work, Py_ssize_t n, dtype):
    if work is None:
        return np.empty(n, dtype)
    _realc(work, "work", 1, dtype)
    if work.shape[0] < n:
        raise ValueError(f"work must hold at least {n} values, got {work.shape[0]}")
    return _writable(work, "work")


cdef int _forward_call(int act, int bt, double h, const real[:, ::1] W, const real[::1] b,
                       const real[:, ::1] u, real[:, ::1] o, real[::1] wk) except -1:
    cdef int w = u.shape[0], nb = u.shape[1]
    if w * nb > 0:
        with nogil:
            bn_layer_forward(act, bt, w, nb, h, &W[0, 0], &b[0], &u[0, 0], &o[0, 0], &wk[0])
    return 0


def layer_forward(W, b, u_in, double h, activation, u_out=None, work=None):
    """Residual step ``u_out = u_in + h * sigma(W @ u_in + b)`` on a (width, batch) block.

    ``u_out=None`` allocates the result; ``u_out is u_in`` updates in place.  Returns u_out.
    float64 or float32, as ``u_in`` (every array of that dtype).
    """
    width, batch, bias, dtype = _check_layer(W, b, u_in, "u_in")
    cdef int act = _act_code(activation)
    if u_out is None:
        u_out = np.empty_like(u_in)
    _writable(_same_shape(u_out, "u_out", u_in.shape, dtype), "u_out")
    work = _work(work, width * batch, dtype)
    if dtype == np.float32:
        _forward_call[float](act, bias, h, W, b, u_in, u_out, work)
    else:
        _forward_call[double](act, bias, h, W, b, u_in, u_out, work)
    return u_out


cdef int _backward_call(int act, int bt, double h, const real[:, ::1] W, const real[::1] b,
                        const real[:, ::1] u, const real[:, ::1] lam, real[:, ::1] o,
                        gW, gb, real[::1] wk) except -1:
    cdef real[:, ::1] gWv
    cdef real[::1] gbv
    cdef real* pgW = NULL
    cdef real* pgb = NULL
    cdef int w = u.shape[0], nb = u.shape[1]
    if gW is not None:
        gWv = gW
        gbv = gb
        pgW = &gWv[0, 0]
        pgb = &gbv[0]
    if w * nb > 0:
        with nogil:
            bn_layer_backward(act, bt, w, nb, h, &W[0, 0], &b[0], &u[0, 0], &lam[0, 0],
                              &o[0, 0], pgW, pgb, &wk[0])
    return 0


def layer_backward(W, b, u, lam_in, double h, activation, lam_out=None, gW=None, gb=None,
                   work=None):
    """Adjoint and parameter gradient of one residual step at primal input ``u``.

    Computes ``lam_out = lam_in + h W^T (sigma'(W u + b) * lam_in)`` (``lam_out=None`` allocates,
    ``lam_out is lam_in`` works in place) and, when given, ACCUMULATES
    ``gW += h D u^T`` and ``gb += h * (row sums | total sum) of D`` with D = sigma'(W u + b) * lam_in.
    Returns lam_out.  float64 or float32, as ``u`` (every array of that dtype).
    """
    width, batch, bias, dtype = _check_layer(W, b, u, "u")
    cdef int act = _act_code(activation)
    _same_shape(lam_in, "lam_in", u.shape, dtype)
    if lam_out is None:
        lam_out = np.empty_like(u)
    _writable(_same_shape(lam_out, "lam_out", u.shape, dtype), "lam_out")
    if lam_out is u or lam_in is u:
        raise ValueError("lam_in / lam_out must not alias u")
    if (gW is None) != (gb is None):
        raise ValueError("give both gW and gb, or neither")
    work = _work(work, width * batch, dtype)
    if gW is not None:
        _writable(_same_shape(gW, "gW", W.shape, dtype), "gW")
        _writable(_realc(gb, "gb", 1, dtype), "gb")
        if gb.shape != b.shape:
            raise ValueError(f"gb must have shape {b.shape}, got {gb.shape}")
    if dtype == np.float32:
        _backward_call[float](act, bias, h, W, b, u, lam_in, lam_out, gW, gb, work)
    else:
        _backward_call[double](act, bias, h, W, b, u, lam_in, lam_out, gW, gb, work)
    return lam_out


def _opening_args(W, b, x):
    """Check a dense opening's W (width, nfeat), b and x (nfeat, batch);
    (width, nfeat, bias code, dtype)."""
    dtype = _state_dtype(x, "x")
    _realc(W, "W", 2, dtype)
    _realc(x, "x", 2, dtype)
    width, nfeat = W.shape
    if x.shape[0] != nfeat:
        raise ValueError(f"x must have shape (n_features={nfeat}, batch), got {x.shape}")
    return width, nfeat, _bias_code(b, width, dtype), dtype


cdef int _opening_call(int act, int bt, const real[:, ::1] W, const real[::1] b,
                       const real[:, ::1] x, real[:, ::1] o) except -1:
    cdef int w = W.shape[0], nf = W.shape[1], nb = x.shape[1]
    if w * nb * nf > 0:
        with nogil:
            bn_opening_forward(act, bt, w, nf, nb, &W[0, 0], &b[0], &x[0, 0], &o[0, 0])
    return 0


def opening_forward(W, b, x, activation, u_out=None):
    """Dense opening ``u_out = sigma(W @ x + b)``, W (width, nfeat), x (nfeat, batch); the
    precision of ``x``."""
    width, nfeat, bias, dtype = _opening_args(W, b, x)
    cdef int act = _act_code(activation)
    if u_out is None:
        u_out = np.empty((width, x.shape[1]), dtype)
    _writable(_same_shape(u_out, "u_out", (width, x.shape[1]), dtype), "u_out")
    if dtype == np.float32:
        _opening_call[float](act, bias, W, b, x, u_out)
    else:
        _opening_call[double](act, bias, W, b, x, u_out)
    return u_out


cdef int _opening_grad_call(int act, int bt, const real[:, ::1] W, const real[::1] b,
                            const real[:, ::1] x, const real[:, ::1] lam0, real[:, ::1] gW,
                            real[::1] gb, real[::1] wk) except -1:
    cdef int w = W.shape[0], nf = W.shape[1], nb = x.shape[1]
    if w * nb * nf > 0:
        with nogil:
            bn_opening_gradient(act, bt, w, nf, nb, &W[0, 0], &b[0], &x[0, 0], &lam0[0, 0],
                                &gW[0, 0], &gb[0], &wk[0])
    return 0


def opening_gradient(W, b, x, lam0, activation, gW, gb, work=None):
    """ACCUMULATE the dense opening's gradient: ``gW += D x^T``, ``gb += sums of D``,
    with D = sigma'(W x + b) * lam0; the precision of ``x``."""
    width, nfeat, bias, dtype = _opening_args(W, b, x)
    cdef int act = _act_code(activation)
    _same_shape(lam0, "lam0", (width, x.shape[1]), dtype)
    _writable(_same_shape(gW, "gW", W.shape, dtype), "gW")
    _writable(_realc(gb, "gb", 1, dtype), "gb")
    if gb.shape != b.shape:
        raise ValueError(f"gb must have shape {b.shape}, got {gb.shape}")
    work = _work(work, width * x.shape[1], dtype)
    if dtype == np.float32:
        _opening_grad_call[float](act, bias, W, b, x, lam0, gW, gb, work)
    else:
        _opening_grad_call[double](act, bias, W, b, x, lam0, gW, gb, work)


def _check_net(theta_layers, int width, int nb_bias, int n_layers, states, str sname):
    dtype = _state_dtype(states, sname)
    _realc(theta_layers, "theta_layers", 1, dtype)
    stride = width * width + nb_bias
    if nb_bias not in (1, width):
        raise ValueError(f"nb_bias must be 1 or width={width}, got {nb_bias}")
    if theta_layers.shape[0] != n_layers * stride:
        raise ValueError(f"theta_layers must hold n_layers*(width^2+nb_bias) = "
                         f"{n_layers * stride} entries, got {theta_layers.shape[0]}")
    _realc(states, sname, 3, dtype)
    if states.shape[0] != n_layers + 1 or states.shape[1] != width:
        raise ValueError(f"{sname} must have shape (n_layers+1={n_layers + 1}, width={width}, "
                         f"batch), got {states.shape}")
    return stride, (BN_BIAS_SCALAR if nb_bias == 1 and width != 1 else BN_BIAS_CHANNEL), dtype


cdef void* _addr(a):
    """The first byte of a C-contiguous array (writable or not: callers own the writes)."""
    cdef const unsigned char[::1] v = a.reshape(-1).view(np.uint8)
    return <void*>&v[0]


cdef int _net_forward_call(int act, int bt, double h, int nl, Py_ssize_t st,
                           const real[::1] theta, real[:, :, ::1] states,
                           real[::1] wk, derivs) except -1:
    cdef int w = states.shape[1], nb = states.shape[2]
    cdef void* pd = NULL
    if nl > 0 and w * nb > 0:
        if derivs is not None:
            pd = _addr(derivs)
        with nogil:
            bn_net_forward(act, bt, w, nb, h, nl, &theta[0], st, &states[0, 0, 0], &wk[0], pd)
    return 0


def _derivs(derivs, int act, int n_layers, int width, Py_ssize_t batch, dtype):
    if derivs is not None:
        shape, dt = _deriv_block(act, width, batch, dtype)
        if not isinstance(derivs, np.ndarray) or derivs.dtype != dt \
                or not derivs.flags.c_contiguous or derivs.shape != (n_layers,) + shape:
            got = (derivs.dtype, derivs.shape) if isinstance(derivs, np.ndarray) else type(derivs).__name__
            raise ValueError(f"derivs must be a C-contiguous {dt.name} array of shape "
                             f"{(n_layers,) + shape} (deriv_block), got {got}")
    return derivs


def _deriv_block(int act, int width, Py_ssize_t batch, dtype):
    if _ds_bits(act, width):
        return (width, BITS_ROW(batch)), np.dtype(np.uint8)
    return (width, batch), np.dtype(dtype)


def deriv_block(activation, int width, Py_ssize_t batch, dtype) -> tuple:
    """``(shape, dtype)`` of one layer's kept sigma' for a ``(width, batch)`` state block of
    ``dtype``: the values' block, or for ReLU on the BLAS path (width > FUSED_MAX_WIDTH) one bit
    per value, ``(width, ceil(batch / 8))`` uint8 (bit j % 8 of byte j // 8 of row c is sigma' of
    column j).  ``net_forward``'s ``derivs`` and ``LayerApp.set_deriv`` take arrays of it."""
    dt = np.dtype(dtype)
    if dt not in DTYPES:
        raise ValueError(f"dtype must be float64 or float32, got {dtype!r}")
    return _deriv_block(_act_code(activation), width, batch, dt)


def keeps_derivs(int width, dtype) -> bool:
    """Whether :func:`net_forward` / :func:`net_backward` use a ``derivs`` array at this width and
    dtype (elsewhere they leave it untouched, and a caller need not allocate one)."""
    return _keep_derivs(width, np.dtype(dtype).itemsize)


def net_forward(theta_layers, int width, int nb_bias, int n_layers, double h, activation,
                states, work=None, derivs=None):
    """Step all residual layers: ``states[n+1] = states[n] + h sigma(W_n states[n] + b_n)``.

    ``theta_layers`` is the contiguous slice of the flat parameter vector holding the layers
    (each W_n row-major then b_n with nb_bias entries), in the dtype of ``states``;
    ``states`` (n_layers+1, width, batch) holds u_0 in block 0 on entry and is filled in place.

    ``derivs`` (optional, (n_layers, width, batch), writeable, the dtype of ``states``): scratch
    that this forward fills with the activation derivatives for a following
    ``net_backward(..., derivs=derivs)`` of the same parameters and states, which then skips one
    product W u and the activation per layer where that pays: widths above 32 in float64, above
    16 in float32 (elsewhere it is left untouched).  The states are the same, bit for bit, with
    or without it.
    """
    stride, bias, dtype = _check_net(theta_layers, width, nb_bias, n_layers, states, "states")
    _writable(states, "states")
    cdef int act = _act_code(activation)
    work = _work(work, width * states.shape[2], dtype)
    _derivs(derivs, act, n_layers, width, states.shape[2], dtype)
    if derivs is not None:
        _writable(derivs, "derivs")
    if dtype == np.float32:
        _net_forward_call[float](act, bias, h, n_layers, stride, theta_layers, states, work,
                                 derivs)
    else:
        _net_forward_call[double](act, bias, h, n_layers, stride, theta_layers, states, work,
                                  derivs)
    return states


cdef int _net_backward_call(int act, int bt, double h, int nl, Py_ssize_t st,
                            const real[::1] theta, const real[:, :, ::1] states,
                            real[:, ::1] lam, real[::1] grad, real[::1] wk,
                            derivs) except -1:
    cdef int w = states.shape[1], nb = states.shape[2]
    cdef const void* pd = NULL
    if nl > 0 and w * nb > 0:
        if derivs is not None:
            pd = _addr(derivs)
        with nogil:
            bn_net_backward(act, bt, w, nb, h, nl, &theta[0], st, &states[0, 0, 0], &lam[0, 0],
                            &grad[0], &wk[0], pd)
    return 0


def net_backward(theta_layers, int width, int nb_bias, int n_layers, double h, activation,
                 states, lam, grad_layers, work=None, derivs=None):
    """Backward over all residual layers: lam (width, batch) holds lambda_N on entry and
    lambda_0 on exit; grad_layers (same layout as theta_layers) is ACCUMULATED.  Every array in
    the dtype of ``states``.  ``derivs``: the array the ``net_forward`` that computed ``states``
    (same parameters) filled; the results are the same, bit for bit, with or without it."""
    stride, bias, dtype = _check_net(theta_layers, width, nb_bias, n_layers, states, "states")
    cdef int act = _act_code(activation)
    _writable(_same_shape(lam, "lam", (width, states.shape[2]), dtype), "lam")
    _writable(_realc(grad_layers, "grad_layers", 1, dtype), "grad_layers")
    if grad_layers.shape != theta_layers.shape:
        raise ValueError(f"grad_layers must have shape {theta_layers.shape}, "
                         f"got {grad_layers.shape}")
    work = _work(work, width * states.shape[2], dtype)
    _derivs(derivs, act, n_layers, width, states.shape[2], dtype)
    if dtype == np.float32:
        _net_backward_call[float](act, bias, h, n_layers, stride, theta_layers, states, lam,
                                  grad_layers, work, derivs)
    else:
        _net_backward_call[double](act, bias, h, n_layers, stride, theta_layers, states, lam,
                                   grad_layers, work, derivs)
    return lam


cdef int _tanh_call(const real[::1] x, real[::1] o) except -1:
    cdef int n = x.shape[0]
    if n > 0:
        with nogil:
            if real is float:
                bn_c_tanh_f32(n, &x[0], &o[0])
            else:
                bn_c_tanh(n, &x[0], &o[0])
    return 0


def tanh(x, out=None):
    """The kernels' own vectorised tanh of a 1-D float64 or float32 array (tests, benchmarks).

    float64: within 2.5 ulp of the exact tanh; float32: computed in float32, within 2.5 float32
    ulp.  The derivative the kernels use is 1 - t^2 of this same t.  ``out=None``
    allocates; ``out`` may be ``x``.
    """
    dtype = _state_dtype(x, "x")
    _realc(x, "x", 1, dtype)
    if out is None:
        out = np.empty_like(x)
    _writable(_realc(out, "out", 1, dtype), "out")
    if out.shape != x.shape:
        raise ValueError(f"out must have shape {x.shape}, got {out.shape}")
    if dtype == np.float32:
        _tanh_call[float](x, out)
    else:
        _tanh_call[double](x, out)
    return out
