/* Stand-alone test of bn_kernels.c (no Python, no BLAS): the fused forward / backward kernels, the
   element-wise passes of the BLAS path and the vectorised tanh against plain loops written here,
   with random inputs, for every activation and bias kind, several widths and batch sizes (odd
   ones, and either side of the column-tile boundaries), in both precisions: every test runs once
   on the double kernels and once on their float twins (bn_*_f32; inputs rounded to float, the
   reference computed in double from those inputs, the tolerance RTOL_F32).  Exits 1 on any failure.

   Build and run (scripts/check_kernels.sh does this under AddressSanitizer + UBSan, with and
   without -DBN_NO_CLONES):
       cc -O3 -Wall -Wextra -Werror braidnet/kernels/bn_kernels.c braidnet/kernels/test_kernels.c -lm
       ./a.out [-v]
   (-O2 or more: below that GCC does not contract into FMAs, which the shipped kernels do.)

   Tolerances: every result is compared with |got - ref| <= RTOL * mag, where mag is the same
   formula evaluated on absolute values (plus the activation's sensitivity to rounding of W u + b),
   i.e. a bound on what the rounding of a different summation order / FMA contraction can move. */
#include "bn_kernels.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RTOL 1e-13
#define RTOL_F32 1e-5      /* float (eps 6e-8): the same magnitude bound; measured worst 4e-7 */
#define GLIBC_TANH_ULP 2.0 /* glibc's documented bound for its double tanh */

static int failures = 0, checks = 0, verbose = 0;
static int use_f32 = 0;   /* 1: the k_* wrappers below run the float kernels */

