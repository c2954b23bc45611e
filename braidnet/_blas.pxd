# The BLAS that braidnet's kernels call (braidnet/kernels/bn_blas.h: OpenBLAS of the scipy-openblas32
# wheel, row-major GEMM).  For _kernels.pyx and _convkernels.pyx:
#
#     from braidnet._blas cimport NoTrans, Trans, bn_dgemm, bn_sgemm

cdef extern from "bn_blas.h" nogil:
    ctypedef enum bn_trans "CBLAS_TRANSPOSE":
        NoTrans "CblasNoTrans"
        Trans "CblasTrans"

    # row-major C (m x n) = alpha op(A) op(B) + beta C
    void bn_sgemm(bn_trans ta, bn_trans tb, int m, int n, int k, float alpha, const float* A,
                  int lda, const float* B, int ldb, float beta, float* C, int ldc)
    void bn_dgemm(bn_trans ta, bn_trans tb, int m, int n, int k, double alpha, const double* A,
                  int lda, const double* B, int ldb, double beta, double* C, int ldc)
    const char* bn_blas_config()
