/* The body of the braidnet kernels, generic over the element type: included twice by bn_kernels.c,
   once for double and once for float, so both precisions run the same code.  Not a header of its
   own (no include guard); the includer defines:
       R        the element type (double | float)
       V, VI    a 32-byte vector of R and the integer mask vector of the same lanes
       VL       lanes of V (4 | 8)
       F(x)     the internal name of helper x for this type (bn_x_d | bn_x_f)
       BN_API(x) the exported name of entry point x (x | x_f32)
   and the per-type helpers F(splat), F(ld), F(st), F(sel), F(hsum), F(tanhv) (tanh of V),
   F(dtanhv) (1 - tanh^2 of V).  Constants are written as (R) casts: for double they are the very
   constants of the float64-only kernels, so those results stay bit for bit what they were. */

/* activation and its derivative on VL lanes; act is a compile-time constant after inlining */
BN_INLINE V F(sigma)(int act, V x) {
    if (act == 0) return F(tanhv)(x);
    if (act == 1) return (V)((VI)x & (VI)(x > (R)0));
    /* smoothed ReLU: (q + eta)^2/(4 eta) + max(x - eta, 0), q = clamp(x, -eta, eta) */
    V q = F(sel)((VI)(x > (R)-BN_ETA), x, F(splat)((R)-BN_ETA));
    q = F(sel)((VI)(q < (R)BN_ETA), q, F(splat)((R)BN_ETA));
    q = q + (R)BN_ETA;
    V r = x - (R)BN_ETA;
    r = (V)((VI)r & (VI)(r > (R)0));
    return q * q * (R)(0.25 / BN_ETA) + r;
}

BN_INLINE V F(dsigma)(int act, V x) {
    if (act == 0) return F(dtanhv)(x);
    if (act == 1) return (V)((VI)F(splat)((R)1) & (VI)(x > (R)0));
    V q = F(sel)((VI)(x > (R)-BN_ETA), x, F(splat)((R)-BN_ETA));
    q = F(sel)((VI)(q < (R)BN_ETA), q, F(splat)((R)BN_ETA));
    return (q + (R)BN_ETA) * (R)(0.5 / BN_ETA);
}

/* sigma(x), and sigma'(x) into *ds, of the same x (tanh computed once: the derivative is 1 - t^2
   of the very t returned, as F(dsigma) computes it) */
BN_INLINE V F(sigma_ds)(int act, V x, V *ds) {
    if (act == 0) return F(tanh_ds)(x, ds);
    *ds = F(dsigma)(act, x);
    return F(sigma)(act, x);
}

/* ---- element-wise rows (BLAS path) ----------------------------------------------------------- */

/* out[j] = in[j] + h sigma(z[j] + bc)  (in == NULL: out[j] = sigma(z[j] + bc)); z may equal out */
BN_INLINE void F(row_update)(int act, int n, R h, R bc, const R *z, const R *in, R *out) {
    int j = 0;
    for (; j + VL <= n; j += VL) {
        V s = F(sigma)(act, F(ld)(z + j) + bc);
        if (in) s = F(ld)(in + j) + h * s;
        F(st)(out + j, s);
    }
    if (j < n) {
        R zt[VL] = {0}, it[VL] = {0}, ot[VL];
        for (int i = 0; j + i < n; i++) { zt[i] = z[j + i]; if (in) it[i] = in[j + i]; }
        V s = F(sigma)(act, F(ld)(zt) + bc);
        if (in) s = F(ld)(it) + h * s;
        F(st)(ot, s);
        for (int i = 0; j + i < n; i++) out[j + i] = ot[i];
    }
}

