"""braidnet.braid in one process: options, both kinds of app, check_app, errors, warm restart, memory.

The solve tests are rank-agnostic and run on COMM_SELF, COMM_WORLD and a Dup() of it (in one
process these are all one rank; test_braid_mpi.py runs the same solves on 1-4 ranks).
"""
from __future__ import annotations

import gc
import json
import math
import os
import pickle
import weakref

import numpy as np
import pytest
from mpi4py import MPI
from numpy.testing import assert_allclose, assert_array_equal

from braidnet.braid import (AccessStatus, BraidError, CALLBACK_ERROR, Core, DriveResult, StepStatus, VectorApp,
                            check_app, check_options, error_string)
from braidnet.refapps import FailingScalarApp, HeatApp, ResNet4App, ScalarApp
from braidnet.refproblems import (PROBLEMS, Heat, ResNet4, ScalarODE, reference_problem,
                                  sequential_solution)

QUIET = {"print_level": 0}


class AppFailure(Exception):
    """Raised on purpose by test apps."""


@pytest.fixture(params=["self", "world", "dup"])
def comm(request):
    if request.param == "self":
        yield MPI.COMM_SELF
    elif request.param == "world":
        yield MPI.COMM_WORLD
    else:
        c = MPI.COMM_WORLD.Dup()
        yield c
        c.Free()


def solve(app, tstart, tstop, ntime, comm=MPI.COMM_WORLD, **options):
    """Drive once; return (result, states as an array (ntime + 1, size))."""
    app.keep_states(ntime + 1)
    with Core(app, tstart, tstop, ntime, comm, **QUIET, **options) as core:
        res = core.drive()
    st = app.states()
    return res, np.array([st[i] for i in range(ntime + 1)])


# ---------------------------------------------------------------------------------------------
# options: ValueError before any MPI work
# ---------------------------------------------------------------------------------------------

BAD_OPTIONS = [
    ({"cfactor": 1}, r"cfactor must be an integer >= 2.*got 1"),
    ({"cfactor": [4, 1]}, r"cfactor\[1\] must be an integer >= 2, got 1"),
    ({"cfactor": []}, r"cfactor must be"),
    ({"cfactor": 2.0}, r"cfactor must be an integer >= 2.*got 2\.0"),
    ({"nrelax": -1}, r"nrelax must be an integer >= 0.*got -1"),
    ({"max_levels": 0}, r"max_levels must be an integer >= 1, got 0"),
    ({"max_levels": "3"}, r"max_levels must be an integer >= 1, got '3'"),
    ({"min_coarse": 0}, r"min_coarse must be an integer >= 1, got 0"),
    ({"abs_tol": -1e-9}, r"abs_tol must be >= 0, got -1e-09"),
    ({"rel_tol": -1.0}, r"rel_tol must be >= 0, got -1\.0"),
    ({"abs_tol": float("nan")}, r"abs_tol must be a finite real number, got nan"),
    ({"abs_tol": 1e-9, "rel_tol": 1e-9}, r"give abs_tol or rel_tol, not both"),
    ({"max_iter": -1}, r"max_iter must be an integer >= 0, got -1"),
    ({"fmg": "yes"}, r"fmg must be True/False \(or 0/1\), got 'yes'"),
    ({"nfmg": -2}, r"nfmg must be an integer >= 0 \(the one V-cycle among F-cycles\), or -1"),
    ({"skip": 2}, r"skip must be 0 or 'off' \(never\), 1 or 'first' \(first drive only, default\) or 'every' "
                  r"\(every drive, as LLNL XBraid\), got 2"),
    ({"skip": "always"}, r"skip must be 0 or 'off'.*got 'always'"),
    ({"final_fc_relax": 2}, r"final_fc_relax must be True/False \(or 0/1\), got 2"),
    ({"storage": -2}, r"storage must be -1 \(store C-points only\) or a level >= 0"),
    ({"tnorm": 4}, r"tnorm must be 1 or 'l1'.*got 4"),
    ({"print_level": 3}, r"print_level must be an integer from 0 to 2, got 3"),
    ({"access_level": 4}, r"access_level must be an integer from 0 to 3, got 4"),
    ({"seq_soln": 0.5}, r"seq_soln must be True/False"),
    ({"cfactr": 2}, r"unknown option 'cfactr'; allowed: abs_tol, access_level, cfactor"),
]


@pytest.mark.parametrize("options,match", BAD_OPTIONS, ids=[m for _, m in BAD_OPTIONS])
def test_bad_option_raises_value_error(options, match):
    with pytest.raises(ValueError, match=match):
        Core(ScalarODE(), 0.0, 1.0, 10, **options)


@pytest.mark.parametrize("args,match", [
    ((0.0, 1.0, 0), r"ntime must be an integer >= 1 \(number of time steps\), got 0"),
    ((0.0, 1.0, 2.5), r"ntime must be an integer >= 1.*got 2\.5"),
    ((1.0, 1.0, 10), r"tstop must be > tstart, got tstart=1\.0, tstop=1\.0"),
    ((2.0, 1.0, 10), r"tstop must be > tstart"),
    ((0.0, math.inf, 10), r"tstop must be a finite real number, got inf"),
])
def test_bad_grid_raises_value_error(args, match):
    with pytest.raises(ValueError, match=match):
        Core(ScalarODE(), *args)


def test_options_are_checked_before_the_communicator_is_touched():
    # The communicator is invalid, yet the option error comes first: nothing reached MPI.
    with pytest.raises(ValueError, match="cfactor"):
        Core(ScalarODE(), 0.0, 1.0, 10, comm="not a communicator", cfactor=1)
    with pytest.raises(TypeError, match="comm must be an mpi4py MPI.Comm, got str"):
        Core(ScalarODE(), 0.0, 1.0, 10, comm="not a communicator")


def test_options_are_normalised_and_kept():
    core = Core(ScalarODE(), 0.0, 5.0, 10, cfactor=(4, 2), tnorm="linf", skip=False, fmg=1, **QUIET)
    assert core.options == {"cfactor": [4, 2], "tnorm": 3, "skip": 0, "fmg": True, "print_level": 0}
    core.close()


