"""Tests of braidnet.parallel: the layer-parallel loss and gradient equal the layer-serial ones.

The multi-rank tests launch ``mpiexec -n P`` once per P (1-4, oversubscribed on small machines) with
every configuration in one launch (tests/mpi_launch.py runs ``cases_parallel.equals_serial`` of
tests/cases_parallel.py), and check here the comparisons rank 0 returns.  The rest runs in this
process on ``COMM_SELF``.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

import mpi_launch

from braidnet import _kernels
from braidnet.parallel import ParallelNetwork
from braidnet.resnet import ResNet

HERE = os.path.dirname(os.path.abspath(__file__))
RTOL = 1e-9

# Sizes are small (width 4-8, batch ~50, N 2-32) so that all cases of one launch take seconds.
# Per case: (N+1) % P == 0 for some P only (mirrored / shifted adjoint blocks), 1-4 levels,
# cfactor 2 and 4 (and a per-level list), F (nrelax 0) and FCF (1) relaxation, both openings, every
# activation and bias type, F-cycles, skip 0, and coarse levels with fewer points than ranks.
CASES = [
    dict(n_layers=8, width=4, opening="pad", braid=dict(max_levels=2, cfactor=2, nrelax=1)),
    dict(n_layers=8, width=4, opening="dense", braid=dict(max_levels=2, cfactor=4, nrelax=0)),
    dict(n_layers=11, width=5, opening="dense", activation="smoothrelu",
         braid=dict(max_levels=3, cfactor=2, nrelax=0)),
    dict(n_layers=15, width=4, opening="pad", bias="scalar", braid=dict(max_levels=4, cfactor=2, nrelax=1)),
    dict(n_layers=16, width=6, opening="dense", activation="relu",
         braid=dict(max_levels=3, cfactor=4, nrelax=1, min_coarse=1)),
    dict(n_layers=16, width=8, opening="pad", activation="smoothrelu",
         braid=dict(max_levels=4, cfactor=2, nrelax=0)),
    dict(n_layers=21, width=4, opening="dense", bias="scalar",
         braid=dict(max_levels=3, cfactor=[4, 2], nrelax=1, fmg=True)),
    dict(n_layers=23, width=5, opening="pad", braid=dict(max_levels=2, cfactor=4, nrelax=1, skip=0)),
    dict(n_layers=32, width=4, opening="dense", activation="smoothrelu",
         braid=dict(max_levels=4, cfactor=2, nrelax=1)),
    dict(n_layers=32, width=4, opening="pad", gammas=(0.0, 0.0, 0.0),
         braid=dict(max_levels=3, cfactor=4, nrelax=0, min_coarse=1)),
    dict(n_layers=2, width=4, opening="dense", braid=dict(max_levels=2, cfactor=2)),
    dict(n_layers=3, width=4, opening="pad", braid=dict(max_levels=2, cfactor=2, min_coarse=1)),
    # wide enough that the adjoint keeps sigma' per layer (LayerApp.set_deriv)
    dict(n_layers=12, width=40, opening="dense", activation="smoothrelu",
         braid=dict(max_levels=3, cfactor=2, nrelax=1)),
    # ... and the primal solve's final FC relaxation leaves sigma' of the F-points on the way
    dict(n_layers=13, width=36, opening="pad", activation="relu",
         braid=dict(max_levels=3, cfactor=3, nrelax=0, final_fc_relax=True)),
]
for i, c in enumerate(CASES):
    c["seed"] = 10 + i


def _launch(nprocs: int, cases: list, tmp_path, timeout: float = 120.0) -> list:
    """cases_parallel.equals_serial of every case in one launch; per case what rank 0 returned."""
    values = mpi_launch.run_cases(nprocs, [("cases_parallel.equals_serial", c) for c in cases], tmp_path, timeout)
    return [ranks[0] for ranks in values]


@pytest.mark.mpi
@pytest.mark.slow
@pytest.mark.parametrize("nprocs", [1, 2, 3, 4])
def test_parallel_equals_serial(nprocs, tmp_path):
    results = _launch(nprocs, CASES, tmp_path)
    for i, (case, res) in enumerate(zip(CASES, results)):
        where = f"P={nprocs}, case {i}: {case}"
        assert res["levels"] >= 1, where
        for chk in res["checks"]:
            for key in ("objective", "loss", "gradient", "dot"):
                assert chk[key] <= RTOL, f"{key} differs by {chk[key]:.3e} (relative); {where}"
            assert chk["accuracy"] == 0 and chk["val_accuracy"] == 0, where
            assert chk["same_on_all_ranks"] and chk["gather_all"], where
            assert 0 <= chk["rnorm"] < 1e-10 and 0 <= chk["adjoint_rnorm"] < 1e-10, where
        # one-iteration warm restarts converge to the exact loss
        assert res["warm_iterations"] == 1 and res["warm_adjoint_iterations"] == 1, where
        assert res["warm_loss"] <= RTOL, where
        assert res["resume_exact"], where
        if nprocs > 1:
            # MGRIT itself is the same on P ranks as on one: same iterations, same iterates
            assert res["same_iterations_as_1_rank"], where
            assert res["history_vs_1_rank"] <= RTOL and res["warm_gradient_vs_1_rank"] <= RTOL, where
    if nprocs > 1:
        # the configurations really cover what they claim on this rank count
        n_pts = [c["n_layers"] + 1 for c in CASES]
        assert any(n % nprocs == 0 for n in n_pts), "no mirrored case"
        assert any(n % nprocs != 0 for n in n_pts), "no shifted (non-mirrored) case"
    if nprocs >= 3:
        assert any(r["coarse_points"] < nprocs for r in results), "no case with fewer coarse points than ranks"
    assert {r["levels"] for r in results} >= {1, 2, 3, 4}


# ---------------------------------------------------------------------------------------------
# single process


def _problem(n_layers=8, width=4, opening="dense", batch=30, seed=0, **kw):
    rng = np.random.default_rng(seed)
    net = ResNet(2, 3, width, n_layers, T=2.0, activation="tanh", opening=opening,
                 gamma_tik=1e-2, gamma_ddt=1e-2, gamma_class=1e-2, **kw)
    X = rng.standard_normal((batch, 2))
    Y = rng.integers(0, 3, batch)
    theta = net.init_params(seed=seed, scale_opening=1.0, scale_layers=1.0, scale_classifier=1.0) - 0.5
    return net, X, Y, theta


def test_layer_app_steps_match_kernels():
    from braidnet._layerapp import LayerApp

    rng = np.random.default_rng(1)
    N, T, w, B = 8, 2.0, 4, 5
    h = T / N
    app = LayerApp(N, T, w, B, _kernels.TANH, _kernels.BIAS_CHANNEL, False)
    blocks = [rng.standard_normal(w * w + w) for _ in range(N)]
    for n, blk in enumerate(blocks):
        app.set_layer(n, blk)
    u = rng.standard_normal((w, B))
    W = lambda n: blocks[n][:w * w].reshape(w, w)
    b = lambda n: blocks[n][w * w:]
    # a coarse step 2h -> 4h uses layer 2 (the fine start index) with step 2h
    got = app.step_vector(u, 2 * h, 4 * h).reshape(w, B)
    ref = u + 2 * h * np.tanh(W(2) @ u + b(2)[:, None])
    np.testing.assert_allclose(got, ref, rtol=1e-13, atol=1e-14)
    # the step out of point 0 reads the app's current u_0, not the vector it is given
    with pytest.raises(RuntimeError, match="value at point 0"):
        app.step_vector(u, 0.0, h)
    u0 = rng.standard_normal((w, B))
    app.set_first(u0)
    got = app.step_vector(np.zeros(w * B), 0.0, h).reshape(w, B)
    np.testing.assert_allclose(got, u0 + h * np.tanh(W(0) @ u0 + b(0)[:, None]), rtol=1e-13, atol=1e-14)
    np.testing.assert_array_equal(app.init_vector(0.0).reshape(w, B), u0)
    assert not app.init_vector(h).any()
    # a missing layer is a clear error, not a crash
    app.set_layer(5, None)
    with pytest.raises(RuntimeError, match="weights of layer 5"):
        app.step_vector(u, 5 * h, 6 * h)

    # adjoint: step k0 -> k1 applies layer m = N - k1 at the primal state u_m
    adj = LayerApp(N, T, w, B, _kernels.TANH, _kernels.BIAS_CHANNEL, True)
    for n, blk in enumerate(blocks):
        adj.set_layer(n, blk)
    um = rng.standard_normal((w, B))
    lam = rng.standard_normal((w, B))
    with pytest.raises(RuntimeError, match="primal state at point 5"):
        adj.step_vector(lam, 1 * h, 3 * h)
    adj.set_state(5, um)
    got = adj.step_vector(lam, 1 * h, 3 * h).reshape(w, B)
    d = (1 - np.tanh(W(5) @ um + b(5)[:, None]) ** 2) * lam
    np.testing.assert_allclose(got, lam + 2 * h * W(5).T @ d, rtol=1e-12, atol=1e-13)
    # the layer gradient accumulates h dF/dtheta^T lam at the app's weights and state of layer 5
    g = np.ones(w * w + w)
    adj.add_gradient(5, lam, g)
    np.testing.assert_allclose(g[:w * w].reshape(w, w), 1 + h * d @ um.T, rtol=1e-12)
    np.testing.assert_allclose(g[w * w:], 1 + h * d.sum(axis=1), rtol=1e-12)

    with pytest.raises(ValueError, match="C-contiguous float64"):
        app.set_layer(0, np.zeros(3))
    with pytest.raises(ValueError, match="layer index"):
        app.set_layer(N, blocks[0])
    with pytest.raises(ValueError, match="point index"):
        app.set_store(N + 1, u)
    with pytest.raises(ValueError, match="writable"):
        ro = np.zeros((w, B))
        ro.flags.writeable = False
        app.set_store(1, ro)


def plain_primal_step(block, u, h, act, bias, dtype):
    """u + h sigma(W u + b) by the kernels, without kept derivatives."""
    from braidnet._layerapp import LayerApp

    N, width = 8, u.shape[0]
    app = LayerApp(N, h * N, width, u.shape[1], act, bias, False, dtype)
    app.set_layer(3, block)
    return app.step_vector(u.ravel().copy(), 3 * h, 4 * h)


@pytest.mark.parametrize("dtype,width", [(np.float64, 40), (np.float64, 8), (np.float32, 40),
                                         (np.float32, 24), (np.float32, 8)])
@pytest.mark.parametrize("act", [_kernels.TANH, _kernels.RELU, _kernels.SMOOTHRELU])
@pytest.mark.parametrize("bias", [_kernels.BIAS_CHANNEL, _kernels.BIAS_SCALAR])
def test_kept_derivatives_change_nothing(dtype, width, act, bias):
    """An adjoint step and a layer gradient with sigma' kept equal the recomputing ones bit for
    bit, on fine and coarse steps, fused and BLAS widths (ReLU's kept as bits there)."""
    from braidnet._layerapp import LayerApp

    rng = np.random.default_rng(7)
    N, T, B = 8, 2.0, 13
    h = T / N
    ls = width * width + (width if bias == _kernels.BIAS_CHANNEL else 1)
    blocks = [(rng.standard_normal(ls) / np.sqrt(width)).astype(dtype) for _ in range(N)]
    states = [rng.standard_normal((width, B)).astype(dtype) for _ in range(N)]
    plain, kept = (LayerApp(N, T, width, B, act, bias, True, dtype) for _ in range(2))
    shape, dt = _kernels.deriv_block(act, width, B, dtype)

    def blank():        # a kept sigma' before it is filled
        return np.full(shape, 0xFF if dt == np.uint8 else np.nan, dt)
    ds = {m: blank() for m in (1, 3, 6)}
    for app in (plain, kept):
        for n in range(N):
            app.set_layer(n, blocks[n])
            app.set_state(n, states[n])
    for m, d in ds.items():
        kept.set_deriv(m, d)
    kept.update_derivs()
    lam = rng.standard_normal(width * B).astype(dtype)
    nan = np.full_like(lam, np.nan)     # a clone whose copy the core put off: the step writes it all
    for k0, k1 in ((1, 2), (4, 5), (2, 7)):     # layers N - k1 = 6, 3 (fine steps), 1 (coarse)
        ref = plain.step_vector(lam.copy(), k0 * h, k1 * h)
        np.testing.assert_array_equal(kept.step_vector(lam.copy(), k0 * h, k1 * h), ref)
        for app in (plain, kept):
            np.testing.assert_array_equal(app.step_vector(nan, k0 * h, k1 * h, src=lam), ref)
    for m in ds:
        g_plain, g_kept = np.zeros(ls), np.zeros(ls)
        lam2 = lam.reshape(width, B)
        plain.add_gradient(m, lam2, g_plain)
        kept.add_gradient(m, lam2, g_kept)
        np.testing.assert_array_equal(g_kept, g_plain)
    with pytest.raises(ValueError, match="only dense layers keep sigma'"):
        LayerApp(N, T, 4, B, act, bias, True, np.float64, conv=(1, 3, 2, 2)).set_deriv(0, np.zeros((4, B)))
    # the primal app fills ds on a fine step of the final sweep (done) out of exactly the value the
    # store keeps, and only there
    prim = LayerApp(N, T, width, B, act, bias, False, dtype)
    fresh = {m: blank() for m in ds}
    for n in range(N):
        prim.set_layer(n, blocks[n])
    for m, d in fresh.items():
        prim.set_deriv(m, d)
        prim.set_store(m, states[m].copy())
    other = rng.standard_normal(width * B).astype(dtype)
    np.testing.assert_array_equal(prim.step_vector(nan, 3 * h, 4 * h, done=1, src=states[3].ravel()),
                                  plain_primal_step(blocks[3], states[3], h, act, bias, dtype))
    prim.step_vector(states[6].ravel().copy(), 6 * h, 8 * h, level=1, done=1)   # coarse: not kept
    prim.step_vector(other.copy(), 1 * h, 2 * h, done=1)                         # not the kept value
    np.testing.assert_array_equal(prim.step_vector(states[1].ravel().copy(), 1 * h, 2 * h),
                                  plain_primal_step(blocks[1], states[1], h, act, bias, dtype))
    assert list(np.flatnonzero(prim.derivs_valid)) == [3]     # an iteration's step (done 0) neither
    np.testing.assert_array_equal(fresh[3], ds[3])
    prim.access_vector(states[3].ravel(), 3 * h)          # the same value again: still valid
    assert prim.derivs_valid[3] == 1
    prim.access_vector(other, 3 * h)                      # a new final value: sigma' is stale
    assert not prim.derivs_valid.any()
    prim.step_vector(other.copy(), 3 * h, 4 * h, done=1)
    prim.reset_derivs()
    assert not prim.derivs_valid.any()
    kept.update_derivs(skip=np.array([0, 1, 0, 1, 0, 0, 1, 0], np.uint8))   # nothing recomputed
    with pytest.raises(ValueError, match="skip must have 8 flags"):
        kept.update_derivs(skip=np.zeros(3, np.uint8))
    kept.set_state(3, None)
    with pytest.raises(RuntimeError, match="layer 3 keeps sigma' but has no primal state"):
        kept.update_derivs()


def test_final_relaxation_leaves_the_derivatives():
    """With a final FC relaxation the primal solve leaves sigma' of every F-point it owns (a C-point's
    is taken before its C-relaxation: recomputed), and the gradient is the serial one."""
    from mpi4py import MPI

    net, X, Y, theta = _problem(n_layers=16, width=40)
    with ParallelNetwork(net, X, Y, comm=MPI.COMM_SELF,
                         braid=dict(max_levels=2, cfactor=4, nrelax=0, final_fc_relax=True)) as pn:
        pn.set_params(theta)
        pn.forward(max_iter=2, abs_tol=0.0)
        valid = np.flatnonzero(pn._papp.derivs_valid)
        assert set(valid) == {m for m in range(1, 16) if m % 4}, valid
        g, _ = pn.backward()
        f = pn.forward()
        g, _ = pn.backward()
        obj, gs = net.loss_and_gradient(theta, X, Y)
        assert abs(f["objective"] - obj) <= RTOL * abs(obj)
        assert np.max(np.abs(g - gs)) <= RTOL * np.max(np.abs(gs))


@pytest.mark.parametrize("dtype,width", [(np.float64, 4), (np.float32, 40), (np.float64, 40)])
@pytest.mark.parametrize("relax", [dict(nrelax=[0, 1], skip="every"), dict(nrelax=1, skip=False)])
def test_put_off_clones_change_nothing(dtype, width, relax):
    """LayerApp steps a clone from its original (steps_from_src): the core's clone-then-step costs no
    copy.  The solves, the kept states and the gradient are those of copying clones, bit for bit."""
    from mpi4py import MPI
    from braidnet.refapps import ScalarApp

    net, X, Y, theta = _problem(n_layers=16, width=width, dtype=dtype)
    results = []
    for put_off in (True, False):
        with ParallelNetwork(net, X, Y, comm=MPI.COMM_SELF,
                             braid=dict(max_levels=3, cfactor=4, final_fc_relax=True, **relax)) as pn:
            assert pn._papp.steps_from_src and pn._aapp.steps_from_src
            pn._papp.steps_from_src = pn._aapp.steps_from_src = put_off
            pn.set_params(theta)
            runs = []
            for _ in range(2):          # a cold and a warm pass
                f = pn.forward(max_iter=2, abs_tol=0.0)
                g, b = pn.backward(max_iter=2, abs_tol=0.0)
                w = pn.warm_states()
                runs.append((f["objective"], f["rnorm"], b["rnorm"], g, w["primal"], w["adjoint"]))
            results.append(runs)
    for on, off in zip(*results):
        assert on[:3] == off[:3]
        for a, b in zip(on[3:], off[3:]):
            np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="does not step from src"):
        ScalarApp().step_vector(np.ones(1), 0.0, 0.1, src=np.ones(1))


