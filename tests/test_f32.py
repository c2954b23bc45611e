"""float32 networks (issue 14 item 1): the float32 kernels against the float64 ones, the float32
network layer-serial and layer-parallel, and float32 training (rank independence, resume, the
distance from the float64 run).  docs/design.md section 3 ("Precision") states what runs in which
precision.

Tolerances.  float32 has eps = 1.2e-7.  A kernel result is compared with the float64 kernel on the
same (float32-rounded) inputs to rtol 2e-5 of the block's scale (sums of up to 40 products; measured
at most ~2e-6).  A whole network amplifies the per-layer round-off by its depth and conditioning:
the objective of these small networks stays within 1e-5 relative of float64 (measured ~1e-9 .. 1e-6)
and their gradient within 1e-3 of its largest entry (measured ~1e-6 .. 1e-4).
"""
from __future__ import annotations

import csv
import os

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

import mpi_launch
from braidnet import _kernels as K
from braidnet import config as C
from braidnet.resnet import ResNet

ACTS = ["tanh", "relu", "smoothrelu"]
KTOL = 2e-5
F32 = np.float32


def _close(a32, a64, what, tol=KTOL):
    """a32 (float32 result) equals a64 (float64 result) to tol relative to a64's scale."""
    assert a32.dtype == np.float32, what
    scale = max(float(np.max(np.abs(a64))), 1e-30)
    err = float(np.max(np.abs(a32.astype(np.float64) - a64)))
    assert err <= tol * scale, f"{what}: float32 differs from float64 by {err / scale:.2e} of the scale"


def _inputs(width, batch, nb, seed=0, nfeat=None):
    """float32-exact inputs (so both precisions see the same numbers) as float64 arrays."""
    rng = np.random.default_rng(seed)
    W = (rng.standard_normal((width, nfeat or width)) / np.sqrt(nfeat or width)).astype(F32)
    b = (0.3 * rng.standard_normal(nb)).astype(F32)
    u = rng.standard_normal((nfeat or width, batch)).astype(F32)
    lam = rng.standard_normal((width, batch)).astype(F32)
    return [a.astype(np.float64) for a in (W, b, u, lam)]


