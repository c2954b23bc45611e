"""One-shot layer-parallel training (DESIGN.md sections 3-4).

An optimisation iteration runs d primal MGRIT iterations (warm-started from the previous iteration's
states), d adjoint iterations, assembles the gradient from the inexact states and takes an L-BFGS (or
steepest-descent) step with Armijo backtracking, each trial one more primal solve.  The residual norms
of the primal and adjoint solves behind each gradient go into the history, so that one can see how
inexact every step was.

Nested iteration (``nested.schedule``, DESIGN.md section 4): the levels run coarsest first; between
levels the weights and the MGRIT states are refined in time (:mod:`braidnet.nested`; gathered whole,
interpolated on every rank, scattered over the new network's distribution), the cores are rebuilt for
the new depth and start from the refined states, and the optimiser starts afresh.  Work units
(:mod:`braidnet.work`) go into the history next to the time.  With ``nested.starts > 1`` the coarsest
level first tries several initialisations and goes on with the best (:mod:`braidnet.starts`).

Every rank runs the same loop on its own slice of the parameter vector; reductions make every decision
identical on all ranks.  Rank 0 writes ``history.csv`` (one row per iteration), ``config.json``,
``weights.npz`` and ``checkpoint.npz`` (the whole network and the optimiser memory as full vectors, so
a run saved on 4 ranks resumes on 2), and prints one progress line per iteration.
"""
from __future__ import annotations

import csv
import json
import logging
import math
import os
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from braidnet import config as _config
from braidnet import datasets, optim, starts, work
from braidnet.resnet import ResNet

log = logging.getLogger(__name__)

HISTORY_FIELDS = ["iteration", "level", "layers", "work_units", "work_units_counted", "layer_steps",
                  "primal_rnorm", "adjoint_rnorm", "primal_iters", "adjoint_iters", "objective", "loss",
                  "grad_norm", "step", "ls_trials", "train_accuracy", "val_accuracy", "time"]


class TrainingDiverged(RuntimeError):
    """The objective or the MGRIT residual became NaN or infinite; the last good state was saved."""


@dataclass
class TrainResult:
    """What :func:`train` returns on every rank."""
    theta: np.ndarray                 # the trained parameters, whole vector
    history: List[Dict[str, Any]]     # one row per iteration (HISTORY_FIELDS)
    message: str                      # why training stopped
    final_val_accuracy: float = float("nan")
    out_dir: Optional[str] = None
    layers: int = 0


# ---------------------------------------------------------------------------------------------
# building blocks