@pytest.mark.parametrize("opening", ["pad", "dense"])
def test_comm_self_equals_serial(opening):
    from mpi4py import MPI

    net, X, Y, theta = _problem(n_layers=12, opening=opening)
    with ParallelNetwork(net, X, Y, comm=MPI.COMM_SELF, X_val=X[:10], Y_val=Y[:10],
                         braid=dict(max_levels=3, cfactor=2, nrelax=1)) as pn:
        assert pn.param_slice == slice(0, net.n_params)
        assert pn.levels == [1, 2, 4]
        for _ in range(2):
            pn.set_params(pn.scatter(theta))
            f = pn.forward()
            g, info = pn.backward()
            obj, gs = net.loss_and_gradient(theta, X, Y)
            assert abs(f["objective"] - obj) <= RTOL * abs(obj)
            assert abs(f["loss"] - net.loss(theta, X, Y)) <= RTOL * abs(obj)
            assert np.max(np.abs(g - gs)) <= RTOL * np.max(np.abs(gs))
            assert f["accuracy"] == net.accuracy(theta, X, Y)
            assert pn.validate() == net.accuracy(theta, X[:10], Y[:10])
            assert f["iterations"] >= 1 and info["iterations"] >= 1
            np.testing.assert_array_equal(pn.gather(g), g)
            assert pn.gather(g, root=None) is not None
            assert pn.dot(g, g) == pytest.approx(float(g @ g), rel=1e-15)
            theta = theta + 0.1 * np.random.default_rng(5).standard_normal(theta.shape)
        # limited drives report their iteration count and last residual
        pn.set_params(pn.scatter(theta))
        f = pn.forward(max_iter=1)
        assert f["iterations"] == 1 and f["rnorm"] >= 0.0
        _, info = pn.backward(max_iter=2, abs_tol=0.0)
        assert info["iterations"] == 2
    # no validation data: nan
    with ParallelNetwork(net, X, Y, comm=MPI.COMM_SELF) as pn:
        pn.set_params(theta)
        assert np.isnan(pn.validate())


