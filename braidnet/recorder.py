"""What every optimisation iteration leaves behind: its history row (with the work units), the progress
line, a checkpoint when one is due, and the divergence guard.

The training loop (:mod:`braidnet.train`) calls :meth:`Recorder.row` once per iteration and
:meth:`Recorder.checkpoint` after each step; the recorder owns the history, the work counter and
the files (through :class:`braidnet.runfolder.RunWriter`).
"""
from __future__ import annotations

import math
import time
from typing import Any, Dict, List, Optional

from braidnet import config as _config
from braidnet import work
from braidnet.level import LevelRun
from braidnet.oneshot import TrainingDiverged, divergence, is_bad
from braidnet.runfolder import Checkpoint, RunWriter, progress, progress_line


class Recorder:
    """History, work units, progress and checkpoints of one training run (every rank holds one)."""

    def __init__(self, cfg: _config.Config, comm, out_dir: Optional[str], nested: bool) -> None:
        self.cfg = cfg
        self.writer = RunWriter(out_dir, comm.Get_rank())
        self.writer.config(cfg, comm.Get_size())
        self.show = comm.Get_rank() == 0 and cfg["output"]["progress"]
        self.nested = nested
        self.history: List[Dict[str, Any]] = []
        self.counter = work.WorkCounter()
        self.unit_seconds: Optional[float] = cfg["nested"]["work_unit_seconds"] or None
        self.unit_steps: Optional[float] = cfg["nested"]["work_unit_steps"] or None
        self.saved_at: Optional[int] = None      # global iteration of the last checkpoint written
        self.iteration = 0                       # global iteration of the next row
        self._t0 = time.perf_counter()

    def resume(self) -> Checkpoint:
        """Load the folder's checkpoint and continue its history, work and units."""
        ckpt = Checkpoint.load(self.writer.path("checkpoint.npz"))
        self.history = ckpt.history
        self.counter = work.WorkCounter(ckpt.layer_steps)
        self.unit_seconds, self.unit_steps = ckpt.unit_seconds, ckpt.unit_steps
        self.saved_at = self.history[-1]["iteration"] + 1 if self.history else ckpt.iteration
        return ckpt

    def open(self, first_iteration: int, seconds_before: float = 0.0) -> None:
        """Start (or restart) history.csv and the clock; ``seconds_before``: the coarse starts' time."""
        if self.show and self.nested and not self.history:
            progress.info(work.unit_summary(self.unit_seconds, self.unit_steps))
        self.writer.start_history(self.history)
        self._t0 = time.perf_counter() - (self.history[-1]["time"] if self.history else seconds_before)
        self.iteration = self.history[-1]["iteration"] + 1 if self.history else first_iteration

    def row(self, run: LevelRun, level: int, k: int, last: int) -> Dict[str, Any]:
        """Record iteration k of a level (``level``: 0 = finest) that ends at iteration ``last``."""
        f, gnorm = run.f, run.grad_norm()
        bad = is_bad(f) or is_bad(gnorm)
        every = self.cfg["output"]["validate_every"]
        val = run.validate() if (k % every == 0 or k == last) and not bad else math.nan   # no solve on NaN
        fw, bw = run.oneshot.last_forward, run.oneshot.last_backward
        elapsed, steps = time.perf_counter() - self._t0, self.counter.current(run.pn)
        # a non-nested run without given units gets its own averages at the end (braidnet.work)
        own = not self.nested
        row = {"iteration": self.iteration, "level": level, "layers": run.layers,
               "work_units": self.iteration if own and not self.unit_seconds
               else work.units(elapsed, self.unit_seconds),
               "work_units_counted": self.iteration if own and not self.unit_steps
               else work.units(steps, self.unit_steps),
               "layer_steps": steps, "primal_rnorm": fw.get("rnorm", -1.0), "adjoint_rnorm": bw.get("rnorm", -1.0),
               "primal_iters": fw.get("iterations", 0), "adjoint_iters": bw.get("iterations", 0),
               "objective": f, "loss": fw.get("loss"), "grad_norm": gnorm, "step": run.step,
               "ls_trials": run.ls_trials, "train_accuracy": fw.get("accuracy"), "val_accuracy": val,
               "time": elapsed}
        if bad:
            where = (f"the last good checkpoint is {self.writer.path('checkpoint.npz')} (iteration {self.saved_at})"
                     if self.saved_at is not None and self.writer.dir else "no checkpoint was written before it")
            raise TrainingDiverged(divergence(self.iteration, f, gnorm, fw, bw) + "; " + where)
        self.history.append(row)
        self.writer.row(row)
        if self.show:
            progress.info(progress_line(row))
        self.iteration += 1
        return row

    def checkpoint(self, run: LevelRun, level: int, k: int) -> None:
        """Save a checkpoint at iteration k of plan level ``level`` if one is due and the state is finite."""
        every = self.cfg["output"]["checkpoint_every"]
        if every and k % every == 0 and not (is_bad(run.f) or is_bad(run.grad_norm())):
            ckpt = run.checkpoint(level, k, self.history, self.counter.current(run.pn),
                                  (self.unit_seconds, self.unit_steps))
            self.writer.checkpoint(ckpt)
            self.saved_at = self.iteration

    def close_level(self, run: LevelRun) -> None:
        """Count a level's work before its network is closed."""
        self.counter.close(run.pn)

    def finish(self, theta, layers: int, final_val: float, message: str) -> None:
        """Work units of a non-nested run, the final history, the weights and the last progress line."""
        if not self.nested and not (self.unit_seconds and self.unit_steps):
            fixed = [dict(r) for r in self.history]
            work.self_normalise(fixed)
            for r, f_row in zip(self.history, fixed):
                if not self.unit_seconds:
                    r["work_units"] = f_row["work_units"]
                if not self.unit_steps:
                    r["work_units_counted"] = f_row["work_units_counted"]
            self.writer.start_history(self.history)
        self.writer.weights(theta, layers, final_val)
        if self.show:
            progress.info(f"done: {message}; final validation accuracy {final_val:.2f}% "
                          f"(exact forward solve), {len(self.history)} iterations")
