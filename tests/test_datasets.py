"""Data sets: the peaks rule against the published files, splits, loaders, errors."""
import sys
from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_allclose

from braidnet import datasets as D

# ../shared/data relative to the repository root (absent in a user's checkout)
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
LPT = SHARED / "peaks-lpt"
needs_lpt = pytest.mark.skipif(not (LPT / "features_training.dat").is_file(),
                               reason=f"{LPT} is absent")


@needs_lpt
def test_peaks_rule_reproduces_published_labels():
    Xt, yt, Xv, yv = D.load_lpt_text(str(LPT))
    assert Xt.shape == (5000, 2) and Xv.shape == (200, 2)
    assert np.bincount(yt).tolist() == [1000] * 5 and np.bincount(yv).tolist() == [40] * 5
    assert_allclose(D.peaks_labels(Xt), yt, rtol=0, atol=0)
    assert_allclose(D.peaks_labels(Xv), yv, rtol=0, atol=0)
    Yt = D.load_lpt_text(str(LPT), one_hot=True)[1]
    assert Yt.shape == (5000, 5) and np.all(D.labels_from_one_hot(Yt) == yt)


def test_peaks_split():
    Xt, yt, Xv, yv = D.peaks(1000, 203, seed=3)
    assert Xt.shape == (1000, 2) and Xv.shape == (203, 2)
    assert np.bincount(yt).tolist() == [200] * 5
    assert np.bincount(yv).tolist() == [41, 41, 41, 40, 40]
    assert np.all(np.diff(yt) >= 0) and np.all(np.diff(yv) >= 0)       # stacked by class
    assert np.all(D.peaks_labels(Xt) == yt) and np.all(D.peaks_labels(Xv) == yv)
    grid = np.linspace(-3, 3, 256)
    assert np.all(np.isin(Xt, grid)) and np.all(np.isin(Xv, grid))
    train = {tuple(r) for r in Xt}
    assert not any(tuple(r) in train for r in Xv)                       # disjoint
    again = D.peaks(1000, 203, seed=3)
    for a, b in zip((Xt, yt, Xv, yv), again):
        assert_allclose(a, b, rtol=0, atol=0)
    assert not np.array_equal(D.peaks(1000, 203, seed=4)[0], Xt)
    _, Yt, _, Yv = D.peaks(10, 5, seed=0, one_hot=True)
    assert Yt.shape == (10, 5) and Yv.shape == (5, 5) and np.all(Yt.sum(axis=1) == 1)


def test_one_hot_helpers():
    y = np.array([2, 0, 1, 2])
    Y = D.one_hot(y, 4)
    assert Y.shape == (4, 4) and np.all(D.labels_from_one_hot(Y) == y)
    assert D.one_hot(y).shape == (4, 3)
    with pytest.raises(ValueError, match="labels must be < n_classes=2, got label 2"):
        D.one_hot(y, 2)
    with pytest.raises(ValueError, match="got label -1"):
        D.one_hot(np.array([0, -1]))
    with pytest.raises(ValueError, match="row 1 of the one-hot labels is not one-hot"):
        D.labels_from_one_hot(np.array([[1.0, 0.0], [0.5, 0.5]]))


def test_load_lpt_text_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="features_training.dat"):
        D.load_lpt_text(str(tmp_path))
    for split, n in (("training", 3), ("validation", 2)):
        np.savetxt(tmp_path / f"features_{split}.dat", np.zeros((n, 2)))
        np.savetxt(tmp_path / f"labels_{split}.dat", np.eye(3)[:n])
    Xt, yt, Xv, yv = D.load_lpt_text(str(tmp_path))
    assert yt.tolist() == [0, 1, 2] and yv.tolist() == [0, 1]
    np.savetxt(tmp_path / "labels_validation.dat", np.eye(3))
    with pytest.raises(ValueError, match="has 2 rows but"):
        D.load_lpt_text(str(tmp_path))
    np.savetxt(tmp_path / "features_training.dat", np.array([[0.0, np.nan]] * 3))
    with pytest.raises(ValueError, match="NaN"):
        D.load_lpt_text(str(tmp_path))


def fake_cube(seed=0):
    rng = np.random.default_rng(seed)
    cube = rng.uniform(1000, 5000, size=(12, 10, 7)).astype(np.uint16)
    cube[..., 3] = 42                                   # a constant band
    gt = rng.integers(0, 5, size=(12, 10)).astype(np.uint8)
    cube[..., 0] = np.arange(120).reshape(12, 10)       # band 0 identifies the pixel
    cube[..., 1] = gt                                   # band 1 encodes the label
    return cube, gt