def test_bad_input_raises_value_error():
    from mpi4py import MPI

    net, X, Y, theta = _problem()
    self_ = MPI.COMM_SELF
    with pytest.raises(ValueError, match="ResNet"):
        ParallelNetwork("net", X, Y, comm=self_)
    with pytest.raises(ValueError, match="X must have shape"):
        ParallelNetwork(net, X[:, :1], Y, comm=self_)
    with pytest.raises(ValueError, match="labels must be in"):
        ParallelNetwork(net, X, Y + 3, comm=self_)
    with pytest.raises(ValueError, match="both X_val and Y_val"):
        ParallelNetwork(net, X, Y, comm=self_, X_val=X)
    with pytest.raises(ValueError, match="comm"):
        ParallelNetwork(net, X, Y, comm="world")
    with pytest.raises(ValueError, match="unknown option"):
        ParallelNetwork(net, X, Y, comm=self_, braid=dict(levels=3))
    with pytest.raises(ValueError, match="cfactor"):
        ParallelNetwork(net, X, Y, comm=self_, braid=dict(cfactor=1))
    with pytest.raises(ValueError, match="rel_tol"):
        ParallelNetwork(net, X, Y, comm=self_, braid=dict(rel_tol=1e-6))
    with pytest.raises(ValueError, match="access_level"):
        ParallelNetwork(net, X, Y, comm=self_, braid=dict(access_level=0))
    with pytest.raises(ValueError, match="braid must be a dict"):
        ParallelNetwork(net, X, Y, comm=self_, braid=[("cfactor", 2)])
    with pytest.raises(ValueError, match="guess must be one of constant, zero, got guess='ones'"):
        ParallelNetwork(net, X, Y, comm=self_, guess="ones")

    with ParallelNetwork(net, X, Y, comm=self_) as pn:
        with pytest.raises(RuntimeError, match="set_params"):
            pn.forward()
        with pytest.raises(ValueError, match="theta_local must be a float64 array of shape"):
            pn.set_params(theta[:-1])
        with pytest.raises(ValueError, match="NaN"):
            pn.set_params(np.full_like(theta, np.nan))
        with pytest.raises(ValueError, match="theta_full"):
            pn.scatter(theta.astype(np.float32))
        pn.set_params(theta)
        with pytest.raises(RuntimeError, match="forward"):
            pn.backward()
        with pytest.raises(ValueError, match="max_iter"):
            pn.forward(max_iter=-1)
        with pytest.raises(ValueError, match="max_iter"):
            pn.forward(max_iter=2.5)
        with pytest.raises(ValueError, match="abs_tol"):
            pn.forward(abs_tol=float("nan"))
        with pytest.raises(ValueError, match="root"):
            pn.gather(theta, root=1)
        with pytest.raises(ValueError, match="b_local"):
            pn.dot(theta, theta[:3])
    with pytest.raises(ValueError, match="closed"):
        pn.forward()
    pn.close()   # idempotent


