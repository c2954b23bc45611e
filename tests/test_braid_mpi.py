"""braidnet.braid on 1-4 MPI ranks: convergence to sequential stepping, rank independence, failures.

Each rank count is one ``mpiexec -n P`` launch running every case of tests/cases_braid.py through
tests/mpi_launch.py (launches are the slow part), with a timeout so that a hang fails instead of
blocking.  The ranks are oversubscribed on small machines (CI has 2 cores).
"""
from __future__ import annotations

import json
import math
import os
import subprocess

import pytest

import mpi_launch
from numpy.testing import assert_allclose

from braidnet.refproblems import PROBLEMS, reference_problem, sequential_solution

pytestmark = pytest.mark.mpi

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLES = os.path.join(os.path.dirname(HERE), "examples")
TIMEOUT = 180      # seconds per launch; a hang fails the test
TOL = 1e-12        # absolute residual tolerance of every solve
RANKS = (1, 2, 3, 4)


def launch(nranks: int, args: list[str]) -> subprocess.CompletedProcess:
    """Run `mpiexec -n nranks python *args`; fail the test on a timeout or a non-zero exit."""
    return mpi_launch.check(mpi_launch.run(nranks, args, TIMEOUT))


def whole_solve(ntime: int, ranks: list[dict]) -> dict:
    """One ``cases_braid.solve`` as the communicator saw it, from every rank's return value.

    Rank 0's iterations, levels and residual history; per rank its distribution and pack calls;
    ``missing``: the fine indices no rank had a final access at; ``err``: max |u - sequential| over
    every point (inf when some are missing).
    """
    accessed = set().union(*(r["accessed"] for r in ranks))
    missing = sorted(set(range(ntime + 1)) - accessed)
    return {"iterations": ranks[0]["iterations"], "levels": ranks[0]["levels"],
            "residual_norms": ranks[0]["residual_norms"],
            "distribution": [r["distribution"] for r in ranks], "pack_calls": [r["pack_calls"] for r in ranks],
            "missing": missing, "err": math.inf if missing else max(r["err"] for r in ranks)}