def test_hyperspectral_split():
    cube, gt = fake_cube()
    n_lab = int(np.count_nonzero(gt))
    Xt, yt, Xv, yv = D.hyperspectral_split(cube, gt, n_train=40, seed=1)
    assert Xt.shape == (40, 7) and Xv.shape == (n_lab - 40, 7)
    assert yt.min() >= 0 and max(yt.max(), yv.max()) <= 3
    assert_allclose(Xt.mean(axis=0), 0.0, rtol=0, atol=1e-12)
    std = Xt.std(axis=0)
    assert_allclose(np.delete(std, 3), 1.0, rtol=1e-12, atol=0)
    assert_allclose(Xt[:, 3], 0.0, rtol=0, atol=0)
    # every labelled pixel exactly once (band 0 is an affine image of the pixel index) ...
    assert np.unique(np.concatenate([Xt[:, 0], Xv[:, 0]])).size == n_lab
    # ... with its own label (band 1 is an increasing affine image of gt = label + 1)
    for X, y in ((Xt, yt), (Xv, yv)):
        assert np.all(np.diff(y[np.argsort(X[:, 1], kind="stable")]) >= 0)
    Xt2, _, Xv2, _ = D.hyperspectral_split(cube, gt, n_train=40, n_val=10, seed=1)
    assert_allclose(Xt2, Xt, rtol=0, atol=0)
    assert_allclose(Xv2, Xv[:10], rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"n_train=1000 exceeds the \d+ labelled pixels"):
        D.hyperspectral_split(cube, gt, n_train=1000)
    with pytest.raises(ValueError, match="n_val=500 exceeds"):
        D.hyperspectral_split(cube, gt, n_train=10, n_val=500)
    with pytest.raises(ValueError, match=r"ground truth must have shape \(12, 10\)"):
        D.hyperspectral_split(cube, gt[:5], n_train=10)
    with pytest.raises(ValueError, match="cube must be 3-D"):
        D.hyperspectral_split(cube[..., 0], gt, n_train=10)
    bad = cube.astype(float)
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="cube contains NaN"):
        D.hyperspectral_split(bad, gt, n_train=10)


def test_mat_loader(tmp_path):
    scipy_io = pytest.importorskip("scipy.io")
    cube, gt = fake_cube(1)
    scipy_io.savemat(tmp_path / "cube.mat", {"indian_pines": cube})
    scipy_io.savemat(tmp_path / "gt.mat", {"indian_pines_gt": gt, "other": np.zeros(2)})
    assert_allclose(D.load_mat(str(tmp_path / "cube.mat")), cube, rtol=0, atol=0)
    with pytest.raises(ValueError, match="pass key="):
        D.load_mat(str(tmp_path / "gt.mat"))
    with pytest.raises(ValueError, match="key='nope' not in"):
        D.load_mat(str(tmp_path / "gt.mat"), "nope")
    with pytest.raises(FileNotFoundError, match="missing.mat"):
        D.load_mat(str(tmp_path / "missing.mat"))
    out = D.indian_pines_mat(str(tmp_path / "cube.mat"), str(tmp_path / "gt.mat"), n_train=30,
                             seed=0, gt_key="indian_pines_gt")
    ref = D.hyperspectral_split(cube, gt, n_train=30, seed=0)
    for a, b in zip(out, ref):
        assert_allclose(a, b, rtol=0, atol=0)


