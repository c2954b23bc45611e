"""Command line: ``braidnet train CONFIG.toml [--set section.key=value ...] [--out DIR] [--resume | --overwrite]``,
``braidnet plot RUN_DIR [RUN_DIR ...] [--out FILE.png]``, ``braidnet compare RUN_A RUN_B``,
``braidnet config``.

Run under MPI as ``mpiexec -n P braidnet train examples/peaks.toml``.  The configuration is read and
checked before MPI starts, so a bad value stops every rank with the same one-line message.  Any other
failure on one rank aborts all ranks (MPI_Abort) instead of leaving the others waiting.

Exit codes of ``train``: 0 done; 2 a bad configuration or command line, or an output folder that
cannot be used as asked (it holds another run, another run uses it, a resume would change the run);
3 training diverged; 4 training stalled (the line search kept failing); 1 any other failure.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import List, Optional

from braidnet import config as _config


def _ranks_from_environment() -> Optional[int]:
    """Number of MPI ranks as the launcher announces it, without initialising MPI (None if unknown)."""
    for var in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS", "SLURM_NTASKS"):
        value = os.environ.get(var)
        if value and value.isdigit():
            return int(value)
    return None


def _rank_from_environment() -> int:
    """This process's MPI rank as the launcher announces it, without initialising MPI (0 if unknown)."""
    for var in ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK", "SLURM_PROCID"):
        value = os.environ.get(var)
        if value and value.isdigit():
            return int(value)
    return 0


def _version_line() -> str:
    """``braidnet 0.1.0 (core: bundled)`` or ``braidnet 0.1.0 (core: LLNL XBraid, /path/to/xbraid)``."""
    import braidnet

    info = braidnet.build_info()
    core = info["core"] + (f", {info['xbraid_dir']}" if info["xbraid_dir"] else "")
    return f"braidnet {info['version']} (core: {core})"


class _VersionAction(argparse.Action):
    """``--version``: the line is made only when asked for (build_info() may have to import the core)."""

    def __init__(self, option_strings: List[str], dest: str = argparse.SUPPRESS, **kwargs: object) -> None:
        super().__init__(option_strings, dest=dest, default=argparse.SUPPRESS, nargs=0, **kwargs)  # type: ignore[arg-type]

    def __call__(self, parser: argparse.ArgumentParser, namespace: object, values: object,
                 option_string: Optional[str] = None) -> None:
        print(_version_line(), flush=True)
        parser.exit()


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="braidnet", description="Layer-parallel ResNet training with MGRIT")
    p.add_argument("--version", action=_VersionAction,
                   help="print the version and the MGRIT core braidnet was built with, and exit")
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train a network as a TOML file configures it (under mpiexec)")
    t.add_argument("config", help="TOML configuration (see `braidnet config` for every key)")
    t.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one configuration value (repeatable), e.g. --set optimizer.iterations=50")
    t.add_argument("--resume", action="store_true",
                   help="continue the run in the output folder from its checkpoint (the configuration may "
                        "change only in the keys `braidnet config` marks)")
    t.add_argument("--overwrite", action="store_true",
                   help="replace the run the output folder holds (its files are removed first)")
    t.add_argument("--out", help="output folder, taken literally (overrides output.dir)")
    sub.add_parser("config", help="print every configuration key with its default and meaning")
    units = dict(choices=("counted", "wall"), default="counted",
                 help="work units: counted (cost-weighted layer steps, deterministic) or wall (clock time)")
    pl = sub.add_parser("plot", help="validation accuracy and training loss against work units (PNG)")
    pl.add_argument("runs", nargs="+", metavar="RUN_DIR", help="output folders of braidnet train")
    pl.add_argument("--out", help="image file (default: FIRST_RUN_DIR/work_units.png)")
    pl.add_argument("--units", **units)
    c = sub.add_parser("compare", help="final accuracies and the work each run needed to reach the other's best")
    c.add_argument("run_a", metavar="RUN_A")
    c.add_argument("run_b", metavar="RUN_B")
    c.add_argument("--units", **units)
    c.add_argument("--at", type=float, nargs="+", default=[25.0], metavar="W",
                   help="also give both validation accuracies at these work units (default: 25, the paper's)")
    return p


