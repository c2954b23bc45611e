#!/usr/bin/env python
"""Benchmark: forward + backward (adjoint and parameter gradient) of residual layers.

Compares braidnet's compiled kernels with the same computation written with numpy matmuls and,
when importable, PyTorch on the CPU (hand-written backward, and autograd), all in this run.
Cases: width 8 / batch 5000 (peaks) and width 220 / batch 1000 (Indian Pines), one layer and a
64-layer net (or --cases WIDTH:BATCH ... and --layers N ...), in float64 and/or float32 (--dtype:
every implementation computes in that precision).  Not a test.

    python scripts/bench_resnet.py [--activation smoothrelu tanh] [--repeat 5] [--threads 2]
    python scripts/bench_resnet.py --dtype float64 float32 --cases 8:5000 32:1000 220:1000 512:1000 --layers 64
    # one core against one core, CPU time (docs/results.md, section 5):
    OPENBLAS_NUM_THREADS=1 python scripts/bench_resnet.py --dtype float64 float32 --activation relu tanh \
        smoothrelu --cases 8:5000 32:1000 220:1000 512:1000 --layers 64 --threads 1 --clock cpu --no-numpy

Wall-clock times (--clock cpu: process CPU time); braidnet's serial net keeps sigma' from the
forward for the backward (net_forward/net_backward derivs=), as serial training can; torch is timed with 1 thread and with its default (or --threads) thread count,
taking the faster of its hand-written backward and autograd.  braidnet's kernels are single-
threaded (at width 220 OpenBLAS may use its threads, as it does for numpy; set
OPENBLAS_NUM_THREADS=1 to compare one core against one core).  On a busy machine repeat the run.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

ETA = 0.1


CLOCK = time.perf_counter   # --clock cpu: time.process_time (CPU time of the process, all threads)


def best_time(fn, repeat: int, min_time: float = 0.2, clock=None) -> float:
    """Best mean time per call over ``repeat`` rounds of enough calls to last min_time (``clock``:
    default CLOCK)."""
    clock = clock or CLOCK
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


# --- braidnet --------------------------------------------------------------------------------
def make_braidnet(width, batch, N, act, theta, u0):
    from braidnet import _kernels as K

    dt = theta.dtype                       # the kernels run in the precision of their arrays
    states = np.empty((N + 1, width, batch), dt)
    lam = np.empty((width, batch), dt)
    grad = np.zeros_like(theta)
    work = np.empty(width * batch, dt)
    derivs = np.empty((N, width, batch), dt)   # sigma' kept by the forward for the backward
    h = 5.0 / N
    lamN = np.ones((width, batch), dt) * 1e-3

    def run():
        states[0] = u0
        K.net_forward(theta, width, width, N, h, act, states, work, derivs)
        lam[...] = lamN
        grad[...] = 0.0
        K.net_backward(theta, width, width, N, h, act, states, lam, grad, work, derivs)
    return run


# --- numpy -----------------------------------------------------------------------------------
def np_act(act):
    if act == "tanh":
        return np.tanh, lambda z: 1.0 - np.tanh(z) ** 2
    if act == "relu":
        return (lambda z: np.maximum(z, 0.0)), (lambda z: (z > 0.0).astype(z.dtype))

    def s(z):
        q = np.clip(z, -ETA, ETA) + ETA
        return q * q * (0.25 / ETA) + np.maximum(z - ETA, 0.0)
    return s, (lambda z: (np.clip(z, -ETA, ETA) + ETA) * (0.5 / ETA))


def make_numpy(width, batch, N, act, theta, u0):
    blocks = theta.reshape(N, width * width + width)
    Ws = [blocks[n, :width * width].reshape(width, width) for n in range(N)]
    bs = [blocks[n, width * width:, None] for n in range(N)]
    s, ds = np_act(act)
    h = 5.0 / N
    lamN = np.ones((width, batch), theta.dtype) * 1e-3

    def run():
        states = [u0]
        for n in range(N):
            states.append(states[-1] + h * s(Ws[n] @ states[-1] + bs[n]))
        lam = lamN
        grads = [None] * N
        for n in range(N - 1, -1, -1):
            D = ds(Ws[n] @ states[n] + bs[n]) * lam
            grads[n] = (h * (D @ states[n].T), h * D.sum(axis=1))
            lam = lam + h * (Ws[n].T @ D)
        return lam, grads
    return run


# --- torch -----------------------------------------------------------------------------------
def torch_act(torch, act):
    if act == "tanh":
        return torch.tanh, lambda z: 1.0 - torch.tanh(z) ** 2
    if act == "relu":
        return torch.relu, lambda z: (z > 0).to(z.dtype)

    def s(z):
        q = torch.clamp(z, -ETA, ETA) + ETA
        return q * q * (0.25 / ETA) + torch.relu(z - ETA)
    return s, (lambda z: (torch.clamp(z, -ETA, ETA) + ETA) * (0.5 / ETA))


def make_torch_manual(torch, width, batch, N, act, theta, u0):
    T = torch.from_numpy(theta).reshape(N, width * width + width)
    Ws = [T[n, :width * width].reshape(width, width).contiguous() for n in range(N)]
    bs = [T[n, width * width:].reshape(width, 1).contiguous() for n in range(N)]
    s, ds = torch_act(torch, act)
    h = 5.0 / N
    u = torch.from_numpy(u0)
    lamN = torch.ones(width, batch, dtype=T.dtype) * 1e-3

    def run():
        with torch.no_grad():
            states = [u]
            for n in range(N):
                states.append(states[-1] + h * s(Ws[n] @ states[-1] + bs[n]))
            lam = lamN
            grads = [None] * N
            for n in range(N - 1, -1, -1):
                D = ds(Ws[n] @ states[n] + bs[n]) * lam
                grads[n] = (h * (D @ states[n].T), h * D.sum(dim=1))
                lam = lam + h * (Ws[n].T @ D)
        return lam, grads
    return run


def make_torch_autograd(torch, width, batch, N, act, theta, u0):
    T = torch.from_numpy(theta).reshape(N, width * width + width)
    Ws = [T[n, :width * width].reshape(width, width).clone().requires_grad_() for n in range(N)]
    bs = [T[n, width * width:].reshape(width, 1).clone().requires_grad_() for n in range(N)]
    s, _ = torch_act(torch, act)
    h = 5.0 / N
    u_in = torch.from_numpy(u0)
    lamN = torch.ones(width, batch, dtype=T.dtype) * 1e-3

    def run():
        u = u_in.clone().requires_grad_()
        x = u
        for n in range(N):
            x = x + h * s(Ws[n] @ x + bs[n])
        x.backward(lamN)
        for p in Ws + bs:
            p.grad = None
        return u.grad
    return run


def _torch_variants(torch, width, batch, N, act, theta, u0):
    """Hand-written backward and autograd, both in this process; the caller sets the threads."""
    return (make_torch_manual(torch, width, batch, N, act, theta, u0),
            make_torch_autograd(torch, width, batch, N, act, theta, u0))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--activation", nargs="+", default=["smoothrelu", "tanh"],
                    choices=["smoothrelu", "tanh", "relu"])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--dtype", nargs="+", default=["float64"], choices=["float64", "float32"],
                    help="precisions to time (every implementation in that precision)")
    ap.add_argument("--cases", nargs="+", default=["8:5000", "220:1000"], metavar="WIDTH:BATCH",
                    help="widths and batches (default: peaks 8:5000 and Indian Pines 220:1000)")
    ap.add_argument("--layers", nargs="+", type=int, default=[1, 64], help="residual layers N")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch intra-op threads of the multi-threaded column (default: torch's own "
                         "default); the other torch column always uses 1 thread.  OpenBLAS (numpy, "
                         "braidnet at large widths) uses its own default")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                    help="wall: perf_counter; cpu: process CPU time (steadier on a loaded machine; "
                         "with one thread everywhere: --threads 1 and OPENBLAS_NUM_THREADS=1)")
    ap.add_argument("--no-numpy", action="store_true", help="skip the numpy column")
    ap.add_argument("--conv", action="store_true",
                    help="the convolutional layers instead: scripts/bench_conv.py with the first --activation, "
                         "--repeat and --clock")
    args = ap.parse_args()
    if args.conv:
        import sys
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import bench_conv
        bench_conv.main(["--activation", args.activation[0], "--repeat", str(args.repeat)]
                        + (["--cpu"] if args.clock == "cpu" else []))
        return
    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    try:
        import torch
        t_default = args.threads or torch.get_num_threads()
        torch_info = f"torch {torch.__version__} (columns: 1 thread, and {t_default} threads)"
    except ImportError:
        torch = None
        t_default = 0
        torch_info = "torch not importable: skipped"
    print(f"numpy {np.__version__}; {torch_info}; {os.cpu_count()} CPUs; {args.clock} clock; "
          f"load {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print("forward + backward (adjoint + parameter gradient), best mean wall time per call; torch = the "
          "faster of its hand-written backward and autograd")
    try:
        cases = [tuple(int(v) for v in c.split(":")) for c in args.cases]
        assert all(len(c) == 2 and min(c) >= 1 for c in cases)
    except (ValueError, AssertionError):
        ap.error(f"--cases takes WIDTH:BATCH pairs of positive integers, got {args.cases}")
    hdr = (f"{'dtype':>7} {'act':>10} {'width':>5} {'batch':>5} {'N':>3} | {'braidnet':>10} {'numpy':>10} "
           f"{'torch x1':>10} {'torch x' + str(t_default):>10} | {'np/bn':>6} {'t1/bn':>6} {'tN/bn':>6} | target")
    print(hdr)
    print("-" * len(hdr))
    results = []
    for dtype, act in ((d, a) for d in args.dtype for a in args.activation):
        for width, batch in cases:
            for N in args.layers:
                rng = np.random.default_rng(0)
                theta = (rng.uniform(-1, 1, N * (width * width + width)) / np.sqrt(width)).astype(dtype)
                u0 = rng.standard_normal((width, batch)).astype(dtype)
                tb = best_time(make_braidnet(width, batch, N, act, theta, u0), args.repeat)
                tn = (float("nan") if args.no_numpy
                      else best_time(make_numpy(width, batch, N, act, theta, u0), args.repeat))
                tt = {}
                if torch is not None:
                    for nt in sorted({1, t_default}):
                        torch.set_num_threads(nt)
                        tt[nt] = min(best_time(f, args.repeat)
                                     for f in _torch_variants(torch, width, batch, N, act, theta, u0))
                t1 = tt.get(1, float("nan"))
                tN = tt.get(t_default, float("nan"))
                if args.no_numpy and width != 8:
                    got = t1 / tb
                    verdict = f"t1/bn >= 1 (issue 14): {'met' if got >= 1.0 else 'MISSED'} ({got:.2f})"
                elif width == 8:
                    need = 2.0
                    got = min(t1, tN) / tb
                    verdict = f"torch/bn >= 2: {'met' if got >= need else 'MISSED'} ({got:.2f})"
                else:
                    got = tn / tb
                    verdict = f"np/bn >= 1: {'met' if got >= 1.0 else 'MISSED'} ({got:.2f})"
                results.append(verdict)
                print(f"{dtype:>7} {act:>10} {width:>5} {batch:>5} {N:>3} | {tb * 1e3:8.3f}ms {tn * 1e3:8.3f}ms "
                      f"{t1 * 1e3:8.3f}ms {tN * 1e3:8.3f}ms | {tn / tb:6.2f} {t1 / tb:6.2f} {tN / tb:6.2f} | "
                      f"{verdict}", flush=True)
    print(f"load {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print("ratios > 1: braidnet faster.  Targets (issue 3): at width 8 at least 2x faster than torch "
          "(the faster of its 1-thread and multi-thread runs); at width 220 no slower than numpy; "
          "(issue 14, with --no-numpy) no slower than torch on one thread.")


def check() -> None:
    """Cross-check braidnet against the numpy version (run with --check)."""
    from braidnet import _kernels as K

    width, batch, N, act = 5, 7, 3, "smoothrelu"
    rng = np.random.default_rng(1)
    theta = rng.uniform(-1, 1, N * (width * width + width))
    u0 = rng.standard_normal((width, batch))
    lam_np, grads = make_numpy(width, batch, N, act, theta, u0)()
    states = np.empty((N + 1, width, batch))
    states[0] = u0
    K.net_forward(theta, width, width, N, 5.0 / N, act, states)
    lam = np.ones((width, batch)) * 1e-3
    g = np.zeros_like(theta)
    K.net_backward(theta, width, width, N, 5.0 / N, act, states, lam, g)
    ref = np.concatenate([np.concatenate([gw.ravel(), gb]) for gw, gb in grads])
    assert np.allclose(lam, lam_np, rtol=1e-12, atol=1e-15) and np.allclose(g, ref, rtol=1e-12, atol=1e-15)
    print("check passed")


if __name__ == "__main__":
    import sys

    if "--check" in sys.argv:
        check()
    else:
        main()
