"""Benchmark of the MGRIT core's own cost per step call (not a test).

For the scalar Dahlquist problem (u' = -u, backward Euler) solved to a relative tolerance of 1e-9:

    core cost per step = (solve time - time of its step calls) / number of step calls

measured with the fast Cython app (``braidnet.refapps.ScalarApp``) and with the plain-Python numpy app
(``braidnet.refproblems.ScalarODE``), on 1 and 2 ranks, and that cost as a fraction of one ResNet step
of width 220 on a batch of 1000 (the Indian Pines network).  Also the set-up and memory of 2^20
steps on one rank, to show that they grow linearly.  The plain-Python app is also timed on the
hierarchies of issue 14 item 5 (max_levels 2 and 14, cfactor 2 and 4, on 1 and 2 ranks; target
<= 1 us per step call), where the wrapper's default clone/sum/norm/pack/unpack run in C; there it is
also timed with a step that does nothing (the same iterations): solve time / step calls, all overhead.

PyMGRIT is measured in the same run, beside braidnet's Python app: the same Dahlquist problem and
hierarchies (2 and 14 levels, cfactor 2 and 4, 1 and 2 ranks), FCF, no skip and no nested iteration,
tolerance 0 and exactly 5 iterations on both sides, the same cost formula (each side subtracting the
time of its own step call).  PyMGRIT runs in its own interpreter (``--pymgrit-python``; it needs
numpy < 2.4); without it one line says so.  Targets: < 1 us (issue), <= 0.2 us (project brief) for
Cython apps, < 2% of the width-220 step.

    python scripts/bench_core.py            # launches the 2-rank run itself with mpiexec
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
import types

import numpy as np

# run from a checkout without installing: the repository root holds the built package
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _solve(app, ntime: int, comm, max_levels: int = 30, cfactor: int = 2, tol=("rel_tol", 1e-9), **opts):
    from braidnet.braid import Core
    core = Core(app, 0.0, ntime / 2.0, ntime, comm=comm, print_level=0, max_levels=max_levels,
                cfactor=cfactor, **{tol[0]: tol[1]}, **opts)
    t0 = time.perf_counter()
    res = core.drive()
    elapsed = time.perf_counter() - t0
    steps = core.step_calls
    core.close()
    return elapsed, steps, res.iterations, res.levels


def _python_step_seconds(app, calls: int = 20000) -> float:
    u = app.init(0.0)
    status = types.SimpleNamespace(tstart=0.0, tstop=1e-9, level=0, index=0, iter=0, done=0)
    best = np.inf
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(calls):
            app.step(u, u, None, status)
        best = min(best, time.perf_counter() - t0)
    return best / calls


def _noop_app():
    """ScalarODE whose step and access do nothing: its solve time per step call is all overhead
    (core, callbacks, the call into Python), with no subtraction of a separately timed step."""
    from braidnet.refproblems import ScalarODE

    class NoopStep(ScalarODE):
        def step(self, u, ustop, fstop, status):
            pass

        def access(self, u, status):
            pass
    return NoopStep()


def worker(ntime_fast: int, ntime_py: int, ntime_compare: int) -> dict:
    """Run on every rank of COMM_WORLD; returns rank 0's view (steps summed over ranks)."""
    from mpi4py import MPI
    from braidnet.refapps import ScalarApp
    from braidnet.refproblems import ScalarODE

    comm = MPI.COMM_WORLD
    out = {"ranks": comm.Get_size()}
    fast = ScalarApp()
    t_step = fast.time_step(10 ** 6, 0.0, 1e-9)
    _solve(ScalarApp(), 1024, comm)                                  # warm-up
    elapsed, steps, iters, levels = _solve(ScalarApp(), ntime_fast, comm)
    elapsed = comm.allreduce(elapsed, op=MPI.MAX)
    steps_max = comm.allreduce(steps, op=MPI.MAX)                     # the busiest rank sets the time
    out["fast"] = {"ntime": ntime_fast, "iterations": iters, "levels": levels, "seconds": elapsed,
                   "step_calls_max_rank": steps_max, "step_seconds": t_step,
                   "core_us_per_step": (elapsed - steps_max * t_step) / steps_max * 1e6}
    py = ScalarODE()
    t_pystep = _python_step_seconds(py)
    elapsed, steps, iters, levels = _solve(ScalarODE(), ntime_py, comm)
    elapsed = comm.allreduce(elapsed, op=MPI.MAX)
    steps_max = comm.allreduce(steps, op=MPI.MAX)
    out["python"] = {"ntime": ntime_py, "iterations": iters, "levels": levels, "seconds": elapsed,
                     "step_calls_max_rank": steps_max, "step_seconds": t_pystep,
                     "core_us_per_step": (elapsed - steps_max * t_pystep) / steps_max * 1e6}
    # the Python app on the hierarchies of issue 14 (item 5): 2 and 14 levels, cfactor 2 and 4
    out["python_hierarchies"] = []
    for max_levels in (2, 14):
        for cfactor in (2, 4):
            best = None
            for _ in range(2):          # the faster of two solves: a short run is noisy
                r = _solve(ScalarODE(), ntime_py, comm, max_levels=max_levels, cfactor=cfactor)
                elapsed = comm.allreduce(r[0], op=MPI.MAX)
                if best is None or elapsed < best[0]:
                    best = (elapsed,) + r[1:]
            elapsed, steps, iters, levels = best
            steps_max = comm.allreduce(steps, op=MPI.MAX)
            noop = None
            for _ in range(2):
                r = _solve(_noop_app(), ntime_py, comm, max_levels=max_levels, cfactor=cfactor,
                           max_iter=iters)
                e = comm.allreduce(r[0], op=MPI.MAX) / comm.allreduce(r[1], op=MPI.MAX)
                noop = e if noop is None else min(noop, e)
            out["python_hierarchies"].append(
                {"max_levels": max_levels, "cfactor": cfactor, "ntime": ntime_py, "iterations": iters,
                 "levels": levels, "seconds": elapsed, "step_calls_max_rank": steps_max,
                 "step_seconds": t_pystep,
                 "core_us_per_step": (elapsed - steps_max * t_pystep) / steps_max * 1e6,
                 "noop_us_per_step": noop * 1e6})
    out["compare"] = compare_braidnet(ntime_compare, comm)
    return out