# widths: fused path (<= 32, either side of the 8-lane vectors) and BLAS path; odd batches
SHAPES = [(1, 3), (5, 7), (8, 33), (13, 257), (32, 101), (33, 19), (40, 1001)]


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("scalar", [False, True])
@pytest.mark.parametrize("width,batch", SHAPES)
def test_layer_kernels_float32_match_float64(act, scalar, width, batch):
    W, b, u, lam = _inputs(width, batch, 1 if scalar else width)
    h = 0.375
    f64 = K.layer_forward(W, b, u, h, act)
    f32 = K.layer_forward(W.astype(F32), b.astype(F32), u.astype(F32), h, act)
    _close(f32, f64, "layer_forward")
    gW, gb = np.zeros_like(W), np.zeros_like(b)
    gW32, gb32 = np.zeros(W.shape, F32), np.zeros(b.shape, F32)
    l64 = K.layer_backward(W, b, u, lam, h, act, gW=gW, gb=gb)
    l32 = K.layer_backward(W.astype(F32), b.astype(F32), u.astype(F32), lam.astype(F32), h, act,
                           gW=gW32, gb=gb32)
    _close(l32, l64, "layer_backward lam")
    _close(gW32, gW, "layer_backward gW")
    _close(gb32, gb, "layer_backward gb")
    # in place, with a caller workspace, as the Braid app calls them
    v = u.astype(F32)
    K.layer_forward(W.astype(F32), b.astype(F32), v, h, act, u_out=v, work=np.empty(width * batch, F32))
    assert_array_equal(v, f32)


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("scalar", [False, True])
@pytest.mark.parametrize("width,batch,nfeat", [(8, 7, 2), (40, 33, 5), (220, 19, 200)])
def test_opening_kernels_float32_match_float64(act, scalar, width, batch, nfeat):
    W, b, x, lam = _inputs(width, batch, 1 if scalar else width, nfeat=nfeat)
    _close(K.opening_forward(W.astype(F32), b.astype(F32), x.astype(F32), act),
           K.opening_forward(W, b, x, act), "opening_forward")
    gW, gb = np.zeros_like(W), np.zeros_like(b)
    gW32, gb32 = np.zeros(W.shape, F32), np.zeros(b.shape, F32)
    K.opening_gradient(W, b, x, lam, act, gW, gb)
    K.opening_gradient(W.astype(F32), b.astype(F32), x.astype(F32), lam.astype(F32), act, gW32, gb32)
    _close(gW32, gW, "opening_gradient gW")
    _close(gb32, gb, "opening_gradient gb")


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("width,nb,batch", [(6, 6, 11), (8, 1, 64), (33, 33, 9), (64, 1, 31)])
def test_net_kernels_float32_match_float64(act, width, nb, batch):
    rng = np.random.default_rng(3)
    N, h = 12, 0.2
    theta = (rng.standard_normal(N * (width * width + nb)) / np.sqrt(width)).astype(F32).astype(float)
    states = np.zeros((N + 1, width, batch))
    states[0] = rng.standard_normal((width, batch)).astype(F32)
    s32 = states.astype(F32)
    K.net_forward(theta, width, nb, N, h, act, states)
    K.net_forward(theta.astype(F32), width, nb, N, h, act, s32)
    _close(s32, states, "net_forward", tol=1e-4)     # 12 layers of round-off
    lam = rng.standard_normal((width, batch)).astype(F32).astype(float)
    lam32, g, g32 = lam.astype(F32), np.zeros_like(theta), np.zeros(theta.shape, F32)
    K.net_backward(theta, width, nb, N, h, act, states, lam, g)
    K.net_backward(theta.astype(F32), width, nb, N, h, act, s32, lam32, g32)
    _close(lam32, lam, "net_backward lambda_0", tol=1e-4)
    _close(g32, g, "net_backward gradient", tol=1e-4)


def test_float32_tanh_is_within_its_ulp_bound():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.uniform(-r, r, 20001) for r in (1e-20, 1e-3, 0.5, 3.0, 10.0, 100.0)]).astype(F32)
    t = K.tanh(x)
    assert t.dtype == np.float32
    exact = np.tanh(x.astype(np.float64))
    ulp = np.spacing(np.abs(exact).astype(F32)).astype(np.float64)
    assert np.max(np.abs(t - exact) / ulp) <= 2.5             # BN_TANH_ULP_F32
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 9.0, 1e30], F32)
    ts = K.tanh(special)
    assert_array_equal(ts[:4], [0.0, -0.0, 1.0, -1.0])
    assert np.signbit(ts[1]) and np.isnan(ts[4]) and ts[5] == np.float32(np.tanh(9.0)) and ts[6] == 1


def test_kernel_arrays_must_share_the_state_dtype():
    W, b, u, _ = _inputs(3, 4, 3)
    with pytest.raises(ValueError, match="W must have dtype float32, got float64"):
        K.layer_forward(W, b.astype(F32), u.astype(F32), 0.1, "tanh")
    with pytest.raises(ValueError, match="u_in must have dtype float64 or float32, got float16"):
        K.layer_forward(W, b, u.astype(np.float16), 0.1, "tanh")


# ---- the network -----------------------------------------------------------------------------

def _peaks(n=120, seed=0):
    from braidnet import datasets
    X, y, _, _ = datasets.peaks(n, 0, seed=seed)
    return X, y


@pytest.mark.parametrize("act,width,opening,bias", [("tanh", 8, "dense", "channel"),
                                                    ("smoothrelu", 5, "pad", "scalar"),
                                                    ("relu", 40, "dense", "channel")])
