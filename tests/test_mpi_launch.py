"""The MPI test protocol (tests/mpi_launch.py, tests/mpi_entry.py): results, failures and hangs."""
from __future__ import annotations

import math
import os
import time

import pytest

import mpi_launch

pytestmark = pytest.mark.mpi


def test_every_rank_returns_its_value_per_case(tmp_path):
    cases = [("cases_launch.echo", {"value": "a"}), ("cases_launch.echo", {"value": [1, {"b": None}]})]
    values = mpi_launch.run_cases(3, cases, tmp_path, timeout=60)
    assert len(values) == 2
    for (_, kwargs), ranks in zip(cases, values):
        assert [r["rank"] for r in ranks] == [0, 1, 2]
        for rank, r in enumerate(ranks):
            assert r["size"] == 3 and r["value"] == kwargs["value"]
            # NaN and infinities travel as Python's json writes them; numpy values and tuples as lists/numbers
            assert math.isnan(r["nan"]) and r["inf"] == -math.inf
            assert r["array"] == [0.0, rank, 2.0 * rank] and r["int64"] == 7 and r["pair"] == [1, 2]


def test_an_exception_on_one_rank_fails_the_test_with_its_traceback(tmp_path):
    t0 = time.monotonic()
    with pytest.raises(pytest.fail.Exception) as failed:
        mpi_launch.run_cases(2, [("cases_launch.raise_on", {"rank": 1})], tmp_path, timeout=60)
    message = str(failed.value)
    assert "exited with" in message, message
    assert "rank 1: case 0 (cases_launch.raise_on) failed" in message and "Traceback" in message, message
    assert "ZeroDivisionError: raised on purpose on rank 1" in message, message
    assert time.monotonic() - t0 < 50, "the other rank was not taken down"


def test_a_hang_fails_the_test_and_leaves_no_process(tmp_path):
    pids = tmp_path / "pids"
    pids.mkdir()
    with pytest.raises(pytest.fail.Exception, match="did not finish within 10 s"):
        mpi_launch.run_cases(2, [("cases_launch.hang_on", {"rank": 1, "pid_dir": str(pids)})], tmp_path,
                             timeout=10)
    ranks = [int(p.read_text()) for p in pids.iterdir()]
    assert len(ranks) == 2
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in ranks) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(pid) for pid in ranks), "a rank outlived its timed-out launch"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (not yet reaped by its parent) counts as gone
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False
    return True