def test_warm_states_resume_exactly():
    from mpi4py import MPI

    net, X, Y, theta = _problem(n_layers=10, opening="dense")
    opts = dict(max_levels=3, cfactor=2, nrelax=1)

    def step(pn, th):
        pn.set_params(th)
        f = pn.forward(max_iter=1)
        g, b = pn.backward(max_iter=1)
        return f, b, g.tolist(), pn.validate(max_iter=1)

    with ParallelNetwork(net, X, Y, comm=MPI.COMM_SELF, X_val=X[:7], Y_val=Y[:7], braid=opts) as pn:
        for _ in range(3):
            step(pn, theta)
        warm = pn.warm_states()
        assert sorted(warm) == ["adjoint", "primal", "validation"]
        assert warm["primal"].shape == warm["adjoint"].shape == (11, net.width, 30)
        assert warm["validation"].shape == (11, net.width, 7)
        np.testing.assert_array_equal(pn.warm_states(root=None)["primal"], warm["primal"])
        cont = step(pn, theta + 0.01)
        with pytest.raises(RuntimeError, match="driven already"):
            pn.load_warm_states(warm)
    with ParallelNetwork(net, X, Y, comm=MPI.COMM_SELF, X_val=X[:7], Y_val=Y[:7], braid=opts) as pn:
        with pytest.raises(ValueError, match="unknown warm-state keys"):
            pn.load_warm_states({"dual": warm["primal"]})
        with pytest.raises(ValueError, match="shape"):
            pn.load_warm_states({"validation": warm["primal"]})
        pn.load_warm_states(warm)
        assert step(pn, theta + 0.01) == cont


