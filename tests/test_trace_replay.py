"""The bundled core's event trace (Core.set_trace, ParallelNetwork.set_trace) and the discrete-event
replay of scripts/replay_scaling.py, with the performance model of scripts/perf_model.py.

The trace tests launch ``mpiexec -n 2`` and ``-n 4`` (tests/cases_trace.py) and check what the trace
must hold whatever the machine: the step events are exactly the core's step count, every send is
received on its peer (in order, with its bytes), and tracing leaves the results bit for bit unchanged.
The replay tests use hand-made traces whose critical path is computed by hand.  No timings.
"""
from __future__ import annotations

import os
import sys
from collections import defaultdict

import pytest

import mpi_launch
from braidnet import braid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "scripts"))

import perf_model          # noqa: E402
import replay_scaling as rs  # noqa: E402

TIMEOUT = 240
needs_trace = pytest.mark.skipif(not braid.TRACE_AVAILABLE,
                                 reason="the event trace is an extension of braidnet's bundled core")
K = braid.TRACE_KINDS


# ---- the trace on real runs ------------------------------------------------------------------

@pytest.fixture(scope="module", params=[2, 4])
def traced(request, tmp_path_factory):
    if not braid.TRACE_AVAILABLE:
        pytest.skip("the event trace is an extension of braidnet's bundled core")
    P = request.param
    cases = [("cases_trace.core_trace", dict(problem="heat", ntime=64, drives=2,
                                             options=dict(max_levels=3, cfactor=4, nrelax=1, abs_tol=0.0,
                                                          max_iter=3))),
             ("cases_trace.core_trace", dict(problem="scalar", ntime=40, drives=1,
                                             options=dict(max_levels=4, cfactor=2, nrelax=0, rel_tol=1e-8,
                                                          fmg=True))),
             ("cases_trace.network", dict(layers=16, width=3, batch=7))]
    return P, mpi_launch.run_cases(P, cases, tmp_path_factory.mktemp(f"trace{P}"), TIMEOUT)


@needs_trace
def test_steps_are_the_core_step_count(traced):
    P, values = traced
    for ranks in values[:2]:
        for r in ranks:
            ev = r["events"]
            assert r["before"] == 0
            assert len(r["steps"]) == max(ev["drive"]) + 1      # the drive after set_trace(False) is not in it
            for d, n in enumerate(r["steps"]):
                got = sum(1 for k, dr in zip(ev["kind"], ev["drive"]) if k == K["step"] and dr == d)
                assert got == n > 0, (r["rank"], d)


@needs_trace
def test_every_send_is_received_in_order_on_its_peer(traced):
    P, values = traced
    for ranks in values[:2]:
        sent, received = defaultdict(list), defaultdict(list)
        reductions = []
        for r in ranks:
            ev = r["events"]
            rows = list(zip(ev["kind"], ev["level"], ev["peer"], ev["bytes"]))
            for k, level, peer, nbytes in rows:
                if k == K["send"]:
                    assert 0 <= peer < P and peer != r["rank"]
                    sent[(r["rank"], peer, level)].append(nbytes)
                elif k == K["recv"]:
                    received[(peer, r["rank"], level)].append(nbytes)
            reductions.append(sum(1 for row in rows if row[0] == K["reduce"]))
        assert sent and sent == received
        assert len(set(reductions)) == 1 and reductions[0] > 0      # every rank joins every reduction


@needs_trace
def test_tracing_leaves_results_bit_for_bit_unchanged(traced):
    P, values = traced
    for r in values[2]:
        assert r["same"] is True
        assert r["untraced"] == {"primal": 0, "adjoint": 0}        # off: nothing recorded
        assert r["drives"] == {"primal": [0, 1], "adjoint": [0, 1]}
        for c in ("primal", "adjoint"):
            assert r["kinds"]["step"][c] > 0 and r["kinds"]["reduce"][c] > 0


@needs_trace
def test_set_trace_checks_its_argument():
    from mpi4py import MPI
    from braidnet.refproblems import reference_problem

    app, t0, t1 = reference_problem("scalar", 8)
    with braid.Core(app, t0, t1, 8, MPI.COMM_SELF, max_levels=2) as core:
        assert core.trace.size == 0
        with pytest.raises(ValueError, match="on must be True or False, got 2"):
            core.set_trace(2)
        core.set_trace(True)
        core.drive()
        n = core.trace.size
        assert n == core.step_calls + int((core.trace["kind"] == K["reduce"]).sum())  # one rank: no messages
        core.set_trace(True)                     # a new trace
        assert core.trace.size == 0


@pytest.mark.skipif(braid.TRACE_AVAILABLE, reason="only against LLNL XBraid, which has no trace")
def test_llnl_core_refuses_the_trace():
    from mpi4py import MPI
    from braidnet.refproblems import reference_problem

    app, t0, t1 = reference_problem("scalar", 8)
    with braid.Core(app, t0, t1, 8, MPI.COMM_SELF, max_levels=2) as core:
        with pytest.raises(NotImplementedError, match="bundled MGRIT core"):
            core.set_trace(True)


# ---- the replay ------------------------------------------------------------------------------

def _record(ranks: list, layers: int = 4) -> dict:
    """A trace record as worker_trace returns it, from per-rank core event lists (primal only)."""
    return {"layers": layers, "ls_trials": 1, "strides": [1], "rank_records": [
        {"primal": [tuple(e) + (0, 0) for e in ev], "adjoint": [], "log": [["drive", "primal"]]}
        for ev in ranks]}


