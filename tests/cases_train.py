"""Faults injected into ``braidnet train`` under mpiexec, for tests/test_train.py.

``tests/mpi_entry.py --fault FAULT_JSON -- train CONFIG.toml [--set ...] [--out DIR]`` (launched by
:func:`mpi_launch.run_cli`) calls :func:`install` on every rank and then :func:`braidnet.cli.main`.
FAULT_JSON is one object:

- ``{"raise_on_rank": r, "at_gradient": m}``: rank r raises ``RuntimeError("injected failure ...")``
  inside its m-th adjoint solve (1-based; every other rank goes on into the collective that follows);
- ``{"nan_from_gradient": m}``: on every rank, once m adjoint solves have run, every primal solve
  reports a NaN objective (as a solve on diverging weights would), so the line search of the next
  step fails and the training loop must stop with ``TrainingDiverged``;
- ``{"growing_from_gradient": m}``: once m adjoint solves have run, every primal solve reports an
  objective larger than the one before (around 1e61): every line search fails, the run stalls;
- ``{"kill_in_checkpoint": n}``: rank 0 kills itself (SIGKILL, no clean-up) in the middle of writing
  its n-th checkpoint: half of the file is written, nothing renamed, the lock left behind.

Iteration k's gradient is the (k+1)-th adjoint solve (one at iteration 0, one per accepted step).
"""
from __future__ import annotations


def install(fault: dict, rank: int) -> None:
    """Wrap ParallelNetwork.forward/backward as ``fault`` says (module text)."""
    from braidnet.parallel import ParallelNetwork

    forward, backward = ParallelNetwork.forward, ParallelNetwork.backward
    calls = {"backward": 0}

    def counted_backward(self, *args, **kwargs):
        calls["backward"] += 1
        if fault.get("raise_on_rank") == rank and calls["backward"] == fault.get("at_gradient"):
            raise RuntimeError(f"injected failure on rank {rank} in adjoint solve {calls['backward']}")
        return backward(self, *args, **kwargs)

    def nan_forward(self, *args, **kwargs):
        info = forward(self, *args, **kwargs)
        if "nan_from_gradient" in fault and calls["backward"] >= fault["nan_from_gradient"]:
            info = {**info, "objective": float("nan"), "loss": float("nan")}
        if "growing_from_gradient" in fault and calls["backward"] >= fault["growing_from_gradient"]:
            calls["grown"] = calls.get("grown", 0) + 1
            info = {**info, "objective": info["objective"] + 1e61 * calls["grown"]}
        return info

    ParallelNetwork.backward = counted_backward
    ParallelNetwork.forward = nan_forward
    if "kill_in_checkpoint" in fault and rank == 0:
        _kill_in_checkpoint(fault["kill_in_checkpoint"])


def _kill_in_checkpoint(n: int) -> None:
    import os
    import signal

    from braidnet import runfolder

    save, calls = runfolder.save_npz, {"n": 0}

    def dying(path, arrays):
        calls["n"] += 1
        if os.path.basename(path) == "checkpoint.npz":
            if calls["n"] == n:
                with open(path + ".tmp", "wb") as f:      # as an interrupted write leaves it
                    f.write(b"PK\x03\x04 half a checkpoint")
                os.kill(os.getpid(), signal.SIGKILL)
        save(path, arrays)

    runfolder.save_npz = dying