def test_indian_pines_missing_dependency(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorly", None)
    monkeypatch.setitem(sys.modules, "tensorly.datasets", None)
    with pytest.raises(ImportError, match=r"pip install tensorly.*pip install braidnet\[data\]"):
        D.indian_pines()


def test_indian_pines_from_tensorly():
    pytest.importorskip("tensorly")
    Xt, yt, Xv, yv = D.indian_pines(n_train=1000, n_val=500, seed=0)
    assert Xt.shape == (1000, 200) and Xv.shape == (500, 200)
    assert yt.min() >= 0 and max(yt.max(), yv.max()) == 15
    assert_allclose(Xt.mean(axis=0), 0.0, rtol=0, atol=1e-10)
    assert_allclose(Xt.std(axis=0), 1.0, rtol=1e-10, atol=0)
    Xall = D.indian_pines(n_train=1000, seed=0)[2]
    assert Xall.shape[0] == 10249 - 1000                 # every other labelled pixel


def test_bad_counts():
    with pytest.raises(ValueError, match="n_train=0"):
        D.peaks(0, 10)
    with pytest.raises(ValueError, match="n_val=-1"):
        D.peaks(10, -1)
    with pytest.raises(ValueError, match=r"X must have shape \(n, 2\)"):
        D.peaks_labels(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="X contains NaN"):
        D.peaks_labels(np.array([[0.0, np.nan]]))


# ------------------------------------------------------------------------------------------------
# images

def test_digits_stratified_split_by_seed():
    pytest.importorskip("sklearn")
    Xt, yt, Xv, yv = D.digits(n_val=297, seed=3)
    assert Xt.shape == (1500, 8, 8) and Xv.shape == (297, 8, 8) and Xt.dtype == np.float64
    assert Xt.min() == 0 and Xt.max() == 16
    # stratified: each class's share of the validation part is its share of the whole, to one image
    counts = np.bincount(np.concatenate([yt, yv]), minlength=10)
    assert np.all(np.abs(np.bincount(yv, minlength=10) - counts * 297 / 1797) <= 1)
    # no image in both parts, the parts together are the data set
    from sklearn.datasets import load_digits
    whole = load_digits().images.reshape(1797, -1)
    rows = {r.tobytes() for r in np.concatenate([Xt, Xv]).reshape(1797, -1)}
    assert rows == {r.tobytes() for r in whole.astype(np.float64)}
    # reproducible from the seed, another seed another split
    again = D.digits(n_val=297, seed=3)
    np.testing.assert_array_equal(again[0], Xt)
    np.testing.assert_array_equal(again[3], yv)
    assert not np.array_equal(D.digits(n_val=297, seed=4)[1], yt)
    Y = D.digits(n_val=100, seed=0, one_hot=True)[1]
    assert Y.shape == (1697, 10) and np.all(Y.sum(axis=1) == 1)
    with pytest.raises(ValueError, match="n_val must be at most 1787"):
        D.digits(n_val=1790)


def test_digits_missing_dependency(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match=r"pip install scikit-learn.*pip install braidnet\[data\]"):
        D.digits()


def _idx_bytes(a: np.ndarray, code: int) -> bytes:
    """An IDX file written by the format's definition (magic, big-endian sizes, big-endian data)."""
    head = bytes([0, 0, code, a.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in a.shape)
    return head + a.astype(a.dtype.newbyteorder(">")).tobytes()


@pytest.mark.parametrize("compress", [False, True])
def test_idx_round_trip(tmp_path, compress):
    import gzip
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(7, 5, 4), dtype=np.uint8)
    labels = rng.integers(0, 10, size=7, dtype=np.uint8)
    pack = gzip.compress if compress else bytes
    (tmp_path / "im").write_bytes(pack(_idx_bytes(images, 0x08)))
    (tmp_path / "lb").write_bytes(pack(_idx_bytes(labels, 0x08)))
    X, y = D.idx(str(tmp_path / "im"), str(tmp_path / "lb"))
    assert X.dtype == np.float64 and y.dtype == np.int64
    np.testing.assert_array_equal(X, images)
    np.testing.assert_array_equal(y, labels)
    # every element type of the format, big-endian on disk
    for code, dtype in [(0x09, np.int8), (0x0B, np.int16), (0x0C, np.int32), (0x0D, np.float32),
                        (0x0E, np.float64)]:
        a = (rng.standard_normal((3, 2)) * 100).astype(dtype)
        (tmp_path / "a").write_bytes(pack(_idx_bytes(a, code)))
        got = D.read_idx(str(tmp_path / "a"))
        assert got.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(got, a)


def test_idx_bad_files(tmp_path):
    good = _idx_bytes(np.zeros((2, 3, 3), np.uint8), 0x08)
    labels = _idx_bytes(np.array([1, 2], np.uint8), 0x08)
    (tmp_path / "lb").write_bytes(labels)

    def fails(data: bytes, *fragments, label_data=None):
        (tmp_path / "im").write_bytes(data)
        if label_data is not None:
            (tmp_path / "lb").write_bytes(label_data)
        with pytest.raises(ValueError) as e:
            D.idx(str(tmp_path / "im"), str(tmp_path / "lb"))
        (tmp_path / "lb").write_bytes(labels)
        msg = str(e.value)
        assert "\n" not in msg
        for f in fragments:
            assert f in msg, msg

    fails(b"", "is not an IDX file", "missing")
    fails(b"PK\x03\x04rest", "is not an IDX file", "504b0304")
    fails(bytes([0, 0, 0x07, 3]) + good[4:], "is not an IDX file")
    fails(good[:10], "header of 3 dimensions needs 16 bytes, the file has 10")
    fails(good[:-1], "needs 34 bytes, the file has 33", "cut short")
    fails(good + b"\x00", "bytes left over")
    fails(b"\x1f\x8b\x08\x00garbage", "damaged gzip file")
    fails(_idx_bytes(np.zeros((2, 9), np.uint8), 0x08), "images must be 3-D")
    fails(good, "holds 2 images but", "3 labels", label_data=_idx_bytes(np.array([1, 2, 3], np.uint8), 0x08))
    fails(good, "labels must be 1-D", label_data=_idx_bytes(np.zeros((2, 1), np.uint8), 0x08))
    fails(good, "labels must be integers", label_data=_idx_bytes(np.zeros(2, np.float32), 0x0D))
    fails(good, "labels must be >= 0", label_data=_idx_bytes(np.array([1, -1], np.int8), 0x09))
    with pytest.raises(FileNotFoundError, match="IDX file not found"):
        D.read_idx(str(tmp_path / "nothing"))
