/* braidnet per-layer kernels: SIMD C part (declared in bn_kernels.h, which documents the
   contracts; used by braidnet/_kernels.pyx, tested by test_kernels.c).

   - bn_tanh4: vectorisable tanh, within BN_TANH_ULP ulp of the correctly rounded value (libm's
     tanh is scalar and several times slower).
   - Element-wise passes for the BLAS (large width) path: bn_c_update, bn_c_deriv.
   - Fused small-width path: bn_fused_forward, bn_fused_backward work on tiles of BN_TILE
     columns (all `width` rows), which stay in L1: W u + b with register blocking, activation,
     residual / adjoint update and the D u^T accumulation in one sweep over the batch.
   GCC on x86-64 Linux builds an AVX2/FMA (x86-64-v3) clone of every entry point, picked at load
   time, next to the baseline SSE2 one (-DBN_NO_CLONES: the baseline only).  Vector code uses
   GCC/Clang vector extensions, so compile as GNU C (the default; -std=c99 would also turn off
   FMA contraction and so change results). */
#include "bn_kernels.h"

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#if defined(__GNUC__) && !defined(__clang__)
#  pragma GCC diagnostic ignored "-Wpsabi"   /* vector helpers are always inlined */
#endif
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) \
    && !defined(BN_NO_CLONES)
/* "arch=x86-64-v3" (AVX2 + FMA) dispatches on CPU features; "arch=haswell" would test the
   CPU model and so never be picked on AMD processors. */
#  if __GNUC__ >= 12
#    define BN_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#  else
#    define BN_CLONES __attribute__((target_clones("avx2", "default")))
#  endif
#else
#  define BN_CLONES
#endif
/* The entry points have external linkage (the extension's Cython object calls them).  GCC gives
   target_clones' ifunc symbols default visibility whatever the attributes say, so they are visible
   in _kernels.so's dynamic table: harmless, Python loads extension modules with RTLD_LOCAL. */
#define BN_INLINE static inline __attribute__((always_inline))

#define BN_TILE_DOUBLES 2048 /* width * tile columns: 16 KiB of L1 */

typedef double bn_v4 __attribute__((vector_size(32), aligned(8), may_alias));     /* 4 doubles, unaligned OK */
typedef long long bn_i4 __attribute__((vector_size(32), aligned(8), may_alias));

BN_INLINE bn_v4 bn_splat(double a) { bn_v4 v = {a, a, a, a}; return v; }
BN_INLINE bn_v4 bn_ld(const double *p) { return *(const bn_v4 *)p; }
BN_INLINE void bn_st(double *p, bn_v4 v) { *(bn_v4 *)p = v; }
BN_INLINE bn_v4 bn_sel(bn_i4 m, bn_v4 a, bn_v4 b) {   /* m ? a : b, lane-wise */
    return (bn_v4)(((bn_i4)a & m) | ((bn_i4)b & ~m));
}
BN_INLINE double bn_hsum(bn_v4 v) { return (v[0] + v[2]) + (v[1] + v[3]); }

/* tanh on 4 lanes: |x| = k ln2/2 + r with |r| <= ln2/4 (Cody-Waite, k <= 58), t = tanh(r) from
   an odd polynomial (relative error ~4e-18, fitted for this file), then the addition theorem
   with tanh(k ln2/2) = (2^k - 1)/(2^k + 1):
       tanh|x| = ((2^k - 1) + (2^k + 1) t) / ((2^k + 1) + (2^k - 1) t)
   One division, no table, no branch; NaN propagates, tanh(-0) = -0. */
