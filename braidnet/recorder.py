"""What every optimisation iteration leaves behind: its history row (with the work units), the progress
line, a checkpoint when one is due, and the divergence guard.

The training loop (:mod:`braidnet.train`) claims the run folder (:meth:`Recorder.claim`), calls
:meth:`Recorder.row` once per iteration and :meth:`Recorder.checkpoint` after each step, and
:meth:`Recorder.level_start` / :meth:`Recorder.end` where a level starts and where the run stops;
the recorder owns the history, the work counter and the files (through
:class:`braidnet.runfolder.RunWriter`).  Checkpoints are written every ``output.checkpoint_every``
global iterations (0: none in between), at the start of every refined level and at the end.
"""
from __future__ import annotations

import json
import math
import time
from typing import Any, Dict, List, Optional

import numpy as np

from braidnet import blaskernels, work
from braidnet import config as _config
from braidnet.level import LevelRun
from braidnet.oneshot import TrainingDiverged, divergence, is_bad
from braidnet.problem import level_plan
from braidnet.runfolder import (Checkpoint, RunFolderError, RunWriter, built_as, progress, progress_line,
                                with_run)

#: Printed once above the progress lines: what each field of a line is.
PROGRESS_HEADER = ("iteration | level (0: finest), layers | objective | loss | gradient norm | accepted step "
                   "(line-search trials) | accuracy training / validation | MGRIT residual primal / adjoint | time")


