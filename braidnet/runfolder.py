"""The files of a training run's folder, written by rank 0 only, and the progress lines.

- ``config.json``: the resolved configuration (and the number of ranks);
- ``history.csv``: one row per optimisation iteration (:data:`HISTORY_FIELDS`);
- ``checkpoint.npz``: a :class:`Checkpoint`, everything needed to continue exactly, with the
  distributed vectors made whole so that a run saved on 4 ranks resumes on 2;
- ``weights.npz``: the trained parameters;
- ``starts.csv``: the coarse starts of ``nested.starts`` (:data:`STARTS_FIELDS`);
- ``run.lock``: held for a run's life (:class:`RunLock`), so that two runs never share a folder.

A folder belongs to one run: :meth:`RunWriter.claim` refuses a folder that holds another run's files
(unless that run is resumed, or replaced with ``overwrite``) or that another live run holds.  Files
are written atomically (write, fsync, rename); leftovers of an interrupted write go at the next start.
Progress lines go to the ``braidnet.progress`` logger (level INFO); the command line prints them.
"""
from __future__ import annotations

import csv
import io
import json
import logging
import os
import socket
import sys
import time
import zipfile
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional

import numpy as np

from braidnet import config as _config

#: Progress lines (one per iteration, the work unit, the coarse starts, the end of a run).
progress = logging.getLogger("braidnet.progress")

HISTORY_FIELDS = ["iteration", "level", "layers", "work_units", "work_units_counted", "layer_steps",
                  "primal_rnorm", "adjoint_rnorm", "primal_iters", "adjoint_iters", "objective", "loss",
                  "grad_norm", "step", "ls_trials", "train_accuracy", "val_accuracy", "time",
                  "epoch", "version", "core"]
#: the history's text columns (every other column is a number): what computed the row, so that a run
#: resumed under another braidnet or core says so row by row
HISTORY_TEXT = ("version", "core")

#: The files a run writes; a folder holding any of them holds a run.
RUN_FILES = ("config.json", "history.csv", "checkpoint.npz", "weights.npz", "starts.csv")
LOCK_FILE = "run.lock"
_TMP = ".tmp"          # suffix of a file being written


class RunFolderError(RuntimeError):
    """The run folder cannot be used as asked: it holds another run, another run is using it, its
    checkpoint is missing or damaged, or resuming it would change the run.  Raised on every rank."""


STARTS_FIELDS = ["start", "seed", "iterations", "objective", "loss", "train_accuracy", "layer_steps",
                 "seconds", "chosen"]


def progress_line(row: Dict[str, Any], epoch: bool = False) -> str:
    """The progress line of one history row (``epoch``: with its epoch, for mini-batch runs)."""
    return (f"it {row['iteration']:4d} | L{row['level']} {row['layers']:4d} layers | "
            f"obj {row['objective']:.6e} | loss {row['loss']:.4e} | |g| {row['grad_norm']:.3e} | "
            f"step {row['step']:.3g} ({row['ls_trials']}) | acc {row['train_accuracy']:5.1f}% / "
            f"{row['val_accuracy']:5.1f}% | r {row['primal_rnorm']:.1e} / {row['adjoint_rnorm']:.1e} | "
            f"{row['time']:.2f} s" + (f" | epoch {row['epoch']:.2f}" if epoch else ""))