/* z[j] <- sigma'(z[j] + bc) * lam[j] */
BN_INLINE void F(row_deriv)(int act, int n, R bc, R *z, const R *lam) {
    int j = 0;
    for (; j + VL <= n; j += VL)
        F(st)(z + j, F(dsigma)(act, F(ld)(z + j) + bc) * F(ld)(lam + j));
    if (j < n) {
        R zt[VL] = {0}, lt[VL] = {0}, ot[VL];
        for (int i = 0; j + i < n; i++) { zt[i] = z[j + i]; lt[i] = lam[j + i]; }
        F(st)(ot, F(dsigma)(act, F(ld)(zt) + bc) * F(ld)(lt));
        for (int i = 0; j + i < n; i++) z[j + i] = ot[i];
    }
}

BN_INLINE void F(update_impl)(int act, int width, int batch, int scalar, R h, const R *b,
                              const R *z, const R *in, R *out) {
    for (int c = 0; c < width; c++) {
        ptrdiff_t off = (ptrdiff_t)c * batch;
        F(row_update)(act, batch, h, b[scalar ? 0 : c], z + off, in ? in + off : NULL, out + off);
    }
}

BN_CLONES void BN_API(bn_c_update)(int act, int width, int batch, int scalar, double h,
                                   const R *b, const R *z, const R *in, R *out) {
    const R hr = (R)h;
    if (act == 0) F(update_impl)(0, width, batch, scalar, hr, b, z, in, out);
    else if (act == 1) F(update_impl)(1, width, batch, scalar, hr, b, z, in, out);
    else F(update_impl)(2, width, batch, scalar, hr, b, z, in, out);
}

BN_INLINE void F(deriv_impl)(int act, int width, int batch, int scalar, const R *b, R *z,
                             const R *lam) {
    for (int c = 0; c < width; c++) {
        ptrdiff_t off = (ptrdiff_t)c * batch;
        F(row_deriv)(act, batch, b[scalar ? 0 : c], z + off, lam + off);
    }
}

BN_CLONES void BN_API(bn_c_deriv)(int act, int width, int batch, int scalar, const R *b, R *z,
                                  const R *lam) {
    if (act == 0) F(deriv_impl)(0, width, batch, scalar, b, z, lam);
    else if (act == 1) F(deriv_impl)(1, width, batch, scalar, b, z, lam);
    else F(deriv_impl)(2, width, batch, scalar, b, z, lam);
}

/* ---- stored-derivative and bias-sum passes (BLAS path) ---------------------------------------- */

/* out[j] = in[j] + h sigma(z[j] + bc), ds[j] = sigma'(z[j] + bc); z may equal out */
BN_INLINE void F(row_update_ds)(int act, int n, R h, R bc, const R *z, const R *in, R *out, R *ds) {
    int j = 0;
    V d;
    for (; j + VL <= n; j += VL) {
        V s = F(sigma_ds)(act, F(ld)(z + j) + bc, &d);
        F(st)(out + j, F(ld)(in + j) + h * s);
        F(st)(ds + j, d);
    }
    if (j < n) {
        R zt[VL] = {0}, it[VL] = {0}, ot[VL], dt[VL];
        for (int i = 0; j + i < n; i++) { zt[i] = z[j + i]; it[i] = in[j + i]; }
        V s = F(sigma_ds)(act, F(ld)(zt) + bc, &d);
        F(st)(ot, F(ld)(it) + h * s);
        F(st)(dt, d);
        for (int i = 0; j + i < n; i++) { out[j + i] = ot[i]; ds[j + i] = dt[i]; }
    }
}

BN_INLINE void F(update_ds_impl)(int act, int width, int batch, int scalar, R h, const R *b,
                                 const R *z, const R *in, R *out, R *ds) {
    for (int c = 0; c < width; c++) {
        ptrdiff_t off = (ptrdiff_t)c * batch;
        F(row_update_ds)(act, batch, h, b[scalar ? 0 : c], z + off, in + off, out + off, ds + off);
    }
}

