"""Faults injected into ``braidnet train`` under mpiexec, for tests/test_train.py.

``tests/mpi_entry.py --fault FAULT_JSON -- train CONFIG.toml [--set ...] [--out DIR]`` (launched by
:func:`mpi_launch.run_cli`) calls :func:`install` on every rank and then :func:`braidnet.cli.main`.
FAULT_JSON is one object:

- ``{"raise_on_rank": r, "at_gradient": m}``: rank r raises ``RuntimeError("injected failure ...")``
  inside its m-th adjoint solve (1-based; every other rank goes on into the collective that follows);
- ``{"nan_from_gradient": m}``: on every rank, once m adjoint solves have run, every primal solve
  reports a NaN objective (as a solve on diverging weights would), so the line search of the next
  step fails and the training loop must stop with ``TrainingDiverged``.

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
        return info

    ParallelNetwork.backward = counted_backward
    ParallelNetwork.forward = nan_forward