@pytest.mark.parametrize("skip", [1, "every"])
def test_core_options_skip_and_final_fc_relax(skip):
    # skip "every" and the final FC relaxation reach the primal and the adjoint core; converged
    # solves still give the exact objective and gradient, and the work the options save or add
    # shows in the step counts
    from mpi4py import MPI

    net, X, Y, theta = _problem(n_layers=16, opening="dense")
    obj, gs = net.loss_and_gradient(theta, X, Y)
    steps = {}
    for fc in (False, True):
        opts = dict(max_levels=3, cfactor=4, nrelax=0, skip=skip, final_fc_relax=fc)
        with ParallelNetwork(net, X, Y, comm=MPI.COMM_SELF, braid=opts) as pn:
            pn.set_params(pn.scatter(theta))
            pn.forward(max_iter=2)
            pn.backward(max_iter=2)
            steps[fc] = pn.step_counts()
            first = [list(c.residual_norms) for c in (pn._primal, pn._adjoint)]
            pn.set_params(pn.scatter(theta))
            f = pn.forward(max_iter=2)
            g, _ = pn.backward(max_iter=2)
            again = [list(c.residual_norms) for c in (pn._primal, pn._adjoint)]
            assert all(h[0] == -1.0 for h in first)                     # skip in the first drive
            assert all((h[0] == -1.0) == (skip == "every") for h in again), again
            f = pn.forward()
            g, _ = pn.backward()
            assert abs(f["objective"] - obj) <= RTOL * abs(obj)
            assert np.max(np.abs(g - gs)) <= RTOL * np.max(np.abs(gs))
    # the final FC relaxation replaces the final F-relaxation: one step more per C-point > 0 (4 of them)
    assert steps[True]["primal"] - steps[False]["primal"] == 4
    assert steps[True]["adjoint"] - steps[False]["adjoint"] == 4