@pytest.mark.parametrize("value,normal", [(0, 0), (False, 0), ("off", 0), (1, 1), (True, 1), ("first", 1),
                                          ("every", "every")])
def test_skip_values(value, normal):
    with Core(ScalarODE(), 0.0, 5.0, 10, skip=value, **QUIET) as core:
        assert core.options["skip"] == normal and type(core.options["skip"]) is type(normal)


def test_final_fc_relax_cannot_be_switched_off():
    with Core(ScalarODE(), 0.0, 8.0, 16, max_levels=3, final_fc_relax=True, **QUIET) as core:
        core.set_options(final_fc_relax=True)           # no change: fine
        with pytest.raises(ValueError, match=r"final_fc_relax=False: the final FC relaxation cannot be "
                                             r"switched off once on"):
            core.set_options(final_fc_relax=False)
        core.drive()
    with Core(ScalarODE(), 0.0, 8.0, 16, max_levels=3, **QUIET) as core:
        core.set_options(final_fc_relax=False)          # off and staying off
        core.drive()
        core.set_options(final_fc_relax=True)           # may be switched on between drives


def test_malformed_apps_are_rejected():
    with pytest.raises(TypeError, match=r"needs a callable init\(\) method; object has none"):
        Core(object(), 0.0, 1.0, 10)

    class NoStep:
        def init(self, t):
            return np.zeros(1)

    with pytest.raises(TypeError, match=r"needs a callable step\(\) method; NoStep has none"):
        Core(NoStep(), 0.0, 1.0, 10)

    class PackOnly(ScalarODE):
        def pack(self, u):
            return u.tobytes()

    with pytest.raises(TypeError, match=r"pack\(\) and unpack\(\) together"):
        Core(PackOnly(), 0.0, 1.0, 10)
    with pytest.raises(ValueError, match=r"VectorApp.size must be >= 1"):
        Core(VectorApp(), 0.0, 1.0, 10)


# ---------------------------------------------------------------------------------------------
# init vectors: checked once when the Core is built (COMM_SELF here; test_braid_mpi.py on 2 and 4 ranks)
# ---------------------------------------------------------------------------------------------

class Converted(ScalarODE):
    """u' = -u from u0 = 3 with init's values passed through ``convert`` (at every t, guess 0).

    step and access assert that the core only ever hands over float64 vectors of shape (1,).
    """

    def __init__(self, convert, later=None):
        super().__init__(u0=3.0, guess=0.0)
        self.convert = convert
        self.later = later if later is not None else convert

    def init(self, t):
        return (self.convert if t == self.tstart else self.later)(super().init(t))

    def step(self, u, ustop, fstop, status):
        assert u.dtype == np.float64 and u.shape == (1,), (u.dtype, u.shape)
        super().step(u, ustop, fstop, status)

    def access(self, u, status):
        assert u.dtype == np.float64 and u.shape == (1,), (u.dtype, u.shape)
        super().access(u, status)


ACCEPTED_INITS = {
    "int64": lambda u: u.astype(np.int64),
    "int32": lambda u: u.astype(np.int32),
    "uint8": lambda u: u.astype(np.uint8),
    "int64-at-2**53": lambda u: (u * 2**53 / 3).astype(np.int64) // 2**53 * 3,
    "float32": lambda u: u.astype(np.float32),
    "float16": lambda u: u.astype(np.float16),
    "longdouble-exact": lambda u: u.astype(np.longdouble),
    "list-of-ints": lambda u: [int(v) for v in u],
    "list-of-floats": lambda u: [float(v) for v in u],
    "big-endian-float64": lambda u: u.astype(">f8"),
}


@pytest.mark.parametrize("convert", ACCEPTED_INITS.values(), ids=ACCEPTED_INITS.keys())
def test_init_of_a_lossless_dtype_is_converted_to_float64(convert):
    ntime = 16
    res, states = solve(Converted(convert), 0.0, 8.0, ntime, MPI.COMM_SELF, max_levels=3, abs_tol=1e-12)
    assert res.residual_norms[-1] < 1e-12
    assert states.dtype == np.float64
    assert_allclose(states, sequential_solution(ScalarODE(u0=3.0), 0.0, 8.0, ntime), rtol=0, atol=1e-10)


def test_an_int_init_gives_what_a_float_init_gives():
    ntime = 32
    _, ints = solve(Converted(lambda u: u.astype(np.int64)), 0.0, 16.0, ntime, MPI.COMM_SELF, max_levels=4)
    _, floats = solve(Converted(lambda u: u), 0.0, 16.0, ntime, MPI.COMM_SELF, max_levels=4)
    assert_array_equal(ints, floats)
    check_app(Converted(lambda u: u.astype(np.int32)), 0.0)


_RULE = r"; init must return a non-empty array-like of float64, or of a real dtype"

REFUSED_INITS = [  # (id, convert, exception, match)
    ("complex", lambda u: u.astype(complex), TypeError, r"Refused\.init\(0\.0\) returned an array of dtype complex128"),
    ("complex-list", lambda u: [1 + 0j], TypeError, r"returned an array of dtype complex128"),
    ("object", lambda u: u.astype(object), TypeError, r"returned an array of dtype object"),
    ("str", lambda u: np.array(["1.0"]), TypeError, r"returned an array of dtype str"),
    ("bytes", lambda u: [b"1"], TypeError, r"returned an array of dtype bytes"),
    ("bool", lambda u: u > 0, TypeError, r"returned an array of dtype bool"),
    ("datetime", lambda u: np.array(["2024-01-01"], dtype="M8[D]"), TypeError, r"returned an array of dtype datetime64"),
    ("None", lambda u: None, TypeError, r"returned None"),
    ("ragged", lambda u: [[1.0], [2.0, 3.0]], TypeError, r"returned something numpy makes no array of numbers of"),
    ("empty", lambda u: np.zeros(0), ValueError, r"returned an empty array"),
    ("empty-list", lambda u: [], ValueError, r"returned an empty array"),
    ("int64-beyond-2**53", lambda u: np.array([2**53 + 1]), ValueError,
     r"returned int64 values that float64 does not hold exactly"),
    ("uint64-beyond-2**53", lambda u: np.array([2**60], dtype=np.uint64), ValueError,
     r"returned uint64 values that float64 does not hold exactly"),
    ("longdouble-inexact", lambda u: np.array([1], dtype=np.longdouble) / 3, ValueError,
     r"returned float128 values that float64 does not hold exactly"),
]
if np.finfo(np.longdouble).nmant <= np.finfo(np.float64).nmant:   # longdouble is float64 here
    REFUSED_INITS = [c for c in REFUSED_INITS if c[0] != "longdouble-inexact"]


