"""Command line shared by the reference-problem examples (scalar_ode.py, heat.py, resnet4.py).

Each example is ``run("<problem>", __doc__)``: parse the MGRIT options, solve the problem with
braidnet's core (the fast Cython app, or the numpy one with ``--python``), and report.  With
``--json``, rank 0 prints exactly one JSON object on stdout: ``iterations``, ``levels``,
``residual_norms`` (as braid_GetRNorms gives them, -1 for a skipped first iteration) and
``u_final`` (the state at tstop, from the final access of the rank that owns it); the core's own
printing is then off unless ``--print-level`` asks for it.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

try:
    import braidnet  # noqa: F401
except ImportError:  # run from a source checkout built in place
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mpi4py import MPI

from braidnet.braid import Core
from braidnet.refproblems import reference_problem


def _int_list(text: str) -> int | list[int]:
    """'4' -> 4 (every level); '4,2' -> [4, 2] (level 0, level 1, ...)."""
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer or a comma-separated list of them, got {text!r}")
    return values[0] if len(values) == 1 else values


def make_parser(description: str, default_ntime: int) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ntime", type=int, default=default_ntime, help="time steps (default %(default)s)")
    p.add_argument("--cfactor", type=_int_list, help="coarsening factor: one int, or a comma list per level")
    p.add_argument("--max-levels", type=int, help="most levels (1 = sequential stepping)")
    p.add_argument("--min-coarse", type=int, help="smallest coarse grid (intervals)")
    p.add_argument("--nrelax", type=_int_list, help="0 = F-, 1 = FCF-relaxation, ...; int or comma list per level")
    p.add_argument("--tol", type=float, help="absolute residual tolerance (default: the core's relative 1e-9)")
    p.add_argument("--max-iter", type=int, help="most iterations")
    p.add_argument("--fmg", action="store_true", help="F-cycles in every iteration")
    p.add_argument("--nfmg", type=int, help="F-cycles except iteration NFMG, a V-cycle (XBraid's behaviour of SetFMG + SetNFMG)")
    p.add_argument("--skip", type=int, choices=(0, 1), help="skip the fine-level work of iteration 0")
    p.add_argument("--storage", type=int, help="-1: store C-points only; l: all points on levels >= l")
    p.add_argument("--tnorm", type=int, choices=(1, 2, 3), help="temporal norm: 1 sum, 2 l2, 3 max")
    p.add_argument("--print-level", type=int, help="0 silent, 1 stats, 2 also the history (default 2; 0 with --json)")
    p.add_argument("--python", action="store_true", help="use the numpy app instead of the fast Cython one")
    p.add_argument("--json", action="store_true", help="rank 0 prints one JSON object with the results")
    return p


def core_options(args: argparse.Namespace) -> dict[str, Any]:
    """The Core options the command line gave (unset ones keep the core's defaults)."""
    opts: dict[str, Any] = {}
    for name in ("cfactor", "max_levels", "min_coarse", "nrelax", "max_iter", "nfmg", "skip", "storage",
                 "tnorm", "print_level"):
        value = getattr(args, name)
        if value is not None:
            opts[name] = value
    if args.tol is not None:
        opts["abs_tol"] = args.tol
    if args.fmg:
        opts["fmg"] = True
    if args.json and args.print_level is None:
        opts["print_level"] = 0
    return opts


def final_state(app: Any, comm: MPI.Comm) -> list[float] | None:
    """On rank 0, the state at tstop as the final access showed it to its owner (None elsewhere).

    Every rank reports the latest (t, state) its final access saw; the owner of tstop has the
    largest t (ranks own contiguous blocks of time points).
    """
    mine = app.final
    found = comm.gather(None if mine is None else (mine[0], mine[1].tolist()), root=0)
    if comm.rank != 0:
        return None
    found = [f for f in found if f is not None]
    return max(found, key=lambda f: f[0])[1] if found else None


def run(problem: str, description: str, default_ntime: int = 64, argv: list[str] | None = None) -> int:
    args = make_parser(description, default_ntime).parse_args(argv)
    comm = MPI.COMM_WORLD
    app, tstart, tstop = reference_problem(problem, args.ntime, fast=not args.python)
    try:
        core = Core(app, tstart, tstop, args.ntime, comm, **core_options(args))
    except ValueError as exc:     # the same on every rank: all of them stop here
        if comm.rank == 0:
            print(f"{os.path.basename(sys.argv[0])}: error: {exc}", file=sys.stderr)
        return 2
    with core:
        result = core.drive()
    u_final = final_state(app, comm)
    if comm.rank == 0:
        if args.json:
            print(json.dumps({"iterations": result.iterations, "levels": result.levels,
                              "residual_norms": result.residual_norms, "u_final": u_final}))
        else:
            print(f"{problem}: {result.iterations} iterations on {result.levels} levels, "
                  f"{comm.size} rank(s), {result.time:.3g} s; u(tstop={tstop:g}) = {u_final}")
    return 0
