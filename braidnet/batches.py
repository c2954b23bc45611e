"""Batch order for mini-batch training: which samples each optimisation step sees, and which
contiguous part of a batch each data-parallel group handles.

**Counters.**  Epochs, batch indices within an epoch and global steps all start at 0; global step
``s`` is batch ``i = s % batches_per_epoch`` of epoch ``e = s // batches_per_epoch``.

**Reproducible without RNG state.**  Epoch e's permutation is
``numpy.random.default_rng([seed, e]).permutation(n_samples)``, a pure function of (seed, e), so a
run resumed at a step (or an (epoch, index) position) needs only that counter to continue with
exactly the batches of the uninterrupted run.

**Equal batch sizes.**  The layer-parallel solver's state blocks have a fixed batch size, so by
default (``drop_last=True``) every step gets ``batch_size`` samples: the last
``n_samples % batch_size`` entries of each epoch's permutation are dropped.  The permutation
changes every epoch, so over epochs every sample is still used.  ``drop_last=False`` keeps a
smaller last batch instead.

**Full batch.**  ``batch_size >= n_samples`` means full batch: one batch per epoch holding all
samples in their original order (``arange(n_samples)``, never permuted), so full-batch training
sees the data exactly as the full-batch path always has.
"""
from __future__ import annotations

import logging
from typing import Iterator, Optional, Tuple

import numpy as np

log = logging.getLogger(__name__)


def _int(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValueError(f"{name} must be {what}, got {name}={value!r}")
    return int(value)


class BatchOrder:
    """Seeded, resumable order of mini-batches over ``n_samples`` samples.

    Args:
        n_samples: number of training samples (> 0).
        batch_size: samples per step (> 0); ``>= n_samples`` means full batch.
        seed: integer >= 0; with the epoch it determines each epoch's permutation.
        drop_last: drop the incomplete last batch of each epoch (default True: all steps equal).
    """

    def __init__(self, n_samples: int, batch_size: int, seed: int, drop_last: bool = True) -> None:
        self.n_samples = _int(n_samples, "n_samples", 1)
        self.batch_size = _int(batch_size, "batch_size", 1)
        self.seed = _int(seed, "seed", 0)
        if not isinstance(drop_last, (bool, np.bool_)):
            raise ValueError(f"drop_last must be True or False, got drop_last={drop_last!r}")
        self.drop_last = bool(drop_last)
        self.full_batch = self.batch_size >= self.n_samples
        if self.full_batch:
            self.batches_per_epoch = 1
        elif self.drop_last:
            self.batches_per_epoch = self.n_samples // self.batch_size
        else:
            self.batches_per_epoch = -(-self.n_samples // self.batch_size)
        if self.drop_last and not self.full_batch and self.n_samples % self.batch_size:
            log.debug("batch order: %d of %d samples dropped per epoch (drop_last)",
                      self.n_samples % self.batch_size, self.n_samples)
        self._cached: Tuple[Optional[int], Optional[np.ndarray]] = (None, None)

    @property
    def samples_per_step(self) -> int:
        """Samples of every step (but a short last one with ``drop_last=False``):
        ``min(batch_size, n_samples)``."""
        return min(self.batch_size, self.n_samples)

    def permutation(self, epoch: int) -> np.ndarray:
        """Epoch ``epoch``'s order of all samples (``arange`` for full batch; read-only)."""
        epoch = _int(epoch, "epoch", 0)
        if self._cached[0] != epoch:
            if self.full_batch:
                perm = np.arange(self.n_samples)
            else:
                perm = np.random.default_rng([self.seed, epoch]).permutation(self.n_samples)
            perm.flags.writeable = False   # batches are views of it: callers must not edit them
            self._cached = (epoch, perm)
        return self._cached[1]

    def batch(self, epoch: int, index: int) -> np.ndarray:
        """Sample indices of batch ``index`` of epoch ``epoch`` (a read-only view)."""
        index = _int(index, "index", 0)
        if index >= self.batches_per_epoch:
            raise ValueError(f"index must be in [0, {self.batches_per_epoch}) (batches per epoch), "
                             f"got index={index!r}")
        start = index * self.samples_per_step
        return self.permutation(epoch)[start:start + self.samples_per_step]

    def position(self, step: int) -> Tuple[int, int]:
        """``(epoch, index)`` of global step ``step``."""
        step = _int(step, "step", 0)
        return divmod(step, self.batches_per_epoch)

    def global_step(self, epoch: int, index: int) -> int:
        """Global step of batch ``index`` of epoch ``epoch`` (inverse of :meth:`position`)."""
        epoch = _int(epoch, "epoch", 0)
        index = _int(index, "index", 0)
        if index >= self.batches_per_epoch:
            raise ValueError(f"index must be in [0, {self.batches_per_epoch}) (batches per epoch), "
                             f"got index={index!r}")
        return epoch * self.batches_per_epoch + index

    def batches(self, epoch: int = 0, index: int = 0) -> Iterator[Tuple[int, int, np.ndarray]]:
        """Endless ``(epoch, index, indices)`` from batch ``index`` of epoch ``epoch`` on; the
        caller stops.  Started at ``position(s)`` it yields exactly what the iterator from (0, 0)
        yields after s items (resume from a step counter: ``batches(*order.position(s))``).
        """
        self.global_step(epoch, index)   # validates the start
        epoch, index = int(epoch), int(index)
        while True:
            yield epoch, index, self.batch(epoch, index)
            index += 1
            if index == self.batches_per_epoch:
                epoch, index = epoch + 1, 0

    def __repr__(self) -> str:
        return (f"BatchOrder(n_samples={self.n_samples}, batch_size={self.batch_size}, "
                f"seed={self.seed}, drop_last={self.drop_last})")


def shard_bounds(n: int, Q: int) -> np.ndarray:
    """Boundaries ``b`` (length Q + 1) splitting n items into Q contiguous parts as
    :func:`numpy.array_split` does: part q is ``[b[q], b[q+1])`` and the first ``n % Q`` parts
    get one item more.  Every part must be non-empty, so n >= Q is required."""
    n = _int(n, "n", 1)
    Q = _int(Q, "Q", 1)
    if n < Q:
        raise ValueError(f"cannot split n={n} samples over Q={Q} data-parallel groups: a group would "
                         f"be empty (need n >= Q)")
    base, extra = divmod(n, Q)
    sizes = np.full(Q, base, dtype=np.int64)
    sizes[:extra] += 1
    return np.concatenate(([0], np.cumsum(sizes)))


def shard(indices: np.ndarray, q: int, Q: int) -> np.ndarray:
    """The contiguous part of a batch's ``indices`` that data-parallel group q of Q handles."""
    Q = _int(Q, "Q", 1)
    q = _int(q, "q", 0)
    if q >= Q:
        raise ValueError(f"q must be in [0, Q={Q}), got q={q!r}")
    b = shard_bounds(len(indices), Q)
    return indices[b[q]:b[q + 1]]
