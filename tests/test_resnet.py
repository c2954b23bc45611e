"""The ResNet: parameter layout, exact gradients, regulariser shares, serial training, errors."""
import numpy as np
import pytest
from numpy.testing import assert_allclose

from braidnet import datasets, optim
from braidnet.resnet import Objective, ParamLayout, ResNet


def fd_gradient(f, theta, eps=1e-6):
    g = np.empty_like(theta)
    for i in range(theta.size):
        e = np.zeros_like(theta)
        e[i] = eps
        g[i] = (f(theta + e) - f(theta - e)) / (2 * eps)
    return g


def rel_err(a, b):
    return np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300)


def small_problem(seed=0, n=9, nf=2, nc=3):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, nf)), rng.integers(0, nc, n)


def check_gradient(net, seed=0, scale=0.5):
    X, y = small_problem(seed, nf=net.layout.n_features, nc=net.layout.n_classes)
    theta = np.random.default_rng(seed + 100).standard_normal(net.n_params) * scale
    f, g = net.loss_and_gradient(theta, X, y)
    assert_allclose(f, net.objective(theta, X, y), rtol=1e-14, atol=0)
    fd = fd_gradient(lambda t: net.objective(t, X, y), theta)
    assert rel_err(g, fd) < 1e-6


@pytest.mark.parametrize("activation", ["tanh", "relu", "smoothrelu"])
@pytest.mark.parametrize("opening", ["pad", "dense"])
@pytest.mark.parametrize("bias", ["channel", "scalar"])
def test_gradient_all_regularisers(activation, opening, bias):
    net = ResNet(2, 3, 4, 5, T=2.0, activation=activation, opening=opening, bias=bias,
                 gamma_tik=0.1, gamma_ddt=0.2, gamma_class=0.3)
    check_gradient(net)


@pytest.mark.parametrize("which", ["gamma_tik", "gamma_ddt", "gamma_class", None])
@pytest.mark.parametrize("opening", ["pad", "dense"])
def test_gradient_each_regulariser_alone(which, opening):
    kw = {which: 0.7} if which else {}
    net = ResNet(3, 4, 5, 4, T=1.5, activation="tanh", opening=opening, **kw)
    check_gradient(net, seed=1)


def test_regulariser_values():
    """R written out by hand, and the same continuous quantity at any depth."""
    net = ResNet(2, 3, 3, 4, T=2.0, opening="dense", gamma_tik=0.3, gamma_ddt=0.5, gamma_class=0.7)
    L = net.layout
    theta = np.random.default_rng(2).standard_normal(L.size)
    lay = theta[L.layers_slice()].reshape(4, -1)
    h = 0.5
    expect = (0.15 * np.sum(theta[L.opening_slice] ** 2) + 0.15 * h * np.sum(lay ** 2)
              + 0.25 * h * np.sum((np.diff(lay, axis=0) / h) ** 2) + 0.35 * np.sum(theta[L.classifier_slice] ** 2))
    assert_allclose(net.regularizer(theta)[0], expect, rtol=1e-13, atol=0)

    # theta(t) = c + t d sampled at t_n = n h: Tikhonov and ddt converge with depth (the ddt term is exact)
    def layer_terms(N):
        m = ResNet(2, 3, 3, N, T=2.0, gamma_tik=1.0, gamma_ddt=1.0)
        c, d = np.linspace(0.1, 1.0, m.layout.layer_size), np.linspace(-1.0, 0.5, m.layout.layer_size)
        blocks = np.array([c + n * m.h * d for n in range(N)])
        m2 = ResNet(2, 3, 3, N, T=2.0, gamma_ddt=1.0)
        return m.regularizer_layers(blocks.ravel())[0], m2.regularizer_layers(blocks.ravel())[0]
    tot16, ddt16 = layer_terms(16)
    tot32, ddt32 = layer_terms(32)
    T = 2.0
    d = np.linspace(-1.0, 0.5, 3 * 3 + 3)
    assert_allclose(ddt16 / (T - T / 16), 0.5 * d @ d, rtol=1e-12)   # sum over N-1 intervals of h
    assert_allclose(ddt32 / (T - T / 32), 0.5 * d @ d, rtol=1e-12)
    assert abs((tot32 - ddt32) - (tot16 - ddt16)) / (tot16 - ddt16) < 0.05