def test_serial_float32_network_matches_float64(act, width, opening, bias):
    X, y = _peaks()
    kw = dict(T=5.0, activation=act, opening=opening, bias=bias, gamma_tik=1e-4, gamma_ddt=1e-4,
              gamma_class=1e-4)
    n64, n32 = ResNet(2, 5, width, 16, **kw), ResNet(2, 5, width, 16, dtype="float32", **kw)
    theta = n64.init_params(seed=2, scale_opening=1.0, scale_layers=0.3, scale_classifier=1.0) - 0.1
    f64, g64 = n64.loss_and_gradient(theta, X, y)
    f32, g32 = n32.loss_and_gradient(theta, X, y)
    assert g32.dtype == np.float64 and n32.prepare_inputs(X).dtype == np.float32
    assert abs(f32 - f64) <= 1e-5 * abs(f64)
    assert np.max(np.abs(g32 - g64)) <= 1e-3 * np.max(np.abs(g64))
    assert n32.accuracy(theta, X, y) == pytest.approx(n64.accuracy(theta, X, y), abs=2.0)
    assert "dtype='float32'" in repr(n32) and "dtype" not in repr(n64)
    assert ResNet(2, 5, width, 4, dtype=np.float32).dtype == np.float32


def test_network_dtype_is_checked():
    with pytest.raises(ValueError, match=r"dtype must be one of \('float64', 'float32'\), got dtype='float16'"):
        ResNet(2, 3, 4, 4, dtype="float16")


# ---- layer-parallel --------------------------------------------------------------------------

F32_CASES = [
    dict(width=8, n_layers=16, activation="tanh", braid=dict(max_levels=3, cfactor=2)),
    dict(width=5, n_layers=13, activation="smoothrelu", opening="pad", bias="scalar",
         braid=dict(max_levels=2, cfactor=4)),
    dict(width=36, n_layers=12, activation="relu", braid=dict(max_levels=2, cfactor=3)),
]


@pytest.mark.mpi
@pytest.mark.parametrize("nprocs", [1, 2, 3])
def test_float32_layer_parallel_equals_float32_serial(nprocs, tmp_path):
    values = mpi_launch.run_cases(nprocs, [("cases_f32.equals_serial", c) for c in F32_CASES],
                                  tmp_path, 120.0)
    for case, ranks in zip(F32_CASES, values):
        res, where = ranks[0], f"P={nprocs}, {case}"
        assert res["warm_dtypes"] == ["float32"] and res["gradient_dtype"] == "float64", where
        # converged to the float32 floor: the float32 serial network to float32 round-off
        assert res["objective_vs_f32"] <= 1e-6 and res["loss_vs_f32"] <= 1e-6, (res, where)
        assert res["gradient_vs_f32"] <= 1e-4, (res, where)
        # and the float64 network to float32 accuracy
        assert res["objective_vs_f64"] <= 1e-5 and res["gradient_vs_f64"] <= 1e-3, (res, where)
        # the solves stop at the float32 floor instead of running to max_iter
        assert res["iterations"] < 30 and res["adjoint_iterations"] < 30, (res, where)
        assert res["resume_objective_equal"] and res["resume_gradient_equal"], (res, where)
        assert "must be a finite float32 array" in res["float64_warm_refused"], (res, where)


# ---- training --------------------------------------------------------------------------------

TRAIN_TOML = """
[data]
n_train = 200
n_val = 50

[network]
width = 8
layers = 16
activation = "tanh"
init_opening = 1.0
init_layers = 0.1
init_classifier = 1.0
dtype = "float32"

[braid]
max_levels = 3
cfactor = 2

[optimizer]
iterations = 8

[output]
checkpoint_every = 3
progress = true
"""


def _history(d):
    with open(os.path.join(str(d), "history.csv"), newline="") as f:
        return list(csv.DictReader(f))


def _col(rows, name):
    return np.array([float(r[name]) for r in rows])