def test_loaded_states_skip_from_the_second_drive_with_skip_every():
    # the coarse right-hand sides that a warm restart's skip reuses are not in the loaded states:
    # a loaded core's first drive does not skip, the later ones do
    from mpi4py import MPI

    net, X, Y, theta = _problem(n_layers=10, opening="dense")
    opts = dict(max_levels=3, cfactor=2, nrelax=1, skip="every")
    with ParallelNetwork(net, X, Y, comm=MPI.COMM_SELF, braid=opts) as pn:
        pn.set_params(pn.scatter(theta))
        pn.forward(max_iter=2)
        warm = pn.warm_states()
    with ParallelNetwork(net, X, Y, comm=MPI.COMM_SELF, braid=opts) as pn:
        pn.load_warm_states({"primal": warm["primal"]})
        pn.set_params(pn.scatter(theta))
        steps = []
        for _ in range(3):
            before = pn.step_counts()["primal"]
            pn.forward(max_iter=2)
            steps.append(pn.step_counts()["primal"] - before)
        assert pn._primal.options["skip"] == "every"
    assert steps[0] > steps[1] == steps[2], steps


# ---------------------------------------------------------------------------------------------
# the initial guess of a cold solve (docs/design.md section 2.10)

GUESS_CASES = [
    # mirrored on 2 and 4 ranks
    dict(n_layers=15, width=4, iterations=2, braid=dict(max_levels=3, cfactor=2, nrelax=1, skip=0)),
    # shifted distributions, F-relaxation with the final FC relaxation
    dict(n_layers=13, width=5, iterations=2, braid=dict(max_levels=3, cfactor=2, nrelax=0, skip=0,
                                                        final_fc_relax=True)),
    # fewer coarse points than ranks; wide enough to keep sigma'
    dict(n_layers=26, width=40, iterations=1, braid=dict(max_levels=3, cfactor=4, nrelax=1, skip=0)),
]
for i, c in enumerate(GUESS_CASES):
    c["seed"] = 40 + i