@pytest.mark.parametrize("convert,exc,match", [c[1:] for c in REFUSED_INITS], ids=[c[0] for c in REFUSED_INITS])
def test_init_of_another_dtype_is_refused_when_the_core_is_built(convert, exc, match):
    calls = []

    class Refused(Converted):
        def step(self, u, ustop, fstop, status):
            calls.append(status)

    with pytest.raises(exc, match=match + r".*" + _RULE) as info:
        Core(Refused(convert), 0.0, 8.0, 16, MPI.COMM_SELF, **QUIET)
    assert "\n" not in str(info.value), "one line"
    assert "on rank" not in str(info.value), "one rank: no rank to name"
    assert calls == []


@pytest.mark.parametrize("later,exc,match", [
    (lambda u: u.astype(complex), TypeError, r"Converted\.init\([1-9][0-9.]*\) returned an array of dtype complex128"),
    (lambda u: np.zeros(2), ValueError,
     r"Converted\.init\([1-9][0-9.]*\) returned an array of shape \(2,\); init\(0\.0\) gave \(1,\)"),
    (lambda u: np.zeros((1, 1)), ValueError, r"returned an array of shape \(1, 1\); init\(0\.0\) gave \(1,\)"),
], ids=["complex", "longer", "other-shape"])
def test_every_later_init_follows_the_same_rule(later, exc, match):
    # init(tstart) passes the set-up check; the core's later init calls come out of drive()
    with Core(Converted(lambda u: u, later), 0.0, 8.0, 16, MPI.COMM_SELF, **QUIET) as core:
        with pytest.raises(exc, match=match):
            core.drive()


def test_an_exception_in_init_at_set_up_comes_out_of_the_constructor():
    class Raising(ScalarODE):
        def init(self, t):
            raise AppFailure(f"init({t})")

    with pytest.raises(AppFailure, match=r"init\(0\.0\)") as info:
        Core(Raising(), 0.0, 8.0, 16, MPI.COMM_SELF, **QUIET)
    assert any(entry.name == "init" for entry in info.traceback)


def test_init_is_called_once_at_set_up():
    calls = []

    class Counting(ScalarODE):
        def init(self, t):
            calls.append(t)
            return super().init(t)

    core = Core(Counting(), 0.0, 8.0, 16, MPI.COMM_SELF, **QUIET)
    assert calls == [0.0]
    core.close()


# ---------------------------------------------------------------------------------------------
# solves: one level = sequential stepping; many levels converge to it
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fast", [True, False], ids=["fast", "python"])
@pytest.mark.parametrize("problem", PROBLEMS)
def test_one_level_is_sequential_stepping(problem, fast, comm):
    ntime = 40
    app, t0, t1 = reference_problem(problem, ntime, fast)
    res, states = solve(app, t0, t1, ntime, comm, max_levels=1)
    assert res.levels == 1
    assert_allclose(states, sequential_solution(app, t0, t1, ntime), rtol=0, atol=1e-14)


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "python"])
@pytest.mark.parametrize("problem", PROBLEMS)
@pytest.mark.parametrize("options", [
    {"max_levels": 2, "cfactor": 4},
    {"max_levels": 6, "cfactor": 2, "nrelax": 0},
    {"max_levels": 4, "cfactor": [8, 2], "fmg": True},
    {"max_levels": 3, "cfactor": 3, "skip": 0, "storage": 0},
], ids=["2lev-cf4", "6lev-F", "4lev-cf8-2-Fcyc", "3lev-skip0-storage0"])
def test_many_levels_converge_to_sequential_stepping(problem, fast, options, comm):
    ntime = 64
    app, t0, t1 = reference_problem(problem, ntime, fast)
    res, states = solve(app, t0, t1, ntime, comm, abs_tol=1e-12, **options)
    assert 1 < res.levels <= options["max_levels"]
    assert res.residual_norms[-1] < 1e-12
    assert_allclose(states, sequential_solution(app, t0, t1, ntime), rtol=0, atol=1e-10)


@pytest.mark.parametrize("problem", PROBLEMS)
def test_fast_and_python_apps_agree(problem):
    ntime = 32
    fast, t0, t1 = reference_problem(problem, ntime, True)
    slow = reference_problem(problem, ntime, False).app
    assert_allclose(sequential_solution(fast, t0, t1, ntime), sequential_solution(slow, t0, t1, ntime),
                    rtol=0, atol=1e-14)
    rf, _ = solve(fast, t0, t1, ntime, max_levels=3, abs_tol=1e-12)
    rs, _ = solve(slow, t0, t1, ntime, max_levels=3, abs_tol=1e-12)
    assert rf.iterations == rs.iterations
    # equal up to round-off (ResNet-4's numpy matmul sums in another order than the C loop)
    assert_allclose(rf.residual_norms, rs.residual_norms, rtol=1e-10, atol=1e-13)


def test_heat_discretisation_approaches_the_exact_solution():
    # Backward Euler is first order in time: halving dt about halves the error at T = 2 pi.
    errs = []
    for ntime in (256, 512):
        heat = Heat()
        u = sequential_solution(heat, 0.0, 2 * math.pi, ntime)[-1]
        errs.append(np.abs(u - heat.exact(2 * math.pi)).max())
    assert errs[0] < 1e-2
    assert 1.6 < errs[0] / errs[1] < 2.4


