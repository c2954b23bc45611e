/* braidnet per-layer kernels, SIMD C part: element-wise passes, the fused small-width path and a
   vectorised tanh.  Implemented in bn_kernels.c; compiled into the braidnet._kernels extension
   (setup.py) and used by braidnet/_kernels.pyx via `cdef extern from "bn_kernels.h"`.
   Checked on its own by test_kernels.c (scripts/check_kernels.sh).  The BLAS path for wide layers
   and the Python-facing API stay in _kernels.pyx.

   Every kernel exists twice, with the same contract: for double (the names below) and for float
   (the same name with _f32: bn_c_update_f32, ..., every pointer a float *; h stays a double and is
   rounded to float once).  Both are one source, bn_kernels_real.h, compiled once per type.

   Layout: a state block is ONE C-contiguous row-major (width, batch) array of values (row c holds
   channel c of every sample); W is row-major (width, width); b holds `width` entries (scalar == 0,
   one bias per channel) or 1 entry (scalar != 0, b[0] for every channel).

   Activation codes `act`: 0 = tanh, 1 = ReLU, 2 = smoothed ReLU of LPT with half width BN_ETA:
       sigma(x) = 0 (x <= -eta),  (x + eta)^2 / (4 eta) (|x| < eta),  x (x >= eta).
   Any other code is treated as 2: callers validate codes first (_kernels.pyx returns -1).

   tanh is the kernels' own vectorised one (bn_c_tanh): at most BN_TANH_ULP ulp from the exact
   tanh (ulp of the result; glibc's scalar tanh is itself up to 2 ulp off, so the two differ by up
   to 4 ulp), NaN propagates, tanh(+-0) = +-0, tanh(+-inf) = +-1.  The activation derivative for
   tanh is 1 - t*t of that same t.  float's tanh is computed in float, 8 lanes (the same range
   reduction and addition theorem with float constants and a shorter polynomial): at most
   BN_TANH_ULP_F32 float ulp from the exact tanh (measured over every float with |x| <= 10, in both
   builds: 2.33; beyond, +-1 exactly), and its derivative is 1 - t*t in float.

   All functions run without locks or allocation (scratch lives on the stack, under 40 KiB) and
   are safe to call from several threads.  With GCC on x86-64 Linux each has an AVX2/FMA
   (x86-64-v3) clone picked at load time by CPU features, next to the baseline one; define
   BN_NO_CLONES when compiling bn_kernels.c to build the baseline only. */
#ifndef BN_KERNELS_H
#define BN_KERNELS_H

#include <stddef.h>   /* ptrdiff_t */

#define BN_ETA 0.1        /* smoothed-ReLU half width (LPT) */
#define BN_FUSED_MAX 32   /* widest layer the fused kernels accept (bn_fused_forward/backward) */
#define BN_TANH_ULP 2.5   /* bound of bn_c_tanh's error, in ulp of the exact tanh (measured: 2.49) */
#define BN_TANH_ULP_F32 2.5  /* bound of bn_c_tanh_f32's error, in float ulp (measured: 2.33) */

