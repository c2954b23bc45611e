#!/usr/bin/env python
"""Layer-parallel scaling past the cores of this machine: replay of real event traces.

A 2-core machine cannot time 8-64 ranks: MPICH busy-polls, so oversubscribed ranks wait for a core,
not for a message.  What does not depend on the machine is the order of events on each rank.  So:

1. **trace** (``--worker trace`` under ``mpiexec -n P``): the real layer-parallel training of
   ``bench_parallel.py`` (``braidnet.parallel.ParallelNetwork`` + ``braidnet.oneshot.OneShot`` +
   L-BFGS, One-shot d = 2, 3 levels, cfactor 4, FCF) takes one untraced optimisation iteration, then
   one traced one.  Every rank records, in program order, its MGRIT cores' step calls, sends, waited
   receives and reductions (the bundled core's event trace, ``Core.set_trace``) and, around them, the
   network's own exchanges (halo plans: point-to-point; sums and dot products: reductions) and its
   layer-gradient assembly.  The traced batch is small (the events do not depend on it); message
   sizes are scaled to the real batch.
2. **calibrate** (``--worker calibrate``, one rank, the real width and batch, same run): seconds per
   primal step, adjoint step and layer gradient, from the drives' own wall-clock times.
3. **replay** (here, :func:`replay`): a discrete-event simulation.  Each rank has a clock; a step
   costs its calibrated time; a message sent at t arrives at t + latency + bytes / bandwidth; a
   receive completes at max(own clock, arrival); a reduction ends on every rank at the latest
   arrival plus ceil(log2 P) * (latency + bytes / bandwidth).  The replayed time is the largest
   clock: the critical path of one optimisation iteration as if every rank had its own core.

It prints, for each problem and P, the replayed time, the time the performance model
(``scripts/perf_model.py``) predicts with the same step cost and message cost (the published model
and the corrected one) and their ratios, under two message costs: the one bench_parallel fitted on
this oversubscribed machine (a latency, no bandwidth term) and a "cluster" one (20 us + bytes at
10 GB/s); then data parallelism (Q groups, analytical term of perf_model) and the best (P, Q) split.

    python scripts/replay_scaling.py [--ranks 1 2 4 8 16 32 64] [--problems peaks pines]
                                     [--trace-batch 4] [--json out.json]

What is measured, what simulated, what predicted: the step costs are measured here; the event
traces are recorded from real runs; the replayed times are simulated from those traces; the model
columns are predictions.  Not in the replay: the opening layer, the classifier and the loss (a
fixed cost per solve on one rank each), the cores' own overhead outside step calls beyond what the
calibration includes, and contention (every rank has a core and a link of its own).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict, deque
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, ROOT)

import bench_parallel as bench      # noqa: E402  (the problems, One-shot settings, launcher helpers)
import perf_model                   # noqa: E402

#: message costs of the README's model table ("fitted" on this machine by bench_parallel.py, 1-4
#: oversubscribed ranks, 2026-11-25): seconds per message, all of it latency
FITTED_MSG = {"peaks": 309e-6, "pines": 6.6e-3}
CLUSTER_LATENCY, CLUSTER_BANDWIDTH = 2e-5, 1e10

# kinds of the flattened per-rank program the simulator runs
_STEP, _SEND, _RECV, _COLL = 0, 1, 2, 3


# =============================================================================================
# workers (one process per rank)

def _network(name: str, layers: int, batch: int, activation: str, seed: int = 0):
    """(net, X, y, theta) of a bench_parallel problem with ``layers`` layers and ``batch`` samples
    (bench_parallel's weights recipe; the events of a fixed-iteration solve do not depend on them)."""
    from braidnet import datasets
    from braidnet.resnet import ResNet

    p = bench.PROBLEMS[name]
    if name == "peaks":
        X, y, _, _ = datasets.peaks(batch, 0, seed=seed)
    else:
        rng = np.random.default_rng(seed)
        X = rng.random((batch, p["features"]))
        y = rng.integers(0, p["classes"], batch)
    net = ResNet(p["features"], p["classes"], p["width"], layers, T=bench.T_FINAL, activation=activation,
                 opening="dense", gamma_tik=1e-7, gamma_ddt=1e-7, gamma_class=1e-7)
    theta = net.init_params(seed=seed + 1, scale_opening=1.0, scale_layers=2.0 / math.sqrt(p["width"]),
                            scale_classifier=1.0)
    theta[net.layout.layers_slice()] -= 1.0 / math.sqrt(p["width"])
    return net, X, y, theta


class _Recorder:
    """Wraps a ParallelNetwork's exchanges and drives to log, in order, what happens around the
    cores: ("drive", core name), ("plan", name, [(dst, bytes, scales)], [(src, bytes, scales)]),
    ("sum", bytes), ("gradient", layers).  ``scales``: the block is a state (its size follows the
    batch), not a weight block."""

    def __init__(self, pn) -> None:
        self.pn, self.log = pn, []
        self.on = False
        drive, sum_ = pn._drive, pn._sum

        def logged_drive(core, opts):
            if self.on:
                self.log.append(("drive", "primal" if core is pn._primal else
                                 "adjoint" if core is pn._adjoint else "validation"))
            return drive(core, opts)

        def logged_sum(v):
            if self.on:
                self.log.append(("sum", int(np.asarray(v).size * 8)))
            return sum_(v)

        pn._drive, pn._sum = logged_drive, logged_sum
        for name, plan in pn._plans.items():
            plan.run = self._logged_plan(name, plan, plan.run)

    def _logged_plan(self, name, plan, run):
        def logged(source, target):
            if self.on:
                sends = [(dst, int(source(key).nbytes), key[0] != "W") for dst, key, _ in plan.sends]
                recvs = [(src, int(target(key).nbytes), key[0] != "W") for src, key, _ in plan.recvs]
                self.log.append(("plan", name, sends, recvs))
                if name == "post_adjoint":      # backward() assembles the layer gradients next
                    self.log.append(("gradient", self.pn.layer_range[1] - self.pn.layer_range[0]))
            return run(source, target)
        return logged


def worker_trace(a) -> Optional[Dict[str, Any]]:
    """One untraced One-shot L-BFGS iteration, then one traced; rank 0 returns every rank's record."""
    from mpi4py import MPI
    from braidnet.oneshot import OneShot
    from braidnet.parallel import ParallelNetwork

    comm = MPI.COMM_WORLD
    net, X, y, theta = _network(a.problem, a.layers, a.batch, a.activation)
    with ParallelNetwork(net, X, y, comm=comm, braid=dict(bench.BRAID)) as pn:
        rec = _Recorder(pn)
        oneshot = OneShot(pn, bench.D)
        opt = bench._optimizer(pn.dot)
        x = pn.scatter(theta)
        f, g = oneshot.objective(x), oneshot.gradient(x)
        x, f, g, info = opt.step(oneshot.objective, oneshot.gradient, x, f, g)     # warm: no skip
        pn.set_trace(True)
        rec.on = True
        x, f, g, info = opt.step(oneshot.objective, oneshot.gradient, x, f, g)
        rec.on = False
        pn.set_trace(False)
        tr = pn.traces()
        mine = {"primal": tr["primal"].tolist(), "adjoint": tr["adjoint"].tolist(), "log": rec.log,
                "points": list(pn.point_range)}
        strides = list(pn.levels)
        alls = comm.gather(mine, root=0)
    if comm.Get_rank():
        return None
    return {"kind": "trace", "problem": a.problem, "layers": a.layers, "batch": a.batch, "ranks": comm.Get_size(),
            "ls_trials": int(info.ls_trials), "strides": strides, "rank_records": alls, "params": net.layout.size,
            "width": bench.PROBLEMS[a.problem]["width"]}


def worker_calibrate(a) -> Dict[str, Any]:
    """Seconds per primal step, adjoint step and layer gradient at the real width and batch, on one
    rank: the drives' own wall-clock times over their step counts, and the rest of ``backward()``
    over the layers (the best of ``a.repeat`` rounds, after one untimed round)."""
    from mpi4py import MPI
    from braidnet.parallel import ParallelNetwork

    net, X, y, theta = _network(a.problem, a.layers, a.batch, a.activation)
    with ParallelNetwork(net, X, y, comm=MPI.COMM_SELF, braid=dict(bench.BRAID)) as pn:
        drive = pn._drive
        times: Dict[str, List[float]] = defaultdict(list)

        def timed(core, opts):
            res = drive(core, opts)
            times["adjoint" if core is pn._adjoint else "primal"].append(res.time)
            return res

        pn._drive = timed
        pn.set_params(theta)
        best = {"primal": math.inf, "adjoint": math.inf, "gradient": math.inf}
        for r in range(a.repeat + 1):
            times.clear()
            c0 = pn.step_counts()
            pn.forward(max_iter=bench.D, abs_tol=0.0)
            c1 = pn.step_counts()
            t1 = time.perf_counter()
            pn.backward(max_iter=bench.D, abs_tol=0.0)
            tb = time.perf_counter() - t1
            c2 = pn.step_counts()
            if r == 0:
                continue        # the first drives skip the fine level's down-cycle
            best["primal"] = min(best["primal"], times["primal"][0] / (c1["primal"] - c0["primal"]))
            best["adjoint"] = min(best["adjoint"], times["adjoint"][0] / (c2["adjoint"] - c1["adjoint"]))
            best["gradient"] = min(best["gradient"], (tb - times["adjoint"][0]) / (c2["gradient"] - c1["gradient"]))
    return {"kind": "calibrate", "problem": a.problem, "batch": a.batch, "layers": a.layers, **best}


WORKERS = {"trace": worker_trace, "calibrate": worker_calibrate}


# =============================================================================================
# the replay

def rank_programs(record: Dict[str, Any], costs: Dict[str, float], scale: float
                  ) -> Tuple[List[list], int]:
    """Flatten a trace record (every rank's core traces and network log) into one program per rank.

    Each program is a list of (kind, a, b, c): (_STEP, seconds), (_SEND, channel, bytes),
    (_RECV, channel, bytes), (_COLL, bytes).  A channel is (source, destination, space, level):
    messages on one channel are matched in order.  ``scale`` multiplies the payload of every state
    message (the traced batch is small; the real one is ``scale`` times larger).
    Returns (programs, number of collectives per rank).
    """
    from braidnet.braid import TRACE_KINDS

    K = TRACE_KINDS
    progs, ncoll = [], None
    hdr = 8     # the core's message header (xbraid/_braid.h, _braid_HEADER_BYTES)
    for r, rr in enumerate(record["rank_records"]):
        prog: list = []
        cores = {c: [tuple(e) for e in rr[c]] for c in ("primal", "adjoint")}
        pos = {"primal": 0, "adjoint": 0}
        drive_no = {"primal": -1, "adjoint": -1}
        for item in rr["log"]:
            kind = item[0]
            if kind == "drive":
                c = item[1]
                drive_no[c] += 1
                ev = cores[c]
                step_cost = costs[c]
                while pos[c] < len(ev) and ev[pos[c]][6] == drive_no[c]:
                    k, level, _index, peer, nbytes, _it, _dr = ev[pos[c]]
                    pos[c] += 1
                    payload = max(nbytes - hdr, 0) * scale
                    if k == K["step"]:
                        prog.append((_STEP, step_cost))
                    elif k == K["send"]:
                        prog.append((_SEND, (r, peer, c, level), hdr + payload))
                    elif k == K["recv"]:
                        prog.append((_RECV, (peer, r, c, level), hdr + payload))
                    elif k == K["reduce"]:
                        prog.append((_COLL, nbytes))
            elif kind == "plan":
                _, name, sends, recvs = item
                # the plan posts every receive and send at once, then waits for all
                for dst, nbytes, scales in sends:
                    prog.append((_SEND, (r, dst, "plan:" + name, 0), nbytes * (scale if scales else 1)))
                for src, nbytes, scales in recvs:
                    prog.append((_RECV, (src, r, "plan:" + name, 0), nbytes * (scale if scales else 1)))
            elif kind == "sum":
                prog.append((_COLL, item[1]))
            elif kind == "gradient":
                if item[1] > 0:
                    prog.append((_STEP, item[1] * costs["gradient"]))
        for c in cores:
            if pos[c] != len(cores[c]):
                raise RuntimeError(f"rank {r}: {len(cores[c]) - pos[c]} {c} events of no logged drive")
        n = sum(1 for p in prog if p[0] == _COLL)
        if ncoll is not None and n != ncoll:
            raise RuntimeError(f"rank {r} joins {n} reductions, rank 0 {ncoll}: not one collective sequence")
        ncoll = n
        progs.append(prog)
    return progs, ncoll or 0


def replay(programs: Sequence[Sequence[tuple]], latency: float, bandwidth: float = math.inf
           ) -> Dict[str, Any]:
    """Discrete-event replay of per-rank programs (see :func:`rank_programs`); returns
    ``{"time": the largest final clock, "clocks": per rank, "messages": count, "collectives": count,
    "wait": per rank, seconds spent waiting}``.

    A send costs its rank nothing and arrives latency + bytes / bandwidth later; a receive ends at
    max(clock, arrival); the n-th collective ends on every rank at max over ranks of their arrival
    clocks + ceil(log2 P) * (latency + bytes / bandwidth).  Raises RuntimeError on a receive with no
    matching send (a deadlock or a trace that does not match).
    """
    if latency < 0 or bandwidth <= 0:
        raise ValueError(f"latency must be >= 0 and bandwidth > 0, got {latency!r}, {bandwidth!r}")
    P = len(programs)
    hops = math.ceil(math.log2(P)) if P > 1 else 0
    clock = [0.0] * P
    wait = [0.0] * P
    pc = [0] * P
    chans: Dict[tuple, deque] = defaultdict(deque)
    coll_arrivals: List[Optional[float]] = [None] * P     # clock at which each rank reached its collective
    nmsg = ncoll = 0

    def cost(nbytes: float) -> float:
        return latency + (nbytes / bandwidth if bandwidth != math.inf else 0.0)

    while True:
        progress = False
        for r in range(P):
            prog = programs[r]
            while pc[r] < len(prog):
                ev = prog[pc[r]]
                k = ev[0]
                if k == _STEP:
                    clock[r] += ev[1]
                elif k == _SEND:
                    chans[ev[1]].append(clock[r] + cost(ev[2]))
                    nmsg += 1
                elif k == _RECV:
                    q = chans[ev[1]]
                    if not q:
                        break                       # blocked: the sender has not got there yet
                    arrival = q.popleft()
                    if arrival > clock[r]:
                        wait[r] += arrival - clock[r]
                        clock[r] = arrival
                else:   # _COLL: wait here until every rank has arrived
                    if coll_arrivals[r] is None:
                        coll_arrivals[r] = clock[r]
                    if any(c is None for c in coll_arrivals):
                        break
                    end = max(coll_arrivals) + hops * cost(ev[1])
                    for q in range(P):
                        wait[q] += end - coll_arrivals[q]
                        clock[q] = end
                        pc[q] += 1 if q != r else 0
                    coll_arrivals = [None] * P
                    ncoll += 1
                pc[r] += 1
                progress = True
        if all(pc[r] >= len(programs[r]) for r in range(P)):
            break
        if not progress:
            stuck = {r: programs[r][pc[r]] for r in range(P) if pc[r] < len(programs[r])}
            raise RuntimeError(f"replay deadlock: ranks blocked at {dict(list(stuck.items())[:4])}")
    return {"time": max(clock) if clock else 0.0, "clocks": clock, "messages": nmsg, "collectives": ncoll,
            "wait": wait}


def trace_counts(record: Dict[str, Any]) -> Dict[str, Any]:
    """The model's inputs from a trace record: weighted layer steps of the iteration (primal 1,
    adjoint 2, gradient 2, summed over the ranks), line-search trials, levels, coarse intervals, and the
    model's count of reductions for this iteration."""
    from braidnet.braid import TRACE_KINDS

    steps = {"primal": 0, "adjoint": 0, "gradient": 0}
    for rr in record["rank_records"]:
        for c in ("primal", "adjoint"):
            steps[c] += sum(1 for e in rr[c] if e[0] == TRACE_KINDS["step"])
        steps["gradient"] += sum(item[1] for item in rr["log"] if item[0] == "gradient")
    N = record["layers"]
    t = record["ls_trials"]
    out = {"steps": steps,
            "weighted_steps": steps["primal"] * bench.W_FWD + 2 * steps["adjoint"] + 2 * steps["gradient"],
            "ls_trials": t, "levels": len(record["strides"]), "coarse_intervals": N // record["strides"][-1],
            "mgrit_iterations": bench.D * (t + 1), "layers": N}
    # the traced L-BFGS step is the second: one stored pair (the model's count for it)
    out["reductions"] = perf_model.reductions(out, memory=1)
    return out


# =============================================================================================
# driver

def launch(nprocs: int, worker: str, a: argparse.Namespace, *extra: str) -> Dict[str, Any]:
    """``mpiexec -n nprocs`` this script as a worker (one BLAS thread per rank); its JSON result."""
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    out = tempfile.NamedTemporaryFile(prefix="replay_", suffix=".json", delete=False)
    out.close()
    cmd = [bench._mpiexec(), "-n", str(nprocs), sys.executable, os.path.abspath(__file__), "--worker", worker,
           "--activation", a.activation, "--repeat", str(a.repeat), "--out", out.name, *extra]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=a.timeout, env=env, cwd=ROOT)
        if proc.returncode:
            raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        with open(out.name) as f:
            return json.load(f)
    finally:
        os.unlink(out.name)


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ranks", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64])
    ap.add_argument("--problems", nargs="+", default=["peaks", "pines"], choices=sorted(bench.PROBLEMS))
    ap.add_argument("--layers", type=int, nargs="*", default=[],
                    help="override the layer counts (default: bench_parallel's, 64 and 128)")
    ap.add_argument("--trace-batch", type=int, default=4,
                    help="batch of the traced runs (message sizes are scaled to the real batch)")
    ap.add_argument("--groups", type=int, nargs="+", default=[1, 2, 4], help="data-parallel groups Q")
    ap.add_argument("--total-ranks", type=int, nargs="+", default=[64, 256, 1024],
                    help="rank totals for the predicted best (P, Q) split")
    ap.add_argument("--activation", default="smoothrelu", choices=["tanh", "relu", "smoothrelu"])
    ap.add_argument("--repeat", type=int, default=2, help="calibration rounds (the best counts)")
    ap.add_argument("--timeout", type=float, default=1200.0, help="seconds per launch")
    ap.add_argument("--json", help="also write every trace summary, replay and prediction here")
    # worker mode (internal)
    ap.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    ap.add_argument("--problem", default="peaks", help=argparse.SUPPRESS)
    ap.add_argument("--layers-one", type=int, default=64, help=argparse.SUPPRESS)
    ap.add_argument("--batch", type=int, default=4, help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    for name, vals, lo in (("--ranks", a.ranks, 1), ("--groups", a.groups, 1), ("--total-ranks", a.total_ranks, 1)):
        bad = [v for v in vals if v < lo]
        if bad:
            ap.error(f"{name} {bad[0]}: must be >= {lo}")
    if a.trace_batch < 1:
        ap.error(f"--trace-batch {a.trace_batch}: must be >= 1")

    if a.worker:
        a.layers = a.layers_one
        res = WORKERS[a.worker](a)
        if res is not None:
            with open(a.out, "w") as f:
                json.dump(res, f)
        return 0

    t_start = time.time()
    out: Dict[str, Any] = {"problems": {}}
    print(f"replay_scaling: {os.cpu_count()} cores, load average {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
    for i, name in enumerate(a.problems):
        p = bench.PROBLEMS[name]
        layers = a.layers[i] if i < len(a.layers) else p["layers"]
        cal = launch(1, "calibrate", a, "--problem", name, "--layers-one", str(layers), "--batch", str(p["batch"]))
        costs = {k: cal[k] for k in ("primal", "adjoint", "gradient")}
        # a second calibration at a small batch: the part of a step that does not shrink with the
        # batch (data parallelism's shards), from the line through the two
        small = max(p["batch"] // 64, 1)
        cal_s = launch(1, "calibrate", a, "--problem", name, "--layers-one", str(layers), "--batch", str(small))
        fixed = {k: max(0.0, (cal_s[k] * p["batch"] - costs[k] * small) / (p["batch"] - small)) for k in costs}
        scale = p["batch"] / a.trace_batch
        state_bytes = 8.0 * p["width"] * p["batch"]
        settings = [("fitted", FITTED_MSG[name], math.inf), ("cluster", CLUSTER_LATENCY, CLUSTER_BANDWIDTH)]
        print(f"\n== {name}: {layers} layers, width {p['width']}, batch {p['batch']} (traced with batch "
              f"{a.trace_batch}); One-shot d = {bench.D}, {bench.BRAID['max_levels']} levels, cfactor "
              f"{bench.BRAID['cfactor']}, FCF; one traced L-BFGS iteration")
        print(f"   calibrated here (1 rank, real batch): primal step {costs['primal'] * 1e6:.1f} us, adjoint step "
              f"{costs['adjoint'] * 1e6:.1f} us, layer gradient {costs['gradient'] * 1e6:.1f} us; at batch {small}: "
              f"{cal_s['primal'] * 1e6:.1f}, {cal_s['adjoint'] * 1e6:.1f}, {cal_s['gradient'] * 1e6:.1f} us (the part "
              f"that does not shrink with the batch: {', '.join(f'{v * 1e6:.1f}' for v in fixed.values())} us)")
        rows = []
        for P in a.ranks:
            t0 = time.time()
            rec = launch(P, "trace", a, "--problem", name, "--layers-one", str(layers),
                         "--batch", str(a.trace_batch))
            progs, _ = rank_programs(rec, costs, scale)
            cnt = trace_counts(rec)
            row = {"ranks": P, "counts": cnt, "trace_seconds": time.time() - t0, "settings": {}, "record": rec,
                   "params": rec["params"]}
            for label, lat, bw in settings:
                rep = replay(progs, lat, bw)
                row["settings"][label] = {"latency": lat, "bandwidth": bw, "replay": rep["time"],
                                          "messages": rep["messages"], "collectives": rep["collectives"]}
            unit = {"primal": 1.0, "adjoint": 2.0, "gradient": 2.0}
            row["critical_steps"] = replay(rank_programs(rec, unit, 1.0)[0], 0.0)["time"]
            row["critical_hops"] = replay(rank_programs(rec, {k: 0.0 for k in unit}, 1.0)[0], 1.0)["time"]
            rows.append(row)
            print(f"   critical path: {row['critical_steps']:.0f} weighted steps (corrected model "
                  f"{perf_model.critical_steps(cnt, P):.0f}, published {perf_model.published_terms(cnt, P, P)[0]:.0f}), "
                  f"{row['critical_hops']:.0f} latencies (corrected {perf_model.critical_hops(cnt, P):.0f}, published "
                  f"{perf_model.published_terms(cnt, P, P)[1]:.0f} messages)")
            print(f"   traced P={P}: {cnt['steps']} steps, {rows[-1]['settings']['fitted']['messages']} messages, "
                  f"{rows[-1]['settings']['fitted']['collectives']} reductions, line-search trials "
                  f"{cnt['ls_trials']} ({row['trace_seconds']:.0f} s)", flush=True)
        # the published model with the step cost that makes it exact on one rank (the replay's P=1 time
        # over the weighted steps); the corrected one with the calibrated costs of each kind of step
        base = rows[0]
        t_step = base["settings"]["fitted"]["replay"] / base["counts"]["weighted_steps"]
        param_bytes = 8.0 * rows[0]["params"]
        for label, lat, bw in settings:
            t_msg = lat + (state_bytes / bw if bw != math.inf else 0.0)
            print(f"\n   message cost {label}: " + (f"{lat * 1e6:.0f} us per message (fitted by bench_parallel on "
                                                     f"this machine)" if bw == math.inf else
                                                     f"{lat * 1e6:.0f} us + bytes at {bw / 1e9:.0f} GB/s "
                                                     f"(one state: {t_msg * 1e6:.0f} us)"))
            print(f"   {'P':>5} {'replayed':>10} {'published':>10} {'pub/rep':>8} {'corrected':>10} {'corr/rep':>8}"
                  f"   {'Q=2: rep':>9} {'model':>9} {'Q=4: rep':>9} {'model':>9}")
            for row in rows:
                P, c = row["ranks"], row["counts"]
                s = row["settings"][label]
                old = perf_model.iteration_time(c, P, P, t_step, t_msg)
                new = perf_model.corrected_time(c, P, lat, bw, state_bytes, costs)
                s.update(published=old, corrected=new, groups={})
                cells = ""
                for Q in a.groups:
                    shard = perf_model.shard_costs(costs, Q, fixed)
                    rq = replay(rank_programs(row["record"], shard, scale / Q)[0], lat, bw)["time"] + \
                        perf_model.allreduce_time(Q, param_bytes / P, lat, bw)
                    mq = perf_model.data_parallel_time(c, P, Q, lat, bw, state_bytes, costs, param_bytes, fixed)
                    s["groups"][Q] = {"replay": rq, "model": mq}
                    if Q > 1:
                        cells += f" {rq * 1e3:8.2f}m {mq * 1e3:8.2f}m"
                print(f"   {P:>5} {s['replay'] * 1e3:8.2f}ms {old * 1e3:8.2f}ms {old / s['replay']:8.2f} "
                      f"{new * 1e3:8.2f}ms {new / s['replay']:8.2f}  {cells}")
            splits = []
            for total in a.total_ranks:
                for depth in sorted({layers, 1024, 4096}):
                    par = perf_model.deep_par(depth, base["counts"]["ls_trials"]) if depth != layers else \
                        dict(rows[0]["counts"], reductions=None)
                    par.pop("reductions", None)
                    pb = param_bytes * depth / layers
                    best = perf_model.best_split(par, total, lat, bw, state_bytes, costs, pb, fixed, p["batch"])
                    splits.append({"total": total, "layers": depth, **{k: best[k] for k in ("ranks", "groups", "seconds")}})
            print("   predicted best split P x Q of a rank total (corrected model, L-BFGS in steady state; ms per "
                  "iteration):")
            for depth in sorted({sp["layers"] for sp in splits}):
                print(f"   {depth:>6} layers: " + ", ".join(
                    f"{sp['total']} ranks: {sp['ranks']} x {sp['groups']} ({sp['seconds'] * 1e3:.2f})"
                    for sp in splits if sp["layers"] == depth))
            out.setdefault("splits", {}).setdefault(name, {})[label] = splits
        for row in rows:
            row.pop("record")
        out["problems"][name] = {"layers": layers, "problem": p, "calibration": cal, "calibration_small": cal_s,
                                 "fixed": fixed, "t_step": t_step, "rows": rows}
    print(f"\n(total {time.time() - t_start:.0f} s)")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
