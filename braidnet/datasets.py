"""Data sets of the paper: peaks (generated) and Indian Pines (hyperspectral), images (the UCI
handwritten digits, MNIST-format IDX files), plus loaders.

Every tabular loader returns ``(X_train, y_train, X_val, y_val)`` with features ``(n_samples,
n_features)`` float64 and integer labels ``(n_samples,)`` in ``[0, n_classes)``; pass
``one_hot=True`` for ``(n_samples, n_classes)`` one-hot rows instead, or convert with
:func:`one_hot` / :func:`labels_from_one_hot`.  :class:`braidnet.resnet.ResNet` accepts both.
Image loaders return images ``(n_samples, height, width)`` float64 with the pixel values of the
source (0-16 for the digits, 0-255 for MNIST); ``X.reshape(len(X), -1)`` gives a dense network's rows.
"""
from __future__ import annotations

import gzip
import logging
import os
from functools import lru_cache
from typing import Optional, Tuple

import numpy as np

from braidnet._checks import count

log = logging.getLogger(__name__)

Split = Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]

PEAKS_GRID = 256
PEAKS_CLASSES = 5


# ------------------------------------------------------------------------------------------------
# labels

def one_hot(labels, n_classes: Optional[int] = None) -> np.ndarray:
    """(n,) integer labels -> (n, n_classes) float64 one-hot rows (n_classes: max + 1 if None)."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or (labels.size and labels.dtype.kind not in "iu"):
        raise ValueError(f"labels must be a 1-D integer array, got shape {labels.shape}, "
                         f"dtype {labels.dtype}")
    if labels.size and labels.min() < 0:
        raise ValueError(f"labels must be >= 0, got label {labels.min()}")
    n_classes = int(labels.max()) + 1 if n_classes is None and labels.size else (n_classes or 0)
    if labels.size and labels.max() >= n_classes:
        raise ValueError(f"labels must be < n_classes={n_classes}, got label {labels.max()}")
    out = np.zeros((labels.size, n_classes))
    out[np.arange(labels.size), labels] = 1.0
    return out


def labels_from_one_hot(Y) -> np.ndarray:
    """(n, n_classes) one-hot rows -> (n,) int64 labels; rows must be exactly one-hot."""
    Y = np.asarray(Y, dtype=np.float64)
    if Y.ndim != 2:
        raise ValueError(f"one-hot labels must be 2-D (n, n_classes), got shape {Y.shape}")
    ok = np.all((Y == 0) | (Y == 1), axis=1) & (Y.sum(axis=1) == 1)
    if not np.all(ok):
        raise ValueError(f"row {int(np.argmin(ok))} of the one-hot labels is not one-hot: "
                         f"{Y[np.argmin(ok)]}")
    return np.argmax(Y, axis=1)


def _out(X_tr, y_tr, X_va, y_va, n_classes: int, as_one_hot: bool) -> Split:
    if as_one_hot:
        return X_tr, one_hot(y_tr, n_classes), X_va, one_hot(y_va, n_classes)
    return X_tr, y_tr, X_va, y_va


# ------------------------------------------------------------------------------------------------
# peaks

def peaks_function(x, y) -> np.ndarray:
    """MATLAB's peaks surface z(x, y)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    return (3.0 * (1.0 - x) ** 2 * np.exp(-x ** 2 - (y + 1.0) ** 2)
            - 10.0 * (x / 5.0 - x ** 3 - y ** 5) * np.exp(-x ** 2 - y ** 2)
            - np.exp(-(x + 1.0) ** 2 - y ** 2) / 3.0)