def _train(nprocs, cfg, out, *extra, fault=None):
    return mpi_launch.run_cli(nprocs, ["train", cfg, "--out", out, *extra], 90.0, fault=fault,
                              env={"PYTHONWARNINGS": "ignore"})


@pytest.fixture(scope="module")
def f32_runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("f32")
    cfg = base / "f32.toml"
    cfg.write_text(TRAIN_TOML)
    runs = {"config": cfg}
    for name, nprocs, extra in (("p1", 1, ()), ("p2", 2, ()),
                                ("f64", 1, ("--set", "network.dtype=float64"))):
        mpi_launch.check(_train(nprocs, cfg, base / name, *extra))
        runs[name] = base / name
    return runs


@pytest.mark.mpi
@pytest.mark.slow
def test_float32_training_is_rank_independent_and_near_float64(f32_runs):
    p1, p2, f64 = (_history(f32_runs[k]) for k in ("p1", "p2", "f64"))
    assert len(p1) == len(p2) == len(f64) == 9
    obj = _col(p1, "objective")
    assert obj[-1] < 0.7 * obj[0]                       # it trains
    # 1 vs 2 ranks: the layer steps are the same float32 arithmetic; only float64 reductions are
    # ordered differently (1e-16), which can flip the rounding of a weight to float32 (1e-7)
    for name in ("objective", "loss", "grad_norm"):
        assert_allclose(_col(p2, name), _col(p1, name), rtol=1e-5, err_msg=name)
    assert_array_equal(_col(p2, "ls_trials"), _col(p1, "ls_trials"))
    # float32 against float64: the same run to float32 accuracy (measured: objective within 3e-7)
    assert_allclose(obj, _col(f64, "objective"), rtol=1e-4)
    assert_array_equal(_col(p1, "ls_trials"), _col(f64, "ls_trials"))
    with np.load(os.path.join(str(f32_runs["p1"]), "checkpoint.npz")) as z:
        warm = [k for k in z.files if k.startswith("warm_")]
        assert warm and all(z[k].dtype == np.float32 for k in warm)
        assert z["theta"].dtype == np.float64


@pytest.mark.mpi
@pytest.mark.slow
def test_float32_resume_is_exact(f32_runs, tmp_path):
    cfg, ref = f32_runs["config"], _history(f32_runs["p2"])
    d = tmp_path / "interrupted"
    proc = _train(2, cfg, d, fault={"raise_on_rank": 1, "at_gradient": 8})
    assert proc.returncode != 0 and "injected failure" in proc.stderr, proc.stdout + proc.stderr
    mpi_launch.check(_train(2, cfg, d, "--resume"))
    got = _history(d)
    for name in ref[0]:
        if name not in ("time", "work_units"):
            assert [r[name] for r in got] == [r[name] for r in ref], name      # bit for bit
    # the same checkpoint resumed on 1 rank continues the 2-rank run to float32 round-off
    d1 = tmp_path / "other"
    proc = _train(2, cfg, d1, fault={"raise_on_rank": 1, "at_gradient": 8})
    assert proc.returncode != 0
    mpi_launch.check(_train(1, cfg, d1, "--resume"))
    assert_allclose(_col(_history(d1), "objective"), _col(ref, "objective"), rtol=1e-5)
    # a float64 checkpoint is not resumed as float32
    proc = _train(1, cfg, f32_runs["f64"], "--resume")
    assert proc.returncode != 0 and "network.dtype" in proc.stdout + proc.stderr


def test_config_dtype_key():
    assert C.load_config(overrides=["network.dtype=float32"])["network"]["dtype"] == "float32"
    with pytest.raises(C.ConfigError, match=r"network.dtype must be one of float64, float32; got 'float16'"):
        C.load_config(overrides=["network.dtype=float16"])
    assert 'dtype = "float64"' in C.describe()
    old, new = C.defaults(), C.defaults()
    new["network"]["dtype"] = "float32"
    assert [k for k, _, _ in C.resume_conflicts(old, new)] == ["network.dtype"]
