"""Tests of One-shot training (braidnet.train), its configuration (braidnet.config) and the CLI.

The MPI tests run ``mpiexec -n P python -m braidnet.cli train ...`` (or ``tests/mpi_entry.py --fault``,
which injects a fault of tests/cases_train.py first; both through ``mpi_launch.run_cli``) in
subprocesses, oversubscribed on small machines, and read the output folder.  One module-scoped
fixture trains the same small peaks problem on 1, 2 and 4 ranks; the resume, failure and divergence
tests compare against those runs.  The configuration tests and one divergence test run in this
process on ``COMM_SELF``.
"""
from __future__ import annotations

import csv
import json
import math
import os
import subprocess

import numpy as np
import pytest

import mpi_launch
from numpy.testing import assert_allclose, assert_array_equal

import braidnet
from braidnet import config as C
from braidnet.runfolder import HISTORY_TEXT, built_as

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TIMEOUT = 60.0          # per mpiexec launch; a hang fails the test instead of blocking the suite

# Small peaks problem whose One-shot iterations really move (tanh, O(1) initial weights): the MGRIT
# residuals are O(1e-3 .. 1) after d = 2 iterations, so the runs test the *inexact* iteration, and the
# accuracies change from iteration to iteration.  16 layers, 3 MGRIT levels (cfactor 2) fit 4 ranks.
# Checkpoints every 3 iterations: at 3 and 6 of 8.
BASE_TOML = """
[data]
n_train = 200
n_val = 50
seed = 0

[network]
width = 8
layers = 16
activation = "tanh"
init_opening = 1.0
init_layers = 0.1
init_classifier = 1.0
seed = 1

[braid]
max_levels = 3
cfactor = 2
nrelax = 1
iterations = 2

[optimizer]
iterations = 8

[output]
checkpoint_every = 3
progress = true
"""
ITERATIONS, EVERY = 8, 3

# History columns measured in wall-clock time (work units are average iteration times, docs/design.md
# section 7): they cannot agree between two runs and are left out of every comparison.
TIMING = {"time", "work_units"}
# Columns that are counts or decisions: the same on every rank count, exactly.  (Step sizes and
# accuracies are decided by comparisons of round-off-close numbers; none of them is near a tie for
# this seed, so a difference here means a real bug.)
DISCRETE = {"iteration", "level", "layers", "primal_iters", "adjoint_iters", "step", "ls_trials",
            "train_accuracy", "val_accuracy"}
# Rank counts differ only in the order of the sums reduced over ranks (dot products, norms, the loss
# and regulariser parts); every layer step is the same arithmetic.  Those are 1e-16 relative
# differences, which 8 L-BFGS iterations of this well-conditioned problem amplify to ~1e-14 (measured:
# at most 2e-14).  rtol = 1e-8 leaves a large margin while a real error (a wrong halo, a layer stepped
# with its neighbour's weights, a lost gradient piece) changes these numbers by 1e-4 or more.  The
# residual norms get an absolute floor for the iterations where they are ~1e-16 or exactly 0.
RTOL = 1e-8
ATOL_RNORM = 1e-14


