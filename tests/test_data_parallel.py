"""Data x layer parallelism: Q groups of P ranks compute what one rank computes with the whole batch."""
from __future__ import annotations

import numpy as np
import pytest

import mpi_launch

RTOL = 1e-9

# (ranks, Q): P = ranks / Q; the batch (31) and the validation batch (9) split unevenly for Q = 2, 4
SPLITS = {1: [1], 2: [2, 1], 3: [3], 4: [2, 4], 6: [3, 2]}


@pytest.mark.mpi
@pytest.mark.slow
@pytest.mark.parametrize("nprocs", sorted(SPLITS))
def test_groups_equal_one_rank(nprocs, tmp_path):
    cases = [("cases_data.groups_equal_one_rank", dict(Q=Q)) for Q in SPLITS[nprocs]]
    cases += [("cases_data.groups_equal_one_rank", dict(Q=SPLITS[nprocs][0], drop=True, activation="relu",
                                                        braid=dict(max_levels=2, cfactor=4, nrelax=0)))]
    cases += [("cases_data.groups_equal_one_rank", dict(Q=SPLITS[nprocs][0], width=20, dtype="float32"))]
    results = mpi_launch.run_cases(nprocs, cases, tmp_path, timeout=300)
    for (_, case), ranks in zip(cases, results):
        tol = 1e-5 if case.get("dtype") == "float32" else RTOL
        where = f"{nprocs} ranks, {case}"
        # every rank (every group) holds the same values
        assert all(r["mine"] == ranks[0]["mine"] for r in ranks), where
        for res in (ranks[0], ranks[0]["resumed"]):
            for key in ("objective", "loss", "gradient", "warm"):
                assert res[key] <= tol, f"{key} differs by {res[key]:.2e}; {where}"
            assert res["rnorm"] <= max(tol, 1e-12), where
            assert res["accuracy"] <= 1e-9 and res["val"] <= 1e-9, where
            assert res["iterations_equal"] and res["steps_equal"], where


def test_bad_data_communicators():
    from mpi4py import MPI

    from braidnet.parallel import ParallelNetwork, split_comm
    from braidnet.resnet import ResNet

    net = ResNet(2, 3, 4, 4)
    X, Y = np.zeros((5, 2)), np.zeros(5, dtype=int)
    with pytest.raises(ValueError, match="data_comm must be an mpi4py intracommunicator"):
        ParallelNetwork(net, X, Y, comm=MPI.COMM_SELF, data_comm="world")
    with pytest.raises(ValueError, match="data=2 data-parallel groups do not divide the 1 ranks"):
        split_comm(MPI.COMM_SELF, 2)
    with pytest.raises(ValueError, match="data must be an integer >= 1, got data=0"):
        split_comm(MPI.COMM_SELF, 0)


# ---------------------------------------------------------------------------------------------
# the command line: training histories and resumption across (P, Q)

@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory):
    """test_train's small peaks run (L-BFGS, inexact One-shot) on 1 rank and on (P, Q) splits."""
    from test_train import BASE_TOML, _launch, _ok

    base = tmp_path_factory.mktemp("data")
    cfg = base / "base.toml"
    cfg.write_text(BASE_TOML)
    out = {"config": cfg}
    for P, Q in ((1, 1), (1, 2), (2, 2), (1, 3), (2, 3)):
        d = base / f"p{P}q{Q}"
        _ok(_launch(P * Q, ["train", cfg, "--out", d, "--set", f"parallel.data={Q}"], timeout=180))
        out[P, Q] = d
    return out


@pytest.mark.mpi
@pytest.mark.slow
def test_training_history_same_for_every_split(cli_runs):
    import json

    from test_train import ITERATIONS, _assert_same_history, _history

    ref = _history(cli_runs[1, 1])
    assert len(ref) == ITERATIONS + 1
    for key in ((1, 2), (2, 2), (1, 3), (2, 3)):
        _assert_same_history(_history(cli_runs[key]), ref, f"(P, Q) = {key} vs one rank")
        run = json.loads((cli_runs[key] / "config.json").read_text())
        assert run["parallel"]["data"] == key[1] and run["run"]["ranks"] == key[0] * key[1]


@pytest.mark.mpi
@pytest.mark.slow
def test_resume_on_another_split(cli_runs, tmp_path):
    from test_train import _assert_same_history, _history, _launch, _ok, _progress_iterations

    d = tmp_path / "interrupted"
    # (P, Q) = (2, 2): the last rank fails in iteration 7's gradient, the checkpoint of 6 remains
    proc = _launch(4, ["train", cli_runs["config"], "--out", d, "--set", "parallel.data=2"],
                   fault={"raise_on_rank": 3, "at_gradient": 8}, timeout=180)
    assert proc.returncode != 0 and "injected failure" in proc.stderr, proc.stdout + proc.stderr
    # resumed as (P, Q) = (1, 3): it continues where it stopped, as the uninterrupted runs did
    proc = _ok(_launch(3, ["train", cli_runs["config"], "--out", d, "--resume", "--set", "parallel.data=3"],
                       timeout=180))
    assert _progress_iterations(proc.stdout) == [6, 7, 8]
    _assert_same_history(_history(d), _history(cli_runs[1, 1]), "(2, 2) resumed as (1, 3) vs one rank")


def test_config_checks_the_split():
    from braidnet import config as C

    cfg = C.defaults()
    cfg["parallel"]["data"] = 3
    with pytest.raises(C.ConfigError, match="parallel.data=3 data-parallel groups do not divide the 4 ranks"):
        C.check(cfg, 4)
    cfg["network"]["layers"] = 2
    cfg["braid"]["max_levels"] = 1
    with pytest.raises(C.ConfigError, match=r"4 ranks per data-parallel group \(parallel.data=3\) are more than "
                                            r"the 3 time points"):
        C.check(cfg, 12)
    cfg["parallel"]["data"], cfg["data"]["n_val"] = 2, 1
    with pytest.raises(C.ConfigError, match="parallel.data=2 groups need at least one sample each"):
        C.check(cfg, 2)
    with pytest.raises(C.ConfigError, match="parallel.data must be"):
        C.load_config(None, overrides=["parallel.data=0"])