def test_drive_result_and_properties():
    app = ResNet4App()
    with Core(app, 0.0, 4.0, 64, max_levels=3, cfactor=4, abs_tol=1e-10, **QUIET) as core:
        assert core.iterations == 0 and core.residual_norms == []
        res = core.drive()
        assert isinstance(res, DriveResult)
        assert res.iterations == core.iterations == len(res.residual_norms) - 1
        assert res.residual_norms == core.residual_norms
        assert res.residual_norms[0] == -1.0            # skipped first iteration (skip = 1)
        assert res.residual_norms[-1] == res.residual_norms[-2]
        assert res.levels == core.levels == 3
        assert res.time > 0
        assert core.distribution == (0, 64)
        assert core.distributions == [(0, 64)]
        assert "Core open" in repr(core)
    assert "closed" in repr(core)


@pytest.mark.parametrize("ntime, options, strides", [
    (16, {}, (1, 2, 4, 8)),
    (16, {"max_levels": 2}, (1, 2)),
    (32, {"cfactor": 4, "min_coarse": 1}, (1, 4, 16)),
    (21, {"cfactor": [4, 2]}, (1, 4, 8)),
    (21, {"cfactor": [4]}, (1, 4, 8)),          # levels past the list keep the default 2
    (24, {"cfactor": [4, 3]}, (1, 4, 12)),
    (3, {}, (1,)),
    (63, {"min_coarse": 3}, (1, 2, 4, 8, 16)),
])
def test_level_strides_before_and_after_the_drive(ntime, options, strides):
    # the hierarchy is the core's (level l+1 while l+1 < max_levels and n_l // cf_l >= min_coarse)
    with Core(ScalarApp(), 0.0, 1.0, ntime, max_iter=2, **options, **QUIET) as core:
        assert core.level_strides == strides
        assert core.drive().levels == len(strides)
        assert core.level_strides == strides


def test_check_options_is_what_core_checks():
    assert check_options(0.0, 1.0, 10, cfactor=(4, 2), tnorm="linf", fmg=1) == {"cfactor": [4, 2], "tnorm": 3,
                                                                               "fmg": True}
    with pytest.raises(ValueError, match="unknown option 'cf'"):
        check_options(0.0, 1.0, 10, cf=2)
    with pytest.raises(ValueError, match="ntime must be an integer >= 1"):
        check_options(0.0, 1.0, 0)


def test_statuses_describe_the_grid():
    ntime, T, cf = 16, 8.0, 2
    h = T / ntime
    steps, accesses = [], []

    class Spy(ScalarODE):
        def step(self, u, ustop, fstop, status):
            assert isinstance(status, StepStatus)
            steps.append(status)
            super().step(u, ustop, fstop, status)

        def access(self, u, status):
            assert isinstance(status, AccessStatus)
            accesses.append(status)

    with Core(Spy(), 0.0, T, ntime, max_levels=3, cfactor=cf, abs_tol=1e-12, **QUIET) as core:
        core.drive()
    for s in steps:
        stride = cf ** s.level
        assert s.tstop - s.tstart == pytest.approx(stride * h)
        assert s.tstart == pytest.approx(s.index * stride * h)
        assert s.nlevels == 3
    assert {s.level for s in steps} == {0, 1, 2}
    final = sorted((a for a in accesses if a.done), key=lambda a: a.index)
    assert [a.index for a in final] == list(range(ntime + 1))      # every point, once
    assert [a.t for a in final] == [(i / ntime) * T for i in range(ntime + 1)]
    assert all(a.level == 0 for a in final)


@pytest.mark.bundled_core(reason="the bundled core's final access runs in time order; LLNL XBraid's "
                                 "final FAccess visits each interval's F-points before its C-point")
def test_final_access_is_in_time_order():
    ntime = 16
    final = []

    class Spy(ScalarODE):
        def access(self, u, status):
            if status.done:
                final.append(status.index)

    with Core(Spy(), 0.0, 8.0, ntime, max_levels=3, cfactor=2, abs_tol=1e-12, **QUIET) as core:
        core.drive()
    assert final == list(range(ntime + 1))


def test_step_may_return_a_new_array():
    class Returning(ResNet4):
        def step(self, u, ustop, fstop, status):
            h = status.tstop - status.tstart
            return u + h * np.tanh(self.W @ u + self.b)

    app = Returning()
    _, states = solve(app, 0.0, 4.0, 32, max_levels=3, abs_tol=1e-12)
    assert_allclose(states, sequential_solution(ResNet4(), 0.0, 4.0, 32), rtol=0, atol=1e-10)

    class WrongShape(ScalarODE):
        def step(self, u, ustop, fstop, status):
            return np.zeros(3)

    with pytest.raises(ValueError, match=r"step returned an array of shape \(3,\); the vector has shape \(1,\)"):
        solve(WrongShape(), 0.0, 4.0, 8, max_levels=2)


def test_vectors_never_alias_the_apps_arrays():
    class Stored(ScalarODE):
        def __init__(self):
            super().__init__()
            self.u0_array = np.array([1.0])
            self.guess_array = np.array([0.456])

        def init(self, t):     # returns stored arrays: the wrapper must copy them
            return self.u0_array if t == 0.0 else self.guess_array

    app = Stored()
    _, states = solve(app, 0.0, 8.0, 16, max_levels=3, abs_tol=1e-12)
    assert app.u0_array[0] == 1.0 and app.guess_array[0] == 0.456
    assert_allclose(states, sequential_solution(ScalarODE(), 0.0, 8.0, 16), rtol=0, atol=1e-12)


@pytest.mark.parametrize("fail_in", [None, "clone", "step"])
def test_python_app_vectors_are_all_released(fail_in):
    """Each vector handed to the core is released by destroy, also after an aborted solve."""
    refs = []

    class Tracked(Heat):
        def init(self, t):
            u = super().init(t)
            refs.append(weakref.ref(u))
            return u

        def clone(self, u):
            if fail_in == "clone" and len(refs) > 40:
                raise AppFailure("clone")
            v = u.copy()
            refs.append(weakref.ref(v))
            return v

        def step(self, u, ustop, fstop, status):
            if fail_in == "step" and status.iter == 2:
                raise AppFailure("step")
            super().step(u, ustop, fstop, status)

    def alive():
        return sum(r() is not None for r in refs)

    app = Tracked()
    core = Core(app, 0.0, 2 * math.pi, 32, max_levels=3, abs_tol=1e-10, storage=0, **QUIET)
    if fail_in is None:
        core.drive()
        core.drive()
    else:
        with pytest.raises(AppFailure, match=fail_in):
            core.drive()
    assert alive() > 0
    del core                     # __dealloc__ destroys the core
    gc.collect()
    assert alive() == 0, f"{alive()} of {len(refs)} vectors still alive after the core was destroyed"