@pytest.mark.parametrize("bias", ["channel", "scalar"])
def test_regulariser_shares_sum_to_total(bias):
    N = 7
    net = ResNet(2, 3, 3, N, T=3.0, bias=bias, gamma_tik=0.3, gamma_ddt=0.9)
    L = net.layout
    theta = np.random.default_rng(3).standard_normal(L.size)
    total, gtotal = net.regularizer_layers(theta[L.layers_slice()])
    for cuts in ([0, 3, 7], [0, 1, 2, 6, 7], [0, 7]):
        val = 0.0
        for a, b in zip(cuts[:-1], cuts[1:]):
            prev = theta[L.layer_slice(a - 1)] if a > 0 else None
            nxt = theta[L.layer_slice(b)] if b < N else None
            v, g = net.regularizer_layers(theta[L.layers_slice(a, b)], a, b, prev, nxt)
            val += v
            assert_allclose(g, gtotal[L.layer_offset(a) - L.opening_size:L.layer_offset(b) - L.opening_size],
                            rtol=1e-13, atol=1e-15)
        assert_allclose(val, total, rtol=1e-13, atol=0)
    with pytest.raises(ValueError, match="next_layer"):
        net.regularizer_layers(theta[L.layers_slice(0, 3)], 0, 3)
    with pytest.raises(ValueError, match="prev_layer"):
        net.regularizer_layers(theta[L.layers_slice(3, 7)], 3, 7)


def test_zero_weights_regularise_nothing():
    """gamma_tik = 0 (no pass over the parameters then): value 0, the gradient zeros, also written
    over whatever ``out`` held; gamma_ddt alone still counts."""
    net = ResNet(2, 3, 3, 4, T=2.0, gamma_tik=0.0, gamma_ddt=0.0)
    theta = np.random.default_rng(4).standard_normal(net.layout.size)[net.layout.layers_slice()]
    out = np.full(theta.shape, np.nan)
    v, g = net.regularizer_layers(theta, out=out)
    assert v == 0.0 and g is out and not np.any(out)
    assert net.regularizer_layers(theta, gradient=False) == (0.0, None)
    ddt = ResNet(2, 3, 3, 4, T=2.0, gamma_tik=0.0, gamma_ddt=0.5)
    blocks = theta.reshape(4, -1)
    assert_allclose(ddt.regularizer_layers(theta)[0],
                    0.25 / 0.5 * np.sum(np.diff(blocks, axis=0) ** 2), rtol=1e-13)


def test_layout_views_and_slices():
    L = ParamLayout(n_features=2, width=4, n_layers=3, n_classes=5, opening="dense", bias="scalar")
    assert L.opening_size == 4 * 2 + 1 and L.layer_size == 16 + 1 and L.classifier_size == 5 * 4 + 5
    assert L.size == 9 + 3 * 17 + 25
    theta = np.arange(L.size, dtype=float)
    Wo, bo = L.opening_view(theta)
    assert Wo.shape == (4, 2) and bo.shape == (1,) and bo[0] == 8
    W1, b1 = L.layer_view(theta, 1)
    assert W1[0, 0] == 9 + 17 and b1[0] == 9 + 17 + 16
    Ws, bs = L.layers_view(theta)
    assert Ws.shape == (3, 4, 4) and bs.shape == (3, 1)
    assert_allclose(Ws[1], W1, rtol=0, atol=0)
    Wc, bc = L.classifier_view(theta)
    assert Wc.shape == (5, 4) and bc[-1] == L.size - 1
    for view in (Wo, bo, W1, Ws, bs, Wc, bc):
        assert np.shares_memory(view, theta)
    assert L.layers_slice(1, 3) == slice(9 + 17, 9 + 3 * 17)
    pad = ParamLayout(2, 4, 3, 5)
    assert pad.opening_size == 0 and pad.opening_view(np.zeros(pad.size))[0].shape == (0, 2)


