"""braidnet.braid on 1-4 MPI ranks: convergence to sequential stepping, rank independence, failures.

Each rank count is one ``mpiexec -n P`` launch of tests/mpi_driver.py running every case (launches
are the slow part), with a timeout so that a hang fails instead of blocking.  The ranks are
oversubscribed on small machines (CI has 2 cores).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import mpi_launch
from numpy.testing import assert_allclose

import braidnet
from braidnet.refproblems import PROBLEMS, reference_problem, sequential_solution

pytestmark = pytest.mark.mpi

HERE = os.path.dirname(os.path.abspath(__file__))
DRIVER = os.path.join(HERE, "mpi_driver.py")
EXAMPLES = os.path.join(os.path.dirname(HERE), "examples")
TIMEOUT = 180      # seconds per launch; a hang fails the test
TOL = 1e-12        # absolute residual tolerance of every solve
RANKS = (1, 2, 3, 4)


def launch(nranks: int, args: list[str]) -> subprocess.CompletedProcess:
    """Run `mpiexec -n nranks python *args`; fail the test on a timeout or a non-zero exit."""
    return mpi_launch.check(mpi_launch.run(nranks, args, TIMEOUT))


def run_driver(nranks: int, cases: list[dict], tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Launch the driver on nranks ranks; return {case name: result}."""
    path = tmp_path_factory.mktemp("mpi") / "cases.json"
    path.write_text(json.dumps(cases))
    proc = launch(nranks, [DRIVER, str(path)])
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    out = json.loads(lines[-1])
    assert out["size"] == nranks
    return out["results"]


# ---- the solve matrix (every case runs on 1, 2, 3 and 4 ranks) ----

def _case(name: str, problem: str, ntime: int = 64, fast: bool = True, variant: str | None = None,
          **options) -> dict:
    options = {"abs_tol": TOL, "max_iter": 100, "print_level": 0, **options}
    return {"kind": "solve", "name": f"{problem}/{name}", "problem": problem, "ntime": ntime, "fast": fast,
            "variant": variant, "options": options}


def _solve_cases() -> list[dict]:
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


SOLVE_CASES = _solve_cases()
CASE_IDS = [c["name"] for c in SOLVE_CASES]


@pytest.fixture(scope="module")
def solves(tmp_path_factory) -> dict[int, dict]:
    return {p: run_driver(p, SOLVE_CASES, tmp_path_factory) for p in RANKS}


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
        for case in SOLVE_CASES:
            npoints = case["ntime"] + 1
            q, rem = divmod(npoints, nranks)
            expected, lo = [], 0
            for rank in range(nranks):
                n = q + (1 if rank < rem else 0)
                expected.append([lo, lo + n - 1])
                lo += n
            assert results[case["name"]]["distribution"] == expected, f"{case['name']} on {nranks} ranks"


def test_python_pack_unpack_used_across_ranks(solves):
    name = "scalar/python-all-methods"
    assert sum(solves[1][name]["pack_calls"]) >= 0
    for nranks in RANKS[1:]:
        assert sum(solves[nranks][name]["pack_calls"]) > 0, f"{nranks} ranks: pack/unpack never called"


# ---- failures: one rank's callback fails, every rank returns ----

FAIL_CASES = [
    {"kind": "fail", "name": "step@1", "callback": "step", "rank": 1},
    {"kind": "fail", "name": "init@1", "callback": "init", "rank": 1},
    {"kind": "fail", "name": "access@0", "callback": "access", "rank": 0},
    {"kind": "fail", "name": "pack@0", "callback": "pack", "rank": 0},
    {"kind": "fail", "name": "unpack@1", "callback": "unpack", "rank": 1},
    {"kind": "fail", "name": "fast-message@1", "callback": "fast-message", "rank": 1},
    {"kind": "fail", "name": "fast-exception@0", "callback": "fast-exception", "rank": 0},
    {"kind": "fail", "name": "fast-code@1", "callback": "fast-code", "rank": 1},
    # a healthy solve after the failures: the processes are still usable
    _case("after-failures", "resnet4", max_levels=3, cfactor=4),
]
EXPECTED_TYPE = {"step": "LookupError", "init": "LookupError", "access": "LookupError", "pack": "LookupError",
                 "unpack": "LookupError", "fast-message": "RuntimeError", "fast-exception": "ZeroDivisionError",
                 "fast-code": "BraidError"}


@pytest.mark.parametrize("nranks", [2, 3])
def test_failing_callback_raises_everywhere_without_hanging(nranks, tmp_path_factory):
    results = run_driver(nranks, FAIL_CASES, tmp_path_factory)
    for case in FAIL_CASES[:-1]:
        outcomes = results[case["name"]]
        bad = case["rank"]
        mine = outcomes[bad]
        assert mine is not None, f"{case['name']}: drive() returned normally on the failing rank"
        assert mine["type"] == EXPECTED_TYPE[case["callback"]], f"{case['name']}: {mine['traceback']}"
        if mine["type"] == "LookupError":
            assert "failed on purpose" in mine["message"]
            assert "_maybe_fail" in mine["traceback"], "the callback's own frame is in the traceback"
        if case["callback"] == "fast-code":
            assert mine["code"] == 42
        for rank, other in enumerate(outcomes):
            if rank == bad:
                continue
            assert other is not None, f"{case['name']}: rank {rank} returned normally"
            assert other["type"] == "BraidError", f"{case['name']}: rank {rank}: {other['traceback']}"
            assert other["code"] == 5 and other["rank"] == bad, f"{case['name']}: rank {rank}: {other['message']}"
            assert f"rank {bad}" in other["message"]
    after = results["resnet4/after-failures"]
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
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(braidnet.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    proc = subprocess.run([mpi_launch.mpiexec(), "-n", "2", sys.executable, os.path.join(EXAMPLES, "resnet4.py"),
                           "--cfactor", "1"], capture_output=True, text=True, timeout=TIMEOUT, env=env)
    assert proc.returncode != 0
    assert "cfactor must be an integer >= 2" in proc.stderr