@lru_cache(maxsize=1)
def _peaks_grid() -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(grid points (256^2, 2), their labels, the 4 class thresholds)."""
    g = np.linspace(-3.0, 3.0, PEAKS_GRID)
    xx, yy = np.meshgrid(g, g)
    pts = np.column_stack([xx.ravel(), yy.ravel()])
    z = peaks_function(pts[:, 0], pts[:, 1])
    mn, mx = z.min(), z.max()
    h = (mx - mn) / PEAKS_CLASSES
    thresholds = mn + np.arange(1, PEAKS_CLASSES) * h
    labels = _classify(z, thresholds)
    for a in (pts, labels, thresholds):
        a.setflags(write=False)
    return pts, labels, thresholds


def _classify(z: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    # class k <=> mn + k h < z <= mn + (k+1) h, i.e. the number of thresholds strictly below z
    return (z[:, None] > thresholds[None, :]).sum(axis=1).astype(np.int64)


def peaks_labels(X) -> np.ndarray:
    """Class (0..4) of points (n, 2) by the peaks rule (thresholds from the 256 x 256 grid).

    Coordinates within 1e-9 of a grid value (e.g. grid points printed with 15 digits) are
    snapped to it first, so grid points read back from text get their exact grid class.
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != 2:
        raise ValueError(f"X must have shape (n, 2), got {X.shape}")
    if not np.all(np.isfinite(X)):
        raise ValueError("X contains NaN or inf")
    g = np.linspace(-3.0, 3.0, PEAKS_GRID)
    idx = np.clip(np.rint((X + 3.0) * (PEAKS_GRID - 1) / 6.0), 0, PEAKS_GRID - 1).astype(np.intp)
    near = np.abs(g[idx] - X) < 1e-9
    Xs = np.where(near, g[idx], X)
    return _classify(peaks_function(Xs[:, 0], Xs[:, 1]), _peaks_grid()[2])