# ---------------------------------------------------------------------------------------------
# warm restart
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fast", [True, False], ids=["fast", "python"])
def test_warm_restart(fast):
    ntime, tol = 64, 1e-11
    app = ResNet4App() if fast else ResNet4()
    app.keep_states(ntime + 1)
    with Core(app, 0.0, 4.0, ntime, max_levels=3, cfactor=4, abs_tol=tol, **QUIET) as core:
        cold = core.drive()
        again = core.drive()                    # nothing changed: converged at once
        assert again.iterations == 1
        assert again.residual_norms[0] < tol

        W = np.array(ResNet4().W) * 1.01        # perturb the problem, continue from the old solution
        app.set_params(W, ResNet4().b)
        app.reset_record()
        warm = core.drive()
        st = app.states()
    assert warm.residual_norms[0] > tol
    assert warm.residual_norms[-1] < tol
    assert warm.iterations < cold.iterations
    expected = sequential_solution(ResNet4(W=W), 0.0, 4.0, ntime)
    assert_allclose(np.array([st[i] for i in range(ntime + 1)]), expected, rtol=0, atol=1e-10)


def test_set_options_between_drives():
    with Core(ScalarApp(), 0.0, 32.0, 64, max_levels=3, **QUIET) as core:
        first = core.drive()
        core.set_options(max_iter=2, abs_tol=0.0)
        second = core.drive()                   # warm restart, exactly two iterations
        assert second.iterations == 2
        assert core.options["max_iter"] == 2 and "rel_tol" not in core.options
        assert core.step_calls > 0
        assert first.iterations > 2
        with pytest.raises(ValueError, match="cfactor cannot change after the first drive"):
            core.set_options(cfactor=4)
        with pytest.raises(ValueError, match="max_iter"):
            core.set_options(max_iter=-1)
        core.set_options(fmg=False)             # V-cycles already: nothing to do
        core.set_options(fmg=True)
        with pytest.raises(ValueError, match="F-cycles cannot be switched off once on"):
            core.set_options(fmg=False)


def test_nfmg_is_one_v_cycle_among_f_cycles():
    """nfmg=k as XBraid's SetFMG + SetNFMG(k) do it: F-cycles, iteration k alone a V-cycle.  An
    F-cycle takes more coarse-level steps than a V-cycle, so each iteration's kind shows in the step
    count of a drive of that many iterations (differences of whole drives; the final sweep cancels)."""
    def steps(iterations, **opts):
        with Core(ScalarApp(), 0.0, 32.0, 64, max_levels=4, cfactor=2, max_iter=iterations, abs_tol=0.0,
                  **opts, **QUIET) as core:
            core.drive()
            return core.step_calls

    v1, f1 = steps(1), steps(1, fmg=True)
    assert f1 > v1
    assert steps(2, nfmg=1) == steps(1, fmg=True) + (steps(2) - steps(1))        # F, then V
    assert steps(2, nfmg=0) == v1 + (steps(2, fmg=True) - f1)                     # V, then F
    assert steps(3, nfmg=-1) == steps(3, fmg=True)


def test_step_calls_count_the_steps_of_one_level():
    # one level: no iteration (as LLNL XBraid), the final sweep steps sequentially, ntime steps
    with Core(ScalarApp(), 0.0, 32.0, 64, max_levels=1, **QUIET) as core:
        result = core.drive()
        assert core.step_calls == 64 and result.iterations == 0 and result.residual_norms == [-1.0]


def test_time_step_of_a_fast_app():
    seconds = ScalarApp().time_step(1000, 0.0, 1e-9, repeats=2)
    assert 0.0 < seconds < 1e-3
    with pytest.raises(ValueError, match="calls and repeats must be >= 1"):
        ScalarApp().time_step(0, 0.0, 1.0)


# ---------------------------------------------------------------------------------------------
# exceptions from callbacks
# ---------------------------------------------------------------------------------------------

class Abort(BaseException):
    pass


@pytest.mark.parametrize("where", ["init", "step", "access", "norm", "sum", "clone"])
def test_exception_in_a_callback_comes_out_of_drive(where):
    class Failing(ScalarODE):
        def init(self, t):
            if where == "init" and t > 0:
                raise AppFailure("init")
            return super().init(t)

        def step(self, u, ustop, fstop, status):
            if where == "step" and status.iter == 1:
                raise AppFailure("step")
            super().step(u, ustop, fstop, status)

        def access(self, u, status):
            if where == "access":
                raise AppFailure("access")

        def norm(self, u):
            if where == "norm":
                raise AppFailure("norm")
            return float(abs(u[0]))

        def sum(self, alpha, x, beta, y):
            if where == "sum":
                raise AppFailure("sum")
            y[:] = alpha * x + beta * y

        def clone(self, u):
            if where == "clone":
                raise AppFailure("clone")
            return u.copy()

    with Core(Failing(), 0.0, 8.0, 16, max_levels=3, skip=0, **QUIET) as core:
        with pytest.raises(AppFailure, match=where) as info:
            core.drive()
    # the traceback reaches into the callback itself
    assert any(entry.name == where for entry in info.traceback)


def test_base_exceptions_pass_through():
    class Interrupted(ScalarODE):
        def step(self, u, ustop, fstop, status):
            raise Abort()

    with pytest.raises(Abort):
        Core(Interrupted(), 0.0, 8.0, 16, **QUIET).drive()


def test_only_the_first_exception_is_kept_and_the_core_stays_usable():
    calls = []

    class Twice(ScalarODE):
        def step(self, u, ustop, fstop, status):
            calls.append(status)
            raise AppFailure(f"call {len(calls)}")

    core = Core(Twice(), 0.0, 8.0, 16, max_levels=2, **QUIET)
    with pytest.raises(AppFailure, match="call 1"):
        core.drive()
    assert len(calls) == 1        # the core stopped calling back
    core.close()
    # a new core in the same process works
    _, states = solve(ScalarApp(), 0.0, 8.0, 16, max_levels=3, abs_tol=1e-12)
    assert_allclose(states, sequential_solution(ScalarODE(), 0.0, 8.0, 16), rtol=0, atol=1e-10)


