"""Tests of mini-batch One-shot training (optimizer.batch_size, SGD / Adam, stochastic L-BFGS).

The MPI tests train the small peaks problem of tests/test_train.py on mini-batches through the CLI
(``mpi_launch.run_cli``) on several (P, Q) splits and compare the history files; the resume tests
inject a failure (tests/cases_train.py) and continue on another split.  The in-process tests compare
a training run with exact (one-level, layer-serial) solves against SGD written out in numpy on the
same batch order, and ParallelNetwork's mini-batch mode against a network built on the batch alone.
"""
from __future__ import annotations

import math
import os

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from braidnet import config as C
from braidnet.batches import BatchOrder

from test_train import BASE_TOML, TIMING, _column, _history, _launch, _ok, _progress_iterations

# Mini-batches of the base problem: 200 samples in batches of 50 (4 steps per epoch), 3 epochs = 12
# steps of Adam; checkpoints every 3 steps (3, 6, 9: 6 lies inside epoch 1).
MINI = """
method = "adam"
lr = 0.01
batch_size = 50
epochs = 3
batch_seed = 4
"""
MINI_TOML = BASE_TOML.replace("[optimizer]\niterations = 8\n", "[optimizer]\n" + MINI)
STEPS, PER_EPOCH = 12, 4
# Every (P, Q) runs the same layer steps on each sample; only sums are reduced in another order:
# 1e-16 relative differences that 12 Adam steps keep far below this.
RTOL = 1e-9
SPLITS = [(1, 1), (2, 1), (1, 2), (2, 2)]


def _assert_close(actual: list, desired: list, where: str, rtol: float = RTOL) -> None:
    """Every numeric column equal to rtol (the residual norms with a 1e-14 floor), rows alike."""
    assert len(actual) == len(desired), where
    for name in desired[0]:
        if name in TIMING or name in ("version", "core"):
            continue
        a, d = _column(actual, name), _column(desired, name)
        atol = 1e-14 if name.endswith("rnorm") else 0.0
        assert_allclose(a, d, rtol=rtol, atol=atol, err_msg=f"{name}, {where}")


def _train(folder, nprocs: int, Q: int, *extra: str, fault=None, resume: bool = False, out: str = "out"):
    args = ["train", folder / "mini.toml", "--out", folder / out, "--set", f"parallel.data={Q}"]
    for e in extra:
        args += ["--set", e]
    if resume:
        args.append("--resume")
    return _launch(nprocs, args, fault=fault)


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    """The mini-batch problem trained on every (P, Q) of SPLITS: {(P, Q): history}."""
    out = {}
    for P, Q in SPLITS:
        folder = tmp_path_factory.mktemp(f"mini{P}{Q}")
        (folder / "mini.toml").write_text(MINI_TOML)
        _ok(_train(folder, P * Q, Q))
        out[(P, Q)] = _history(folder / "out")
    return out


@pytest.mark.mpi
@pytest.mark.slow
def test_minibatch_history_same_on_every_split(mini):
    ref = mini[(1, 1)]
    assert len(ref) == STEPS + 1
    # it trains: the batch objective falls, and the epoch column counts batches
    obj = _column(ref, "objective")
    assert obj[-4:].mean() < 0.5 * obj[0]
    assert_allclose(_column(ref, "epoch"), np.arange(STEPS + 1) / PER_EPOCH)
    assert_array_equal(_column(ref, "step")[1:], 0.01)          # Adam's learning rate of each step
    assert (_column(ref, "primal_rnorm") > 1e-6).all()           # inexact One-shot solves
    for split, hist in mini.items():
        _assert_close(hist, ref, f"(P, Q) = {split}")


@pytest.mark.mpi
@pytest.mark.slow
def test_minibatch_reproducible_from_the_seed(mini, tmp_path):
    (tmp_path / "mini.toml").write_text(MINI_TOML)
    _ok(_train(tmp_path, 2, 1))
    again = _history(tmp_path / "out")
    same = [n for n in again[0] if n not in TIMING]
    assert [[r[n] for n in same] for r in again] == [[r[n] for n in same] for r in mini[(2, 1)]]
    _ok(_train(tmp_path, 2, 1, "optimizer.batch_seed=5", out="other"))   # another order
    other = _history(tmp_path / "other")
    # the same start, other batches: the first objectives differ (batch 0 is another sample)
    assert not np.allclose(_column(other, "objective")[:4], _column(again, "objective")[:4], rtol=1e-6)


