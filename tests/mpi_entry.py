"""Rank-side entry of :func:`mpi_launch.run_calls`: ``mpiexec -n P python tests/mpi_entry.py CASES.json``.

CASES.json is a list of ``["module.function", {kwargs}]``.  Every rank calls ``function(comm, **kwargs)``
(comm: a duplicate of COMM_WORLD per case, so that cases never share messages); rank 0 prints
``RESULT [v_0, ..., v_{P-1}]``, every rank's return value, one line per case.  An exception on any
rank prints its traceback and aborts every rank (MPI_Abort), so a failure never hangs the others.
"""
from __future__ import annotations

import importlib
import json
import os
import sys
import traceback

from mpi4py import MPI

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def main(path: str) -> None:
    with open(path) as f:
        cases = json.load(f)
    world = MPI.COMM_WORLD
    for name, kwargs in cases:
        comm = world.Dup()
        try:
            module, function = name.rsplit(".", 1)
            value = getattr(importlib.import_module(module), function)(comm, **kwargs)
            values = comm.gather(value, root=0)
        except BaseException:
            sys.stdout.flush()
            sys.stderr.write(f"mpi_entry: case {name}({kwargs}) failed on rank {world.Get_rank()}:\n"
                             f"{traceback.format_exc()}")
            sys.stderr.flush()
            world.Abort(1)
        if world.Get_rank() == 0:
            print("RESULT " + json.dumps(values), flush=True)
        comm.Free()


if __name__ == "__main__":
    main(sys.argv[1])