# ---------------------------------------------------------------------------------------------
# PyMGRIT beside braidnet: the same Dahlquist problem (u' = -u, backward Euler, dt = 0.5), the same
# hierarchies, FCF, no skip, no nested iteration / FMG, tolerance 0 and exactly COMPARE_ITERATIONS
# iterations on both sides; core cost per step call as above (busiest rank), each side subtracting the
# time of its own step call.

COMPARE_ITERATIONS = 5
HIERARCHIES = [(2, 2), (2, 4), (14, 2), (14, 4)]     # (max_levels, cfactor)
PYMGRIT_RECIPE = 'pip install pymgrit==1.0.6 "numpy<2.4" mpich mpi4py  (PyMGRIT calls np.in1d, gone in numpy 2.4)'


def compare_braidnet(ntime: int, comm) -> list:
    """braidnet's Python app (``ScalarODE``) on the comparison hierarchies, exactly 5 iterations."""
    from mpi4py import MPI
    from braidnet.refproblems import ScalarODE

    t_pystep = _python_step_seconds(ScalarODE())
    rows = []
    for max_levels, cfactor in HIERARCHIES:
        best = None
        for _ in range(3):              # the fastest of three solves: a short run is noisy
            r = _solve(ScalarODE(), ntime, comm, max_levels=max_levels, cfactor=cfactor, skip=0, nrelax=1,
                       max_iter=COMPARE_ITERATIONS, tol=("abs_tol", 0.0))
            elapsed = comm.allreduce(r[0], op=MPI.MAX)
            if best is None or elapsed < best[0]:
                best = (elapsed,) + r[1:]
        elapsed, steps, iters, levels = best
        steps_max = comm.allreduce(steps, op=MPI.MAX)
        rows.append({"max_levels": max_levels, "cfactor": cfactor, "ntime": ntime, "iterations": iters,
                     "levels": levels, "seconds": elapsed, "step_calls_max_rank": steps_max,
                     "step_calls": comm.allreduce(steps, op=MPI.SUM), "step_seconds": t_pystep,
                     "core_us_per_step": (elapsed - steps_max * t_pystep) / steps_max * 1e6})
    return rows


