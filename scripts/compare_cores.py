#!/usr/bin/env python
"""Run the reference problems through braidnet's bundled core and through LLNL XBraid; compare.

    python scripts/compare_cores.py --bundled /path/to/braidnet --llnl /path/to/braidnet-llnl

Each DIR is the root of a braidnet source tree built in place, one with the bundled core
(``python setup.py build_ext --inplace``), the other against LLNL XBraid
(``XBRAID_DIR=... python setup.py build_ext --inplace``, or ``pip install -e`` into another
environment: ``--llnl-python`` names that environment's Python).  Every case (a reference problem of
:mod:`braidnet.refproblems`, a step count and a set of options) is solved by both builds on 1 and
on 2 ranks; the iteration counts must be equal, and every residual norm and every value the final
access shows (level 0, done = 1, all points) must agree to round-off, ``|a - b| <= 1e-8 |b| + 1e-14``.  The script prints one line per case and rank count (iterations on
each core, largest difference) and exits 1 on any difference, 0 otherwise.

Launches are the slow part, so each (build, rank count) pair is one process (under ``mpiexec`` for
2 ranks) that runs every case and writes JSON: four launches in all.  Each case uses a fresh Core,
which is always driven before it is closed.  LLNL XBraid writes ``braid.out.cycle`` into its working
directory, so the launches run in a temporary folder.

Option sets are plain Core options, plus two keys of this script:
``then_nfmg`` k: after ``Core(..., fmg=True)``, ``core.set_options(nfmg=k)``, i.e. braid_SetFMG then
braid_SetNFMG(k) on either core (the C calls an LLNL user makes for "k F-cycles");
``ntime``: the number of time steps (default 64);
``drives`` n: drive the core n times (warm restarts, default 1): the iteration counts of every drive
and their residual histories, one after another, are compared, and the final access of the last.

Internal: ``--worker CASES.json OUT.json`` is the rank-side mode (PYTHONPATH names the build).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time

RTOL, ATOL = 1e-8, 1e-14
PROBLEMS = ("scalar", "heat", "resnet4")

# (name, options).  Every case also gets print_level 0; the problems' defaults are those of the
# cores (relative tolerance 1e-9, max_iter 100, ...) unless a case says otherwise.
OPTION_SETS = [
    ("default", {}),
    ("V-FCF-2lev", dict(max_levels=2, cfactor=2, nrelax=1)),
    ("V-F-3lev-cf4", dict(max_levels=3, cfactor=4, nrelax=0)),
    ("V-FCFCF-3lev", dict(max_levels=3, cfactor=2, nrelax=2)),
    ("V-cf8-2lev", dict(max_levels=2, cfactor=8)),
    ("F-4lev", dict(max_levels=4, cfactor=2, fmg=True)),
    ("F-F-relax-6lev", dict(max_levels=6, cfactor=2, nrelax=0, fmg=True)),
    ("F-skip0-4lev", dict(max_levels=4, cfactor=2, fmg=True, skip=0)),
    ("F-2lev", dict(max_levels=2, cfactor=4, fmg=True)),
    ("nfmg0-5lev", dict(max_levels=5, cfactor=2, then_nfmg=0)),
    ("nfmg1-5lev", dict(max_levels=5, cfactor=2, then_nfmg=1)),
    ("nfmg2-5lev", dict(max_levels=5, cfactor=2, then_nfmg=2)),
    ("nfmg3-F-relax-6lev", dict(max_levels=6, cfactor=2, nrelax=0, then_nfmg=3)),
    ("nfmg2-skip0-4lev", dict(max_levels=4, cfactor=2, skip=0, then_nfmg=2)),
    ("nfmg-1-4lev", dict(max_levels=4, cfactor=2, then_nfmg=-1)),
    ("nfmg2-without-fmg", dict(max_levels=5, cfactor=2, nfmg=2)),
    ("skip0-3lev", dict(max_levels=3, cfactor=2, skip=0)),
    ("skip0-F-relax-cf4", dict(max_levels=3, cfactor=4, nrelax=0, skip=0)),
    ("storage0", dict(max_levels=3, cfactor=4, storage=0)),
    ("storage1", dict(max_levels=3, cfactor=4, storage=1)),
    ("storage0-skip0-F", dict(max_levels=3, cfactor=2, storage=0, skip=0, fmg=True)),
    ("tnorm1", dict(max_levels=3, cfactor=4, tnorm=1)),
    ("tnorm2", dict(max_levels=3, cfactor=4, tnorm=2)),
    ("tnorm3", dict(max_levels=3, cfactor=4, tnorm=3)),
    ("tnorm3-skip0", dict(max_levels=3, cfactor=4, tnorm=3, skip=0)),
    ("cf-per-level-4,2", dict(max_levels=4, cfactor=[4, 2])),
    ("cf-per-level-2,8", dict(max_levels=3, cfactor=[2, 8], min_coarse=1)),
    ("nrelax-per-level-1,0", dict(max_levels=4, cfactor=2, nrelax=[1, 0])),
    ("nrelax-per-level-0,2,1", dict(max_levels=4, cfactor=2, nrelax=[0, 2, 1])),
    ("cf-nrelax-per-level-F", dict(max_levels=4, cfactor=[4, 2], nrelax=[0, 1], fmg=True)),
    ("ntime50-cf4", dict(ntime=50, max_levels=3, cfactor=4)),
    ("ntime70-cf8-F", dict(ntime=70, max_levels=2, cfactor=8, fmg=True)),
    ("ntime65-cf2", dict(ntime=65, max_levels=5, cfactor=2)),
    ("ntime97-cf3-skip0", dict(ntime=97, max_levels=4, cfactor=3, skip=0)),
    ("min-coarse1-ntime6", dict(ntime=6, max_levels=3, cfactor=2, min_coarse=1)),
    ("min-coarse4", dict(max_levels=10, cfactor=2, min_coarse=4)),
    ("min-coarse16-cf4", dict(max_levels=10, cfactor=4, min_coarse=16)),
    ("min-coarse-too-big", dict(max_levels=3, cfactor=2, min_coarse=40)),
    ("ntime2-min-coarse1", dict(ntime=2, max_levels=2, cfactor=2, min_coarse=1)),
    ("max-iter1", dict(max_levels=3, cfactor=2, max_iter=1)),
    ("max-iter2", dict(max_levels=3, cfactor=2, max_iter=2)),
    ("max-iter3-skip0", dict(max_levels=3, cfactor=2, max_iter=3, skip=0)),
    ("max-iter4-F", dict(max_levels=4, cfactor=2, max_iter=4, fmg=True)),
    ("abs-tol-1e-6", dict(max_levels=3, cfactor=4, abs_tol=1e-6)),
    ("rel-tol-1e-4", dict(max_levels=3, cfactor=4, rel_tol=1e-4)),
    ("1-level", dict(max_levels=1)),
    ("1-level-skip0", dict(max_levels=1, skip=0)),
    ("1-level-max-iter3", dict(max_levels=1, max_iter=3)),
    ("1-level-by-min-coarse", dict(max_levels=5, min_coarse=100)),
    ("seq-soln", dict(max_levels=3, cfactor=2, seq_soln=1)),
    ("seq-soln-abs-tol", dict(max_levels=3, cfactor=2, seq_soln=1, abs_tol=1e-10)),
    ("rel-tol0-max-iter8", dict(max_levels=3, cfactor=2, rel_tol=0.0, max_iter=8)),
    ("abs-tol0-max-iter6-F", dict(max_levels=4, cfactor=2, abs_tol=0.0, max_iter=6, then_nfmg=3)),
    ("nfmg5-max-iter4", dict(max_levels=4, cfactor=2, max_iter=4, then_nfmg=5)),
    ("access-level0", dict(max_levels=3, cfactor=4, access_level=0)),
    ("access-level2", dict(max_levels=3, cfactor=4, access_level=2)),
    ("access-level3", dict(max_levels=3, cfactor=4, access_level=3, max_iter=3)),
    ("ntime1", dict(ntime=1, max_levels=2)),
    ("ntime3-min-coarse1", dict(ntime=3, max_levels=3, cfactor=2, min_coarse=1)),
    ("nrelax3-cf3", dict(max_levels=3, cfactor=3, nrelax=3)),
    ("F-tnorm1-storage0", dict(max_levels=4, cfactor=2, tnorm=1, storage=0, fmg=True)),
    # warm restarts: skip 1 (the first drive only) and "every" (LLNL's own skip: its coarse levels keep
    # the right-hand sides of the previous drive)
    ("skip1-3drives", dict(max_levels=3, cfactor=2, max_iter=3, drives=3)),
    ("skip-every-3drives", dict(max_levels=3, cfactor=2, max_iter=3, skip="every", drives=3)),
    ("skip-every-F-relax-cf4-4drives", dict(max_levels=3, cfactor=4, nrelax=0, max_iter=2, skip="every",
                                            drives=4)),
    ("skip-every-F-4lev-2drives", dict(max_levels=4, cfactor=2, fmg=True, skip="every", drives=2)),
    ("skip-every-ntime50-storage0", dict(ntime=50, max_levels=3, cfactor=4, storage=0, max_iter=2,
                                         skip="every", drives=3)),
    ("skip-every-seq-soln", dict(max_levels=3, cfactor=2, seq_soln=1, max_iter=3, skip="every", drives=2)),
    # the final FC relaxation: what the final access shows, and where the next drive starts from
    ("final-fc", dict(max_levels=3, cfactor=4, nrelax=0, final_fc_relax=True)),
    ("final-fc-max-iter2-3drives", dict(max_levels=3, cfactor=4, nrelax=0, max_iter=2, final_fc_relax=True,
                                        drives=3)),
    ("final-fc-FCF-3drives", dict(max_levels=3, cfactor=4, nrelax=1, max_iter=2, final_fc_relax=True,
                                  drives=3)),
    ("final-fc-skip-every-3drives", dict(max_levels=3, cfactor=4, nrelax=0, max_iter=2, final_fc_relax=True,
                                         skip="every", drives=3)),
    ("final-fc-access-level0", dict(max_levels=3, cfactor=4, max_iter=2, final_fc_relax=True, access_level=0,
                                    drives=2)),
    ("final-fc-ntime50-storage0", dict(ntime=50, max_levels=3, cfactor=4, storage=0, max_iter=3,
                                       final_fc_relax=True, drives=2)),
    ("final-fc-F-cycles", dict(max_levels=4, cfactor=2, fmg=True, max_iter=3, final_fc_relax=True, drives=2)),
    ("final-fc-1-level", dict(max_levels=1, final_fc_relax=True)),
    ("final-fc-1-level-by-min-coarse", dict(max_levels=5, min_coarse=100, final_fc_relax=True)),
]


def all_cases() -> list[dict]:
    return [{"problem": p, "name": name, "ntime": opts.get("ntime", 64),
             "options": {k: v for k, v in opts.items() if k != "ntime"}}
            for p in PROBLEMS for name, opts in OPTION_SETS]


# ---------------------------------------------------------------------------------------------
# rank side
# ---------------------------------------------------------------------------------------------

def solve(case: dict) -> dict:
    """One case with a fresh Core; {'iterations', 'residual_norms', 'levels'} or {'error'}."""
    from mpi4py import MPI

    from braidnet.braid import Core
    from braidnet.refproblems import reference_problem

    opts = dict(case["options"])
    then_nfmg = opts.pop("then_nfmg", None)
    drives = opts.pop("drives", 1)
    if then_nfmg is not None:
        opts["fmg"] = True
    app, tstart, tstop = reference_problem(case["problem"], case["ntime"], fast=True)
    app.keep_states(case["ntime"] + 1)
    try:
        core = Core(app, tstart, tstop, case["ntime"], MPI.COMM_WORLD, print_level=0, **opts)
    except ValueError as exc:          # the same on every rank
        return {"error": f"ValueError: {exc}"}
    if then_nfmg is not None:
        core.set_options(nfmg=then_nfmg)
    iterations, norms = [], []
    for _ in range(drives):            # drive before close (a never-driven LLNL core must not be closed)
        app.reset_record()
        result = core.drive()
        iterations.append(result.iterations)
        norms += list(result.residual_norms)
    states: dict = {}
    for part in MPI.COMM_WORLD.allgather(app.states()):
        states.update(part)
    out = {"iterations": iterations[0] if drives == 1 else iterations, "residual_norms": norms,
           "levels": result.levels, "final": [states[i].tolist() for i in sorted(states)]}
    core.close()
    return out


def worker(cases_path: str, out_path: str) -> int:
    from mpi4py import MPI

    import braidnet.braid as bb
    with open(cases_path) as f:
        cases = json.load(f)
    results = []
    for case in cases:
        results.append(solve(case))
    if MPI.COMM_WORLD.rank == 0:
        with open(out_path, "w") as f:
            json.dump({"bundled": bool(bb.BUNDLED_CORE), "results": results}, f)
    return 0


# ---------------------------------------------------------------------------------------------
# driver side
# ---------------------------------------------------------------------------------------------

def find_mpiexec(python: str) -> str:
    """The mpiexec beside PYTHON (its environment's MPI), else $MPIEXEC, else the one on PATH."""
    found = os.path.join(os.path.dirname(python), "mpiexec")
    if not os.path.exists(found):
        found = os.environ.get("MPIEXEC", "")
    if not os.path.exists(found):
        found = shutil.which("mpiexec") or ""
    if not found:
        sys.exit("compare_cores: no mpiexec (set MPIEXEC)")
    return found


def launch(root: str, python: str, nranks: int, cases_path: str, workdir: str) -> subprocess.Popen:
    out_path = os.path.join(workdir, "out.json")
    cmd = [python, os.path.abspath(__file__), "--worker", cases_path, out_path]
    if nranks > 1:
        cmd = [find_mpiexec(python), "-n", str(nranks)] + cmd
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (os.path.abspath(root),
                                                                   os.environ.get("PYTHONPATH")) if p))
    return subprocess.Popen(cmd, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def difference(a: dict, b: dict) -> tuple[bool, float, str]:
    """(same, largest |a - b| of the residual norms, why not) for bundled a, LLNL b."""
    if "error" in a or "error" in b:
        same = a.get("error") == b.get("error")
        return same, 0.0, "" if same else f"bundled: {a.get('error', 'ok')}; LLNL: {b.get('error', 'ok')}"
    why = []
    if a["iterations"] != b["iterations"]:
        why.append("iterations")
    if a["levels"] != b["levels"]:
        why.append(f"levels {a['levels']} vs {b['levels']}")
    ra, rb = a["residual_norms"], b["residual_norms"]
    if len(ra) != len(rb):
        why.append(f"history length {len(ra)} vs {len(rb)}")
    big, bad = 0.0, False
    for x, y in zip(ra, rb):
        d = 0.0 if math.isnan(x) and math.isnan(y) else abs(x - y)
        big = math.inf if math.isnan(d) else max(big, d)
        bad = bad or not d <= RTOL * abs(y) + ATOL
    if bad:
        why.append("residuals")
    if "final" in a or "final" in b:
        fa, fb = a.get("final"), b.get("final")
        if fa is None or fb is None or len(fa) != len(fb) or any(len(x) != len(y) for x, y in zip(fa, fb)):
            why.append("final access points")
        elif not all(abs(x - y) <= RTOL * abs(y) + ATOL for u, v in zip(fa, fb) for x, y in zip(u, v)):
            why.append("final access values")
    return not why, big, ", ".join(why)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bundled", help="braidnet root built with the bundled core")
    p.add_argument("--llnl", help="braidnet root built against LLNL XBraid")
    p.add_argument("--llnl-python", default=sys.executable,
                   help="the Python of the LLNL build's environment (default: this one)")
    p.add_argument("--ranks", type=int, nargs="+", default=[1, 2], help="rank counts (default 1 2)")
    p.add_argument("--only", help="run only the option sets whose name contains this text")
    p.add_argument("--timeout", type=float, default=600, help="seconds per launch (default 600)")
    p.add_argument("--verbose", action="store_true", help="print both histories of differing cases")
    p.add_argument("--worker", nargs=2, metavar=("CASES", "OUT"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return worker(*args.worker)
    if not args.bundled or not args.llnl:
        p.error("--bundled DIR and --llnl DIR are required")

    t0 = time.perf_counter()
    cases = [c for c in all_cases() if not args.only or args.only in c["name"]]
    tmp = tempfile.mkdtemp(prefix="compare_cores.")
    cases_path = os.path.join(tmp, "cases.json")
    with open(cases_path, "w") as f:
        json.dump(cases, f)

    results: dict = {}
    # the two builds of one rank count run at the same time (2 cores: 1-rank runs; then 2-rank runs)
    for nranks in args.ranks:
        procs = {}
        for core, root, python in (("bundled", args.bundled, sys.executable),
                                   ("llnl", args.llnl, args.llnl_python)):
            workdir = os.path.join(tmp, f"{core}-{nranks}")
            os.makedirs(workdir)
            procs[core] = (launch(root, python, nranks, cases_path, workdir), workdir)
        for core, (proc, workdir) in procs.items():
            try:
                output, _ = proc.communicate(timeout=args.timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                output, _ = proc.communicate()
                print(f"compare_cores: {core} on {nranks} rank(s) timed out\n{output}", file=sys.stderr)
                return 1
            if proc.returncode != 0:
                print(f"compare_cores: {core} on {nranks} rank(s) failed (exit {proc.returncode})\n{output}",
                      file=sys.stderr)
                return 1
            with open(os.path.join(workdir, "out.json")) as f:
                data = json.load(f)
            if data["bundled"] != (core == "bundled"):
                print(f"compare_cores: {args.bundled if core == 'bundled' else args.llnl} is not a "
                      f"{core} build", file=sys.stderr)
                return 1
            results[core, nranks] = data["results"]

    failures = 0
    worst = 0.0
    print(f"{'case':46s} {'ranks':>5s} {'it bundled':>10s} {'it LLNL':>8s} {'max |diff|':>11s}  result")
    for nranks in args.ranks:
        for k, case in enumerate(cases):
            a, b = results["bundled", nranks][k], results["llnl", nranks][k]
            same, big, why = difference(a, b)
            worst = max(worst, big)
            failures += not same
            label = f"{case['problem']}/{case['name']}"
            ia = a.get("iterations", "error")
            ib = b.get("iterations", "error")
            print(f"{label:46s} {nranks:5d} {ia!s:>10s} {ib!s:>8s} {big:11.3e}  {'ok' if same else 'DIFFERS: ' + why}")
            if not same and args.verbose:
                print(f"    bundled: {a.get('residual_norms', a.get('error'))}\n"
                      f"    LLNL:    {b.get('residual_norms', b.get('error'))}")
    n = len(cases) * len(args.ranks)
    print(f"\ncompare_cores: {n} cases ({len(cases)} per rank count, ranks {args.ranks}), "
          f"{failures} differ; largest residual difference {worst:.3e}; {time.perf_counter() - t0:.1f} s")
    shutil.rmtree(tmp, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