@pytest.mark.mpi
@pytest.mark.slow
@pytest.mark.parametrize("before,after", [((2, 2), (1, 2)), ((2, 1), (1, 1))])
def test_minibatch_resume_mid_epoch_on_another_split(mini, tmp_path, before, after):
    (tmp_path / "mini.toml").write_text(MINI_TOML)
    P, Q = before
    # the last rank fails in step 8's gradient: the checkpoint of step 6 (epoch 1, batch 2) remains
    proc = _train(tmp_path, P * Q, Q, fault={"raise_on_rank": P * Q - 1, "at_gradient": 9})
    assert proc.returncode != 0 and "injected failure" in proc.stderr, proc.stdout + proc.stderr
    with np.load(os.path.join(str(tmp_path / "out"), "checkpoint.npz")) as z:
        assert int(z["iteration"]) == 6 and int(z["batch_step"]) == 6
        assert z["warm_primal"].shape == (17, 8, 200)          # every sample's states, any split
        assert z["opt_m"].shape == z["theta"].shape            # Adam's moments, whole
    P, Q = after
    proc = _ok(_train(tmp_path, P * Q, Q, resume=True))
    assert _progress_iterations(proc.stdout) == list(range(6, STEPS + 1))
    _assert_close(_history(tmp_path / "out"), mini[after], f"{before} resumed on {after}")


@pytest.mark.mpi
@pytest.mark.slow
def test_epoch_rows_and_their_resume(mini, tmp_path):
    (tmp_path / "mini.toml").write_text(MINI_TOML)
    _ok(_train(tmp_path, 2, 1, "output.history=epoch"))
    rows = _history(tmp_path / "out")
    steps = mini[(2, 1)]
    assert_array_equal(_column(rows, "epoch"), [0, 1, 2, 3])
    obj = _column(steps, "objective")
    # an epoch's row: the mean batch objective of its steps, the gradient and validation at its end
    assert_allclose(_column(rows, "objective"), [obj[0]] + [obj[e * 4 - 4:e * 4].mean() for e in (1, 2, 3)],
                    rtol=1e-12)
    assert_allclose(_column(rows, "grad_norm"), _column(steps, "grad_norm")[::4], rtol=1e-12)
    assert_array_equal(_column(rows, "val_accuracy"), _column(steps, "val_accuracy")[::4])
    # interrupted inside epoch 1 (checkpoint of step 6) and resumed: the same rows
    d = tmp_path / "again"
    d.mkdir()
    (d / "mini.toml").write_text(MINI_TOML)
    proc = _train(d, 2, 1, "output.history=epoch", fault={"raise_on_rank": 1, "at_gradient": 9})
    assert proc.returncode != 0
    _ok(_train(d, 2, 1, "output.history=epoch", resume=True))
    again = _history(d / "out")
    same = [n for n in rows[0] if n not in TIMING]
    assert [[r[n] for n in same] for r in again] == [[r[n] for n in same] for r in rows]


@pytest.mark.mpi
@pytest.mark.slow
def test_stochastic_lbfgs(tmp_path):
    (tmp_path / "mini.toml").write_text(MINI_TOML)
    _ok(_train(tmp_path, 1, 1, "optimizer.method=lbfgs", "optimizer.epochs=2"))
    ref = _history(tmp_path / "out")
    assert len(ref) == 2 * PER_EPOCH + 1
    assert (_column(ref, "ls_trials")[1:] >= 1).all()           # a line search on each step's batch
    obj = _column(ref, "objective")
    assert obj[-2:].mean() < 0.7 * obj[0]
    d = tmp_path / "two"
    d.mkdir()
    (d / "mini.toml").write_text(MINI_TOML)
    _ok(_train(d, 2, 2, "optimizer.method=lbfgs", "optimizer.epochs=2"))
    _assert_close(_history(d / "out"), ref, "stochastic L-BFGS on (2, 2)")


