"""Launching ``mpiexec -n P`` from tests: one place for finding the launcher, the environment the
children need (the same braidnet as this process), timeouts that turn a hang into a failure, and the
``RESULT {json}`` protocol of the driver scripts in this folder."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from typing import Optional, Sequence

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def mpiexec() -> str:
    """$MPIEXEC, the mpiexec beside the interpreter (mpich wheel), or the one on PATH; else skip."""
    found = os.environ.get("MPIEXEC") or os.path.join(os.path.dirname(sys.executable), "mpiexec")
    if not os.path.exists(found):
        found = shutil.which("mpiexec") or ""
    if not found:
        pytest.skip("no mpiexec beside the interpreter or on PATH")
    return found


def run(nprocs: int, argv: Sequence[str], timeout: float, env: Optional[dict] = None
        ) -> subprocess.CompletedProcess:
    """``mpiexec -n nprocs python *argv`` from the repository root; a hang fails the test."""
    import braidnet
    child_env = dict(os.environ, **(env or {}))
    # the children must import the same braidnet as this process
    root = os.path.dirname(os.path.dirname(os.path.abspath(braidnet.__file__)))
    child_env["PYTHONPATH"] = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    cmd = [mpiexec(), "-n", str(nprocs), sys.executable, *[str(a) for a in argv]]
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=child_env, cwd=ROOT)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"`{' '.join(cmd)}` did not finish within {timeout} s (a hang?)\n"
                    f"stdout:\n{e.stdout}\nstderr:\n{e.stderr}")


def check(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    """Fail the test unless the launch exited 0."""
    if proc.returncode != 0:
        pytest.fail(f"`{' '.join(proc.args)}` exited with {proc.returncode}\n"
                    f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


def run_cases(nprocs: int, driver: str, cases: list, tmp_path, timeout: float) -> list:
    """Run a driver of this folder on a JSON list of cases; return its ``RESULT`` objects in order."""
    path = os.path.join(str(tmp_path), f"cases{nprocs}.json")
    with open(path, "w") as f:
        json.dump(cases, f)
    proc = check(run(nprocs, [os.path.join(HERE, driver), path], timeout))
    results = [json.loads(line[7:]) for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert len(results) == len(cases), proc.stdout + proc.stderr
    return results


def run_calls(nprocs: int, cases: list, tmp_path, timeout: float) -> list:
    """Call rank-side test functions in ONE ``mpiexec -n nprocs`` launch of tests/mpi_entry.py.

    ``cases`` is a list of ``("module.function", kwargs)`` (a module of this folder); every rank calls
    ``function(comm, **kwargs)`` for each case in order.  Returns per case the list of every rank's
    JSON-able return value (index = world rank).  An exception on any rank aborts the launch, which
    fails the test with the output; a hang fails it after ``timeout`` seconds.
    """
    path = os.path.join(str(tmp_path), f"calls{nprocs}.json")
    with open(path, "w") as f:
        json.dump([[name, kwargs] for name, kwargs in cases], f)
    proc = check(run(nprocs, [os.path.join(HERE, "mpi_entry.py"), path], timeout))
    results = [json.loads(line[7:]) for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if len(results) != len(cases):
        pytest.fail(f"{len(results)} results for {len(cases)} cases\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return results
