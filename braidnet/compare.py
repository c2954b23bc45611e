"""Compare training runs by what they reached and the work they needed (``braidnet compare A B``).

A run is an output folder of :func:`braidnet.train.train`: its ``history.csv`` (one row per
iteration) and, when the run finished, ``weights.npz`` (with the final validation accuracy of an
exact forward solve).  Work is measured in work units (:mod:`braidnet.work`): ``wall`` (column
``work_units``) or ``counted`` (``work_units_counted``).

A nested run's units rest on its calibration (a few finest-level iterations: short, and on a busy
machine noisy in wall-clock time); when one of the compared runs is non-nested, :func:`common_unit`
re-expresses every run's work in that run's own unit (its average weighted layer steps, or seconds,
per iteration), so that both sides use exactly the same unit.
"""
from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np

from braidnet.runfolder import HISTORY_TEXT

UNIT_COLUMNS = {"wall": "work_units", "counted": "work_units_counted"}


@dataclass
class Run:
    """One run's history as float columns (NaN where a row has no value)."""
    path: str
    columns: Dict[str, np.ndarray]
    final_val_accuracy: float = float("nan")

    @property
    def name(self) -> str:
        return os.path.basename(os.path.normpath(self.path)) or self.path

    @property
    def nested(self) -> bool:
        """More than one depth in the history."""
        return len(np.unique(self.columns["layers"])) > 1

    def work(self, units: str) -> np.ndarray:
        if units not in UNIT_COLUMNS:
            raise ValueError(f"units must be one of {tuple(UNIT_COLUMNS)}, got {units!r}")
        return self.columns[UNIT_COLUMNS[units]]


#: columns every history must have, with a number on every row (the tools index and group by them)
REQUIRED = ("iteration", "layers")
#: columns the tools read; an older history without one of them reads as NaN there
OPTIONAL = ("val_accuracy", "loss", "work_units", "work_units_counted", "layer_steps", "time")