@pytest.mark.mpi
@pytest.mark.slow
def test_nested_minibatch_runs_and_resumes(tmp_path):
    nested = ["nested.schedule=[4, 6]", "optimizer.epochs=0", "nested.boost_iterations=1", "nested.boost_d=3",
              "nested.calibrate=0"]
    (tmp_path / "mini.toml").write_text(MINI_TOML)
    _ok(_train(tmp_path, 2, 1, *nested))
    ref = _history(tmp_path / "out")
    assert [int(r["layers"]) for r in ref] == [8] * 5 + [16] * 7
    # the batch order goes on across the levels: the finer level starts on the batch the coarse ended on
    assert_allclose(_column(ref, "epoch"), np.r_[np.arange(5), np.arange(4, 11)] / PER_EPOCH)
    d = tmp_path / "resumed"
    d.mkdir()
    (d / "mini.toml").write_text(MINI_TOML)
    # fails in the finer level's 4th step: the checkpoint of global iteration 6 (level 1, step 1) remains
    proc = _train(d, 2, 1, *nested, fault={"raise_on_rank": 0, "at_gradient": 10})
    assert proc.returncode != 0
    with np.load(os.path.join(str(d / "out"), "checkpoint.npz")) as z:
        assert int(z["level"]) == 1 and int(z["iteration"]) == 1
    _ok(_train(d, 2, 2, *nested, resume=True))
    _assert_close(_history(d / "out"), ref, "nested, (2, 1) resumed on (1, 2)")


# ---------------------------------------------------------------------------------------------
# in process


def _exact_config(tmp_path, *overrides: str) -> C.Config:
    cfg = C.defaults()
    import tomllib
    C._merge(cfg, tomllib.loads(MINI_TOML), "MINI_TOML")
    for o in ("braid.max_levels=1", "optimizer.method=sgd", "optimizer.lr=0.05", "optimizer.momentum=0.5",
              f"output.dir={tmp_path}", "output.progress=false") + overrides:
        C._merge(cfg, C.parse_override(o), "test")
    return C.check(cfg)


@pytest.mark.parametrize("batch_size", [0, 50])
def test_sgd_equals_numpy_sgd_with_exact_solves(tmp_path, batch_size):
    """One MGRIT level is layer-serial time stepping (exact): the run is SGD on the batch objectives."""
    from mpi4py import MPI

    from braidnet.problem import Problem
    from braidnet.train import train

    epochs = "optimizer.epochs=2" if batch_size else "optimizer.epochs=0"
    cfg = _exact_config(tmp_path, f"optimizer.batch_size={batch_size}", epochs, "optimizer.iterations=5")
    result = train(cfg, comm=MPI.COMM_SELF)
    problem = Problem(cfg, MPI.COMM_SELF)
    net, theta = problem.network(16), problem.initial_params(16)
    order = BatchOrder(200, batch_size or 200, 4)
    steps = 8 if batch_size else 5
    buf, objectives = None, []
    for t in range(steps + 1):
        batch = order.batch(*order.position(t)) if batch_size else np.arange(200)
        f, g = net.loss_and_gradient(theta, problem.X[batch], problem.y[batch])
        objectives.append(f)
        if t < steps:
            buf = g.copy() if buf is None else 0.5 * buf + g
            theta = theta - 0.05 * buf
    assert len(result.history) == steps + 1
    assert_allclose([r["objective"] for r in result.history], objectives, rtol=1e-9)
    assert_allclose(result.theta, theta, rtol=1e-9, atol=1e-12)
    assert objectives[-1] < objectives[0]


