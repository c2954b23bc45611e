/* braidnet convolution kernels, plain C part (contracts in bn_conv.h; used by
   braidnet/_convkernels.pyx).

   - bn_conv_pad: the zero-padded copy every other function reads, so no stencil tap needs a
     bounds test.
   - bn_conv_direct: for each output channel o and image row y, all taps (i, dy, dx) of the
     k x k stencil are applied to the row Z[o, y, :, :] (W*B contiguous doubles) in one pass over
     it: a k x k-tap loop per input channel, two output channels at a time so each input load feeds
     two FMAs.  The row stays in L1; k = 1, 3, 5 are specialised (taps unrolled), other k loop.
   - bn_conv_im2col: the columns of the GEMM path, one memcpy of W*B doubles per (tap, row).
   - bn_conv_wgrad_direct: k*k dot products per (o, i), four-lane accumulators.
   GCC on x86-64 Linux builds an AVX2/FMA (x86-64-v3) clone of every entry point, picked at load
   time, next to the baseline one (-DBN_NO_CLONES: the baseline only), as bn_kernels.c does. */
#include "bn_conv.h"

#include <string.h>
#if defined(__GNUC__) && !defined(__clang__)
#  pragma GCC diagnostic ignored "-Wpsabi"   /* vector helpers are always inlined */
#endif
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) \
    && !defined(BN_NO_CLONES)
#  if __GNUC__ >= 12
#    define BNC_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#  else
#    define BNC_CLONES __attribute__((target_clones("avx2", "default")))
#  endif
#else
#  define BNC_CLONES
#endif
#define BNC_INLINE static inline __attribute__((always_inline))

typedef double bnc_v4 __attribute__((vector_size(32), aligned(8), may_alias));  /* unaligned OK */

BNC_INLINE bnc_v4 bnc_splat(double a) { bnc_v4 v = {a, a, a, a}; return v; }
BNC_INLINE bnc_v4 bnc_ld(const double *p) { return *(const bnc_v4 *)p; }
BNC_INLINE double bnc_hsum(bnc_v4 v) { return (v[0] + v[2]) + (v[1] + v[3]); }

/* ---- padding --------------------------------------------------------------------------------- */

BNC_CLONES void bn_conv_pad(int c, int H, int W, int B, int p, const double *U, double *P) {
    const ptrdiff_t Wp = W + 2 * p, Hp = H + 2 * p, row = (ptrdiff_t)W * B, prow = Wp * B;
    const ptrdiff_t edge = (ptrdiff_t)p * B;
    for (ptrdiff_t i = 0; i < c; i++) {
        double *Pi = P + i * Hp * prow;
        const double *Ui = U + i * (ptrdiff_t)H * row;
        memset(Pi, 0, sizeof(double) * (size_t)(p * prow));                     /* top rows */
        for (ptrdiff_t y = 0; y < H; y++) {
            double *dst = Pi + (y + p) * prow;
            memset(dst, 0, sizeof(double) * (size_t)edge);
            memcpy(dst + edge, Ui + y * row, sizeof(double) * (size_t)row);
            memset(dst + edge + row, 0, sizeof(double) * (size_t)edge);
        }
        memset(Pi + (H + p) * prow, 0, sizeof(double) * (size_t)(p * prow));     /* bottom rows */
    }
}

/* ---- direct correlation ---------------------------------------------------------------------- */

/* z0[j] += sum_t a0[t] src_t[j] (and z1 with a1 when NO == 2) for j < n, where tap t = dy*k + dx
   reads src + dy*rs + dx*B.  KK = k*k taps (constant after inlining; 0: generic k). */
