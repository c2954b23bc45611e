#!/usr/bin/env python
"""Benchmark (not a test): layer-serial vs layer-parallel (One-shot MGRIT) training, and a model of it.

Measures, each in its own process with one BLAS thread per rank:

1. time per optimisation iteration of layer-serial training (exact ``ResNet`` forward and backward,
   ``resnet.Objective``, L-BFGS with Armijo backtracking) and of layer-parallel One-shot training
   (``braidnet.parallel.ParallelNetwork`` + ``braidnet.oneshot.OneShot``, the same optimiser, d = 2
   primal and 2 adjoint MGRIT iterations, 3 levels, cfactor 4, FCF) on 1, 2 and 4 ranks (launched as
   ``mpiexec -n P python scripts/bench_parallel.py --worker parallel ...``; more ranks than cores are
   oversubscribed), for peaks (64 layers, width 8, batch 5000) and an Indian-Pines-sized problem
   (128 layers, width 220, batch 1000, random data of that shape), with the MGRIT residual reduction
   per iteration (geometric mean of the residual ratios of warm-restarted one-iteration solves from a
   cold start, at the benchmark's final weights);
2. a performance model fitted to those times (module ``fit_model``), and its predicted speedup of
   layer-parallel over layer-serial training at 16-1024 ranks for 1024 and 4096 layers, with the
   crossover (fewest ranks at which layer-parallel is faster);
3. the TorchBraid comparison setting: layer-parallel forward + backward (2 primal + 2 adjoint
   iterations; width 8, batch 5000, 64 layers, cfactor 4, 3 levels; F-relaxation on the finest level,
   and FCF) on 1 and 2 ranks, as a ratio to a serial PyTorch forward + backward (autograd) of the same
   network, next to TorchBraid's published ratios and our target (half of them).

    python scripts/bench_parallel.py [--ranks 1 2 4] [--problems peaks pines] [--iterations 4]
                                     [--activation smoothrelu] [--json results.json] [--no-torch]

Timings on a loaded or oversubscribed machine are upper bounds; the model's fit says how well it
describes them (the ``model`` column next to each measured time).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

PROBLEMS = {
    "peaks": dict(width=8, layers=64, batch=5000, features=2, classes=5),
    "pines": dict(width=220, layers=128, batch=1000, features=220, classes=16),
}
# One-shot as the examples configure it (braid section defaults)
BRAID = dict(max_levels=3, cfactor=4, nrelax=1, min_coarse=2)
D = 2
T_FINAL = 5.0
# weighted cost of one layer step (braidnet.work.COST): primal 1 GEMM, adjoint 2, layer gradient 2;
# a serial iteration costs N per forward and 4N per backward (adjoint + gradient)
W_FWD, W_BWD = 1, 4
# TorchBraid (Cyr et al.) on the same setting, layer-parallel time / serial PyTorch time
TORCHBRAID = {("F", 1): 5.6, ("F", 2): 3.2, ("FCF", 1): 8.1, ("FCF", 2): 5.0}
TB_BRAID = {"F": dict(max_levels=3, cfactor=4, nrelax=[0, 1, 1], min_coarse=2),
            "FCF": dict(max_levels=3, cfactor=4, nrelax=1, min_coarse=2)}


# =============================================================================================
# workers (one process per rank)

def make_problem(name: str, activation: str, seed: int = 0):
    """(net, X, y, theta0) of a benchmark problem; the same on every rank."""
    from braidnet import datasets
    from braidnet.resnet import ResNet

    p = PROBLEMS[name]
    if name == "peaks":
        X, y, _, _ = datasets.peaks(p["batch"], 0, seed=seed)
    else:   # Indian-Pines-sized: 220 normalised bands, 16 classes
        rng = np.random.default_rng(seed)
        X = rng.random((p["batch"], p["features"]))
        y = rng.integers(0, p["classes"], p["batch"])
    net = ResNet(p["features"], p["classes"], p["width"], p["layers"], T=T_FINAL, activation=activation,
                 opening="dense", gamma_tik=1e-7, gamma_ddt=1e-7, gamma_class=1e-7)
    # centred weights of the size a trained network has, so that MGRIT has real work to do
    theta = net.init_params(seed=seed + 1, scale_opening=1.0, scale_layers=2.0 / math.sqrt(p["width"]),
                            scale_classifier=1.0)
    theta[net.layout.layers_slice()] -= 1.0 / math.sqrt(p["width"])
    return net, X, y, theta


def _optimizer(dot):
    from braidnet import optim
    return optim.LBFGS(memory=10, dot=dot, ls_factor=0.5, c1=1e-4, ls_max_trials=20)


def worker_serial(a) -> Dict[str, Any]:
    from braidnet.resnet import Objective

    net, X, y, x = make_problem(a.problem, a.activation)
    obj = Objective(net, X, y)
    opt = _optimizer(lambda u, v: float(np.dot(u, v)))
    f, g = obj.fun(x), obj.grad(x)
    trials = []
    for k in range(a.warmup + a.iterations):
        if k == a.warmup:
            t0, nf0, nb0 = time.perf_counter(), obj.n_forward, obj.n_backward
        x, f, g, info = opt.step(obj.fun, obj.grad, x, f, g)
        trials.append(info.ls_trials)
    dt = (time.perf_counter() - t0) / a.iterations
    N = net.n_layers
    return {"kind": "serial", "problem": a.problem, "ranks": 1, "seconds": dt,
            "forwards": (obj.n_forward - nf0) / a.iterations, "backwards": (obj.n_backward - nb0) / a.iterations,
            "weighted_steps": (W_FWD * (obj.n_forward - nf0) + W_BWD * (obj.n_backward - nb0)) * N / a.iterations,
            "ls_trials": float(np.mean(trials[a.warmup:])), "objective": f}


def _reduction(rs: List[float]) -> float:
    """Geometric mean of successive residual ratios (residuals above round-off only)."""
    r = [v for v in rs if v is not None and v > 1e-13]
    if len(r) < 2:
        return float("nan")
    return float(np.exp(np.mean(np.log(np.array(r[1:]) / np.array(r[:-1])))))


def worker_parallel(a) -> Optional[Dict[str, Any]]:
    from mpi4py import MPI
    from braidnet import work
    from braidnet.parallel import ParallelNetwork
    from braidnet.oneshot import OneShot

    comm = MPI.COMM_WORLD
    net, X, y, theta = make_problem(a.problem, a.activation)
    with ParallelNetwork(net, X, y, comm=comm, braid=dict(BRAID)) as pn:
        oneshot = OneShot(pn, D)
        opt = _optimizer(pn.dot)
        x = pn.scatter(theta)
        f, g = oneshot.objective(x), oneshot.gradient(x)
        trials, prim, adj = [], [], []
        for k in range(a.warmup + a.iterations):
            if k == a.warmup:
                comm.Barrier()
                t0, c0 = time.perf_counter(), work.cost(pn.step_counts())
                comm.Barrier()
                t0 = time.perf_counter()
            x, f, g, info = opt.step(oneshot.objective, oneshot.gradient, x, f, g)
            if not info.success:
                f, g = oneshot.objective(x), oneshot.gradient(x)
            trials.append(info.ls_trials)
            prim.append(oneshot.last_forward.get("rnorm"))
            adj.append(oneshot.last_backward.get("rnorm"))
        dt = comm.allreduce(time.perf_counter() - t0, op=MPI.MAX) / a.iterations
        steps = (work.cost(pn.step_counts()) - c0) / a.iterations
        # residual reduction per MGRIT iteration at the final weights, from a cold start
        pn.restart()
        pn.set_params(x)
        rp = [pn.forward(max_iter=1)["rnorm"] for _ in range(6)]
        pn.forward()
        ra = [pn.backward(max_iter=1)[1]["rnorm"] for _ in range(6)]
        levels = list(pn.levels)
    if comm.Get_rank():
        return None
    N = net.n_layers
    coarse = N // levels[-1]
    t = float(np.mean(trials[a.warmup:]))
    return {"kind": "parallel", "problem": a.problem, "ranks": comm.Get_size(), "seconds": dt,
            "weighted_steps": steps, "ls_trials": t, "levels": len(levels), "coarse_intervals": coarse,
            # MGRIT iterations per optimisation iteration: d per primal solve (one per trial), d adjoint
            "mgrit_iterations": D * (t + 1), "primal_rnorm": prim[-1], "adjoint_rnorm": adj[-1],
            "primal_reduction": _reduction(rp), "adjoint_reduction": _reduction(ra), "objective": f}


def worker_counts(a) -> Dict[str, Any]:
    """Weighted layer steps of one forward (d iterations) and one backward (d iterations) on one rank,
    for the model's extrapolation to deeper networks (counts do not depend on the batch or width)."""
    from mpi4py import MPI
    from braidnet import work
    from braidnet.parallel import ParallelNetwork
    from braidnet.resnet import ResNet

    out = []
    rng = np.random.default_rng(0)
    X, y = rng.random((4, 2)), np.arange(4) % 2
    for N in a.depths:
        net = ResNet(2, 2, 4, N, T=T_FINAL, activation="tanh")
        theta = net.init_params(seed=1, scale_opening=1.0, scale_layers=0.5, scale_classifier=1.0) - 0.25
        braid = dict(BRAID, max_levels=30)      # deep networks: coarsen until <= 4 intervals remain
        with ParallelNetwork(net, X, y, comm=MPI.COMM_SELF, braid=braid) as pn:
            pn.set_params(theta)
            pn.forward(max_iter=D)
            c1 = work.cost(pn.step_counts())
            pn.backward(max_iter=D)
            c2 = work.cost(pn.step_counts())
            out.append({"layers": N, "forward": c1, "backward": c2 - c1, "levels": len(pn.levels),
                        "coarse_intervals": N // pn.levels[-1]})
    return {"kind": "counts", "depths": out}


def _smoothrelu_torch(torch, z, eta=0.1):
    q = torch.clamp(z, -eta, eta) + eta
    return q * q * (0.25 / eta) + torch.relu(z - eta)


def worker_torch(a) -> Dict[str, Any]:
    """Serial PyTorch forward + backward (autograd) of the TorchBraid-setting network, one thread."""
    import torch

    torch.set_num_threads(1)
    net, X, y, theta = make_problem("peaks", a.activation)
    L = net.layout
    th = torch.tensor(theta, dtype=torch.float64, requires_grad=True)
    x = torch.from_numpy(np.ascontiguousarray(X.T))
    yt = torch.from_numpy(np.asarray(y, dtype=np.int64))
    act = {"tanh": torch.tanh, "relu": torch.relu,
           "smoothrelu": lambda z: _smoothrelu_torch(torch, z)}[a.activation]
    w, N, h = L.width, L.n_layers, net.h
    so, sc = L.opening_slice, L.classifier_slice
    nw = w * w

    def run():
        Wo = th[so][: w * L.n_features].reshape(w, L.n_features)
        bo = th[so][w * L.n_features:]
        u = act(Wo @ x + bo[:, None])
        layers = th[L.layers_slice()].reshape(N, -1)
        for n in range(N):
            u = u + h * act(layers[n, :nw].reshape(w, w) @ u + layers[n, nw:][:, None])
        Wc = th[sc][: L.n_classes * w].reshape(L.n_classes, w)
        bc = th[sc][L.n_classes * w:]
        z = (Wc @ u + bc[:, None]).T
        loss = torch.nn.functional.cross_entropy(z, yt)
        th.grad = None
        loss.backward()
        return float(loss)

    return {"kind": "torch", "seconds": _best(run, a.repeat), "threads": torch.get_num_threads()}


def worker_tb(a) -> Optional[Dict[str, Any]]:
    """Layer-parallel forward + backward in the TorchBraid setting (relaxation ``a.relax``)."""
    from mpi4py import MPI
    from braidnet.parallel import ParallelNetwork

    comm = MPI.COMM_WORLD
    net, X, y, theta = make_problem("peaks", a.activation)
    with ParallelNetwork(net, X, y, comm=comm, braid=dict(TB_BRAID[a.relax])) as pn:
        pn.set_params(pn.scatter(theta))

        def run():
            pn.forward(max_iter=2)
            pn.backward(max_iter=2)

        sec = _best(run, a.repeat, comm=comm)
    if comm.Get_rank():
        return None
    return {"kind": "tb", "relax": a.relax, "ranks": comm.Get_size(), "seconds": sec}


def _best(fn, repeat: int, min_time: float = 0.3, comm=None) -> float:
    """Best mean seconds per call over ``repeat`` rounds of enough calls to last ``min_time``
    (the slowest rank's, and the same call count on every rank)."""
    fn()
    t0 = time.perf_counter()
    fn()
    one = max(time.perf_counter() - t0, 1e-6)
    if comm is not None:
        from mpi4py import MPI
        one = comm.allreduce(one, op=MPI.MAX)
    n = max(1, int(min_time / one))
    best = float("inf")
    for _ in range(repeat):
        if comm is not None:
            comm.Barrier()
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        dt = (time.perf_counter() - t0) / n
        if comm is not None:
            from mpi4py import MPI
            dt = comm.allreduce(dt, op=MPI.MAX)
        best = min(best, dt)
    return best


WORKERS = {"serial": worker_serial, "parallel": worker_parallel, "counts": worker_counts,
           "torch": worker_torch, "tb": worker_tb}


# =============================================================================================
# driver

def _mpiexec() -> str:
    cand = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    exe = cand if os.path.exists(cand) else shutil.which("mpiexec")
    if exe is None:
        raise SystemExit("bench_parallel: no mpiexec beside the interpreter or on PATH")
    return exe


def launch(nprocs: int, worker: str, args: argparse.Namespace, *extra: str) -> Dict[str, Any]:
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [_mpiexec(), "-n", str(nprocs), sys.executable, os.path.abspath(__file__), "--worker", worker,
           "--activation", args.activation, "--iterations", str(args.iterations), "--warmup", str(args.warmup),
           "--repeat", str(args.repeat), *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, env=env, cwd=ROOT)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH ")]
    if proc.returncode or len(lines) != 1:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return json.loads(lines[0][6:])


def messages(ranks: int, levels: int, coarse: int, mgrit_iterations: float) -> float:
    """Messages on the critical path of one optimisation iteration: per MGRIT iteration, a boundary
    exchange for each of F-, C-, F-relaxation, restriction and interpolation on every level but the
    coarsest (5 per level), plus the coarsest level's sequential solve passed through the ranks that
    own its points.  None on one rank."""
    if ranks <= 1:
        return 0.0
    return mgrit_iterations * (5 * (levels - 1) + min(ranks, coarse + 1) - 1)


def model_terms(par: Dict[str, Any], ranks: int, cores: int) -> tuple:
    """(weighted layer steps on the critical path, messages on it) of one optimisation iteration.

    The coarsest level's solve is sequential: coarse_intervals steps per MGRIT iteration (d per primal
    solve, one primal solve per line-search trial, weight 1; d adjoint, weight 2).  Every other step is
    spread evenly over min(ranks, cores) ranks.
    """
    seq = par["coarse_intervals"] * D * (par["ls_trials"] * 1 + 2)
    spread = max(par["weighted_steps"] - seq, 0.0)
    it = par["mgrit_iterations"]
    return spread / min(ranks, cores) + seq, messages(ranks, par["levels"], par["coarse_intervals"], it)


def fit_model(rows: List[Dict[str, Any]], cores: int) -> Dict[str, float]:
    """Least squares (non-negative) for the cost per weighted layer step t_step and the latency per
    message t_msg of  T(P) = t_step * (S_spread / min(P, cores) + S_coarse) + t_msg * messages(P)."""
    from scipy.optimize import nnls

    A = np.array([model_terms(r, r["ranks"], cores) for r in rows])
    b = np.array([r["seconds"] for r in rows])
    # relative least squares: each measurement counts the same
    coef, _ = nnls(A / b[:, None], np.ones_like(b))
    return {"t_step": float(coef[0]), "t_msg": float(coef[1])}


def predict(model: Dict[str, float], serial_step: float, counts: Dict[str, Any], trials_par: float,
            fwd_serial: float, ranks: int) -> float:
    """Predicted speedup T_serial / T_parallel of a network with counts['layers'] layers on ``ranks``
    ranks (as many cores as ranks)."""
    N = counts["layers"]
    t_ser = serial_step * N * (W_FWD * fwd_serial + W_BWD)
    par = {"weighted_steps": trials_par * counts["forward"] + counts["backward"],
           "mgrit_iterations": D * (trials_par + 1), "levels": counts["levels"], "ls_trials": trials_par,
           "coarse_intervals": counts["coarse_intervals"]}
    comp, msg = model_terms(par, ranks, ranks)
    return t_ser / (model["t_step"] * comp + model["t_msg"] * msg)


def _predictions(model, label, serial_step, counts, trials, forwards, a) -> List[Dict[str, Any]]:
    """Print and return the predicted speedups of one model for every depth in ``counts``."""
    preds = []
    for c in counts:
        grid = range(1, c["layers"] + 2)
        allsp = [predict(model, serial_step, c, trials, forwards, P) for P in grid]
        sp = {P: allsp[P - 1] for P in a.predict_ranks if P <= c["layers"] + 1}
        cross = next((P for P, s in zip(grid, allsp) if s > 1.0), None)
        best = int(np.argmax(allsp)) + 1
        cells = "".join(f"{sp[P]:9.2f}" if P in sp else f"{'-':>9}" for P in a.predict_ranks)
        print(f"   {c['layers']:>8}{cells}{(str(cross) if cross else 'never'):>11}  "
              f"{f'{max(allsp):.1f}x @ {best}':>16}   ({c['levels']} levels)")
        preds.append({"model": label, "t_msg": model["t_msg"], "layers": c["layers"], "levels": c["levels"],
                      "speedup": sp, "crossover": cross, "best": max(allsp), "best_ranks": best})
    return preds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ranks", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--problems", nargs="*", default=["peaks", "pines"], choices=sorted(PROBLEMS))
    ap.add_argument("--iterations", type=int, default=4, help="timed optimisation iterations")
    ap.add_argument("--warmup", type=int, default=1, help="untimed optimisation iterations first")
    ap.add_argument("--repeat", type=int, default=3, help="rounds of the forward+backward timings")
    ap.add_argument("--activation", default="smoothrelu", choices=["tanh", "relu", "smoothrelu"])
    ap.add_argument("--cores", type=int, default=os.cpu_count() or 1,
                    help="cores of this machine (ranks beyond it share them; the model divides by min(P, cores))")
    ap.add_argument("--depths", type=int, nargs="+", default=[1024, 4096])
    ap.add_argument("--predict-ranks", type=int, nargs="+", default=[16, 64, 256, 1024])
    ap.add_argument("--cluster-latency", type=float, default=2e-5,
                    help="also predict with this latency per message in seconds (MPI plus the core's "
                         "per-message overhead on a quiet cluster); negative: fitted only")
    ap.add_argument("--cluster-bandwidth", type=float, default=1e10,
                    help="bytes per second of a message in that prediction (default 10 GB/s)")
    ap.add_argument("--no-torch", action="store_true", help="skip the TorchBraid comparison")
    ap.add_argument("--json", help="also write every measurement and prediction here")
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds per launch")
    # worker mode (internal)
    ap.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    ap.add_argument("--problem", default="peaks", help=argparse.SUPPRESS)
    ap.add_argument("--relax", default="F", help=argparse.SUPPRESS)
    a = ap.parse_args()

    if a.worker:
        res = WORKERS[a.worker](a)
        if res is not None:
            print("BENCH " + json.dumps(res), flush=True)
        return 0

    t_start = time.time()
    out: Dict[str, Any] = {"activation": a.activation, "cores": a.cores, "iterations": a.iterations,
                           "problems": {}, "torchbraid": None}
    print(f"bench_parallel: {a.activation}, {a.iterations} timed iterations after {a.warmup}, one BLAS "
          f"thread per rank, {a.cores} cores (ranks > cores are oversubscribed)\n")
    counts = launch(1, "counts", a, "--depths", *map(str, a.depths))["depths"]
    for name in a.problems:
        p = PROBLEMS[name]
        ser = launch(1, "serial", a, "--problem", name)
        par = [launch(P, "parallel", a, "--problem", name) for P in a.ranks]
        model = fit_model(par, a.cores)
        serial_step = ser["seconds"] / ser["weighted_steps"]
        out["problems"][name] = {"problem": p, "serial": ser, "parallel": par, "model": model,
                                 "serial_step_seconds": serial_step}
        print(f"== {name}: {p['layers']} layers, width {p['width']}, batch {p['batch']}; One-shot d = {D}, "
              f"{par[0]['levels']} levels, cfactor {BRAID['cfactor']}, FCF")
        print(f"{'':>18} {'s/iter':>9} {'model':>9} {'vs serial':>9} {'LS trials':>9} {'steps/iter':>10} "
              f"{'primal red.':>11} {'adjoint red.':>12} {'final r (p/a)':>19}")
        print(f"{'layer-serial':>18} {ser['seconds']:9.4f} {'':>9} {1.0:9.2f} {ser['ls_trials']:9.2f} "
              f"{ser['weighted_steps']:10.0f}")
        for r in par:
            comp, msg = model_terms(r, r["ranks"], a.cores)
            pred = model["t_step"] * comp + model["t_msg"] * msg
            print(f"{'parallel P=' + str(r['ranks']):>18} {r['seconds']:9.4f} {pred:9.4f} "
                  f"{ser['seconds'] / r['seconds']:9.2f} {r['ls_trials']:9.2f} {r['weighted_steps']:10.0f} "
                  f"{r['primal_reduction']:11.3g} {r['adjoint_reduction']:12.3g} "
                  f"{r['primal_rnorm']:9.2e}/{r['adjoint_rnorm']:9.2e}")
        print(f"   model: t_step = {model['t_step'] * 1e6:.1f} us per weighted layer step (serial: "
              f"{serial_step * 1e6:.1f} us), t_msg = {model['t_msg'] * 1e6:.1f} us per message on the "
              f"critical path")
        # predictions: with the fitted latency, and with an assumed one for a quiet cluster (the fitted
        # one includes the waits of oversubscribed and loaded ranks)
        preds = []
        head = "".join(f"{'P=' + str(P):>9}" for P in a.predict_ranks)
        models = [("fitted", model)]
        if a.cluster_latency >= 0:
            # one message carries one state: width x batch doubles
            models.append(("assumed", {**model, "t_msg": a.cluster_latency
                                       + 8.0 * p["width"] * p["batch"] / a.cluster_bandwidth}))
        for label, mdl in models:
            print(f"   predicted speedup of layer-parallel over layer-serial, t_msg {label} = "
                  f"{mdl['t_msg'] * 1e6:.0f} us{' (latency + one state / bandwidth)' if label == 'assumed' else ''}"
                  f"\n   (levels until <= 4 coarse intervals; as many cores as ranks):\n"
                  f"   {'layers':>8}{head}{'crossover':>11}  {'best':>16}")
            preds += _predictions(mdl, label, serial_step, counts, par[0]["ls_trials"], ser["forwards"], a)
        out["problems"][name]["predictions"] = preds
        print()

    if not a.no_torch:
        try:
            tor = launch(1, "torch", a)
        except RuntimeError as e:
            if "No module named 'torch'" not in str(e):
                raise
            tor = None
            print("TorchBraid setting: torch is not installed; skipped")
        if tor is not None:
            rows = []
            print(f"== TorchBraid setting: width 8, batch 5000, 64 layers, cfactor 4, 3 levels, 2 primal + 2 "
                  f"adjoint iterations, {a.activation}; serial PyTorch (autograd, float64, 1 thread) "
                  f"forward+backward {tor['seconds'] * 1e3:.1f} ms")
            print(f"   {'relaxation':>10} {'ranks':>5} {'ms':>8} {'ours':>7} {'TorchBraid':>10} {'target':>7}")
            for relax in ("F", "FCF"):
                for P in (1, 2):
                    r = launch(P, "tb", a, "--relax", relax)
                    ratio = r["seconds"] / tor["seconds"]
                    tb = TORCHBRAID[(relax, P)]
                    rows.append({**r, "ratio": ratio, "torchbraid": tb, "target": tb / 2})
                    print(f"   {relax + (' (fine)' if relax == 'F' else ''):>10} {P:>5} {r['seconds'] * 1e3:8.1f} "
                          f"{ratio:6.2f}x {tb:9.1f}x {tb / 2:6.2f}x {'ok' if ratio <= tb / 2 else 'MISSED'}")
            out["torchbraid"] = {"torch": tor, "rows": rows}
    print(f"\n(total {time.time() - t_start:.0f} s)")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
