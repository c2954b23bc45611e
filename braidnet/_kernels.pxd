# C-level per-layer kernels of the braidnet ResNet, for other Cython modules:
#
#     from braidnet._kernels cimport bn_layer_forward, bn_layer_backward, BN_TANH, BN_BIAS_CHANNEL
#
# State layout: the states of a batch at one layer are ONE C-contiguous row-major block of
# shape (width, batch): row c holds channel c of every sample (the paper's U = [u^1 ... u^B], so
# W @ U is the layer map).  Opening inputs x are (n_features, batch) in the same layout.
#
# Parameter layout of one residual layer (what the flat parameter vector of braidnet.resnet holds
# per layer): W row-major (width, width), then b: `width` entries (BN_BIAS_CHANNEL) or 1 entry
# (BN_BIAS_SCALAR).  The opening layer holds W (width, n_features) then b the same way.
#
# All kernels are `noexcept nogil`, allocate nothing, and return 0 on success or -1 for an unknown
# activation / bias code (nothing is written then).  `work` is caller-provided scratch of
# width*batch values that must not alias any other argument.
#
# Every kernel is generic over `real` (float or double): one precision per call, every array
# argument of that type (the step size h stays a double).  The float64 results are bit for bit
# those of the float64-only kernels before float32 existed.

ctypedef fused real:
    float
    double

cdef enum:
    # activation codes
    BN_TANH = 0
    BN_RELU = 1
    BN_SMOOTHRELU = 2   # LPT's smoothed ReLU, eta = 0.1

cdef enum:
    # bias codes
    BN_BIAS_CHANNEL = 0  # one bias per channel: b has `width` entries
    BN_BIAS_SCALAR = 1   # one scalar bias per layer: b has 1 entry

# u_out = u_in + h * sigma(W u_in + b).  u_out may equal u_in (in place).
cdef int bn_layer_forward(int act, int bias, int width, int batch, double h,
                          const real* W, const real* b, const real* u_in,
                          real* u_out, real* work) noexcept nogil

# lam_out = lam_in + h * (dF/du (u))^T lam_in = lam_in + h W^T (sigma'(W u + b) * lam_in),
# with F(u) = sigma(W u + b) evaluated at the layer's primal INPUT state u.
# lam_out may equal lam_in (in place); neither may alias u.
cdef int bn_layer_adjoint(int act, int bias, int width, int batch, double h,
                          const real* W, const real* b, const real* u,
                          const real* lam_in, real* lam_out, real* work) noexcept nogil

# Parameter gradient of the layer, ACCUMULATED: with D = sigma'(W u + b) * lam,
#   gW += h * D u^T                       (width x width, row-major)
#   gb += h * sum_j D[:, j]   (channel)   or   gb[0] += h * sum D   (scalar)
# lam is the adjoint entering the step backward (lambda_{n+1}), u the primal input (u_n).
cdef int bn_layer_gradient(int act, int bias, int width, int batch, double h,
                           const real* W, const real* b, const real* u,
                           const real* lam, real* gW, real* gb, real* work) noexcept nogil

# bn_layer_gradient followed by bn_layer_adjoint, sharing one GEMM and one activation pass.
# gW/gb may be NULL to skip the gradient.  lam_out may equal lam_in.
cdef int bn_layer_backward(int act, int bias, int width, int batch, double h,
                           const real* W, const real* b, const real* u,
                           const real* lam_in, real* lam_out,
                           real* gW, real* gb, real* work) noexcept nogil

# With sigma' kept (a layer applied many times at one primal state, e.g. every adjoint step of
# the layer-parallel solve on every level).  ds is one layer's kept sigma', bn_deriv_bytes bytes:
# the (width, batch) values of `real`, or for ReLU wider than the fused kernels one bit per value
# (rows of BN_BITS_ROW(batch) bytes, bn_kernels.h), which is 32-64 times less memory traffic.
# bn_layer_forward that also writes ds = sigma'(W u_in + b) (the same u_out bit for bit).
cdef int bn_layer_forward_ds(int act, int bias, int width, int batch, double h, const real* W,
                             const real* b, const real* u_in, real* u_out, void* ds,
                             real* work) noexcept nogil

# ds = sigma'(W u + b).
cdef int bn_layer_derivs(int act, int bias, int width, int batch, const real* W, const real* b,
                         const real* u, void* ds, real* work) noexcept nogil

# bn_layer_backward with ds from bn_layer_derivs(u) in place of W u and the activation: the same
# results bit for bit.  gW/gb and lam_out may be NULL (skip that part); lam_out may equal lam_in.
cdef int bn_layer_backward_ds(int act, int bias, int width, int batch, double h, const real* W,
                              const real* u, const void* ds, const real* lam_in, real* lam_out,
                              real* gW, real* gb, real* work) noexcept nogil

# Bytes of one layer's kept sigma' (ds above) for a (width, batch) block of itemsize-byte values.
cdef Py_ssize_t bn_deriv_bytes(int act, int width, int batch, size_t itemsize) noexcept nogil

# Dense opening: u_out = sigma(W x + b), W (width, nfeat), x (nfeat, batch), u_out (width, batch).
cdef int bn_opening_forward(int act, int bias, int width, int nfeat, int batch,
                            const real* W, const real* b, const real* x,
                            real* u_out) noexcept nogil

# Dense opening gradient, ACCUMULATED: D = sigma'(W x + b) * lam0, gW += D x^T, gb += row sums
# (or total sum) of D.  lam0 = dJ/du_0.
cdef int bn_opening_gradient(int act, int bias, int width, int nfeat, int batch,
                             const real* W, const real* b, const real* x,
                             const real* lam0, real* gW, real* gb,
                             real* work) noexcept nogil

# Zero-padding opening: u_out[:nfeat] = x, u_out[nfeat:] = 0 (requires width >= nfeat).
cdef void bn_opening_pad(int nfeat, int width, int batch, const real* x,
                         real* u_out) noexcept nogil

# Serial net: theta points at layer 0's block, blocks are `stride` values apart
# (stride = width*width + nb).  states holds n_layers+1 consecutive (width, batch) blocks; on entry
# block 0 is u_0, on exit block n is u_n.  derivs: NULL, or n_layers (width, batch) blocks of
# scratch this forward fills with sigma'(W_n u_n + b_n) for bn_net_backward (widths > 32 in double,
# > 16 in float: where keeping it is faster than recomputing), n_layers blocks of bn_deriv_bytes.
cdef int bn_net_forward(int act, int bias, int width, int batch, double h, int n_layers,
                        const real* theta, Py_ssize_t stride, real* states,
                        real* work, void* derivs) noexcept nogil

# Serial backward over all layers: lam holds lambda_N on entry and lambda_0 on exit;
# grad (same block layout as theta) is ACCUMULATED with each layer's parameter gradient.
# derivs: NULL, or what bn_net_forward filled for these states and parameters (saves the W u
# product and the activation of every layer; the same results bit for bit).
cdef int bn_net_backward(int act, int bias, int width, int batch, double h, int n_layers,
                         const real* theta, Py_ssize_t stride, const real* states,
                         real* lam, real* grad, real* work, const void* derivs) noexcept nogil