BN_INLINE bn_v4 bn_tanh4(bn_v4 x) {
    const bn_i4 smask = {INT64_MIN, INT64_MIN, INT64_MIN, INT64_MIN};
    const bn_v4 shift = bn_splat(0x1.8p52);       /* round-to-integer shifter */
    bn_i4 xi = (bn_i4)x;
    bn_i4 sgn = xi & smask;
    bn_v4 a = (bn_v4)(xi & ~smask);
    a = bn_sel((bn_i4)(a > 20.0), bn_splat(20.0), a);  /* tanh(20) = 1 in double */
    bn_v4 kt = a * 2.8853900817779268 + shift;    /* k = round(2|x|/ln2), in the low bits */
    bn_v4 kd = kt - shift;
    bn_v4 r = a - kd * 0x1.62e42fee00000p-2;       /* exact: (ln2/2)_hi has 32 bits */
    r = r - kd * 0x1.a39ef35793c76p-34;
    bn_v4 r2 = r * r;
    bn_v4 p = bn_splat(0.0034447731480744532);
    p = p * r2 - 0.0088573038910376;
    p = p * r2 + 0.021869370581842715;
    p = p * r2 - 0.053968252780445355;
    p = p * r2 + 0.13333333332782998;
    p = p * r2 - 0.3333333333333248;
    bn_v4 t = r + (r * r2) * p;                    /* tanh(r) */
    const bn_i4 one_bits = (bn_i4)bn_splat(1.0);
    bn_v4 s = (bn_v4)(((bn_i4)kt << 52) + one_bits);  /* 2^k */
    bn_v4 sm = s - 1.0, sp = s + 1.0;              /* exact */
    bn_v4 th = (sm + sp * t) / (sp + sm * t);
    return (bn_v4)((bn_i4)th | sgn);
}

/* activation and its derivative on 4 lanes; act is a compile-time constant after inlining */
BN_INLINE bn_v4 bn_sigma4(int act, bn_v4 x) {
    if (act == 0) return bn_tanh4(x);
    if (act == 1) return (bn_v4)((bn_i4)x & (bn_i4)(x > 0.0));
    /* smoothed ReLU: (q + eta)^2/(4 eta) + max(x - eta, 0), q = clamp(x, -eta, eta) */
    bn_v4 q = bn_sel((bn_i4)(x > -BN_ETA), x, bn_splat(-BN_ETA));
    q = bn_sel((bn_i4)(q < BN_ETA), q, bn_splat(BN_ETA));
    q = q + BN_ETA;
    bn_v4 r = x - BN_ETA;
    r = (bn_v4)((bn_i4)r & (bn_i4)(r > 0.0));
    return q * q * (0.25 / BN_ETA) + r;
}

BN_INLINE bn_v4 bn_dsigma4(int act, bn_v4 x) {
    if (act == 0) { bn_v4 t = bn_tanh4(x); return 1.0 - t * t; }
    if (act == 1) return (bn_v4)((bn_i4)bn_splat(1.0) & (bn_i4)(x > 0.0));
    bn_v4 q = bn_sel((bn_i4)(x > -BN_ETA), x, bn_splat(-BN_ETA));
    q = bn_sel((bn_i4)(q < BN_ETA), q, bn_splat(BN_ETA));
    return (q + BN_ETA) * (0.5 / BN_ETA);
}

/* ---- element-wise rows (BLAS path) ----------------------------------------------------------- */

/* out[j] = in[j] + h sigma(z[j] + bc)  (in == NULL: out[j] = sigma(z[j] + bc)); z may equal out */
BN_INLINE void bn_row_update(int act, int n, double h, double bc, const double *z,
                             const double *in, double *out) {
    int j = 0;
    for (; j + 4 <= n; j += 4) {
        bn_v4 s = bn_sigma4(act, bn_ld(z + j) + bc);
        if (in) s = bn_ld(in + j) + h * s;
        bn_st(out + j, s);
    }
    if (j < n) {
        double zt[4] = {0, 0, 0, 0}, it[4] = {0, 0, 0, 0}, ot[4];
        for (int i = 0; j + i < n; i++) { zt[i] = z[j + i]; if (in) it[i] = in[j + i]; }
        bn_v4 s = bn_sigma4(act, bn_ld(zt) + bc);
        if (in) s = bn_ld(it) + h * s;
        bn_st(ot, s);
        for (int i = 0; j + i < n; i++) out[j + i] = ot[i];
    }
}

