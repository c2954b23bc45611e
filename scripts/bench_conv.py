#!/usr/bin/env python
"""Benchmark: forward + backward (adjoint and weight gradient) of convolutional residual layers
(braidnet._convkernels), one layer and a 32-layer net, at the MNIST shape (4 channels of 28x28,
batch 100) and the digits shape (4 and 8 channels of 8x8, batch 100), on the direct path, the GEMM
path and the automatic choice; and, when importable, PyTorch's ``conv2d`` on the CPU (autograd) on
the same computation.  Not a test.

    python scripts/bench_conv.py [--activation tanh] [--repeat 5] [--cpu] [--layers 32]

``--cpu`` times with the thread's CPU clock instead of the wall clock (a fairer number on a shared
machine; braidnet's kernels are single-threaded; set OPENBLAS_NUM_THREADS=1 so the GEMM path is
too).  Torch is timed with one thread (and the wall clock).
"""
from __future__ import annotations

import argparse
import time

import numpy as np

CASES = [("MNIST 28x28", 4, 3, 28, 28, 100), ("digits 8x8", 4, 3, 8, 8, 100),
         ("digits 8x8", 8, 3, 8, 8, 100)]


def best_time(fn, repeat: int, clock, min_time: float = 0.2) -> float:
    """Best mean time per call over ``repeat`` rounds of enough calls to last min_time."""
    fn()
    t0 = clock()
    fn()
    one = max(clock() - t0, 1e-7)
    n = max(1, int(min_time / one))
    best = float("inf")
    for _ in range(repeat):
        t0 = clock()
        for _ in range(n):
            fn()
        best = min(best, (clock() - t0) / n)
    return best


def braidnet_case(c, k, H, W, B, L, act, path, rng):
    from braidnet import _convkernels as C
    Ks = rng.standard_normal((L, c, c, k, k)) * 0.1
    bs = rng.standard_normal((L, c)) * 0.1
    states = np.empty((L + 1, c, H, W, B))
    states[0] = rng.standard_normal((c, H, W, B))
    lamN = rng.standard_normal((c, H, W, B))
    gK, gb = np.zeros_like(Ks), np.zeros_like(bs)
    work = np.empty(C.conv_work_size(c, c, k, H, W, B, path))
    lam = np.empty_like(lamN)
    h = 1.0 / L

    def run():
        for n in range(L):
            C.conv_forward(Ks[n], bs[n], states[n], h, act, states[n + 1], work, path)
        lam[...] = lamN
        for n in range(L - 1, -1, -1):
            C.conv_backward(Ks[n], bs[n], states[n], lam, h, act, gK[n], gb[n], lam, work, path)
    return run


def torch_case(c, k, H, W, B, L, act, rng):
    import torch
    torch.set_num_threads(1)
    f = {"tanh": torch.tanh, "relu": torch.relu}.get(act)
    if f is None:
        return None
    Ks = [torch.tensor(rng.standard_normal((c, c, k, k)) * 0.1, requires_grad=True) for _ in range(L)]
    bs = [torch.tensor(rng.standard_normal(c) * 0.1, requires_grad=True) for _ in range(L)]
    u0 = torch.tensor(rng.standard_normal((B, c, H, W)), requires_grad=True)
    lamN = torch.tensor(rng.standard_normal((B, c, H, W)))
    h = 1.0 / L

    def run():
        u = u0
        for n in range(L):
            u = u + h * f(torch.nn.functional.conv2d(u, Ks[n], bs[n], padding=k // 2))
        u.backward(lamN)
    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--activation", default="tanh", choices=["tanh", "relu", "smoothrelu"])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--layers", type=int, default=32)
    ap.add_argument("--cpu", action="store_true", help="thread CPU time instead of wall time")
    args = ap.parse_args()
    clock = time.thread_time if args.cpu else time.perf_counter
    try:
        import torch  # noqa: F401
        have_torch = True
    except ImportError:
        have_torch = False
        print("torch is not importable in this environment: no PyTorch comparison")
    from braidnet import _convkernels as C
    rng = np.random.default_rng(0)
    print(f"forward + backward, {args.activation}, {'CPU' if args.cpu else 'wall'} time in ms")
    for name, c, k, H, W, B in CASES:
        for L in (1, args.layers):
            times = {}
            for path in ("direct", "gemm", "auto"):
                times[path] = best_time(braidnet_case(c, k, H, W, B, L, args.activation, path, rng),
                                        args.repeat, clock) * 1e3
            line = (f"{name:12s} c={c} k={k} batch={B} layers={L:3d}:  direct {times['direct']:8.3f}  "
                    f"gemm {times['gemm']:8.3f}  auto ({C.conv_path(c, c, k, H, W, B)}) {times['auto']:8.3f}")
            if have_torch:
                run = torch_case(c, k, H, W, B, L, args.activation, rng)
                if run is not None:
                    t = best_time(run, args.repeat, time.perf_counter) * 1e3
                    line += f"  torch {t:8.3f}  torch/auto {t / times['auto']:.2f}"
            print(line, flush=True)


if __name__ == "__main__":
    main()
