/* The BLAS of braidnet's kernels: OpenBLAS from the scipy-openblas32 wheel, linked directly by
   setup.py rather than reached through scipy.linalg.cython_blas.  That wheel follows OpenBLAS
   releases; scipy bundles an older one (0.3.30 with scipy 1.17), whose float32 GEMM takes up to
   1.3x as long on operands from memory, as an MGRIT solve's are (docs/results.md section 5a).
   The wheel's symbols carry the prefix scipy_ and its integers are 32-bit; these wrappers hide both
   and fix the layout to braidnet's: row-major. */
#ifndef BN_BLAS_H
#define BN_BLAS_H

#include <cblas.h>

/* row-major C (m x n) = alpha op(A) op(B) + beta C, op(X) = X or X^T by ta / tb */
static inline void bn_sgemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int m, int n, int k,
                            float alpha, const float *A, int lda, const float *B, int ldb,
                            float beta, float *C, int ldc) {
    scipy_cblas_sgemm(CblasRowMajor, ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
}

static inline void bn_dgemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int m, int n, int k,
                            double alpha, const double *A, int lda, const double *B, int ldb,
                            double beta, double *C, int ldc) {
    scipy_cblas_dgemm(CblasRowMajor, ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
}

/* OpenBLAS's build string (version, kernels chosen for this CPU), for build_info() and benchmarks */
static inline const char *bn_blas_config(void) { return scipy_openblas_get_config(); }

#endif
