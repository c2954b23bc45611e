"""Benchmark (not a test): the GEMM of the OpenBLAS braidnet's kernels link (the scipy-openblas32 wheel)
against scipy's own OpenBLAS (``scipy.linalg.blas``), one thread, in the same run.

The product a wide layer's step computes, ``W @ U`` with W (width, width) and U (width, batch), and
the adjoint's ``W^T @ D``, in float32 and float64: milliseconds per call, best of ``--repeat``
rounds, "hot" (the same operands every call: they stay in cache) and "cold" (64 different operand
sets in turn, as in an MGRIT solve, whose states come from memory), and the ratio scipy / braidnet
(> 1: braidnet's BLAS is faster).  Both libraries get the same column-major call (the row-major
product transposed, no copies); braidnet's is called through ctypes, scipy's through its f2py
wrapper (a few microseconds of call overhead, under 1% at these sizes).

    OPENBLAS_NUM_THREADS=1 python scripts/bench_blas.py [--widths 220 512] [--batch 1000] [--repeat 5]
"""
from __future__ import annotations

import argparse
import ctypes
import os
import time

import numpy as np

SETS = 64       # operand sets cycled through for "cold"


def braidnet_gemm(dtype):
    """``gemm(tb, A, B, C)``: C = A op(B) (column-major, alpha 1, beta 0) with braidnet's OpenBLAS."""
    import scipy_openblas32 as ob

    # by path, with the default RTLD_LOCAL: importing scipy_openblas32's own loader would put the
    # library in the global namespace (braidnet's extensions do not do that either; setup.py)
    lib = ctypes.CDLL(os.path.join(ob.get_lib_dir(), ob.get_library(fullname=True)))
    fn = lib.scipy_sgemm_ if dtype == np.float32 else lib.scipy_dgemm_
    ctype = ctypes.c_float if dtype == np.float32 else ctypes.c_double
    one, zero = ctype(1.0), ctype(0.0)
    n_ = ctypes.c_char(b"N")

    def gemm(tb: bytes, A, B, C):
        m, k = A.shape
        n = B.shape[0] if tb == b"T" else B.shape[1]
        ints = [ctypes.c_int(v) for v in (m, n, k, A.shape[0], B.shape[0], C.shape[0])]
        fn(ctypes.byref(n_), ctypes.byref(ctypes.c_char(tb)), *(ctypes.byref(v) for v in ints[:3]),
           ctypes.byref(one), A.ctypes.data_as(ctypes.c_void_p), ctypes.byref(ints[3]),
           B.ctypes.data_as(ctypes.c_void_p), ctypes.byref(ints[4]), ctypes.byref(zero),
           C.ctypes.data_as(ctypes.c_void_p), ctypes.byref(ints[5]))
    return gemm


def scipy_gemm(dtype):
    from scipy.linalg import blas
    fn = blas.sgemm if dtype == np.float32 else blas.dgemm

    def gemm(tb: bytes, A, B, C):
        fn(1.0, A, B, trans_b=int(tb == b"T"), c=C, overwrite_c=1)
    return gemm


def best_ms(fn, calls: int, repeat: int) -> float:
    fn(0)
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for i in range(calls):
            fn(i)
        best = min(best, (time.perf_counter() - t0) / calls)
    return best * 1e3


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--widths", type=int, nargs="+", default=[220, 512])
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--calls", type=int, default=128, help="calls per round")
    a = ap.parse_args()
    if os.environ.get("OPENBLAS_NUM_THREADS") != "1":
        print("note: OPENBLAS_NUM_THREADS is not 1; both libraries may use several threads")
    import braidnet
    import scipy
    import scipy.linalg.blas  # noqa: F401  (loads scipy's OpenBLAS, so that threadpoolctl sees it)
    print(f"braidnet's BLAS: {braidnet.build_info()['blas']}")
    try:
        from threadpoolctl import threadpool_info
        versions = {i["filepath"]: i["version"] for i in threadpool_info() if "scipy.libs" in i["filepath"]}
        print(f"scipy {scipy.__version__}'s BLAS: OpenBLAS {', '.join(versions.values()) or '(version unknown)'}")
    except ImportError:
        print(f"scipy {scipy.__version__}'s BLAS: its bundled OpenBLAS")
    print(f"ms per call, best of {a.repeat} rounds of {a.calls} calls; ratio = scipy / braidnet (> 1: braidnet faster)")
    print(f"{'dtype':>8} {'width':>6} {'product':>8} {'state':>6} {'scipy':>8} {'braidnet':>9} {'ratio':>6}")
    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.float64):
        for w in a.widths:
            # the kernels' calls: a row-major (w, batch) state is a column-major (batch, w) matrix U^T,
            # and a row-major W the column-major W^T, so W u = (U^T W^T)^T is U^T times W^T as stored,
            # and W^T d = (D^T W)^T is D^T times the stored matrix transposed
            Ws = [np.asfortranarray(rng.standard_normal((w, w)).astype(dtype)) for _ in range(SETS)]
            Us = [np.asfortranarray(rng.standard_normal((a.batch, w)).astype(dtype)) for _ in range(SETS)]
            Cs = [np.zeros((a.batch, w), dtype, order="F") for _ in range(SETS)]
            for label, tb in (("W u", b"N"), ("W^T d", b"T")):
                row = []
                for state, pick in (("hot", lambda i: 0), ("cold", lambda i: i % SETS)):
                    ms = {}
                    for name, make in (("scipy", scipy_gemm), ("braidnet", braidnet_gemm)):
                        gemm = make(dtype)
                        ms[name] = best_ms(lambda i: gemm(tb, Us[pick(i)], Ws[pick(i)], Cs[pick(i)]),
                                           a.calls, a.repeat)
                    row.append((state, ms))
                for state, ms in row:
                    print(f"{np.dtype(dtype).name:>8} {w:>6} {label:>8} {state:>6} {ms['scipy']:8.3f} "
                          f"{ms['braidnet']:9.3f} {ms['scipy'] / ms['braidnet']:6.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
