"""Work units: the cost of training, measured so that nested and non-nested runs compare.

Two units, both "one non-nested optimisation iteration on the finest level" (the paper's unit):

* **wall clock** (history column ``work_units``): elapsed training time divided by the average time of
  one such iteration, ``unit_seconds``;
* **counted** (``work_units_counted``): cost-weighted layer steps (column ``layer_steps``) divided by
  those of one such iteration, ``unit_steps``.  Counted are the steps of the optimisation: every
  primal solve (each line-search trial, and the first evaluation on every level), every adjoint solve,
  and the layer gradients assembled after it, on every MGRIT level, summed over the ranks.  Excluded:
  validation solves (monitoring; they depend on ``output.validate_every``), the opening and classifier
  layers (a fixed cost per solve, small next to N layers), and the calibration below.  A layer step costs
  the same on every level and at every depth (width and batch are fixed), and is weighted by its GEMM
  count: a primal step (W u) 1, an adjoint step (recomputes W u, then applies W^T) 2, a layer gradient
  (recomputes W u, then D u^T) 2.  The result is an integer, the same on any number of ranks as long as
  the solves take the same MGRIT iterations.

Where the unit comes from:

* a **non-nested** run is its own reference: at the end its units are its own averages, so row k of a
  run of n iterations gets ``n * layer_steps_k / layer_steps_n`` (and the same with times): its last
  row is exactly n in both units (the rows written while it runs carry k until then);
* a **nested** run first times and counts ``nested.calibrate`` finest-level One-shot iterations from
  the finest network's initial weights (the first iterations of the matching non-nested run), unless
  ``nested.work_unit_seconds`` / ``nested.work_unit_steps`` give the units.
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Optional

# cost of one layer step, in GEMMs of a (width x width) by (width x batch) product (module text)
COST = {"primal": 1, "adjoint": 2, "gradient": 2, "validation": 0}


def cost(counts: Dict[str, int]) -> int:
    """Cost-weighted layer steps of a :meth:`ParallelNetwork.step_counts` dict (validation excluded)."""
    return sum(COST[k] * int(v) for k, v in counts.items())


class WorkCounter:
    """Cumulative cost of a run over the networks of its levels (one at a time)."""

    def __init__(self, done: int = 0) -> None:
        self.done = int(done)      # cost of the networks closed so far (and of a resumed run's past)

    def current(self, pn) -> int:
        """Total cost so far, with ``pn`` the open network (collective)."""
        return self.done + cost(pn.step_counts())

    def close(self, pn) -> None:
        """Add ``pn``'s cost before it is closed (collective)."""
        self.done += cost(pn.step_counts())


def units(value: float, unit: Optional[float]) -> float:
    """value / unit, or NaN without a unit."""
    return value / unit if unit and unit > 0 else float("nan")


def self_normalise(history: List[Dict[str, Any]]) -> None:
    """Give a non-nested run's rows its own units in place (module text): the last row gets exactly
    its iteration count n in ``work_units`` and ``work_units_counted``."""
    if not history:
        return
    n = int(history[-1]["iteration"])
    t_n, s_n = float(history[-1]["time"]), int(history[-1]["layer_steps"])
    for row in history:
        # n * (x_k / x_n): exact at k = n (x_n / x_n = 1), whatever the rounding of the ratio elsewhere
        row["work_units"] = n * (float(row["time"]) / t_n) if t_n > 0 else float(row["iteration"])
        row["work_units_counted"] = n * (int(row["layer_steps"]) / s_n) if s_n > 0 else float("nan")


def unit_summary(unit_seconds: Optional[float], unit_steps: Optional[float]) -> str:
    """One line for the progress output."""
    parts = []
    if unit_seconds and math.isfinite(unit_seconds):
        parts.append(f"{unit_seconds:.4g} s")
    if unit_steps and math.isfinite(unit_steps):
        parts.append(f"{unit_steps:.6g} weighted layer steps")
    return "work unit = " + (" = ".join(parts) if parts else "(none)")