@dataclass
class Checkpoint:
    """A training run at one point of its plan, whole (independent of the number of ranks).

    ``kind`` says which point: ``"iteration"``, the state at the start of iteration ``iteration``
    of plan level ``level`` (its history row not yet written); ``"level"``, the start of plan level
    ``level`` after a refinement (``theta`` and ``warm`` already refined for its depth, nothing of it
    done); ``"end"``, the state of iteration ``iteration`` after its row was written (where the run
    stopped, so that a longer schedule continues it).
    """
    level: int                          # index in the level plan, 0 = coarsest
    iteration: int                      # iteration within that level
    theta: np.ndarray                   # parameters, whole vector
    f: float                            # objective at theta, as the optimiser saw it
    g: np.ndarray                       # gradient at theta, whole vector
    step: float                         # the last accepted step and its line-search trials
    ls_trials: int
    history: List[Dict[str, Any]]       # the rows written so far
    layer_steps: int = 0                # work so far (braidnet.work)
    unit_seconds: Optional[float] = None
    unit_steps: Optional[float] = None
    last_forward: Dict[str, Any] = field(default_factory=dict)    # the solves behind f and g
    last_backward: Dict[str, Any] = field(default_factory=dict)
    warm: Dict[str, np.ndarray] = field(default_factory=dict)     # MGRIT states (ParallelNetwork.warm_states)
    optimizer: Dict[str, Any] = field(default_factory=dict)       # optimiser memory, vectors whole
    config: Dict[str, Any] = field(default_factory=dict)          # the configuration of the run
    kind: str = "iteration"
    failed_steps: int = 0               # line searches failed in a row before this point
    batches: Dict[str, Any] = field(default_factory=dict)   # mini-batches: position, epoch sums

    # on disk: one array per field; the dicts' entries under a prefix
    _PREFIXES = {"warm": "warm_", "optimizer": "opt_", "batches": "batch_"}
    _JSON = ("history", "last_forward", "last_backward", "config")

    def save(self, path: str) -> None:
        """Write the checkpoint atomically: a crash while writing leaves the previous file intact."""
        arrays = {"theta": self.theta, "f": np.array(self.f), "g": self.g, "step": np.array(self.step),
                  "ls_trials": np.array(self.ls_trials), "level": np.array(self.level),
                  "iteration": np.array(self.iteration), "layer_steps": np.array(self.layer_steps),
                  "unit_seconds": np.array(self.unit_seconds or 0.0), "unit_steps": np.array(self.unit_steps or 0.0),
                  "kind": np.array(self.kind), "failed_steps": np.array(self.failed_steps)}
        arrays.update({name: np.array(json.dumps(getattr(self, name))) for name in self._JSON})
        for name, prefix in self._PREFIXES.items():
            arrays.update({prefix + k: np.asarray(v) for k, v in getattr(self, name).items()})
        save_npz(path, arrays)

    @classmethod
    def load(cls, path: str) -> "Checkpoint":
        """Read a checkpoint written by :meth:`save` (or by an older braidnet, without the newer fields);
        :class:`RunFolderError` names the file when it is missing or damaged."""
        if not os.path.isfile(path):
            raise RunFolderError(f"--resume: no checkpoint at {path}")
        try:
            with open(path, "rb") as fh:            # ours to close, whatever np.load makes of it
                z = np.load(fh, allow_pickle=False)
                if not isinstance(z, np.lib.npyio.NpzFile):
                    raise ValueError("not an .npz archive")
                with z:
                    a = {k: z[k] for k in z.files}
            grouped = {name: {k[len(p):]: v for k, v in a.items() if k.startswith(p)}
                       for name, p in cls._PREFIXES.items()}
            texts = {name: json.loads(str(a[name])) if name in a else {} for name in cls._JSON}
            return cls(level=int(a["level"]), iteration=int(a["iteration"]), theta=np.array(a["theta"]),
                       f=float(a["f"]), g=np.array(a["g"]), step=float(a["step"]), ls_trials=int(a["ls_trials"]),
                       layer_steps=int(a.get("layer_steps", 0)),
                       unit_seconds=float(a.get("unit_seconds", 0.0)) or None,
                       unit_steps=float(a.get("unit_steps", 0.0)) or None,
                       kind=str(a.get("kind", "iteration")), failed_steps=int(a.get("failed_steps", 0)),
                       **texts, **grouped)
        except (OSError, ValueError, KeyError, EOFError, TypeError, zipfile.BadZipFile) as e:
            raise RunFolderError(f"{path} is damaged or not a braidnet checkpoint "
                                 f"({type(e).__name__}: {e})") from None