@pytest.mark.parametrize("warm", ["sample", "batch", "zero"])
def test_parallel_network_batch_equals_network_on_the_batch(warm):
    """Exact solves in mini-batch mode equal a full-batch network built on the batch alone; d = 2
    iterations are inexact, and the per-sample states make them the more accurate."""
    from mpi4py import MPI

    from braidnet.parallel import ParallelNetwork
    from braidnet.resnet import ResNet

    rng = np.random.default_rng(3)
    net = ResNet(2, 3, 5, 12, T=2.0, activation="tanh", gamma_tik=1e-2, gamma_ddt=1e-2, gamma_class=1e-2)
    X, Y = rng.standard_normal((40, 2)), rng.integers(0, 3, 40)
    theta = net.init_params(seed=1, scale_opening=1.0, scale_layers=1.0, scale_classifier=1.0) - 0.5
    order = BatchOrder(40, 10, 0)
    with ParallelNetwork(net, X, Y, comm=MPI.COMM_SELF, batch_size=10, warm=warm) as pn:
        for t in range(6):
            batch = order.batch(*order.position(t))
            pn.use_batch(batch)
            pn.set_params(pn.scatter(theta))
            f = pn.forward()
            g, _ = pn.backward()
            f_ref, g_ref = net.loss_and_gradient(theta, X[batch], Y[batch])
            assert f["objective"] == pytest.approx(f_ref, rel=1e-12)
            assert_allclose(g, g_ref, rtol=1e-9, atol=1e-12)
            theta = theta - 0.1 * g
        warm_states = pn.warm_states(root=None)
    shape = (13, 5, 40) if warm == "sample" else (13, 5, 10)
    assert warm_states["primal"].shape == shape and warm_states["adjoint"].shape == shape
    if warm == "sample":        # every sample was in a batch: each has its converged states
        assert np.abs(warm_states["primal"][1:]).min(axis=(0, 1)).max() > 0


def test_use_batch_errors():
    from mpi4py import MPI

    from braidnet.parallel import ParallelNetwork
    from braidnet.resnet import ResNet

    net = ResNet(2, 3, 4, 4, T=1.0)
    X, Y = np.zeros((20, 2)), np.zeros(20, dtype=int)
    with ParallelNetwork(net, X, Y, comm=MPI.COMM_SELF, batch_size=5) as pn:
        pn.set_params(pn.scatter(net.init_params(seed=0)))
        with pytest.raises(RuntimeError, match="needs use_batch"):
            pn.forward()
        with pytest.raises(ValueError, match=r"indices must be 5 integers in \[0, 20\)"):
            pn.use_batch(np.arange(4))
        with pytest.raises(ValueError, match=r"indices must be 5 integers in \[0, 20\)"):
            pn.use_batch(np.arange(16, 21))
    with pytest.raises(ValueError, match="warm must be one of sample, batch, zero"):
        ParallelNetwork(net, X, Y, comm=MPI.COMM_SELF, batch_size=5, warm="cold")
    with ParallelNetwork(net, X, Y, comm=MPI.COMM_SELF, batch_size=20) as pn:   # all samples: full batch
        assert pn.batch_size is None
        with pytest.raises(RuntimeError, match="needs a mini-batch network"):
            pn.use_batch(np.arange(20))


@pytest.mark.parametrize("overrides,nprocs,message", [
    (["optimizer.method=rmsprop"], 1, r"optimizer\.method must be one of lbfgs, bfgs, sd, sgd, adam; got 'rmsprop'"),
    (["optimizer.batch_size=-1"], 1, r"optimizer\.batch_size must be >= 0, got -1"),
    (["optimizer.batch_size=6000"], 1, r"optimizer\.batch_size=6000 exceeds data\.n_train=5000; use at most 5000"),
    (["optimizer.batch_size=3", "parallel.data=4"], 4,
     r"optimizer\.batch_size=3 cannot be split over parallel\.data=4 data-parallel groups"),
    (["optimizer.batch_size=500", "optimizer.epochs=2", "nested.schedule=[2, 2]", "network.layers=16"], 1,
     r"optimizer\.epochs=2 is for a non-nested run"),
    (["optimizer.epochs=2"], 1, r"optimizer\.epochs=2 needs mini-batches"),
    (["optimizer.nesterov=true"], 1, r"optimizer\.nesterov=true needs optimizer\.momentum > 0"),
    (["optimizer.momentum=1.0"], 1, r"optimizer\.momentum must be >= 0 and < 1, got 1\.0"),
    (["optimizer.lr=0"], 1, r"optimizer\.lr must be > 0, got 0\.0"),
    (["optimizer.warm=cold"], 1, r"optimizer\.warm must be one of sample, batch, zero; got 'cold'"),
    (["optimizer.lr_schedule=linear"], 1, r"optimizer\.lr_schedule must be one of constant, step, cosine"),
    (["optimizer.lr_schedule=cosine", "optimizer.lr_min=0.5", "optimizer.lr=0.1"], 1,
     r"optimizer\.lr_min=0\.5 must be below optimizer\.lr=0\.1"),
    (["output.history=epoch"], 1, r"output\.history='epoch' needs mini-batches"),
    (["output.history=epochs"], 1, r"output\.history must be one of step, epoch"),
    (["optimizer.batch_size=500", "nested.starts=2", "nested.schedule=[40, 2]", "network.layers=16"], 1,
     r"nested\.starts=2 is not available with mini-batches"),
])
def test_config_errors(overrides, nprocs, message):
    with pytest.raises(C.ConfigError, match=message) as e:
        C.load_config(None, overrides, nprocs=nprocs)
    assert "\n" not in str(e.value)