@pytest.mark.parametrize("mode,exc,match", [
    ("message", RuntimeError, "step failed on purpose"),
    ("exception", ZeroDivisionError, "division on purpose"),
    ("code", BraidError, r"a callback returned error code 42 \(braid error code 42\)"),
])
def test_fast_app_errors(mode, exc, match):
    with pytest.raises(exc, match=match) as info:
        Core(FailingScalarApp(5, 1, mode), 0.0, 8.0, 16, max_levels=3, **QUIET).drive()
    if mode == "code":
        assert info.value.code == 42


def test_braid_error():
    err = BraidError(3)
    assert err.code == 3 and err.rank is None
    assert isinstance(err, RuntimeError)
    assert str(err) == f"{error_string(3)} (braid error code 3)"
    assert error_string(0) != error_string(5)
    assert CALLBACK_ERROR < 0
    again = pickle.loads(pickle.dumps(BraidError(5, "a callback failed on rank 1", rank=1)))
    assert (type(again), again.code, again.rank, str(again)) == (
        BraidError, 5, 1, "a callback failed on rank 1 (braid error code 5)")


def test_core_never_driven():
    # LLNL XBraid's braid_Destroy crashes on a core that was never driven: braidnet makes the C core
    # at the first drive there (braidnet/_braid/core.pxi, "LLNL XBraid")
    with Core(ScalarApp(), 0.0, 8.0, 16, max_levels=3, **QUIET) as core:
        assert (core.iterations, core.residual_norms, core.levels, core.step_calls) == (0, [], 0, 0)
        core.set_options(max_iter=5)
        assert core.options["max_iter"] == 5
    with pytest.raises(ValueError, match="closed"):
        core.drive()
    core = Core(ScalarODE(), 0.0, 8.0, 16, **QUIET)
    del core                      # freed by the garbage collector, never driven
    gc.collect()


def test_no_files_in_the_working_directory(tmp_path, monkeypatch):
    # LLNL XBraid writes braid.out.cycle by default: braidnet turns its file output off
    monkeypatch.chdir(tmp_path)
    with Core(ScalarODE(), 0.0, 8.0, 16, max_levels=3, **QUIET) as core:
        core.drive()
        core.drive()
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.parametrize("options", [{"skip": 1}, {"skip": 0}, {"skip": 1, "seq_soln": 1}],
                         ids=["skip", "noskip", "skip-seq"])
def test_warm_restart_never_skips(options):
    # skip acts in the first drive only: a warm restart continues from the current solution (LLNL
    # XBraid would redo the skipped down-cycle at every drive; braidnet sets skip 0 after a drive)
    tol = 1e-12
    with Core(ScalarODE(), 0.0, 8.0, 64, max_levels=3, abs_tol=tol, **QUIET) as core:
        core.set_options(**options)
        first = core.drive()
        assert first.residual_norms[-1] < tol
        core.set_options(skip=1)
        again = core.drive()
    assert again.iterations == 1
    assert 0 <= again.residual_norms[0] < tol


def test_warm_restart_skips_with_skip_every():
    # skip="every" (LLNL XBraid's skip): a warm restart's first iteration does no fine-level work
    # either; injection with f = 0 and the coarse solve make the C-points the coarse solution, so one
    # such iteration leaves a converged solution (skip 1: one full iteration keeps it)
    tol = 1e-12
    exact = sequential_solution(ScalarODE(), 0.0, 8.0, 64)
    for skip, moved in ((1, False), ("every", True)):
        app = ScalarODE()
        app.keep_states(65)
        with Core(app, 0.0, 8.0, 64, max_levels=3, abs_tol=tol, skip=skip, **QUIET) as core:
            first = core.drive()
            assert first.residual_norms[0] == -1.0 and first.residual_norms[-1] < tol
            core.set_options(max_iter=1)
            again = core.drive()
        st = app.states()
        error = max(abs(st[i][0] - exact[i][0]) for i in range(65))
        assert again.iterations == 1 and (again.residual_norms[0] == -1.0) == moved
        assert (error > 1e-3) if moved else (error < 1e-10), (skip, error)


def test_skip_every_on_and_off_between_drives():
    # the mode is read at each drive: every -> 1 (no skip in warm restarts) -> every; a skipped
    # iteration steps less (step_calls: LLNL XBraid does not reset the residual it did not compute)
    with Core(ScalarODE(), 0.0, 8.0, 64, max_levels=3, max_iter=3, abs_tol=0.0, skip="every", **QUIET) as core:
        core.drive()
        steps = [core.step_calls]
        core.set_options(skip=1)
        core.drive()
        steps.append(core.step_calls)
        core.set_options(skip="every")
        core.drive()
        steps.append(core.step_calls)
    assert steps[0] == steps[2] < steps[1], steps


@pytest.mark.parametrize("access_level", [0, 1])
def test_final_fc_relax_shows_relaxed_values(access_level):
    # Two iterations (not converged), then the final access.  With final_fc_relax it shows the
    # F-points as the final F-relaxation would (stepped from the same C-points), each C-point c > 0
    # stepped once more from the F-point before it, and point 0 as it is: computed here by hand from
    # a drive without it.  As in LLNL XBraid, at access level 0 too.
    ntime, cf = 37, 4
    opts = dict(max_levels=3, cfactor=cf, nrelax=0, max_iter=2, abs_tol=0.0)
    _, plain = solve(Heat(), 0.0, 2 * math.pi, ntime, **opts)
    app = Heat()
    app.keep_states(ntime + 1)
    with Core(app, 0.0, 2 * math.pi, ntime, final_fc_relax=True, access_level=access_level, **QUIET,
              **opts) as core:
        core.drive()
        st = app.states()
        assert sorted(st) == list(range(ntime + 1))
        fc = np.array([st[i] for i in range(ntime + 1)])
        # a warm restart continues from the relaxed C-points: its first residual, by hand
        r2 = 0.0
        for c in range(cf, ntime + 1, cf):
            w = fc[c - cf].copy()
            for k in range(c - cf + 1, c + 1):
                w = _heat_step(app, w, k, ntime)
            r2 += float(np.sum((fc[c] - w) ** 2))
        core.set_options(max_iter=1, skip=0)
        warm = core.drive()
    want = plain.copy()
    for c in range(cf, ntime + 1, cf):
        want[c] = _heat_step(Heat(), plain[c - 1].copy(), c, ntime)
    assert np.max(np.abs(want[cf::cf] - plain[cf::cf])) > 1e-3      # the C-points do move
    assert_allclose(fc, want, rtol=1e-13, atol=1e-14)
    assert warm.residual_norms[0] == pytest.approx(math.sqrt(r2), rel=1e-10)