/* ---- random numbers (xorshift64*, Box-Muller) ------------------------------------------------- */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static double urand(void) { /* [0, 1) */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (double)((rng_state * 2685821657736338717ull) >> 11) * 0x1.0p-53;
}
static double nrand(void) {
    double u1 = 1.0 - urand(), u2 = urand();
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

static double *alloc(size_t n) { /* exact size, so ASan catches any access past the end */
    double *p = malloc((n ? n : 1) * sizeof(double));
    if (!p) { fprintf(stderr, "test_kernels: out of memory\n"); exit(2); }
    return p;
}
/* a value the kernels under test take exactly (rounded to float in the float pass) */
static double exact(double x) { return use_f32 ? (double)(float)x : x; }
static double *randn(size_t n, double scale) {
    double *p = alloc(n);
    for (size_t i = 0; i < n; i++) p[i] = exact(scale * nrand());
    return p;
}
static double *dup(const double *a, size_t n) {
    double *p = alloc(n);
    memcpy(p, a, n * sizeof(double));
    return p;
}

/* ---- reference activations (plain libm) ------------------------------------------------------- */
static double ref_sigma(int act, double z) {
    if (act == 0) return tanh(z);
    if (act == 1) return z > 0.0 ? z : 0.0;
    if (z >= BN_ETA) return z;
    if (z <= -BN_ETA) return 0.0;
    return z * z / (4 * BN_ETA) + z / 2 + BN_ETA / 4;
}
static double ref_dsigma(int act, double z) {
    if (act == 0) { double t = tanh(z); return 1.0 - t * t; }
    if (act == 1) return z > 0.0 ? 1.0 : 0.0;
    if (z >= BN_ETA) return 1.0;
    if (z <= -BN_ETA) return 0.0;
    return z / (2 * BN_ETA) + 0.5;
}
/* bound of |sigma''| (how far a rounding error in z moves sigma'); 0 for ReLU away from 0 */
static double d2bound(int act) { return act == 0 ? 0.8 : act == 1 ? 0.0 : 0.5 / BN_ETA; }

static const char *ACT_NAME[3] = {"tanh", "relu", "smoothrelu"};

/* ---- the kernels in the precision under test ---------------------------------------------------
   k_* call the double kernel, or (use_f32) the float one on float copies of the arguments (one
   copy per distinct pointer, so in-place calls stay in place), copying the outputs back and
   checking that the float copies of the inputs were left alone. */
static float *to_f(const double *a, size_t n) {
    float *p = malloc((n ? n : 1) * sizeof(float));
    if (!p) { fprintf(stderr, "test_kernels: out of memory\n"); exit(2); }
    for (size_t i = 0; i < n; i++) p[i] = (float)a[i];
    return p;
}
static void from_f(double *a, const float *f, size_t n) {
    for (size_t i = 0; i < n; i++) a[i] = f[i];
}
static void f_unchanged(const char *what, const float *f, const double *a, size_t n) {
    checks++;
    for (size_t i = 0; i < n; i++)
        if (f[i] != (float)a[i]) {
            failures++;
            fprintf(stderr, "FAIL %s (float): an input array was modified\n", what);
            return;
        }
}

static void k_fused_forward(int act, int m, int batch, int scalar, double h, const double *W,
                            const double *b, const double *u_in, double *u_out) {
    if (!use_f32) { bn_fused_forward(act, m, batch, scalar, h, W, b, u_in, u_out); return; }
    size_t n = (size_t)m * batch, nb = scalar ? 1 : m;
    float *Wf = to_f(W, (size_t)m * m), *bf = to_f(b, nb), *uf = to_f(u_in, n);
    float *of = u_out == u_in ? uf : to_f(u_out, n);
    bn_fused_forward_f32(act, m, batch, scalar, h, Wf, bf, uf, of);
    f_unchanged("fused_forward W", Wf, W, (size_t)m * m);
    f_unchanged("fused_forward b", bf, b, nb);
    if (of != uf) f_unchanged("fused_forward u", uf, u_in, n);
    from_f(u_out, of, n);
    if (of != uf) free(of);
    free(Wf); free(bf); free(uf);
}

static void k_fused_backward(int act, int m, int batch, int scalar, double h, const double *W,
                             const double *b, const double *u, const double *lam_in,
                             double *lam_out, double *gW, double *gb) {
    if (!use_f32) { bn_fused_backward(act, m, batch, scalar, h, W, b, u, lam_in, lam_out, gW, gb); return; }
    size_t n = (size_t)m * batch, mm = (size_t)m * m, nb = scalar ? 1 : m;
    float *Wf = to_f(W, mm), *bf = to_f(b, nb), *uf = to_f(u, n), *lf = to_f(lam_in, n);
    float *of = lam_out == NULL ? NULL : lam_out == lam_in ? lf : to_f(lam_out, n);
    float *gWf = gW ? to_f(gW, mm) : NULL, *gbf = gb ? to_f(gb, nb) : NULL;
    bn_fused_backward_f32(act, m, batch, scalar, h, Wf, bf, uf, lf, of, gWf, gbf);
    f_unchanged("fused_backward W", Wf, W, mm);
    f_unchanged("fused_backward b", bf, b, nb);
    f_unchanged("fused_backward u", uf, u, n);
    if (of != lf) f_unchanged("fused_backward lam_in", lf, lam_in, n);
    if (of) from_f(lam_out, of, n);
    if (gWf) { from_f(gW, gWf, mm); free(gWf); }
    if (gbf) { from_f(gb, gbf, nb); free(gbf); }
    if (of && of != lf) free(of);
    free(Wf); free(bf); free(uf); free(lf);
}

static void k_c_update(int act, int m, int batch, int scalar, double h, const double *b,
                       const double *z, const double *in, double *out) {
    if (!use_f32) { bn_c_update(act, m, batch, scalar, h, b, z, in, out); return; }
    size_t n = (size_t)m * batch, nb = scalar ? 1 : m;
    float *bf = to_f(b, nb), *zf = to_f(z, n), *inf = in ? to_f(in, n) : NULL;
    float *of = out == z ? zf : to_f(out, n);
    bn_c_update_f32(act, m, batch, scalar, h, bf, zf, inf, of);
    f_unchanged("c_update b", bf, b, nb);
    if (of != zf) f_unchanged("c_update z", zf, z, n);
    if (inf) { f_unchanged("c_update in", inf, in, n); free(inf); }
    from_f(out, of, n);
    if (of != zf) free(of);
    free(bf); free(zf);
}

static void k_c_deriv(int act, int m, int batch, int scalar, const double *b, double *z,
                      const double *lam) {
    if (!use_f32) { bn_c_deriv(act, m, batch, scalar, b, z, lam); return; }
    size_t n = (size_t)m * batch, nb = scalar ? 1 : m;
    float *bf = to_f(b, nb), *zf = to_f(z, n), *lf = to_f(lam, n);
    bn_c_deriv_f32(act, m, batch, scalar, bf, zf, lf);
    f_unchanged("c_deriv b", bf, b, nb);
    f_unchanged("c_deriv lam", lf, lam, n);
    from_f(z, zf, n);
    free(bf); free(zf); free(lf);
}

static void check(const char *what, int act, int m, int batch, int scalar, const double *got,
                  const double *ref, const double *mag, size_t n) {
    size_t bad = 0, first = 0;
    double worst = 0.0;
    for (size_t i = 0; i < n; i++) {
        double err = fabs(got[i] - ref[i]);
        double tol = use_f32 ? RTOL_F32 * mag[i] + FLT_MIN : RTOL * mag[i] + DBL_MIN;
        if (!(err <= tol)) { /* also catches NaN */
            if (!bad) first = i;
            bad++;
        }
        if (mag[i] > 0 && err / mag[i] > worst) worst = err / mag[i];
    }
    checks++;
    if (bad) {
        failures++;
        fprintf(stderr, "FAIL %s%s act=%s width=%d batch=%d bias=%s: %zu of %zu entries off; "
                "first [%zu] got %.17g want %.17g (mag %.3g)\n", what, use_f32 ? " (float)" : "",
                ACT_NAME[act], m, batch, scalar ? "scalar" : "channel", bad, n, first, got[first],
                ref[first], mag[first]);
    } else if (verbose > 1) {
        printf("ok %s%s act=%s width=%d batch=%d scalar=%d (worst err/mag %.2e)\n", what,
               use_f32 ? " (float)" : "", ACT_NAME[act], m, batch, scalar, worst);
    }
}

static void check_unchanged(const char *what, const double *a, const double *copy, size_t n) {
    checks++;
    if (memcmp(a, copy, n * sizeof(double)) != 0) {
        failures++;
        fprintf(stderr, "FAIL %s: an input array was modified\n", what);
    }
}

/* z = W u + b and its magnitude |W| |u| + |b|, (m, batch) */
static void ref_z(int m, int batch, int scalar, const double *W, const double *b, const double *u,
                  double *z, double *zmag) {
    for (int c = 0; c < m; c++)
        for (int j = 0; j < batch; j++) {
            double bc = b[scalar ? 0 : c], s = bc, a = fabs(bc);
            for (int k = 0; k < m; k++) {
                s += W[c * m + k] * u[(size_t)k * batch + j];
                a += fabs(W[c * m + k] * u[(size_t)k * batch + j]);
            }
            z[(size_t)c * batch + j] = s;
            zmag[(size_t)c * batch + j] = a;
        }
}

/* ---- fused forward -------------------------------------------------------------------------- */
static void test_forward(int act, int m, int batch, int scalar) {
    size_t n = (size_t)m * batch;
    int nb = scalar ? 1 : m;
    double h = exact(0.1 + 0.5 * urand());
    double *W = randn((size_t)m * m, 1.0 / sqrt(m)), *b = randn(nb, 0.3), *u = randn(n, 1.0);
    double *Wc = dup(W, (size_t)m * m), *bc = dup(b, nb), *uc = dup(u, n);
    double *z = alloc(n), *zmag = alloc(n), *ref = alloc(n), *mag = alloc(n), *out = alloc(n);
    ref_z(m, batch, scalar, W, b, u, z, zmag);
    for (size_t i = 0; i < n; i++) {
        double s = ref_sigma(act, z[i]);
        ref[i] = u[i] + h * s;
        mag[i] = fabs(u[i]) + h * (fabs(s) + zmag[i]);
    }
    k_fused_forward(act, m, batch, scalar, h, W, b, u, out);
    check("fused_forward", act, m, batch, scalar, out, ref, mag, n);
    check_unchanged("fused_forward", W, Wc, (size_t)m * m);
    check_unchanged("fused_forward", b, bc, nb);
    check_unchanged("fused_forward", u, uc, n);
    k_fused_forward(act, m, batch, scalar, h, W, b, u, u); /* in place */
    check("fused_forward in place", act, m, batch, scalar, u, ref, mag, n);
    free(W); free(b); free(u); free(Wc); free(bc); free(uc);
    free(z); free(zmag); free(ref); free(mag); free(out);
}

/* ---- fused backward: adjoint, gradient, both ------------------------------------------------- */
static void test_backward(int act, int m, int batch, int scalar) {
    size_t n = (size_t)m * batch, mm = (size_t)m * m;
    int nb = scalar ? 1 : m;
    double h = exact(0.1 + 0.5 * urand());
    double *W = randn(mm, 1.0 / sqrt(m)), *b = randn(nb, 0.3), *u = randn(n, 1.0);
    double *lam = randn(n, 1.0), *gW0 = randn(mm, 1.0), *gb0 = randn(nb, 1.0);
    double *Wc = dup(W, mm), *bc = dup(b, nb), *uc = dup(u, n), *lamc = dup(lam, n);
    double *z = alloc(n), *zmag = alloc(n), *D = alloc(n), *Dmag = alloc(n);
    double *lref = alloc(n), *lmag = alloc(n), *gWref = alloc(mm), *gWmag = alloc(mm);
    double *gbref = alloc(nb), *gbmag = alloc(nb);
    ref_z(m, batch, scalar, W, b, u, z, zmag);
    for (size_t i = 0; i < n; i++) {
        D[i] = ref_dsigma(act, z[i]) * lam[i];
        Dmag[i] = (fabs(ref_dsigma(act, z[i])) + d2bound(act) * zmag[i]) * fabs(lam[i]);
    }
    for (int k = 0; k < m; k++) /* lam_out = lam + h W^T D */
        for (int j = 0; j < batch; j++) {
            double s = 0.0, a = 0.0;
            for (int c = 0; c < m; c++) {
                s += W[c * m + k] * D[(size_t)c * batch + j];
                a += fabs(W[c * m + k]) * Dmag[(size_t)c * batch + j];
            }
            lref[(size_t)k * batch + j] = lam[(size_t)k * batch + j] + h * s;
            lmag[(size_t)k * batch + j] = fabs(lam[(size_t)k * batch + j]) + h * (fabs(s) + a);
        }
    for (int c = 0; c < m; c++) /* gW += h D u^T */
        for (int k = 0; k < m; k++) {
            double s = 0.0, a = 0.0;
            for (int j = 0; j < batch; j++) {
                s += D[(size_t)c * batch + j] * u[(size_t)k * batch + j];
                a += Dmag[(size_t)c * batch + j] * fabs(u[(size_t)k * batch + j]);
            }
            gWref[c * m + k] = gW0[c * m + k] + h * s;
            gWmag[c * m + k] = fabs(gW0[c * m + k]) + h * a;
        }
    for (int c = 0; c < nb; c++) { gbref[c] = 0.0; gbmag[c] = 0.0; }
    for (int c = 0; c < m; c++) /* gb += h sums of D */
        for (int j = 0; j < batch; j++) {
            gbref[scalar ? 0 : c] += D[(size_t)c * batch + j];
            gbmag[scalar ? 0 : c] += Dmag[(size_t)c * batch + j];
        }
    for (int c = 0; c < nb; c++) {
        gbref[c] = gb0[c] + h * gbref[c];
        gbmag[c] = fabs(gb0[c]) + h * gbmag[c];
    }

    /* 1. everything, out of place */
    double *lout = alloc(n), *gW = dup(gW0, mm), *gb = dup(gb0, nb);
    k_fused_backward(act, m, batch, scalar, h, W, b, u, lam, lout, gW, gb);
    check("fused_backward lam_out", act, m, batch, scalar, lout, lref, lmag, n);
    check("fused_backward gW", act, m, batch, scalar, gW, gWref, gWmag, mm);
    check("fused_backward gb", act, m, batch, scalar, gb, gbref, gbmag, nb);
    check_unchanged("fused_backward", W, Wc, mm);
    check_unchanged("fused_backward", b, bc, nb);
    check_unchanged("fused_backward", u, uc, n);
    check_unchanged("fused_backward", lam, lamc, n);
    /* 2. gradient only (lam_out NULL) */
    memcpy(gW, gW0, mm * sizeof(double));
    memcpy(gb, gb0, nb * sizeof(double));
    k_fused_backward(act, m, batch, scalar, h, W, b, u, lam, NULL, gW, gb);
    check("fused_backward (gradient only) gW", act, m, batch, scalar, gW, gWref, gWmag, mm);
    check("fused_backward (gradient only) gb", act, m, batch, scalar, gb, gbref, gbmag, nb);
    check_unchanged("fused_backward (gradient only)", lam, lamc, n);
    /* 3. adjoint only, in place (lam_out == lam_in, gW = gb = NULL) */
    double *l2 = dup(lam, n);
    k_fused_backward(act, m, batch, scalar, h, W, b, u, l2, l2, NULL, NULL);
    check("fused_backward (adjoint in place)", act, m, batch, scalar, l2, lref, lmag, n);
    /* 4. everything, in place: what net_backward does */
    memcpy(l2, lam, n * sizeof(double));
    memcpy(gW, gW0, mm * sizeof(double));
    memcpy(gb, gb0, nb * sizeof(double));
    k_fused_backward(act, m, batch, scalar, h, W, b, u, l2, l2, gW, gb);
    check("fused_backward (in place) lam", act, m, batch, scalar, l2, lref, lmag, n);
    check("fused_backward (in place) gW", act, m, batch, scalar, gW, gWref, gWmag, mm);
    check("fused_backward (in place) gb", act, m, batch, scalar, gb, gbref, gbmag, nb);

    free(W); free(b); free(u); free(lam); free(gW0); free(gb0);
    free(Wc); free(bc); free(uc); free(lamc); free(z); free(zmag); free(D); free(Dmag);
    free(lref); free(lmag); free(gWref); free(gWmag); free(gbref); free(gbmag);
    free(lout); free(gW); free(gb); free(l2);
}

/* ---- element-wise passes of the BLAS path -------------------------------------------------------- */
static void test_elementwise(int act, int m, int batch, int scalar) {
    size_t n = (size_t)m * batch;
    int nb = scalar ? 1 : m;
    double h = exact(0.1 + 0.5 * urand());
    double *b = randn(nb, 0.3), *z = randn(n, 1.0), *u = randn(n, 1.0), *lam = randn(n, 1.0);
    double *zc = dup(z, n), *uc = dup(u, n), *lamc = dup(lam, n);
    double *ref = alloc(n), *mag = alloc(n), *out = alloc(n);
    /* out = u + h sigma(z + b), then in place z == out */
    for (int c = 0; c < m; c++)
        for (int j = 0; j < batch; j++) {
            size_t i = (size_t)c * batch + j;
            double x = z[i] + b[scalar ? 0 : c], s = ref_sigma(act, x);
            ref[i] = u[i] + h * s;
            mag[i] = fabs(u[i]) + h * (fabs(s) + fabs(z[i]) + fabs(b[scalar ? 0 : c]));
        }
    k_c_update(act, m, batch, scalar, h, b, z, u, out);
    check("c_update", act, m, batch, scalar, out, ref, mag, n);
    check_unchanged("c_update", z, zc, n);
    check_unchanged("c_update", u, uc, n);
    double *z2 = dup(z, n);
    k_c_update(act, m, batch, scalar, h, b, z2, u, z2);
    check("c_update (z == out)", act, m, batch, scalar, z2, ref, mag, n);
    /* in == NULL: out = sigma(z + b) (the opening layer), in place */
    for (int c = 0; c < m; c++)
        for (int j = 0; j < batch; j++) {
            size_t i = (size_t)c * batch + j;
            double x = z[i] + b[scalar ? 0 : c];
            ref[i] = ref_sigma(act, x);
            mag[i] = fabs(ref[i]) + fabs(z[i]) + fabs(b[scalar ? 0 : c]);
        }
    memcpy(z2, z, n * sizeof(double));
    k_c_update(act, m, batch, scalar, 0.0, b, z2, NULL, z2);
    check("c_update (in NULL)", act, m, batch, scalar, z2, ref, mag, n);
    /* z <- sigma'(z + b) * lam */
    for (int c = 0; c < m; c++)
        for (int j = 0; j < batch; j++) {
            size_t i = (size_t)c * batch + j;
            double x = z[i] + b[scalar ? 0 : c], d = ref_dsigma(act, x);
            ref[i] = d * lam[i];
            mag[i] = (fabs(d) + d2bound(act) * (fabs(z[i]) + fabs(b[scalar ? 0 : c]))) * fabs(lam[i]);
        }
    memcpy(z2, z, n * sizeof(double));
    k_c_deriv(act, m, batch, scalar, b, z2, lam);
    check("c_deriv", act, m, batch, scalar, z2, ref, mag, n);
    check_unchanged("c_deriv", lam, lamc, n);
    free(b); free(z); free(u); free(lam); free(zc); free(uc); free(lamc);
    free(ref); free(mag); free(out); free(z2);
}

/* ReLU's sigma' as bits: the same outputs, bias sums and D as the kernels with sigma' as values,
   bit for bit; every bit is ds != 0 and a row's unused high bits are 0 (both precisions). */
static int same(const void *a, const void *b, size_t bytes) { checks++; return !memcmp(a, b, bytes); }
static void test_bits(int m, int batch, int scalar) {
    size_t n = (size_t)m * batch, rb = BN_BITS_ROW(batch);
    int nb = scalar ? 1 : m, ok = 1;
    double h = exact(0.1 + 0.5 * urand());
    double *b = randn(nb, 0.3), *z = randn(n, 1.0), *u = randn(n, 1.0), *lam = randn(n, 1.0);
    unsigned char *bits = (unsigned char *)calloc(m * rb, 1);
    if (!use_f32) {
        double *o1 = alloc(n), *o2 = alloc(n), *ds = alloc(n), *D1 = alloc(n), *D2 = alloc(n);
        double g1[64] = {0}, g2[64] = {0};
        bn_c_update_ds(1, m, batch, scalar, h, b, z, u, o1, ds);
        bn_c_update_bits(m, batch, scalar, h, b, z, u, o2, bits);
        ok &= same(o1, o2, n * sizeof(double));
        bn_c_dmul_gb(m, batch, scalar, ds, lam, D1, 0.5, g1);
        bn_c_bitsmul_gb(m, batch, scalar, bits, lam, D2, 0.5, g2);
        ok &= same(D1, D2, n * sizeof(double)) & same(g1, g2, sizeof g1);
        for (size_t i = 0; i < n; i++)
            ok &= ((bits[(i / batch) * rb + (i % batch) / 8] >> (i % batch % 8)) & 1) == (ds[i] != 0);
        free(o1); free(o2); free(ds); free(D1); free(D2);
    } else {
        float *bf = to_f(b, nb), *zf = to_f(z, n), *uf = to_f(u, n), *lf = to_f(lam, n);
        float *o1 = (float *)malloc(n * 4), *o2 = (float *)malloc(n * 4), *ds = (float *)malloc(n * 4);
        float *D1 = (float *)malloc(n * 4), *D2 = (float *)malloc(n * 4);
        float g1[64] = {0}, g2[64] = {0};
        bn_c_update_ds_f32(1, m, batch, scalar, h, bf, zf, uf, o1, ds);
        bn_c_update_bits_f32(m, batch, scalar, h, bf, zf, uf, o2, bits);
        ok &= same(o1, o2, n * sizeof(float));
        bn_c_dmul_gb_f32(m, batch, scalar, ds, lf, D1, 0.5, g1);
        bn_c_bitsmul_gb_f32(m, batch, scalar, bits, lf, D2, 0.5, g2);
        ok &= same(D1, D2, n * sizeof(float)) & same(g1, g2, sizeof g1);
        for (size_t i = 0; i < n; i++)
            ok &= ((bits[(i / batch) * rb + (i % batch) / 8] >> (i % batch % 8)) & 1) == (ds[i] != 0);
        free(bf); free(zf); free(uf); free(lf); free(o1); free(o2); free(ds); free(D1); free(D2);
    }
    for (int c = 0; c < m && batch % 8; c++)
        ok &= (bits[c * rb + rb - 1] >> (batch % 8)) == 0;
    if (!ok) {
        failures++;
        fprintf(stderr, "FAIL relu bits (%s, m=%d, batch=%d, scalar=%d): not the values' results\n",
                use_f32 ? "float" : "double", m, batch, scalar);
    }
    free(b); free(z); free(u); free(lam); free(bits);
}

/* ---- tanh -------------------------------------------------------------------------------------- */
static double ulp_of(double x) { /* spacing of doubles at |x| (x the exact value, rounded) */
    double a = fabs(x);
    return a < DBL_MIN ? 0x1p-1074 : nextafter(a, INFINITY) - a;
}

static void test_tanh(void) {
    static const double range[] = {1e-300, 1e-8, 1e-3, 0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 400.0};
    const int N = 100003; /* odd: the 1-3 element tail goes through the padded path */
    double *x = alloc(N), *y = alloc(N), *y2 = alloc(N);
    double worst_exact = 0.0, worst_libm = 0.0;
    int have_long = LDBL_MANT_DIG > DBL_MANT_DIG;
    for (size_t r = 0; r < sizeof range / sizeof range[0]; r++) {
        for (int i = 0; i < N; i++) x[i] = (2.0 * urand() - 1.0) * range[r];
        bn_c_tanh(N, x, y);
        for (int i = 0; i < N; i++) {
            double t = tanh(x[i]), u = ulp_of(t);
            double el = fabs(y[i] - t) / u;
            if (el > worst_libm) worst_libm = el;
            if (have_long) {
                long double e = tanhl((long double)x[i]);
                double ee = (double)(fabsl((long double)y[i] - e) / (long double)ulp_of((double)e));
                if (ee > worst_exact) worst_exact = ee;
            }
        }
        for (int n = 1; n <= 9; n++) { /* every tail length, and y == x */
            memcpy(y2, x, n * sizeof(double));
            bn_c_tanh(n, y2, y2);
            checks++;
            if (memcmp(y2, y, n * sizeof(double)) != 0) {
                failures++;
                fprintf(stderr, "FAIL tanh: n=%d in place differs from the long run\n", n);
            }
        }
    }
    checks += 2;
    if (have_long && !(worst_exact <= BN_TANH_ULP)) {
        failures++;
        fprintf(stderr, "FAIL tanh: %.3f ulp from tanhl, documented bound %.1f\n", worst_exact,
                BN_TANH_ULP);
    }
    if (!(worst_libm <= BN_TANH_ULP + GLIBC_TANH_ULP)) {
        failures++;
        fprintf(stderr, "FAIL tanh: %.3f ulp from libm tanh, bound %.1f + %.1f\n", worst_libm,
                BN_TANH_ULP, GLIBC_TANH_ULP);
    }
    if (verbose)
        printf("tanh: max %.3f ulp from tanhl (bound %.1f), %.3f ulp from libm tanh\n", worst_exact,
               BN_TANH_ULP, worst_libm);

    /* special values: exact */
    const double sx[] = {0.0, -0.0, INFINITY, -INFINITY, NAN, 0x1p-1074, -0x1p-1074, DBL_MIN,
                         1e-200, -1e-200, 19.0625, 20.0, 20.5, 1e300, -1e300, DBL_MAX};
    const int ns = (int)(sizeof sx / sizeof sx[0]);
    double sy[sizeof sx / sizeof sx[0]];
    bn_c_tanh(ns, sx, sy);
    for (int i = 0; i < ns; i++) {
        double want = tanh(sx[i]);
        int ok = isnan(want) ? isnan(sy[i])
                             : (sy[i] == want && signbit(sy[i]) == signbit(want));
        if (!ok && fabs(sx[i]) >= 1.0 && fabs(sy[i] - want) <= (BN_TANH_ULP + GLIBC_TANH_ULP) * ulp_of(want))
            ok = 1; /* 19.0625 etc.: within the bound is enough, the others must be exact */
        checks++;
        if (!ok) {
            failures++;
            fprintf(stderr, "FAIL tanh(%.17g) = %.17g, want %.17g\n", sx[i], sy[i], want);
        }
    }
    free(x); free(y); free(y2);
}

/* float tanh: within BN_TANH_ULP_F32 float ulp of the exact value (libm's double tanh, whose error
   is far below a float ulp), tails and in place as for double, special values exact */
static double ulpf_of(double t) { /* spacing of floats at |t| */
    int e;
    double a = fabs(t);
    if (a < FLT_MIN) return 0x1p-149;
    frexp(a, &e);
    return ldexp(1.0, e - FLT_MANT_DIG);
}

static void test_tanh_f32(void) {
    static const double range[] = {1e-30, 1e-4, 0.1, 0.5, 1.0, 2.0, 5.0, 9.0, 20.0, 400.0};
    const int N = 100003;
    float *x = malloc(N * sizeof(float)), *y = malloc(N * sizeof(float)), *y2 = malloc(17 * sizeof(float));
    double worst = 0.0;
    if (!x || !y || !y2) { fprintf(stderr, "test_kernels: out of memory\n"); exit(2); }
    for (size_t r = 0; r < sizeof range / sizeof range[0]; r++) {
        for (int i = 0; i < N; i++) x[i] = (float)((2.0 * urand() - 1.0) * range[r]);
        bn_c_tanh_f32(N, x, y);
        for (int i = 0; i < N; i++) {
            double t = tanh((double)x[i]), e = fabs((double)y[i] - t) / ulpf_of(t);
            if (e > worst) worst = e;
        }
        for (int n = 1; n <= 17; n++) { /* every tail length, and y == x */
            memcpy(y2, x, n * sizeof(float));
            bn_c_tanh_f32(n, y2, y2);
            checks++;
            if (memcmp(y2, y, n * sizeof(float)) != 0) {
                failures++;
                fprintf(stderr, "FAIL tanh (float): n=%d in place differs from the long run\n", n);
            }
        }
    }
    checks++;
    if (!(worst <= BN_TANH_ULP_F32)) {
        failures++;
        fprintf(stderr, "FAIL tanh (float): %.4f ulp from tanh, documented bound %.3f\n", worst,
                BN_TANH_ULP_F32);
    }
    if (verbose)
        printf("tanh (float): max %.4f ulp from the exact value (bound %.3f)\n", worst, BN_TANH_ULP_F32);
    const float sx[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, 0x1p-149f, -0x1p-149f, FLT_MIN,
                        1e-30f, -1e-30f, 9.0f, 20.0f, 1e30f, -1e30f, FLT_MAX};
    const int ns = (int)(sizeof sx / sizeof sx[0]);
    float sy[sizeof sx / sizeof sx[0]];
    bn_c_tanh_f32(ns, sx, sy);
    for (int i = 0; i < ns; i++) {
        float want = (float)tanh((double)sx[i]);
        int ok = isnan(want) ? isnan(sy[i]) : (sy[i] == want && signbit(sy[i]) == signbit(want));
        checks++;
        if (!ok) {
            failures++;
            fprintf(stderr, "FAIL tanh (float)(%.9g) = %.9g, want %.9g\n", sx[i], sy[i], want);
        }
    }
    free(x); free(y); free(y2);
}

/* column tile of the fused kernels (as bn_tile_cols in bn_kernels.c): batches either side of it */
static int tile_cols(int m) {
    int t = ((use_f32 ? 4096 : 2048) / m) & ~7;
    return t > 256 ? 256 : t;
}


int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "-v")) verbose++;
    for (use_f32 = 0; use_f32 <= 1; use_f32++) {
    static const int widths[] = {1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 24, 31, BN_FUSED_MAX};
    static const int small_batches[] = {1, 2, 3, 4, 5, 7, 8, 9, 13, 64, 65, 300};
    for (size_t w = 0; w < sizeof widths / sizeof widths[0]; w++) {
        int m = widths[w], T = tile_cols(m);
        int batches[sizeof small_batches / sizeof small_batches[0] + 6];
        int nbatch = 0;
        for (size_t i = 0; i < sizeof small_batches / sizeof small_batches[0]; i++)
            batches[nbatch++] = small_batches[i];
        batches[nbatch++] = T - 1;
        batches[nbatch++] = T;
        batches[nbatch++] = T + 1;
        batches[nbatch++] = T + 3;
        batches[nbatch++] = 2 * T + 4;
        batches[nbatch++] = 3 * T + 7;
        for (int act = 0; act < 3; act++)
            for (int scalar = 0; scalar < 2; scalar++)
                for (int i = 0; i < nbatch; i++) {
                    test_forward(act, m, batches[i], scalar);
                    test_backward(act, m, batches[i], scalar);
                }
    }
    static const int ew_widths[] = {1, 3, 33, 40};
    static const int ew_batches[] = {1, 2, 3, 4, 5, 7, 64, 1001};
    for (int act = 0; act < 3; act++)
        for (int scalar = 0; scalar < 2; scalar++)
            for (size_t w = 0; w < sizeof ew_widths / sizeof ew_widths[0]; w++)
                for (size_t i = 0; i < sizeof ew_batches / sizeof ew_batches[0]; i++)
                    test_elementwise(act, ew_widths[w], ew_batches[i], scalar);
    static const int bits_batches[] = {1, 3, 7, 8, 9, 15, 16, 17, 64, 1001};
    for (int scalar = 0; scalar < 2; scalar++)
        for (size_t w = 0; w < sizeof ew_widths / sizeof ew_widths[0]; w++)
            for (size_t i = 0; i < sizeof bits_batches / sizeof bits_batches[0]; i++)
                test_bits(ew_widths[w], bits_batches[i], scalar);
    }
    use_f32 = 0;
    test_tanh();
    test_tanh_f32();
    if (failures) {
        fprintf(stderr, "test_kernels: %d of %d checks FAILED\n", failures, checks);
        return 1;
    }
    if (verbose) printf("test_kernels: all %d checks passed\n", checks);
    return 0;
}
