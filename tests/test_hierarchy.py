"""Python's view of the time grids against what the core really does, on 1-7 ranks.

The level hierarchy and the block distribution are decided by the C core alone (xbraid/grid.c);
``Core.level_strides``, ``Core.distributions`` and ParallelNetwork (``levels``, ``point_range``,
``adjoint_range``) only report them.  Here a Python app records every step of a real solve (level,
fine indices of tstart and tstop), and the test checks the reports against it: per level the
stride of the steps, per rank the fine points it stepped into.  Odd step counts, int and per-level
cfactor, min_coarse and max_levels; one ``mpiexec`` launch per rank count (oversubscribed).
"""
from __future__ import annotations

import pytest

import mpi_launch

pytestmark = pytest.mark.mpi

TIMEOUT = 240      # seconds per launch; a hang fails the test
OPTIONS = [
    {},
    {"cfactor": 3},
    {"cfactor": [4, 2], "min_coarse": 1},
    {"cfactor": [2, 3, 4], "max_levels": 3},
    {"max_levels": 2, "cfactor": 5},
    {"min_coarse": 4},
]
CASES = [(ntime, options) for ntime in (7, 13, 33, 63) for options in OPTIONS]


def _span(lo: int, hi: int, step: int = 1) -> list:
    """The multiples of step in [max(lo, 1), hi]: the points a rank owning [lo, hi] steps into."""
    first = -(-max(lo, 1) // step) * step
    return list(range(first, hi + 1, step))


def _check_core(ranks: list, claimed_key: str, seen_key: str, ntime: int, where: str, reversed_ranks: bool) -> None:
    """One core's reports (identical on every rank) against the steps its solve made.  ``ranks`` is
    indexed by world rank; the core's communicator has world rank r as rank r, or as P-1-r."""
    P = len(ranks)
    ranks = ranks[::-1] if reversed_ranks else ranks      # now indexed by rank of the core's comm
    claimed = ranks[0][claimed_key]
    for q, res in enumerate(ranks):
        mine = res[claimed_key]
        assert (mine["strides"], mine["distributions"]) == (claimed["strides"], claimed["distributions"]), where
        assert mine["distribution"] == claimed["distributions"][q], f"{where}: rank {q} of {P}"
    strides, dists = claimed["strides"], claimed["distributions"]
    assert strides[0] == 1 and claimed["strides_after"] == strides, where
    assert claimed["levels_built"] == len(strides), where
    # the stride of every step on level l is strides[l], and every level was stepped on
    seen = [res[seen_key] for res in ranks]
    levels = sorted({int(level) for s in seen for level in s})
    assert levels == list(range(len(strides))), f"{where}: stepped on levels {levels}, strides {strides}"
    for level in levels:
        got = sorted({st for s in seen for st in s.get(str(level), {}).get("strides", [])})
        assert got == [strides[level]], f"{where}: level {level} steps span {got}, reported {strides[level]}"
    # the distribution covers 0..ntime in rank order, and a rank steps only into points it owns:
    # on level 0 into every one of them, on level l into points of stride strides[l]
    covered = [i for lo, hi in dists for i in range(lo, hi + 1)]
    assert covered == list(range(ntime + 1)), f"{where}: distributions {dists}"
    for q, s in enumerate(seen):
        lo, hi = dists[q]
        assert s.get("0", {}).get("into", []) == _span(lo, hi), f"{where}: rank {q} owns {dists[q]}"
        for level, d in s.items():
            stride = strides[int(level)]
            assert set(d["into"]) <= set(_span(lo, hi, stride)), f"{where}: rank {q} level {level}"


@pytest.mark.parametrize("nprocs", range(1, 8))
def test_reported_hierarchy_and_distribution_are_the_solves(nprocs, tmp_path):
    calls = [("cases_hierarchy.hierarchy", {"ntime": n, "options": o}) for n, o in CASES]
    results = mpi_launch.run_cases(nprocs, calls, tmp_path, TIMEOUT)
    nlevels = set()
    for (ntime, options), ranks in zip(CASES, results):
        where = f"P={nprocs} ntime={ntime} options={options}"
        assert [res["rank"] for res in ranks] == list(range(nprocs)), where
        _check_core(ranks, "primal", "primal_seen", ntime, where + " (primal)", False)
        # the adjoint core, on the communicator with reversed ranks (as ParallelNetwork's)
        _check_core(ranks, "adjoint", "adjoint_seen", ntime, where + " (adjoint)", True)
        strides = ranks[0]["primal"]["strides"]
        assert ranks[0]["adjoint"]["strides"] == strides, where
        nlevels.add(len(strides))
        # ParallelNetwork plans with exactly what the cores do
        for res in ranks:
            r, net = res["rank"], res["network"]
            assert net["levels"] == strides, where
            assert net["point_range"] == ranks[0]["primal"]["distributions"][r], where
            # world rank r is adjoint rank P-1-r: its adjoint points are those it stepped into
            alo, ahi = net["adjoint_range"]
            assert res["adjoint_seen"].get("0", {}).get("into", []) == _span(alo, ahi), where
            assert net["adjoint_range"] == ranks[0]["adjoint"]["distributions"][nprocs - 1 - r], where
    # the cases cover one to many levels
    assert min(nlevels) <= 2 and max(nlevels) >= 5, nlevels
