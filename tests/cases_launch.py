"""Cases of tests/test_mpi_launch.py, which tests the MPI test protocol itself (tests/mpi_launch.py)."""
from __future__ import annotations

import os
import time

import numpy as np


def echo(comm, value):
    """Every rank: its rank, the size, ``value`` and a few values JSON itself cannot write."""
    return {"rank": comm.Get_rank(), "size": comm.Get_size(), "value": value, "nan": float("nan"),
            "inf": -np.inf, "array": np.arange(3.0) * comm.Get_rank(), "int64": np.int64(7), "pair": (1, 2)}


def raise_on(comm, rank: int) -> None:
    """``rank`` raises; the others wait in a collective for it."""
    if comm.Get_rank() == rank:
        raise ZeroDivisionError(f"raised on purpose on rank {rank}")
    comm.Barrier()


def hang_on(comm, rank: int, pid_dir: str) -> None:
    """Every rank writes its pid to ``pid_dir``; ``rank`` then sleeps forever, the others wait for it."""
    with open(os.path.join(pid_dir, f"{comm.Get_rank()}.pid"), "w") as f:
        f.write(str(os.getpid()))
    comm.Barrier()
    if comm.Get_rank() == rank:
        while True:
            time.sleep(1)
    comm.Barrier()