def _fsync_dir(folder: str) -> None:
    try:
        fd = os.open(folder or ".", os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomic(path: str, write: Callable[[io.BufferedWriter], None]) -> None:
    """Write ``path`` through ``path + '.tmp'``: write, fsync, rename.  A crash leaves the old file."""
    tmp = path + _TMP
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(os.path.dirname(path))


def save_npz(path: str, arrays: Dict[str, Any]) -> None:
    """np.savez to ``path``, atomically."""
    write_atomic(path, lambda f: np.savez(f, **arrays))


def _csv_text(fields: List[str], rows: List[Dict[str, Any]], header: bool = True) -> str:
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fields)
    if header:
        w.writeheader()
    w.writerows({k: r.get(k, "") for k in fields} for r in rows)
    return buf.getvalue()


def _write_csv(path: str, fields: List[str], rows: List[Dict[str, Any]]) -> None:
    write_atomic(path, lambda f: f.write(_csv_text(fields, rows).encode()))


def built_as() -> Dict[str, str]:
    """The history's ``version`` and ``core`` cells: braidnet's version, and ``bundled`` or
    ``LLNL XBraid (FOLDER)``."""
    import braidnet
    info = braidnet.build_info()
    core = info["core"] if not info["xbraid_dir"] else f"{info['core']} ({info['xbraid_dir']})"
    return {"version": info["version"], "core": core}


def with_run(cfg: _config.Config, nprocs: int) -> Dict[str, Any]:
    """The configuration with a ``run`` section: the rank count and what braidnet was built as
    (version, core: bundled or LLNL XBraid with its folder)."""
    import braidnet
    return {**cfg, "run": {"ranks": nprocs, **braidnet.build_info()}}


class RunLock:
    """``run.lock`` in a run folder: created exclusively, removed at the end; one that a dead process
    left on this host is stale and taken over."""

    def __init__(self, folder: str) -> None:
        self.path = os.path.join(folder, LOCK_FILE)
        self.held = False

    def acquire(self) -> None:
        me = {"pid": os.getpid(), "host": socket.gethostname(), "start_ticks": _start_ticks(os.getpid()),
              "started": time.strftime("%Y-%m-%d %H:%M:%S"), "command": " ".join(sys.argv)}
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._holder()
                if holder is not None and self._stale(holder):
                    try:
                        os.remove(self.path)
                    except FileNotFoundError:       # its run just ended
                        pass
                    continue
                who = (f"pid {holder.get('pid')} on {holder.get('host')}, started {holder.get('started')}: "
                       f"{holder.get('command')}" if holder else "its lock file is being written")
                raise RunFolderError(f"{os.path.dirname(self.path)} is in use by another run ({who}); wait "
                                     f"for it, or use another --out (if no run uses it, remove {self.path})")
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
                f.flush()
                os.fsync(f.fileno())
            self.held = True
            return
        raise RunFolderError(f"could not take the lock {self.path}")

    def release(self) -> None:
        if self.held:
            self.held = False
            try:
                os.remove(self.path)
            except FileNotFoundError:
                pass

    def _holder(self) -> Optional[Dict[str, Any]]:
        """The lock's content; None while it is being written, {} when it is unreadable and old."""
        try:
            with open(self.path) as f:
                return json.load(f)
        except FileNotFoundError:
            return {}
        except (OSError, ValueError):
            try:
                old = time.time() - os.path.getmtime(self.path) > 10.0
            except OSError:
                return {}
            return {} if old else None

    @staticmethod
    def _stale(holder: Dict[str, Any]) -> bool:
        """True for a damaged lock, or one whose process is gone from this host.  A process that is
        just ending (the ranks of an aborted run take a moment to die) gets two seconds."""
        if not holder:
            return True
        if holder.get("host") != socket.gethostname():
            return False                    # cannot look at another host's processes
        try:
            pid = int(holder["pid"])
        except (KeyError, ValueError, TypeError):
            return True
        for _ in range(20):
            if not _alive(pid, holder.get("start_ticks")):
                return True
            time.sleep(0.1)
        return False