def test_one_rank_replays_to_the_sum_of_its_step_costs():
    S, R = K["step"], K["reduce"]
    rec = _record([[(S, 0, i, -1, 0) for i in range(1, 6)] + [(R, -1, -1, -1, 16)] +
                   [(S, 1, i, -1, 0) for i in range(1, 3)]])
    rec["rank_records"][0]["log"] += [["sum", 8], ["gradient", 3]]
    progs, ncoll = rs.rank_programs(rec, {"primal": 0.25, "adjoint": 9.0, "gradient": 0.5}, 1.0)
    assert ncoll == 2
    out = rs.replay(progs, latency=7.0, bandwidth=1.0)       # one rank: reductions cost no hop
    assert out["time"] == pytest.approx(7 * 0.25 + 3 * 0.5)
    assert out["messages"] == 0 and out["collectives"] == 2


def test_two_ranks_replay_to_the_hand_computed_critical_path():
    S, SE, RE, R = K["step"], K["send"], K["recv"], K["reduce"]
    # rank 0: 3 steps, send 108 bytes (8 header + 100) to rank 1, 1 step, reduction
    # rank 1: 1 step, wait for rank 0's message, 2 steps, reduction, 1 step
    rec = _record([[(S, 0, 1, -1, 0), (S, 0, 2, -1, 0), (S, 0, 3, -1, 0), (SE, 0, -1, 1, 108),
                    (S, 0, 4, -1, 0), (R, -1, -1, -1, 16)],
                   [(S, 0, 5, -1, 0), (RE, 0, -1, 0, 108), (S, 0, 6, -1, 0), (S, 0, 7, -1, 0),
                    (R, -1, -1, -1, 16), (S, 0, 8, -1, 0)]])
    c, lat, bw = 1.0, 0.5, 100.0
    # payloads scaled by 2: the message is 8 + 200 bytes, 2.08 s on the wire
    progs, _ = rs.rank_programs(rec, {"primal": c, "adjoint": 0.0, "gradient": 0.0}, 2.0)
    out = rs.replay(progs, latency=lat, bandwidth=bw)
    arrival = 3 * c + lat + 208 / bw            # rank 0 sends after 3 steps
    r1 = max(1 * c, arrival) + 2 * c            # rank 1 waits for it, then 2 steps
    r0 = 4 * c
    end = max(r0, r1) + 1 * (lat + 16 / bw)     # reduction: ceil(log2 2) = 1 hop
    assert out["clocks"] == pytest.approx([end, end + c])
    assert out["time"] == pytest.approx(end + c)
    assert out["wait"][1] == pytest.approx((arrival - c) + (end - r1))
    assert out["messages"] == 1 and out["collectives"] == 1


def test_a_receive_without_its_send_is_a_deadlock():
    RE = K["recv"]
    progs, _ = rs.rank_programs(_record([[(RE, 0, -1, 1, 8)], []]), {"primal": 1.0, "adjoint": 1.0,
                                                                     "gradient": 1.0}, 1.0)
    with pytest.raises(RuntimeError, match="deadlock"):
        rs.replay(progs, 0.0)
    with pytest.raises(ValueError, match="latency must be >= 0"):
        rs.replay(progs, -1.0)


# ---- the model -------------------------------------------------------------------------------

def test_corrected_model_on_one_rank_is_the_serial_work():
    par = perf_model.deep_par(64, 1)
    assert (par["levels"], par["coarse_intervals"]) == (3, 4)
    N, n = perf_model.hierarchy(par)
    assert (N, n) == (64, [64, 16, 4])
    steps, hops = perf_model.solve_terms(N, n, 1, 2)
    # per iteration: level 0 FC + residual sweeps (64 + 64), level 1 rhs, FC, residual, interpolation
    # (16 + 16 + 16 + 12), level 2 rhs and solve (4 + 4); then the final F-relaxation (48)
    assert steps == 2 * (128 + 60 + 8) + 48 and hops == 0
    assert perf_model.critical_hops(par, 1) == 0


def test_corrected_model_keeps_an_interval_per_sweep_and_counts_reductions():
    par = perf_model.deep_par(64, 1)
    # 64 ranks: every sweep still steps a whole interval (4 points) on level 0
    s64 = perf_model.critical_steps(par, 64)
    s16 = perf_model.critical_steps(par, 16)
    assert s64 < s16 * 1.1 and s64 > perf_model.published_terms(dict(par, weighted_steps=1448), 64, 64)[0]
    h = perf_model.critical_hops(par, 64)
    assert h >= perf_model.reductions(par) * 6
    assert perf_model.allreduce_time(4, 1000.0, 1e-5, 1e9) == pytest.approx(2 * (1e-5 + 1e-6))
    assert perf_model.allreduce_time(1, 1000.0, 1e-5, 1e9) == 0.0


def test_best_split_and_bad_arguments():
    par = perf_model.deep_par(1024, 1)
    costs = {"primal": 1e-4, "adjoint": 2e-4, "gradient": 2e-4}
    best = perf_model.best_split(par, 64, 2e-5, 1e10, 8 * 8 * 5000, costs, 8.0 * 1024 * 72)
    assert best["ranks"] * best["groups"] == 64
    assert best["seconds"] == min(best["all"].values())
    with pytest.raises(ValueError, match="total must be a power of two >= 1, got 48"):
        perf_model.best_split(par, 48, 2e-5, 1e10, 1.0, costs, 1.0)
    with pytest.raises(ValueError, match="ranks must be an integer >= 1, got 0"):
        perf_model.critical_steps(par, 0)
    with pytest.raises(ValueError, match="groups must be >= 1, got 0"):
        perf_model.allreduce_time(0, 1.0, 1.0, 1.0)