BN_CLONES void BN_API(bn_c_update_ds)(int act, int width, int batch, int scalar, double h,
                                      const R *b, const R *z, const R *in, R *out, R *ds) {
    const R hr = (R)h;
    if (act == 0) F(update_ds_impl)(0, width, batch, scalar, hr, b, z, in, out, ds);
    else if (act == 1) F(update_ds_impl)(1, width, batch, scalar, hr, b, z, in, out, ds);
    else F(update_ds_impl)(2, width, batch, scalar, hr, b, z, in, out, ds);
}

/* the bias gradient of row c: gb[c] += alpha * s, or with scalar s added to *tot (for gb[0]) */
BN_INLINE void F(gb_row)(int scalar, double alpha, double s, int c, double *tot, R *gb) {
    if (scalar) *tot += s;
    else gb[c] = (R)(gb[c] + alpha * s);
}

/* z[j] <- sigma'(z[j] + bc) * lam[j] (ds == bits == NULL), or D[j] = ds[j] * lam[j] with the
   stored derivative ds[j], or bit j of bits as 1.0 / 0.0; returns the row sum (in double) when
   sum != 0 */
BN_INLINE double F(row_dmul)(int act, int n, R bc, const R *z, const R *ds,
                             const unsigned char *bits, const R *lam, R *D, int sum) {
    bn_v4 acc[2] = {{0, 0, 0, 0}, {0, 0, 0, 0}};
    int j = 0;
    for (; j + VL <= n; j += VL) {
        V s = bits ? F(unbits)((unsigned)bits[j >> 3] >> (j & 7))
                   : ds ? F(ld)(ds + j) : F(dsigma)(act, F(ld)(z + j) + bc);
        V d = s * F(ld)(lam + j);
        F(st)(D + j, d);
        if (sum) F(wacc)(acc, d);
    }
    if (j < n) {
        R zt[VL] = {0}, lt[VL] = {0}, ot[VL];
        for (int i = 0; j + i < n; i++) {
            zt[i] = bits ? (R)((bits[(j + i) >> 3] >> ((j + i) & 7)) & 1) : ds ? ds[j + i] : z[j + i];
            lt[i] = lam[j + i];
        }
        V d = (ds || bits ? F(ld)(zt) : F(dsigma)(act, F(ld)(zt) + bc)) * F(ld)(lt);
        F(st)(ot, d);
        if (sum) F(wacc)(acc, d);     /* padding lanes: sigma'(finite) * 0 = 0 */
        for (int i = 0; j + i < n; i++) D[j + i] = ot[i];
    }
    return sum ? bn_hsum_d(acc[0] + acc[1]) : 0.0;
}

BN_INLINE void F(dmul_impl)(int act, int width, int batch, int scalar, const R *b, const R *z,
                            const R *ds, const unsigned char *bits, const R *lam, R *D,
                            double alpha, R *gb) {
    double tot = 0.0;
    for (int c = 0; c < width; c++) {
        ptrdiff_t off = (ptrdiff_t)c * batch;
        double s = F(row_dmul)(act, batch, b ? b[scalar ? 0 : c] : (R)0, z ? z + off : NULL,
                               ds ? ds + off : NULL,
                               bits ? bits + (ptrdiff_t)c * BN_BITS_ROW(batch) : NULL,
                               lam + off, D + off, gb != NULL);
        if (gb) F(gb_row)(scalar, alpha, s, c, &tot, gb);
    }
    if (gb && scalar) gb[0] = (R)(gb[0] + alpha * tot);
}

BN_CLONES void BN_API(bn_c_deriv_gb)(int act, int width, int batch, int scalar, const R *b, R *z,
                                     const R *lam, double alpha, R *gb) {
    if (act == 0) F(dmul_impl)(0, width, batch, scalar, b, z, NULL, NULL, lam, z, alpha, gb);
    else if (act == 1) F(dmul_impl)(1, width, batch, scalar, b, z, NULL, NULL, lam, z, alpha, gb);
    else F(dmul_impl)(2, width, batch, scalar, b, z, NULL, NULL, lam, z, alpha, gb);
}