def load_data(cfg: _config.Config) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(X_train, y_train, X_val, y_val) as configured; the same on every rank (seeded)."""
    d = cfg["data"]
    if d["dataset"] == "peaks":
        return datasets.peaks(d["n_train"], d["n_val"], seed=d["seed"])
    if d["dataset"] == "indian_pines":
        return datasets.indian_pines(n_train=d["n_train"], n_val=d["n_val"] or None, seed=d["seed"])
    if not d["path"]:
        raise _config.ConfigError("data.dataset='lpt_text' needs data.path, the folder of the *.dat files")
    return datasets.load_lpt_text(d["path"])


def build_network(cfg: _config.Config, n_features: int, n_classes: int, layers: int) -> ResNet:
    """The ResNet of the configuration with the given number of residual layers."""
    n = cfg["network"]
    return ResNet(n_features, n_classes, n["width"], layers, T=n["T"], activation=n["activation"],
                  opening="dense" if n["opening"] == "dense" else "pad", bias=n["bias"],
                  gamma_tik=n["gamma_tik"], gamma_ddt=n["gamma_ddt"], gamma_class=n["gamma_class"])


def braid_options(cfg: _config.Config) -> Dict[str, Any]:
    """Options of the primal, adjoint and validation cores."""
    b = cfg["braid"]
    nrelax: Any = b["nrelax"]
    if b["nrelax_fine"] >= 0:
        nrelax = [b["nrelax_fine"]] + [b["nrelax"]] * (b["max_levels"] - 1)
    return {"max_levels": b["max_levels"], "cfactor": b["cfactor"], "nrelax": nrelax,
            "min_coarse": b["min_coarse"], "fmg": b["fmg"]}


def level_plan(cfg: _config.Config) -> List[Tuple[int, int]]:
    """(layers, optimisation iterations) per level, coarsest first; one level when not nested."""
    schedule = cfg["nested"]["schedule"]
    layers = cfg["network"]["layers"]
    if not schedule:
        return [(layers, cfg["optimizer"]["iterations"])]
    r = cfg["nested"]["refine"]
    n = len(schedule)
    return [(layers // r ** (n - 1 - k), m) for k, m in enumerate(schedule)]


def make_optimizer(cfg: _config.Config, dot) -> optim.LineSearchOptimizer:
    o = cfg["optimizer"]
    common = dict(dot=dot, ls_factor=o["ls_factor"], c1=o["armijo_c"], ls_max_trials=o["ls_trials"])
    if o["method"] == "lbfgs":
        return optim.LBFGS(memory=o["memory"], **common)
    if o["method"] == "bfgs":
        return optim.BFGS(**common)
    return optim.SteepestDescent(**common)


# ---------------------------------------------------------------------------------------------
# output (rank 0)

class RunWriter:
    """history.csv, config.json, weights.npz and checkpoint.npz in one folder; only rank 0 writes."""

    def __init__(self, out_dir: Optional[str], rank: int) -> None:
        self.dir = out_dir
        self.active = out_dir is not None and rank == 0
        if self.active:
            os.makedirs(out_dir, exist_ok=True)

    def start_history(self, rows: List[Dict[str, Any]]) -> None:
        """(Re)write history.csv with these rows: a resumed run drops rows written after its checkpoint."""
        if self.active:
            with open(self.path("history.csv"), "w", newline="") as f:
                w = csv.DictWriter(f, HISTORY_FIELDS)
                w.writeheader()
                w.writerows({k: r.get(k, "") for k in HISTORY_FIELDS} for r in rows)

    def path(self, name: str) -> str:
        assert self.dir is not None
        return os.path.join(self.dir, name)

    def config(self, cfg: _config.Config, nprocs: int) -> None:
        if self.active:
            with open(self.path("config.json"), "w") as f:
                f.write(_config.to_json({**cfg, "run": {"ranks": nprocs}}) + "\n")

    def row(self, row: Dict[str, Any]) -> None:
        if self.active:
            with open(self.path("history.csv"), "a", newline="") as f:
                csv.DictWriter(f, HISTORY_FIELDS).writerow({k: row.get(k, "") for k in HISTORY_FIELDS})

    def save(self, name: str, **arrays: Any) -> None:
        """Write name.npz atomically (a crash while writing leaves the previous file intact)."""
        if self.active:
            tmp = self.path(name + ".tmp.npz")
            np.savez(tmp, **arrays)
            os.replace(tmp, self.path(name + ".npz"))


def _progress(row: Dict[str, Any]) -> str:
    return (f"it {row['iteration']:4d} | L{row['level']} {row['layers']:4d} layers | "
            f"obj {row['objective']:.6e} | loss {row['loss']:.4e} | |g| {row['grad_norm']:.3e} | "
            f"step {row['step']:.3g} ({row['ls_trials']}) | acc {row['train_accuracy']:5.1f}% / "
            f"{row['val_accuracy']:5.1f}% | r {row['primal_rnorm']:.1e} / {row['adjoint_rnorm']:.1e} | "
            f"{row['time']:.2f} s")


# ---------------------------------------------------------------------------------------------
# One-shot

class OneShot:
    """One-shot optimisation of a layer-parallel network: objective and gradient from d MGRIT iterations.

    ``d`` may be changed between iterations (the paper uses more after each refinement).  With
    ``drop > 0`` each solve instead iterates until its residual fell by that factor (or below
    ``abs_tol``, or ``max_iter`` iterations).
    """

    def __init__(self, pn, d: int, drop: float = 0.0, abs_tol: float = 0.0, max_iter: int = 50) -> None:
        self.pn = pn
        self.d = d
        self.drop = drop
        self.abs_tol = abs_tol
        self.max_iter = max_iter
        self.last_forward: Dict[str, Any] = {}
        self.last_backward: Dict[str, Any] = {}

    def _solve(self, run):
        """Run a solve with the current policy; returns its info dict (last call's, iterations summed)."""
        tol = self.abs_tol if self.abs_tol > 0 else None
        if self.drop <= 0:
            return run(self.d, tol)
        first, total, info = None, 0, {}
        while total < self.max_iter:
            info = run(1, tol)
            total += int(info.get("iterations", 1))
            r = info.get("rnorm", -1.0)
            if r is not None and r >= 0:
                if first is None:
                    first = r
                elif r <= first / self.drop or (tol is not None and r < tol):
                    break
        return {**info, "iterations": total}

    def objective(self, x: np.ndarray) -> float:
        """The objective at x (NaN when the primal solve diverged: the line search then backs off)."""
        from braidnet.braid import ERROR_DIVERGED, BraidError

        self.pn.set_params(x)
        try:
            self.last_forward = self._solve(lambda k, tol: self.pn.forward(max_iter=k, abs_tol=tol))
        except BraidError as e:
            if e.code != ERROR_DIVERGED:
                raise
            log.warning("primal solve diverged; restarting the MGRIT states")
            self.pn.restart()
            self.last_forward = {"objective": float("nan"), "rnorm": float("nan")}
        return float(self.last_forward["objective"])

    def gradient(self, x: np.ndarray) -> np.ndarray:
        # the primal states of x are current: the line search's accepted trial was the last solve
        if _is_bad(self.last_forward.get("objective", 0.0)):
            # the primal solve at x diverged (restarted states, no forward to differentiate)
            self.last_backward = {"rnorm": float("nan")}
            return np.full_like(x, np.nan)       # the training loop stops on it
        holder: Dict[str, Any] = {}

        def run(k, tol):
            g, info = self.pn.backward(max_iter=k, abs_tol=tol)
            holder["g"] = g
            return info

        from braidnet.braid import ERROR_DIVERGED, BraidError

        try:
            self.last_backward = self._solve(run)
        except BraidError as e:
            if e.code != ERROR_DIVERGED:
                raise
            self.last_backward = {"rnorm": float("nan")}
            return np.full_like(x, np.nan)       # the training loop stops on it
        return holder["g"]


def _gather_state(pn, state: Dict[str, Any]) -> Dict[str, Any]:
    """Optimiser memory with every distributed vector made whole (so any rank count can resume)."""
    out = {}
    for k, v in state.items():
        if k in ("s", "y") and isinstance(v, np.ndarray):
            # an empty memory (fresh, or reset by a failed line search) stays a (0, 0) array
            out[k] = np.array([pn.gather(row, root=None) for row in v]).reshape(len(v), -1) if len(v) \
                else np.zeros((0, 0))
        else:
            out[k] = v
    return out


def _scatter_state(pn, state: Dict[str, Any]) -> Dict[str, Any]:
    out = dict(state)
    for k in ("s", "y"):
        if k in state and np.asarray(state[k]).size:
            out[k] = np.array([pn.scatter(row) for row in np.asarray(state[k])])
    return out


def _is_bad(value: float) -> bool:
    return value is None or not math.isfinite(value)


def calibrate(cfg: _config.Config, comm, data, n_classes: int, iterations: int) -> Tuple[float, float]:
    """(seconds, weighted layer steps) of one finest-level non-nested One-shot iteration, on average.

    Runs ``iterations`` iterations of the non-nested run (finest network, its initial weights, base d,
    validation as configured) and measures them, set-up and first evaluation excluded.  Collective;
    the time is the slowest rank's, so every rank returns the same numbers.
    """
    from mpi4py import MPI
    from braidnet.parallel import ParallelNetwork

    X, y, Xv, yv = data
    n = cfg["network"]
    net = build_network(cfg, X.shape[1], n_classes, cfg["network"]["layers"])
    theta = net.init_params(seed=n["seed"], scale_opening=n["init_opening"] if n["opening"] == "dense" else 0.0,
                            scale_layers=n["init_layers"], scale_classifier=n["init_classifier"])
    d = cfg["braid"]
    with ParallelNetwork(net, X, y, comm=comm, X_val=Xv if len(Xv) else None, Y_val=yv if len(yv) else None,
                         braid=braid_options(cfg)) as pn:
        oneshot = OneShot(pn, d["iterations"], d["drop"], d["abs_tol"], d["max_iter"])
        opt = make_optimizer(cfg, pn.dot)
        x = pn.scatter(theta)
        f, g = oneshot.objective(x), oneshot.gradient(x)
        pn.validate(max_iter=oneshot.d)
        comm.Barrier()
        steps0, t0 = work.cost(pn.step_counts()), time.perf_counter()
        for k in range(1, iterations + 1):
            x, f, g, info = opt.step(oneshot.objective, oneshot.gradient, x, f, g)
            if not info.success:
                f, g = oneshot.objective(x), oneshot.gradient(x)
            if k % cfg["output"]["validate_every"] == 0:
                pn.validate(max_iter=oneshot.d)
        seconds = comm.allreduce(time.perf_counter() - t0, op=MPI.MAX)
        steps = work.cost(pn.step_counts()) - steps0
    return seconds / iterations, steps / iterations


def train(cfg: _config.Config, comm=None, resume: bool = False, out_dir: Optional[str] = None,
          theta0: Optional[np.ndarray] = None) -> TrainResult:
    """Train as configured (``cfg`` from :func:`braidnet.config.load_config`); every rank calls this.

    Args:
        cfg: the configuration (checked again here against the number of ranks).
        comm: the MPI communicator (default ``MPI.COMM_WORLD``); its ranks share the layers.
        resume: continue from ``out_dir/checkpoint.npz`` exactly where it was written.
        out_dir: output folder (default ``cfg['output']['dir']``; ``None`` in cfg means no files).
        theta0: initial parameters of the first level's network instead of the configured initialisation
            (and instead of ``nested.starts``' choice).

    Returns the history and the trained parameters (whole vector, on every rank).
    """
    from mpi4py import MPI
    from braidnet.parallel import ParallelNetwork
    from braidnet import nested

    comm = MPI.COMM_WORLD if comm is None else comm
    rank = comm.Get_rank()
    _config.check(cfg, comm.Get_size())
    out_dir = cfg["output"]["dir"] if out_dir is None else out_dir
    writer = RunWriter(out_dir, rank)
    writer.config(cfg, comm.Get_size())
    ocfg, bcfg = cfg["optimizer"], cfg["braid"]

    X, y, Xv, yv = load_data(cfg)
    n_features, n_classes = X.shape[1], int(max(y.max(), yv.max() if len(yv) else 0)) + 1
    plan = level_plan(cfg)
    history: List[Dict[str, Any]] = []
    state: Dict[str, Any] = {}
    start_level, start_it = 0, 0
    start_seconds = 0.0             # wall time of the coarse starts (nested.starts) before the history
    ncfg = cfg["nested"]
    unit_seconds = ncfg["work_unit_seconds"] or None
    unit_steps = ncfg["work_unit_steps"] or None

    if resume:
        ckpt = os.path.join(out_dir, "checkpoint.npz")
        if not os.path.exists(ckpt):
            raise FileNotFoundError(f"--resume: no checkpoint at {ckpt}")
        with np.load(ckpt, allow_pickle=False) as z:
            state = {k: z[k] for k in z.files}
        start_level, start_it = int(state["level"]), int(state["iteration"])
        history = json.loads(str(state["history"]))
        theta_full = np.array(state["theta"])
        # work so far and the units of the interrupted run (absent in older checkpoints)
        counter = work.WorkCounter(int(state["layer_steps"]) if "layer_steps" in state else 0)
        if "unit_seconds" in state:
            unit_seconds = float(state["unit_seconds"]) or None
            unit_steps = float(state["unit_steps"]) or None
    else:
        layers0 = plan[0][0]
        net0 = build_network(cfg, n_features, n_classes, layers0)
        n = cfg["network"]
        theta_full = theta0 if theta0 is not None else net0.init_params(
            seed=n["seed"], scale_opening=n["init_opening"] if n["opening"] == "dense" else 0.0,
            scale_layers=n["init_layers"], scale_classifier=n["init_classifier"])
        counter = work.WorkCounter()
        if len(plan) > 1 and ncfg["calibrate"] > 0 and not (unit_seconds and unit_steps):
            secs, steps = calibrate(cfg, comm, (X, y, Xv, yv), n_classes, ncfg["calibrate"])
            unit_seconds, unit_steps = unit_seconds or secs, unit_steps or steps
        if ncfg["starts"] > 1 and theta0 is None:
            # the chosen start goes on from its start_iterations-th iteration; all starts' work counts
            choice = starts.choose_start(cfg, comm)
            theta_full, start_it = choice.theta, ncfg["start_iterations"]
            counter = work.WorkCounter(choice.layer_steps)
            start_seconds = choice.seconds
            if writer.active:
                starts.write_table(writer.path("starts.csv"), choice.table)
        if rank == 0 and cfg["output"]["progress"] and len(plan) > 1:
            print(work.unit_summary(unit_seconds, unit_steps), flush=True)
    nested_run = len(plan) > 1

    writer.start_history(history)
    t_start = time.perf_counter() - (history[-1]["time"] if history else start_seconds)
    message = "max iterations reached"
    it_global = history[-1]["iteration"] + 1 if history else start_it
    saved_at = it_global if resume else None        # global iteration of the last checkpoint written
    net = None
    pn = None
    for level in range(start_level, len(plan)):
        layers, iters = plan[level]
        warm = None
        if net is not None and net.n_layers != layers:
            kind = ncfg["interpolation"]
            theta_full = nested.interpolate_params(net, build_network(cfg, n_features, n_classes, layers),
                                                   theta_full, kind)
            if ncfg["states"] == "interpolate":
                warm = nested.refine_warm_states(pn.warm_states(root=None, endpoints=True),
                                                 layers // net.n_layers, kind)
        net = build_network(cfg, n_features, n_classes, layers)
        if pn is not None:
            counter.close(pn)
            pn.close()
        pn = ParallelNetwork(net, X, y, comm=comm, X_val=Xv if len(Xv) else None,
                             Y_val=yv if len(yv) else None, braid=braid_options(cfg))
        if warm is not None:
            pn.load_warm_states(warm)
            del warm
        oneshot = OneShot(pn, bcfg["iterations"], bcfg["drop"], bcfg["abs_tol"], bcfg["max_iter"])
        opt = make_optimizer(cfg, pn.dot)
        x = pn.scatter(theta_full)
        first_it = start_it if level == start_level else 0
        if resume and level == start_level and "opt_kind" in state:
            opt.load_state_dict(_scatter_state(pn, {k[4:]: state[k] for k in state if k.startswith("opt_")}))
        boost = cfg["nested"]["boost_iterations"] if level > 0 else 0

        def use_d(k: int) -> None:
            oneshot.d = cfg["nested"]["boost_d"] if k < boost else bcfg["iterations"]

        if resume and level == start_level:
            # continue exactly: the objective, gradient and MGRIT states of the checkpoint
            pn.set_params(x)
            f, g = float(state["f"]), pn.scatter(np.array(state["g"]))
            oneshot.last_forward = json.loads(str(state["last_forward"]))
            oneshot.last_backward = json.loads(str(state["last_backward"]))
            pn.load_warm_states({k[5:]: state[k] for k in state if k.startswith("warm_")})
        else:
            use_d(0)
            f = oneshot.objective(x)
            g = oneshot.gradient(x)
        step, trials = (float(state["step"]), int(state["ls_trials"])) if resume and level == start_level \
            else (0.0, 0)
        for k in range(first_it, iters + 1):
            gnorm = math.sqrt(pn.dot(g, g))
            val = pn.validate(max_iter=oneshot.d) if (k % cfg["output"]["validate_every"] == 0 or k == iters) \
                and not (_is_bad(f) or _is_bad(gnorm)) else float("nan")   # no solve on diverged weights
            fw, bw = oneshot.last_forward, oneshot.last_backward
            elapsed, steps = time.perf_counter() - t_start, counter.current(pn)
            # a non-nested run without given units gets its own averages at the end (braidnet.work)
            row = {"iteration": it_global, "level": len(plan) - 1 - level, "layers": layers,
                   "work_units": work.units(elapsed, unit_seconds) if nested_run or unit_seconds else it_global,
                   "work_units_counted": work.units(steps, unit_steps) if nested_run or unit_steps else it_global,
                   "layer_steps": steps, "primal_rnorm": fw.get("rnorm", -1.0),
                   "adjoint_rnorm": bw.get("rnorm", -1.0), "primal_iters": fw.get("iterations", 0),
                   "adjoint_iters": bw.get("iterations", 0), "objective": f, "loss": fw.get("loss"),
                   "grad_norm": gnorm, "step": step, "ls_trials": trials,
                   "train_accuracy": fw.get("accuracy"), "val_accuracy": val,
                   "time": elapsed}
            if _is_bad(f) or _is_bad(gnorm):
                where = (f"the last good checkpoint is {writer.path('checkpoint.npz')} (iteration {saved_at})"
                         if saved_at is not None and writer.dir else "no checkpoint was written before it")
                raise TrainingDiverged(
                    f"training diverged at iteration {it_global} (objective {f}, |g| {gnorm}, primal "
                    f"residual {fw.get('rnorm')}, adjoint residual {bw.get('rnorm')}); {where}")
            history.append(row)
            writer.row(row)
            if rank == 0 and cfg["output"]["progress"]:
                print(_progress(row), flush=True)
            it_global += 1
            if k == iters:
                break
            if gnorm < ocfg["gtol"]:
                message = f"gradient norm {gnorm:.3e} < gtol"
                break
            if (row["train_accuracy"] or 0.0) > cfg["nested"]["accuracy_threshold"] and level < len(plan) - 1:
                message = "accuracy threshold reached"
                break
            use_d(k + 1)
            x, f, g, info = opt.step(oneshot.objective, oneshot.gradient, x, f, g)
            if not info.success:
                # the rejected trials moved the warm-start states: bring them back to x
                f = oneshot.objective(x)
                g = oneshot.gradient(x)
            step, trials = info.step, info.ls_trials
            every = cfg["output"]["checkpoint_every"]
            if every and (k + 1) % every == 0 and not (_is_bad(f) or _is_bad(math.sqrt(pn.dot(g, g)))):
                _checkpoint(writer, pn, opt, oneshot, x, f, g, step, trials, level, k + 1, history,
                            counter.current(pn), unit_seconds, unit_steps)
                saved_at = it_global
        theta_full = pn.gather(x, root=None)
        start_it = 0

    if not nested_run and not (unit_seconds and unit_steps):
        fixed = [dict(r) for r in history]
        work.self_normalise(fixed)
        for r, f_row in zip(history, fixed):
            if not unit_seconds:
                r["work_units"] = f_row["work_units"]
            if not unit_steps:
                r["work_units_counted"] = f_row["work_units_counted"]
        writer.start_history(history)
    final_val = pn.validate() if pn is not None else float("nan")
    if writer.active:
        writer.save("weights", theta=theta_full, layers=np.array(net.n_layers),
                    val_accuracy=np.array(final_val))
    if rank == 0 and cfg["output"]["progress"]:
        print(f"done: {message}; final validation accuracy {final_val:.2f}% "
              f"(exact forward solve), {len(history)} iterations", flush=True)
    pn.close()
    return TrainResult(theta_full, history, message, final_val, out_dir, net.n_layers)


def _checkpoint(writer: RunWriter, pn, opt, oneshot: OneShot, x: np.ndarray, f: float, g: np.ndarray,
                step: float, trials: int, level: int, iteration: int, history: List[Dict[str, Any]],
                layer_steps: int = 0, unit_seconds: Optional[float] = None,
                unit_steps: Optional[float] = None) -> None:
    """Everything needed to continue exactly: whole parameters and gradient, optimiser memory, the MGRIT
    states the next solves warm-start from, and the history.  Collective (distributed vectors are
    gathered); rank 0 writes.
    """
    theta = pn.gather(x, root=None)
    gfull = pn.gather(g, root=None)
    state = _gather_state(pn, opt.state_dict())
    warm = pn.warm_states()
    writer.save("checkpoint", theta=theta, f=np.array(f), g=gfull, step=np.array(step),
                ls_trials=np.array(trials), level=np.array(level), iteration=np.array(iteration),
                history=np.array(json.dumps(history)), layer_steps=np.array(layer_steps),
                unit_seconds=np.array(unit_seconds or 0.0), unit_steps=np.array(unit_steps or 0.0),
                last_forward=np.array(json.dumps(oneshot.last_forward)),
                last_backward=np.array(json.dumps(oneshot.last_backward)),
                **{"warm_" + k: v for k, v in warm.items()},
                **{"opt_" + k: (np.asarray(v) if not isinstance(v, str) else np.array(v)) for k, v in state.items()})
