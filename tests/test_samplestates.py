"""braidnet.samplestates.SampleStates on small arrays, in one process (no MPI launch)."""
from __future__ import annotations

import numpy as np
import pytest

from braidnet.groups import DataGroups, shards
from braidnet.samplestates import SampleStates

WIDTH, N_SAMPLES = 3, 7


def _rows(count: int, batch: int, seed: int, dtype=np.float64, none=()):
    """count arrays (width, batch) of distinct values, None at the positions ``none``."""
    rng = np.random.default_rng(seed)
    return [None if i in none else rng.standard_normal((WIDTH, batch)).astype(dtype) for i in range(count)]


class _TwoGroups:
    """Group 0's view of two groups: allgather hands back group 1's payloads, one per call."""
    size, index = 2, 0

    def __init__(self, payloads):
        self._payloads = iter(payloads)

    def allgather(self, obj):
        return [obj, next(self._payloads)]


@pytest.fixture
def groups():
    from mpi4py import MPI
    g = DataGroups(MPI.COMM_SELF)
    yield g
    g.free()


def test_save_then_load_round_trips_the_batch_columns(groups):
    s = SampleStates(N_SAMPLES, {"primal": (0, 3), "adjoint": (2, 2)}, WIDTH, np.float64, groups)
    assert "primal" in s and "adjoint" in s and "validation" not in s
    batch = np.array([5, 1, 3])
    # u_0 given (endpoints), a None row (lambda_N not on this rank) saves zeros
    saved = {"primal": _rows(3, 3, 1), "adjoint": _rows(2, 3, 2, none=(1,))}
    s.save(batch, saved)
    dst = {"primal": _rows(3, 3, 3, none=(0,)), "adjoint": _rows(2, 3, 4)}
    kept = dst["adjoint"][1].copy()
    s.load(np.array([3, 5, 1]), dst)
    assert dst["primal"][0] is None                      # never written
    for i in (1, 2):
        np.testing.assert_array_equal(dst["primal"][i], saved["primal"][i][:, [2, 0, 1]])
    np.testing.assert_array_equal(dst["adjoint"][0], saved["adjoint"][0][:, [2, 0, 1]])
    np.testing.assert_array_equal(dst["adjoint"][1], np.zeros_like(kept))
    # samples never saved load as zeros, next to saved ones
    dst = {"primal": _rows(3, 2, 5), "adjoint": _rows(2, 2, 6)}
    s.load(np.array([0, 1]), dst)
    np.testing.assert_array_equal(dst["primal"][1][:, 0], np.zeros(WIDTH))
    np.testing.assert_array_equal(dst["primal"][1][:, 1], saved["primal"][1][:, 1])


def test_a_later_save_overwrites_only_its_columns(groups):
    s = SampleStates(N_SAMPLES, {"primal": (1, 2), "adjoint": (1, 2)}, WIDTH, np.float64, groups)
    first, second = _rows(2, 3, 1), _rows(2, 2, 2)
    s.save(np.array([0, 1, 2]), {"primal": first, "adjoint": first})
    s.save(np.array([2, 4]), {"primal": second, "adjoint": second})
    s.save(None, {})                                     # no batch yet: nothing to save
    rows = s.export("primal", [np.empty(0)] * 2)
    for i in range(2):
        assert rows[i].shape == (WIDTH, N_SAMPLES)
        np.testing.assert_array_equal(rows[i][:, :2], first[i][:, :2])
        np.testing.assert_array_equal(rows[i][:, 2], second[i][:, 0])
        np.testing.assert_array_equal(rows[i][:, 4], second[i][:, 1])
        np.testing.assert_array_equal(rows[i][:, [3, 5, 6]], np.zeros((WIDTH, 3)))


def test_every_groups_columns_are_saved_on_uneven_shards():
    # a batch of 5 over 2 groups: shards of 3 and 2 samples
    batch = np.array([6, 0, 4, 2, 3])
    (a0, b0), (a1, b1) = shards(len(batch), 2)
    assert (b0 - a0, b1 - a1) == (3, 2)
    mine, theirs = batch[a0:b0], batch[a1:b1]
    own = {"primal": _rows(2, 3, 1), "adjoint": _rows(1, 3, 2)}
    other = {"primal": np.stack(_rows(2, 2, 3)), "adjoint": np.stack(_rows(1, 2, 4))}
    s = SampleStates(N_SAMPLES, {"primal": (0, 2), "adjoint": (3, 1)}, WIDTH, np.float64,
                     _TwoGroups([(theirs, other["primal"]), (theirs, other["adjoint"])]))
    s.save(mine, own)
    for name in ("primal", "adjoint"):
        rows = s.export(name, own[name])
        for i, row in enumerate(rows):
            np.testing.assert_array_equal(row[:, mine], own[name][i])
            np.testing.assert_array_equal(row[:, theirs], other[name][i])
            np.testing.assert_array_equal(row[:, [1, 5]], np.zeros((WIDTH, 2)))


def test_restore_takes_this_ranks_points_and_export_gives_them_back(groups):
    N = 5
    full = {name: np.random.default_rng(k).standard_normal((N + 1, WIDTH, N_SAMPLES)).astype(np.float32)
            for k, name in enumerate(("primal", "adjoint"))}
    # primal points 2..4, adjoint rows (primal points) 0..1
    s = SampleStates(N_SAMPLES, {"primal": (2, 3), "adjoint": (0, 2)}, WIDTH, np.float32, groups)
    assert not s.loaded
    for name, arr in full.items():
        s.restore(name, arr)
    assert s.loaded
    rows = s.export("primal", [None, np.empty(0), np.empty(0)])   # a checkpoint's zero row: None
    assert rows[0] is None
    for i in (1, 2):
        assert rows[i].dtype == np.float32
        np.testing.assert_array_equal(rows[i], full["primal"][2 + i])
    rows = s.export("adjoint", [np.empty(0)] * 2)
    for i in range(2):
        np.testing.assert_array_equal(rows[i], full["adjoint"][i])
    dst = {"primal": _rows(3, 2, 9, np.float32), "adjoint": _rows(2, 2, 10, np.float32)}
    s.load(np.array([6, 2]), dst)
    np.testing.assert_array_equal(dst["primal"][0], full["primal"][2][:, [6, 2]])
    np.testing.assert_array_equal(dst["adjoint"][1], full["adjoint"][1][:, [6, 2]])


def test_a_rank_without_points_holds_nothing(groups):
    s = SampleStates(N_SAMPLES, {"primal": (6, 0), "adjoint": (6, 0)}, WIDTH, np.float64, groups)
    s.save(np.array([1, 2]), {"primal": [], "adjoint": []})
    s.restore("primal", np.ones((6, WIDTH, N_SAMPLES)))
    assert s.export("primal", []) == [] and s.loaded
    s.load(np.array([3]), {"primal": [], "adjoint": []})