/* z[j] <- sigma'(z[j] + bc) * lam[j] */
BN_INLINE void bn_row_deriv(int act, int n, double bc, double *z, const double *lam) {
    int j = 0;
    for (; j + 4 <= n; j += 4)
        bn_st(z + j, bn_dsigma4(act, bn_ld(z + j) + bc) * bn_ld(lam + j));
    if (j < n) {
        double zt[4] = {0, 0, 0, 0}, lt[4] = {0, 0, 0, 0}, ot[4];
        for (int i = 0; j + i < n; i++) { zt[i] = z[j + i]; lt[i] = lam[j + i]; }
        bn_st(ot, bn_dsigma4(act, bn_ld(zt) + bc) * bn_ld(lt));
        for (int i = 0; j + i < n; i++) z[j + i] = ot[i];
    }
}

BN_INLINE void bn_update_impl(int act, int width, int batch, int scalar, double h,
                              const double *b, const double *z, const double *in, double *out) {
    for (int c = 0; c < width; c++) {
        ptrdiff_t off = (ptrdiff_t)c * batch;
        bn_row_update(act, batch, h, b[scalar ? 0 : c], z + off, in ? in + off : NULL, out + off);
    }
}

BN_CLONES void bn_c_update(int act, int width, int batch, int scalar, double h,
                           const double *b, const double *z, const double *in, double *out) {
    if (act == 0) bn_update_impl(0, width, batch, scalar, h, b, z, in, out);
    else if (act == 1) bn_update_impl(1, width, batch, scalar, h, b, z, in, out);
    else bn_update_impl(2, width, batch, scalar, h, b, z, in, out);
}

BN_INLINE void bn_deriv_impl(int act, int width, int batch, int scalar, const double *b,
                             double *z, const double *lam) {
    for (int c = 0; c < width; c++) {
        ptrdiff_t off = (ptrdiff_t)c * batch;
        bn_row_deriv(act, batch, b[scalar ? 0 : c], z + off, lam + off);
    }
}

BN_CLONES void bn_c_deriv(int act, int width, int batch, int scalar, const double *b,
                          double *z, const double *lam) {
    if (act == 0) bn_deriv_impl(0, width, batch, scalar, b, z, lam);
    else if (act == 1) bn_deriv_impl(1, width, batch, scalar, b, z, lam);
    else bn_deriv_impl(2, width, batch, scalar, b, z, lam);
}

/* tanh of n doubles (tests, benchmarks) */
BN_CLONES void bn_c_tanh(int n, const double *x, double *y) {
    int j = 0;
    for (; j + 4 <= n; j += 4) bn_st(y + j, bn_tanh4(bn_ld(x + j)));
    if (j < n) {
        double t[4] = {0, 0, 0, 0};
        for (int i = 0; j + i < n; i++) t[i] = x[j + i];
        bn_st(t, bn_tanh4(bn_ld(t)));
        for (int i = 0; j + i < n; i++) y[j + i] = t[i];
    }
}

/* ---- fused small-width path ------------------------------------------------------------------ */

/* One register block of Z = init + A U over R rows (c0..c0+R) and 4*C columns (j..):
   A(c, k) = A[c*ars + k*acs]; init row c is bias[c*bs] (I == NULL) or I[c*ldi + j..]. */