BN_CLONES void BN_API(bn_c_dmul_gb)(int width, int batch, int scalar, const R *ds, const R *lam,
                                    R *D, double alpha, R *gb) {
    F(dmul_impl)(1, width, batch, scalar, NULL, NULL, ds, NULL, lam, D, alpha, gb);
}

BN_CLONES void BN_API(bn_c_bitsmul_gb)(int width, int batch, int scalar, const unsigned char *bits,
                                       const R *lam, R *D, double alpha, R *gb) {
    F(dmul_impl)(1, width, batch, scalar, NULL, NULL, NULL, bits, lam, D, alpha, gb);
}

/* ---- ReLU with sigma' kept as bits (BLAS path) ------------------------------------------------ */

/* 8 columns: out = in + h relu(z + bc) (the expression of row_update_ds, so the same values);
   returns their sigma' as bits (bit i: z[i] + bc > 0) */
BN_INLINE unsigned F(relu8_bits)(R h, R bc, const R *z, const R *in, R *out) {
    unsigned m = 0;
    for (int q = 0; q < 8; q += VL) {
        V x = F(ld)(z + q) + bc;
        VI pos = (VI)(x > (R)0);
        F(st)(out + q, F(ld)(in + q) + h * (V)((VI)x & pos));
        m |= F(bits)(pos) << q;
    }
    return m;
}

BN_CLONES void BN_API(bn_c_update_bits)(int width, int batch, int scalar, double h, const R *b,
                                        const R *z, const R *in, R *out, unsigned char *bits) {
    const R hr = (R)h;
    for (int c = 0; c < width; c++) {
        ptrdiff_t off = (ptrdiff_t)c * batch;
        const R bc = b[scalar ? 0 : c], *zc = z + off, *ic = in + off;
        R *oc = out + off;
        unsigned char *bc_row = bits + (ptrdiff_t)c * BN_BITS_ROW(batch);
        int j = 0;
        for (; j + 8 <= batch; j += 8)
            bc_row[j >> 3] = (unsigned char)F(relu8_bits)(hr, bc, zc + j, ic + j, oc + j);
        if (j < batch) {     /* the last 1..7 columns through zero-padded copies */
            R zt[8] = {0}, it[8] = {0}, ot[8];
            for (int i = 0; j + i < batch; i++) { zt[i] = zc[j + i]; it[i] = ic[j + i]; }
            unsigned m = F(relu8_bits)(hr, bc, zt, it, ot);
            for (int i = 0; j + i < batch; i++) oc[j + i] = ot[i];
            bc_row[j >> 3] = (unsigned char)(m & ((1u << (batch - j)) - 1));
        }
    }
}

/* ---- the MGRIT core's vector sum (braidnet.braid's VectorApp) ------------------------------------ */

/* y = a x + b y over n values (b == 0: y = a x, y not read), each value rounded as a * x + b * y
   is one operation at a time (no FMA contraction: the scalar loop's results, only faster) */
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
BN_CLONES void BN_API(bn_axpby)(ptrdiff_t n, double a, const R *x, double b, R *y) {
    const R ar = (R)a, br = (R)b;
    ptrdiff_t j = 0;
    if (b == 0.0) {
        for (; j + VL <= n; j += VL) F(st)(y + j, F(ld)(x + j) * ar);
        for (; j < n; j++) y[j] = ar * x[j];
    } else {
        for (; j + VL <= n; j += VL) F(st)(y + j, F(ld)(x + j) * ar + F(ld)(y + j) * br);
        for (; j < n; j++) y[j] = ar * x[j] + br * y[j];
    }
}
#pragma GCC pop_options

/* tanh of n values (tests, benchmarks) */
BN_CLONES void BN_API(bn_c_tanh)(int n, const R *x, R *y) {
    int j = 0;
    for (; j + VL <= n; j += VL) F(st)(y + j, F(tanhv)(F(ld)(x + j)));
    if (j < n) {
        R t[VL] = {0};
        for (int i = 0; j + i < n; i++) t[i] = x[j + i];
        F(st)(t, F(tanhv)(F(ld)(t)));
        for (int i = 0; j + i < n; i++) y[j + i] = t[i];
    }
}

