"""Tests of several starts on the coarsest nested level (braidnet/starts.py, nested.starts).

What must hold: one start is the configured run; the chosen start is the one with the lowest training
objective, and the run goes on from exactly its parameters; every start's work is counted; bad
settings are refused before any training.  That the choice is the same on 1, 2 and 4 ranks is part
of tests/test_nested.py's MPI cases.
"""
from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from braidnet import config, starts, train
from braidnet.oneshot import OneShot, TrainingDiverged
from braidnet.problem import Problem


def _cfg(**nested) -> config.Config:
    cfg = config.defaults()
    cfg["data"].update(n_train=80, n_val=20)
    cfg["network"].update(width=4, layers=16, init_opening=0.5, init_classifier=0.5)
    cfg["braid"].update(max_levels=2, cfactor=2)
    cfg["nested"].update({"schedule": [6, 3, 3], "calibrate": 0, "work_unit_steps": 1000.0, **nested})
    cfg["output"].update(dir=None, progress=False, checkpoint_every=0)
    return config.check(cfg)


def test_start_seeds():
    assert starts.start_seed(7, 0) == 7
    seeds = [starts.start_seed(7, k) for k in range(1, 6)]
    assert len(set(seeds + [7])) == 6
    assert seeds == [starts.start_seed(7, k) for k in range(1, 6)]        # reproducible
    assert starts.start_seed(8, 1) not in seeds


@pytest.mark.parametrize("overrides, message", [
    (["nested.starts=3"], r"nested.starts=3 needs a nested schedule"),
    (["nested.schedule=[6,3,3]", "nested.starts=2", "nested.start_iterations=7"],
     r"nested.start_iterations=7 exceeds nested.schedule\[0\]=6"),
    (["nested.schedule=[6,3,3]", "nested.starts=0"], r"nested.starts"),
])
def test_bad_settings_are_refused(overrides, message):
    with pytest.raises(config.ConfigError, match=message):
        config.load_config(None, overrides)


def test_the_best_start_continues_from_its_own_parameters(tmp_path):
    from mpi4py import MPI
    cfg = _cfg(starts=3, start_iterations=4)
    cfg["output"]["dir"] = str(tmp_path / "run")
    res = train.train(cfg, comm=MPI.COMM_SELF)
    tmp_path = tmp_path / "run"
    # the starts write nothing: the folder holds the chosen run's files only
    with open(tmp_path / "config.json") as f:
        assert json.load(f)["nested"]["schedule"] == [6, 3, 3]
    assert sorted(os.listdir(tmp_path)) == ["checkpoint.npz", "config.json", "history.csv", "starts.csv",
                                           "weights.npz"]
    with open(tmp_path / "starts.csv") as f:
        table = list(csv.DictReader(f))
    assert [int(r["start"]) for r in table] == [0, 1, 2]
    assert [int(r["seed"]) for r in table] == [starts.start_seed(cfg["network"]["seed"], k) for k in range(3)]
    objectives = [float(r["objective"]) for r in table]
    chosen = [int(r["chosen"]) for r in table]
    assert sum(chosen) == 1 and chosen.index(1) == int(np.argmin(objectives))
    assert len(set(objectives)) == 3                     # the starts really differ

    # the run goes on from the chosen start's parameters, exactly (its first objective comes from a
    # fresh solve, so it matches the start's last one up to the round-off of other MGRIT iterates)
    best = chosen.index(1)
    problem = Problem(cfg, MPI.COMM_SELF)
    alone = starts.train_start(problem, best)
    choice = starts.choose_start(problem)
    assert choice.index == best
    assert_array_equal(choice.theta, alone.theta)
    assert alone.row["objective"] == objectives[best] and alone.row["iterations"] == 4
    first = res.history[0]
    assert first["iteration"] == 4 and first["layers"] == 4
    assert_allclose(first["objective"], alone.row["objective"], rtol=1e-12)
    # schedule[0] = 6 counts the chosen start's 4 iterations: 2 more on the coarsest level
    assert [r["iteration"] for r in res.history if r["layers"] == 4] == [4, 5, 6]
    # every start's work is counted before the first row
    assert first["layer_steps"] > sum(int(r["layer_steps"]) for r in table)


def test_one_start_is_the_configured_run():
    from mpi4py import MPI
    a = train.train(_cfg(), comm=MPI.COMM_SELF, out_dir=None)
    plain = _cfg(schedule=[])
    plain["network"]["layers"], plain["optimizer"]["iterations"] = 4, 6
    b = train.train(plain, comm=MPI.COMM_SELF, out_dir=None)
    # the coarsest level of the nested run and the coarsest network trained alone: bit for bit
    coarse = [r["objective"] for r in a.history if r["layers"] == 4]
    assert_array_equal(coarse, [r["objective"] for r in b.history])
    # and start 0 is that run: its objective after 6 iterations is the coarse level's last
    start = starts.train_start(Problem(_cfg(start_iterations=6), MPI.COMM_SELF), 0)
    assert start.row["objective"] == coarse[-1] and start.row["seed"] == plain["network"]["seed"]
    assert_array_equal(start.theta, b.theta)


def test_a_diverging_start_is_left_out_and_all_diverging_stops(monkeypatch):
    from mpi4py import MPI
    cfg = _cfg(starts=3, start_iterations=2)
    bad = {starts.start_seed(cfg["network"]["seed"], k) for k in (0, 2)}
    seed = {}
    initial_params, objective = Problem.initial_params, OneShot.objective

    def remember(self, layers, seed_=None):
        seed["now"] = seed_
        return initial_params(self, layers, seed_)

    def poisoned(self, x):       # the primal solves of a bad start give NaN, as diverging ones do
        f = objective(self, x)
        if seed["now"] in bad:
            self.last_forward = {**self.last_forward, "objective": float("nan")}
            return float("nan")
        return f

    monkeypatch.setattr(Problem, "initial_params", remember)
    monkeypatch.setattr(OneShot, "objective", poisoned)
    choice = starts.choose_start(Problem(cfg, MPI.COMM_SELF))
    assert choice.index == 1
    assert [r["chosen"] for r in choice.table] == [0, 1, 0]
    assert np.isnan(choice.table[0]["objective"]) and np.isnan(choice.table[2]["objective"])
    assert choice.table[0]["layer_steps"] == 0 and choice.table[1]["layer_steps"] > 0
    bad.add(starts.start_seed(cfg["network"]["seed"], 1))
    with pytest.raises(TrainingDiverged, match="all 3 coarse starts diverged"):
        starts.choose_start(Problem(cfg, MPI.COMM_SELF))


def test_progress_counts_iterations_as_the_schedule_does(caplog):
    """The last line counts optimisation iterations as nested.schedule does (the chosen start's
    included), not history rows (every level's first row is its starting point)."""
    import logging

    from mpi4py import MPI
    cfg = _cfg(starts=2, start_iterations=4)
    cfg["output"]["progress"] = True
    with caplog.at_level(logging.INFO, logger="braidnet.progress"):
        res = train.train(cfg, comm=MPI.COMM_SELF, out_dir=None)
    lines = [r.getMessage() for r in caplog.records if r.name == "braidnet.progress"]
    assert len(res.history) == 3 + 4 + 4                   # rows 4-6, 0-3, 0-3
    assert lines[-1].endswith(", 12 iterations") and lines[-1].startswith("done: max iterations reached")
    header = [i for i, line in enumerate(lines) if line.startswith("iteration | level")]
    assert len(header) == 1 and lines[header[0] + 1].startswith("it    4 |")