@pytest.mark.mpi
@pytest.mark.parametrize("nprocs", [2, 4])
def test_cold_guess_is_rank_independent_and_more_accurate(nprocs, tmp_path):
    values = mpi_launch.run_cases(nprocs, [("cases_parallel.cold_guess", c) for c in GUESS_CASES], tmp_path, 120.0)
    for case, ranks in zip(GUESS_CASES, values):
        res = ranks[0]
        where = f"P={nprocs}, {case}"
        for guess in ("constant", "zero"):
            assert res[guess]["vs_1_rank"] <= RTOL, (guess, where)
        # the same solves from u_0 / lambda_N at every point are closer to the exact gradient
        assert res["constant"]["error"] < 0.8 * res["zero"]["error"], (res, where)


def _cold_pass(net, X, Y, theta, opts, guess, load=None):
    """Objective, adjoint info, gradient, validation accuracy and whole states after a cold pass of
    2 + 2 iterations and one validation iteration (``load``: states loaded first, per core)."""
    from mpi4py import MPI

    with ParallelNetwork(net, X, Y, comm=MPI.COMM_SELF, X_val=X[:7], Y_val=Y[:7], braid=opts, guess=guess) as pn:
        pn.set_params(pn.scatter(theta))
        if load:
            pn.load_warm_states({"primal": load["primal"], "validation": load["validation"]})
        f = pn.forward(max_iter=2)
        if load:        # lambda_N is known after the forward
            pn.load_warm_states({"adjoint": load["adjoint"]})
        g, b = pn.backward(max_iter=2)
        return f, b, g, pn.validate(max_iter=1), pn.warm_states(endpoints=True)