/* ---- fused small-width path ------------------------------------------------------------------ */

/* One register block of Z = init + A U over NR rows (c0..c0+NR) and VL*C columns (j..):
   A(c, k) = A[c*ars + k*acs]; init row c is bias[c*bs] (I == NULL) or I[c*ldi + j..]. */
BN_INLINE void F(mv_block)(const int NR, const int C, int kdim, const R *A, ptrdiff_t ars,
                           ptrdiff_t acs, const R *bias, ptrdiff_t bs, const R *I, ptrdiff_t ldi,
                           const R *U, ptrdiff_t ldu, R *Z, ptrdiff_t ldz, int c0, int j) {
    V acc[4][2];
    for (int r = 0; r < NR; r++)
        for (int q = 0; q < C; q++)
            acc[r][q] = I ? F(ld)(I + (ptrdiff_t)(c0 + r) * ldi + j + VL * q)
                          : F(splat)(bias[(c0 + r) * bs]);
    const R *Ar = A + (ptrdiff_t)c0 * ars;
    for (int k = 0; k < kdim; k++) {
        V u[2];
        for (int q = 0; q < C; q++) u[q] = F(ld)(U + (ptrdiff_t)k * ldu + j + VL * q);
        for (int r = 0; r < NR; r++) {
            R a = Ar[r * ars + k * acs];
            for (int q = 0; q < C; q++) acc[r][q] += a * u[q];
        }
    }
    for (int r = 0; r < NR; r++)
        for (int q = 0; q < C; q++) F(st)(Z + (ptrdiff_t)(c0 + r) * ldz + j + VL * q, acc[r][q]);
}

/* Z (m x n) = init + A U, n a multiple of VL.  Z may equal I (same ld). */
BN_INLINE void F(mv)(int m, int kdim, const R *A, ptrdiff_t ars, ptrdiff_t acs, const R *bias,
                     ptrdiff_t bs, const R *I, ptrdiff_t ldi, const R *U, ptrdiff_t ldu, R *Z,
                     ptrdiff_t ldz, int n) {
    int c = 0;
    for (; c + 4 <= m; c += 4) {
        int j = 0;
        for (; j + 2 * VL <= n; j += 2 * VL) F(mv_block)(4, 2, kdim, A, ars, acs, bias, bs, I, ldi, U, ldu, Z, ldz, c, j);
        if (j < n) F(mv_block)(4, 1, kdim, A, ars, acs, bias, bs, I, ldi, U, ldu, Z, ldz, c, j);
    }
    for (; c < m; c++) {
        int j = 0;
        for (; j + 2 * VL <= n; j += 2 * VL) F(mv_block)(1, 2, kdim, A, ars, acs, bias, bs, I, ldi, U, ldu, Z, ldz, c, j);
        if (j < n) F(mv_block)(1, 1, kdim, A, ars, acs, bias, bs, I, ldi, U, ldu, Z, ldz, c, j);
    }
}

/* G (m x kdim, row-major, ld kdim) += D U^T over n columns (multiple of VL); D rows ld ldd. */
BN_INLINE void F(dut_block)(const int NR, const int Q, int kdim, const R *D, ptrdiff_t ldd,
                            const R *U, ptrdiff_t ldu, R *G, int c0, int k0, int n) {
    V acc[2][4];
    for (int r = 0; r < NR; r++)
        for (int q = 0; q < Q; q++) acc[r][q] = F(splat)((R)0);
    for (int j = 0; j < n; j += VL) {
        V d[2], u[4];
        for (int r = 0; r < NR; r++) d[r] = F(ld)(D + (ptrdiff_t)(c0 + r) * ldd + j);
        for (int q = 0; q < Q; q++) u[q] = F(ld)(U + (ptrdiff_t)(k0 + q) * ldu + j);
        for (int r = 0; r < NR; r++)
            for (int q = 0; q < Q; q++) acc[r][q] += d[r] * u[q];
    }
    for (int r = 0; r < NR; r++)
        for (int q = 0; q < Q; q++) G[(ptrdiff_t)(c0 + r) * kdim + k0 + q] += F(hsum)(acc[r][q]);
}

