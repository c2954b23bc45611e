/* braidnet per-layer kernels: SIMD C part (declared in bn_kernels.h, which documents the
   contracts; used by braidnet/_kernels.pyx, tested by test_kernels.c).

   The kernels are written once, generic over the element type, in bn_kernels_real.h, which this
   file includes twice: for double (4 lanes of 32-byte vectors; the entry points bn_c_update, ...)
   and for float (8 lanes; bn_c_update_f32, ...).  Only the small helpers below (load, store,
   select, horizontal sum, tanh) are written per type.

   - bn_tanh4: vectorisable tanh, within BN_TANH_ULP ulp of the correctly rounded value (libm's
     tanh is scalar and several times slower).  float's tanh is bn_tanh8f, the same scheme in float
     on 8 lanes: within BN_TANH_ULP_F32 ulp.
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

#define BN_TILE_BYTES 16384 /* width * tile columns * element size: 16 KiB of L1 */

/* ---- per-type helpers -------------------------------------------------------------------------- */

typedef double bn_v4 __attribute__((vector_size(32), aligned(8), may_alias));     /* 4 doubles, unaligned OK */
typedef long long bn_i4 __attribute__((vector_size(32), aligned(8), may_alias));
typedef float bn_v8f __attribute__((vector_size(32), aligned(4), may_alias));     /* 8 floats, unaligned OK */
typedef int bn_i8f __attribute__((vector_size(32), aligned(4), may_alias));
typedef unsigned bn_u8f __attribute__((vector_size(32), aligned(4), may_alias));
typedef float bn_v4f __attribute__((vector_size(16)));                            /* half a bn_v8f */

BN_INLINE bn_v4 bn_splat_d(double a) { bn_v4 v = {a, a, a, a}; return v; }
BN_INLINE bn_v4 bn_ld_d(const double *p) { return *(const bn_v4 *)p; }
BN_INLINE void bn_st_d(double *p, bn_v4 v) { *(bn_v4 *)p = v; }
BN_INLINE bn_v4 bn_sel_d(bn_i4 m, bn_v4 a, bn_v4 b) {   /* m ? a : b, lane-wise */
    return (bn_v4)(((bn_i4)a & m) | ((bn_i4)b & ~m));
}
BN_INLINE double bn_hsum_d(bn_v4 v) { return (v[0] + v[2]) + (v[1] + v[3]); }

BN_INLINE bn_v8f bn_splat_f(float a) { bn_v8f v = {a, a, a, a, a, a, a, a}; return v; }
BN_INLINE bn_v8f bn_ld_f(const float *p) { return *(const bn_v8f *)p; }
BN_INLINE void bn_st_f(float *p, bn_v8f v) { *(bn_v8f *)p = v; }
BN_INLINE bn_v8f bn_sel_f(bn_i8f m, bn_v8f a, bn_v8f b) {
    return (bn_v8f)(((bn_i8f)a & m) | ((bn_i8f)b & ~m));
}
BN_INLINE float bn_hsum_f(bn_v8f v) {
    return ((v[0] + v[4]) + (v[2] + v[6])) + ((v[1] + v[5]) + (v[3] + v[7]));
}
/* float lanes 0-3 / 4-7 as doubles (exact) */
typedef union { bn_v8f v; bn_v4f h[2]; } bn_f8_halves;   /* the halves without element shuffles */
BN_INLINE bn_v4 bn_lo_d(bn_v8f x) { bn_f8_halves u = {x}; return __builtin_convertvector(u.h[0], bn_v4); }
BN_INLINE bn_v4 bn_hi_d(bn_v8f x) { bn_f8_halves u = {x}; return __builtin_convertvector(u.h[1], bn_v4); }

/* tanh on 4 lanes: |x| = k ln2/2 + r with |r| <= ln2/4 (Cody-Waite, k <= 58), t = tanh(r) from
   an odd polynomial (relative error ~4e-18, fitted for this file), then the addition theorem
   with tanh(k ln2/2) = (2^k - 1)/(2^k + 1):
       tanh|x| = ((2^k - 1) + (2^k + 1) t) / ((2^k + 1) + (2^k - 1) t)
   One division, no table, no branch; NaN propagates, tanh(-0) = -0. */