def test_constant_guess_is_the_constant_states_loaded():
    # guess="constant" is the same solve as loading u_0 (lambda_N) at every point, bit for bit
    net, X, Y, theta = _problem(n_layers=16, opening="dense")
    opts = dict(max_levels=3, cfactor=2, nrelax=1, skip=0)
    *const, states = _cold_pass(net, X, Y, theta, opts, "constant")
    first = {"primal": 0, "adjoint": net.n_layers, "validation": 0}
    load = {name: np.repeat(states[name][p][None], net.n_layers + 1, axis=0) for name, p in first.items()}
    *loaded, _ = _cold_pass(net, X, Y, theta, opts, "zero", load)
    *zero, _ = _cold_pass(net, X, Y, theta, opts, "zero")
    assert const[:2] == loaded[:2] and const[3] == loaded[3]
    np.testing.assert_array_equal(const[2], loaded[2])
    assert const[0]["objective"] != zero[0]["objective"]
    exact = net.loss_and_gradient(theta, X, Y)[1]
    err = lambda g: np.linalg.norm(g - exact) / np.linalg.norm(exact)
    assert err(const[2]) < 0.5 * err(zero[2])


@pytest.mark.parametrize("skip", [1, "every"])
def test_skipped_first_iteration_overwrites_the_guess(skip):
    # the skipped first down-cycle replaces every point's guess (C-points by the coarse solution,
    # F-points by the relaxation after it): the guesses agree to round-off
    net, X, Y, theta = _problem(n_layers=16, opening="dense")
    opts = dict(max_levels=3, cfactor=2, nrelax=0, skip=skip)
    f_c, _, g_c, _, _ = _cold_pass(net, X, Y, theta, opts, "constant")
    f_z, _, g_z, _, _ = _cold_pass(net, X, Y, theta, opts, "zero")
    assert f_c["objective"] == pytest.approx(f_z["objective"], rel=1e-13)
    np.testing.assert_allclose(g_c, g_z, rtol=0, atol=1e-12 * np.max(np.abs(g_z)))