def _heat_step(app, u, k, ntime):
    """The Heat app's step from fine point k-1 to k (times as the cores compute them)."""
    t0, t1 = (0.0 + (i / ntime) * (2 * math.pi - 0.0) for i in (k - 1, k))
    app.step(u, u, None, _Times(t0, t1))
    return u


class _Times:
    """A stand-in for a StepStatus: the step's times only."""
    def __init__(self, tstart, tstop):
        self.tstart, self.tstop = tstart, tstop


def test_nan_residual_raises_diverged():
    from braidnet.braid import ERROR_DIVERGED

    class Blowup(ScalarODE):
        def step(self, u, ustop, fstop, status):
            super().step(u, ustop, fstop, status)
            if status.iter >= 1 and status.level == 0:
                u[0] = math.nan

    with Core(Blowup(), 0.0, 8.0, 16, max_levels=3, abs_tol=1e-12, **QUIET) as core:
        with pytest.raises(BraidError) as info:
            core.drive()
    assert info.value.code == ERROR_DIVERGED


def test_closed_core():
    core = Core(ScalarApp(), 0.0, 8.0, 16, **QUIET)
    core.close()
    core.close()                  # idempotent
    with pytest.raises(ValueError, match="closed"):
        core.drive()
    with pytest.raises(ValueError, match="closed"):
        core.iterations


# ---------------------------------------------------------------------------------------------
# check_app
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("app", [ScalarApp(), HeatApp(), ResNet4App(), ScalarODE(), Heat(), ResNet4()],
                         ids=lambda a: type(a).__name__)
def test_check_app_accepts_the_reference_apps(app):
    check_app(app, 0.0)


class _Good(ResNet4):
    pass


class _SumNotInPlace(ResNet4):
    def sum(self, alpha, x, beta, y):
        y = alpha * x + beta * y      # rebinds y: the core's vector never changes  # noqa: F841


class _BadNorm(ResNet4):
    def norm(self, u):
        return 1.0


class _BadUnpack(ResNet4):
    def pack(self, u):
        return u.tobytes()

    def unpack(self, data):
        return np.zeros(4)


class _NaNNorm(ResNet4):
    def norm(self, u):
        return float("nan")


class _CloneRaises(ResNet4):
    def clone(self, u):
        raise AppFailure("no clones")


@pytest.mark.parametrize("app,exc,match", [
    (_SumNotInPlace(), AssertionError, r"check_app: sum\(0, x, 1, y\)|check_app: clone: u - clone\(u\)"),
    (_BadNorm(), AssertionError, r"check_app: .*expected a zero vector"),
    (_BadUnpack(), AssertionError, r"check_app: pack/unpack round trip"),
    (_NaNNorm(), AssertionError, r"check_app: norm\(init\(0\.0\)\) is nan"),
    (_CloneRaises(), AppFailure, r"no clones"),
    (object(), TypeError, r"needs a callable init\(\) method"),
], ids=["sum-not-in-place", "constant-norm", "bad-unpack", "nan-norm", "clone-raises", "no-methods"])
def test_check_app_names_what_failed(app, exc, match):
    with pytest.raises(exc, match=match):
        check_app(app, 0.0)


def test_check_app_with_every_optional_method():
    class Full(_Good):
        def clone(self, u):
            return u.copy()

        def sum(self, alpha, x, beta, y):
            y *= beta
            y += alpha * x

        def norm(self, u):
            return float(np.abs(u).max())

        def bufsize(self):
            return 64

        def pack(self, u):
            return u.astype(np.float32).astype(np.float64).tobytes()    # exact for these values

        def unpack(self, data):
            return np.frombuffer(data[:32], dtype=np.float64)

    check_app(Full(), 0.0)


# ---------------------------------------------------------------------------------------------
# VectorApp helpers
# ---------------------------------------------------------------------------------------------

def test_vector_app_helpers():
    app = HeatApp()
    assert app.size == 33
    u0 = app.init_vector(0.0)
    assert_allclose(u0, Heat().init(0.0), rtol=0, atol=1e-15)
    assert_array_equal(app.init_vector(1.0), np.zeros(33))
    assert app.norm_vector(u0) == pytest.approx(np.linalg.norm(u0), rel=1e-14)
    u1 = app.step_vector(u0, 0.0, 0.1)
    v = Heat().init(0.0)
    Heat().step(v, v, None, StepLike(0.0, 0.1))
    assert_allclose(u1, v, rtol=0, atol=1e-15)
    with pytest.raises(ValueError, match="u has 4 entries, the app's vectors 33"):
        app.step_vector(np.zeros(4), 0.0, 0.1)
    with pytest.raises(ValueError, match="must set step_fn and init_fn|size must be >= 1"):
        VectorApp().init_vector(0.0)


class StepLike:
    def __init__(self, tstart, tstop):
        self.tstart, self.tstop = tstart, tstop


# ---------------------------------------------------------------------------------------------
# memory: many create/drive/destroy cycles
# ---------------------------------------------------------------------------------------------

