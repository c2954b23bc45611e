"""The compiled per-layer kernels against plain numpy."""
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from braidnet import _kernels as K

ACTS = ["tanh", "relu", "smoothrelu"]
ETA = 0.1


def sigma(act, z):
    if act == "tanh":
        return np.tanh(z)
    if act == "relu":
        return np.maximum(z, 0.0)
    return np.where(z >= ETA, z, np.where(z <= -ETA, 0.0, z * z / (4 * ETA) + z / 2 + ETA / 4))


def dsigma(act, z):
    if act == "tanh":
        return 1.0 - np.tanh(z) ** 2
    if act == "relu":
        return (z > 0).astype(float)
    return np.where(z >= ETA, 1.0, np.where(z <= -ETA, 0.0, z / (2 * ETA) + 0.5))


def make(width, batch, nb, seed=0, nfeat=None):
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((width, nfeat or width)) * 0.3
    b = rng.standard_normal(nb) * 0.1
    u = rng.standard_normal((nfeat or width, batch))
    lam = rng.standard_normal((width, batch))
    return W, b, u, lam


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("width,batch,scalar", [(4, 7, False), (4, 7, True), (9, 300, False), (1, 5, True),
                                                (20, 13, False), (20, 13, True),
                                                # column tiles of the fused kernels: a partial last tile
                                                (8, 257, False), (32, 65, True),
                                                # wider than FUSED_MAX_WIDTH: the BLAS path
                                                (33, 19, False), (40, 1001, True)])