BN_INLINE bn_v4 bn_tanh4(bn_v4 x) {
    const bn_i4 smask = {INT64_MIN, INT64_MIN, INT64_MIN, INT64_MIN};
    const bn_v4 shift = bn_splat_d(0x1.8p52);       /* round-to-integer shifter */
    bn_i4 xi = (bn_i4)x;
    bn_i4 sgn = xi & smask;
    bn_v4 a = (bn_v4)(xi & ~smask);
    a = bn_sel_d((bn_i4)(a > 20.0), bn_splat_d(20.0), a);  /* tanh(20) = 1 in double */
    bn_v4 kt = a * 2.8853900817779268 + shift;    /* k = round(2|x|/ln2), in the low bits */
    bn_v4 kd = kt - shift;
    bn_v4 r = a - kd * 0x1.62e42fee00000p-2;       /* exact: (ln2/2)_hi has 32 bits */
    r = r - kd * 0x1.a39ef35793c76p-34;
    bn_v4 r2 = r * r;
    bn_v4 p = bn_splat_d(0.0034447731480744532);
    p = p * r2 - 0.0088573038910376;
    p = p * r2 + 0.021869370581842715;
    p = p * r2 - 0.053968252780445355;
    p = p * r2 + 0.13333333332782998;
    p = p * r2 - 0.3333333333333248;
    bn_v4 t = r + (r * r2) * p;                    /* tanh(r) */
    const bn_i4 one_bits = (bn_i4)bn_splat_d(1.0);
    bn_v4 s = (bn_v4)(((bn_i4)kt << 52) + one_bits);  /* 2^k */
    bn_v4 sm = s - 1.0, sp = s + 1.0;              /* exact */
    bn_v4 th = (sm + sp * t) / (sp + sm * t);
    return (bn_v4)((bn_i4)th | sgn);
}


BN_INLINE bn_v4 bn_tanhv_d(bn_v4 x) { return bn_tanh4(x); }
BN_INLINE bn_v4 bn_tanh_ds_d(bn_v4 x, bn_v4 *ds) { bn_v4 t = bn_tanh4(x); *ds = 1.0 - t * t; return t; }
BN_INLINE bn_v4 bn_dtanhv_d(bn_v4 x) { bn_v4 t = bn_tanh4(x); return 1.0 - t * t; }
/* tanh on 8 float lanes, in float: the scheme of bn_tanh4 with float constants.  |x| = k ln2/2 + r,
   |r| <= ln2/4 (Cody-Waite with a 19-bit (ln2/2)_hi, so k (ln2/2)_hi is exact for k <= 32, with
   or without FMA), t = tanh(r) = r + r^3 p(r^2), p of degree 2 fitted here for relative error
   1.7e-10 on |r| <= 0.1734, then
       k <= 2:  tanh|x| = ((2^k - 1) + (2^k + 1) t) / ((2^k + 1) + (2^k - 1) t)
       k >  2:  tanh|x| = 1 - 2 (1 - t) / (2^k (1 + t) + (1 - t))                  (|x| > 0.87)
   the same identity rearranged (2^k +- 1 are not floats for k > 23); in the second form the
   correction term is below 0.3, so its rounding error hardly shows.  |x| is clamped at 9.5 (tanh rounds to 1 from
   9.01).  One division, no table, no branch; NaN propagates, tanh(-0) = -0.  Error: at most 2.33
   float ulp over every float (both builds, checked exhaustively against double tanh; the k <= 2
   cases are the worst, the k > 2 ones stay below 1.1 ulp), BN_TANH_ULP_F32 = 2.5 documented. */
