"""The performance model of layer-parallel (One-shot MGRIT) training, in one place.

Used by ``scripts/bench_parallel.py`` (fitted to its 1-4 rank timings on this machine, then
extrapolated to 16-1024 ranks) and by ``scripts/replay_scaling.py`` (checked there against discrete-
event replays of the core's real event traces at 1-64 ranks).  Times are per optimisation iteration
(one L-BFGS step: ``ls_trials`` primal solves and one adjoint solve of d MGRIT iterations each).

Two versions:

* **published** (:func:`published_terms`, bench_parallel's model until the replay check):
  T(P) = t_step * (S_spread / min(P, cores) + S_coarse) + t_msg * (mgrit_iterations * (5 (levels-1)
  + min(P, coarse+1) - 1)).  The replay showed it 1.5-4x optimistic at 16-64 ranks: it spreads every
  step evenly over the ranks, but a sweep over a level cannot take fewer steps than one coarsening
  interval (its F-points are stepped one after the other, on as many ranks as hold them), and it
  leaves out the reductions (two per MGRIT iteration in the core, the residual norm and the error
  agreement, and the network's sums and dot products), each ceil(log2 P) latencies deep.
* **corrected** (:func:`model_terms`, :func:`critical_steps`, :func:`critical_hops`, now what
  bench_parallel fits and predicts with): the critical path sweep by sweep (see
  :func:`critical_steps`), the messages along it and the reductions' depth (:func:`critical_hops`).

**Data parallelism** (:func:`data_parallel_time`, :func:`best_split`): Q groups of P ranks, each group
the same layer-parallel solve on 1/Q of the batch, then the gradient allreduced across the groups:
T(P, Q) = T_P(steps at batch/Q, messages of batch/Q states) + ceil(log2 Q) * (latency + gradient
bytes of one rank / bandwidth).  Step cost is taken proportional to the batch (optimistic for small
shards, where a GEMM is less efficient).
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

#: One-shot's MGRIT iterations per solve (d primal and d adjoint per optimisation iteration)
D = 2
#: the coarsening factor of bench_parallel's hierarchy (uniform)
CFACTOR = 4
#: L-BFGS pairs in steady state (bench_parallel's optimiser)
LBFGS_MEMORY = 10
#: weighted cost of a layer step (braidnet.work.COST): primal 1, adjoint 2, layer gradient 2; a
#: serial iteration costs N per forward and 4N per backward (adjoint + gradient)
W_PRIMAL, W_ADJOINT, W_GRADIENT = 1, 2, 2
W_FWD, W_BWD = W_PRIMAL, W_ADJOINT + W_GRADIENT
# ---------------------------------------------------------------------------------------------
# the published model (kept for the comparison in replay_scaling.py)

def messages(ranks: int, levels: int, coarse: int, mgrit_iterations: float) -> float:
    """Published model: messages on the critical path of one optimisation iteration: per MGRIT
    iteration, a boundary exchange for each of F-, C-, F-relaxation, restriction and interpolation on
    every level but the coarsest (5 per level), plus the coarsest level's sequential solve passed
    through the ranks that own its points.  None on one rank."""
    if ranks <= 1:
        return 0.0
    return mgrit_iterations * (5 * (levels - 1) + min(ranks, coarse + 1) - 1)


def published_terms(par: Dict[str, Any], ranks: int, cores: int) -> Tuple[float, float]:
    """Published model: (weighted layer steps on the critical path, messages on it) of one
    optimisation iteration.  The coarsest level's solve is sequential: coarse_intervals steps per
    MGRIT iteration (d per primal solve, one primal solve per line-search trial, weight 1; d adjoint,
    weight 2).  Every other step is spread evenly over min(ranks, cores) ranks."""
    seq = par["coarse_intervals"] * D * (par["ls_trials"] * 1 + 2)
    spread = max(par["weighted_steps"] - seq, 0.0)
    it = par["mgrit_iterations"]
    return spread / min(ranks, cores) + seq, messages(ranks, par["levels"], par["coarse_intervals"], it)


def iteration_time(par: Dict[str, Any], ranks: int, cores: int, t_step: float, t_msg: float) -> float:
    """Published model's seconds per optimisation iteration: t_step * steps + t_msg * messages."""
    comp, msg = published_terms(par, ranks, cores)
    return t_step * comp + t_msg * msg


# ---------------------------------------------------------------------------------------------
# the corrected model