def test_layer_forward_matches_numpy(act, width, batch, scalar):
    W, b, u, _ = make(width, batch, 1 if scalar else width)
    h = 0.37
    expected = u + h * sigma(act, W @ u + b[:, None])
    assert_allclose(K.layer_forward(W, b, u, h, act), expected, rtol=1e-13, atol=1e-14)
    # in place, with a caller workspace and the integer code
    v = u.copy()
    out = K.layer_forward(W, b, v, h, K.ACTIVATIONS[act], u_out=v, work=np.empty(width * batch))
    assert out is v
    assert_allclose(v, expected, rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("scalar", [False, True])
@pytest.mark.parametrize("width,batch", [(6, 11), (16, 261), (21, 10), (8, 257), (33, 19), (40, 1001)])
def test_layer_backward_matches_numpy(act, scalar, width, batch):
    h = 0.25
    W, b, u, lam = make(width, batch, 1 if scalar else width, seed=1)
    D = dsigma(act, W @ u + b[:, None]) * lam
    gW0 = np.full((width, width), 0.5)
    gb0 = np.full(b.shape, -0.25)
    gW, gb = gW0.copy(), gb0.copy()
    out = K.layer_backward(W, b, u, lam, h, act, gW=gW, gb=gb)
    assert_allclose(out, lam + h * W.T @ D, rtol=1e-13, atol=1e-14)
    assert_allclose(gW, gW0 + h * D @ u.T, rtol=1e-13, atol=1e-14)
    expect_gb = gb0 + h * (D.sum() if scalar else D.sum(axis=1))
    assert_allclose(gb, expect_gb, rtol=1e-13, atol=1e-14)
    # in place adjoint without gradient
    lam2 = lam.copy()
    K.layer_backward(W, b, u, lam2, h, act, lam_out=lam2)
    assert_allclose(lam2, out, rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("act", ["tanh", "smoothrelu"])
def test_adjoint_is_transpose_of_jacobian(act):
    """<lam, J v> by central differences equals <J^T lam, v> (J = d step / d u)."""
    width, batch, h = 5, 4, 0.4
    W, b, u, lam = make(width, batch, width, seed=2)
    v = np.random.default_rng(3).standard_normal(u.shape)
    eps = 1e-6
    Jv = (K.layer_forward(W, b, u + eps * v, h, act) - K.layer_forward(W, b, u - eps * v, h, act)) / (2 * eps)
    JTlam = K.layer_backward(W, b, u, lam, h, act)
    assert_allclose(np.sum(JTlam * v), np.sum(lam * Jv), rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("scalar", [False, True])
def test_opening_matches_numpy(act, scalar):
    width, nfeat, batch = 5, 3, 9
    W, b, x, lam = make(width, batch, 1 if scalar else width, seed=4, nfeat=nfeat)
    Z = W @ x + b[:, None]
    assert_allclose(K.opening_forward(W, b, x, act), sigma(act, Z), rtol=1e-13, atol=1e-14)
    gW, gb = np.ones_like(W), np.ones_like(b)
    K.opening_gradient(W, b, x, lam, act, gW, gb)
    D = dsigma(act, Z) * lam
    assert_allclose(gW, 1.0 + D @ x.T, rtol=1e-13, atol=1e-14)
    assert_allclose(gb, 1.0 + (D.sum() if scalar else D.sum(axis=1)), rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("width,nb", [(4, 1), (4, 4), (18, 18)])
def test_net_loops_match_layer_calls(width, nb):
    batch, N, h = 6, 5, 0.2
    rng = np.random.default_rng(5)
    theta = rng.standard_normal(N * (width * width + nb)) * 0.4
    blocks = theta.reshape(N, -1)
    states = np.empty((N + 1, width, batch))
    states[0] = rng.standard_normal((width, batch))
    K.net_forward(theta, width, nb, N, h, "tanh", states)
    u = states[0].copy()
    for n in range(N):
        u = K.layer_forward(blocks[n, :width * width].reshape(width, width).copy(),
                            blocks[n, width * width:].copy(), u, h, "tanh")
        assert_allclose(states[n + 1], u, rtol=1e-13, atol=1e-14)
    lamN = rng.standard_normal((width, batch))
    lam = lamN.copy()
    grad = np.zeros_like(theta)
    K.net_backward(theta, width, nb, N, h, "tanh", states, lam, grad)
    lam_ref = lamN.copy()
    gref = np.zeros_like(blocks)
    for n in range(N - 1, -1, -1):
        W = blocks[n, :width * width].reshape(width, width).copy()
        gW, gb = np.zeros((width, width)), np.zeros(nb)
        lam_ref = K.layer_backward(W, blocks[n, width * width:].copy(), states[n], lam_ref, h, "tanh",
                                   gW=gW, gb=gb)
        gref[n] = np.concatenate([gW.ravel(), gb])
    assert_allclose(lam, lam_ref, rtol=1e-13, atol=1e-14)
    assert_allclose(grad, gref.ravel(), rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("width,nb,batch", [(5, 5, 23), (20, 1, 23), (32, 32, 9), (33, 33, 23),
                                            (40, 1, 8)])
def test_net_with_stored_derivatives_is_bit_identical(dtype, act, width, nb, batch):
    """net_forward/net_backward with derivs= (sigma' kept from the forward, fused and BLAS paths,
    batch tails included) give exactly the results of the pair without it."""
    N, h = 4, 0.3
    rng = np.random.default_rng(11)
    theta = (rng.standard_normal(N * (width * width + nb)) / np.sqrt(width)).astype(dtype)
    u0 = rng.standard_normal((width, batch)).astype(dtype)
    lamN = rng.standard_normal((width, batch)).astype(dtype)
    shape, dt = K.deriv_block(act, width, batch, dtype)
    out = []
    for derivs in (None, np.empty((N,) + shape, dt)):
        states = np.empty((N + 1, width, batch), dtype)
        states[0] = u0
        K.net_forward(theta, width, nb, N, h, act, states, derivs=derivs)
        lam, grad = lamN.copy(), np.zeros_like(theta)
        K.net_backward(theta, width, nb, N, h, act, states, lam, grad, derivs=derivs)
        out.append((states, lam, grad))
    for a, b in zip(*out):
        assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_relu_keeps_sigma_prime_as_bits(dtype):
    """ReLU on the BLAS path keeps sigma' as one bit per value (bit j % 8 of byte j // 8 of a row:
    sigma'(W_n u_n + b_n) of column j); other activations and the fused widths keep values."""
    assert K.deriv_block("relu", 40, 13, dtype) == ((40, 2), np.dtype(np.uint8))
    assert K.deriv_block("relu", K.FUSED_MAX_WIDTH, 13, dtype) == ((K.FUSED_MAX_WIDTH, 13), np.dtype(dtype))
    assert K.deriv_block("tanh", 40, 13, dtype) == ((40, 13), np.dtype(dtype))
    N, width, batch, h = 3, 40, 13, 0.3
    rng = np.random.default_rng(5)
    theta = (rng.standard_normal(N * (width * width + width)) / np.sqrt(width)).astype(dtype)
    states = np.empty((N + 1, width, batch), dtype)
    states[0] = rng.standard_normal((width, batch))
    shape, dt = K.deriv_block("relu", width, batch, dtype)
    derivs = np.full((N,) + shape, 0xFF, dt)
    K.net_forward(theta, width, width, N, h, "relu", states, derivs=derivs)
    for n in range(N):
        blk = theta[n * (width * width + width):(n + 1) * (width * width + width)].astype(np.float64)
        z = blk[:width * width].reshape(width, width) @ states[n].astype(np.float64) + blk[width * width:, None]
        bits = np.unpackbits(derivs[n], axis=1, bitorder="little")
        assert_array_equal(bits[:, :batch], z > 0)
        assert not bits[:, batch:].any()          # a row's unused high bits are 0


def test_net_derivs_must_match_the_net():
    theta, states = np.zeros(2 * 12), np.zeros((3, 3, 4))
    with pytest.raises(ValueError, match="derivs"):
        K.net_forward(theta, 3, 3, 2, 0.1, "tanh", states, derivs=np.zeros((3, 3, 4)))
    with pytest.raises(ValueError, match="derivs"):
        K.net_backward(theta, 3, 3, 2, 0.1, "tanh", states, np.zeros((3, 4)), np.zeros(24),
                       derivs=np.zeros((2, 3, 4), np.float32))


def test_bad_inputs():
    W, b, u, lam = make(3, 4, 3)
    with pytest.raises(ValueError, match="dtype float64"):
        K.layer_forward(W.astype(np.float32), b, u, 0.1, "tanh")
    with pytest.raises(ValueError, match="C-contiguous"):
        K.layer_forward(W, b, np.asfortranarray(np.ones((3, 5))), 0.1, "tanh")
    with pytest.raises(ValueError, match="u_in must have shape"):
        K.layer_forward(W, b, np.ones((4, 4)), 0.1, "tanh")
    with pytest.raises(ValueError, match="W must be square"):
        K.layer_forward(np.ones((3, 2)), b, u, 0.1, "tanh")
    with pytest.raises(ValueError, match="b must have 3"):
        K.layer_forward(W, np.ones(2), u, 0.1, "tanh")
    with pytest.raises(ValueError, match="activation must be one of"):
        K.layer_forward(W, b, u, 0.1, "sigmoid")
    with pytest.raises(ValueError, match="activation code"):
        K.layer_forward(W, b, u, 0.1, 7)
    with pytest.raises(ValueError, match="work must hold at least 12"):
        K.layer_forward(W, b, u, 0.1, "tanh", work=np.empty(5))
    with pytest.raises(ValueError, match="must not alias u"):
        K.layer_backward(W, b, u, lam, 0.1, "tanh", lam_out=u)
    with pytest.raises(ValueError, match="both gW and gb"):
        K.layer_backward(W, b, u, lam, 0.1, "tanh", gW=np.zeros((3, 3)))
    with pytest.raises(ValueError, match="theta_layers must hold"):
        K.net_forward(np.zeros(5), 3, 3, 2, 0.1, "tanh", np.zeros((3, 3, 4)))
    with pytest.raises(TypeError, match="numpy.ndarray"):
        K.layer_forward([[1.0]], np.ones(1), np.ones((1, 1)), 0.1, "tanh")


def test_vectorised_tanh_is_accurate_and_handles_special_values():
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.uniform(-r, r, 20000) for r in (1e-8, 1e-3, 0.5, 2.0, 20.0, 400.0)])
    t = K.tanh(x)
    assert_allclose(t, np.tanh(x), rtol=2e-15, atol=0)
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 5e-324, -5e-324])
    got = K.tanh(special)
    assert_array_equal(got[:4], [0.0, -0.0, 1.0, -1.0])
    assert np.signbit(got[1]) and np.isnan(got[4])
    assert_array_equal(got[5:], special[5:])
    assert K.FUSED_MAX_WIDTH == 32