BN_INLINE void bn_mv_block(const int R, const int C, int kdim, const double *A, ptrdiff_t ars,
                           ptrdiff_t acs, const double *bias, ptrdiff_t bs, const double *I,
                           ptrdiff_t ldi, const double *U, ptrdiff_t ldu, double *Z,
                           ptrdiff_t ldz, int c0, int j) {
    bn_v4 acc[4][2];
    for (int r = 0; r < R; r++)
        for (int q = 0; q < C; q++)
            acc[r][q] = I ? bn_ld(I + (ptrdiff_t)(c0 + r) * ldi + j + 4 * q)
                          : bn_splat(bias[(c0 + r) * bs]);
    const double *Ar = A + (ptrdiff_t)c0 * ars;
    for (int k = 0; k < kdim; k++) {
        bn_v4 u[2];
        for (int q = 0; q < C; q++) u[q] = bn_ld(U + (ptrdiff_t)k * ldu + j + 4 * q);
        for (int r = 0; r < R; r++) {
            double a = Ar[r * ars + k * acs];
            for (int q = 0; q < C; q++) acc[r][q] += a * u[q];
        }
    }
    for (int r = 0; r < R; r++)
        for (int q = 0; q < C; q++) bn_st(Z + (ptrdiff_t)(c0 + r) * ldz + j + 4 * q, acc[r][q]);
}

/* Z (m x n) = init + A U, n a multiple of 4.  Z may equal I (same ld). */
BN_INLINE void bn_mv(int m, int kdim, const double *A, ptrdiff_t ars, ptrdiff_t acs,
                     const double *bias, ptrdiff_t bs, const double *I, ptrdiff_t ldi,
                     const double *U, ptrdiff_t ldu, double *Z, ptrdiff_t ldz, int n) {
    int c = 0;
    for (; c + 4 <= m; c += 4) {
        int j = 0;
        for (; j + 8 <= n; j += 8) bn_mv_block(4, 2, kdim, A, ars, acs, bias, bs, I, ldi, U, ldu, Z, ldz, c, j);
        if (j < n) bn_mv_block(4, 1, kdim, A, ars, acs, bias, bs, I, ldi, U, ldu, Z, ldz, c, j);
    }
    for (; c < m; c++) {
        int j = 0;
        for (; j + 8 <= n; j += 8) bn_mv_block(1, 2, kdim, A, ars, acs, bias, bs, I, ldi, U, ldu, Z, ldz, c, j);
        if (j < n) bn_mv_block(1, 1, kdim, A, ars, acs, bias, bs, I, ldi, U, ldu, Z, ldz, c, j);
    }
}

/* G (m x kdim, row-major, ld kdim) += D U^T over n columns (multiple of 4); D rows ld ldd. */
BN_INLINE void bn_dut_block(const int R, const int Q, int kdim, const double *D, ptrdiff_t ldd,
                            const double *U, ptrdiff_t ldu, double *G, int c0, int k0, int n) {
    bn_v4 acc[2][4];
    for (int r = 0; r < R; r++)
        for (int q = 0; q < Q; q++) acc[r][q] = bn_splat(0.0);
    for (int j = 0; j < n; j += 4) {
        bn_v4 d[2], u[4];
        for (int r = 0; r < R; r++) d[r] = bn_ld(D + (ptrdiff_t)(c0 + r) * ldd + j);
        for (int q = 0; q < Q; q++) u[q] = bn_ld(U + (ptrdiff_t)(k0 + q) * ldu + j);
        for (int r = 0; r < R; r++)
            for (int q = 0; q < Q; q++) acc[r][q] += d[r] * u[q];
    }
    for (int r = 0; r < R; r++)
        for (int q = 0; q < Q; q++) G[(ptrdiff_t)(c0 + r) * kdim + k0 + q] += bn_hsum(acc[r][q]);
}

BN_INLINE void bn_dut(int m, int kdim, const double *D, ptrdiff_t ldd, const double *U,
                      ptrdiff_t ldu, double *G, int n) {
    int c = 0;
    for (; c + 2 <= m; c += 2) {
        int k = 0;
        for (; k + 4 <= kdim; k += 4) bn_dut_block(2, 4, kdim, D, ldd, U, ldu, G, c, k, n);
        for (; k < kdim; k++) bn_dut_block(2, 1, kdim, D, ldd, U, ldu, G, c, k, n);
    }
    for (; c < m; c++) {
        int k = 0;
        for (; k + 4 <= kdim; k += 4) bn_dut_block(1, 4, kdim, D, ldd, U, ldu, G, c, k, n);
        for (; k < kdim; k++) bn_dut_block(1, 1, kdim, D, ldd, U, ldu, G, c, k, n);
    }
}