#ifdef __cplusplus
extern "C" {
#endif

/* Element-wise pass of the BLAS (wide layer) path, for c < width, j < batch (offset c*batch+j):
   out = in + h sigma(z + b_c)   (in == NULL: out = sigma(z + b_c)).  z may equal out. */
void bn_c_update(int act, int width, int batch, int scalar, double h, const double *b,
                 const double *z, const double *in, double *out);

/* Element-wise pass of the BLAS path backward: z <- sigma'(z + b_c) * lam (z, lam (width, batch)). */
void bn_c_deriv(int act, int width, int batch, int scalar, const double *b, double *z,
                const double *lam);

/* Forward pass that also stores the derivative (serial nets keep it for their backward):
   out = in + h sigma(z + b_c), ds = sigma'(z + b_c), both (width, batch); z may equal out.
   out and ds are bit for bit what bn_c_update and bn_c_deriv (with lam = 1) would compute. */
void bn_c_update_ds(int act, int width, int batch, int scalar, double h, const double *b,
                    const double *z, const double *in, double *out, double *ds);

/* bn_c_deriv plus the bias gradient in the same pass: z <- D = sigma'(z + b_c) * lam and, unless
   gb == NULL, gb[c] += alpha * sum_j D[c, j] (or, scalar, gb[0] += alpha * sum D), the sums in
   double. */
void bn_c_deriv_gb(int act, int width, int batch, int scalar, const double *b, double *z,
                   const double *lam, double alpha, double *gb);

/* The same from a stored derivative: D = ds * lam (D may equal ds or lam) and, unless gb == NULL,
   the bias gradient as in bn_c_deriv_gb. */
void bn_c_dmul_gb(int width, int batch, int scalar, const double *ds, const double *lam,
                  double *D, double alpha, double *gb);

/* ReLU's sigma' (0 or 1) kept as bits, 32 (float) or 64 (double) times less memory than values:
   row c of a (width, batch) block at bits + c * BN_BITS_ROW(batch), column j at bit j % 8 of byte
   j / 8 (unused high bits of a row's last byte are 0).
   bn_c_update_bits: bn_c_update_ds for ReLU, with the derivative written as bits.
   bn_c_bitsmul_gb: bn_c_dmul_gb from those bits (the same D and sums bit for bit: D = 1.0 * lam
   or 0.0 * lam). */
#define BN_BITS_ROW(batch) (((batch) + 7) / 8)
void bn_c_update_bits(int width, int batch, int scalar, double h, const double *b,
                      const double *z, const double *in, double *out, unsigned char *bits);
void bn_c_bitsmul_gb(int width, int batch, int scalar, const unsigned char *bits,
                     const double *lam, double *D, double alpha, double *gb);

/* The MGRIT core's vector sum: y = a x + b y for j < n (b == 0: y = a x without reading y), every
   value rounded as the plain expression evaluated one operation at a time (no FMA). */
void bn_axpby(ptrdiff_t n, double a, const double *x, double b, double *y);

/* y[j] = tanh(x[j]) for j < n (y may equal x). */
void bn_c_tanh(int n, const double *x, double *y);

/* Fused residual step, 1 <= m <= BN_FUSED_MAX: u_out = u_in + h sigma(W u_in + b), u_in and u_out
   (m, batch); u_out may equal u_in. */
void bn_fused_forward(int act, int m, int batch, int scalar, double h, const double *W,
                      const double *b, const double *u_in, double *u_out);

/* Fused backward at primal input u (m, batch), 1 <= m <= BN_FUSED_MAX, D = sigma'(W u + b) * lam_in:
       lam_out = lam_in + h W^T D                  (skipped if lam_out == NULL)
       gW += h D u^T   (m x m, row-major)           (skipped if gW == NULL)
       gb[c] += h sum_j D[c, j]   or, scalar, gb[0] += h sum D   (skipped if gb == NULL)
   lam_out may equal lam_in; neither may alias u. */
void bn_fused_backward(int act, int m, int batch, int scalar, double h, const double *W,
                       const double *b, const double *u, const double *lam_in, double *lam_out,
                       double *gW, double *gb);

/* The fused kernels with a stored derivative (serial nets): bn_fused_forward that also writes
   ds = sigma'(W u_in + b) (m, batch), and bn_fused_backward from that ds instead of recomputing
   W u + b and sigma' (b and act are not needed).  Bit for bit the results of the plain pair. */
void bn_fused_forward_ds(int act, int m, int batch, int scalar, double h, const double *W,
                         const double *b, const double *u_in, double *u_out, double *ds);
void bn_fused_backward_ds(int m, int batch, int scalar, double h, const double *W,
                          const double *u, const double *ds, const double *lam_in,
                          double *lam_out, double *gW, double *gb);

/* The float twins of the thirteen functions above (same contracts). */
void bn_c_update_f32(int act, int width, int batch, int scalar, double h, const float *b,
                     const float *z, const float *in, float *out);
void bn_c_deriv_f32(int act, int width, int batch, int scalar, const float *b, float *z,
                    const float *lam);
void bn_c_tanh_f32(int n, const float *x, float *y);
void bn_c_update_ds_f32(int act, int width, int batch, int scalar, double h, const float *b,
                        const float *z, const float *in, float *out, float *ds);
void bn_c_deriv_gb_f32(int act, int width, int batch, int scalar, const float *b, float *z,
                       const float *lam, double alpha, float *gb);
void bn_c_dmul_gb_f32(int width, int batch, int scalar, const float *ds, const float *lam,
                      float *D, double alpha, float *gb);
void bn_axpby_f32(ptrdiff_t n, double a, const float *x, double b, float *y);
void bn_c_update_bits_f32(int width, int batch, int scalar, double h, const float *b,
                          const float *z, const float *in, float *out, unsigned char *bits);
void bn_c_bitsmul_gb_f32(int width, int batch, int scalar, const unsigned char *bits,
                         const float *lam, float *D, double alpha, float *gb);
void bn_fused_forward_f32(int act, int m, int batch, int scalar, double h, const float *W,
                          const float *b, const float *u_in, float *u_out);
void bn_fused_backward_f32(int act, int m, int batch, int scalar, double h, const float *W,
                           const float *b, const float *u, const float *lam_in, float *lam_out,
                           float *gW, float *gb);
void bn_fused_forward_ds_f32(int act, int m, int batch, int scalar, double h, const float *W,
                             const float *b, const float *u_in, float *u_out, float *ds);
void bn_fused_backward_ds_f32(int m, int batch, int scalar, double h, const float *W,
                              const float *u, const float *ds, const float *lam_in,
                              float *lam_out, float *gW, float *gb);

#ifdef __cplusplus
}
#endif

#endif /* BN_KERNELS_H */