BN_INLINE bn_v8f bn_tanh8f(bn_v8f x) {
    const bn_i8f smask = {INT32_MIN, INT32_MIN, INT32_MIN, INT32_MIN,
                          INT32_MIN, INT32_MIN, INT32_MIN, INT32_MIN};
    const bn_v8f shift = bn_splat_f(0x1.8p23f);      /* round-to-integer shifter */
    bn_i8f xi = (bn_i8f)x;
    bn_i8f sgn = xi & smask;
    bn_v8f a = (bn_v8f)(xi & ~smask);
    a = bn_sel_f((bn_i8f)(a > 9.5f), bn_splat_f(9.5f), a);
    bn_v8f kt = a * 0x1.715476p+1f + shift;         /* k = round(2|x|/ln2), in the low bits */
    bn_v8f kd = kt - shift;
    bn_i8f k = (bn_i8f)kt - (bn_i8f)shift;           /* k as an integer, 0 <= k <= 27 */
    bn_v8f r = a - kd * 0x1.62e44p-2f;               /* exact: (ln2/2)_hi has 19 bits */
    r = r - kd * -0x1.0105c6p-22f;
    bn_v8f r2 = r * r;
    bn_v8f p = bn_splat_f(-0x1.afe2acp-5f);
    p = p * r2 + 0x1.1105a6p-3f;
    p = p * r2 - 0x1.55554ep-2f;
    bn_v8f t = r + (r * r2) * p;                     /* tanh(r) */
    const bn_i8f one_bits = (bn_i8f)bn_splat_f(1.0f);
    bn_v8f s = (bn_v8f)((bn_i8f)((bn_u8f)k << 23) + one_bits);   /* 2^k */
    bn_v8f sm = s - 1.0f, sp = s + 1.0f;             /* exact where used (k <= 2) */
    bn_v8f omt = 1.0f - t;
    bn_i8f small = (bn_i8f)(k <= 2);
    bn_v8f num = bn_sel_f(small, sm + sp * t, -2.0f * omt);
    bn_v8f den = bn_sel_f(small, sp + sm * t, s * (1.0f + t) + omt);
    bn_v8f th = (bn_v8f)((bn_i8f)bn_splat_f(1.0f) & ~small) + num / den;
    return (bn_v8f)((bn_i8f)th | sgn);
}

BN_INLINE bn_v8f bn_tanhv_f(bn_v8f x) { return bn_tanh8f(x); }
BN_INLINE bn_v8f bn_dtanhv_f(bn_v8f x) { bn_v8f t = bn_tanh8f(x); return 1.0f - t * t; }
BN_INLINE bn_v8f bn_tanh_ds_f(bn_v8f x, bn_v8f *ds) {
    bn_v8f t = bn_tanh8f(x);
    *ds = 1.0f - t * t;
    return t;
}

/* ReLU's sigma' as bits: the lanes of a comparison mask (-1 / 0) as the low VL bits of an
   unsigned, and back to 1.0 / 0.0 lanes from the low VL bits of m */
BN_INLINE unsigned bn_bits_d(bn_i4 k) {
    return (unsigned)((k[0] & 1) | (k[1] & 2) | (k[2] & 4) | (k[3] & 8));
}
BN_INLINE bn_v4 bn_unbits_d(unsigned m) {
    const bn_i4 lane = {1, 2, 4, 8};
    bn_i4 mv = {m, m, m, m};
    return (bn_v4)((bn_i4)bn_splat_d(1.0) & (bn_i4)((mv & lane) == lane));
}
BN_INLINE unsigned bn_bits_f(bn_i8f k) {
    const bn_i8f lane = {1, 2, 4, 8, 16, 32, 64, 128};
    bn_i8f b = k & lane;
    return (unsigned)((b[0] | b[1]) | (b[2] | b[3]) | (b[4] | b[5]) | (b[6] | b[7]));
}
BN_INLINE bn_v8f bn_unbits_f(unsigned m) {
    const bn_i8f lane = {1, 2, 4, 8, 16, 32, 64, 128};
    bn_i8f mv = {(int)m, (int)m, (int)m, (int)m, (int)m, (int)m, (int)m, (int)m};
    return (bn_v8f)((bn_i8f)bn_splat_f(1.0f) & (bn_i8f)((mv & lane) == lane));
}

/* row sums in double: acc[0] (+ acc[1]) += the lanes of d */
BN_INLINE void bn_wacc_d(bn_v4 *acc, bn_v4 d) { acc[0] += d; }
BN_INLINE void bn_wacc_f(bn_v4 *acc, bn_v8f d) { acc[0] += bn_lo_d(d); acc[1] += bn_hi_d(d); }

/* ---- the kernels, once per element type -------------------------------------------------------- */

#define F(x) BN_T(bn_##x)
#define R double
#define V bn_v4
#define VI bn_i4
#define VL 4
#define BN_T(x) x##_d
#define BN_API(x) x
#include "bn_kernels_real.h"
#undef R
#undef V
#undef VI
#undef VL
#undef BN_T
#undef BN_API

#define R float
#define V bn_v8f
#define VI bn_i8f
#define VL 8
#define BN_T(x) x##_f
#define BN_API(x) x##_f32
#include "bn_kernels_real.h"
#undef R
#undef V
#undef VI
#undef VL
#undef BN_T
#undef BN_API
#undef F