BN_INLINE int bn_tile_cols(int m) {
    int t = (BN_TILE_DOUBLES / m) & ~7;
    return t > 256 ? 256 : t;   /* m <= BN_FUSED_MAX = 32 gives t >= 64 */
}

/* forward on one tile of n columns (multiple of 4): out = in + h sigma(W in + b) */
BN_INLINE void bn_fwd_tile(int act, int m, int bs, double h, const double *W, const double *b,
                           const double *in, ptrdiff_t ldi, double *out, ptrdiff_t ldo,
                           double *Z, int n) {
    bn_mv(m, m, W, m, 1, b, bs, NULL, 0, in, ldi, Z, n, n);
    for (int c = 0; c < m; c++) {
        const double *zc = Z + (ptrdiff_t)c * n, *ic = in + (ptrdiff_t)c * ldi;
        double *oc = out + (ptrdiff_t)c * ldo;
        for (int j = 0; j < n; j += 4)
            bn_st(oc + j, bn_ld(ic + j) + h * bn_sigma4(act, bn_ld(zc + j)));
    }
}

BN_INLINE void bn_fused_forward_impl(int act, int m, int batch, int bs, double h, const double *W,
                                     const double *b, const double *u_in, double *u_out) {
    double Z[BN_TILE_DOUBLES] __attribute__((aligned(32)));
    const int T = bn_tile_cols(m), b4 = batch & ~3;
    for (int j0 = 0; j0 < b4; j0 += T) {
        int n = b4 - j0 < T ? b4 - j0 : T;
        bn_fwd_tile(act, m, bs, h, W, b, u_in + j0, batch, u_out + j0, batch, Z, n);
    }
    if (b4 < batch) {     /* last 1-3 columns through a zero-padded 4-column copy */
        double P[BN_FUSED_MAX * 4] __attribute__((aligned(32)));
        int t = batch - b4;
        for (int c = 0; c < m; c++)
            for (int i = 0; i < 4; i++) P[c * 4 + i] = i < t ? u_in[(ptrdiff_t)c * batch + b4 + i] : 0.0;
        bn_fwd_tile(act, m, bs, h, W, b, P, 4, P, 4, Z, 4);
        for (int c = 0; c < m; c++)
            for (int i = 0; i < t; i++) u_out[(ptrdiff_t)c * batch + b4 + i] = P[c * 4 + i];
    }
}

BN_CLONES void bn_fused_forward(int act, int m, int batch, int scalar, double h,
                                const double *W, const double *b, const double *u_in,
                                double *u_out) {
    int bs = scalar ? 0 : 1;
    if (act == 0) bn_fused_forward_impl(0, m, batch, bs, h, W, b, u_in, u_out);
    else if (act == 1) bn_fused_forward_impl(1, m, batch, bs, h, W, b, u_in, u_out);
    else bn_fused_forward_impl(2, m, batch, bs, h, W, b, u_in, u_out);
}

/* backward on one tile: D = sigma'(W u + b) * lin; G += D u^T, gbs[c] += sum D[c,:];
   lout = lin + hWT D.  Any of G / lout may be NULL. */
