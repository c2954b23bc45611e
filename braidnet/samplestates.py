"""The per-sample warm states of mini-batch training (``warm="sample"``, docs/design.md section 9.4).

A mini-batch network's cores hold only the current batch's states; :class:`SampleStates` keeps every
training sample's primal and adjoint states on the points this rank owns, so a sample's next batch
starts from its own last states instead of another sample's.  It saves the current batch's columns
from the cores' arrays, hands a batch's columns back as warm states, and exports and imports the
whole store for checkpoints.  With data-parallel groups every group holds the whole store: a sample's
next batch usually lies on another group.
"""
from __future__ import annotations

import logging
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from braidnet.groups import DataGroups

log = logging.getLogger(__name__)

__all__ = ["SampleStates"]

Rows = Sequence[Optional[np.ndarray]]   # one array (width, batch) per own point, in point order


class SampleStates:
    """Every training sample's states, per core, on this rank's points.

    Args:
        n_samples: the training set's size.
        points: per core (``"primal"``, ``"adjoint"``): (first, count) of the primal points this
            rank owns (count 0: none).
        width: the state size.
        dtype: the network's dtype.
        groups: the data-parallel groups, whose batches' columns :meth:`save` gathers.

    The store is sample-major, (n_samples, count, width) per core, so that a batch's states are
    contiguous blocks: saving and loading a batch costs a copy, not a strided gather.  Samples
    never saved are zeros.
    """

    def __init__(self, n_samples: int, points: Dict[str, Tuple[int, int]], width: int,
                 dtype, groups: DataGroups) -> None:
        self.n_samples = n_samples
        self._first = {name: first for name, (first, _) in points.items()}
        self._store: Dict[str, np.ndarray] = {
            name: np.zeros((n_samples, count, width), dtype) for name, (_, count) in points.items()}
        self._groups = groups
        #: :meth:`restore` filled the store (from a checkpoint): the first batch starts from it too
        self.loaded = False
        log.debug("per-sample warm states: %d samples, %.1f MiB on this rank", n_samples,
                  sum(a.nbytes for a in self._store.values()) / 2**20)

    def __contains__(self, name: str) -> bool:
        return name in self._store

    def save(self, batch: Optional[np.ndarray], rows: Dict[str, Rows]) -> None:
        """Store the columns of this group's samples ``batch`` (None: no batch yet, nothing to save)
        from each core's ``rows`` (None rows: zeros), and every other group's batch columns too
        (collective over the groups): a sample's next batch may be on another group."""
        if batch is None:
            return
        for name, store in self._store.items():
            own = rows[name]
            cur = np.zeros((len(own), store.shape[2], len(batch)), store.dtype)
            for i, a in enumerate(own):
                if a is not None:
                    cur[i] = a
            for cols, part in self._groups.allgather((batch, cur)):
                store[cols] = part.transpose(2, 0, 1)

    def load(self, batch: np.ndarray, rows: Dict[str, Rows]) -> None:
        """Copy the stored columns of the samples ``batch`` into each core's ``rows`` (None rows are
        left alone: the cores never read them), the new batch's warm states."""
        for name, store in self._store.items():
            cols = store[batch]                          # (b, own points, width)
            for i, dst in enumerate(rows[name]):
                if dst is not None:
                    np.copyto(dst, cols[:, i, :].T)

    def export(self, name: str, like: Rows) -> List[Optional[np.ndarray]]:
        """Core ``name``'s rows of every sample, (width, n_samples) views in point order, for a
        checkpoint; None where ``like`` has None (rows a checkpoint leaves zero)."""
        store = self._store[name]
        return [None if a is None else store[:, i, :].T for i, a in enumerate(like)]

    def restore(self, name: str, states: np.ndarray) -> None:
        """Fill core ``name``'s store from a checkpoint's (N+1, width, n_samples) array: the rows
        of this rank's points, from any rank count."""
        store, first = self._store[name], self._first[name]
        np.copyto(store, states[first:first + store.shape[1]].transpose(2, 0, 1))
        self.loaded = True
