/* braidnet convolution kernels, plain C part: zero padding, the direct (loop) correlation, the
   im2col columns of the GEMM path and the direct weight gradient.  Implemented in bn_conv.c;
   compiled into the braidnet._convkernels extension (setup.py) and used by
   braidnet/_convkernels.pyx via `cdef extern from "bn_conv.h"`.  The BLAS calls (GEMM path), the
   activation passes (bn_kernels.h's bn_c_update / bn_c_deriv) and the entry points stay in
   _convkernels.pyx.

   Layout: a state block of c channels of H x W pixels for a batch of B samples is ONE C-contiguous
   (c, H, W, B) array of doubles, batch fastest: element (ch, y, x, s) at ((ch*H + y)*W + x)*B + s.
   A padded block P (c, H + 2p, W + 2p, B) holds the same with p zero pixels around every image, so
   the taps of a stencil read contiguous runs with no bounds tests.  A kernel K is row-major
   (c_out, c_in, k, k), odd k, p = k / 2 ("same" zero padding, stride 1); the convolution is a
   correlation (as torch.nn.functional.conv2d):
       Z[o, y, x, s] = sum_{i, dy, dx} K[o, i, dy, dx] * U[i, y + dy - p, x + dx - p, s].

   Sizes: every block must hold fewer than 2^31 doubles (the caller checks).  All functions run
   without locks or allocation.  With GCC on x86-64 Linux each has an AVX2/FMA clone picked at load
   time (-DBN_NO_CLONES: the baseline only). */
#ifndef BN_CONV_H
#define BN_CONV_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* P (c, H+2p, W+2p, B) = U (c, H, W, B) with a border of p zero pixels. */
void bn_conv_pad(int c, int H, int W, int B, int p, const double *U, double *P);

/* Direct correlation from the padded input P (c_in, H+2p, W+2p, B), p = k/2:
       Z[o, y, x, :] (=|+=) sum_{i,dy,dx} K[o,i,dy,dx] P[i, y+dy, x+dx, :]
   for all o < c_out; Z (c_out, H, W, B) is overwritten (accumulate == 0) or added to.
   Z must not overlap P. */
void bn_conv_direct(int c_out, int c_in, int k, int H, int W, int B, const double *K,
                    const double *P, double *Z, int accumulate);

/* im2col columns of image rows y0 <= y < y1, from the padded input P (c_in, H+2p, W+2p, B):
   cols ((c_in*k*k), (y1-y0)*W*B), row (i*k + dy)*k + dx holding P[i, y+dy, x+dx, s] at column
   ((y-y0)*W + x)*B + s.  Then K (c_out, c_in*k*k) @ cols is Z's rows y0..y1-1. */
void bn_conv_im2col(int c_in, int k, int H, int W, int B, int y0, int y1, const double *P,
                    double *cols);

/* Direct weight gradient: gK[o,i,dy,dx] += alpha * sum_{y,x,s} D[o,y,x,s] P[i, y+dy, x+dx, s]
   with D (c_out, H, W, B) and the padded input P (c_in, H+2p, W+2p, B). */
void bn_conv_wgrad_direct(int c_out, int c_in, int k, int H, int W, int B, double alpha,
                          const double *D, const double *P, double *gK);

#ifdef __cplusplus
}
#endif

#endif /* BN_CONV_H */