def run_solves(nranks: int, cases: dict[str, dict], tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Every solve case in one launch on nranks ranks; {case name: whole_solve(...)}."""
    values = mpi_launch.run_cases(nranks, [("cases_braid.solve", kw) for kw in cases.values()],
                                  tmp_path_factory.mktemp("mpi"), TIMEOUT)
    return {name: whole_solve(kw["ntime"], ranks) for (name, kw), ranks in zip(cases.items(), values)}


# ---- the solve matrix (every case runs on 1, 2, 3 and 4 ranks) ----

def _case(name: str, problem: str, ntime: int = 64, fast: bool = True, variant: str | None = None,
          **options) -> tuple[str, dict]:
    """(case name, keyword arguments of cases_braid.solve)."""
    options = {"abs_tol": TOL, "max_iter": 100, "print_level": 0, **options}
    return f"{problem}/{name}", {"problem": problem, "ntime": ntime, "fast": fast, "variant": variant,
                                 "options": options}


def _solve_cases() -> list[tuple[str, dict]]:
    cases = []
    for p in PROBLEMS:
        cases += [
            _case("V-FCF-2lev-cf2", p, max_levels=2, cfactor=2, nrelax=1),
            _case("V-F-3lev-cf4", p, max_levels=3, cfactor=4, nrelax=0),
            _case("Fcyc-FCF-4lev-cf2", p, max_levels=4, cfactor=2, fmg=True),
            _case("nfmg2-F-6lev-cf2", p, max_levels=6, cfactor=2, nrelax=0, nfmg=2),
            _case("V-2lev-cf8", p, max_levels=2, cfactor=8),
            _case("per-level-cf-nrelax", p, max_levels=4, cfactor=[4, 2], nrelax=[1, 0]),
            _case("ntime50-cf4", p, ntime=50, max_levels=3, cfactor=4),
            _case("ntime70-cf8-Fcyc", p, ntime=70, max_levels=2, cfactor=8, fmg=True),
            _case("skip0", p, max_levels=3, cfactor=2, skip=0),
            _case("storage0", p, max_levels=3, cfactor=4, storage=0),
            _case("tnorm1", p, max_levels=3, cfactor=4, tnorm=1),
            _case("tnorm3", p, max_levels=3, cfactor=4, tnorm=3),
            _case("ntime6-min-coarse1", p, ntime=6, max_levels=3, cfactor=2, min_coarse=1),
            _case("ntime2-empty-rank", p, ntime=2, max_levels=2, cfactor=2, min_coarse=1),
        ]
    cases += [
        _case("python-V-3lev-cf4", "heat", fast=False, max_levels=3, cfactor=4),
        _case("python-Fcyc-4lev", "resnet4", fast=False, max_levels=4, cfactor=2, fmg=True),
        _case("python-storage0-skip0", "scalar", fast=False, max_levels=3, storage=0, skip=0),
        _case("python-all-methods", "scalar", variant="pack", fast=False, max_levels=3, cfactor=2),
    ]
    return cases


SOLVE_CASES = dict(_solve_cases())
CASE_IDS = list(SOLVE_CASES)


@pytest.fixture(scope="module")
def solves(tmp_path_factory) -> dict[int, dict]:
    return {p: run_solves(p, SOLVE_CASES, tmp_path_factory) for p in RANKS}


@pytest.mark.parametrize("name", CASE_IDS)
def test_converges_to_sequential_stepping(solves, name):
    for nranks, results in solves.items():
        r = results[name]
        assert r["missing"] == [], f"{nranks} ranks: no final access at fine indices {r['missing']}"
        assert r["err"] < 1e-10, f"{nranks} ranks: max |u - sequential| = {r['err']:.3g}"
        assert r["residual_norms"][-1] < TOL, f"{nranks} ranks: did not converge: {r['residual_norms']}"


@pytest.mark.parametrize("name", CASE_IDS)
def test_same_iterations_on_any_number_of_ranks(solves, name):
    ref = solves[1][name]
    for nranks in RANKS[1:]:
        r = solves[nranks][name]
        assert (r["iterations"], r["levels"]) == (ref["iterations"], ref["levels"]), f"{nranks} ranks"
        assert len(r["residual_norms"]) == len(ref["residual_norms"])
        assert_allclose(r["residual_norms"], ref["residual_norms"], rtol=1e-12, atol=0,
                        err_msg=f"residual history on {nranks} ranks differs from 1 rank")


def test_residual_history_shape(solves):
    for name, r in solves[1].items():
        norms = r["residual_norms"]
        assert len(norms) == r["iterations"] + 1, name
        assert norms[-1] == norms[-2], f"{name}: the last entry is repeated (GetRNorms)"
        skipped = "skip0" not in name
        assert (norms[0] == -1.0) == skipped, f"{name}: -1 marks exactly a skipped first iteration: {norms}"


def test_block_distribution(solves):
    for nranks, results in solves.items():
        for name, case in SOLVE_CASES.items():
            npoints = case["ntime"] + 1
            q, rem = divmod(npoints, nranks)
            expected, lo = [], 0
            for rank in range(nranks):
                n = q + (1 if rank < rem else 0)
                expected.append([lo, lo + n - 1])
                lo += n
            assert results[name]["distribution"] == expected, f"{name} on {nranks} ranks"


def test_python_pack_unpack_used_across_ranks(solves):
    name = "scalar/python-all-methods"
    assert sum(solves[1][name]["pack_calls"]) >= 0
    for nranks in RANKS[1:]:
        assert sum(solves[nranks][name]["pack_calls"]) > 0, f"{nranks} ranks: pack/unpack never called"


# ---- failures: one rank's callback fails, every rank returns ----

FAIL_CASES = [   # (callback, the rank it fails on)
    ("step", 1), ("init", 1), ("access", 0), ("pack", 0), ("unpack", 1),
    ("clone", 1), ("sum", 0), ("norm", 1), ("bufsize", 1),
    ("fast-message", 1), ("fast-exception", 0), ("fast-code", 1),
]
# a healthy solve after the failures: the processes are still usable
AFTER_FAILURES = _case("after-failures", "resnet4", max_levels=3, cfactor=4)[1]
EXPECTED_TYPE = {"step": "LookupError", "init": "LookupError", "access": "LookupError", "pack": "LookupError",
                 "unpack": "LookupError", "clone": "LookupError", "sum": "LookupError", "norm": "LookupError",
                 "bufsize": "LookupError", "fast-message": "RuntimeError", "fast-exception": "ZeroDivisionError",
                 "fast-code": "BraidError"}


@pytest.mark.parametrize("nranks", [2, 3])
def test_failing_callback_raises_everywhere_without_hanging(nranks, tmp_path):
    cases = [("cases_braid.fail", {"callback": callback, "rank": bad}) for callback, bad in FAIL_CASES]
    values = mpi_launch.run_cases(nranks, cases + [("cases_braid.solve", AFTER_FAILURES)], tmp_path, TIMEOUT)
    for (callback, bad), outcomes in zip(FAIL_CASES, values):
        name = f"{callback}@{bad}"
        mine = outcomes[bad]
        assert mine is not None, f"{name}: drive() returned normally on the failing rank"
        assert mine["type"] == EXPECTED_TYPE[callback], f"{name}: {mine['traceback']}"
        if mine["type"] == "LookupError":
            assert "failed on purpose" in mine["message"]
            assert "_maybe_fail" in mine["traceback"], "the callback's own frame is in the traceback"
        if callback == "fast-code":
            assert mine["code"] == 42
        for rank, other in enumerate(outcomes):
            if rank == bad:
                continue
            assert other is not None, f"{name}: rank {rank} returned normally"
            assert other["type"] == "BraidError", f"{name}: rank {rank}: {other['traceback']}"
            assert other["code"] == 5 and other["rank"] == bad, f"{name}: rank {rank}: {other['message']}"
            assert f"rank {bad}" in other["message"]
    after = whole_solve(AFTER_FAILURES["ntime"], values[-1])
    assert after["err"] < 1e-10


# ---- init vectors: checked once, with one reduction, when the Core is built ----

def _init_cases(nranks: int) -> list[tuple[str, int]]:
    """(mode, the rank whose vectors are wrong) for cases_braid.bad_init."""
    last = nranks - 1
    return [("size", 1), ("size", last), ("complex", last), ("vector-size", 1), ("raise", 1), ("raise", last)]


@pytest.mark.parametrize("nranks", [2, 4])
def test_wrong_init_vectors_raise_the_same_error_on_every_rank(nranks, tmp_path):
    cases = _init_cases(nranks)
    values = mpi_launch.run_cases(nranks, [("cases_braid.bad_init", {"mode": m, "rank": r}) for m, r in cases]
                                  + [("cases_braid.solve", AFTER_FAILURES)], tmp_path, TIMEOUT)
    for (mode, bad), outcomes in zip(cases, values):
        name = f"{mode}@{bad}"
        assert all(o is not None for o in outcomes), f"{name}: a rank built its Core: {outcomes}"
        if mode == "raise":
            mine = outcomes[bad]
            assert mine["type"] == "LookupError", f"{name}: {mine['traceback']}"
            assert "init failed on purpose" in mine["message"] and "in init" in mine["traceback"]
            for rank, other in enumerate(outcomes):
                if rank != bad:
                    assert other["type"] == "BraidError", f"{name}: rank {rank}: {other['traceback']}"
                    assert (other["code"], other["rank"]) == (5, bad), f"{name}: rank {rank}: {other['message']}"
                    assert other["message"].startswith(f"BadInitOn.init(0.0) raised an exception on rank {bad} "
                                                       f"of the time communicator while the Core was set up")
            continue
        messages = {o["message"] for o in outcomes}
        assert len(messages) == 1, f"{name}: the ranks disagree: {messages}"
        assert len({o["type"] for o in outcomes}) == 1
        message, kind = messages.pop(), outcomes[0]["type"]
        assert "\n" not in message
        if mode == "size":
            # the larger size is on `bad`; the smaller one on the lowest other rank
            good = 0 if bad != 0 else 1
            assert kind == "ValueError"
            assert message == (f"the size of BadInitOn.init(0.0) differs between the ranks of the time "
                               f"communicator: 2 entries on rank {bad}, 1 on rank {good}; every rank needs "
                               f"vectors of the same size")
        elif mode == "vector-size":
            assert kind == "ValueError"
            assert message.startswith(f"Mixed.size differs between the ranks of the time communicator: 33 "
                                      f"entries on rank {bad}, 1 on rank 0;")
        else:
            assert kind == "TypeError"
            assert message.startswith(f"BadInitOn.init(0.0) on rank {bad} returned an array of dtype complex128; "
                                      f"init must return a non-empty array-like of float64")
    after = whole_solve(AFTER_FAILURES["ntime"], values[-1])
    assert after["err"] < 1e-10


# ---- the example programs ----

@pytest.mark.parametrize("script,problem,nranks,extra", [
    ("scalar_ode.py", "scalar", 2, ["--cfactor", "4,2", "--nrelax", "0"]),
    ("heat.py", "heat", 3, ["--cfactor", "4", "--max-levels", "3", "--fmg", "--python"]),
    ("resnet4.py", "resnet4", 4, ["--cfactor", "2", "--skip", "0", "--storage", "0", "--tnorm", "3"]),
], ids=["scalar_ode", "heat", "resnet4"])
def test_example_prints_one_json_object(script, problem, nranks, extra):
    ntime = 48
    if not os.path.isdir(EXAMPLES):
        pytest.skip("examples/ not found beside tests/")
    proc = launch(nranks, [os.path.join(EXAMPLES, script), "--ntime", str(ntime), "--tol", "1e-12",
                           "--max-iter", "60", "--json", *extra])
    lines = proc.stdout.splitlines()
    assert len(lines) == 1, f"expected exactly one line on stdout, got:\n{proc.stdout}"
    out = json.loads(lines[0])
    assert set(out) == {"iterations", "levels", "residual_norms", "u_final"}
    assert len(out["residual_norms"]) == out["iterations"] + 1
    assert (out["residual_norms"][0] == -1.0) == ("--skip" not in extra)
    assert out["residual_norms"][-1] < 1e-12
    app, t0, t1 = reference_problem(problem, ntime, fast=False)
    assert_allclose(out["u_final"], sequential_solution(app, t0, t1, ntime)[-1], rtol=0, atol=1e-10)


def test_example_rejects_a_bad_option():
    proc = mpi_launch.run(2, [os.path.join(EXAMPLES, "resnet4.py"), "--cfactor", "1"], TIMEOUT)
    assert proc.returncode != 0
    assert "cfactor must be an integer >= 2" in proc.stderr