class Recorder:
    """History, work units, progress and checkpoints of one training run (every rank holds one)."""

    def __init__(self, cfg: _config.Config, comm, out_dir: Optional[str], nested: bool) -> None:
        self.cfg = cfg
        self.comm = comm
        self.writer = RunWriter(out_dir, comm.Get_rank())
        self.show = comm.Get_rank() == 0 and cfg["output"]["progress"]
        self.nested = nested
        self.history: List[Dict[str, Any]] = []
        self.counter = work.WorkCounter()
        self.unit_seconds: Optional[float] = cfg["nested"]["work_unit_seconds"] or None
        self.unit_steps: Optional[float] = cfg["nested"]["work_unit_steps"] or None
        self.saved_at: Optional[int] = None      # global iteration of the last checkpoint written
        self.iteration = 0                       # global iteration of the next row
        #: one row per epoch (output.history = "epoch")
        self.per_epoch = cfg["output"]["history"] == "epoch"
        #: progress lines with the epoch: set by train() from the loaded data (Problem.batch_size),
        #: which may hold fewer samples than data.n_train asks for (digits, idx, lpt_text)
        self.show_epoch = False
        # epoch rows: sums of objective, loss, training accuracy over the steps since the last row
        self._sums = np.zeros(4)
        self._resumed_at: Optional[int] = None   # a checkpoint's global iteration (epoch rows)
        self._t0 = time.perf_counter()
        self._built_as = built_as()              # every row says which braidnet and core computed it

    def claim(self, resume: bool, overwrite: bool) -> Optional[Checkpoint]:
        """Take the run folder (collective; rank 0 decides, every rank raises the same
        :class:`RunFolderError`); for ``resume`` return the checkpoint with the history, work and units
        it continues."""
        if resume and self.writer.dir is None:
            raise RunFolderError("--resume needs the output folder of the run to continue")
        problem = None
        try:
            self.writer.claim(resume, overwrite, self._resume_problem)
        except Exception as e:          # rank 0's verdict, whatever it is, reaches every rank
            problem = str(e) if isinstance(e, RunFolderError) else f"{self.writer.dir}: {type(e).__name__}: {e}"
        problem = self.comm.bcast(problem, root=0)
        if problem is not None:
            raise RunFolderError(problem)
        if not resume:
            return None
        ckpt = Checkpoint.load(self.writer.path("checkpoint.npz"))
        self.history = ckpt.history
        self.counter = work.WorkCounter(ckpt.layer_steps)
        self.unit_seconds, self.unit_steps = ckpt.unit_seconds, ckpt.unit_steps
        self.saved_at = self.history[-1]["iteration"] + 1 if self.history else ckpt.iteration
        if "iteration" in ckpt.batches:          # epoch rows: the global iteration may lie past the last row
            self._resumed_at = self.saved_at = int(ckpt.batches["iteration"])
            self._sums = np.array(ckpt.batches["sums"], dtype=np.float64)
        return ckpt

    def _resume_problem(self, ckpt: Checkpoint) -> Optional[str]:
        """Why resuming ``ckpt`` with this configuration would not be the run it continues, or None."""
        old = ckpt.config or self._folder_config()
        new = self.cfg
        changes = [f"{key}: {a!r} -> {b!r}" for key, a, b in _config.resume_conflicts(old, new)]
        if not changes:
            changes = self._schedule_problem(ckpt, old, new)
        if not changes:
            return None
        return (f"--resume would not continue the run in {self.writer.dir}: " + "; ".join(changes) +
                " (keys that may change on --resume: `braidnet config`)")

    @staticmethod
    def _schedule_problem(ckpt: Checkpoint, old: _config.Config, new: _config.Config) -> List[str]:
        """The schedule may grow, but not lose levels or iterations already trained."""
        done, plan = level_plan(old), level_plan(new)
        old_s, new_s = old["nested"]["schedule"], new["nested"]["schedule"]
        if len(plan) != len(done):
            return [f"nested.schedule: {old_s!r} -> {new_s!r} (the number of levels is the run's)"]
        if all(plan[l][1] == done[l][1] for l in range(ckpt.level)) and plan[ckpt.level][1] >= ckpt.iteration:
            return []
        key, a, b = (("nested.schedule", old_s, new_s) if new_s else
                     ("optimizer.iterations", old["optimizer"]["iterations"], new["optimizer"]["iterations"]))
        return [f"{key}: {a!r} -> {b!r} (the checkpoint is at iteration {ckpt.iteration} of level "
                f"{len(done) - 1 - ckpt.level}: finished levels keep their iterations, the current one may "
                f"only grow)"]

    def _folder_config(self) -> _config.Config:
        """config.json of the folder (for checkpoints of an older braidnet, which carry none)."""
        try:
            with open(self.writer.path("config.json")) as f:
                return json.load(f)
        except (OSError, ValueError) as e:
            raise RunFolderError(f"{self.writer.path('checkpoint.npz')} carries no configuration and "
                                 f"{self.writer.path('config.json')} is unreadable ({e})") from None

    def open(self, first_iteration: int, seconds_before: float = 0.0) -> None:
        """Write config.json, start (or restart) history.csv and the clock; ``seconds_before``: the
        coarse starts' time."""
        self.writer.config(self.cfg, self.comm.Get_size())
        if self.show and self.nested and not self.history:
            progress.info(work.unit_summary(self.unit_seconds, self.unit_steps))
        if self.show:
            note = blaskernels.note_for_network(self.cfg["network"]["kind"], self.cfg["network"]["width"])
            if note:
                progress.info(note)
            progress.info(PROGRESS_HEADER + (" | epochs done" if self.show_epoch else ""))
        self.writer.start_history(self.history)
        self._t0 = time.perf_counter() - (self.history[-1]["time"] if self.history else seconds_before)
        self.iteration = self.history[-1]["iteration"] + 1 if self.history else first_iteration
        if self._resumed_at is not None:
            self.iteration = self._resumed_at

    def _due(self, run: LevelRun, k: int, last: int) -> bool:
        """Whether iteration k gets a row: every one, or with epoch rows a level's first and last and
        each that starts an epoch (its row: the epoch before it)."""
        return not self.per_epoch or k == 0 or k == last or run.batch_step % run.problem.batches_per_epoch == 0

    def row(self, run: LevelRun, level: int, k: int, last: int) -> Optional[Dict[str, Any]]:
        """Record iteration k of a level (``level``: 0 = finest) that ends at iteration ``last``; the
        row, or None when it gets none (epoch rows)."""
        f, gnorm = run.f, run.grad_norm()
        bad = is_bad(f) or is_bad(gnorm)
        fw, bw = run.oneshot.last_forward, run.oneshot.last_backward
        if bad:
            where = (f"the last good checkpoint is {self.writer.path('checkpoint.npz')} (iteration {self.saved_at})"
                     if self.saved_at is not None and self.writer.dir else "no checkpoint was written before it")
            raise TrainingDiverged(divergence(self.iteration, f, gnorm, fw, bw) + "; " + where)
        this_step = (f, fw.get("loss") or 0.0, fw.get("accuracy") or 0.0, 1.0)   # for epoch means
        if not self._due(run, k, last):
            self._sums += this_step
            self.iteration += 1
            return None
        loss, acc = fw.get("loss"), fw.get("accuracy")
        if self.per_epoch and self._sums[3] > 0:     # the mean over the epoch's steps
            f, loss, acc = (float(v) for v in self._sums[:3] / self._sums[3])
        self._sums[:] = 0.0
        if self.per_epoch and k != last:           # this state's step belongs to the next row
            self._sums += this_step
        every = self.cfg["output"]["validate_every"]
        val = run.validate() if k % every == 0 or k == last or self.per_epoch else math.nan
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
               "objective": f, "loss": loss, "grad_norm": gnorm, "step": run.step,
               "ls_trials": run.ls_trials, "train_accuracy": acc, "val_accuracy": val,
               "time": elapsed, "epoch": run.epoch, **self._built_as}
        self.history.append(row)
        self.writer.row(row)
        if self.show:
            progress.info(progress_line(row, self.show_epoch))
        self.iteration += 1
        return row

    def checkpoint(self, run: LevelRun, level: int, k: int) -> None:
        """At the start of iteration k of plan level ``level``: a checkpoint every
        ``output.checkpoint_every`` global iterations (if the state is finite)."""
        every = self.cfg["output"]["checkpoint_every"]
        if every and self.iteration % every == 0 and not (is_bad(run.f) or is_bad(run.grad_norm())):
            self._save(self._position(run.checkpoint(level, k, self.history, self.counter.current(run.pn),
                                                     (self.unit_seconds, self.unit_steps))))

    def _position(self, ckpt: Checkpoint) -> Checkpoint:
        """Epoch rows: the global iteration and the epoch's sums so far go into the checkpoint."""
        if self.per_epoch:
            ckpt.batches = {**ckpt.batches, "iteration": np.array(self.iteration), "sums": self._sums.copy()}
        return ckpt

    def end(self, run: LevelRun, level: int, k: int) -> None:
        """Where the run stops, iteration k of plan level ``level`` recorded: the last checkpoint."""
        ckpt = run.checkpoint(level, k, self.history, self.counter.current(run.pn),
                              (self.unit_seconds, self.unit_steps))
        ckpt.kind = "end"
        self._save(self._position(ckpt), self.iteration - 1)

    def level_start(self, level: int, theta: np.ndarray, warm: Optional[Dict[str, np.ndarray]],
                    batch_step: int = 0) -> None:
        """Plan level ``level`` starts from the refined ``theta`` and MGRIT states ``warm``, on batch
        ``batch_step``."""
        self._save(self._position(Checkpoint(
            level=level, iteration=0, theta=theta, f=math.nan, g=np.zeros(0), step=0.0, ls_trials=0,
            history=self.history, layer_steps=self.counter.done, unit_seconds=self.unit_seconds,
            unit_steps=self.unit_steps, warm=warm or {}, kind="level", batches={"step": np.array(batch_step)})))

    def _save(self, ckpt: Checkpoint, iteration: Optional[int] = None) -> None:
        ckpt.config = with_run(self.cfg, self.comm.Get_size())
        self.writer.checkpoint(ckpt)
        self.saved_at = self.iteration if iteration is None else iteration

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
                          f"(exact forward solve), {self.iterations_done()} "
                          f"{'epochs' if self.per_epoch else 'iterations'}")

    def iterations_done(self) -> int:
        """Optimisation iterations as the schedule counts them: per level the steps taken (a level's
        first row is its starting point), plus the chosen coarse start's (the first row's number);
        epochs with one row per epoch (``output.history = "epoch"``)."""
        if not self.history:
            return 0
        levels = {r["layers"] for r in self.history}
        return len(self.history) - len(levels) + int(self.history[0]["iteration"])

    def close(self) -> None:
        """Give the run folder up (its lock); every rank may call it."""
        self.writer.release()
