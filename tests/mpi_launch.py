"""Launching ``mpiexec -n P`` from tests: the one MPI test protocol of this folder.

Everything that runs on several ranks goes through the single rank-side script ``tests/mpi_entry.py``:

- :func:`run_cases` runs *cases*, plain functions ``f(comm, **kwargs) -> JSON-able`` of the case
  modules here (``cases_braid``, ``cases_parallel``, ``cases_nested``, named ``"module.function"``),
  all in one launch (launches are the slow part), and returns per case every rank's return value;
- :func:`run_cli` runs ``braidnet`` (:func:`braidnet.cli.main`) under mpiexec, optionally with a
  fault injected first (:mod:`cases_train`), and returns the ``CompletedProcess`` whose exit code,
  stdout and stderr the test checks.

Result format: after each case, rank 0 gathers every rank's return value and prints one line
``RESULT {"case": i, "values": [value of rank 0, value of rank 1, ...]}``.  Floats travel as
Python's json writes them: NaN, Infinity and -Infinity (JSON extensions that ``json.loads`` reads
back as float nan/inf), so a NaN or infinite result arrives as such.  Tuples arrive as lists and
dict keys as strings; numpy arrays and scalars are converted with ``tolist()`` / ``item()``.

An exception on any rank prints that rank's traceback to stderr and aborts every rank (MPI_Abort,
non-zero exit), and a launch that outlives its timeout is killed: either way the test fails with
the launch's stdout and stderr, and never hangs.  This module also finds the launcher and gives the
children the environment they need (the same braidnet as this process).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from typing import Optional, Sequence

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
ENTRY = os.path.join(HERE, "mpi_entry.py")
RESULT = "RESULT "


def mpiexec() -> str:
    """$MPIEXEC, the mpiexec beside the interpreter (mpich wheel), or the one on PATH; else skip."""
    found = os.environ.get("MPIEXEC") or os.path.join(os.path.dirname(sys.executable), "mpiexec")
    if not os.path.exists(found):
        found = shutil.which("mpiexec") or ""
    if not found:
        pytest.skip("no mpiexec beside the interpreter or on PATH")
    return found


def child_env(env: Optional[dict] = None) -> dict:
    """This environment plus ``env``, with PYTHONPATH first naming the braidnet this process imported."""
    import braidnet
    out = dict(os.environ, **(env or {}))
    root = os.path.dirname(os.path.dirname(os.path.abspath(braidnet.__file__)))
    out["PYTHONPATH"] = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    return out


def run(nprocs: int, argv: Sequence[str], timeout: float, env: Optional[dict] = None
        ) -> subprocess.CompletedProcess:
    """``mpiexec -n nprocs python *argv`` from the repository root; a hang fails the test.

    mpiexec runs in a session of its own: on a timeout it is interrupted (it then ends its ranks)
    and, should anything survive that, the whole process group is killed.
    """
    cmd = [mpiexec(), "-n", str(nprocs), sys.executable, *[str(a) for a in argv]]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=child_env(env), cwd=ROOT, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _end(proc)
        out, err = proc.communicate()
        pytest.fail(f"`{' '.join(cmd)}` did not finish within {timeout} s (a hang?)\n"
                    f"stdout:\n{out}\nstderr:\n{err}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _end(proc: subprocess.Popen) -> None:
    """End a launch that timed out: SIGINT to mpiexec (it ends the ranks), then SIGKILL to its group."""
    try:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=5)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def check(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    """Fail the test unless the launch exited 0."""
    if proc.returncode != 0:
        pytest.fail(f"`{' '.join(proc.args)}` exited with {proc.returncode}\n"
                    f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


def run_cases(nprocs: int, cases: list[tuple[str, dict]], tmp_path, timeout: float) -> list[list]:
    """Run every case in one ``mpiexec -n nprocs`` launch of tests/mpi_entry.py.

    ``cases`` is a list of ``("module.function", kwargs)``; the function (of a module in tests/) is
    called as ``function(MPI.COMM_WORLD, **kwargs)`` on every rank.  Returns, per case, the list of
    every rank's return value (index = world rank).  Fails the test if any rank raised, the launch
    exited non-zero or it ran past ``timeout`` seconds.
    """
    path = os.path.join(str(tmp_path), f"cases{nprocs}.json")
    with open(path, "w") as f:
        json.dump([[name, dict(kwargs)] for name, kwargs in cases], f)
    proc = run(nprocs, [ENTRY, path], timeout)
    if proc.returncode != 0:
        pytest.fail(f"`{' '.join(proc.args)}` exited with {proc.returncode}\n"
                    f"stdout (RESULT lines shortened):\n{_short(proc.stdout)}\nstderr:\n{proc.stderr}")
    found = [json.loads(line[len(RESULT):]) for line in proc.stdout.splitlines() if line.startswith(RESULT)]
    if [r["case"] for r in found] != list(range(len(cases))) or any(len(r["values"]) != nprocs for r in found):
        pytest.fail(f"expected {len(cases)} RESULT lines of {nprocs} values each from "
                    f"`{' '.join(proc.args)}`\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return [r["values"] for r in found]


def _short(stdout: str, width: int = 120) -> str:
    """stdout with each RESULT line cut to ``width`` characters (a failed launch's report)."""
    return "\n".join(line[:width] + " ..." if line.startswith(RESULT) and len(line) > width else line
                     for line in stdout.splitlines())


def run_cli(nprocs: int, args: Sequence, timeout: float, fault: Optional[dict] = None,
            env: Optional[dict] = None) -> subprocess.CompletedProcess:
    """``braidnet *args`` on nprocs ranks; the CompletedProcess, whatever its exit code.

    Without ``fault`` this is ``python -m braidnet.cli *args``; with one, tests/mpi_entry.py first
    installs the fault (see :func:`cases_train.install`) and then calls ``braidnet.cli.main(args)``.
    """
    if fault is None:
        prog = ["-m", "braidnet.cli"]
    else:
        prog = [ENTRY, "--fault", json.dumps(fault), "--"]
    return run(nprocs, [*prog, *[str(a) for a in args]], timeout, env=env)