def _proc_stat(pid: int) -> Optional[List[str]]:
    """The fields of /proc/PID/stat after the command name (Linux): [0] the state, [19] the start time
    in clock ticks since boot; None when the process is gone, raises OSError where there is no /proc."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return None


def _start_ticks(pid: int) -> Optional[int]:
    """The process's start time (Linux), to tell a reused pid apart; None where unknown."""
    try:
        fields = _proc_stat(pid)
        return int(fields[19]) if fields else None
    except (OSError, IndexError, ValueError):
        return None


def _alive(pid: int, start_ticks: Optional[int]) -> bool:
    try:
        fields = _proc_stat(pid)
        if fields is None or fields[0] in ("Z", "X"):     # gone, or a zombie: it has ended
            return False
        return start_ticks is None or int(fields[19]) == start_ticks
    except (OSError, IndexError, ValueError):
        pass
    try:                                    # no /proc: ask the kernel
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunWriter:
    """The files of one run folder; only rank 0 writes, and nothing without a folder."""

    def __init__(self, out_dir: Optional[str], rank: int) -> None:
        self.dir = out_dir
        self.active = out_dir is not None and rank == 0
        self.lock = RunLock(out_dir) if self.active else None

    def path(self, name: str) -> str:
        assert self.dir is not None
        return os.path.join(self.dir, name)

    def claim(self, resume: bool, overwrite: bool,
              check: Callable[[Checkpoint], Optional[str]]) -> None:
        """Take the folder for this run (rank 0): lock it, then for a new run make sure it holds no
        other run (``overwrite``: remove that run's files first), for a resumed one that its checkpoint
        loads and ``check(checkpoint)`` finds nothing against resuming it.  Nothing of an earlier run
        changes unless this succeeds.  Raises :class:`RunFolderError`."""
        if not self.active:
            return
        assert self.lock is not None
        if os.path.exists(self.dir) and not os.path.isdir(self.dir):
            raise RunFolderError(f"the output folder {self.dir} is a file")
        os.makedirs(self.dir, exist_ok=True)
        self.lock.acquire()
        try:
            held = [name for name in RUN_FILES if os.path.exists(self.path(name))]
            if resume:
                problem = check(Checkpoint.load(self.path("checkpoint.npz")))
                if problem:
                    raise RunFolderError(problem)
            elif held and not overwrite:
                raise RunFolderError(f"{self.dir} holds a run ({', '.join(held)}); --resume continues it, "
                                     f"--overwrite replaces it, or choose another --out")
            elif held:
                for name in held:
                    os.remove(self.path(name))
            for name in os.listdir(self.dir):        # leftovers of an interrupted write
                if name.endswith(_TMP) or name.endswith(".tmp.npz"):
                    os.remove(self.path(name))
        except BaseException:
            self.lock.release()
            raise

    def release(self) -> None:
        """Give the folder up (the lock); idempotent."""
        if self.lock is not None:
            self.lock.release()

    def config(self, cfg: _config.Config, nprocs: int) -> None:
        """config.json: the configuration, and under ``run`` the ranks, braidnet's version and its core."""
        if self.active:
            text = _config.to_json(with_run(cfg, nprocs)) + "\n"
            write_atomic(self.path("config.json"), lambda f: f.write(text.encode()))

    def start_history(self, rows: List[Dict[str, Any]]) -> None:
        """(Re)write history.csv with these rows: a resumed run drops rows written after its checkpoint."""
        if self.active:
            _write_csv(self.path("history.csv"), HISTORY_FIELDS, rows)

    def row(self, row: Dict[str, Any]) -> None:
        """Append one row (a crash may cut it: resuming rewrites the history from the checkpoint)."""
        if self.active:
            with open(self.path("history.csv"), "a", newline="") as f:
                f.write(_csv_text(HISTORY_FIELDS, [row], header=False))

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