def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc/self/statm (Linux)")
@pytest.mark.parametrize("fast,cycles", [(True, 3000), (False, 300)], ids=["fast", "python"])
def test_many_core_cycles_do_not_grow_memory(fast, cycles):
    def batch(n):
        for _ in range(n):
            app = ResNet4App() if fast else ResNet4()
            core = Core(app, 0.0, 4.0, 32, max_levels=3, cfactor=2, abs_tol=1e-10, storage=0, **QUIET)
            core.drive()
            core.drive()
            core.close()
        gc.collect()

    batch(cycles // 4)                  # warm up allocator pools and caches
    before = _rss_bytes()
    batch(cycles)
    grown = _rss_bytes() - before
    # a leak of one 4-double vector per cycle would be >= 3000 * 48 bytes; allow allocator noise
    assert grown < 128 * 1024, f"RSS grew by {grown / 1024:.0f} KiB over {cycles} cycles"


# ---- Python apps: the default clone/sum/norm/pack/unpack run in C on the float64 buffers ----

class _Decay(ScalarODE):
    """u' = -c u elementwise on an array of any shape (backward Euler); the C paths' test vectors."""

    def __init__(self, shape=(3, 7)) -> None:
        super().__init__()
        self.shape = tuple(shape)
        n = int(np.prod(self.shape))
        self.rates = np.linspace(0.5, 2.0, n).reshape(self.shape)
        self.u0 = np.cos(np.arange(n) * 0.37).reshape(self.shape)

    def init(self, t):
        return self.u0.copy() if t == self.tstart else np.full(self.shape, 0.3)

    def step(self, u, ustop, fstop, status):
        np.divide(u, 1.0 + (status.tstop - status.tstart) * self.rates, out=u)


class _NumpyDefaults:
    """What the wrapper's defaults did in numpy before they ran in C, as explicit app methods."""

    def clone(self, u):
        return np.array(u, copy=True)

    def sum(self, alpha, x, beta, y):
        if beta == 0.0:
            np.multiply(x, alpha, out=y)
        else:
            ax = alpha * x
            np.multiply(y, beta, out=y)
            y += ax

    def norm(self, u):
        return np.linalg.norm(np.ravel(u))

    def pack(self, u):
        return np.ascontiguousarray(u).reshape(-1).view(np.uint8)

    def unpack(self, data):
        return np.frombuffer(data, dtype=np.float64).reshape(np.shape(self.init(self.tstart))).copy()


class _FortranClones:
    """clone gives Fortran-ordered arrays: the default sum/norm/pack then take the numpy path."""

    def clone(self, u):
        return np.asfortranarray(u).copy(order="F")


def _default_ops_apps():
    """(name, plain app, the same app with explicit numpy methods, with Fortran clones) triples."""
    out = []
    for name, make in [("scalar", ScalarODE), ("heat", Heat), ("resnet", ResNet4),
                       ("block", lambda: _Decay((3, 7))), ("long", lambda: _Decay((613,)))]:
        base = type(make())
        explicit = type("Explicit" + base.__name__, (_NumpyDefaults, base), {})
        fortran = type("Fortran" + base.__name__, (_FortranClones, base), {})
        if base is _Decay:
            shape = make().shape
            out.append((name, make, lambda s=shape, c=explicit: c(s), lambda s=shape, c=fortran: c(s)))
        else:
            out.append((name, make, explicit, fortran))
    return out


def _default_ops_solve(make, comm, max_levels, cfactor, ntime=65):
    app = make()
    with Core(app, 0.0, 1.0, ntime, comm=comm, print_level=0, max_levels=max_levels, cfactor=cfactor,
              rel_tol=1e-13, max_iter=25) as core:
        core.drive()
        hist = [float(r).hex() for r in core.residual_norms]
    fin = app.final
    return hist, None if fin is None else (float(fin[0]).hex(), [float(x).hex() for x in np.ravel(fin[1])])


def default_ops_report(comm) -> list:
    """Every (app, hierarchy) where the C defaults, the explicit numpy methods and the numpy fallback
    (Fortran clones) give histories or final states that differ in any bit (empty: all identical)."""
    bad = []
    for name, plain, explicit, fortran in _default_ops_apps():
        for max_levels, cfactor in [(2, 2), (2, 4), (14, 2), (14, 4)]:
            ref = _default_ops_solve(plain, comm, max_levels, cfactor)
            for kind, make in [("explicit", explicit), ("fortran", fortran)]:
                if _default_ops_solve(make, comm, max_levels, cfactor) != ref:
                    bad.append((name, kind, max_levels, cfactor))
    return bad


def test_default_vector_ops_in_c_are_bit_identical_to_numpy(comm):
    assert default_ops_report(comm) == []


class _NumpyWatch:
    """Stands for numpy in braidnet.braid's globals and records which attributes the wrapper reads."""

    def __init__(self, real):
        self._real, self.used = real, set()

    def __getattr__(self, name):
        self.used.add(name)
        return getattr(self._real, name)


@pytest.mark.parametrize("make", [ScalarODE, Heat, lambda: _Decay((3, 7))])
def test_default_vector_ops_call_no_numpy(make, monkeypatch):
    import braidnet.braid as braid_module
    app = make()
    core = Core(app, 0.0, 1.0, 64, comm=MPI.COMM_SELF, print_level=0, max_levels=14, cfactor=2,
                rel_tol=1e-12)
    core.drive()                # the first drive also settles the message size once (numpy)
    watch = _NumpyWatch(np)
    monkeypatch.setattr(braid_module, "np", watch)
    core.drive()
    monkeypatch.undo()
    assert core.step_calls > 0
    core.close()
    # init's isinstance check reads np.ndarray; clone/sum/norm (and pack/unpack) read nothing
    assert watch.used <= {"ndarray"}, watch.used


def test_default_vector_ops_on_two_ranks(tmp_path):
    import mpi_launch
    script = tmp_path / "default_ops.py"
    script.write_text(
        "import json, os, sys\n"
        f"sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r})\n"
        "from mpi4py import MPI\n"
        "import test_braid_core as t\n"
        "bad = t.default_ops_report(MPI.COMM_WORLD)\n"
        "bad = MPI.COMM_WORLD.allgather(bad)\n"
        "if MPI.COMM_WORLD.rank == 0:\n"
        "    print(json.dumps(bad))\n")
    proc = mpi_launch.check(mpi_launch.run(2, [script], 300))
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == [[], []]