def _read_history(hist: str) -> Dict[str, np.ndarray]:
    """history.csv as float columns (an empty cell: NaN; the text columns left out); any damage is one ValueError naming the file
    and, where it is one cell, its line and column."""
    try:
        with open(hist, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None:
                raise ValueError(f"{hist} is empty (no header line)")
            if any(not h.strip() for h in header) or len(set(header)) != len(header):
                raise ValueError(f"{hist} line 1: not a history header (empty or repeated column names): "
                                 f"{','.join(header)[:120]!r}")
            missing = [c for c in REQUIRED if c not in header]
            if missing:
                raise ValueError(f"{hist} has no column {', '.join(missing)} (columns: {', '.join(header)})")
            rows: List[List[float]] = []
            for row in reader:
                line = reader.line_num
                if not row:
                    continue                        # a blank line
                if len(row) != len(header):
                    raise ValueError(f"{hist} line {line} has {len(row)} fields, the header {len(header)} "
                                     f"(a truncated or damaged line)")
                rows.append([math.nan if col in HISTORY_TEXT else _cell(hist, line, col, text)
                             for col, text in zip(header, row)])
    except UnicodeDecodeError as e:
        raise ValueError(f"{hist} is not text (undecodable byte at offset {e.start})") from None
    except csv.Error as e:
        raise ValueError(f"{hist} is not a readable CSV file: {e}") from None
    except OSError as e:
        raise ValueError(f"{hist} cannot be read: {e.strerror or e}") from None
    if not rows:
        raise ValueError(f"{hist} has no rows")
    table = np.array(rows, dtype=float)
    cols = {name: table[:, j] for j, name in enumerate(header) if name not in HISTORY_TEXT}
    for name in REQUIRED:
        bad = np.nonzero(~np.isfinite(cols[name]))[0]
        if bad.size:
            raise ValueError(f"{hist}: column {name} has no number in data row {int(bad[0]) + 1}")
    return cols


def _cell(hist: str, line: int, column: str, text: str) -> float:
    if not text.strip():
        return float("nan")                         # no value (e.g. not validated)
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{hist} line {line}, column {column}: {text[:40]!r} is not a number") from None


def load_run(path: str) -> Run:
    """Read RUN_DIR/history.csv (and the final accuracy in RUN_DIR/weights.npz, if there).

    Raises FileNotFoundError without a history.csv, and ValueError (one line naming the file) for a
    damaged one: empty, truncated or extra fields on a line, a missing ``iteration``/``layers`` column, a
    cell that is not a number (empty cells and ``nan`` are allowed: NaN), or an unreadable weights.npz.
    """
    hist = os.path.join(path, "history.csv")
    if not os.path.exists(hist):
        raise FileNotFoundError(f"no history.csv in {path!r} (is it a braidnet run folder?)")
    cols = _read_history(hist)
    n = len(cols["iteration"])
    for k in OPTIONAL:
        cols.setdefault(k, np.full(n, np.nan))
    final = float("nan")
    weights = os.path.join(path, "weights.npz")
    if os.path.exists(weights):
        try:
            with open(weights, "rb") as f, np.load(f) as z:
                if "val_accuracy" in z.files:
                    final = float(z["val_accuracy"])
        except Exception as e:   # a damaged archive fails in many ways (zipfile, OSError, ValueError, ...)
            raise ValueError(f"{weights} cannot be read: {type(e).__name__}: {e}") from None
    return Run(path, cols, final)


_RAW = {"counted": "layer_steps", "wall": "time"}


def common_unit(runs: List[Run], units: str = "counted") -> Optional[str]:
    """Re-express the work of every run in one non-nested run's own unit (in place); its name, or None.

    The unit is that run's weighted layer steps (``counted``) or seconds (``wall``) per iteration:
    its last row's value over its iteration count.
    """
    raw = _RAW[units]
    plain = [r for r in runs if not r.nested and np.isfinite(r.columns[raw][-1]) and r.columns[raw][-1] > 0
             and r.columns["iteration"][-1] > 0]
    if not plain or len(plain) == len(runs):
        return None
    ref = plain[0]
    unit = ref.columns[raw][-1] / ref.columns["iteration"][-1]
    for r in runs:
        if np.all(np.isfinite(r.columns[raw])):
            r.columns[UNIT_COLUMNS[units]] = r.columns[raw] / unit
    return ref.name


def work_to_reach(run: Run, accuracy: float, units: str) -> float:
    """Work units at the first validation row with accuracy >= ``accuracy`` (NaN if never)."""
    acc, w = run.columns["val_accuracy"], run.work(units)
    hit = np.nonzero(np.isfinite(acc) & (acc >= accuracy))[0]
    return float(w[hit[0]]) if hit.size else float("nan")


def accuracy_at(run: Run, work: float, units: str) -> float:
    """Validation accuracy of the last validated row with at most ``work`` units (NaN before the first)."""
    acc, w = run.columns["val_accuracy"], run.work(units)
    ok = np.nonzero(np.isfinite(acc) & (w <= work))[0]
    return float(acc[ok[-1]]) if ok.size else float("nan")


def best(run: Run) -> float:
    acc = run.columns["val_accuracy"]
    return float(np.nanmax(acc)) if np.any(np.isfinite(acc)) else float("nan")


def _fmt(x: float, spec: str) -> str:
    return "never" if not math.isfinite(x) else format(x, spec)


def report(a: Run, b: Run, units: str = "counted", at: Sequence[float] = (25.0,)) -> str:
    """The comparison as text: final and best accuracies, work used, work to reach the other's best, and
    both validation accuracies at the work units ``at`` (the paper compares at 25)."""
    lines = [f"{'run':<24} {'kind':<8} {'final val %':>11} {'best val %':>10} {'work units':>10}"]
    for r in (a, b):
        final = r.final_val_accuracy if math.isfinite(r.final_val_accuracy) else r.columns["val_accuracy"][-1]
        kind = "nested" if r.nested else "plain"
        lines.append(f"{r.name:<24} {kind:<8} {_fmt(final, '11.2f')} {_fmt(best(r), '10.2f')} "
                     f"{_fmt(float(r.work(units)[-1]), '10.2f')}")
    for r, other in ((a, b), (b, a)):
        target = best(other)
        w = work_to_reach(r, target, units)
        reach = f"reaches it after {w:.2f} work units" if math.isfinite(w) else "never reaches it"
        lines.append(f"{other.name}'s best {_fmt(target, '.2f')}% (after "
                     f"{_fmt(work_to_reach(other, target, units), '.2f')} work units): {r.name} {reach}")
    for w in at:
        lines.append(f"at {w:g} work units: " + ", ".join(_accuracy_text(r, w, units) for r in (a, b)))
    return "\n".join(lines)


def _accuracy_text(run: Run, work: float, units: str) -> str:
    acc, last = accuracy_at(run, work, units), float(run.work(units)[-1])
    if not math.isfinite(acc):
        return f"{run.name} not validated yet"
    return f"{run.name} {acc:.2f}%" + (f" (its end, at {last:.2f})" if last < work else "")


def compare(path_a: str, path_b: str, units: str = "counted", at: Sequence[float] = (25.0,)) -> str:
    """Load two runs and return :func:`report` (counted units in a common unit where possible)."""
    a, b = load_run(path_a), load_run(path_b)
    note = ""
    ref = common_unit([a, b], units)
    if ref:
        what = "weighted layer steps" if units == "counted" else "seconds"
        note = f"\n(work unit: {what} per iteration of the non-nested run {ref})"
    return report(a, b, units, at) + note
