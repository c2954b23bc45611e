"""Data-parallel groups (docs/design.md section 9): Q groups of P ranks, each on a shard of the batch.

:func:`split_comm` makes the pair of communicators; :class:`DataGroups` is what a layer-parallel
network needs across the groups: its group's shard of a batch, and the sums and gathers that make
every group hold the whole batch's numbers.  With one group every operation is the identity.
"""
from __future__ import annotations

import math
from typing import Any, List, Optional, Tuple

import numpy as np

from braidnet._checks import count

__all__ = ["split_comm", "shards", "DataGroups"]


def split_comm(comm, data: int) -> Tuple[Any, Any]:
    """(layer communicator, data communicator) for ``data`` = Q data-parallel groups of the ranks of
    ``comm`` (collective).  Group q is ranks q*P .. q*P + P - 1 (P = size / Q: neighbours in rank
    order share the layers, whose messages are the many); the data communicator links the ranks
    at the same position in every group.  Q must divide the number of ranks."""
    size = comm.Get_size()
    Q = count(data, "data", 1)
    if size % Q:
        raise ValueError(f"data={Q} data-parallel groups do not divide the {size} ranks; use a divisor of {size}")
    P, rank = size // Q, comm.Get_rank()
    return comm.Split(rank // P, rank), comm.Split(rank % P, rank)


def shards(n: int, groups: int) -> List[Tuple[int, int]]:
    """[start, stop) of each group's contiguous shard of n samples (:func:`braidnet.batches.shard_bounds`:
    the first n % groups one more)."""
    from braidnet.batches import shard_bounds
    b = shard_bounds(n, groups)
    return [(int(b[q]), int(b[q + 1])) for q in range(groups)]


class DataGroups:
    """This rank's view of the data-parallel groups: ``data_comm`` (None: one group) is duplicated
    (collective) and freed by :meth:`free`.  Sums are reduced on group 0 and broadcast, so every
    group continues from identical values and the groups never drift apart."""

    def __init__(self, data_comm=None) -> None:
        self._comm = data_comm.Dup() if data_comm is not None else None
        self.size = 1 if data_comm is None else data_comm.Get_size()     #: Q
        self.index = 0 if data_comm is None else data_comm.Get_rank()    #: this rank's group

    def sum(self, v: np.ndarray) -> np.ndarray:
        """Sum of v over the groups, the same on every rank (float64)."""
        if self._comm is None:
            return v
        from mpi4py import MPI
        v = np.ascontiguousarray(v, dtype=np.float64)
        out = np.empty_like(v)
        self._comm.Reduce(v, out, op=MPI.SUM, root=0)
        self._comm.Bcast(out, root=0)
        return out

    def solve_info(self, rnorm: float, iterations: int) -> Tuple[float, int]:
        """(residual norm, iterations) of a solve over all groups: the 2-norm of the groups' norms
        (the whole batch's with the default tnorm; -1 when a group computed none), the most
        iterations any group took."""
        if self._comm is None:
            return rnorm, iterations
        allr = self._comm.allgather(rnorm)
        r = -1.0 if min(allr) < 0 else math.sqrt(sum(x * x for x in allr))
        return r, max(self._comm.allgather(iterations))

    def side_by_side(self, a: Optional[np.ndarray], root: Optional[int]) -> Optional[np.ndarray]:
        """The groups' (N+1, width, shard) arrays joined along the batch axis, in sample order: on
        every rank (``root`` None), or on group 0's rank that holds its group's array."""
        if self._comm is None:
            return a
        if root is None:
            return np.concatenate(self._comm.allgather(a), axis=2)
        parts = self._comm.gather(a, root=0)
        return np.concatenate(parts, axis=2) if parts is not None and parts[0] is not None else None

    def allgather(self, obj: Any) -> List[Any]:
        """Every group's ``obj``, in group order."""
        return [obj] if self._comm is None else self._comm.allgather(obj)

    def free(self) -> None:
        if self._comm is not None:
            self._comm.Free()
            self._comm = None