def pymgrit_worker(ntime: int, hierarchies: list) -> dict:
    """PyMGRIT 1.0.6 on the comparison hierarchies (run in PyMGRIT's interpreter, every rank of
    COMM_WORLD): ``hierarchies`` holds (levels, cfactor) as braidnet built them."""
    import logging

    from mpi4py import MPI
    from pymgrit.core.mgrit import Mgrit
    from pymgrit.core.simple_setup_problem import simple_setup_problem
    from pymgrit.dahlquist.dahlquist import Dahlquist

    comm = MPI.COMM_WORLD
    calls = [0]

    class Counted(Dahlquist):
        def step(self, u_start, t_start, t_stop):
            calls[0] += 1
            return super().step(u_start, t_start, t_stop)

    app = Dahlquist(t_start=0.0, t_stop=ntime / 2.0, nt=ntime + 1)
    u = app.vector_t_start
    best_step = np.inf
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(20000):
            app.step(u, 0.0, 0.5)
        best_step = min(best_step, (time.perf_counter() - t0) / 20000)
    rows = []
    for levels, cfactor in hierarchies:
        best = None
        for _ in range(3):
            hierarchy = simple_setup_problem(Counted(t_start=0.0, t_stop=ntime / 2.0, nt=ntime + 1), levels, cfactor)
            t0 = time.perf_counter()
            mgrit = Mgrit(hierarchy, max_iter=COMPARE_ITERATIONS, tol=0.0, nested_iteration=False, cf_iter=1,
                          cycle_type="V", comm_time=comm, logging_lvl=logging.ERROR)
            setup = time.perf_counter() - t0
            calls[0] = 0
            comm.Barrier()
            t0 = time.perf_counter()
            mgrit.solve()
            elapsed = comm.allreduce(time.perf_counter() - t0, op=MPI.MAX)
            if best is None or elapsed < best[0]:
                best = (elapsed, calls[0], mgrit.solve_iter, comm.allreduce(setup, op=MPI.MAX))
        elapsed, steps, iters, setup = best
        steps_max = comm.allreduce(steps, op=MPI.MAX)
        rows.append({"levels": levels, "cfactor": cfactor, "ntime": ntime, "iterations": iters, "seconds": elapsed,
                     "setup_seconds": setup, "step_calls_max_rank": steps_max,
                     "step_calls": comm.allreduce(steps, op=MPI.SUM), "step_seconds": best_step,
                     "core_us_per_step": (elapsed - steps_max * best_step) / steps_max * 1e6})
    from importlib.metadata import version
    return {"ranks": comm.Get_size(), "pymgrit": version("pymgrit"),
            "numpy": np.__version__, "rows": rows}


