"""The one rank-side script of the MPI tests (launched by tests/mpi_launch.py; see its docstring).

    mpiexec -n P python tests/mpi_entry.py CASES.json
    mpiexec -n P python tests/mpi_entry.py --fault FAULT_JSON -- ARGS...

First form: CASES.json is a list of ``["module.function", {kwargs}]``.  For each case, in order,
every rank calls ``function(MPI.COMM_WORLD, **kwargs)`` (``module`` is a module of tests/, e.g.
``cases_braid``); rank 0 gathers every rank's return value and prints one line
``RESULT {"case": i, "values": [...]}`` (index = world rank; NaN and infinities as Python's json
writes them).  An exception on any rank prints ``rank r: case i (name) failed:`` and its traceback to stderr and aborts
every rank (MPI_Abort, exit code 1), so that none of the others waits forever in a collective.

Second form: installs the fault ``FAULT_JSON`` (an inline JSON object, see
:func:`cases_train.install`) on every rank, then runs ``braidnet.cli.main(ARGS)`` and exits with its
status (the CLI handles its own failures: that is what such tests check).
"""
from __future__ import annotations

import importlib
import json
import sys
import time
import traceback
from typing import Any, Callable

import numpy as np


def _jsonable(obj: Any) -> Any:
    """json.dumps' fallback: numpy arrays and scalars as Python lists and numbers."""
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"a case returned {type(obj).__name__}, which JSON cannot carry: {obj!r}")


def case_function(name: str) -> Callable:
    """The function ``"module.function"`` of a module in tests/."""
    module, _, function = name.rpartition(".")
    if not module:
        raise ValueError(f"case {name!r} is not of the form 'module.function'")
    return getattr(importlib.import_module(module), function)


def run_cases(path: str) -> int:
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    where = f"reading {path}"
    try:
        with open(path) as f:
            cases = json.load(f)
        for i, (name, kwargs) in enumerate(cases):
            where = f"case {i} ({name})"
            value = case_function(name)(comm, **kwargs)
            values = comm.gather(value, root=0)
            if comm.Get_rank() == 0:
                line = json.dumps({"case": i, "values": values}, default=_jsonable)
                sys.stdout.write(f"RESULT {line}\n")
                sys.stdout.flush()
    except BaseException:
        sys.stdout.flush()
        sys.stderr.write(f"rank {comm.Get_rank()}: {where} failed:\n{traceback.format_exc()}")
        sys.stderr.flush()
        time.sleep(0.5)         # the launcher forwards the message before the abort tears it down
        comm.Abort(1)
    return 0


def run_cli(fault: dict, args: list[str]) -> int:
    from mpi4py import MPI

    import cases_train

    cases_train.install(fault, MPI.COMM_WORLD.Get_rank())
    from braidnet import cli

    return cli.main(args)


def main(argv: list[str]) -> int:
    if argv and argv[0] == "--fault":
        if len(argv) < 3 or argv[2] != "--":
            sys.exit("usage: mpi_entry.py --fault FAULT_JSON -- ARGS...")
        return run_cli(json.loads(argv[1]), argv[3:])
    if len(argv) != 1:
        sys.exit("usage: mpi_entry.py CASES.json | mpi_entry.py --fault FAULT_JSON -- ARGS...")
    return run_cases(argv[0])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
