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
2. a performance model fitted to those times (``scripts/perf_model.py``: the critical-path model that
   ``scripts/replay_scaling.py`` checks against replays of real traces at 1-64 ranks), and its predicted speedup of
   layer-parallel over layer-serial training at 16-1024 ranks for 1024 and 4096 layers, with the
   crossover (fewest ranks at which layer-parallel is faster);
3. braidnet against TorchBraid at equal work: layer-parallel forward + backward of one network with
   the same weights and data on both sides (64 layers, ReLU, widths 8 with batch 5000 and 220 with
   batch 1000; 3 levels, cfactor 4, exactly 2 primal + 2 adjoint MGRIT iterations: tolerance 0 and
   max_iter 2 on both sides, no early stop), settings "F+skip" (F-relaxation on the finest level, FCF
   on the coarse ones, the first down-cycle skipped: TorchBraid's MNIST example) and "FCF" (every
   level, no skip), on 1 and 2 ranks, one thread per rank: best time per pass (each side launched
   ``--tb-rounds`` times, the two in turn, so that a host whose speed drifts weighs on both),
   TorchBraid's over braidnet's, and each side's relative gradient error after one cold pass against
   the exact float64 serial gradient (``--tb-guess``: the cold pass starts from u_0 at every primal
   point on both sides and from lambda_N at every adjoint point in braidnet, TorchBraid having no
   adjoint guess, or from zeros on both sides); also the serial forward + backward of braidnet (``braidnet.resnet``) and of
   PyTorch autograd in float64 and float32 (one thread), and, for widths that use BLAS, one layer
   step's GEMM on each side with its own BLAS (braidnet's OpenBLAS, with the kernel family it runs,
   which ``OPENBLAS_CORETYPE`` decides where it is set; PyTorch's MKL): what the two sides' GEMMs
   cost on this CPU.  TorchBraid runs in its own interpreter (``--torchbraid-python``; not on PyPI:
   the recipe is below); without it one line says so and only braidnet's side is measured.  What
   this braidnet offers towards TorchBraid's settings is asked of it, not assumed
   (``braidnet_equal_work_options``: a float32 ``dtype``, a skip at every drive as XBraid does,
   XBraid's final FC relaxation) and used when there; the output lists what still differs.

    python scripts/bench_parallel.py [--ranks 1 2 4] [--problems peaks pines] [--iterations 4]
                                     [--activation smoothrelu] [--json results.json]
                                     [--parts training torchbraid] [--torchbraid-python PY] [--dtype float64]

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
sys.path.insert(0, HERE)

# the performance model (fitted here to 1-4 ranks, checked against trace replays by replay_scaling.py)
from perf_model import fit_model, model_terms, predict  # noqa: E402

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
# The TorchBraid comparison: 64 layers, 3 levels, cfactor 4, exactly 2 primal + 2 adjoint MGRIT
# iterations (tolerance 0 on both sides), widths 8 (batch 5000, peaks) and 220 (batch 1000)
TB_LAYERS, TB_LEVELS, TB_CFACTOR, TB_ITERATIONS = 64, 3, 4, 2
TB_PROBLEMS = {8: dict(batch=5000, features=2, classes=5, data="peaks"),
               220: dict(batch=1000, features=220, classes=16, data="random")}
# "F + skip": F-relaxation on the finest level, FCF on the coarse ones, the first down-cycle skipped
# (TorchBraid's MNIST example); "FCF": FCF on every level, no skip
TB_SETTINGS = {"F+skip": dict(nrelax=[0, 1, 1], skip=1), "FCF": dict(nrelax=1, skip=0)}
TB_PIECES = ("Wo", "bo", "Wl", "bl", "Wc", "bc")
TB_RECIPE = """\
TorchBraid is not on PyPI.  Build it into its own environment (Python 3.11, CPU torch; ~1 min on 2 cores):

    git clone https://github.com/XBraid/xbraid                # tested at 52178c8
    git clone https://github.com/Multilevel-NN/torchbraid     # tested at 29b42ce
    python3.11 -m venv tbenv && . tbenv/bin/activate
    pip install torch==2.13.0 mpich mpi4py cython numpy       # CPU torch: add --index-url
                                                               # https://download.pytorch.org/whl/cpu if pip
                                                               # would pull the CUDA wheels
    git clone xbraid torchbraid/src/xbraid                    # else its setup.py clones it
    mkdir shim && : > shim/mpi-ext.h                           # MPICH lacks this Open MPI header
    (cd torchbraid && CFLAGS=-I$PWD/../shim pip install --no-build-isolation --no-deps .)

then pass --torchbraid-python tbenv/bin/python (or set BRAIDNET_TORCHBRAID_PYTHON); its mpiexec (the
one beside that interpreter) launches TorchBraid's ranks.
"""


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

    from braidnet.parallel import split_comm

    comm = MPI.COMM_WORLD
    net, X, y, theta = make_problem(a.problem, a.activation)
    # Q data-parallel groups of P = size / Q ranks (one group: the world)
    lcomm, dcomm = split_comm(comm, a.groups) if a.groups > 1 else (comm, None)
    with ParallelNetwork(net, X, y, comm=lcomm, braid=dict(BRAID), data_comm=dcomm) as pn:
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
    return {"kind": "parallel", "problem": a.problem, "ranks": comm.Get_size(), "groups": a.groups, "seconds": dt,
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


# ---------------------------------------------------------------------------------------------
# the TorchBraid comparison: one network, its weights and data in a .npz file that every worker
# (braidnet's in this interpreter, TorchBraid's and PyTorch's in the TorchBraid one) loads

def _tb_pieces(net, theta) -> Dict[str, np.ndarray]:
    """A parameter (or gradient) vector of ``net`` as named arrays: Wo (width, F), bo, Wl (N, width,
    width), bl (N, width), Wc (C, width), bc: the layout both sides build their layers from."""
    L = net.layout
    Wo, bo = L.opening_view(theta)
    Wl, bl = L.layers_view(theta)
    Wc, bc = L.classifier_view(theta)
    return {k: np.ascontiguousarray(v) for k, v in
            dict(Wo=Wo, bo=bo, Wl=Wl, bl=bl, Wc=Wc, bc=bc).items()}


def _rel_error(g: Dict[str, np.ndarray], ref: Dict[str, np.ndarray]) -> float:
    """||g - ref|| / ||ref|| over all the pieces (float64)."""
    num = sum(float(np.sum((np.asarray(g[k], dtype=np.float64) - ref[k]) ** 2)) for k in TB_PIECES)
    den = sum(float(np.sum(ref[k] ** 2)) for k in TB_PIECES)
    return math.sqrt(num / den)


def _tb_net(width: int, batch: int, activation: str, seed: int = 0):
    """(net, X, y, theta) of the comparison: 64 layers, no regularisation (the loss is the batch mean
    of the softmax cross-entropy on both sides), width 8 on peaks or width 220 on random data of the
    Indian Pines shape."""
    from braidnet import datasets
    from braidnet.resnet import ResNet

    p = TB_PROBLEMS[width]
    if p["data"] == "peaks":
        X, y, _, _ = datasets.peaks(batch, 0, seed=seed)
    else:
        rng = np.random.default_rng(seed)
        X = rng.random((batch, p["features"]))
        y = rng.integers(0, p["classes"], batch)
    net = ResNet(p["features"], p["classes"], width, TB_LAYERS, T=T_FINAL, activation=activation,
                 opening="dense")
    theta = net.init_params(seed=seed + 1, scale_opening=1.0, scale_layers=2.0 / math.sqrt(width),
                            scale_classifier=1.0)
    theta[net.layout.layers_slice()] -= 1.0 / math.sqrt(width)
    return net, np.ascontiguousarray(X, dtype=np.float64), np.asarray(y, dtype=np.int64), theta


def _tb_load(path: str):
    d = np.load(path)
    meta = json.loads(str(d["meta"]))
    return meta, d["X"], d["y"], {k: d[k] for k in TB_PIECES}, {k: d["ref_" + k] for k in TB_PIECES}


def worker_tbprep(a) -> Dict[str, Any]:
    """Write the comparison's network, weights, data and exact float64 gradient (braidnet's serial
    ResNet) to ``a.data``; time braidnet's serial forward + backward of it."""
    net, X, y, theta = _tb_net(a.width, a.batch, a.activation)
    loss, grad = net.loss_and_gradient(theta, X, y, regularize=False)
    meta = dict(width=a.width, batch=a.batch, layers=TB_LAYERS, T=T_FINAL, activation=a.activation,
                features=net.layout.n_features, classes=net.layout.n_classes, loss=loss)
    pieces = _tb_pieces(net, theta)
    refs = {"ref_" + k: v for k, v in _tb_pieces(net, grad).items()}
    np.savez(a.data, meta=json.dumps(meta), X=X, y=y, **pieces, **refs)
    sec = _best(lambda: net.loss_and_gradient(theta, X, y, regularize=False), a.repeat)
    return {"kind": "tbprep", "loss": loss, "seconds": sec, "gemm": _braidnet_gemm(a.width, a.batch, a.repeat)}


GEMM_WHY = ("the GEMM of one layer's step (W u: width x width by width x batch, float32, one thread, best of "
            "rounds of 20 calls)")


def _braidnet_gemm(width: int, batch: int, repeat: int) -> Dict[str, Any]:
    """Seconds of GEMM_WHY with the OpenBLAS braidnet's wide layers call, and that library's build
    string, whose last name before MAX_THREADS is the kernel family it runs here (OPENBLAS_CORETYPE
    decides it where that is set)."""
    from bench_blas import braidnet_gemm

    import braidnet

    gemm = braidnet_gemm(np.float32)
    rng = np.random.default_rng(0)
    W = np.asfortranarray(rng.standard_normal((width, width), dtype=np.float32))
    U = np.asfortranarray(rng.standard_normal((batch, width), dtype=np.float32))
    C = np.zeros((batch, width), np.float32, order="F")
    sec = _best(lambda: [gemm(b"N", U, W, C) for _ in range(20)], repeat, min_time=0.05) / 20
    return {"seconds": sec, "library": braidnet.build_info()["blas"],
            "coretype_env": os.environ.get("OPENBLAS_CORETYPE")}


def braidnet_equal_work_options() -> Dict[str, Any]:
    """What this braidnet offers towards TorchBraid's settings, found by asking it (not assumed):
    ``dtype`` (the ResNet/ParallelNetwork argument, float32 support), ``skip_every`` (a core option
    that skips the first down-cycle at every drive, as XBraid does), ``final_fc`` (XBraid's
    final FC relaxation) and ``guess`` (the initial guesses of a cold solve), each None when this
    braidnet lacks it."""
    import inspect
    import re
    from braidnet import braid as _braid
    from braidnet.parallel import ParallelNetwork
    from braidnet.resnet import ResNet

    out: Dict[str, Any] = {"dtype": None, "skip_every": None, "final_fc": None, "guess": None}
    for cls in (ResNet, ParallelNetwork):
        if "dtype" in inspect.signature(cls.__init__).parameters:
            out["dtype"] = cls.__name__
            break
    if "guess" in inspect.signature(ParallelNetwork.__init__).parameters:
        from braidnet.parallel import GUESSES
        out["guess"] = list(GUESSES)
    try:
        _braid.check_options(0.0, 1.0, 1, __probe__=1)
        names: List[str] = []
    except ValueError as e:
        m = re.search(r"allowed: (.*)$", str(e))
        names = [n.strip() for n in m.group(1).split(",")] if m else []

    def accepted(**opt) -> bool:
        try:
            _braid.check_options(0.0, 1.0, 1, **opt)
            return True
        except (ValueError, TypeError):
            return False

    for n in names:
        if "final" in n and accepted(**{n: True}):
            out["final_fc"] = {n: True}
        elif "skip" in n and n != "skip" and accepted(**{n: True}):
            out["skip_every"] = {n: True}
    if out["skip_every"] is None:            # or as a value of skip itself
        for v in ("every", "always", "all", "xbraid", 2):
            if accepted(skip=v):
                out["skip_every"] = {"skip": v}
                break
    return out


def _braidnet_tb_braid(setting: str, found: Dict[str, Any]) -> Dict[str, Any]:
    s = TB_SETTINGS[setting]
    braid = dict(max_levels=TB_LEVELS, cfactor=TB_CFACTOR, min_coarse=2, nrelax=s["nrelax"], skip=s["skip"],
                 abs_tol=0.0, max_iter=TB_ITERATIONS)
    if s["skip"] and found["skip_every"]:
        braid.update(found["skip_every"])
    if found["final_fc"]:
        braid.update(found["final_fc"])
    return braid


def worker_tblp(a) -> Optional[Dict[str, Any]]:
    """braidnet's layer-parallel forward + backward of the comparison network (exactly 2 + 2 MGRIT
    iterations): the gradient error after one cold pass, then the best time per pass."""
    from mpi4py import MPI
    from braidnet.parallel import ParallelNetwork

    comm = MPI.COMM_WORLD
    meta, X, y, pieces, ref = _tb_load(a.data)
    found = braidnet_equal_work_options()
    net, _, _, theta = _tb_net(meta["width"], meta["batch"], meta["activation"])
    for k in TB_PIECES:                 # the weights in the file are the ones compared
        assert np.array_equal(_tb_pieces(net, theta)[k], pieces[k])
    kw: Dict[str, Any] = {}
    if a.dtype != "float64":
        if found["dtype"] is None:
            raise SystemExit(f"braidnet here has no dtype argument; cannot run {a.dtype}")
        if found["dtype"] == "ResNet":
            net = type(net)(net.layout.n_features, net.layout.n_classes, net.width, net.n_layers, T=net.T,
                            activation=net.activation, opening="dense", dtype=a.dtype)
        else:
            kw["dtype"] = a.dtype
    if found["guess"]:
        kw["guess"] = a.tb_guess
    elif a.tb_guess != "zero":
        raise SystemExit(f"braidnet here has no guess argument (it starts from zeros); cannot run {a.tb_guess}")
    braid = _braidnet_tb_braid(a.relax, found)
    with ParallelNetwork(net, X, y, comm=comm, braid=braid, **kw) as pn:
        x = pn.scatter(theta)
        iters = []

        def run():
            pn.set_params(x)
            f = pn.forward(max_iter=TB_ITERATIONS, abs_tol=0.0)
            g, b = pn.backward(max_iter=TB_ITERATIONS, abs_tol=0.0)
            iters.append((f["iterations"], b["iterations"]))
            return g

        g = pn.gather(run())
        sec = _best(run, a.repeat, comm=comm)
        # XBraid skips the first down-cycle at every drive; without an option for that, new cores
        # before every pass (restart) do the same work (plus the cores' set-up)
        sec_restart = None
        if TB_SETTINGS[a.relax]["skip"] and not found["skip_every"]:
            def run_restart():
                pn.restart()
                run()
            sec_restart = _best(run_restart, a.repeat, comm=comm)
    if comm.Get_rank():
        return None
    return {"kind": "tblp", "relax": a.relax, "ranks": comm.Get_size(), "dtype": a.dtype, "seconds": sec,
            "seconds_restart": sec_restart, "grad_error": _rel_error(_tb_pieces(net, g), ref),
            "iterations": sorted(set(iters)), "braid": braid, "found": found}


def _torch_activation(torch, name: str):
    def smoothrelu(z, eta=0.1):
        q = torch.clamp(z, -eta, eta) + eta
        return q * q * (0.25 / eta) + torch.relu(z - eta)
    return {"tanh": torch.tanh, "relu": torch.relu, "smoothrelu": smoothrelu}[name]


def worker_torchserial(a) -> Dict[str, Any]:
    """Serial PyTorch (autograd) forward + backward of the comparison network, float64 and float32,
    one thread: time per pass and gradient error against braidnet's exact float64 one."""
    import torch

    torch.set_num_threads(1)
    meta, X, y, pieces, ref = _tb_load(a.data)
    act = _torch_activation(torch, meta["activation"])
    h = meta["T"] / meta["layers"]
    out: Dict[str, Any] = {"kind": "torchserial", "threads": torch.get_num_threads(), "torch": torch.__version__}
    for dtype in ("float64", "float32"):
        dt = getattr(torch, dtype)
        P = {k: torch.tensor(v, dtype=dt, requires_grad=True) for k, v in pieces.items()}
        x = torch.from_numpy(X).to(dt)
        yt = torch.from_numpy(y)
        N = meta["layers"]

        def run():
            for p in P.values():
                p.grad = None
            u = act(x @ P["Wo"].T + P["bo"])
            for n in range(N):
                u = u + h * act(u @ P["Wl"][n].T + P["bl"][n])
            loss = torch.nn.functional.cross_entropy(u @ P["Wc"].T + P["bc"], yt)
            loss.backward()
            return loss

        run()
        err = _rel_error({k: p.grad.numpy() for k, p in P.items()}, ref)
        out[dtype] = {"seconds": _best(run, a.repeat), "grad_error": err}
    W = torch.randn(meta["width"], meta["width"], dtype=torch.float32)
    U = torch.randn(meta["width"], meta["batch"], dtype=torch.float32)
    Z = torch.empty(meta["width"], meta["batch"], dtype=torch.float32)
    mkl = [ln.strip(" -") for ln in torch.__config__.show().splitlines() if "Math Kernel Library" in ln]
    out["gemm"] = {"seconds": _best(lambda: [torch.mm(W, U, out=Z) for _ in range(20)], a.repeat,
                                    min_time=0.05) / 20,
                   "library": mkl[0] if mkl else f"BLAS of torch {torch.__version__}"}
    return out


def worker_torchbraid(a) -> Optional[Dict[str, Any]]:
    """TorchBraid's layer-parallel forward + backward of the comparison network (run in TorchBraid's
    interpreter): its own LayerParallel with the network's weights, the opening layer on rank 0 and
    the classifier and loss there too (as its MNIST example composes them), exactly 2 + 2 iterations
    (tolerance 0), the setting's relaxation and skip; XBraid's final FC relaxation stays on (TorchBraid
    always sets it).  With ``--tb-guess constant`` its forward solve starts every point at u_0 (its
    public ``setFwdInitialGuess``; its adjoint has no such option and starts from zeros).  Gradient
    error after one cold pass, then the best time per pass."""
    import torch
    import torch.nn as nn
    import torchbraid
    from mpi4py import MPI

    torch.set_num_threads(1)
    dt = getattr(torch, a.dtype)
    torch.set_default_dtype(dt)
    comm = MPI.COMM_WORLD
    rank = comm.Get_rank()
    meta, X, y, pieces, ref = _tb_load(a.data)
    act = _torch_activation(torch, meta["activation"])
    w, F, C, N = meta["width"], meta["features"], meta["classes"], meta["layers"]

    class Step(nn.Module):          # TorchBraid takes u + dt * layer(u)
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(w, w)

        def forward(self, u):
            return act(self.lin(u))

    class Opening(nn.Module):           # with the comparison's opening weights
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(F, w)
            with torch.no_grad():
                self.lin.weight.copy_(torch.from_numpy(pieces["Wo"]))
                self.lin.bias.copy_(torch.from_numpy(pieces["bo"]))

        def forward(self, x):
            return act(self.lin(x))

    lp = torchbraid.LayerParallel(comm, Step, N, meta["T"], max_fwd_levels=TB_LEVELS,
                                  max_bwd_levels=TB_LEVELS, max_iters=TB_ITERATIONS)
    lp.setPrintLevel(0, True)
    lp.setPrintLevel(0, False)
    lp.setCFactor(TB_CFACTOR)
    lp.setMinCoarse(2)
    lp.setFwdMaxIters(TB_ITERATIONS)
    lp.setBwdMaxIters(TB_ITERATIONS)
    lp.fwd_app.setAbsTol(0.0)           # never met: exactly max_iters iterations
    lp.bwd_app.setAbsTol(0.0)
    s = TB_SETTINGS[a.relax]
    lp.setNumRelax(1)                   # FCF on every level ...
    lp.setNumRelax(s["nrelax"][0] if isinstance(s["nrelax"], list) else s["nrelax"], level=0)  # ... or F on the finest
    lp.setSkipDowncycle(bool(s["skip"]))
    if a.tb_guess == "constant":
        # u_0 computed by an opening of the same weights on every rank (TorchBraid asks each rank for
        # the guess at its own points); computed once: the timed passes are warm restarts
        with torch.no_grad():
            u0 = Opening()(torch.from_numpy(X).to(dt))

        class Constant:
            def getState(self, t):
                return u0

        lp.setFwdInitialGuess(Constant())
    compose = lp.comp_op()
    opening = compose(Opening)
    close = compose(nn.Linear, w, C)
    crit = nn.CrossEntropyLoss()
    with torch.no_grad():
        if rank == 0:
            close.weight.copy_(torch.from_numpy(pieces["Wc"]))
            close.bias.copy_(torch.from_numpy(pieces["bc"]))
        local = {}
        for g, m in lp.fwd_app.layer_dict.items():
            lin = next(mm for mm in m.modules() if isinstance(mm, nn.Linear))
            lin.weight.copy_(torch.from_numpy(pieces["Wl"][g]))
            lin.bias.copy_(torch.from_numpy(pieces["bl"][g]))
            local[g] = lin
    params = list(lp.parameters()) + (list(opening.parameters()) + list(close.parameters()) if rank == 0 else [])
    x = torch.from_numpy(X).to(dt)
    yt = torch.from_numpy(y)
    lp.train()

    def run():
        for p in params:
            p.grad = None
        out = compose(opening, x)
        out = lp(out)
        out = compose(close, out)
        loss = compose(crit, out, yt)
        loss.backward()
        return loss

    run()
    mine = {g: (lin.weight.grad.double().numpy().copy(), lin.bias.grad.double().numpy().copy())
            for g, lin in local.items()}
    iters = (lp.getFwdStats()[0], lp.getBwdStats()[0])
    alls = comm.gather(mine, root=0)
    err = None
    if rank == 0:
        G = {"Wo": opening.lin.weight.grad.double().numpy(), "bo": opening.lin.bias.grad.double().numpy(),
             "Wc": close.weight.grad.double().numpy(), "bc": close.bias.grad.double().numpy(),
             "Wl": np.full((N, w, w), np.nan), "bl": np.full((N, w), np.nan)}
        for part in alls:
            for g, (gw, gb) in part.items():
                G["Wl"][g], G["bl"][g] = gw, gb
        err = _rel_error(G, ref)
    sec = _best(run, a.repeat, comm=comm)
    if rank:
        return None
    return {"kind": "torchbraid", "relax": a.relax, "ranks": comm.Get_size(), "dtype": a.dtype,
            "seconds": sec, "grad_error": err, "iterations": [list(iters)], "torch": torch.__version__}


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
           "tbprep": worker_tbprep, "tblp": worker_tblp, "torchserial": worker_torchserial,
           "torchbraid": worker_torchbraid}


# =============================================================================================
# driver

def _mpiexec(python: str = sys.executable) -> str:
    """The mpiexec beside ``python`` (its environment's MPI), else the one on PATH."""
    cand = os.path.join(os.path.dirname(python), "mpiexec")
    exe = cand if os.path.exists(cand) else shutil.which("mpiexec")
    if exe is None:
        raise SystemExit("bench_parallel: no mpiexec beside the interpreter or on PATH")
    return exe


def launch(nprocs: int, worker: str, args: argparse.Namespace, *extra: str, python: str = sys.executable,
           timeout: Optional[float] = None) -> Dict[str, Any]:
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [_mpiexec(python), "-n", str(nprocs), python, os.path.abspath(__file__), "--worker", worker,
           "--activation", args.activation, "--iterations", str(args.iterations), "--warmup", str(args.warmup),
           "--repeat", str(args.repeat), *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout or args.timeout, env=env,
                          cwd=ROOT)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH ")]
    if proc.returncode or len(lines) != 1:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return json.loads(lines[0][6:])


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


def _torchbraid_python(a) -> tuple:
    """(interpreter that runs TorchBraid and PyTorch, or None; why not)."""
    cands = [a.torchbraid_python] if a.torchbraid_python else [sys.executable]
    for py in cands:
        try:
            proc = subprocess.run([py, "-c", "import torch, torchbraid, mpi4py"], capture_output=True, text=True,
                                  timeout=120)
        except (OSError, subprocess.TimeoutExpired) as e:
            return None, f"{py}: {e}"
        if proc.returncode == 0:
            return py, ""
        return None, f"{py} cannot import torch, torchbraid and mpi4py ({proc.stderr.strip().splitlines()[-1]})"
    return None, "no interpreter"


def torchbraid_comparison(a) -> Dict[str, Any]:
    """braidnet against TorchBraid at equal work; see the module docstring (3.)."""
    import tempfile

    from braidnet import __version__ as bn_version
    from braidnet._kernels import FUSED_MAX_WIDTH
    found = braidnet_equal_work_options()
    py, why = _torchbraid_python(a)
    print(f"== TorchBraid comparison: layer-parallel forward + backward, {TB_LAYERS} layers, {a.tb_activation}, "
          f"{TB_LEVELS} levels, cfactor {TB_CFACTOR}, exactly {TB_ITERATIONS} primal + {TB_ITERATIONS} adjoint "
          f"iterations (tolerance 0 on both sides), one thread per rank; the same weights and data on both "
          f"sides; ms per pass (best of {a.repeat} in each of {a.tb_rounds} launches per side, the sides "
          f"taking turns); gradient error: relative, after one cold pass, against "
          f"the exact float64 serial gradient")
    if py is None:
        print(f"   TorchBraid could not be run: {why}.  It is not on PyPI: see the recipe in "
              f"`python scripts/bench_parallel.py --help` and pass --torchbraid-python.  Only braidnet's side "
              f"is measured below.")
    bn_dtype = a.dtype
    if a.dtype != "float64" and found["dtype"] is None:
        print(f"   braidnet {bn_version} has no {a.dtype} mode (no dtype argument): braidnet runs float64")
        bn_dtype = "float64"
    notes = [f"braidnet {bn_version} computes in {bn_dtype}; TorchBraid in float32 (its MPI buffers are float32: "
             f"in float64 it hangs on 2 ranks) and in float64 on {', '.join(map(str, a.tb_float64_ranks)) or 'no'} "
             f"rank(s)"]
    if found["skip_every"]:
        notes.append(f"skip: braidnet option {found['skip_every']} skips at every drive, as XBraid does")
    else:
        notes.append("skip: braidnet skips the first down-cycle on a core's first drive only, XBraid (TorchBraid) "
                     "on every drive; 'braidnet' below reuses its cores (its warm passes do the skipped work), "
                     "'new cores' restarts them before each pass (skip every pass, plus their set-up): "
                     "the equal-work time")
    if a.tb_guess == "constant":
        notes.append("initial guess of the cold pass: every primal point at u_0 on both sides (TorchBraid's "
                     "setFwdInitialGuess); every adjoint point at lambda_N in braidnet, zeros in TorchBraid, "
                     "which has no adjoint initial guess (the skip overwrites both guesses: F+skip rows alike "
                     "with --tb-guess zero)")
    else:
        notes.append("initial guess of the cold pass: zeros on both sides")
    if found["final_fc"]:
        notes.append(f"final FC relaxation: braidnet option {found['final_fc']} on, as TorchBraid has it")
    else:
        notes.append("final FC relaxation: TorchBraid does it after the last iteration of both solves "
                     "(always on); braidnet has no such option (it does less work there)")
    for n in notes:
        print("   " + n)
    out: Dict[str, Any] = {"activation": a.tb_activation, "found": found, "notes": notes, "python": py,
                           "braidnet_dtype": bn_dtype, "problems": []}
    tmp = tempfile.mkdtemp(prefix="bench_tb_")
    try:
        for width in a.tb_widths:
            batch = TB_PROBLEMS[width]["batch"]
            data = os.path.join(tmp, f"w{width}.npz")
            common = ("--activation", a.tb_activation, "--data", data, "--tb-guess", a.tb_guess)
            prep = launch(1, "tbprep", a, *common, "--width", str(width), "--batch", str(batch))
            ser = launch(1, "torchserial", a, *common, python=py) if py else None
            line = f"\n   width {width}, batch {batch}: serial forward + backward: braidnet float64 {prep['seconds'] * 1e3:.1f} ms"
            if ser:
                line += (f", PyTorch {ser['torch']} float64 {ser['float64']['seconds'] * 1e3:.1f} ms, float32 "
                         f"{ser['float32']['seconds'] * 1e3:.1f} ms (1 thread; gradient errors "
                         f"{ser['float64']['grad_error']:.1e}, {ser['float32']['grad_error']:.1e})")
            print(line)
            if width > FUSED_MAX_WIDTH:   # narrower layers do no GEMM: braidnet's fused kernels
                g = prep["gemm"]
                line = (f"   {GEMM_WHY}: braidnet {g['seconds'] * 1e3:.3f} ms ({g['library']}"
                        + (f"; OPENBLAS_CORETYPE={g['coretype_env']} is set and chooses these kernels"
                           if g["coretype_env"] else "") + ")")
                if ser:
                    line += f", PyTorch {ser['gemm']['seconds'] * 1e3:.3f} ms ({ser['gemm']['library']})"
                print(line)
            print(f"   {'setting':>7} {'ranks':>5} {'braidnet':>9} {'new cores':>9} {'TB f32':>9} {'TB/bn':>6} "
                  f"{'TB f64':>9} {'TB/bn':>6}   {'gradient error: braidnet':>24} {'TB f32':>10} {'TB f64':>10}  iterations")
            rows = []
            for setting in a.tb_settings:
                for P in a.tb_ranks:
                    # the two sides take turns, --tb-rounds times: a machine that slows down or speeds
                    # up during the run (a shared host) then weighs on both alike; each keeps its best
                    bns: List[Dict[str, Any]] = []
                    tbs: Dict[str, List[Dict[str, Any]]] = {}
                    for _ in range(a.tb_rounds):
                        bns.append(launch(P, "tblp", a, *common, "--relax", setting, "--dtype", bn_dtype))
                        for dt in (("float32", "float64") if P in a.tb_float64_ranks else ("float32",)) if py else ():
                            if tbs.get(dt) and "failed" in tbs[dt][-1]:
                                continue
                            try:
                                r = launch(P, "torchbraid", a, *common, "--relax", setting, "--dtype", dt,
                                           python=py, timeout=a.tb_timeout)
                            except (RuntimeError, subprocess.TimeoutExpired) as e:
                                r = {"failed": str(e).strip().splitlines()[-1][:200]}
                            tbs.setdefault(dt, []).append(r)
                    bn = _best_round(bns)
                    tb = {dt: _best_round(rs) for dt, rs in tbs.items()}
                    ref = bn["seconds_restart"] or bn["seconds"]

                    def ms(r):
                        return f"{r['seconds'] * 1e3:9.1f}" if r and "seconds" in r else f"{'-':>9}"

                    def ratio(r):
                        return f"{r['seconds'] / ref:6.2f}" if r and "seconds" in r else f"{'-':>6}"

                    def err(r):
                        return f"{r['grad_error']:10.3e}" if r and r.get("grad_error") is not None else f"{'-':>10}"
                    its = {"braidnet": bn["iterations"], **{f"TB {k}": v.get("iterations") for k, v in tb.items()}}
                    restart = f"{bn['seconds_restart'] * 1e3:9.1f}" if bn["seconds_restart"] else f"{'-':>9}"
                    print(f"   {setting:>7} {P:>5} {bn['seconds'] * 1e3:9.1f} {restart} {ms(tb.get('float32'))} "
                          f"{ratio(tb.get('float32'))} {ms(tb.get('float64'))} {ratio(tb.get('float64'))}   "
                          f"{bn['grad_error']:24.3e} {err(tb.get('float32'))} {err(tb.get('float64'))}  {its}")
                    if a.tb_rounds > 1:      # every launch's time: how much each side moved
                        times = [("braidnet", bn)] + [(f"TB {k}", v) for k, v in tb.items()]
                        print("           rounds (ms): " + "; ".join(
                            f"{k} " + "/".join(f"{t * 1e3:.0f}" for t in r["round_seconds"])
                            for k, r in times if "round_seconds" in r))
                    for k, v in tb.items():
                        if "failed" in v:
                            print(f"           TorchBraid {k} on {P} ranks failed: {v['failed']}")
                    rows.append({"setting": setting, "ranks": P, "braidnet": bn, "torchbraid": tb})
            out["problems"].append({"width": width, "batch": batch, "braidnet_serial": prep, "torch_serial": ser,
                                    "rows": rows})
        print("   (TB/bn: TorchBraid's time over braidnet's equal-work time ('new cores' where given); > 1: braidnet "
              "faster)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _best_round(results: List[Dict[str, Any]]) -> Dict[str, Any]:
    """The round with the least time (a failed one if every round failed), with every round's time."""
    done = [r for r in results if "seconds" in r]
    if not done:
        return results[-1]
    best = dict(min(done, key=lambda r: r["seconds"]))
    best["round_seconds"] = [r["seconds"] for r in done]
    if best.get("seconds_restart") is not None:
        best["seconds_restart"] = min(r["seconds_restart"] for r in done)
    return best


def data_parallel_rows(a) -> Dict[str, Any]:
    """Seconds per One-shot L-BFGS iteration for each P x Q split of ``--splits`` (the same training
    as the training part: its problems, d, hierarchy and optimiser; Q groups each on 1/Q of the batch),
    against the 1 x 1 run of the same launch."""
    splits = []
    for text in a.splits:
        try:
            P, Q = (int(v) for v in text.lower().split("x"))
        except ValueError:
            raise SystemExit(f"--splits takes PxQ with integers, got {text!r}") from None
        splits.append((P, Q))
    print(f"== data x layer parallelism: seconds per One-shot L-BFGS iteration ({a.iterations} timed after "
          f"{a.warmup}), P ranks share the layers, Q groups share the batch; {a.cores} cores "
          f"(P x Q > cores: oversubscribed)")
    out: Dict[str, Any] = {}
    for name in a.problems:
        p = PROBLEMS[name]
        rows = [dict(launch(P * Q, "parallel", a, "--problem", name, "--groups", str(Q)), P=P, Q=Q)
                for P, Q in splits]
        base = next((r["seconds"] for r in rows if (r["P"], r["Q"]) == (1, 1)), None)
        print(f"   {name}: {p['layers']} layers, width {p['width']}, batch {p['batch']}")
        print(f"   {'P x Q':>8} {'s/iter':>9} {'vs 1x1':>7} {'steps/iter':>10} {'objective':>12}")
        for r in rows:
            vs = f"{base / r['seconds']:7.2f}" if base else f"{'-':>7}"
            print(f"   {str(r['P']) + ' x ' + str(r['Q']):>8} {r['seconds']:9.4f} {vs} {r['weighted_steps']:10.0f} "
                  f"{r['objective']:12.6g}")
        out[name] = rows
    print()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, epilog=TB_RECIPE,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
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
    ap.add_argument("--parts", nargs="+", default=["training", "torchbraid"],
                    choices=["training", "data", "torchbraid"],
                    help="what to measure: serial vs parallel training and the model; data x layer parallel "
                         "training at the --splits; the TorchBraid comparison")
    ap.add_argument("--splits", nargs="+", default=["1x1", "2x1", "1x2", "2x2"],
                    help="data part: P x Q splits (P ranks share the layers, Q data-parallel groups)")
    ap.add_argument("--no-torch", action="store_true", help="skip the TorchBraid comparison (= --parts training)")
    ap.add_argument("--torchbraid-python", default=os.environ.get("BRAIDNET_TORCHBRAID_PYTHON"),
                    help="interpreter with torch and torchbraid (default: $BRAIDNET_TORCHBRAID_PYTHON, else this "
                         "one); TorchBraid's ranks run under the mpiexec beside it")
    ap.add_argument("--tb-widths", type=int, nargs="+", default=[8, 220], choices=sorted(TB_PROBLEMS))
    ap.add_argument("--tb-ranks", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--tb-settings", nargs="+", default=list(TB_SETTINGS), choices=list(TB_SETTINGS))
    ap.add_argument("--tb-activation", default="relu", choices=["tanh", "relu", "smoothrelu"],
                    help="activation of the comparison network (TorchBraid's examples use ReLU)")
    ap.add_argument("--dtype", default="float64", choices=["float64", "float32"],
                    help="braidnet's precision in the comparison (float32 where this braidnet has it)")
    ap.add_argument("--tb-float64-ranks", type=int, nargs="*", default=[1],
                    help="also run TorchBraid in float64 on these rank counts (default 1: on 2 ranks TorchBraid "
                         "29b42ce hangs in float64, its MPI buffers being float32)")
    ap.add_argument("--tb-guess", default="constant", choices=["constant", "zero"],
                    help="TorchBraid comparison: the cold pass starts every point at u_0 (lambda_N: braidnet's "
                         "adjoint; TorchBraid's adjoint has no initial guess), or at zeros on both sides")
    ap.add_argument("--tb-timeout", type=float, default=300.0, help="seconds per TorchBraid launch")
    ap.add_argument("--tb-rounds", type=int, default=3,
                    help="launches per side and case in the TorchBraid comparison, braidnet and TorchBraid in turn")
    ap.add_argument("--json", help="also write every measurement and prediction here")
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds per launch")
    # worker mode (internal)
    ap.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    ap.add_argument("--problem", default="peaks", help=argparse.SUPPRESS)
    ap.add_argument("--relax", default="F+skip", help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    ap.add_argument("--groups", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--width", type=int, default=8, help=argparse.SUPPRESS)
    ap.add_argument("--batch", type=int, default=5000, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.no_torch:
        a.parts = [p for p in a.parts if p != "torchbraid"]

    if a.worker:
        res = WORKERS[a.worker](a)
        if res is not None:
            print("BENCH " + json.dumps(res), flush=True)
        return 0

    t_start = time.time()
    out: Dict[str, Any] = {"activation": a.activation, "cores": a.cores, "iterations": a.iterations,
                           "problems": {}, "torchbraid": None}
    training = "training" in a.parts
    print(f"bench_parallel: {os.cpu_count()} cores, load average {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
    if training:
        print(f"training: {a.activation}, {a.iterations} timed iterations after {a.warmup}, one BLAS thread per "
              f"rank, {a.cores} cores (ranks > cores are oversubscribed)\n")
    counts = launch(1, "counts", a, "--depths", *map(str, a.depths))["depths"] if training else []
    for name in a.problems if training else []:
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

    if "data" in a.parts:
        out["data"] = data_parallel_rows(a)
    if "torchbraid" in a.parts:
        out["torchbraid"] = torchbraid_comparison(a)
    print(f"\n(total {time.time() - t_start:.0f} s; load average now "
          f"{', '.join(f'{v:.2f}' for v in os.getloadavg())})")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