def _pymgrit_python(arg) -> tuple:
    py = arg or sys.executable
    try:
        proc = subprocess.run([py, "-c", "import pymgrit, mpi4py"], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, f"{py}: {e}"
    if proc.returncode:
        return None, f"{py} cannot import pymgrit and mpi4py ({proc.stderr.strip().splitlines()[-1]})"
    return py, ""


def big_run(ntime: int) -> dict:
    """Set-up and solve of ntime steps on one rank: time and peak memory growth."""
    from mpi4py import MPI
    from braidnet.braid import Core
    from braidnet.refapps import ScalarApp

    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    core = Core(ScalarApp(), 0.0, ntime / 2.0, ntime, comm=MPI.COMM_SELF, print_level=0, max_levels=30,
                rel_tol=1e-9)
    t0 = time.perf_counter()
    res = core.drive()
    elapsed = time.perf_counter() - t0
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = {"ntime": ntime, "seconds": elapsed, "iterations": res.iterations, "levels": res.levels,
           "step_calls": core.step_calls, "peak_rss_growth_mb": (rss1 - rss0) / 1024.0,
           "bytes_per_step": (rss1 - rss0) * 1024.0 / ntime}
    core.close()
    return out


def resnet_step_seconds(width: int = 220, batch: int = 1000) -> float:
    from braidnet import _kernels
    rng = np.random.default_rng(0)
    W = rng.standard_normal((width, width)) * 0.01
    b = rng.standard_normal(width) * 0.01
    u = rng.standard_normal((width, batch))
    out = np.empty_like(u)
    work = np.empty(width * batch)
    act = _kernels.ACTIVATIONS["smoothrelu"]
    best = np.inf
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(20):
            _kernels.layer_forward(W, b, u, 0.01, act, out, work)
        best = min(best, (time.perf_counter() - t0) / 20)
    return best


def _mpiexec(python: str = sys.executable) -> str:
    cand = os.path.join(os.path.dirname(python), "mpiexec")
    return cand if os.path.exists(cand) else (shutil.which("mpiexec") or "mpiexec")


def _run_worker(cmd: list, what: str) -> dict:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH ")]
    if proc.returncode != 0 or len(lines) != 1:
        sys.exit(f"{what} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return json.loads(lines[0][6:])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ntime", type=int, default=2 ** 16, help="steps of the fast-app solve")
    p.add_argument("--ntime-python", type=int, default=2 ** 12, help="steps of the Python-app solve")
    p.add_argument("--big", type=int, default=2 ** 20, help="steps of the one-rank set-up run (0: skip)")
    p.add_argument("--ntime-compare", type=int, default=2 ** 14,
                   help="steps of the braidnet / PyMGRIT comparison (PyMGRIT: ntime + 1 points)")
    p.add_argument("--pymgrit-python", default=os.environ.get("BRAIDNET_PYMGRIT_PYTHON"),
                   help="interpreter with pymgrit 1.0.6 and mpi4py (default: $BRAIDNET_PYMGRIT_PYTHON, else this "
                        "one); its ranks run under the mpiexec beside it.  " + PYMGRIT_RECIPE)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--pymgrit-worker", help=argparse.SUPPRESS)
    p.add_argument("--json", action="store_true", help="print the results as one JSON object")
    args = p.parse_args()

    if args.worker or args.pymgrit_worker:
        from mpi4py import MPI
        if args.worker:
            res = worker(args.ntime, args.ntime_python, args.ntime_compare)
        else:
            res = pymgrit_worker(args.ntime_compare, json.loads(args.pymgrit_worker))
        if MPI.COMM_WORLD.Get_rank() == 0:
            print("BENCH " + json.dumps(res))
        return

    load0 = os.getloadavg()
    runs = []
    for ranks in (1, 2):
        cmd = [_mpiexec(), "-n", str(ranks), sys.executable, os.path.abspath(__file__), "--worker",
               "--ntime", str(args.ntime), "--ntime-python", str(args.ntime_python),
               "--ntime-compare", str(args.ntime_compare)]
        runs.append(_run_worker(cmd, f"worker on {ranks} ranks"))
    py, why = _pymgrit_python(args.pymgrit_python)
    pym = []
    if py:
        hier = [[d["levels"], d["cfactor"]] for d in runs[0]["compare"]]
        for ranks in (1, 2):
            cmd = [_mpiexec(py), "-n", str(ranks), py, os.path.abspath(__file__), "--pymgrit-worker", json.dumps(hier),
                   "--ntime-compare", str(args.ntime_compare)]
            pym.append(_run_worker(cmd, f"PyMGRIT on {ranks} ranks"))
    t_resnet = resnet_step_seconds()
    big = big_run(args.big) if args.big else None
    result = {"runs": runs, "pymgrit": pym, "pymgrit_unavailable": why or None, "resnet220_step_seconds": t_resnet,
              "big": big, "cores": os.cpu_count(), "load_before": load0, "load_after": os.getloadavg()}
    if args.json:
        print(json.dumps(result, indent=2))
        return

    print(f"{os.cpu_count()} cores, load average before {', '.join(f'{v:.2f}' for v in load0)}, after "
          f"{', '.join(f'{v:.2f}' for v in result['load_after'])}\n")
    print("MGRIT core cost per step call, scalar Dahlquist problem, rel. tol 1e-9, cfactor 2, FCF")
    print(f"{'app':8s} {'ranks':>5s} {'ntime':>8s} {'levels':>6s} {'iters':>5s} {'solve s':>9s} "
          f"{'steps':>9s} {'step us':>8s} {'core us/step':>12s}")
    for r in runs:
        for kind in ("fast", "python"):
            d = r[kind]
            print(f"{kind:8s} {r['ranks']:5d} {d['ntime']:8d} {d['levels']:6d} {d['iterations']:5d} "
                  f"{d['seconds']:9.4f} {d['step_calls_max_rank']:9d} {d['step_seconds'] * 1e6:8.3f} "
                  f"{d['core_us_per_step']:12.3f}")
    print("\nPython app (numpy vectors, default clone/sum/norm/pack/unpack in C), by hierarchy "
          "(target <= 1 us, issue 14 item 5)")
    print(f"{'ranks':>5s} {'max_levels':>10s} {'cfactor':>7s} {'levels':>6s} {'iters':>5s} {'solve s':>9s} "
          f"{'steps':>9s} {'step us':>8s} {'core us/step':>12s} {'no-op step: us/step':>20s}")
    for r in runs:
        for d in r["python_hierarchies"]:
            print(f"{r['ranks']:5d} {d['max_levels']:10d} {d['cfactor']:7d} {d['levels']:6d} {d['iterations']:5d} "
                  f"{d['seconds']:9.4f} {d['step_calls_max_rank']:9d} {d['step_seconds'] * 1e6:8.3f} "
                  f"{d['core_us_per_step']:12.3f} {d['noop_us_per_step']:20.3f}")
    print(f"\nbraidnet vs PyMGRIT: Python apps on Dahlquist (u' = -u, backward Euler), {args.ntime_compare} steps, FCF, "
          f"no skip, no FMG / nested iteration, tolerance 0: exactly {COMPARE_ITERATIONS} iterations; core cost per "
          f"step call = (solve time - step calls x one step call's time) / step calls (busiest rank; each side its "
          f"own step: braidnet's in place, PyMGRIT's returns a new vector); fastest of 3 solves")
    if not pym:
        print(f"   PyMGRIT could not be run: {why}.  {PYMGRIT_RECIPE}; pass --pymgrit-python.")
    else:
        print(f"   PyMGRIT {pym[0]['pymgrit']} (numpy {pym[0]['numpy']})")
    print(f"{'ranks':>5s} {'max_levels':>10s} {'cfactor':>7s} {'levels':>6s} {'iters bn/PyMGRIT':>16s} "
          f"{'steps bn/PyMGRIT':>17s} {'step us bn/PyMGRIT':>18s} {'solve s bn/PyMGRIT':>19s} "
          f"{'core us/step: braidnet':>22s} {'PyMGRIT':>8s} {'ratio':>6s}")
    for i, r in enumerate(runs):
        for j, d in enumerate(r["compare"]):
            q = pym[i]["rows"][j] if pym else None
            its = f"{d['iterations']}/{q['iterations'] if q else '-'}"
            steps = f"{d['step_calls']}/{q['step_calls'] if q else '-'}"
            st = f"{d['step_seconds'] * 1e6:.2f}/{q['step_seconds'] * 1e6:.2f}" if q else f"{d['step_seconds'] * 1e6:.2f}/-"
            sv = f"{d['seconds']:.3f}/{q['seconds']:.3f}" if q else f"{d['seconds']:.3f}/-"
            pc = f"{q['core_us_per_step']:8.2f}" if q else f"{'-':>8}"
            ratio = f"{q['core_us_per_step'] / d['core_us_per_step']:6.1f}" if q else f"{'-':>6}"
            print(f"{r['ranks']:5d} {d['max_levels']:10d} {d['cfactor']:7d} {d['levels']:6d} {its:>16s} {steps:>17s} "
                  f"{st:>18s} {sv:>19s} {d['core_us_per_step']:22.3f} {pc} {ratio}")
    if pym:
        print(f"   (ratio: PyMGRIT's core cost over braidnet's; PyMGRIT's set-up, not in the solve time: "
              f"{min(q['setup_seconds'] for p in pym for q in p['rows']):.2f}-"
              f"{max(q['setup_seconds'] for p in pym for q in p['rows']):.2f} s)")
    fast1 = runs[0]["fast"]["core_us_per_step"]
    print(f"\nwidth-220 ResNet step, batch 1000: {t_resnet * 1e3:.2f} ms; core cost per step (fast app, 1 rank) "
          f"= {fast1 / (t_resnet * 1e6) * 100:.5f}% of it (target < 2%)")
    print(f"targets: fast app < 1 us (issue 2) and <= 0.2 us (brief): measured {fast1:.3f} us on 1 rank, "
          f"{runs[1]['fast']['core_us_per_step']:.3f} us on 2 ranks")
    if big:
        print(f"\n{big['ntime']} steps on one rank: {big['levels']} levels, {big['iterations']} iterations, "
              f"{big['seconds']:.2f} s ({big['seconds'] / big['step_calls'] * 1e9:.0f} ns per step call), "
              f"peak memory growth {big['peak_rss_growth_mb']:.0f} MB = {big['bytes_per_step']:.0f} bytes per "
              f"time step (linear storage; PyMGRIT: 4.2 GB at 65537 steps)")


if __name__ == "__main__":
    main()