def _launch(nprocs: int, args: list, fault: dict | None = None,
            timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
    """``mpiexec -n nprocs`` the CLI with ``args`` (after injecting ``fault``, see tests/cases_train.py)."""
    # numpy's overflow warnings of the diverging runs
    return mpi_launch.run_cli(nprocs, args, timeout, fault=fault, env={"PYTHONWARNINGS": "ignore"})


_ok = mpi_launch.check


def _history(out_dir) -> list:
    with open(os.path.join(str(out_dir), "history.csv"), newline="") as f:
        return list(csv.DictReader(f))


def _column(rows: list, name: str) -> np.ndarray:
    return np.array([float(r[name]) for r in rows])


def _assert_same_history(actual: list, desired: list, where: str) -> None:
    """Equal to round-off across rank counts (see RTOL)."""
    assert len(actual) == len(desired), where
    assert list(actual[0]) == list(desired[0]), where
    for name in desired[0]:
        if name in TIMING:
            continue
        if name in HISTORY_TEXT:
            assert [r[name] for r in actual] == [r[name] for r in desired], f"{name}, {where}"
            continue
        a, d = _column(actual, name), _column(desired, name)
        if name in DISCRETE:
            assert_array_equal(a, d, err_msg=f"{name}, {where}")
        else:
            atol = ATOL_RNORM if name.endswith("rnorm") else 0.0
            assert_allclose(a, d, rtol=RTOL, atol=atol, err_msg=f"{name}, {where}")


def _assert_identical_history(actual: list, desired: list, where: str, skip=()) -> None:
    """Bit for bit: the CSV text of every column but the timing ones (floats are written as repr)."""
    assert len(actual) == len(desired), where
    assert list(actual[0]) == list(desired[0]), where
    differ = {name: [i for i, (ra, rd) in enumerate(zip(actual, desired)) if ra[name] != rd[name]]
              for name in desired[0] if name not in TIMING | set(skip)}
    differ = {name: rows for name, rows in differ.items() if rows}
    assert not differ, f"{where}: columns differ (in rows): {differ}"


def _progress_iterations(stdout: str) -> list:
    return [int(line.split()[1]) for line in stdout.splitlines() if line.startswith("it ")]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The base problem trained on 1, 2 and 4 ranks: {P: (out_dir, stdout)}."""
    base = tmp_path_factory.mktemp("train")
    cfg = base / "base.toml"
    cfg.write_text(BASE_TOML)
    out = {}
    for nprocs in (1, 2, 4):
        d = base / f"p{nprocs}"
        proc = _ok(_launch(nprocs, ["train", cfg, "--out", d]))
        out[nprocs] = (d, proc.stdout)
    return {"config": cfg, **out}


# ---------------------------------------------------------------------------------------------
# MPI runs


@pytest.mark.mpi
@pytest.mark.slow
def test_history_same_on_1_2_4_ranks(runs):
    ref = _history(runs[1][0])
    # the run is not trivial: it trains, and its MGRIT solves are inexact
    assert len(ref) == ITERATIONS + 1
    obj, acc = _column(ref, "objective"), _column(ref, "train_accuracy")
    assert obj[-1] < 0.5 * obj[0] and acc[-1] > acc[0] + 20
    assert np.all(_column(ref, "primal_rnorm")[1:] > 1e-4)
    assert np.all(np.isfinite(_column(ref, "val_accuracy")))
    # every row says which braidnet and core computed it
    assert {(r["version"], r["core"]) for r in ref} == {tuple(built_as().values())}
    for nprocs in (2, 4):
        out_dir, stdout = runs[nprocs]
        _assert_same_history(_history(out_dir), ref, f"{nprocs} ranks vs 1")
        # rank 0 alone prints a header and one progress line per iteration, and counts iterations
        assert _progress_iterations(stdout) == list(range(ITERATIONS + 1))
        assert stdout.count("iteration | level (0: finest), layers | objective") == 1
        assert stdout.rstrip().endswith(f"(exact forward solve), {ITERATIONS} iterations")
        with np.load(os.path.join(str(out_dir), "weights.npz")) as w, \
                np.load(os.path.join(str(runs[1][0]), "weights.npz")) as w1:
            assert_allclose(w["theta"], w1["theta"], rtol=RTOL, atol=1e-12)
        cfg = json.loads((out_dir / "config.json").read_text())
        assert cfg["run"]["ranks"] == nprocs and cfg["network"]["layers"] == 16
        assert cfg["run"]["version"] == braidnet.__version__ and cfg["run"]["core"] in ("bundled", "LLNL XBraid")


def _same_files(folder, before: dict) -> None:
    """Every file of ``before`` (name -> bytes) is in ``folder`` unchanged."""
    for name, data in before.items():
        assert (folder / name).read_bytes() == data, name


def _files(folder) -> dict:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


@pytest.mark.mpi
@pytest.mark.slow
def test_checkpoints_every_k_global_iterations_and_at_the_end(runs):
    with np.load(os.path.join(str(runs[2][0]), "checkpoint.npz")) as z:
        assert int(z["iteration"]) == ITERATIONS and str(z["kind"]) == "end"
        assert json.loads(str(z["config"]))["network"]["layers"] == 16     # the run it belongs to
    assert not os.path.exists(os.path.join(str(runs[2][0]), "run.lock"))   # given up at the end


@pytest.mark.mpi
@pytest.mark.slow
@pytest.mark.parametrize("nprocs", [1, 2])
def test_resume_continues_bit_for_bit(runs, nprocs, tmp_path):
    src, _ = runs[nprocs]
    d = tmp_path / "interrupted"
    # the last rank fails in iteration 7's gradient: the periodic checkpoint of iteration 6 remains
    proc = _launch(nprocs, ["train", runs["config"], "--out", d],
                   fault={"raise_on_rank": nprocs - 1, "at_gradient": 8})
    assert proc.returncode != 0 and "injected failure" in proc.stderr, proc.stdout + proc.stderr
    with np.load(os.path.join(str(d), "checkpoint.npz")) as z:
        assert int(z["iteration"]) == 6 and str(z["kind"]) == "iteration"
    proc = _ok(_launch(nprocs, ["train", runs["config"], "--out", d, "--resume"]))
    # it continued from the checkpoint instead of starting over ...
    assert _progress_iterations(proc.stdout) == [6, 7, 8]
    ref, got = _history(src), _history(d)
    # ... and exactly as the uninterrupted run did
    _assert_identical_history(got, ref, f"resumed on {nprocs} ranks")
    with np.load(os.path.join(str(d), "weights.npz")) as w, np.load(os.path.join(str(src), "weights.npz")) as w0:
        assert_array_equal(w["theta"], w0["theta"])


@pytest.mark.mpi
@pytest.mark.slow
def test_killed_in_a_checkpoint_resumes_on_another_rank_count(runs, tmp_path):
    d = tmp_path / "killed"
    # rank 0 dies while writing its second checkpoint (iteration 6): a half-written file and its
    # lock stay behind, the checkpoint of iteration 3 is intact
    proc = _launch(4, ["train", runs["config"], "--out", d], fault={"kill_in_checkpoint": 2})
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert (d / "checkpoint.npz.tmp").exists() and (d / "run.lock").exists()
    with np.load(os.path.join(str(d), "checkpoint.npz")) as z:
        assert int(z["iteration"]) == 3
    proc = _ok(_launch(2, ["train", runs["config"], "--out", d, "--resume"]))
    assert _progress_iterations(proc.stdout) == list(range(3, ITERATIONS + 1))
    assert not (d / "checkpoint.npz.tmp").exists() and not (d / "run.lock").exists()
    _assert_same_history(_history(d), _history(runs[4][0]), "killed on 4 ranks, resumed on 2")
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["run"]["ranks"] == 2


@pytest.mark.mpi
@pytest.mark.slow
def test_failure_on_one_rank_ends_every_rank(runs, tmp_path):
    d = tmp_path / "crash"
    # rank 1 raises in iteration 5's adjoint solve while rank 0 goes on into the next collective
    proc = _launch(2, ["train", runs["config"], "--out", d], fault={"raise_on_rank": 1, "at_gradient": 6})
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "injected failure on rank 1" in proc.stderr
    assert _progress_iterations(proc.stdout) == [0, 1, 2, 3, 4]
    # the checkpoint written before the crash resumes to the uninterrupted run's result
    with np.load(os.path.join(str(d), "checkpoint.npz")) as z:
        assert int(z["iteration"]) == 3
    proc = _ok(_launch(2, ["train", runs["config"], "--out", d, "--resume"]))
    assert _progress_iterations(proc.stdout) == list(range(3, ITERATIONS + 1))
    _assert_identical_history(_history(d), _history(runs[2][0]), "resumed after a crash")


@pytest.mark.mpi
@pytest.mark.slow
def test_divergence_stops_with_message_and_keeps_checkpoint(runs, tmp_path):
    d = tmp_path / "nan"
    # from iteration 5's line search on, every primal solve reports NaN: the line search fails,
    # the objective at the current weights is NaN, and iteration 5 must stop the run
    proc = _launch(2, ["train", runs["config"], "--out", d], fault={"nan_from_gradient": 5})
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert proc.stderr.count("braidnet: training diverged at iteration 5") == 1, proc.stderr   # rank 0 only
    assert "checkpoint.npz" in proc.stderr
    assert _progress_iterations(proc.stdout) == [0, 1, 2, 3, 4]
    ref = _history(runs[2][0])
    with np.load(os.path.join(str(d), "checkpoint.npz")) as z:
        assert int(z["iteration"]) == 3       # the last periodic one before iteration 5
        assert np.all(np.isfinite(z["theta"])) and math.isfinite(float(z["f"]))
        assert float(z["f"]) == float(ref[3]["objective"])
    # (a run that ends early keeps its raw counted work units: a finished non-nested run divides them
    # by its average iteration's work at the end, see braidnet.work)
    _assert_identical_history(_history(d), ref[:5], "history up to the divergence", skip={"work_units_counted"})
    assert_array_equal(_column(_history(d), "layer_steps"), _column(ref[:5], "layer_steps"))
    assert not os.path.exists(os.path.join(str(d), "weights.npz"))


@pytest.mark.mpi
@pytest.mark.slow
def test_real_divergence_stops_with_message(runs, tmp_path):
    # ReLU, T = 1000 and weights of 1e30 overflow in the first layers: a genuine NaN from the solver
    d = tmp_path / "overflow"
    proc = _launch(2, ["train", runs["config"], "--out", d, "--set", "network.activation=relu",
                       "--set", "network.T=1000.0", "--set", "network.init_layers=1e30"])
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert proc.stderr.count("braidnet: training diverged at iteration 0") == 1, proc.stderr
    assert not os.path.exists(os.path.join(str(d), "checkpoint.npz"))


BAD_CONFIGS = [
    # (extra arguments, ranks, message)
    (["--set", "network.depth=3"], 2, r"unknown key network\.depth in --set; known keys of \[network\]: width"),
    (["--set", "network.width='eight'"], 2, r"network\.width must be an integer, got 'eight'"),
    (["--set", "braid.nrelax=1.5"], 2, r"braid\.nrelax must be an integer, got 1\.5"),
    (["--set", "network.layers=2"], 4, r"4 ranks are more than the 3 time points of the 2-layer network"),
    (["--set", "braid.cfactor=32"], 2, r"braid\.cfactor=32 does not fit a 16-layer network"),
    (["--set", "optimizer.method=bfgs"], 2, r"optimizer\.method='bfgs' .* runs on one rank only"),
    (["--set", "nested.schedule=[5, 5, 5, 5, 5, 5]"], 2,
     r"network\.layers=16 must be divisible by nested\.refine\^\(levels-1\) = 32"),
]


@pytest.mark.mpi
@pytest.mark.parametrize("extra,nprocs,message", BAD_CONFIGS)
def test_bad_config_stops_with_one_message(runs, extra, nprocs, message, tmp_path):
    import re

    d = tmp_path / "out"
    proc = _launch(nprocs, ["train", runs["config"], "--out", d, *extra])
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr                      # one message, from rank 0 only
    assert lines[0].startswith("braidnet: configuration error: ")
    assert re.search(message, lines[0]), lines[0]
    assert proc.stdout == ""
    assert not d.exists()                                    # nothing started


@pytest.mark.mpi
def test_bad_config_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[netwrk]\nwidth = 8\n")
    proc = _launch(2, ["train", bad, "--out", tmp_path / "o"])
    assert proc.returncode == 2 and proc.stderr.count("configuration error") == 1, proc.stderr
    assert "unknown section [netwrk]" in proc.stderr
    bad.write_text("[network]\nwidth = \n")
    proc = _launch(2, ["train", bad, "--out", tmp_path / "o"])
    assert proc.returncode == 2 and proc.stderr.count("is not valid TOML") == 1, proc.stderr


# ---------------------------------------------------------------------------------------------
# in-process (COMM_SELF)


def _base_config(out_dir) -> C.Config:
    cfg = C.defaults()
    import tomllib
    C._merge(cfg, tomllib.loads(BASE_TOML), "BASE_TOML")
    cfg["output"]["dir"] = str(out_dir)
    cfg["output"]["progress"] = False
    return C.check(cfg)


@pytest.mark.mpi
def test_train_in_process_divergence_and_resume(runs, tmp_path, monkeypatch):
    from mpi4py import MPI
    from braidnet.parallel import ParallelNetwork
    from braidnet.train import TrainingDiverged, train

    comm = MPI.COMM_SELF
    ref = _history(runs[1][0])
    cfg = _base_config(tmp_path)

    # the same computation as `mpiexec -n 1 braidnet train`, returning history and parameters
    res = train(cfg, comm=comm, out_dir=str(tmp_path / "plain"))
    assert res.message == "max iterations reached" and res.layers == 16
    for name in ref[0]:
        if name not in TIMING:
            want = [r[name] for r in ref] if name in HISTORY_TEXT else _column(ref, name)
            assert_array_equal([row[name] for row in res.history], want, err_msg=name)
    with np.load(os.path.join(str(runs[1][0]), "weights.npz")) as w:
        assert_array_equal(res.theta, w["theta"])

    # a NaN objective from iteration 7's line search on: diverged at 7, last good checkpoint at 6
    forward, backward = ParallelNetwork.forward, ParallelNetwork.backward
    count = {"n": 0}

    def counted(self, *a, **k):
        count["n"] += 1
        return backward(self, *a, **k)

    def poisoned(self, *a, **k):
        info = forward(self, *a, **k)
        return {**info, "objective": float("nan")} if count["n"] >= 7 else info

    monkeypatch.setattr(ParallelNetwork, "backward", counted)
    monkeypatch.setattr(ParallelNetwork, "forward", poisoned)
    d = tmp_path / "diverged"
    with pytest.raises(TrainingDiverged, match=r"diverged at iteration 7 \(objective nan"):
        train(cfg, comm=comm, out_dir=str(d))
    monkeypatch.undo()
    with np.load(os.path.join(str(d), "checkpoint.npz")) as z:
        assert int(z["iteration"]) == 6
        assert np.all(np.isfinite(z["theta"])) and np.all(np.isfinite(z["g"]))
    assert len(_history(d)) == 7
    # the kept checkpoint is a good one: resuming it finishes as the uninterrupted run
    res2 = train(cfg, comm=comm, out_dir=str(d), resume=True)
    assert_array_equal(res2.theta, res.theta)
    _assert_identical_history(_history(d), ref, "resumed after divergence, in process")


def test_resume_without_checkpoint(tmp_path):
    from mpi4py import MPI
    from braidnet.train import train

    from braidnet.runfolder import RunFolderError

    with pytest.raises(RunFolderError, match="no checkpoint at"):
        train(_base_config(tmp_path), comm=MPI.COMM_SELF, resume=True)


# ---------------------------------------------------------------------------------------------
# configuration


def test_defaults_describe_and_examples(tmp_path):
    cfg = C.load_config()
    assert cfg == C.defaults()
    assert set(cfg) == set(C.SCHEMA) and all(set(cfg[s]) == set(C.SCHEMA[s]) for s in C.SCHEMA)
    # describe() is a valid TOML file of every key at its default, with its meaning as a comment
    text = C.describe()
    for section, keys in C.SCHEMA.items():
        assert f"[{section}]" in text
        for key, (_, _, meaning) in keys.items():
            assert f"\n{key} = " in text and meaning in text
    path = tmp_path / "defaults.toml"
    path.write_text(text)
    assert C.load_config(str(path)) == C.defaults()
    # to_json is the resolved configuration
    assert json.loads(C.to_json(cfg)) == cfg
    # the examples: the paper's peaks runs on its 16 processors
    nested = C.load_config(os.path.join(ROOT, "examples", "peaks.toml"), nprocs=16)
    assert nested["nested"]["schedule"] == [200, 125, 75] and nested["nested"]["refine"] == 2
    assert nested["network"]["layers"] == 64 and nested["network"]["width"] == 8
    assert nested["network"]["T"] == 5.0 and nested["data"]["n_train"] == 5000
    plain = C.load_config(os.path.join(ROOT, "examples", "peaks_plain.toml"), nprocs=16)
    assert plain["nested"]["schedule"] == [] and plain["optimizer"]["iterations"] == 188
    assert plain["network"]["layers"] == 64
    for s in ("data", "network", "braid"):       # same problem and solver, only the schedule differs
        assert plain[s] == nested[s], s


def test_parse_override():
    assert C.parse_override("network.width=16") == {"network": {"width": 16}}
    assert C.parse_override(" network.T = 2.5 ") == {"network": {"T": 2.5}}
    assert C.parse_override("data.dataset=peaks") == {"data": {"dataset": "peaks"}}    # bare word
    assert C.parse_override("output.dir='runs/a b'") == {"output": {"dir": "runs/a b"}}
    assert C.parse_override("nested.schedule=[200, 125, 75]") == {"nested": {"schedule": [200, 125, 75]}}
    assert C.parse_override("braid.fmg=true") == {"braid": {"fmg": True}}
    for bad in ("width=16", "network.width", "network"):
        with pytest.raises(C.ConfigError, match=r"--set expects section\.key=value"):
            C.parse_override(bad)
    cfg = C.load_config(None, ["network.width=16", "network.width=4", "optimizer.method=sd"])
    assert cfg["network"]["width"] == 4 and cfg["optimizer"]["method"] == "sd"   # last one wins


@pytest.mark.parametrize("override,message", [
    ("netwrk.width=8", r"unknown section \[netwrk\] in --set; known: data, network"),
    ("network.depth=8", r"unknown key network\.depth in --set"),
    ("network.width=true", r"network\.width must be an integer, got True"),
    ("network.width=8.0", r"network\.width must be an integer, got 8\.0"),
    ("network.T=-1.0", r"network\.T must be >= 0, got -1\.0"),
    ("network.T=nan", r"network\.T must be a finite number, got nan"),
    ("network.T=inf", r"network\.T must be a finite number"),
    ("network.gamma_tik='1e-5'", r"network\.gamma_tik must be a finite number, got '1e-5'"),
    ("braid.fmg=1", r"braid\.fmg must be true or false, got 1"),
    ("data.path=3", r"data\.path must be a string, got 3"),
    ("network.activation=sigmoid", r"network\.activation must be one of tanh, relu, smoothrelu; got 'sigmoid'"),
    ("optimizer.method=newton", r"optimizer\.method must be one of lbfgs, bfgs, sd, sgd, adam"),
    ("braid.cfactor=1", r"braid\.cfactor must be >= 2, got 1"),
    ("network.layers=0", r"network\.layers must be >= 1, got 0"),
    ("nested.schedule=[200, -1]", r"nested\.schedule must be a list of integers >= 0"),
    ("nested.schedule=[1.5]", r"nested\.schedule must be a list of integers >= 0"),
    ("nested.schedule=5", r"nested\.schedule must be a list of integers >= 0, got 5"),
])
def test_value_errors(override, message):
    with pytest.raises(C.ConfigError, match=message):
        C.load_config(None, [override])


def test_cross_checks():
    ok = C.load_config(None, ["network.layers=64", "nested.schedule=[2, 2, 2]"], nprocs=17)
    assert ok["nested"]["schedule"] == [2, 2, 2]
    cases = [
        # (overrides, ranks, message)
        (["network.layers=10", "nested.schedule=[1, 1, 1]"], 1,
         r"network\.layers=10 must be divisible by nested\.refine\^\(levels-1\) = 4 for 3 nested levels"),
        (["network.layers=64", "nested.schedule=[2, 2, 2]"], 18,
         r"18 ranks are more than the 17 time points of the 16-layer network allow; use at most 17"),
        (["network.layers=8"], 10, r"10 ranks are more than the 9 time points"),
        (["network.layers=3", "braid.cfactor=4"], 1, r"braid\.cfactor=4 does not fit a 3-layer network"),
        (["network.layers=64", "nested.schedule=[1, 1, 1, 1, 1]", "braid.cfactor=8"], 1,
         r"braid\.cfactor=8 does not fit a 4-layer network"),
        (["optimizer.method=bfgs"], 2, r"runs on one rank only; use 'lbfgs' with several ranks"),
        (["data.dataset=indian_pines", "network.opening=pad", "network.width=16"], 1,
         r"network\.width=16 is smaller than the 200 input bands of indian_pines"),
    ]
    for overrides, nprocs, message in cases:
        with pytest.raises(C.ConfigError, match=message):
            C.load_config(None, overrides, nprocs=nprocs)
    # single-level MGRIT accepts any cfactor; bfgs is fine on one rank; 17 ranks fit 16 layers
    C.load_config(None, ["network.layers=3", "braid.cfactor=4", "braid.max_levels=1"])
    C.load_config(None, ["optimizer.method=bfgs"], nprocs=1)
    C.load_config(None, ["network.layers=16"], nprocs=17)


def test_config_file_errors(tmp_path):
    with pytest.raises(C.ConfigError, match=r"config file not found: .*missing\.toml"):
        C.load_config(str(tmp_path / "missing.toml"))
    bad = tmp_path / "bad.toml"
    bad.write_text("[network]\nwidth = = 3\n")
    with pytest.raises(C.ConfigError, match=r"bad\.toml is not valid TOML"):
        C.load_config(str(bad))
    bad.write_text("network = 3\n")
    with pytest.raises(C.ConfigError, match=r"\[network\] in .*bad\.toml must be a table of keys"):
        C.load_config(str(bad))
    good = tmp_path / "good.toml"
    good.write_text("[network]\nwidth = 5\nT = 2\n")
    cfg = C.load_config(str(good), ["network.width=6"])
    assert cfg["network"]["width"] == 6 and cfg["network"]["T"] == 2.0
    assert isinstance(cfg["network"]["T"], float)      # an integer TOML value for a float key


def test_drop_mode_on_one_level_ends():
    """With one MGRIT level every solve is exact sequential stepping (0 iterations, as LLNL XBraid
    reports it): the adaptive mode takes one solve, not max_iter of them."""
    from mpi4py import MPI
    from small_config import small_config
    from braidnet.train import train

    cfg = small_config(braid={"max_levels": 1, "drop": 10.0}, optimizer={"iterations": 2})
    cfg["output"]["dir"] = None                              # no files
    res = train(cfg, comm=MPI.COMM_SELF)
    assert [r["primal_iters"] for r in res.history] == [0, 0, 0]
    assert res.history[-1]["objective"] < res.history[0]["objective"]
