"""Tests of nested iteration: refinement of weights and states, work units, runs on several ranks.

What a refinement by r preserves (braidnet/nested.py):
- exactly: every coarse point (theta_{r n} = theta_n, u_{r n} = u_n, both kinds); the refined
  network's stride-r coarse grid is the coarse network bit for bit (same layers, same time values);
  up to round-off, the Tikhonov term (constant) and the time-derivative term (linear) of the
  regulariser, which are the same continuous quantities;
- up to the discretisation: the network's output (forward Euler, first order in h).
The multi-rank runs are ``mpiexec -n P`` launches (oversubscribed) of the cases in
tests/cases_nested.py, through tests/mpi_launch.py.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

import mpi_launch
from small_config import small_config
from numpy.testing import assert_allclose, assert_array_equal

from braidnet import _kernels, config, nested, problem, train, work
from braidnet._layerapp import LayerApp
from braidnet.parallel import ParallelNetwork
from braidnet.resnet import ResNet

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def _net(layers: int, **kw) -> ResNet:
    args = dict(T=2.0, activation="tanh", opening="dense", gamma_tik=1e-2, gamma_ddt=1e-2, gamma_class=1e-2)
    args.update(kw)
    return ResNet(2, 3, 4, layers, **args)


# ---------------------------------------------------------------------------------------------
# interpolation formulas

@pytest.mark.parametrize("r", [2, 3, 4])
def test_layer_interpolation_formulas(r):
    theta = np.random.default_rng(r).standard_normal((5, 7))
    const = nested.interpolate_layers(theta, r, "constant")
    lin = nested.interpolate_layers(theta, r, "linear")
    assert const.shape == lin.shape == (5 * r, 7)
    for n in range(5):
        nxt = theta[min(n + 1, 4)]                       # theta_N := theta_{N-1}
        for k in range(r):
            assert_array_equal(const[r * n + k], theta[n])
            assert_allclose(lin[r * n + k], (1 - k / r) * theta[n] + (k / r) * nxt, rtol=0, atol=1e-14)


@pytest.mark.parametrize("r", [2, 3, 4])
def test_state_interpolation_formulas(r):
    u = np.random.default_rng(10 + r).standard_normal((6, 3, 2))      # N = 5 intervals
    const = nested.interpolate_states(u, r, "constant")
    lin = nested.interpolate_states(u, r, "linear")
    assert const.shape == lin.shape == (5 * r + 1, 3, 2)
    assert_array_equal(const[-1], u[-1])
    assert_array_equal(lin[-1], u[-1])
    for n in range(5):
        for k in range(r):
            assert_array_equal(const[r * n + k], u[n])
            assert_allclose(lin[r * n + k], (1 - k / r) * u[n] + (k / r) * u[n + 1], rtol=0, atol=1e-14)


def test_params_keep_opening_and_classifier_and_reject_bad_factors():
    coarse, fine = _net(4), _net(12)
    theta = np.random.default_rng(0).standard_normal(coarse.n_params)
    out = nested.interpolate_params(coarse, fine, theta, "linear")
    L, Lf = coarse.layout, fine.layout
    assert_array_equal(out[Lf.opening_slice], theta[L.opening_slice])
    assert_array_equal(out[Lf.classifier_slice], theta[L.classifier_slice])
    with pytest.raises(ValueError, match="not a multiple"):
        nested.interpolate_params(coarse, _net(10), theta)
    with pytest.raises(ValueError, match="integer >= 2"):
        nested.interpolate_layers(np.zeros((3, 2)), 1)
    with pytest.raises(ValueError, match="interpolation must be"):
        nested.interpolate_states(np.zeros((3, 2)), 2, "cubic")


# ---------------------------------------------------------------------------------------------
# what a refinement preserves

@pytest.mark.parametrize("r", [2, 3, 4])
@pytest.mark.parametrize("kind", ["constant", "linear"])
def test_refined_coarse_grid_is_the_coarse_network_exactly(r, kind):
    """Stepping the refined network with stride r (an MGRIT coarse level) is the coarse network."""
    N, T, width, batch = 6, 2.0, 4, 5
    coarse, fine = _net(N, T=T), _net(r * N, T=T)
    theta = coarse.init_params(seed=1, scale_opening=1.0, scale_layers=1.0, scale_classifier=1.0) - 0.5
    theta_f = nested.interpolate_params(coarse, fine, theta, kind)
    blocks_c = theta[coarse.layout.layers_slice()].reshape(N, -1)
    blocks_f = theta_f[fine.layout.layers_slice()].reshape(r * N, -1)
    assert_array_equal(blocks_f[::r], blocks_c)
    apps = []
    for net, blocks in ((coarse, blocks_c), (fine, blocks_f)):
        app = LayerApp(net.n_layers, T, width, batch, _kernels.ACTIVATIONS["tanh"], _kernels.BIAS_CHANNEL)
        for n, blk in enumerate(blocks):
            app.set_layer(n, np.ascontiguousarray(blk))
        apps.append(app)
    u0 = np.random.default_rng(2).standard_normal((width, batch))
    for app in apps:
        app.set_first(u0)
    uc = uf = u0.ravel()
    for n in range(N):
        tc = [(i / N) * T for i in (n, n + 1)]                       # the core's time formula
        tf = [(i / (r * N)) * T for i in (r * n, r * (n + 1))]
        assert tc == tf
        uc = apps[0].step_vector(uc, *tc)
        uf = apps[1].step_vector(uf, *tf, level=1)
        assert_array_equal(uf, uc)
    assert apps[0].steps == apps[1].steps == N


def test_regularizer_terms_preserved_by_their_interpolation():
    N, r = 5, 3
    rng = np.random.default_rng(4)
    only_tik, only_ddt = dict(gamma_tik=1.0, gamma_ddt=0.0), dict(gamma_tik=0.0, gamma_ddt=1.0)
    theta = rng.standard_normal(_net(N).n_params)

    def layer_term(net, th):
        return net.regularizer_layers(th[net.layout.layers_slice()])[0]

    for gammas, kind, factor in ((only_tik, "constant", 1.0), (only_ddt, "linear", 1.0),
                                 (only_ddt, "constant", float(r))):
        coarse, fine = _net(N, **gammas), _net(r * N, **gammas)
        th_f = nested.interpolate_params(coarse, fine, theta, kind)
        # constant interpolation keeps the jumps but divides them by h/r: r times the coarse term
        assert_allclose(layer_term(fine, th_f), factor * layer_term(coarse, theta), rtol=1e-12, atol=0)


def test_output_changes_by_the_discretisation_error_only():
    """Weights constant in time: both interpolations give the same refined network, whose output
    differs from the coarse one by O(h) (forward Euler), not more and not exactly 0."""
    X = np.random.default_rng(6).standard_normal((30, 2))
    base = _net(1).init_params(seed=7, scale_opening=1.0, scale_layers=1.0, scale_classifier=1.0) - 0.5
    net1 = _net(1)
    block = base[net1.layout.layers_slice()]

    def params(N):
        net = _net(N)
        th = np.empty(net.n_params)
        th[net.layout.opening_slice] = base[net1.layout.opening_slice]
        th[net.layout.classifier_slice] = base[net1.layout.classifier_slice]
        th[net.layout.layers_slice()] = np.tile(block, N)
        return net, th

    diffs = []
    for N in (4, 8, 16):
        coarse, th = params(N)
        fine = _net(2 * N)
        th_c = nested.interpolate_params(coarse, fine, th, "constant")
        th_l = nested.interpolate_params(coarse, fine, th, "linear")
        assert_array_equal(th_c, th_l)
        assert_array_equal(th_c, params(2 * N)[1])
        diffs.append(np.max(np.abs(fine.logits(th_c, X) - coarse.logits(th, X))))
    assert diffs[-1] > 1e-6
    ratios = np.array(diffs[:-1]) / np.array(diffs[1:])
    assert np.all((ratios > 1.7) & (ratios < 2.3)), ratios       # first order: halves with h


# ---------------------------------------------------------------------------------------------
# the refined network in the layer-parallel solver (one rank here, 1-4 ranks below)

def _refined_solve(kind: str, states: bool, iterations):
    rng = np.random.default_rng(8)
    X, Y = rng.standard_normal((30, 2)), rng.integers(0, 3, 30)
    braid = dict(max_levels=3, cfactor=2)
    coarse, fine = _net(8), _net(16)
    theta = coarse.init_params(seed=9, scale_opening=1.0, scale_layers=1.0, scale_classifier=1.0) - 0.5
    with ParallelNetwork(coarse, X, Y, braid=braid) as pn:
        pn.set_params(pn.scatter(theta))
        pn.forward()
        pn.backward()
        warm = nested.refine_warm_states(pn.warm_states(root=None, endpoints=True), 2, kind)
    theta_f = nested.interpolate_params(coarse, fine, theta, kind)
    with ParallelNetwork(fine, X, Y, braid=braid) as pn:
        if states:
            pn.load_warm_states(warm)
        pn.set_params(pn.scatter(theta_f))
        info = pn.forward(max_iter=iterations)
        g, binfo = pn.backward(max_iter=iterations)
        counts = pn.step_counts()
    return fine, theta_f, X, Y, info, g, binfo, counts


@pytest.mark.parametrize("kind", ["constant", "linear"])
def test_refined_gradient_equals_serial(kind):
    fine, theta_f, X, Y, info, g, _, counts = _refined_solve(kind, True, None)
    f_ser, g_ser = fine.loss_and_gradient(theta_f, X, Y)
    assert_allclose(info["objective"], f_ser, rtol=1e-12, atol=0)
    assert_allclose(g, g_ser, rtol=0, atol=1e-10 * np.max(np.abs(g_ser)))
    assert counts["gradient"] == fine.n_layers and counts["validation"] == 0
    assert counts["primal"] > 0 and counts["adjoint"] > 0


def test_refined_states_are_a_better_initial_guess_than_zeros():
    *_, info_warm, _, binfo_warm, _ = _refined_solve("linear", True, 3)
    *_, info_cold, _, binfo_cold, _ = _refined_solve("linear", False, 3)
    # the same 3 MGRIT iterations from the refined states leave a far smaller residual than from
    # zeros (measured: about 1/150 primal, 1/180 adjoint, with these O(1) weights)
    assert 0 <= info_warm["rnorm"] < 0.1 * info_cold["rnorm"]
    assert 0 <= binfo_warm["rnorm"] < 0.1 * binfo_cold["rnorm"]


# ---------------------------------------------------------------------------------------------
# training: work units

_cfg = small_config


def test_counted_work_units_of_a_plain_run_are_the_iteration_count(tmp_path):
    from mpi4py import MPI
    res = train.train(_cfg(), comm=MPI.COMM_SELF, out_dir=str(tmp_path))
    last = res.history[-1]
    assert last["iteration"] == 6
    assert last["work_units_counted"] == 6.0 and last["work_units"] == 6.0
    steps = [r["layer_steps"] for r in res.history]
    assert steps[0] > 0 and np.all(np.diff(steps) > 0)
    assert_allclose([r["work_units_counted"] for r in res.history], 6.0 * np.array(steps) / steps[-1],
                    rtol=1e-15, atol=0)
    with open(tmp_path / "history.csv") as f:
        lines = f.read().splitlines()
    header, final = lines[0].split(","), lines[-1].split(",")
    assert float(final[header.index("work_units_counted")]) == 6.0


def test_counted_work_of_a_nested_run_scales_with_depth(tmp_path):
    """Per iteration, the 4x shallower level costs about a quarter of a finest-level iteration; the
    calibration gives the unit: a finest-level iteration with base d costs about 1."""
    from mpi4py import MPI
    cfg = _cfg(network={"layers": 16}, nested={"schedule": [4, 4, 4], "boost_iterations": 0},
               optimizer={"ls_trials": 1})
    res = train.train(cfg, comm=MPI.COMM_SELF, out_dir=str(tmp_path))
    h = res.history
    per_it = {}
    for layers in (4, 16):
        rows = [r for r in h if r["layers"] == layers]
        per_it[layers] = (rows[-1]["work_units_counted"] - rows[1]["work_units_counted"]) / (len(rows) - 2)
    assert 0.15 < per_it[4] < 0.4, per_it
    assert 0.8 < per_it[16] < 1.25, per_it
    assert all(np.isfinite(r["work_units"]) for r in h)


def test_resuming_any_checkpoint_of_a_nested_run_repeats_it(tmp_path, monkeypatch):
    """Every checkpoint of a nested run (on each level, inside and after the boost of d that follows
    a refinement, at a level's start, at the end) resumes into the uninterrupted run, bit for bit."""
    import shutil

    from mpi4py import MPI
    from braidnet.runfolder import RunWriter

    cfg = _cfg(network={"layers": 16}, nested={"schedule": [4, 4, 3], "boost_iterations": 3, "boost_d": 4,
                                                "calibrate": 1},
               output={"checkpoint_every": 2})
    kept = []
    write = RunWriter.checkpoint

    def keep(self, ckpt):                # each checkpoint, before the next one replaces it
        write(self, ckpt)
        kept.append((ckpt.level, ckpt.iteration, ckpt.kind, str(tmp_path / f"ckpt{len(kept)}.npz")))
        shutil.copy(self.path("checkpoint.npz"), kept[-1][-1])

    monkeypatch.setattr(RunWriter, "checkpoint", keep)
    ref = train.train(cfg, comm=MPI.COMM_SELF, out_dir=str(tmp_path / "ref"))
    monkeypatch.undo()
    # every 2 global iterations (rows 0-4, 5-9, 10-13), at the start of each refined level, at the end
    assert [c[:3] for c in kept] == [(0, 2, "iteration"), (0, 4, "iteration"), (1, 0, "level"),
                                     (1, 1, "iteration"), (1, 3, "iteration"), (2, 0, "level"),
                                     (2, 2, "iteration"), (2, 3, "end")]
    for level, k, _, path in kept:
        folder = tmp_path / f"resumed_{level}_{k}"
        folder.mkdir()
        shutil.copy(path, folder / "checkpoint.npz")
        res = train.train(cfg, comm=MPI.COMM_SELF, out_dir=str(folder), resume=True)
        assert_array_equal(res.theta, ref.theta)
        for name in ref.history[0]:
            if name not in ("time", "work_units"):
                assert [r[name] for r in res.history] == [r[name] for r in ref.history], (level, k, name)


def test_work_cost_weights():
    assert work.cost({"primal": 3, "adjoint": 2, "gradient": 1, "validation": 100}) == 3 + 4 + 2


# ---------------------------------------------------------------------------------------------
# several ranks

def _launch(nprocs: int, cases: list, tmp_path, timeout: float = 90.0) -> list:
    """Every case in one launch (``{"train": values}`` is cases_nested.run_train(values),
    ``{"gradient": kwargs}`` cases_nested.run_gradient(**kwargs)); per case what rank 0 returned."""
    calls = [("cases_nested.run_train", {"values": c["train"]}) if "train" in c
             else ("cases_nested.run_gradient", c["gradient"]) for c in cases]
    return [ranks[0] for ranks in mpi_launch.run_cases(nprocs, calls, tmp_path, timeout)]


# coarsest networks of 4 (r = 2) and 6 (r = 3) layers: 4 ranks still own a point each
# large initial weights, so that the inexact MGRIT iterates (d = 2) are far from converged
_O1 = {"init_layers": 0.3, "init_opening": 0.3, "init_classifier": 0.3}
MPI_CASES = [
    {"train": {"data": {"n_train": 60, "n_val": 20}, "network": {"width": 4, "layers": 16, **_O1},
               "braid": {"max_levels": 3, "cfactor": 2},
               "nested": {"schedule": [3, 3, 3], "interpolation": "linear", "calibrate": 0,
                          "boost_iterations": 1, "boost_d": 4, "work_unit_steps": 1000.0}}},
    {"train": {"data": {"n_train": 60, "n_val": 20},
               "network": {"width": 4, "layers": 18, "opening": "pad", **_O1},
               "braid": {"max_levels": 2, "cfactor": 3},
               "nested": {"schedule": [3, 3], "refine": 3, "calibrate": 0, "work_unit_steps": 1000.0}}},
    # several coarse starts (braidnet.starts): every rank makes the same choice
    {"train": {"data": {"n_train": 60, "n_val": 20}, "network": {"width": 4, "layers": 16, **_O1},
               "braid": {"max_levels": 2, "cfactor": 2},
               "nested": {"schedule": [4, 2], "starts": 3, "start_iterations": 2, "calibrate": 0,
                          "work_unit_steps": 1000.0}}},
    {"gradient": {"layers": 6, "r": 2, "kind": "linear", "braid": {"max_levels": 3, "cfactor": 2}}},
    {"gradient": {"layers": 5, "r": 3, "kind": "constant", "braid": {"max_levels": 2, "cfactor": 3}}},
]
COMPARED = ["objective", "loss", "grad_norm", "step", "primal_rnorm", "adjoint_rnorm"]


@pytest.mark.mpi
@pytest.mark.slow
def test_nested_runs_agree_on_1_2_and_4_ranks(tmp_path):
    runs = {p: _launch(p, MPI_CASES, tmp_path) for p in (1, 2, 4)}
    for p, results in runs.items():
        for case, res in zip(MPI_CASES, results):
            if "gradient" in case:
                assert res["objective_rel"] < 1e-12, (p, res)
                assert res["gradient_rel"] < 1e-10, (p, res)
                continue
            ref = runs[1][MPI_CASES.index(case)]["history"]
            hist = res["history"]
            assert len(hist) == len(ref)
            assert [r["layers"] for r in hist] == [r["layers"] for r in ref]
            for col in ("primal_iters", "adjoint_iters", "ls_trials", "layer_steps", "train_accuracy",
                        "val_accuracy", "work_units_counted"):
                assert [r[col] for r in hist] == [r[col] for r in ref], (p, col)
            for col in COMPARED:
                a = np.array([r[col] for r in hist])
                b = np.array([r[col] for r in ref])
                # non-converged MGRIT iterates: the same up to round-off of the distributed sums
                assert_allclose(a, b, rtol=1e-8, atol=1e-13, err_msg=f"{col} on {p} ranks")


# ---------------------------------------------------------------------------------------------
# compare, plot, examples

def test_compare_and_plot_from_run_folders(tmp_path, capsys):
    from mpi4py import MPI
    from braidnet import cli
    from braidnet.compare import accuracy_at, load_run, work_to_reach

    plain, nest = str(tmp_path / "plain"), str(tmp_path / "nested")
    train.train(_cfg(), comm=MPI.COMM_SELF, out_dir=plain)
    train.train(_cfg(nested={"schedule": [3, 3], "calibrate": 1}), comm=MPI.COMM_SELF, out_dir=nest)
    assert cli.main(["compare", nest, plain]) == 0
    text = capsys.readouterr().out
    run = load_run(plain)
    assert run.columns["work_units_counted"][-1] == 6.0 and not run.nested and load_run(nest).nested
    assert f"{run.final_val_accuracy:11.2f}" in text and "work units" in text
    # the first row that reaches an accuracy is found (and never-reached gives NaN)
    acc = run.columns["val_accuracy"]
    assert work_to_reach(run, acc[0], "counted") == run.columns["work_units_counted"][0]
    assert np.isnan(work_to_reach(run, 101.0, "wall"))
    # the accuracy at a work count is the last validated row's up to it
    w = run.columns["work_units_counted"]
    assert accuracy_at(run, w[2], "counted") == acc[2] and accuracy_at(run, w[2] - 1e-9, "counted") == acc[1]
    assert np.isnan(accuracy_at(run, -1.0, "counted"))
    assert "at 25 work units: nested " in text and "plain " + f"{acc[-1]:.2f}% (its end, at 6.00)" in text
    out = str(tmp_path / "fig" / "runs.png")
    assert cli.main(["plot", nest, plain, "--out", out, "--units", "wall"]) == 0
    with open(out, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert cli.main(["compare", nest, str(tmp_path / "missing")]) == 2


@pytest.mark.parametrize("name, plan", [("indian_pines", [(32, 200), (64, 100), (128, 50)]),
                                        ("indian_pines_plain", [(128, 150)])])
def test_indian_pines_examples_load(name, plan):
    cfg = config.load_config(os.path.join(ROOT, "examples", name + ".toml"), nprocs=4)
    assert problem.level_plan(cfg) == plan
    assert cfg["network"]["width"] == 220 and cfg["network"]["T"] == 5.0