BN_INLINE void bn_bwd_tile(int act, int m, int bs, const double *W, const double *b,
                           const double *hWT, const double *u, ptrdiff_t ldu, const double *lin,
                           ptrdiff_t ldl, double *lout, ptrdiff_t ldo, double *G, double *gbs,
                           double *Z, int n) {
    bn_mv(m, m, W, m, 1, b, bs, NULL, 0, u, ldu, Z, n, n);
    for (int c = 0; c < m; c++) {
        double *zc = Z + (ptrdiff_t)c * n;
        const double *lc = lin + (ptrdiff_t)c * ldl;
        bn_v4 s = bn_splat(0.0);
        for (int j = 0; j < n; j += 4) {
            bn_v4 d = bn_dsigma4(act, bn_ld(zc + j)) * bn_ld(lc + j);
            bn_st(zc + j, d);
            s += d;
        }
        if (gbs) gbs[c] += bn_hsum(s);
    }
    if (G) bn_dut(m, m, Z, n, u, ldu, G, n);
    if (lout) bn_mv(m, m, hWT, m, 1, NULL, 0, lin, ldl, Z, n, lout, ldo, n);
}

BN_INLINE void bn_fused_backward_impl(int act, int m, int batch, int bs, double h,
                                      const double *W, const double *b, const double *u,
                                      const double *lam_in, double *lam_out, double *gW,
                                      double *gb) {
    double Z[BN_TILE_DOUBLES] __attribute__((aligned(32)));
    double hWT[BN_FUSED_MAX * BN_FUSED_MAX];
    double G[BN_FUSED_MAX * BN_FUSED_MAX];
    double gbs[BN_FUSED_MAX];
    double *Gp = gW ? G : NULL, *gp = gb ? gbs : NULL;
    const int T = bn_tile_cols(m), b4 = batch & ~3;
    if (lam_out)
        for (int c = 0; c < m; c++)
            for (int k = 0; k < m; k++) hWT[k * m + c] = h * W[c * m + k];
    memset(G, 0, sizeof(double) * m * m);
    memset(gbs, 0, sizeof(double) * m);
    for (int j0 = 0; j0 < b4; j0 += T) {
        int n = b4 - j0 < T ? b4 - j0 : T;
        bn_bwd_tile(act, m, bs, W, b, hWT, u + j0, batch, lam_in + j0, batch,
                    lam_out ? lam_out + j0 : NULL, batch, Gp, gp, Z, n);
    }
    if (b4 < batch) {
        double Pu[BN_FUSED_MAX * 4] __attribute__((aligned(32)));
        double Pl[BN_FUSED_MAX * 4] __attribute__((aligned(32)));
        int t = batch - b4;
        for (int c = 0; c < m; c++)
            for (int i = 0; i < 4; i++) {
                Pu[c * 4 + i] = i < t ? u[(ptrdiff_t)c * batch + b4 + i] : 0.0;
                Pl[c * 4 + i] = i < t ? lam_in[(ptrdiff_t)c * batch + b4 + i] : 0.0;
            }
        bn_bwd_tile(act, m, bs, W, b, hWT, Pu, 4, Pl, 4, lam_out ? Pl : NULL, 4, Gp, gp, Z, 4);
        if (lam_out)
            for (int c = 0; c < m; c++)
                for (int i = 0; i < t; i++) lam_out[(ptrdiff_t)c * batch + b4 + i] = Pl[c * 4 + i];
    }
    if (gW)
        for (int i = 0; i < m * m; i++) gW[i] += h * G[i];
    if (gb) {
        if (bs) {
            for (int c = 0; c < m; c++) gb[c] += h * gbs[c];
        } else {
            double s = 0.0;
            for (int c = 0; c < m; c++) s += gbs[c];
            gb[0] += h * s;
        }
    }
}

BN_CLONES void bn_fused_backward(int act, int m, int batch, int scalar, double h,
                                 const double *W, const double *b, const double *u,
                                 const double *lam_in, double *lam_out, double *gW,
                                 double *gb) {
    int bs = scalar ? 0 : 1;
    if (act == 0) bn_fused_backward_impl(0, m, batch, bs, h, W, b, u, lam_in, lam_out, gW, gb);
    else if (act == 1) bn_fused_backward_impl(1, m, batch, bs, h, W, b, u, lam_in, lam_out, gW, gb);
    else bn_fused_backward_impl(2, m, batch, bs, h, W, b, u, lam_in, lam_out, gW, gb);
}