def test_objective_caches_forward_and_matches_net():
    net = ResNet(2, 3, 4, 6, gamma_tik=1e-3, gamma_ddt=1e-3, gamma_class=1e-3, opening="dense")
    X, y = small_problem(4, n=20)
    theta = net.init_params(seed=0, scale_layers=0.1)
    obj = Objective(net, X, y)
    f = obj.fun(theta)
    g = obj.grad(theta)
    assert obj.n_forward == 1 and obj.n_backward == 1
    f2, g2 = net.loss_and_gradient(theta, X, y)
    assert_allclose(f, f2, rtol=1e-14, atol=0)
    assert_allclose(g, g2, rtol=1e-14, atol=0)
    # one-hot targets give the same result as integer labels
    f3, g3 = net.loss_and_gradient(theta, X, datasets.one_hot(y, 3))
    assert_allclose(f3, f, rtol=1e-14, atol=0)
    assert_allclose(g3, g, rtol=1e-14, atol=0)
    # without regularisation the value is the data loss
    assert_allclose(net.loss_and_gradient(theta, X, y, regularize=False)[0], net.loss(theta, X, y),
                    rtol=1e-14, atol=0)


def test_init_predict_accuracy():
    net = ResNet(2, 5, 8, 4, opening="dense")
    a = net.init_params(seed=7)
    assert_allclose(a, net.init_params(seed=7), rtol=0, atol=0)
    L = net.layout
    assert np.all(a[L.layers_slice()] == 0.0)
    assert 0 <= a[L.opening_slice].min() and a[L.opening_slice].max() < 1e-3
    X, y = small_problem(5, n=30, nc=5)
    p = net.predict(a, X)
    assert p.shape == (30,) and p.dtype.kind == "i"
    assert_allclose(net.accuracy(a, X, y), 100.0 * np.mean(p == y), rtol=1e-14, atol=0)
    assert_allclose(net.logits(a, X).argmax(axis=1), p, rtol=0, atol=0)


def test_serial_training_on_peaks():
    """Width 8, 16 layers, T = 5, L-BFGS.  Measured (seed 1, 2000 training points, 400
    iterations): training 95.7 %, validation 95.5 %; asserted with margin."""
    Xt, yt, Xv, yv = datasets.peaks(2000, 200, seed=1)
    net = ResNet(2, 5, 8, 16, T=5.0, activation="tanh", gamma_tik=1e-5, gamma_ddt=1e-5, gamma_class=1e-5)
    theta0 = net.init_params(seed=1)
    obj = Objective(net, Xt, yt)
    res = optim.minimize(optim.LBFGS(memory=10), obj.fun, obj.grad, theta0, max_iter=400, gtol=1e-8)
    assert res.n_iter == 400 and len(res.history) == 401
    assert all(r["ls_trials"] >= 1 for r in res.history[1:])
    assert res.history[-1]["objective"] < 0.3 * res.history[0]["objective"]
    assert net.accuracy(res.x, Xt, yt) > 90.0
    assert net.accuracy(res.x, Xv, yv) > 88.0


# ---------------------------------------------------------------------------------------------
# bad input