BNC_INLINE void bnc_taps(const int NO, const int KC, int k, const double *a0, const double *a1,
                         const double *restrict src, ptrdiff_t rs, ptrdiff_t B,
                         double *restrict z0, double *restrict z1, ptrdiff_t n) {
    const int kk = KC ? KC : k;
    if (kk <= 5) {
        double c0[25], c1[25];
        for (int t = 0; t < kk * kk; t++) { c0[t] = a0[t]; c1[t] = NO == 2 ? a1[t] : 0.0; }
        for (ptrdiff_t j = 0; j < n; j++) {
            double s0 = z0[j], s1 = NO == 2 ? z1[j] : 0.0;
            for (int dy = 0; dy < kk; dy++)
                for (int dx = 0; dx < kk; dx++) {
                    double v = src[j + dy * rs + dx * B];
                    s0 += c0[dy * kk + dx] * v;
                    if (NO == 2) s1 += c1[dy * kk + dx] * v;
                }
            z0[j] = s0;
            if (NO == 2) z1[j] = s1;
        }
    } else {   /* wide kernels: one axpy per tap */
        for (int dy = 0; dy < kk; dy++)
            for (int dx = 0; dx < kk; dx++) {
                const double *s = src + dy * rs + dx * B;
                double b0 = a0[dy * kk + dx], b1 = NO == 2 ? a1[dy * kk + dx] : 0.0;
                for (ptrdiff_t j = 0; j < n; j++) {
                    z0[j] += b0 * s[j];
                    if (NO == 2) z1[j] += b1 * s[j];
                }
            }
    }
}

BNC_INLINE void bnc_direct_impl(const int KC, int c_out, int c_in, int k, int H, int W, int B,
                                const double *K, const double *P, double *Z, int accumulate) {
    const int p = k / 2;
    const ptrdiff_t n = (ptrdiff_t)W * B, rs = (ptrdiff_t)(W + 2 * p) * B;
    const ptrdiff_t pin = (ptrdiff_t)(H + 2 * p) * rs, kk = (ptrdiff_t)k * k;
    int o = 0;
    for (; o + 2 <= c_out; o += 2) {
        for (ptrdiff_t y = 0; y < H; y++) {
            double *z0 = Z + ((ptrdiff_t)o * H + y) * n, *z1 = z0 + (ptrdiff_t)H * n;
            if (!accumulate) {
                memset(z0, 0, sizeof(double) * (size_t)n);
                memset(z1, 0, sizeof(double) * (size_t)n);
            }
            for (ptrdiff_t i = 0; i < c_in; i++)
                bnc_taps(2, KC, k, K + ((ptrdiff_t)o * c_in + i) * kk,
                         K + ((ptrdiff_t)(o + 1) * c_in + i) * kk, P + i * pin + y * rs, rs, B,
                         z0, z1, n);
        }
    }
    for (; o < c_out; o++) {
        for (ptrdiff_t y = 0; y < H; y++) {
            double *z0 = Z + ((ptrdiff_t)o * H + y) * n;
            if (!accumulate) memset(z0, 0, sizeof(double) * (size_t)n);
            for (ptrdiff_t i = 0; i < c_in; i++)
                bnc_taps(1, KC, k, K + ((ptrdiff_t)o * c_in + i) * kk, NULL, P + i * pin + y * rs,
                         rs, B, z0, NULL, n);
        }
    }
}

BNC_CLONES void bn_conv_direct(int c_out, int c_in, int k, int H, int W, int B, const double *K,
                               const double *P, double *Z, int accumulate) {
    if (k == 1) bnc_direct_impl(1, c_out, c_in, k, H, W, B, K, P, Z, accumulate);
    else if (k == 3) bnc_direct_impl(3, c_out, c_in, k, H, W, B, K, P, Z, accumulate);
    else if (k == 5) bnc_direct_impl(5, c_out, c_in, k, H, W, B, K, P, Z, accumulate);
    else bnc_direct_impl(0, c_out, c_in, k, H, W, B, K, P, Z, accumulate);
}

/* ---- im2col ---------------------------------------------------------------------------------- */

BNC_CLONES void bn_conv_im2col(int c_in, int k, int H, int W, int B, int y0, int y1,
                               const double *P, double *cols) {
    const int p = k / 2;
    const ptrdiff_t n = (ptrdiff_t)W * B, rs = (ptrdiff_t)(W + 2 * p) * B;
    const ptrdiff_t pin = (ptrdiff_t)(H + 2 * p) * rs, nt = (ptrdiff_t)(y1 - y0) * n;
    double *dst = cols;
    for (ptrdiff_t i = 0; i < c_in; i++)
        for (ptrdiff_t dy = 0; dy < k; dy++)
            for (ptrdiff_t dx = 0; dx < k; dx++, dst += nt)
                for (ptrdiff_t y = y0; y < y1; y++)
                    memcpy(dst + (y - y0) * n, P + i * pin + (y + dy) * rs + dx * B,
                           sizeof(double) * (size_t)n);
}

