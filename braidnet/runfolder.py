"""The files of a training run's folder, written by rank 0 only, and the progress lines.

- ``config.json``: the resolved configuration (and the number of ranks);
- ``history.csv``: one row per optimisation iteration (:data:`HISTORY_FIELDS`);
- ``checkpoint.npz``: a :class:`Checkpoint`, everything needed to continue exactly, with the
  distributed vectors made whole so that a run saved on 4 ranks resumes on 2;
- ``weights.npz``: the trained parameters;
- ``starts.csv``: the coarse starts of ``nested.starts`` (:data:`STARTS_FIELDS`).

Progress lines go to the ``braidnet.progress`` logger (level INFO); the command line prints them.
"""
from __future__ import annotations

import csv
import json
import logging
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import numpy as np

from braidnet import config as _config

#: Progress lines (one per iteration, the work unit, the coarse starts, the end of a run).
progress = logging.getLogger("braidnet.progress")

HISTORY_FIELDS = ["iteration", "level", "layers", "work_units", "work_units_counted", "layer_steps",
                  "primal_rnorm", "adjoint_rnorm", "primal_iters", "adjoint_iters", "objective", "loss",
                  "grad_norm", "step", "ls_trials", "train_accuracy", "val_accuracy", "time"]

STARTS_FIELDS = ["start", "seed", "iterations", "objective", "loss", "train_accuracy", "layer_steps",
                 "seconds", "chosen"]


def progress_line(row: Dict[str, Any]) -> str:
    """The progress line of one history row."""
    return (f"it {row['iteration']:4d} | L{row['level']} {row['layers']:4d} layers | "
            f"obj {row['objective']:.6e} | loss {row['loss']:.4e} | |g| {row['grad_norm']:.3e} | "
            f"step {row['step']:.3g} ({row['ls_trials']}) | acc {row['train_accuracy']:5.1f}% / "
            f"{row['val_accuracy']:5.1f}% | r {row['primal_rnorm']:.1e} / {row['adjoint_rnorm']:.1e} | "
            f"{row['time']:.2f} s")


@dataclass
class Checkpoint:
    """A training run at the start of one iteration, whole (independent of the number of ranks)."""
    level: int                          # index in the level plan, 0 = coarsest
    iteration: int                      # iteration within that level
    theta: np.ndarray                   # parameters, whole vector
    f: float                            # objective at theta, as the optimiser saw it
    g: np.ndarray                       # gradient at theta, whole vector
    step: float                         # the last accepted step and its line-search trials
    ls_trials: int
    history: List[Dict[str, Any]]       # the rows written before this iteration
    layer_steps: int = 0                # work so far (braidnet.work)
    unit_seconds: Optional[float] = None
    unit_steps: Optional[float] = None
    last_forward: Dict[str, Any] = field(default_factory=dict)    # the solves behind f and g
    last_backward: Dict[str, Any] = field(default_factory=dict)
    warm: Dict[str, np.ndarray] = field(default_factory=dict)     # MGRIT states (ParallelNetwork.warm_states)
    optimizer: Dict[str, Any] = field(default_factory=dict)       # optimiser memory, vectors whole

    # on disk: one array per field; the dicts' entries under a prefix
    _PREFIXES = {"warm": "warm_", "optimizer": "opt_"}

    def save(self, path: str) -> None:
        """Write the checkpoint atomically: a crash while writing leaves the previous file intact."""
        arrays = {"theta": self.theta, "f": np.array(self.f), "g": self.g, "step": np.array(self.step),
                  "ls_trials": np.array(self.ls_trials), "level": np.array(self.level),
                  "iteration": np.array(self.iteration), "history": np.array(json.dumps(self.history)),
                  "layer_steps": np.array(self.layer_steps), "unit_seconds": np.array(self.unit_seconds or 0.0),
                  "unit_steps": np.array(self.unit_steps or 0.0),
                  "last_forward": np.array(json.dumps(self.last_forward)),
                  "last_backward": np.array(json.dumps(self.last_backward))}
        for name, prefix in self._PREFIXES.items():
            arrays.update({prefix + k: np.asarray(v) for k, v in getattr(self, name).items()})
        save_npz(path, arrays)

    @classmethod
    def load(cls, path: str) -> "Checkpoint":
        """Read a checkpoint written by :meth:`save` (or by an older braidnet, without the work fields)."""
        if not os.path.exists(path):
            raise FileNotFoundError(f"--resume: no checkpoint at {path}")
        with np.load(path, allow_pickle=False) as z:
            a = {k: z[k] for k in z.files}
        grouped = {name: {k[len(p):]: v for k, v in a.items() if k.startswith(p)}
                   for name, p in cls._PREFIXES.items()}
        return cls(level=int(a["level"]), iteration=int(a["iteration"]), theta=np.array(a["theta"]),
                   f=float(a["f"]), g=np.array(a["g"]), step=float(a["step"]), ls_trials=int(a["ls_trials"]),
                   history=json.loads(str(a["history"])), layer_steps=int(a.get("layer_steps", 0)),
                   unit_seconds=float(a.get("unit_seconds", 0.0)) or None,
                   unit_steps=float(a.get("unit_steps", 0.0)) or None,
                   last_forward=json.loads(str(a["last_forward"])),
                   last_backward=json.loads(str(a["last_backward"])), **grouped)


def save_npz(path: str, arrays: Dict[str, Any]) -> None:
    """np.savez to ``path`` through a temporary file and a rename (atomic)."""
    tmp = path[:-len(".npz")] + ".tmp.npz" if path.endswith(".npz") else path + ".tmp.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def _write_csv(path: str, fields: List[str], rows: List[Dict[str, Any]], mode: str = "w") -> None:
    with open(path, mode, newline="") as f:
        w = csv.DictWriter(f, fields)
        if mode == "w":
            w.writeheader()
        w.writerows({k: r.get(k, "") for k in fields} for r in rows)


class RunWriter:
    """The files of one run folder; only rank 0 writes, and nothing without a folder."""

    def __init__(self, out_dir: Optional[str], rank: int) -> None:
        self.dir = out_dir
        self.active = out_dir is not None and rank == 0
        if self.active:
            os.makedirs(out_dir, exist_ok=True)

    def path(self, name: str) -> str:
        assert self.dir is not None
        return os.path.join(self.dir, name)

    def config(self, cfg: _config.Config, nprocs: int) -> None:
        if self.active:
            with open(self.path("config.json"), "w") as f:
                f.write(_config.to_json({**cfg, "run": {"ranks": nprocs}}) + "\n")

    def start_history(self, rows: List[Dict[str, Any]]) -> None:
        """(Re)write history.csv with these rows: a resumed run drops rows written after its checkpoint."""
        if self.active:
            _write_csv(self.path("history.csv"), HISTORY_FIELDS, rows)

    def row(self, row: Dict[str, Any]) -> None:
        if self.active:
            _write_csv(self.path("history.csv"), HISTORY_FIELDS, [row], mode="a")

    def starts(self, table: List[Dict[str, Any]]) -> None:
        if self.active:
            _write_csv(self.path("starts.csv"), STARTS_FIELDS, table)

    def checkpoint(self, ckpt: Checkpoint) -> None:
        if self.active:
            ckpt.save(self.path("checkpoint.npz"))

    def weights(self, theta: np.ndarray, layers: int, val_accuracy: float) -> None:
        if self.active:
            save_npz(self.path("weights.npz"), {"theta": theta, "layers": np.array(layers),
                                                "val_accuracy": np.array(val_accuracy)})
