"""Run folders: a folder belongs to one run, a resumed run is the run it says it is, checkpoints are
where they are promised, and a run that stops making progress says so.

Most cases train a tiny network in this process (``COMM_SELF``); the command-line cases launch
``mpiexec -n 2`` and check the exit code and the one message of rank 0.  Every refused call must
leave every file of the earlier run as it was.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

import mpi_launch
from small_config import small_config
from numpy.testing import assert_array_equal

from braidnet import config as C
from braidnet.runfolder import LOCK_FILE, RunFolderError
from braidnet.train import train

TIMEOUT = 60.0


def _cfg(**sections) -> C.Config:
    """The tiny problem, 5 iterations, a checkpoint every 2."""
    return small_config(**{"optimizer": {"iterations": 5}, "output": {"checkpoint_every": 2}, **sections})


def _files(folder) -> dict:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def _run(cfg, folder, **kw):
    from mpi4py import MPI
    return train(cfg, comm=MPI.COMM_SELF, out_dir=str(folder), **kw)


def _ckpt(folder) -> dict:
    with np.load(folder / "checkpoint.npz") as z:
        return {"iteration": int(z["iteration"]), "level": int(z["level"]), "kind": str(z["kind"])}


@pytest.fixture
def finished(tmp_path):
    """A finished 5-iteration run and its files."""
    folder = tmp_path / "run"
    res = _run(_cfg(), folder)
    return folder, res, _files(folder)


# ---------------------------------------------------------------------------------------------
# a folder belongs to one run

def test_a_new_run_refuses_a_folder_that_holds_a_run(finished):
    folder, _, before = finished
    with pytest.raises(RunFolderError, match=r"holds a run \(config\.json, history\.csv, checkpoint\.npz, "
                                             r"weights\.npz\); --resume continues it, --overwrite replaces it"):
        _run(_cfg(), folder)
    assert _files(folder) == before


def test_overwrite_removes_the_earlier_run_first(finished):
    folder, _, before = finished
    (folder / "starts.csv").write_text("from an earlier run\n")
    res = _run(_cfg(optimizer={"iterations": 3}), folder, overwrite=True)
    assert res.history[-1]["iteration"] == 3
    assert sorted(_files(folder)) == ["checkpoint.npz", "config.json", "history.csv", "weights.npz"]
    assert _files(folder)["history.csv"] != before["history.csv"]


def test_a_live_lock_refuses_and_a_dead_one_is_taken_over(finished, tmp_path):
    folder, _, before = finished
    # a run of this very process holds the folder (same host, alive)
    from braidnet.runfolder import _start_ticks
    holder = {"pid": os.getpid(), "host": socket.gethostname(), "start_ticks": _start_ticks(os.getpid()),
              "started": "2026-01-01 00:00:00", "command": "braidnet train first.toml"}
    (folder / LOCK_FILE).write_text(json.dumps(holder))
    with pytest.raises(RunFolderError, match=rf"is in use by another run \(pid {os.getpid()} on "
                                             rf"{socket.gethostname()}, started 2026-01-01 00:00:00: braidnet "
                                             rf"train first\.toml\)"):
        _run(_cfg(optimizer={"iterations": 7}), folder, resume=True)
    assert _files(folder) == {**before, LOCK_FILE: json.dumps(holder).encode()}
    # a process that has ended: the lock is stale, the resume goes ahead and gives the folder up
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = dict(holder, pid=int(proc.stdout), start_ticks=None)
    (folder / LOCK_FILE).write_text(json.dumps(dead))
    res = _run(_cfg(optimizer={"iterations": 7}), folder, resume=True)
    assert res.history[-1]["iteration"] == 7 and not (folder / LOCK_FILE).exists()


def test_two_runs_at_once_the_second_stops(tmp_path):
    """A real second launch while the first one trains: it stops with the first's pid, the first
    finishes alone and its folder holds its own run only."""
    cfg = tmp_path / "long.toml"
    cfg.write_text("[data]\nn_train = 400\n[network]\nwidth = 4\nlayers = 16\n[braid]\ncfactor = 2\n"
                   "[optimizer]\niterations = 100000\n")
    folder = tmp_path / "shared"
    env = mpi_launch.child_env({"PYTHONWARNINGS": "ignore"})
    first = subprocess.Popen([mpi_launch.mpiexec(), "-n", "1", sys.executable, "-m", "braidnet.cli", "train",
                              str(cfg), "--out", str(folder)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=env, cwd=mpi_launch.ROOT)
    try:
        for _ in range(600):                            # until it holds the folder and trains
            if (folder / "history.csv").exists():
                break
            assert first.poll() is None, first.communicate()
            time.sleep(0.05)
        holder = json.loads((folder / LOCK_FILE).read_text())
        second = mpi_launch.run_cli(2, ["train", cfg, "--out", folder, "--overwrite"], TIMEOUT)
        assert second.returncode == 2, second.stdout + second.stderr
        lines = [ln for ln in second.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and f"is in use by another run (pid {holder['pid']} on" in lines[0], second.stderr
        assert first.poll() is None                     # untouched, still training
    finally:
        first.terminate()
        first.communicate(timeout=TIMEOUT)


def test_leftovers_of_an_interrupted_write_are_removed(finished):
    folder, _, before = finished
    (folder / "checkpoint.npz.tmp").write_bytes(b"PK half")
    (folder / "history.csv.tmp").write_bytes(b"iteration,lev")
    _run(_cfg(optimizer={"iterations": 6}), folder, resume=True)
    assert not any(name.endswith(".tmp") for name in os.listdir(folder))


# ---------------------------------------------------------------------------------------------
# resume is a contract

@pytest.mark.parametrize("override, key, old, new", [
    ({"network": {"width": 5}}, "network.width", "4", "5"),                          # the model
    ({"network": {"activation": "tanh"}}, "network.activation", "'smoothrelu'", "'tanh'"),
    ({"data": {"seed": 3}}, "data.seed", "0", "3"),                                  # the data
    ({"braid": {"cfactor": 4}}, "braid.cfactor", "2", "4"),                          # the algorithm
    ({"optimizer": {"method": "sd"}}, "optimizer.method", "'lbfgs'", "'sd'"),
    ({"nested": {"schedule": [2, 3]}}, "nested.schedule", "[]", "[2, 3]"),           # its levels
])
def test_resume_refuses_a_changed_run_before_touching_a_file(finished, override, key, old, new):
    folder, _, before = finished
    with pytest.raises(RunFolderError, match=r"--resume would not continue the run in .*: ") as e:
        _run(_cfg(**override), folder, resume=True)
    assert f"{key}: {old} -> {new}" in str(e.value), str(e.value)
    assert "\n" not in str(e.value)
    assert _files(folder) == before


def test_resume_lists_every_changed_key(finished):
    folder, _, before = finished
    with pytest.raises(RunFolderError) as e:
        _run(_cfg(network={"width": 5, "T": 2.0}, data={"n_train": 70}), folder, resume=True)
    text = str(e.value)
    assert "data.n_train: 60 -> 70" in text and "network.width: 4 -> 5" in text and "network.T: 5.0 -> 2.0" in text
    assert _files(folder) == before


def test_extending_a_finished_run_continues_it(finished, tmp_path):
    folder, res5, _ = finished
    ref = _run(_cfg(optimizer={"iterations": 7}), tmp_path / "seven")
    assert _ckpt(folder) == {"iteration": 5, "level": 0, "kind": "end"}
    res = _run(_cfg(optimizer={"iterations": 7}, output={"checkpoint_every": 3}), folder, resume=True)
    assert [r["iteration"] for r in res.history] == list(range(8))
    assert_array_equal(res.theta, ref.theta)
    for name in ref.history[0]:
        if name not in ("time", "work_units"):
            assert [r[name] for r in res.history] == [r[name] for r in ref.history], name
    # unchanged, there is nothing to do, and nothing is written
    before = _files(folder)
    again = _run(_cfg(optimizer={"iterations": 7}), folder, resume=True)
    assert "nothing to resume" in again.message and _files(folder) == before
    # a schedule shorter than the checkpoint is refused
    with pytest.raises(RunFolderError, match=r"optimizer\.iterations: 7 -> 6 \(the checkpoint is at iteration 7"):
        _run(_cfg(optimizer={"iterations": 6}), folder, resume=True)


def test_a_damaged_checkpoint_is_named(finished):
    folder, _, before = finished
    for damage in (b"", b"PK\x03\x04 not a zip", before["checkpoint.npz"][:200]):
        (folder / "checkpoint.npz").write_bytes(damage)
        with pytest.raises(RunFolderError, match=rf"{folder / 'checkpoint.npz'} is damaged or not a braidnet "
                                                 rf"checkpoint \("):
            _run(_cfg(), folder, resume=True)
    (folder / "checkpoint.npz").unlink()
    with pytest.raises(RunFolderError, match="--resume: no checkpoint at"):
        _run(_cfg(), folder, resume=True)
    assert not (folder / LOCK_FILE).exists()


# ---------------------------------------------------------------------------------------------
# checkpoints where they are promised

def test_checkpoint_every_0_means_only_at_the_end(tmp_path):
    folder = tmp_path / "k0"
    saved = []
    from braidnet.runfolder import RunWriter
    write = RunWriter.checkpoint

    def keep(self, ckpt):
        saved.append((ckpt.level, ckpt.iteration, ckpt.kind))
        write(self, ckpt)

    RunWriter.checkpoint = keep
    try:
        _run(_cfg(output={"checkpoint_every": 0}), folder)
        # nested levels shorter than checkpoint_every: each level's start and the end
        _run(_cfg(network={"layers": 16}, nested={"schedule": [2, 2, 2], "calibrate": 0},
                  output={"checkpoint_every": 10}), tmp_path / "nested")
    finally:
        RunWriter.checkpoint = write
    assert saved == [(0, 5, "end"), (1, 0, "level"), (2, 0, "level"), (2, 2, "end")]
    assert _ckpt(folder)["kind"] == "end"


# ---------------------------------------------------------------------------------------------
# the command line

def _launch(args, fault=None):
    return mpi_launch.run_cli(2, args, TIMEOUT, fault=fault, env={"PYTHONWARNINGS": "ignore"})


def _toml(tmp_path, iterations: int = 4) -> str:
    path = tmp_path / "run.toml"
    path.write_text("[data]\nn_train = 60\nn_val = 20\n[network]\nwidth = 4\nlayers = 8\n"
                    f"[braid]\nmax_levels = 2\ncfactor = 2\n[optimizer]\niterations = {iterations}\n"
                    "[output]\ncheckpoint_every = 2\n")
    return str(path)


@pytest.mark.mpi
def test_cli_refuses_a_folder_with_a_run_and_a_changed_resume(tmp_path):
    cfg, folder = _toml(tmp_path), tmp_path / "out"
    mpi_launch.check(_launch(["train", cfg, "--out", folder]))
    before = _files(folder)
    for extra, message in (([], "holds a run"),
                           (["--resume", "--set", "network.width=6"], "network.width: 4 -> 6"),
                           (["--resume", "--overwrite"], "give --resume (continue the run) or --overwrite")):
        proc = _launch(["train", cfg, "--out", folder, *extra])
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        assert proc.returncode == 2 and len(lines) == 1 and message in lines[0], proc.stderr
        assert _files(folder) == before


@pytest.mark.mpi
@pytest.mark.parametrize("name", ["a\\b", "q'uo\"te d", "x=1,y"])
def test_cli_takes_out_literally(tmp_path, name):
    folder = tmp_path / name
    mpi_launch.check(_launch(["train", _toml(tmp_path, 1), "--out", str(folder)]))
    assert sorted(os.listdir(tmp_path)) == sorted([name, "run.toml"])
    assert json.loads((folder / "config.json").read_text())["output"]["dir"] == str(folder)


@pytest.mark.mpi
def test_a_stalled_run_ends_with_its_own_message_and_exit_code(tmp_path):
    folder = tmp_path / "stalled"
    # from the 3rd gradient on, every primal solve reports a larger objective than the one before:
    # every line search fails
    proc = _launch(["train", _toml(tmp_path, 20), "--out", folder], fault={"growing_from_gradient": 3})
    assert proc.returncode == 4, proc.stdout + proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "training stalled: the line search failed in 3 iterations in a row" in lines[0]
    rows = [ln for ln in proc.stdout.splitlines() if ln.startswith("it ")]
    assert len(rows) == 6                                  # iterations 0-2, then 3 failed ones
    assert _ckpt(folder) == {"iteration": 5, "level": 0, "kind": "end"}
    assert (folder / "weights.npz").exists()