def _split_counts(n: int, k: int) -> np.ndarray:
    counts = np.full(k, n // k)
    counts[: n % k] += 1
    return counts


def peaks(n_train: int = 5000, n_val: int = 200, seed: Optional[int] = None,
          one_hot: bool = False) -> Split:
    """Peaks classification data (Haber & Ruthotto; LPT; docs/design.md section 8).

    Grid points of linspace(-3, 3, 256)^2 are drawn uniformly with replacement, an equal number
    per class (the first ``n % 5`` classes get one more when n is not a multiple of 5), stacked by
    class.  Unlike the published files, validation points are drawn only from grid points that
    are not in the training set.  Returns ``(X_train, y_train, X_val, y_val)``; X is (n, 2) with
    columns x, y.
    """
    n_train = count(n_train, "n_train", 1)
    n_val = count(n_val, "n_val", 0)
    rng = np.random.default_rng(seed)
    pts, labels, _ = _peaks_grid()
    tr_idx, va_idx = [], []
    for k, (ntr, nva) in enumerate(zip(_split_counts(n_train, PEAKS_CLASSES),
                                       _split_counts(n_val, PEAKS_CLASSES))):
        pool = np.flatnonzero(labels == k)
        tr = rng.choice(pool, size=ntr, replace=True)
        rest = np.setdiff1d(pool, tr)
        if nva and rest.size == 0:
            raise ValueError(f"class {k} has no grid points left for validation (n_train={n_train})")
        tr_idx.append(tr)
        va_idx.append(rng.choice(rest, size=nva, replace=True) if nva else rest[:0])
    tr_idx = np.concatenate(tr_idx)
    va_idx = np.concatenate(va_idx)
    return _out(pts[tr_idx].copy(), labels[tr_idx].copy(), pts[va_idx].copy(),
                labels[va_idx].copy(), PEAKS_CLASSES, one_hot)


# ------------------------------------------------------------------------------------------------
# LPT plain-text format

def load_lpt_text(directory: str, one_hot: bool = False) -> Split:
    """Load LPT's plain-text files ``features_{training,validation}.dat`` (one sample per row)
    and ``labels_{training,validation}.dat`` (one-hot rows) from ``directory``."""
    parts = []
    for split in ("training", "validation"):
        fpath = os.path.join(directory, f"features_{split}.dat")
        lpath = os.path.join(directory, f"labels_{split}.dat")
        for p in (fpath, lpath):
            if not os.path.isfile(p):
                raise FileNotFoundError(f"LPT data file not found: {p}")
        X = np.loadtxt(fpath, ndmin=2)
        Y = np.loadtxt(lpath, ndmin=2)
        if X.shape[0] != Y.shape[0]:
            raise ValueError(f"{fpath} has {X.shape[0]} rows but {lpath} has {Y.shape[0]}")
        if not np.all(np.isfinite(X)):
            raise ValueError(f"{fpath} contains NaN or inf")
        try:
            y = labels_from_one_hot(Y)
        except ValueError as e:
            raise ValueError(f"{lpath}: {e}") from None
        parts.append((X, y, Y.shape[1]))
    n_classes = max(parts[0][2], parts[1][2])
    return _out(parts[0][0], parts[0][1], parts[1][0], parts[1][1], n_classes, one_hot)


# ------------------------------------------------------------------------------------------------
# hyperspectral cubes (Indian Pines)

def hyperspectral_split(cube, ground_truth, n_train: int = 1000, n_val: Optional[int] = None,
                        seed: Optional[int] = None, one_hot: bool = False) -> Split:
    """Pixels of a (rows, cols, bands) cube as samples, classes from a (rows, cols) ground truth.

    0-labelled pixels are excluded and label k > 0 becomes class k - 1.  A seeded permutation
    gives ``n_train`` training pixels and ``n_val`` validation pixels from the rest (None: all
    the rest).  Bands are standardised with the mean and standard deviation of the TRAINING
    pixels only (a constant band keeps scale 1).
    """
    cube = np.asarray(cube)
    gt = np.asarray(ground_truth)
    if cube.ndim != 3:
        raise ValueError(f"cube must be 3-D (rows, cols, bands), got shape {cube.shape}")
    if gt.shape != cube.shape[:2]:
        raise ValueError(f"ground truth must have shape {cube.shape[:2]}, got {gt.shape}")
    if gt.dtype.kind not in "iu":
        if gt.dtype.kind != "f" or np.any(gt != np.round(gt)):
            raise ValueError(f"ground truth must hold integer labels, got dtype {gt.dtype}")
    if gt.size and gt.min() < 0:
        raise ValueError(f"ground truth labels must be >= 0, got label {gt.min()}")
    X = cube.reshape(-1, cube.shape[2]).astype(np.float64)
    if not np.all(np.isfinite(X)):
        raise ValueError("cube contains NaN or inf")
    y = gt.reshape(-1).astype(np.int64)
    keep = np.flatnonzero(y > 0)
    n_train = count(n_train, "n_train", 1)
    n_rest = keep.size - n_train
    if n_rest < 0:
        raise ValueError(f"n_train={n_train} exceeds the {keep.size} labelled pixels")
    n_val = n_rest if n_val is None else count(n_val, "n_val", 0)
    if n_val > n_rest:
        raise ValueError(f"n_val={n_val} exceeds the {n_rest} labelled pixels left after training")
    perm = np.random.default_rng(seed).permutation(keep)
    tr, va = perm[:n_train], perm[n_train:n_train + n_val]
    mean = X[tr].mean(axis=0)
    std = X[tr].std(axis=0)
    std[std == 0] = 1.0
    Xs = (X - mean) / std
    n_classes = int(y.max())
    return _out(Xs[tr], y[tr] - 1, Xs[va], y[va] - 1, n_classes, one_hot)


def indian_pines(n_train: int = 1000, n_val: Optional[int] = None, seed: Optional[int] = None,
                 one_hot: bool = False) -> Split:
    """Indian Pines (145 x 145 pixels, 200 bands, 16 classes) from the copy that the PyPI package
    ``tensorly`` ships (``tensorly.datasets.load_indian_pines``; no network access needed).

    The paper used the 220-band uncorrected cube: load it with :func:`indian_pines_mat`.  Split
    and standardisation as in :func:`hyperspectral_split`.
    """
    try:
        from tensorly.datasets import load_indian_pines
    except ImportError as e:
        raise ImportError("indian_pines() needs the optional dependency tensorly: "
                          "`pip install tensorly` or `pip install braidnet[data]`") from e
    bunch = load_indian_pines()
    cube = np.asarray(bunch["tensor"])
    gt = np.asarray(bunch["ticks"][0])
    return hyperspectral_split(cube, gt, n_train, n_val, seed, one_hot)


def load_mat(path: str, key: Optional[str] = None) -> np.ndarray:
    """One array from a MATLAB ``.mat`` file (``key`` may be omitted when it holds only one)."""
    import scipy.io

    if not os.path.isfile(path):
        raise FileNotFoundError(f".mat file not found: {path}")
    data = {k: v for k, v in scipy.io.loadmat(path).items() if not k.startswith("__")}
    if key is None:
        if len(data) != 1:
            raise ValueError(f"{path} holds variables {sorted(data)}: pass key=")
        return np.asarray(next(iter(data.values())))
    if key not in data:
        raise ValueError(f"key={key!r} not in {path}; it holds {sorted(data)}")
    return np.asarray(data[key])


def indian_pines_mat(cube_path: str, gt_path: str, n_train: int = 1000,
                     n_val: Optional[int] = None, seed: Optional[int] = None,
                     cube_key: Optional[str] = None, gt_key: Optional[str] = None,
                     one_hot: bool = False) -> Split:
    """A user's own cube, e.g. the 220-band ``Indian_pines.mat`` and ``Indian_pines_gt.mat``."""
    return hyperspectral_split(load_mat(cube_path, cube_key), load_mat(gt_path, gt_key),
                               n_train, n_val, seed, one_hot)


# ------------------------------------------------------------------------------------------------
# images

DIGITS_SHAPE = (8, 8)
DIGITS_CLASSES = 10


def digits(n_val: int = 297, seed: Optional[int] = None, one_hot: bool = False) -> Split:
    """The UCI handwritten digits as scikit-learn ships them (1,797 images of 8 x 8 pixels with
    values 0-16, 10 classes; no network access needed), split into training and validation images
    by ``seed``, stratified by class (each class keeps its share in both parts).

    Returns ``(X_train, y_train, X_val, y_val)``, X ``(n, 8, 8)`` float64.  Needs the optional
    dependency scikit-learn (``pip install braidnet[data]``).
    """
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError as e:
        raise ImportError("digits() needs the optional dependency scikit-learn: "
                          "`pip install scikit-learn` or `pip install braidnet[data]`") from e
    bunch = load_digits()
    X = np.asarray(bunch.images, dtype=np.float64)
    y = np.asarray(bunch.target, dtype=np.int64)
    n_val = count(n_val, "n_val", DIGITS_CLASSES)
    if n_val > len(y) - DIGITS_CLASSES:
        raise ValueError(f"n_val must be at most {len(y) - DIGITS_CLASSES} (the digits hold {len(y)} "
                         f"images, and training needs one per class), got {n_val}")
    X_tr, X_va, y_tr, y_va = train_test_split(X, y, test_size=n_val, stratify=y, random_state=seed)
    return _out(X_tr, y_tr, X_va, y_va, DIGITS_CLASSES, one_hot)


#: IDX element types: the third byte of the magic number -> big-endian numpy dtype
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str) -> np.ndarray:
    """One array from an IDX file (the MNIST format; gzip-compressed or not, told by its first bytes).

    The file is a 4-byte magic number (two zero bytes, the element type, the number of dimensions),
    one big-endian 32-bit size per dimension, then the elements, big-endian, row-major.  A file that
    is not that, is cut short or has bytes left over raises one ValueError naming the file.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"IDX file not found: {path}")
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise ValueError(f"{path} is a damaged gzip file ({e})") from None
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] not in _IDX_TYPES:
        raise ValueError(f"{path} is not an IDX file (its magic number is {raw[:4].hex() or 'missing'}; "
                         f"expected 0000, an element type in {sorted(hex(t) for t in _IDX_TYPES)} and "
                         f"the number of dimensions)")
    ndim = raw[3]
    head = 4 + 4 * ndim
    if ndim == 0 or len(raw) < head:
        raise ValueError(f"{path}: an IDX header of {ndim} dimensions needs {head} bytes, the file has "
                         f"{len(raw)}")
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", ndim, 4))
    dtype = np.dtype(_IDX_TYPES[raw[2]])
    want = head + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) != want:
        raise ValueError(f"{path}: shape {shape} of {dtype.name} needs {want} bytes, the file has "
                         f"{len(raw)} ({'cut short' if len(raw) < want else 'bytes left over'})")
    return np.frombuffer(raw, dtype, offset=head).reshape(shape).astype(dtype.newbyteorder("="))


def idx(images: str, labels: str) -> Tuple[np.ndarray, np.ndarray]:
    """Images and labels from a pair of MNIST-format IDX files, e.g. MNIST's or Fashion-MNIST's
    ``train-images-idx3-ubyte.gz`` and ``train-labels-idx1-ubyte.gz`` (see :func:`read_idx`).

    Returns ``(X, y)``: X ``(n, rows, cols)`` float64 pixel values, y ``(n,)`` int64 labels >= 0.
    """
    X, y = read_idx(images), read_idx(labels)
    if X.ndim != 3:
        raise ValueError(f"{images}: images must be 3-D (n, rows, cols), got shape {X.shape}")
    if y.ndim != 1:
        raise ValueError(f"{labels}: labels must be 1-D (n,), got shape {y.shape}")
    if len(X) != len(y):
        raise ValueError(f"{images} holds {len(X)} images but {labels} {len(y)} labels")
    if y.dtype.kind not in "iu":
        raise ValueError(f"{labels}: labels must be integers, got {y.dtype.name}")
    if y.size and y.min() < 0:
        raise ValueError(f"{labels}: labels must be >= 0, got label {int(y.min())}")
    return X.astype(np.float64), y.astype(np.int64)