BN_INLINE void F(dut)(int m, int kdim, const R *D, ptrdiff_t ldd, const R *U, ptrdiff_t ldu,
                      R *G, int n) {
    int c = 0;
    for (; c + 2 <= m; c += 2) {
        int k = 0;
        for (; k + 4 <= kdim; k += 4) F(dut_block)(2, 4, kdim, D, ldd, U, ldu, G, c, k, n);
        for (; k < kdim; k++) F(dut_block)(2, 1, kdim, D, ldd, U, ldu, G, c, k, n);
    }
    for (; c < m; c++) {
        int k = 0;
        for (; k + 4 <= kdim; k += 4) F(dut_block)(1, 4, kdim, D, ldd, U, ldu, G, c, k, n);
        for (; k < kdim; k++) F(dut_block)(1, 1, kdim, D, ldd, U, ldu, G, c, k, n);
    }
}

/* columns of a tile: a multiple of 8 (so of VL), BN_TILE_BYTES of Z in all, at most 256 */
BN_INLINE int F(tile_cols)(int m) {
    int t = ((int)(BN_TILE_BYTES / sizeof(R)) / m) & ~7;
    return t > 256 ? 256 : t;   /* m <= BN_FUSED_MAX = 32 gives t >= 64 */
}

/* forward on one tile of n columns (multiple of VL): out = in + h sigma(W in + b) and, unless
   ds == NULL, ds = sigma'(W in + b) (rows ldd apart) */
BN_INLINE void F(fwd_tile)(int act, int m, int bs, R h, const R *W, const R *b, const R *in,
                           ptrdiff_t ldi, R *out, ptrdiff_t ldo, R *ds, ptrdiff_t ldd, R *Z,
                           int n) {
    F(mv)(m, m, W, m, 1, b, bs, NULL, 0, in, ldi, Z, n, n);
    for (int c = 0; c < m; c++) {
        const R *zc = Z + (ptrdiff_t)c * n, *ic = in + (ptrdiff_t)c * ldi;
        R *oc = out + (ptrdiff_t)c * ldo;
        if (ds) {
            R *dc = ds + (ptrdiff_t)c * ldd;
            for (int j = 0; j < n; j += VL) {
                V d, s = F(sigma_ds)(act, F(ld)(zc + j), &d);
                F(st)(oc + j, F(ld)(ic + j) + h * s);
                F(st)(dc + j, d);
            }
        } else {
            for (int j = 0; j < n; j += VL)
                F(st)(oc + j, F(ld)(ic + j) + h * F(sigma)(act, F(ld)(zc + j)));
        }
    }
}

BN_INLINE void F(fused_forward_impl)(int act, int m, int batch, int bs, R h, const R *W,
                                     const R *b, const R *u_in, R *u_out, R *ds) {
    R Z[BN_TILE_BYTES / sizeof(R)] __attribute__((aligned(32)));
    const int T = F(tile_cols)(m), b4 = batch & ~(VL - 1);
    for (int j0 = 0; j0 < b4; j0 += T) {
        int n = b4 - j0 < T ? b4 - j0 : T;
        F(fwd_tile)(act, m, bs, h, W, b, u_in + j0, batch, u_out + j0, batch,
                    ds ? ds + j0 : NULL, batch, Z, n);
    }
    if (b4 < batch) {     /* last 1..VL-1 columns through a zero-padded VL-column copy */
        R P[BN_FUSED_MAX * VL] __attribute__((aligned(32)));
        R Pd[BN_FUSED_MAX * VL] __attribute__((aligned(32)));
        int t = batch - b4;
        for (int c = 0; c < m; c++)
            for (int i = 0; i < VL; i++) P[c * VL + i] = i < t ? u_in[(ptrdiff_t)c * batch + b4 + i] : (R)0;
        F(fwd_tile)(act, m, bs, h, W, b, P, VL, P, VL, ds ? Pd : NULL, VL, Z, VL);
        for (int c = 0; c < m; c++)
            for (int i = 0; i < t; i++) {
                u_out[(ptrdiff_t)c * batch + b4 + i] = P[c * VL + i];
                if (ds) ds[(ptrdiff_t)c * batch + b4 + i] = Pd[c * VL + i];
            }
    }
}

