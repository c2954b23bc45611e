"""Batch order: seeded per-epoch permutations, equal sizes, resumption, full batch, sharding."""
import itertools

import numpy as np
import pytest
from numpy.testing import assert_array_equal

from braidnet.batches import BatchOrder, shard, shard_bounds


def take(order, n, step=0):
    return list(itertools.islice(order.batches(*order.position(step)), n))


def test_permutation_is_seeded_per_epoch():
    a, b = BatchOrder(23, 5, seed=7), BatchOrder(23, 5, seed=7)
    for e in (0, 1, 5):
        assert_array_equal(a.permutation(e), np.random.default_rng([7, e]).permutation(23))
        assert_array_equal(a.batch(e, 2), b.batch(e, 2))
    assert not np.array_equal(a.permutation(0), a.permutation(1))
    assert not np.array_equal(a.permutation(0), BatchOrder(23, 5, seed=8).permutation(0))
    # asking for epochs out of order gives the same arrays (no hidden RNG state)
    assert_array_equal(b.permutation(5), a.permutation(5))
    assert_array_equal(b.permutation(0), a.permutation(0))


def test_drop_last_gives_equal_disjoint_batches():
    order = BatchOrder(23, 5, seed=3)
    assert order.batches_per_epoch == 4 and order.samples_per_step == 5
    for e in range(3):
        batches = [order.batch(e, i) for i in range(4)]
        assert [len(b) for b in batches] == [5, 5, 5, 5]
        used = np.concatenate(batches)
        assert len(np.unique(used)) == 20                     # disjoint within the epoch
        assert_array_equal(used, order.permutation(e)[:20])   # the last 3 are the dropped ones
    # over epochs the dropped samples change, so every sample gets used
    seen = np.unique(np.concatenate([order.batch(e, i) for e in range(10) for i in range(4)]))
    assert_array_equal(seen, np.arange(23))
    with pytest.raises(ValueError, match="index=4"):
        order.batch(0, 4)


def test_keep_last_gives_short_last_batch():
    order = BatchOrder(23, 5, seed=3, drop_last=False)
    assert order.batches_per_epoch == 5
    assert [len(order.batch(1, i)) for i in range(5)] == [5, 5, 5, 5, 3]
    assert_array_equal(np.concatenate([order.batch(1, i) for i in range(5)]), order.permutation(1))


@pytest.mark.parametrize("batch_size", [10, 11, 1000])
@pytest.mark.parametrize("drop_last", [True, False])
def test_full_batch_is_identity_order(batch_size, drop_last):
    order = BatchOrder(10, batch_size, seed=5, drop_last=drop_last)
    assert order.full_batch and order.batches_per_epoch == 1 and order.samples_per_step == 10
    for e in (0, 1, 7):
        assert_array_equal(order.batch(e, 0), np.arange(10))
    assert [(e, i) for e, i, _ in take(order, 3)] == [(0, 0), (1, 0), (2, 0)]


def test_position_and_global_step():
    order = BatchOrder(23, 5, seed=0)           # 4 batches per epoch
    assert order.position(0) == (0, 0)
    assert order.position(3) == (0, 3)
    assert order.position(4) == (1, 0)
    assert order.position(11) == (2, 3)
    for s in range(30):
        assert order.global_step(*order.position(s)) == s
    assert order.global_step(2, 1) == 9


@pytest.mark.parametrize("drop_last", [True, False])
def test_resumption_equals_uninterrupted(drop_last):
    order = BatchOrder(23, 5, seed=11, drop_last=drop_last)
    full = take(order, 17)
    for s in (0, 1, 3, 4, 5, 9, 16):
        resumed = take(BatchOrder(23, 5, seed=11, drop_last=drop_last), 17 - s, step=s)
        assert len(resumed) == 17 - s
        for (e1, i1, b1), (e2, i2, b2) in zip(full[s:], resumed):
            assert (e1, i1) == (e2, i2)
            assert_array_equal(b1, b2)
    # started from an (epoch, index) position directly
    e, i, b = next(order.batches(3, 1))
    assert (e, i) == (3, 1)
    assert_array_equal(b, full[3 * order.batches_per_epoch + 1][2])
    # the iterator walks epochs in order with consecutive positions
    bpe = order.batches_per_epoch
    assert [(e, i) for e, i, _ in full] == [divmod(s, bpe) for s in range(17)]


def test_batches_are_read_only():
    b = BatchOrder(23, 5, seed=0).batch(0, 0)
    with pytest.raises(ValueError):
        b[0] = 1


def test_shard_bounds():
    assert_array_equal(shard_bounds(10, 3), [0, 4, 7, 10])
    assert_array_equal(shard_bounds(12, 3), [0, 4, 8, 12])
    assert_array_equal(shard_bounds(5, 5), [0, 1, 2, 3, 4, 5])
    assert_array_equal(shard_bounds(7, 1), [0, 7])
    # the same boundaries as numpy's array_split, for many shapes
    for n in range(1, 30):
        for Q in range(1, n + 1):
            sizes = [len(p) for p in np.array_split(np.arange(n), Q)]
            assert_array_equal(np.diff(shard_bounds(n, Q)), sizes)
    with pytest.raises(ValueError, match="n=3 samples over Q=4"):
        shard_bounds(3, 4)


@pytest.mark.parametrize("Q", [1, 2, 3, 5])
def test_shards_concatenate_to_the_batch(Q):
    order = BatchOrder(40, 13, seed=2)
    batch = order.batch(1, 2)
    parts = [shard(batch, q, Q) for q in range(Q)]
    assert_array_equal(np.concatenate(parts), batch)
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)
    assert_array_equal(parts[0], batch[:sizes[0]])


def test_shard_of_uneven_batch_values():
    idx = np.array([9, 4, 7, 1, 0, 3, 8])
    assert_array_equal(shard(idx, 0, 3), [9, 4, 7])
    assert_array_equal(shard(idx, 1, 3), [1, 0])
    assert_array_equal(shard(idx, 2, 3), [3, 8])


@pytest.mark.parametrize("call,match", [
    (lambda: BatchOrder(0, 5, 1), "n_samples=0"),
    (lambda: BatchOrder(10, 0, 1), "batch_size=0"),
    (lambda: BatchOrder(10, 2.5, 1), "batch_size=2.5"),
    (lambda: BatchOrder(10, 5, -1), "seed=-1"),
    (lambda: BatchOrder(10, 5, None), "seed=None"),
    (lambda: BatchOrder(10, 5, 1, drop_last="yes"), "drop_last='yes'"),
    (lambda: BatchOrder(10, 5, 1).permutation(-1), "epoch=-1"),
    (lambda: BatchOrder(10, 5, 1).position(-2), "step=-2"),
    (lambda: BatchOrder(10, 5, 1).global_step(0, 2), "index=2"),
    (lambda: next(BatchOrder(10, 5, 1).batches(-1, 0)), "epoch=-1"),
    (lambda: next(BatchOrder(10, 5, 1).batches(0, 2)), "index=2"),
    (lambda: shard(np.arange(4), 4, 4), "q=4"),
    (lambda: shard(np.arange(4), 0, 0), "Q=0"),
    (lambda: shard(np.arange(2), 0, 3), "n=2 samples over Q=3"),
])
def test_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()