def test_config_accepts_minibatch_keys():
    cfg = C.load_config(None, ["optimizer.method=sgd", "optimizer.batch_size=500", "optimizer.epochs=3",
                               "optimizer.momentum=0.9", "optimizer.nesterov=true", "optimizer.lr_schedule=cosine",
                               "output.history=epoch", "parallel.data=2"], nprocs=2)
    from braidnet.problem import level_plan
    assert level_plan(cfg) == [(64, 30)]                   # 3 epochs of 5000 // 500 steps
    assert ("optimizer", "epochs") in C.RESUMABLE
    C.load_config(None, ["optimizer.method=adam"])          # full-batch Adam
    C.load_config(None, ["optimizer.batch_size=5000"])      # every sample: full batch


def test_peaks_adam_example_loads():
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cfg = C.load_config(os.path.join(here, "examples", "peaks_adam.toml"))
    assert cfg["optimizer"]["method"] == "adam" and 0 < cfg["optimizer"]["batch_size"] < cfg["data"]["n_train"]
    assert math.isfinite(cfg["optimizer"]["lr"])


@pytest.mark.mpi
@pytest.mark.slow
def test_peaks_adam_reaches_the_full_batch_accuracy_band(tmp_path):
    """examples/peaks_adam.toml (Adam, batches of 500 of 5000, 30 epochs) against the full-batch L-BFGS
    run of examples/peaks_plain.toml, which validates at 95.0% after 188 iterations (examples/peaks.toml).
    Measured on 1 rank: 95.0% (batch seeds 1-3: 84.5%, 92.5%, 95.5%); on 2 ranks the same run to round-off."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = _ok(_launch(2, ["train", os.path.join(here, "examples", "peaks_adam.toml"), "--out", tmp_path / "out"],
                       timeout=120.0))
    rows = _history(tmp_path / "out")
    assert_array_equal(_column(rows, "epoch"), np.arange(31))
    with np.load(os.path.join(str(tmp_path / "out"), "weights.npz")) as w:
        final = float(w["val_accuracy"])
    assert 90.0 <= final <= 100.0, proc.stdout[-2000:]
    assert _column(rows, "objective")[-1] < 0.2 * _column(rows, "objective")[0]


def test_progress_epoch_column_follows_the_loaded_data(tmp_path, caplog):
    """data.n_train may ask for more samples than the files hold (lpt_text, digits, idx): whether a run
    is mini-batch, and its progress lines have the epoch column, follows the samples loaded."""
    import logging

    from mpi4py import MPI

    from braidnet import train as T
    rng = np.random.default_rng(0)
    for split, n in (("training", 60), ("validation", 20)):
        np.savetxt(tmp_path / f"features_{split}.dat", rng.standard_normal((n, 2)))
        np.savetxt(tmp_path / f"labels_{split}.dat", np.eye(5)[rng.integers(0, 5, n)])
    for batch, mini in ((60, False), (30, True)):        # data.n_train = 200 > the 60 samples
        cfg = _exact_config(tmp_path / f"run{batch}", "data.dataset=lpt_text", f"data.path='{tmp_path}'",
                            f"optimizer.batch_size={batch}", "optimizer.epochs=1", "output.progress=true")
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="braidnet.progress"):
            res = T.train(cfg, comm=MPI.COMM_SELF, out_dir=None)
        header = [r.getMessage() for r in caplog.records if r.getMessage().startswith("iteration | level")]
        assert len(header) == 1 and header[0].endswith(" | epochs done") == mini, header
        assert len(res.history) == (3 if mini else 2)       # 2 steps of 30 / 1 step of all 60