BN_INLINE void F(fused_forward_act)(int act, int m, int batch, int scalar, double h, const R *W,
                                    const R *b, const R *u_in, R *u_out, R *ds) {
    const int bs = scalar ? 0 : 1;
    const R hr = (R)h;
    if (act == 0) F(fused_forward_impl)(0, m, batch, bs, hr, W, b, u_in, u_out, ds);
    else if (act == 1) F(fused_forward_impl)(1, m, batch, bs, hr, W, b, u_in, u_out, ds);
    else F(fused_forward_impl)(2, m, batch, bs, hr, W, b, u_in, u_out, ds);
}

BN_CLONES void BN_API(bn_fused_forward)(int act, int m, int batch, int scalar, double h,
                                        const R *W, const R *b, const R *u_in, R *u_out) {
    F(fused_forward_act)(act, m, batch, scalar, h, W, b, u_in, u_out, NULL);
}

BN_CLONES void BN_API(bn_fused_forward_ds)(int act, int m, int batch, int scalar, double h,
                                           const R *W, const R *b, const R *u_in, R *u_out,
                                           R *ds) {
    F(fused_forward_act)(act, m, batch, scalar, h, W, b, u_in, u_out, ds);
}

/* backward on one tile: D = sigma'(W u + b) * lin (or, ds != NULL, ds * lin with the stored
   sigma', rows ldd apart); G += D u^T, gbs[c] += sum D[c,:]; lout = lin + hWT D.  Any of G / lout
   may be NULL. */
BN_INLINE void F(bwd_tile)(int act, int m, int bs, const R *W, const R *b, const R *hWT,
                           const R *u, ptrdiff_t ldu, const R *ds, ptrdiff_t ldd, const R *lin,
                           ptrdiff_t ldl, R *lout, ptrdiff_t ldo, R *G, R *gbs, R *Z, int n) {
    if (!ds) F(mv)(m, m, W, m, 1, b, bs, NULL, 0, u, ldu, Z, n, n);
    for (int c = 0; c < m; c++) {
        R *zc = Z + (ptrdiff_t)c * n;
        const R *lc = lin + (ptrdiff_t)c * ldl, *dc = ds ? ds + (ptrdiff_t)c * ldd : NULL;
        V s = F(splat)((R)0);
        for (int j = 0; j < n; j += VL) {
            V d = (ds ? F(ld)(dc + j) : F(dsigma)(act, F(ld)(zc + j))) * F(ld)(lc + j);
            F(st)(zc + j, d);
            s += d;
        }
        if (gbs) gbs[c] += F(hsum)(s);
    }
    if (G) F(dut)(m, m, Z, n, u, ldu, G, n);
    if (lout) F(mv)(m, m, hWT, m, 1, NULL, 0, lin, ldl, Z, n, lout, ldo, n);
}

