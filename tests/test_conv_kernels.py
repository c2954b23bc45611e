"""The compiled convolution kernels (braidnet._convkernels, issue 15) against a direct numpy loop
convolution, finite differences and the adjoint identity, on both paths (direct loops, im2col+GEMM).

State blocks are (c, H, W, batch), batch fastest; kernels K (c_out, c_in, k, k); the convolution
is a correlation with "same" zero padding, stride 1.
"""
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from test_kernels import ACTS, dsigma, sigma   # the activations' numpy reference

from braidnet import _convkernels as C

PATHS = ["direct", "gemm"]
# (c, k, H, W, batch): k = 1, 3, 5 (the unrolled direct loops) and 7 (the generic one), c = 1..8,
# H != W, batch 1 and odd batches
SHAPES = [(1, 1, 5, 4, 1), (2, 3, 6, 9, 3), (3, 3, 7, 5, 1), (4, 3, 8, 8, 7), (5, 5, 6, 7, 3),
          (8, 3, 5, 6, 2), (3, 5, 9, 4, 5), (6, 1, 4, 7, 9), (2, 7, 8, 9, 2), (7, 3, 4, 3, 33)]


# ---- the numpy reference ------------------------------------------------------------------------

def pad(x, p):
    return np.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))


def ref_corr(K, x):
    """z[o, y, x] = sum_{i,dy,dx} K[o,i,dy,dx] x[i, y+dy-p, x+dx-p]: a loop over the taps."""
    co, ci, k, _ = K.shape
    _, H, W, B = x.shape
    xp = pad(x, k // 2)
    z = np.zeros((co, H, W, B))
    for o in range(co):
        for i in range(ci):
            for dy in range(k):
                for dx in range(k):
                    z[o] += K[o, i, dy, dx] * xp[i, dy:dy + H, dx:dx + W]
    return z


def ref_corr_transpose(K, d):
    """The transpose of ref_corr, as the scatter-add it is (independent of the kernels' flipped
    kernel): x[i, y+dy-p, x+dx-p] += K[o,i,dy,dx] d[o, y, x]."""
    co, ci, k, _ = K.shape
    _, H, W, B = d.shape
    p = k // 2
    xp = np.zeros((ci, H + 2 * p, W + 2 * p, B))
    for o in range(co):
        for i in range(ci):
            for dy in range(k):
                for dx in range(k):
                    xp[i, dy:dy + H, dx:dx + W] += K[o, i, dy, dx] * d[o]
    return xp[:, p:p + H, p:p + W]


def ref_wgrad(d, x, k):
    """g[o, i, dy, dx] = sum_{y,x,s} d[o,y,x,s] x[i, y+dy-p, x+dx-p, s]."""
    co, H, W, _ = d.shape
    ci = x.shape[0]
    xp = pad(x, k // 2)
    g = np.zeros((co, ci, k, k))
    for o in range(co):
        for i in range(ci):
            for dy in range(k):
                for dx in range(k):
                    g[o, i, dy, dx] = np.sum(d[o] * xp[i, dy:dy + H, dx:dx + W])
    return g


def bias_sums(D, nb):
    s = D.reshape(D.shape[0], -1).sum(axis=1)
    return s if nb == D.shape[0] else np.array([s.sum()])


def make(c, k, H, W, B, nb, seed=0, c_in=None):
    rng = np.random.default_rng(seed)
    c_in = c if c_in is None else c_in
    K = rng.standard_normal((c, c_in, k, k)) * 0.4 / k
    b = rng.standard_normal(nb) * 0.1
    u = rng.standard_normal((c_in, H, W, B))
    lam = rng.standard_normal((c, H, W, B))
    return K, b, u, lam


def close(got, ref, rtol):
    """Max-norm relative agreement: max|got - ref| <= rtol * max|ref|."""
    scale = max(np.max(np.abs(ref)), 1e-300)
    err = np.max(np.abs(got - ref)) / scale
    assert err <= rtol, f"relative error {err:.3e} > {rtol:.1e}"


# ---- the reference itself ---------------------------------------------------------------------

def test_reference_matches_scipy_correlate2d():
    signal = pytest.importorskip("scipy.signal")
    K, _, u, _ = make(3, 5, 7, 6, 2, 1, seed=1, c_in=2)
    z = ref_corr(K, u)
    for o in range(3):
        for s in range(2):
            expected = sum(signal.correlate2d(u[i, :, :, s], K[o, i], mode="same", boundary="fill")
                           for i in range(2))
            assert_allclose(z[o, :, :, s], expected, rtol=1e-13, atol=1e-13)
    # and the scatter is its transpose
    d = np.random.default_rng(2).standard_normal(z.shape)
    assert_allclose(np.vdot(z, d), np.vdot(u, ref_corr_transpose(K, d)), rtol=1e-13)


# ---- forward ----------------------------------------------------------------------------------

@pytest.mark.parametrize("path", PATHS + ["auto"])
@pytest.mark.parametrize("shape", SHAPES)
def test_apply_matches_reference(shape, path):
    c, k, H, W, B = shape
    K, _, u, _ = make(c, k, H, W, B, 1, c_in=max(1, c - 1))
    z = C.conv_apply(K, u, path=path)
    assert z.shape == (c, H, W, B)
    close(z, ref_corr(K, u), 1e-13)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("scalar", [False, True])
@pytest.mark.parametrize("shape", SHAPES)
def test_forward_matches_reference(shape, scalar, act, path):
    c, k, H, W, B = shape
    K, b, u, _ = make(c, k, H, W, B, 1 if scalar else c)
    h = 0.37
    expected = u + h * sigma(act, ref_corr(K, u) + b[:, None, None, None])
    close(C.conv_forward(K, b, u, h, act, path=path), expected, 1e-13)
    # in place, with a caller workspace and the integer codes
    v = u.copy()
    work = np.full(C.conv_work_size(c, c, k, H, W, B, path), np.nan)
    out = C.conv_forward(K, b, v, h, C.ACTIVATIONS[act], u_out=v, work=work, path=C.PATHS[path])
    assert out is v
    close(v, expected, 1e-13)


# ---- adjoint and gradient ---------------------------------------------------------------------

@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("scalar", [False, True])
@pytest.mark.parametrize("shape", SHAPES)
def test_backward_matches_reference(shape, scalar, act, path):
    c, k, H, W, B = shape
    nb = 1 if scalar else c
    K, b, u, lam = make(c, k, H, W, B, nb, seed=3)
    h = 0.29
    D = dsigma(act, ref_corr(K, u) + b[:, None, None, None]) * lam
    lam_ref = lam + h * ref_corr_transpose(K, D)
    gK0 = np.random.default_rng(4).standard_normal(K.shape)     # accumulated into
    gb0 = np.random.default_rng(5).standard_normal(nb)
    gK_ref = gK0 + h * ref_wgrad(D, u, k)
    gb_ref = gb0 + h * bias_sums(D, nb)

    gK, gb = gK0.copy(), gb0.copy()
    lam_out = C.conv_backward(K, b, u, lam, h, act, gK, gb, path=path)
    close(lam_out, lam_ref, 1e-13)
    close(gK - gK0, gK_ref - gK0, 1e-12)
    close(gb - gb0, gb_ref - gb0, 1e-12)

    # the adjoint alone, in place
    v = lam.copy()
    assert C.conv_adjoint(K, b, u, v, h, act, lam_out=v, path=path) is v
    close(v, lam_ref, 1e-13)
    # the gradient alone leaves lam alone and accumulates the same
    gK2, gb2 = gK0.copy(), gb0.copy()
    lam_copy = lam.copy()
    assert C.conv_gradient(K, b, u, lam, h, act, gK2, gb2, path=path) is None
    assert_array_equal(lam, lam_copy)
    assert_array_equal(gK2, gK)
    assert_array_equal(gb2, gb)
    # backward in place: lam_out is lam_in
    gK3, gb3 = gK0.copy(), gb0.copy()
    w = lam.copy()
    C.conv_backward(K, b, u, w, h, act, gK3, gb3, lam_out=w, path=path)
    assert_array_equal(w, lam_out)
    assert_array_equal(gK3, gK)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("shape", [(1, 1, 5, 4, 1), (4, 3, 8, 8, 7), (5, 5, 6, 7, 3), (2, 7, 8, 9, 2)])
def test_adjoint_identity(shape, act, path):
    """<J v, w> = <v, J^T w> for the step map u -> u + h sigma(K * u + b) and its parameters."""
    c, k, H, W, B = shape
    K, b, u, w = make(c, k, H, W, B, c, seed=6)
    rng = np.random.default_rng(7)
    v, dK, db = rng.standard_normal(u.shape), rng.standard_normal(K.shape), rng.standard_normal(c)
    h = 0.41
    ds = dsigma(act, C.conv_apply(K, u, path=path) + b[:, None, None, None])
    Jv = v + h * ds * C.conv_apply(K, v, path=path)
    JTw = C.conv_adjoint(K, b, u, w, h, act, path=path)
    lhs, rhs = np.vdot(Jv, w), np.vdot(v, JTw)
    assert abs(lhs - rhs) <= 1e-12 * abs(lhs), (lhs, rhs)
    # parameters: d/dK, d/db of <u_out, w> in directions dK, db
    Jp = h * ds * (C.conv_apply(dK, u, path=path) + db[:, None, None, None])
    gK, gb = np.zeros_like(K), np.zeros_like(b)
    C.conv_gradient(K, b, u, w, h, act, gK, gb, path=path)
    lhs, rhs = np.vdot(Jp, w), np.vdot(dK, gK) + np.vdot(db, gb)
    assert abs(lhs - rhs) <= 1e-12 * abs(lhs), (lhs, rhs)


@pytest.mark.parametrize("path", PATHS)
def test_adjoint_is_the_transposed_correlation(path):
    """Where K * u + b > 0 everywhere, relu' = 1 and the adjoint is lam + h K^T * lam exactly:
    compared with the reference scatter-add, for a non-symmetric kernel and c = 4, k = 3 and 5."""
    for k in (3, 5):
        K, _, u, lam = make(4, k, 9, 7, 5, 1, seed=8)
        K, u = np.abs(K), np.abs(u) + 1.0
        out = C.conv_adjoint(K, np.full(4, 0.1), u, lam, 1.0, "relu", path=path)
        close(out - lam, ref_corr_transpose(K, lam), 1e-13)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("scalar", [False, True])
def test_finite_differences(act, scalar, path):
    """Central differences of phi = <w, u_out> in u, K, b against the adjoint and the gradient."""
    c, k, H, W, B = 3, 3, 5, 6, 3
    nb = 1 if scalar else c
    K, b, u, w = make(c, k, H, W, B, nb, seed=12)
    rng = np.random.default_rng(13)
    v, dK, db = rng.standard_normal(u.shape), rng.standard_normal(K.shape), rng.standard_normal(nb)
    h, eps = 0.5, 1e-6

    def phi(K_, b_, u_):
        return np.vdot(w, C.conv_forward(K_, b_, u_, h, act, path=path))

    fd_u = (phi(K, b, u + eps * v) - phi(K, b, u - eps * v)) / (2 * eps)
    fd_K = (phi(K + eps * dK, b, u) - phi(K - eps * dK, b, u)) / (2 * eps)
    fd_b = (phi(K, b + eps * db, u) - phi(K, b - eps * db, u)) / (2 * eps)
    gK, gb = np.zeros_like(K), np.zeros_like(b)
    lam = C.conv_backward(K, b, u, w, h, act, gK, gb, path=path)
    assert_allclose(np.vdot(v, lam), fd_u, rtol=1e-7)
    assert_allclose(np.vdot(dK, gK), fd_K, rtol=1e-7)
    assert_allclose(np.vdot(db, gb), fd_b, rtol=1e-7)


# ---- the two paths ----------------------------------------------------------------------------

@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("shape", SHAPES + [
    (4, 5, 28, 28, 100),    # GEMM columns of one image row per tile (4*25*28*100 > COLS_DOUBLES)
    (2, 3, 10, 20, 200),    # tiles of 3 rows and a partial last tile
])
def test_paths_agree(shape, act):
    c, k, H, W, B = shape
    K, b, u, lam = make(c, k, H, W, B, c, seed=14)
    rows = max(1, min(H, C.COLS_DOUBLES // (c * k * k * W * B)))
    if shape[2] == 28:
        assert rows == 1
    if shape[2] == 10:
        assert rows == 3
    out = {}
    for path in PATHS:
        gK, gb = np.zeros_like(K), np.zeros_like(b)
        fwd = C.conv_forward(K, b, u, 0.3, act, path=path)
        lo = C.conv_backward(K, b, u, lam, 0.3, act, gK, gb, path=path)
        out[path] = (fwd, lo, gK, gb)
    for a, g in zip(out["direct"], out["gemm"]):
        close(a, g, 1e-13)


def test_path_rule():
    """The documented rule (module docstring): direct for few channel pairs, by k."""
    assert C.conv_path(4, 4, 3, 28, 28, 100) == "direct"
    assert C.conv_path(16, 16, 3, 28, 28, 100) == "direct"
    assert C.conv_path(17, 16, 3, 28, 28, 100) == "gemm"
    assert C.conv_path(8, 8, 3, 28, 28, 1) == "gemm"          # short rows: W*batch < 256
    assert C.conv_path(4, 4, 3, 28, 28, 1) == "direct"
    assert C.conv_path(4, 4, 1, 8, 8, 100) == "direct"
    assert C.conv_path(5, 4, 1, 8, 8, 100) == "gemm"
    assert C.conv_path(2, 2, 5, 8, 8, 100) == "direct"
    assert C.conv_path(3, 2, 5, 8, 8, 100) == "gemm"
    assert C.conv_path(1, 1, 7, 8, 8, 100) == "direct"
    assert C.conv_path(2, 1, 7, 8, 8, 100) == "gemm"
    assert C.conv_path(64, 64, 3, 8, 8, 100, path="direct") == "direct"
    assert C.conv_path(1, 1, 3, 8, 8, 100, path="gemm") == "gemm"
    # the GEMM path needs the columns' scratch on top of the direct path's
    assert C.conv_work_size(4, 4, 3, 28, 28, 100, "gemm") > C.conv_work_size(4, 4, 3, 28, 28, 100, "direct")
    assert C.conv_work_size(4, 4, 3, 28, 28, 100) == C.conv_work_size(4, 4, 3, 28, 28, 100, "direct")


# ---- openings and pooling ---------------------------------------------------------------------

@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("scalar", [False, True])
@pytest.mark.parametrize("c,c_in,k,H,W,B", [(4, 1, 3, 6, 5, 3), (3, 2, 5, 7, 8, 1), (8, 3, 1, 4, 5, 9),
                                            (2, 1, 7, 9, 8, 2)])
def test_conv_opening(c, c_in, k, H, W, B, scalar, act, path):
    nb = 1 if scalar else c
    K, b, x, lam0 = make(c, k, H, W, B, nb, seed=15, c_in=c_in)
    z = ref_corr(K, x) + b[:, None, None, None]
    u = C.conv_opening_forward(K, b, x, act, path=path)
    close(u, sigma(act, z), 1e-13)
    gK0 = np.ones_like(K)
    gK, gb = gK0.copy(), np.ones_like(b)
    C.conv_opening_gradient(K, b, x, lam0, act, gK, gb, path=path)
    D = dsigma(act, z) * lam0
    close(gK - gK0, ref_wgrad(D, x, k), 1e-12)
    close(gb - 1.0, bias_sums(D, nb), 1e-12)
    # finite differences of <lam0, u(K, b)>
    rng = np.random.default_rng(16)
    dK, db, eps = rng.standard_normal(K.shape), rng.standard_normal(nb), 1e-6
    phi = lambda K_, b_: np.vdot(lam0, C.conv_opening_forward(K_, b_, x, act, path=path))  # noqa: E731
    fd = (phi(K + eps * dK, b + eps * db) - phi(K - eps * dK, b - eps * db)) / (2 * eps)
    assert_allclose(np.vdot(dK, gK - gK0) + np.vdot(db, gb - 1.0), fd, rtol=1e-7)


def test_replicating_openings():
    rng = np.random.default_rng(17)
    x = rng.integers(0, 256, size=(7, 5, 3)).astype(float)
    u = C.opening_replicate(x, 4)
    assert u.shape == (4, 7, 5, 3)
    for ch in range(4):
        assert_array_equal(u[ch], x)
    m = C.opening_mnist(x, 3)
    expected = np.tanh(6 * x / 255 - 3) + 1
    for ch in range(3):
        assert_allclose(m[ch], expected, rtol=1e-15, atol=4e-16)
    out = np.full((2, 7, 5, 3), np.nan)
    assert C.opening_mnist(x, 2, u_out=out) is out
    assert_allclose(out[1], expected, rtol=1e-15, atol=4e-16)
    # extremes: black pixels to tanh(-3) + 1, white to tanh(3) + 1
    assert_allclose(C.opening_mnist(np.array([[[0.0, 255.0]]]), 1)[0, 0, 0],
                    [np.tanh(-3) + 1, np.tanh(3) + 1], rtol=1e-15)


def test_pooling():
    rng = np.random.default_rng(18)
    u = rng.standard_normal((5, 6, 7, 3))
    p = C.pool(u)
    assert_allclose(p, u.mean(axis=(1, 2)), rtol=1e-14, atol=1e-15)
    g = rng.standard_normal((5, 3))
    lam = C.pool_transpose(g, 6, 7)
    assert lam.shape == (5, 6, 7, 3)
    assert_allclose(lam, np.broadcast_to(g[:, None, None, :] / 42, lam.shape), rtol=1e-15)
    assert_allclose(np.vdot(p, g), np.vdot(u, lam), rtol=1e-13)
    out = np.full_like(lam, np.nan)
    assert C.pool_transpose(g, 6, 7, lam=out) is out
    assert_array_equal(out, lam)


def test_flattened_state_is_the_dense_layout():
    """A (c, H, W, batch) block is the dense kernels' (c*H*W, batch) block: sample s's state is
    column s of the flattened block, in channel-row-pixel order."""
    u = np.random.default_rng(19).standard_normal((3, 4, 5, 6))
    flat = u.reshape(3 * 4 * 5, 6)
    assert np.shares_memory(flat, u)
    assert_array_equal(flat[:, 2], u[..., 2].ravel())


# ---- argument checks --------------------------------------------------------------------------

def test_argument_errors():
    K, b, u, lam = make(2, 3, 4, 5, 3, 2)
    with pytest.raises(ValueError, match="dtype float64"):
        C.conv_forward(K.astype(np.float32), b, u, 0.1, "tanh")
    with pytest.raises(ValueError, match="C-contiguous"):
        C.conv_forward(K, b, np.asfortranarray(u), 0.1, "tanh")
    with pytest.raises(ValueError, match="odd k"):
        C.conv_forward(np.zeros((2, 2, 2, 2)), b, u, 0.1, "tanh")
    with pytest.raises(ValueError, match=r"shape \(c, c, k, k\)"):
        C.conv_forward(np.zeros((2, 3, 3, 3)), b, u, 0.1, "tanh")
    with pytest.raises(ValueError, match=r"u_in must have shape \(c=2"):
        C.conv_forward(K, b, u[:1].copy(), 0.1, "tanh")
    with pytest.raises(ValueError, match="b must have 2"):
        C.conv_forward(K, np.zeros(3), u, 0.1, "tanh")
    with pytest.raises(ValueError, match="activation must be one of"):
        C.conv_forward(K, b, u, 0.1, "sigmoid")
    with pytest.raises(ValueError, match="path must be one of"):
        C.conv_forward(K, b, u, 0.1, "tanh", path="fft")
    with pytest.raises(ValueError, match="work must hold at least"):
        C.conv_forward(K, b, u, 0.1, "tanh", work=np.empty(10))
    with pytest.raises(ValueError, match="u_out must have shape"):
        C.conv_forward(K, b, u, 0.1, "tanh", u_out=np.empty((2, 4, 5, 2)))
    ro = u.copy()
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="u_out must be writeable"):
        C.conv_forward(K, b, u, 0.1, "tanh", u_out=ro)
    with pytest.raises(ValueError, match="must not alias u"):
        C.conv_adjoint(K, b, u, lam, 0.1, "tanh", lam_out=u)
    with pytest.raises(ValueError, match="gK must have shape"):
        C.conv_gradient(K, b, u, lam, 0.1, "tanh", np.zeros((2, 2, 1, 1)), np.zeros(2))
    with pytest.raises(ValueError, match="gb must have shape"):
        C.conv_backward(K, b, u, lam, 0.1, "tanh", np.zeros_like(K), np.zeros(1))
    with pytest.raises(ValueError, match=r"x must have shape \(c_in=2"):
        C.conv_opening_forward(np.zeros((3, 2, 3, 3)), np.zeros(3), u[:1].copy(), "tanh")
    with pytest.raises(ValueError, match="x must be 3-D"):
        C.opening_mnist(u, 2)
    with pytest.raises(ValueError, match="c must be at least 1"):
        C.opening_replicate(u[0].copy(), 0)
    with pytest.raises(ValueError, match="p must have shape"):
        C.pool(u, p=np.empty((2, 2)))
    with pytest.raises(ValueError, match="k must be odd"):
        C.conv_work_size(2, 2, 4, 5, 5, 1)
    with pytest.raises(TypeError, match="numpy.ndarray"):
        C.conv_apply(K, u.tolist())


def test_empty_batch():
    K, b, u, lam = make(2, 3, 4, 5, 0, 2)
    assert C.conv_forward(K, b, u, 0.1, "tanh").shape == (2, 4, 5, 0)
    gK, gb = np.zeros_like(K), np.zeros_like(b)
    C.conv_backward(K, b, u, lam, 0.1, "tanh", gK, gb)
    assert not gK.any() and not gb.any()
    assert C.pool(u).shape == (2, 0)