def _check_ranks(ranks: int) -> int:
    if not isinstance(ranks, (int, np.integer)) or ranks < 1:
        raise ValueError(f"ranks must be an integer >= 1, got {ranks!r}")
    return int(ranks)


def hierarchy(par: Dict[str, Any], cfactor: int = CFACTOR) -> Tuple[int, List[int]]:
    """(layers N, intervals n_l of every level) of a run described by ``par`` (``layers``, or
    ``coarse_intervals`` and ``levels`` with a uniform ``cfactor``)."""
    L = int(par["levels"])
    N = int(par.get("layers") or par["coarse_intervals"] * cfactor ** (L - 1))
    return N, [N // cfactor ** l for l in range(L)]


def deep_par(layers: int, ls_trials: float, cfactor: int = CFACTOR, min_coarse: int = 2) -> Dict[str, Any]:
    """``par`` of a network of ``layers`` layers coarsened as bench_parallel's deep networks are (while
    floor(n / cfactor) >= min_coarse), for the corrected model's predictions."""
    if layers < 1:
        raise ValueError(f"layers must be >= 1, got {layers!r}")
    n, L = layers, 1
    while n // cfactor >= min_coarse:
        n //= cfactor
        L += 1
    return {"layers": layers, "levels": L, "coarse_intervals": n, "ls_trials": ls_trials,
            "mgrit_iterations": D * (ls_trials + 1), "weighted_steps": 0.0}


def _per_rank(N: int, ranks: int, stride: int) -> float:
    """Level intervals on the busiest rank: its ceil((N+1)/P) fine points hold that / stride of them
    (at most the level's N / stride)."""
    return min(math.ceil((N + 1) / ranks), N) / stride


def _sweep_steps(p: float, c: int, frac: float) -> float:
    """Steps on the critical path of one sweep over a level: the busiest rank's share (p points, of
    which the fraction frac are stepped), but never less than one interval's chain (frac * c steps,
    one after the other, wherever its points live)."""
    return frac * max(p, c)


def _sweep_hops(p: float, c: int) -> float:
    """Messages on the critical path of one sweep.  A rank sweeps its intervals from last to first, so
    it sends its last value to the right first and needs its left neighbour's value last: with two
    intervals or more per rank the message is hidden behind the rank's own steps (0); with one, one
    neighbour exchange; with less, the interval's chain crosses ceil(c / p) ranks (at most c)."""
    if p >= 2 * c:
        return 0.0
    if p >= c:
        return 1.0
    return float(min(c, math.ceil(c / max(p, 1e-12))))


def solve_terms(N: int, n: List[int], ranks: int, iterations: float, cfactor: int = CFACTOR
                ) -> Tuple[float, float]:
    """(layer steps, messages) on the critical path of one MGRIT solve of ``iterations`` V-cycles (FCF,
    no skip: a warm-started One-shot solve) and its final F-relaxation, on ``ranks`` ranks.

    Per iteration, as the core runs it (xbraid/cycle.c): on every level l but the coarsest, an FC sweep
    (relaxation) and an F-sweep with the residual at each C-point (restriction); on every coarse level
    the FAS right-hand side (one step per point: n_l / P on the busiest rank, one message from the
    finer level); on levels 1..L-2 the F-sweep of interpolation, and on the coarsest the sequential
    solve (n_L steps through min(P, n_L + 1) ranks).  Then the drive's final F-relaxation of level 0.
    """
    ranks = _check_ranks(ranks)
    L = len(n)
    steps = hops = 0.0
    for l in range(L):
        p = _per_rank(N, ranks, N // n[l]) if n[l] else 0.0
        if l > 0:       # FAS right-hand side, from the restricted values (one message)
            steps += max(p, 1.0)
            hops += 1.0 if ranks > 1 else 0.0
        if l < L - 1:   # FC relaxation and the restriction's F-sweep with residuals
            steps += 2 * _sweep_steps(p, cfactor, 1.0)
            hops += 2 * _sweep_hops(p, cfactor) if ranks > 1 else 0.0
            if l > 0:   # interpolation's F-sweep on this coarse level
                steps += _sweep_steps(p, cfactor, (cfactor - 1) / cfactor)
                hops += _sweep_hops(p, cfactor) if ranks > 1 else 0.0
        else:           # the coarsest level: sequential solve
            steps += n[l]
            hops += min(ranks, n[l] + 1) - 1
    p0 = _per_rank(N, ranks, 1)
    final_steps = _sweep_steps(p0, cfactor, (cfactor - 1) / cfactor)
    final_hops = _sweep_hops(p0, cfactor) if ranks > 1 else 0.0
    return iterations * steps + final_steps, iterations * hops + final_hops


def reductions(par: Dict[str, Any], memory: int = LBFGS_MEMORY) -> float:
    """Reductions (allreduce / allgather over all ranks) of one optimisation iteration: ``par
    ["reductions"]`` where counted (a trace), else per solve 3 + 2 d in the core (error agreement at
    set-up, after each iteration and twice at the end; residual norm each iteration), one sum per
    primal solve (loss, regulariser, accuracy), and 2 memory + 6 of the L-BFGS step (its dot
    products; memory = the stored pairs, 10 in steady state)."""
    if "reductions" in par:
        return float(par["reductions"])
    t = float(par["ls_trials"])
    return (t + 1) * (3 + 2 * D) + t + 2 * memory + 6


def critical_steps(par: Dict[str, Any], ranks: int, costs: Optional[Dict[str, float]] = None) -> float:
    """Weighted layer steps on the critical path of one optimisation iteration (corrected model):
    ls_trials primal solves (weight costs['primal'], default 1) and one adjoint solve (weight
    costs['adjoint'], default 2) of :func:`solve_terms`, then the layer gradients of the busiest rank
    (ceil((N+1)/P) layers, weight costs['gradient'], default 2)."""
    w = {"primal": W_PRIMAL, "adjoint": W_ADJOINT, "gradient": W_GRADIENT, **(costs or {})}
    N, n = hierarchy(par)
    s, _ = solve_terms(N, n, ranks, D)
    t = float(par["ls_trials"])
    return t * w["primal"] * s + w["adjoint"] * s + w["gradient"] * min(math.ceil((N + 1) / ranks), N)


def critical_hops(par: Dict[str, Any], ranks: int) -> float:
    """Message latencies on the critical path of one optimisation iteration (corrected model): the
    solves' messages (:func:`solve_terms`), one exchange per halo plan (weights and u_0 per trial,
    before and after the adjoint solve), and ceil(log2 P) per reduction (:func:`reductions`)."""
    ranks = _check_ranks(ranks)
    if ranks == 1:
        return 0.0
    N, n = hierarchy(par)
    _, h = solve_terms(N, n, ranks, D)
    t = float(par["ls_trials"])
    return (t + 1) * h + (2 * t + 2) + reductions(par) * math.ceil(math.log2(ranks))


def model_terms(par: Dict[str, Any], ranks: int, cores: int) -> Tuple[float, float]:
    """(weighted layer steps, message latencies) on the critical path of one optimisation iteration,
    corrected model; with fewer cores than ranks the steps are at least the whole work over the cores.
    Uses par's weighted_steps, ls_trials, levels, coarse_intervals (and layers, reductions if given)."""
    ranks = _check_ranks(ranks)
    comp = critical_steps(par, ranks)
    if cores < ranks:
        comp = max(comp, par["weighted_steps"] / max(cores, 1))
    return comp, critical_hops(par, ranks)


def corrected_time(par: Dict[str, Any], ranks: int, latency: float, bandwidth: float, state_bytes: float,
                   costs: Dict[str, float]) -> float:
    """Corrected model's seconds per optimisation iteration with step costs in seconds (``costs``:
    primal, adjoint, gradient) and a message of one state costing latency + state_bytes / bandwidth
    (reductions: latency per level of their tree)."""
    if latency < 0 or bandwidth <= 0:
        raise ValueError(f"latency must be >= 0 and bandwidth > 0, got {latency!r}, {bandwidth!r}")
    ranks = _check_ranks(ranks)
    N, n = hierarchy(par)
    _, h = solve_terms(N, n, ranks, D)
    t = float(par["ls_trials"])
    msg = latency + state_bytes / bandwidth
    hops_msg = ((t + 1) * h + (2 * t + 2)) if ranks > 1 else 0.0
    hops_red = reductions(par) * math.ceil(math.log2(ranks)) if ranks > 1 else 0.0
    return critical_steps(par, ranks, costs) + msg * hops_msg + latency * hops_red


def fit_model(rows: List[Dict[str, Any]], cores: int) -> Dict[str, float]:
    """Least squares (non-negative, relative) for the cost per weighted layer step t_step and the cost
    per message latency t_msg of T(P) = t_step * steps(P) + t_msg * messages(P) (:func:`model_terms`)."""
    from scipy.optimize import nnls

    A = np.array([model_terms(r, r["ranks"], cores) for r in rows])
    b = np.array([r["seconds"] for r in rows])
    # relative least squares: each measurement counts the same
    coef, _ = nnls(A / b[:, None], np.ones_like(b))
    return {"t_step": float(coef[0]), "t_msg": float(coef[1])}


def predict(model: Dict[str, float], serial_step: float, counts: Dict[str, Any], trials_par: float,
            fwd_serial: float, ranks: int) -> float:
    """Predicted speedup T_serial / T_parallel of a network with counts['layers'] layers on ``ranks``
    ranks (as many cores as ranks), corrected model."""
    N = counts["layers"]
    t_ser = serial_step * N * (W_FWD * fwd_serial + W_BWD)
    par = {"weighted_steps": trials_par * counts["forward"] + counts["backward"],
           "mgrit_iterations": D * (trials_par + 1), "levels": counts["levels"], "ls_trials": trials_par,
           "coarse_intervals": counts["coarse_intervals"], "layers": N}
    comp, msg = model_terms(par, ranks, ranks)
    return t_ser / (model["t_step"] * comp + model["t_msg"] * msg)


# ---------------------------------------------------------------------------------------------
# data parallelism

def allreduce_time(groups: int, nbytes: float, latency: float, bandwidth: float) -> float:
    """The gradient allreduce across Q data-parallel groups: ceil(log2 Q) * (latency + bytes /
    bandwidth) (a reduction tree; 0 for Q = 1)."""
    if groups < 1:
        raise ValueError(f"groups must be >= 1, got {groups!r}")
    return math.ceil(math.log2(groups)) * (latency + nbytes / bandwidth) if groups > 1 else 0.0


def shard_costs(costs: Dict[str, float], groups: int, fixed: Optional[Dict[str, float]] = None
                ) -> Dict[str, float]:
    """Step costs on 1/Q of the batch: fixed + (cost - fixed) / Q per kind of step (``fixed``: the
    part of a step that does not shrink with the batch, e.g. from a calibration at a small batch;
    default 0, cost proportional to the batch)."""
    if groups < 1:
        raise ValueError(f"groups must be >= 1, got {groups!r}")
    fixed = fixed or {}
    return {k: min(fixed.get(k, 0.0), v) + (v - min(fixed.get(k, 0.0), v)) / groups for k, v in costs.items()}


def data_parallel_time(par: Dict[str, Any], ranks: int, groups: int, latency: float, bandwidth: float,
                       state_bytes: float, costs: Dict[str, float], param_bytes: float,
                       fixed: Optional[Dict[str, float]] = None) -> float:
    """Seconds per optimisation iteration with Q = ``groups`` data-parallel groups of P = ``ranks``
    layer-parallel ranks: the corrected model at batch / Q (:func:`shard_costs`, state messages / Q),
    plus the allreduce of one rank's gradient slice (param_bytes / P) across the Q groups
    (:func:`allreduce_time`)."""
    t = corrected_time(par, ranks, latency, bandwidth, state_bytes / groups, shard_costs(costs, groups, fixed))
    return t + allreduce_time(groups, param_bytes / ranks, latency, bandwidth)


def best_split(par: Dict[str, Any], total: int, latency: float, bandwidth: float, state_bytes: float,
               costs: Dict[str, float], param_bytes: float, fixed: Optional[Dict[str, float]] = None,
               max_groups: Optional[int] = None) -> Dict[str, Any]:
    """The fastest P x Q = total (powers of two, P <= layers + 1, Q <= max_groups: e.g. the batch, so
    that every group has a sample) by :func:`data_parallel_time`:
    ``{"ranks": P, "groups": Q, "seconds": T, "all": {(P, Q): T}}``."""
    if total < 1 or total & (total - 1):
        raise ValueError(f"total must be a power of two >= 1, got {total!r}")
    N, _ = hierarchy(par)
    allt = {}
    P = 1
    while P <= total:
        if P <= N + 1 and (max_groups is None or total // P <= max_groups):
            allt[(P, total // P)] = data_parallel_time(par, P, total // P, latency, bandwidth, state_bytes,
                                                       costs, param_bytes, fixed)
        P *= 2
    if not allt:
        raise ValueError(f"no split of {total} ranks with P <= {N + 1} and Q <= {max_groups}")
    (P, Q), T = min(allt.items(), key=lambda kv: kv[1])
    return {"ranks": P, "groups": Q, "seconds": T, "all": allt}