BN_INLINE void F(fused_backward_impl)(int act, int m, int batch, int bs, R h, const R *W,
                                      const R *b, const R *u, const R *ds, const R *lam_in,
                                      R *lam_out, R *gW, R *gb) {
    R Z[BN_TILE_BYTES / sizeof(R)] __attribute__((aligned(32)));
    R hWT[BN_FUSED_MAX * BN_FUSED_MAX];
    R G[BN_FUSED_MAX * BN_FUSED_MAX];
    R gbs[BN_FUSED_MAX];
    R *Gp = gW ? G : NULL, *gp = gb ? gbs : NULL;
    const int T = F(tile_cols)(m), b4 = batch & ~(VL - 1);
    if (lam_out)
        for (int c = 0; c < m; c++)
            for (int k = 0; k < m; k++) hWT[k * m + c] = h * W[c * m + k];
    memset(G, 0, sizeof(R) * m * m);
    memset(gbs, 0, sizeof(R) * m);
    for (int j0 = 0; j0 < b4; j0 += T) {
        int n = b4 - j0 < T ? b4 - j0 : T;
        F(bwd_tile)(act, m, bs, W, b, hWT, u + j0, batch, ds ? ds + j0 : NULL, batch,
                    lam_in + j0, batch, lam_out ? lam_out + j0 : NULL, batch, Gp, gp, Z, n);
    }
    if (b4 < batch) {
        R Pu[BN_FUSED_MAX * VL] __attribute__((aligned(32)));
        R Pl[BN_FUSED_MAX * VL] __attribute__((aligned(32)));
        R Pd[BN_FUSED_MAX * VL] __attribute__((aligned(32)));
        int t = batch - b4;
        for (int c = 0; c < m; c++)
            for (int i = 0; i < VL; i++) {
                Pu[c * VL + i] = i < t ? u[(ptrdiff_t)c * batch + b4 + i] : (R)0;
                Pl[c * VL + i] = i < t ? lam_in[(ptrdiff_t)c * batch + b4 + i] : (R)0;
                Pd[c * VL + i] = i < t && ds ? ds[(ptrdiff_t)c * batch + b4 + i] : (R)0;
            }
        F(bwd_tile)(act, m, bs, W, b, hWT, Pu, VL, ds ? Pd : NULL, VL, Pl, VL,
                    lam_out ? Pl : NULL, VL, Gp, gp, Z, VL);
        if (lam_out)
            for (int c = 0; c < m; c++)
                for (int i = 0; i < t; i++) lam_out[(ptrdiff_t)c * batch + b4 + i] = Pl[c * VL + i];
    }
    if (gW)
        for (int i = 0; i < m * m; i++) gW[i] += h * G[i];
    if (gb) {
        if (bs) {
            for (int c = 0; c < m; c++) gb[c] += h * gbs[c];
        } else {
            R s = (R)0;
            for (int c = 0; c < m; c++) s += gbs[c];
            gb[0] += h * s;
        }
    }
}

BN_CLONES void BN_API(bn_fused_backward)(int act, int m, int batch, int scalar, double h,
                                         const R *W, const R *b, const R *u, const R *lam_in,
                                         R *lam_out, R *gW, R *gb) {
    const int bs = scalar ? 0 : 1;
    const R hr = (R)h;
    if (act == 0) F(fused_backward_impl)(0, m, batch, bs, hr, W, b, u, NULL, lam_in, lam_out, gW, gb);
    else if (act == 1) F(fused_backward_impl)(1, m, batch, bs, hr, W, b, u, NULL, lam_in, lam_out, gW, gb);
    else F(fused_backward_impl)(2, m, batch, bs, hr, W, b, u, NULL, lam_in, lam_out, gW, gb);
}

/* with a stored sigma': no activation, so one instance serves every act */
BN_CLONES void BN_API(bn_fused_backward_ds)(int m, int batch, int scalar, double h, const R *W,
                                            const R *u, const R *ds, const R *lam_in,
                                            R *lam_out, R *gW, R *gb) {
    F(fused_backward_impl)(1, m, batch, scalar ? 0 : 1, (R)h, W, NULL, u, ds, lam_in, lam_out,
                           gW, gb);
}