/* ---- direct weight gradient ------------------------------------------------------------------ */

/* acc[t] += sum_j d[j] src_t[j], tap t = dy*k + dx at src + dy*rs + dx*B, for KC*KC taps (KC
   constant after inlining; 0: generic k, one tap at a time). */
BNC_INLINE void bnc_dots(const int KC, int k, const double *restrict d,
                         const double *restrict src, ptrdiff_t rs, ptrdiff_t B, ptrdiff_t n,
                         double *acc) {
    if (KC) {
        bnc_v4 a[25];
        for (int t = 0; t < KC * KC; t++) a[t] = bnc_splat(0.0);
        ptrdiff_t j = 0;
        for (; j + 4 <= n; j += 4) {
            bnc_v4 dv = bnc_ld(d + j);
            for (int dy = 0; dy < KC; dy++)
                for (int dx = 0; dx < KC; dx++)
                    a[dy * KC + dx] += dv * bnc_ld(src + j + dy * rs + dx * B);
        }
        for (int t = 0; t < KC * KC; t++) {
            const double *s = src + (t / KC) * rs + (t % KC) * B;
            double r = bnc_hsum(a[t]);
            for (ptrdiff_t jj = j; jj < n; jj++) r += d[jj] * s[jj];
            acc[t] += r;
        }
    } else {
        for (int t = 0; t < k * k; t++) {
            const double *s = src + (t / k) * rs + (t % k) * B;
            bnc_v4 a = bnc_splat(0.0);
            ptrdiff_t j = 0;
            for (; j + 4 <= n; j += 4) a += bnc_ld(d + j) * bnc_ld(s + j);
            double r = bnc_hsum(a);
            for (; j < n; j++) r += d[j] * s[j];
            acc[t] += r;
        }
    }
}

BNC_INLINE void bnc_wgrad_impl(const int KC, int c_out, int c_in, int k, int H, int W, int B,
                               double alpha, const double *D, const double *P, double *gK) {
    const int p = k / 2;
    const ptrdiff_t n = (ptrdiff_t)W * B, rs = (ptrdiff_t)(W + 2 * p) * B;
    const ptrdiff_t pin = (ptrdiff_t)(H + 2 * p) * rs, kk = (ptrdiff_t)k * k;
    double acc[25];
    for (ptrdiff_t o = 0; o < c_out; o++)
        for (ptrdiff_t i = 0; i < c_in; i++) {
            double *g = gK + (o * c_in + i) * kk;
            if (KC) {
                for (int t = 0; t < KC * KC; t++) acc[t] = 0.0;
                for (ptrdiff_t y = 0; y < H; y++)
                    bnc_dots(KC, k, D + (o * H + y) * n, P + i * pin + y * rs, rs, B, n, acc);
                for (int t = 0; t < KC * KC; t++) g[t] += alpha * acc[t];
            } else {
                for (ptrdiff_t t = 0; t < kk; t++) {   /* one tap at a time, summed over rows */
                    double a = 0.0;
                    for (ptrdiff_t y = 0; y < H; y++) {
                        double one = 0.0;
                        const double *s = P + i * pin + y * rs + (t / k) * rs + (t % k) * B;
                        bnc_dots(1, 1, D + (o * H + y) * n, s, rs, B, n, &one);
                        a += one;
                    }
                    g[t] += alpha * a;
                }
            }
        }
}

BNC_CLONES void bn_conv_wgrad_direct(int c_out, int c_in, int k, int H, int W, int B,
                                     double alpha, const double *D, const double *P, double *gK) {
    if (k == 1) bnc_wgrad_impl(1, c_out, c_in, k, H, W, B, alpha, D, P, gK);
    else if (k == 3) bnc_wgrad_impl(3, c_out, c_in, k, H, W, B, alpha, D, P, gK);
    else if (k == 5) bnc_wgrad_impl(5, c_out, c_in, k, H, W, B, alpha, D, P, gK);
    else bnc_wgrad_impl(0, c_out, c_in, k, H, W, B, alpha, D, P, gK);
}
