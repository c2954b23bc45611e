# C-level kernels of convolutional residual layers (issue 15), for other Cython modules:
#
#     from braidnet._convkernels cimport bn_conv_forward, bn_conv_backward, bn_conv_work_size
#
# State layout: the states of a batch at one layer are ONE C-contiguous (c, H, W, batch) block,
# batch fastest: element (ch, y, x, s) at ((ch*H + y)*W + x)*batch + s.  As a 2-D array it is the
# dense kernels' (width, batch) block with width = c*H*W, so an MGRIT vector holds and ships it
# unchanged and the dense classifier reads it as it is.  Opening inputs: (H, W, batch) images
# (replicating openings) or (c_in, H, W, batch) (learned convolution opening).
#
# Parameter layout of one convolutional layer: K row-major (c, c, k, k), K[o, i, dy, dx], then b:
# c entries (BN_BIAS_CHANNEL) or 1 (BN_BIAS_SCALAR), bias codes as in braidnet._kernels.  The
# learned opening holds K (c, c_in, k, k) then b likewise.  k is odd, "same" zero padding
# p = k // 2, stride 1; the convolution is a correlation (like torch.nn.functional.conv2d):
#     (K * u)[o, y, x, s] = sum_{i, dy, dx} K[o, i, dy, dx] u[i, y + dy - p, x + dx - p, s].
# Activation and bias codes are braidnet._kernels' (BN_TANH, BN_RELU, BN_SMOOTHRELU;
# BN_BIAS_CHANNEL, BN_BIAS_SCALAR); the activation passes are bn_kernels.c's.
#
# `path`: BN_CONV_AUTO (the measured per-shape rule, bn_conv_path), BN_CONV_DIRECT (loops) or
# BN_CONV_GEMM (im2col + BLAS dgemm).  Both give the same values up to rounding.
#
# All kernels are `noexcept nogil`, allocate nothing, and return 0 on success or -1 for an unknown
# activation / bias / path code or an even or non-positive k (nothing is written then).  `work` is
# caller-provided scratch of at least bn_conv_work_size(path, c_out, c_in, k, H, W, batch) doubles
# (c_out = c_in = c for a layer) that must not alias any other argument.  Every block must hold
# fewer than 2^31 doubles (BLAS takes 32-bit sizes).

cdef enum:
    BN_CONV_AUTO = 0
    BN_CONV_DIRECT = 1
    BN_CONV_GEMM = 2

# The path `path` resolves to for this shape: BN_CONV_DIRECT or BN_CONV_GEMM (-1: bad code).
cdef int bn_conv_path(int path, int c_out, int c_in, int k, int H, int W, int batch) noexcept nogil

# Doubles of scratch the kernels below need for this shape and path (-1: bad path code).
cdef Py_ssize_t bn_conv_work_size(int path, int c_out, int c_in, int k, int H, int W,
                                  int batch) noexcept nogil

# u_out = u_in + h * sigma(K * u_in + b), K (c, c, k, k).  u_out may equal u_in (in place).
cdef int bn_conv_forward(int act, int bias, int path, int c, int k, int H, int W, int batch,
                         double h, const double* K, const double* b, const double* u_in,
                         double* u_out, double* work) noexcept nogil

# Adjoint and gradient at the layer's primal INPUT state u, with D = sigma'(K * u + b) * lam_in:
#   lam_out = lam_in + h K^T * D     (transposed convolution; skipped if lam_out == NULL)
#   gK[o, i, dy, dx] += h * sum_{y,x,s} D[o, y, x, s] u[i, y+dy-p, x+dx-p, s]   (if gK != NULL)
#   gb[o] += h * sum D[o]  (channel)  or  gb[0] += h * sum D  (scalar)           (if gb != NULL)
# Gradients are ACCUMULATED.  lam_out may equal lam_in; neither may alias u.
cdef int bn_conv_backward(int act, int bias, int path, int c, int k, int H, int W, int batch,
                          double h, const double* K, const double* b, const double* u,
                          const double* lam_in, double* lam_out, double* gK, double* gb,
                          double* work) noexcept nogil

# bn_conv_backward with gK = gb = NULL.
cdef int bn_conv_adjoint(int act, int bias, int path, int c, int k, int H, int W, int batch,
                         double h, const double* K, const double* b, const double* u,
                         const double* lam_in, double* lam_out, double* work) noexcept nogil

# bn_conv_backward with lam_out = NULL (lam = lambda_{n+1}, u = u_n).
cdef int bn_conv_gradient(int act, int bias, int path, int c, int k, int H, int W, int batch,
                          double h, const double* K, const double* b, const double* u,
                          const double* lam, double* gK, double* gb, double* work) noexcept nogil

# The plain correlation z = K * x, K (c_out, c_in, k, k), x (c_in, H, W, batch), z (c_out, ...):
# no bias, no activation (the linear part of every kernel; tests, Jacobian-vector products).
cdef int bn_conv_apply(int path, int c_out, int c_in, int k, int H, int W, int batch,
                       const double* K, const double* x, double* z, double* work) noexcept nogil

# Learned opening u_out = sigma(K * x + b), K (c, c_in, k, k), x (c_in, H, W, batch),
# u_out (c, H, W, batch).
cdef int bn_conv_opening_forward(int act, int bias, int path, int c, int c_in, int k, int H,
                                 int W, int batch, const double* K, const double* b,
                                 const double* x, double* u_out, double* work) noexcept nogil

# Its gradient, ACCUMULATED: D = sigma'(K * x + b) * lam0, gK += D (x) x correlations,
# gb += sums of D.  lam0 = dJ/du_0.
cdef int bn_conv_opening_gradient(int act, int bias, int path, int c, int c_in, int k, int H,
                                  int W, int batch, const double* K, const double* b,
                                  const double* x, const double* lam0, double* gK, double* gb,
                                  double* work) noexcept nogil

# Replicating opening: u_out[ch] = x for every ch < c; x (H, W, batch).
cdef void bn_conv_opening_replicate(int c, int H, int W, int batch, const double* x,
                                    double* u_out) noexcept nogil

# LPT's MNIST opening: u_out[ch] = tanh(6 x / 255 - 3) + 1 for every ch < c; x (H, W, batch)
# (pixel values 0..255).  tanh is bn_kernels.c's.
cdef void bn_conv_opening_mnist(int c, int H, int W, int batch, const double* x,
                                double* u_out) noexcept nogil

# Global average pooling: p[ch, s] = (1/(H W)) sum_{y,x} u[ch, y, x, s]; p (c, batch).
cdef void bn_conv_pool(int c, int H, int W, int batch, const double* u, double* p) noexcept nogil

# Its transpose: lam[ch, y, x, s] = g[ch, s] / (H W) (overwritten); g (c, batch).
cdef void bn_conv_pool_transpose(int c, int H, int W, int batch, const double* g,
                                 double* lam) noexcept nogil
