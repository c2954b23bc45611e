#!/usr/bin/env python
"""Benchmark: forward + backward (adjoint and weight gradient) of convolutional residual layers
(braidnet._convkernels), one layer and a 32-layer net, at the MNIST shape (4 channels of 28x28,
batch 100) and the digits shape (4 and 8 channels of 8x8, batch 100), on the direct path, the GEMM
path and the automatic choice; beside them, in the same run, a numpy im2col + GEMM reference of the
same computation and, when importable, PyTorch's ``conv2d`` on the CPU (autograd) in float64 and
float32 with 1 and 2 threads.  Ratios: PyTorch's time over braidnet's (> 1: braidnet faster).
braidnet's convolutional kernels are float64 only.  Not a test.

    python scripts/bench_conv.py [--activation tanh] [--repeat 5] [--cpu] [--layers 32]

``--cpu`` times braidnet and numpy with the thread's CPU clock instead of the wall clock (a fairer
number on a shared machine; braidnet's kernels are single-threaded; set OPENBLAS_NUM_THREADS=1 so
the GEMM path and numpy are too).  Torch is timed with the wall clock (it may use 2 threads).
Also run by ``scripts/bench_resnet.py --conv``.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
from bench_resnet import ETA, best_time     # scripts/ is the script's own folder on sys.path

CASES = [("MNIST 28x28", 4, 3, 28, 28, 100), ("digits 8x8", 4, 3, 8, 8, 100),
         ("digits 8x8", 8, 3, 8, 8, 100)]


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


def numpy_act(act):
    """(sigma, sigma') in numpy."""
    if act == "tanh":
        return np.tanh, lambda z: 1.0 - np.tanh(z) ** 2
    if act == "relu":
        return lambda z: np.maximum(z, 0.0), lambda z: (z > 0).astype(z.dtype)
    return (lambda z: np.where(z >= ETA, z, np.where(z <= -ETA, 0.0, (z + ETA) ** 2 / (4 * ETA))),
            lambda z: np.clip((z + ETA) / (2 * ETA), 0.0, 1.0))


def numpy_case(c, k, H, W, B, L, act, rng):
    """The reference: im2col + one GEMM per layer forward, two GEMMs and a col2im backward."""
    sig, dsig = numpy_act(act)
    p, n = k // 2, H * W * B
    Ks = rng.standard_normal((L, c, c * k * k)) * 0.1
    bs = rng.standard_normal((L, c, 1)) * 0.1
    u0 = rng.standard_normal((c, H, W, B))
    lamN = rng.standard_normal((c, n))
    h = 1.0 / L
    taps = [(dy, dx) for dy in range(k) for dx in range(k)]

    def im2col(u):
        P = np.pad(u, ((0, 0), (p, p), (p, p), (0, 0)))
        return np.stack([P[:, dy:dy + H, dx:dx + W] for dy, dx in taps], axis=1).reshape(c * k * k, n)

    def col2im(cols):
        P = np.zeros((c, H + 2 * p, W + 2 * p, B))
        cols = cols.reshape(c, k * k, H, W, B)
        for t, (dy, dx) in enumerate(taps):
            P[:, dy:dy + H, dx:dx + W] += cols[:, t]
        return P[:, p:p + H, p:p + W].reshape(c, n)

    def run():
        u, kept = u0.reshape(c, n), []
        for l in range(L):
            cols = im2col(u.reshape(c, H, W, B))
            z = Ks[l] @ cols + bs[l]
            kept.append((cols, z))
            u = u + h * sig(z)
        lam, gK, gb = lamN.copy(), np.zeros_like(Ks), np.zeros_like(bs)
        for l in range(L - 1, -1, -1):
            cols, z = kept[l]
            D = dsig(z) * lam
            gK[l] += h * (D @ cols.T)
            gb[l] += h * D.sum(axis=1, keepdims=True)
            lam = lam + col2im(h * (Ks[l].T @ D))
    return run


def torch_case(c, k, H, W, B, L, act, rng, dtype="float64", threads=1):
    import torch
    torch.set_num_threads(threads)
    dt = getattr(torch, dtype)
    f = {"tanh": torch.tanh, "relu": torch.relu}.get(act)
    if f is None:          # the smoothed ReLU, as braidnet's kernels define it
        def f(z):
            q = torch.clamp(z, -ETA, ETA) + ETA
            return q * q * (0.25 / ETA) + torch.relu(z - ETA)

    def t(a, grad=False):
        return torch.tensor(a, dtype=dt, requires_grad=grad)
    Ks = [t(rng.standard_normal((c, c, k, k)) * 0.1, True) for _ in range(L)]
    bs = [t(rng.standard_normal(c) * 0.1, True) for _ in range(L)]
    u0 = t(rng.standard_normal((B, c, H, W)), True)
    lamN = t(rng.standard_normal((B, c, H, W)))
    h = 1.0 / L

    def run():
        u = u0
        for n in range(L):
            u = u + h * f(torch.nn.functional.conv2d(u, Ks[n], bs[n], padding=k // 2))
        u.backward(lamN)
    return run


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--activation", default="tanh", choices=["tanh", "relu", "smoothrelu"])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--layers", type=int, default=32)
    ap.add_argument("--cpu", action="store_true", help="thread CPU time instead of wall time")
    args = ap.parse_args(argv)
    clock = time.thread_time if args.cpu else time.perf_counter
    try:
        import torch  # noqa: F401
        have_torch = True
    except ImportError:
        have_torch = False
        print("torch is not importable in this environment: no PyTorch comparison")
    from braidnet import _convkernels as C
    rng = np.random.default_rng(0)
    print(f"forward + backward, {args.activation}, {'CPU' if args.cpu else 'wall'} time in ms; "
          f"(x.xx): that time over braidnet's automatic path (> 1: braidnet faster)")
    for name, c, k, H, W, B in CASES:
        for L in (1, args.layers):
            times = {}
            for path in ("direct", "gemm", "auto"):
                times[path] = best_time(braidnet_case(c, k, H, W, B, L, args.activation, path, rng),
                                        args.repeat, clock=clock) * 1e3
            line = (f"{name:12s} c={c} k={k} batch={B} layers={L:3d}:  direct {times['direct']:8.3f}  "
                    f"gemm {times['gemm']:8.3f}  auto ({C.conv_path(c, c, k, H, W, B)}) {times['auto']:8.3f}")
            t = best_time(numpy_case(c, k, H, W, B, L, args.activation, rng), args.repeat, clock=clock) * 1e3
            line += f"  numpy im2col {t:8.3f} ({t / times['auto']:.2f})"
            if have_torch:
                for dtype in ("float64", "float32"):
                    for threads in (1, 2):
                        run = torch_case(c, k, H, W, B, L, args.activation, rng, dtype, threads)
                        t = best_time(run, args.repeat, clock=time.perf_counter) * 1e3
                        line += f"  torch {dtype[-2:]} {threads}t {t:8.3f} ({t / times['auto']:.2f})"
            print(line, flush=True)


if __name__ == "__main__":
    main()