def test_bad_construction():
    with pytest.raises(ValueError, match="T must be a finite number > 0, got T=0"):
        ResNet(2, 3, 4, 5, T=0.0)
    with pytest.raises(ValueError, match="T=-1"):
        ResNet(2, 3, 4, 5, T=-1)
    with pytest.raises(ValueError, match=r"width=1 < n_features=2"):
        ResNet(2, 3, 1, 5)
    ResNet(2, 3, 1, 5, opening="dense")  # fine with a dense opening
    with pytest.raises(ValueError, match="n_layers=0"):
        ResNet(2, 3, 4, 0)
    with pytest.raises(ValueError, match="activation=.sigmoid."):
        ResNet(2, 3, 4, 5, activation="sigmoid")
    with pytest.raises(ValueError, match="bias=.row."):
        ResNet(2, 3, 4, 5, bias="row")
    with pytest.raises(ValueError, match="opening=.conv."):
        ResNet(2, 3, 4, 5, opening="conv")
    with pytest.raises(ValueError, match="gamma_tik=-1"):
        ResNet(2, 3, 4, 5, gamma_tik=-1.0)
    with pytest.raises(ValueError, match="n_classes must be >= 2"):
        ResNet(2, 1, 4, 5)


def test_bad_data():
    net = ResNet(2, 3, 4, 5)
    theta = net.init_params(seed=0)
    X, y = small_problem(0)
    with pytest.raises(ValueError, match=r"X must have shape \(n_samples, n_features=2\), got \(9, 3\)"):
        net.loss_and_gradient(theta, np.ones((9, 3)), y)
    with pytest.raises(ValueError, match="X must have shape"):
        net.predict(theta, np.ones(9))
    Xn = X.copy()
    Xn[2, 1] = np.nan
    with pytest.raises(ValueError, match="X contains NaN"):
        net.loss_and_gradient(theta, Xn, y)
    with pytest.raises(ValueError, match=r"labels must be in \[0, n_classes=3\), got label 3"):
        net.loss_and_gradient(theta, X, np.full(9, 3))
    with pytest.raises(ValueError, match="got label -1"):
        net.accuracy(theta, X, np.full(9, -1))
    with pytest.raises(ValueError, match=r"labels must have shape \(9,\)"):
        net.loss_and_gradient(theta, X, y[:4])
    with pytest.raises(ValueError, match="labels must be integers"):
        net.loss_and_gradient(theta, X, np.full(9, 0.5))
    with pytest.raises(ValueError, match=r"one-hot targets must have shape \(9, n_classes=3\)"):
        net.loss_and_gradient(theta, X, np.zeros((9, 4)))
    with pytest.raises(ValueError, match="theta must have shape"):
        net.loss_and_gradient(theta[:-1], X, y)
    with pytest.raises(ValueError, match="theta contains NaN"):
        net.loss_and_gradient(np.full_like(theta, np.nan), X, y)
    with pytest.raises(ValueError, match="holds no samples"):
        net.predict(theta, np.ones((0, 2)))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_wide_backward_reuses_the_forward_derivatives_bit_for_bit(dtype):
    # width 40: the kernels keep sigma' from the forward for the backward (one GEMM fewer)
    from braidnet import _kernels
    assert _kernels.keeps_derivs(40, dtype) and not _kernels.keeps_derivs(8, "float64")
    net = ResNet(3, 4, 40, 5, activation="tanh", opening="dense", dtype=dtype)
    X, y = small_problem(1, n=7, nf=3, nc=4)
    theta = np.random.default_rng(2).standard_normal(net.n_params) * 0.3
    L = net.layout
    tl = theta[L.layers_slice()]
    u0 = np.random.default_rng(3).standard_normal((40, 7)).astype(dtype)
    lamN = np.random.default_rng(4).standard_normal((40, 7))
    states = net.layers_forward(tl, u0)
    assert net.layer._derivs is not None and net.layer._derivs[0] is states
    g_kept, lam_kept = net.layers_backward(tl, states, lamN)
    # other states, or other parameters: recomputed, never the kept ones
    g_fresh, lam_fresh = net.layers_backward(tl, states.copy(), lamN)
    np.testing.assert_array_equal(g_kept, g_fresh)
    np.testing.assert_array_equal(lam_kept, lam_fresh)
    moved = tl + 0.1
    g_moved, _ = net.layers_backward(moved, states, lamN)
    g_ref, _ = net.layers_backward(moved, states.copy(), lamN)
    np.testing.assert_array_equal(g_moved, g_ref)
    assert not np.array_equal(g_moved, g_kept)