def _load(args: argparse.Namespace, nprocs: int, rank: int) -> Optional[_config.Config]:
    """The checked configuration, or None after printing the error once (on rank 0)."""
    try:
        return _config.load_config(args.config, args.overrides, nprocs=nprocs)
    except _config.ConfigError as e:
        if rank == 0:                    # every rank stops here; one message is enough
            print(f"braidnet: configuration error: {e}", file=sys.stderr)
        return None


def _show_progress() -> None:
    """Print the library's progress lines (emitted on rank 0 only) as they are, on stdout."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("braidnet.progress")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def _train(args: argparse.Namespace) -> int:
    # checked before MPI starts when the launcher announces the rank count, so that a bad value
    # stops every rank with the same message; otherwise (or if the announcement was wrong) after
    announced = _ranks_from_environment()
    cfg = None
    if announced is not None:
        cfg = _load(args, announced, _rank_from_environment())
        if cfg is None:
            return 2

    if args.resume and args.overwrite:
        if _rank_from_environment() == 0:
            print("braidnet: give --resume (continue the run) or --overwrite (replace it), not both", file=sys.stderr)
        return 2
    from mpi4py import MPI
    from braidnet.runfolder import RunFolderError
    from braidnet.train import TrainingDiverged, train

    comm = MPI.COMM_WORLD
    if cfg is None or announced != comm.Get_size():
        cfg = _load(args, comm.Get_size(), comm.Get_rank())
        if cfg is None:
            return 2
    _show_progress()
    try:
        result = train(cfg, comm=comm, resume=args.resume, out_dir=args.out, overwrite=args.overwrite)
    except RunFolderError as e:         # every rank reaches this together
        if comm.Get_rank() == 0:
            print(f"braidnet: {e}", file=sys.stderr)
        return 2
    except TrainingDiverged as e:       # every rank reaches this together
        if comm.Get_rank() == 0:
            print(f"braidnet: {e}", file=sys.stderr)
        return 3
    except _config.ConfigError as e:    # the configuration against the data: every rank together
        if comm.Get_rank() == 0:
            print(f"braidnet: configuration error: {e}", file=sys.stderr)
        return 2
    except Exception as e:              # may be one rank only: take the others down with it
        print(f"braidnet: rank {comm.Get_rank()}: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        if comm.Get_size() > 1:
            import time
            import traceback
            traceback.print_exc()
            sys.stderr.flush()
            time.sleep(0.5)     # the launcher forwards the message before the abort tears it down
            comm.Abort(1)
        raise
    if result.status == "stalled":
        if comm.Get_rank() == 0:
            print(f"braidnet: training {result.message}; the checkpoint in {result.out_dir} keeps its last "
                  f"iteration", file=sys.stderr)
        return 4
    return 0


def _one_blas_thread_per_rank() -> None:
    """Under MPI with several ranks, default BLAS to one thread per rank.

    Each rank's BLAS would otherwise start a thread per core, and P ranks on P cores then fight over
    them (measured: 5x slower at width 220 on 2 cores).  Must run before numpy is imported; a value
    the user set is kept.
    """
    if (_ranks_from_environment() or 1) > 1:
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(var, "1")


def main(argv: Optional[List[str]] = None) -> int:
    _one_blas_thread_per_rank()
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.command == "config":
        try:
            print(_config.describe(), flush=True)
        except BrokenPipeError:          # `braidnet config | head`: the reader has what it wanted
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    if args.command in ("plot", "compare"):
        try:
            if args.command == "plot":
                from braidnet.plot import plot
                print(plot(args.runs, args.out, args.units))
            else:
                from braidnet.compare import compare
                print(compare(args.run_a, args.run_b, args.units, args.at))
        except (FileNotFoundError, ValueError) as e:
            print(f"braidnet: {e}", file=sys.stderr)
            return 2
        return 0
    return _train(args)


if __name__ == "__main__":
    sys.exit(main())
