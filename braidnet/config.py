"""Training configuration: a TOML file with the sections below, every key optional.

``SCHEMA`` is the single source of truth: each key's default, type and meaning.  ``load_config``
reads a file, applies ``--set section.key=value`` overrides (values parsed as TOML literals) and
checks everything before any MPI work starts, so that every rank fails the same way with one clear
message.  ``describe()`` prints the documented defaults (``braidnet config``).

Every key's allowed values are declared here: its type in ``SCHEMA``, a fixed set of words in
``CHOICES``, a numeric interval in ``RANGES`` (what its consumer needs: ``network.T > 0``,
``optimizer.ls_factor`` in (0, 1), seeds >= 0, ...), and cross-key rules in :func:`check`.
``RESUMABLE`` declares the keys a resumed run may change (:func:`resume_conflicts` reports the others).
"""
from __future__ import annotations

import copy
import json
import math
import sys
from dataclasses import dataclass
from typing import Any, Dict, FrozenSet, Iterable, List, Optional, Tuple

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python < 3.11 only
    import tomli as tomllib


class ConfigError(ValueError):
    """A configuration value is unknown, of the wrong type or out of range."""


# section -> key -> (default, type, help).  Types: int, float, bool, str, "ints" (list of ints).
SCHEMA: Dict[str, Dict[str, Tuple[Any, Any, str]]] = {
    "data": {
        "dataset": ("peaks", str, "peaks | indian_pines | lpt_text (the paper code's *.dat files in data.path) | "
                    "digits (scikit-learn's 8 x 8 digits, images) | idx (MNIST-format files data.images, data.labels)"),
        "n_train": (5000, int, "training samples (peaks) / pixels (indian_pines) / images (digits, idx: at most "
                    "this many, the first ones)"),
        "n_val": (200, int, "validation samples"),
        "seed": (0, int, "seed of the data draw / split"),
        "path": ("", str, "folder of the lpt_text files"),
        "images": ("", str, "idx: the training images' IDX file (e.g. train-images-idx3-ubyte.gz)"),
        "labels": ("", str, "idx: the training labels' IDX file"),
        "val_images": ("", str, "idx: the validation images' IDX file (empty: the last n_val training images)"),
        "val_labels": ("", str, "idx: the validation labels' IDX file (with data.val_images)"),
    },
    "network": {
        "width": (8, int, "channels of the residual layers (conv: channels of each image state)"),
        "layers": (64, int, "residual layers of the finest network"),
        "kind": ("dense", str, "dense | conv: residual layers u + h sigma(W u + b), or convolutional "
                 "u + h sigma(K * u + b) on images (docs/design.md section 3)"),
        "T": (5.0, float, "final time; step size h = T / layers"),
        "activation": ("smoothrelu", str, "tanh | relu | smoothrelu"),
        "opening": ("dense", str, "dense | pad (zero-padding, no parameters); conv: replicate (the image in "
                    "every channel) | mnist (LPT's tanh(6 x / 255 - 3) + 1, replicated) | conv (learned k x k "
                    "convolution from the input channels)"),
        "bias": ("channel", str, "channel (one per channel) | scalar (one per layer, as LPT)"),
        "gamma_tik": (1e-7, float, "Tikhonov weight on the residual layers and the opening"),
        "gamma_ddt": (1e-7, float, "weight of the time-derivative regulariser"),
        "gamma_class": (1e-7, float, "Tikhonov weight on the classifier"),
        "init_opening": (1e-3, float, "scale of the uniform [0,1) initial opening weights"),
        "init_layers": (0.0, float, "scale w_i of the initial residual weights (paper: 0 or 1e-6)"),
        "init_classifier": (1e-3, float, "scale of the initial classifier weights"),
        "seed": (1, int, "seed of the weight initialisation"),
        "dtype": ("float64", str, "float64 | float32: precision of the states, MGRIT vectors and messages, and "
                  "layer kernels (parameters, loss, gradients, norms and the optimiser stay float64); "
                  "float32 for dense networks only"),
        "kernel_size": (3, int, "conv: odd kernel size k (k x k kernels, same zero padding, stride 1)"),
        "image_shape": ([], "ints", "conv: [H, W] of the images, the inputs being rows of c_in * H * W pixels "
                        "(empty: the images' own shape, for data.dataset digits and idx)"),
        "classifier": ("dense", str, "dense (on the flattened last state; LPT) | pool (conv: on its per-channel "
                       "averages, global average pooling)"),
    },
    "braid": {
        "max_levels": (3, int, "MGRIT levels (1 = layer-serial)"),
        "cfactor": (4, int, "coarsening factor"),
        "nrelax": (1, int, "0 = F-relaxation, 1 = FCF"),
        "nrelax_fine": (-1, int, "relaxation on the finest level only (-1: as nrelax)"),
        "min_coarse": (2, int, "smallest coarse grid"),
        "fmg": (False, bool, "F-cycles instead of V-cycles"),
        "skip": ("first", str, "no fine-level work in the first MGRIT iteration of a solve: first (of each core's "
                 "first solve only) | every (of every solve, as LLNL XBraid) | off; docs/design.md section 2.7"),
        "initial_guess": ("constant", str, "constant | zero: where a cold solve starts (one with no states to "
                          "warm-start from): every point at u_0 (adjoint: lambda_N), or at zeros; a skipped first "
                          "iteration overwrites it; docs/design.md section 4.4a"),
        "final_fc_relax": (False, bool, "end every primal and adjoint solve with an F-then-C relaxation whose "
                           "states are kept (XBraid's SetFinalFCRelax); docs/design.md section 5"),
        "iterations": (2, int, "MGRIT iterations d of the primal and of the adjoint solve per optimisation iteration"),
        "drop": (0.0, float, "if > 0: instead of d fixed iterations, iterate until the residual dropped by this factor (paper: 1e4)"),
        "abs_tol": (0.0, float, "if > 0: also stop each solve once the residual is below this"),
        "max_iter": (50, int, "cap on the iterations of one solve in the adaptive modes"),
    },
    "parallel": {
        "data": (1, int, "data-parallel groups Q: the ranks split into Q groups of P = ranks / Q, each runs the "
                 "layer-parallel solves on its shard of the batch; losses, accuracies and gradients are summed "
                 "over the groups (Q must divide the number of ranks; docs/design.md section 9)"),
    },
    "optimizer": {
        "method": ("lbfgs", str, "lbfgs | bfgs (dense; one rank only) | sd (steepest descent): line search; "
                   "sgd | adam: a learning-rate step per optimisation step (docs/guide/training.md)"),
        "iterations": (188, int, "optimisation iterations (non-nested); see nested.schedule and optimizer.epochs"),
        "batch_size": (0, int, "samples per optimisation step (0: the full training set, every step; > 0: "
                       "mini-batches of a seeded order, the incomplete last batch of each epoch dropped)"),
        "epochs": (0, int, "mini-batches, non-nested: train this many epochs (batches_per_epoch steps each) "
                   "instead of optimizer.iterations steps (0: optimizer.iterations)"),
        "batch_seed": (0, int, "seed of the mini-batch order (each epoch a permutation of the samples)"),
        "warm": ("sample", str, "mini-batches: initial guess of the MGRIT states when the batch changes: sample "
                 "(each sample's states of the last step that used it) | batch (the previous batch's states "
                 "as they are) | zero (cold restart from braid.initial_guess)"),
        "lr": (0.01, float, "sgd, adam: base learning rate"),
        "momentum": (0.0, float, "sgd: momentum (0: none)"),
        "nesterov": (False, bool, "sgd: Nesterov momentum (needs momentum > 0)"),
        "beta1": (0.9, float, "adam: decay of the first moment"),
        "beta2": (0.999, float, "adam: decay of the second moment"),
        "eps": (1e-8, float, "adam: denominator guard"),
        "lr_schedule": ("constant", str, "sgd, adam: constant | step (lr * lr_gamma^(epoch // lr_step_size)) | "
                        "cosine (from lr to lr_min over the level's epochs); epochs of batches_per_epoch steps"),
        "lr_step_size": (1, int, "step schedule: epochs per decay"),
        "lr_gamma": (0.1, float, "step schedule: decay factor"),
        "lr_min": (0.0, float, "cosine schedule: the floor"),
        "lr_warmup": (0, int, "sgd, adam: linear warm-up over this many steps (0: none)"),
        "memory": (10, int, "L-BFGS memory"),
        "gtol": (1e-9, float, "stop when ||gradient|| < gtol"),
        "ls_trials": (20, int, "most Armijo backtracking trials per iteration"),
        "ls_factor": (0.5, float, "backtracking factor"),
        "armijo_c": (1e-4, float, "Armijo sufficient-decrease constant"),
        "stall_steps": (3, int, "consecutive iterations whose line search fails before the run stops "
                        "as stalled"),
    },
    "nested": {
        "schedule": ([], "ints", "optimisation iterations per nested level, coarsest first (empty: not nested)"),
        "refine": (2, int, "layer refinement factor between nested levels"),
        "interpolation": ("constant", str, "constant | linear interpolation of the weights in time"),
        "boost_iterations": (3, int, "after each refinement, this many optimisation iterations ..."),
        "boost_d": (10, int, "... use this many MGRIT iterations (paper: 10 for 3 iterations)"),
        "accuracy_threshold": (101.0, float, "move to the next level early once training accuracy passes this (%)"),
        "states": ("interpolate", str, "interpolate | zero: initial guess of the MGRIT states after a refinement "
                   "(interpolated like the weights, or zeros)"),
        "starts": (1, int, "initialisations tried on the coarsest level; the best by training objective "
                   "continues (1: the paper's algorithm; braidnet.starts)"),
        "start_iterations": (40, int, "iterations each start trains before the choice (counted in schedule[0])"),
        "calibrate": (2, int, "nested runs: finest-level iterations timed and counted first to set the work unit (0: none)"),
        "work_unit_seconds": (0.0, float, "if > 0: the wall-clock work unit (s per finest-level iteration), not calibrated"),
        "work_unit_steps": (0.0, float, "if > 0: the counted work unit (weighted layer steps per finest-level iteration)"),
    },
    "output": {
        "dir": ("runs/run", str, "output folder (history.csv, config.json, weights, checkpoints, plots)"),
        "checkpoint_every": (10, int, "write a checkpoint every k optimisation iterations (0: only at the end)"),
        "progress": (True, bool, "one progress line per iteration on rank 0"),
        "validate_every": (1, int, "validation forward pass every k iterations"),
        "history": ("step", str, "step (a history row and progress line per optimisation step) | epoch "
                    "(mini-batches: one per epoch, with the epoch's mean batch objective)"),
    },
}

CHOICES = {
    ("data", "dataset"): ("peaks", "indian_pines", "lpt_text", "digits", "idx"),
    ("network", "kind"): ("dense", "conv"),
    ("network", "classifier"): ("dense", "pool"),
    ("network", "activation"): ("tanh", "relu", "smoothrelu"),
    ("network", "opening"): ("dense", "pad", "replicate", "mnist", "conv"),
    ("network", "bias"): ("channel", "scalar"),
    ("network", "dtype"): ("float64", "float32"),
    ("optimizer", "method"): ("lbfgs", "bfgs", "sd", "sgd", "adam"),
    ("optimizer", "warm"): ("sample", "batch", "zero"),
    ("optimizer", "lr_schedule"): ("constant", "step", "cosine"),
    ("output", "history"): ("step", "epoch"),
    ("nested", "interpolation"): ("constant", "linear"),
    ("nested", "states"): ("interpolate", "zero"),
    ("braid", "skip"): ("first", "every", "off"),
    ("braid", "initial_guess"): ("constant", "zero"),
}


@dataclass(frozen=True)
class Range:
    """The numbers a key allows: ``low``/``high`` bounds (``None``: unbounded), each inclusive unless
    ``*_open``; ``or_zero``: 0 is allowed as well (an "off" value outside the interval)."""
    low: Optional[float] = None
    high: Optional[float] = None
    low_open: bool = False
    high_open: bool = False
    or_zero: bool = False

    def allows(self, value: float) -> bool:
        if self.or_zero and value == 0:
            return True
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        if self.high is not None and (value >= self.high if self.high_open else value > self.high):
            return False
        return True

    def text(self) -> str:
        """What is allowed, as in ``must be <text>``: ``>= 1``, ``> 0``, ``> 0 and < 1``, ``0 or > 1``."""
        parts = []
        if self.low is not None:
            parts.append(f"{'>' if self.low_open else '>='} {_number(self.low)}")
        if self.high is not None:
            parts.append(f"{'<' if self.high_open else '<='} {_number(self.high)}")
        text = " and ".join(parts) or "any number"
        return f"0 or {text}" if self.or_zero else text


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def at_least(low: float) -> Range:
    return Range(low)


def above(low: float) -> Range:
    return Range(low, low_open=True)


def inside(low: float, high: float) -> Range:
    """The open interval (low, high)."""
    return Range(low, high, low_open=True, high_open=True)


def from_to(low: float, high: float) -> Range:
    """The closed interval [low, high]."""
    return Range(low, high)


#: braid's per-level options (a list from ``nrelax_fine``) take at most this many levels
MAX_LEVELS = 64

#: (section, key) -> the numbers it allows, for every int and float key: what its consumer needs
#: (braidnet.resnet: T > 0, weights and scales >= 0; braidnet.optim: ls_factor and c1 in (0, 1), counts
#: >= 1; braidnet.braid: cfactor >= 2, levels, relaxation; seeds >= 0, as numpy's SeedSequence takes
#: non-negative integers only; braid.drop: 0 (off) or a factor > 1, since a "drop" <= 1 stops at once).
RANGES: Dict[Tuple[str, str], Range] = {
    ("data", "n_train"): at_least(1), ("data", "n_val"): at_least(0), ("data", "seed"): at_least(0),
    ("network", "width"): at_least(1), ("network", "layers"): at_least(1),
    ("network", "T"): above(0), ("network", "gamma_tik"): at_least(0), ("network", "gamma_ddt"): at_least(0),
    ("network", "gamma_class"): at_least(0), ("network", "init_opening"): at_least(0),
    ("network", "init_layers"): at_least(0), ("network", "init_classifier"): at_least(0),
    ("network", "seed"): at_least(0), ("network", "kernel_size"): at_least(1),
    ("braid", "max_levels"): from_to(1, MAX_LEVELS), ("braid", "cfactor"): at_least(2),
    ("braid", "nrelax"): at_least(0), ("braid", "nrelax_fine"): at_least(-1), ("braid", "min_coarse"): at_least(1),
    ("braid", "iterations"): at_least(1), ("braid", "drop"): Range(1, low_open=True, or_zero=True),
    ("braid", "abs_tol"): at_least(0), ("braid", "max_iter"): at_least(1),
    ("optimizer", "iterations"): at_least(0), ("optimizer", "memory"): at_least(1),
    ("optimizer", "gtol"): at_least(0), ("optimizer", "ls_trials"): at_least(1),
    ("optimizer", "ls_factor"): inside(0, 1), ("optimizer", "armijo_c"): inside(0, 1),
    ("optimizer", "stall_steps"): at_least(1),
    ("optimizer", "batch_size"): at_least(0), ("optimizer", "epochs"): at_least(0),
    ("optimizer", "batch_seed"): at_least(0), ("optimizer", "lr"): above(0),
    ("optimizer", "momentum"): Range(0, 1, high_open=True), ("optimizer", "beta1"): Range(0, 1, high_open=True),
    ("optimizer", "beta2"): Range(0, 1, high_open=True), ("optimizer", "eps"): above(0),
    ("optimizer", "lr_step_size"): at_least(1), ("optimizer", "lr_gamma"): above(0),
    ("optimizer", "lr_min"): at_least(0), ("optimizer", "lr_warmup"): at_least(0),
    ("nested", "refine"): at_least(2), ("nested", "boost_iterations"): at_least(0), ("nested", "boost_d"): at_least(1),
    ("nested", "accuracy_threshold"): at_least(0), ("nested", "starts"): at_least(1),
    ("nested", "start_iterations"): at_least(1), ("nested", "calibrate"): at_least(0),
    ("nested", "work_unit_seconds"): at_least(0), ("nested", "work_unit_steps"): at_least(0),
    ("output", "checkpoint_every"): at_least(0), ("output", "validate_every"): at_least(1),
    ("parallel", "data"): at_least(1),
}

#: string keys that must not be empty
NONEMPTY: FrozenSet[Tuple[str, str]] = frozenset({("output", "dir")})

#: The keys a resumed run (``--resume``) may change: where and how often it writes, how long it runs and
#: when it stops.  Every other key defines the model, the data or the algorithm and must be equal
#: (:func:`resume_conflicts`).  ``nested.schedule`` may change only positionally (same number of levels,
#: finished levels unchanged, the current level not shorter than the checkpoint's iteration): the
#: training code checks that, as it knows the checkpoint's position.
RESUMABLE: FrozenSet[Tuple[str, str]] = frozenset(
    {("output", key) for key in SCHEMA["output"]}
    | {("parallel", "data")}           # how the ranks share the work, not what is computed
    | {("optimizer", "iterations"), ("optimizer", "epochs"), ("optimizer", "gtol"), ("optimizer", "stall_steps"),
       ("nested", "accuracy_threshold"), ("nested", "schedule")})

Config = Dict[str, Dict[str, Any]]


def defaults() -> Config:
    """The configuration with every key at its default."""
    return {s: {k: copy.deepcopy(v[0]) for k, v in keys.items()} for s, keys in SCHEMA.items()}


def _typed(section: str, key: str, value: Any) -> Any:
    """Check one value against the schema and return it in its canonical Python type."""
    default, kind, _ = SCHEMA[section][key]
    name = f"{section}.{key}"
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{name} must be true or false, got {value!r}")
    elif kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name} must be an integer, got {value!r}")
    elif kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"{name} must be a finite number, got {value!r}")
        value = float(value)
        rng = RANGES.get((section, key))
        if value < 0 and (rng is None or not rng.allows(value)):    # numbers are never negative here
            stricter = "" if rng is None or rng == at_least(0) else f"; allowed: {rng.text()}"
            raise ConfigError(f"{name} must be >= 0, got {value!r}{stricter}")
    elif kind is str:
        if not isinstance(value, str):
            raise ConfigError(f"{name} must be a string, got {value!r}")
    elif kind == "ints":
        if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                                                  for v in value):
            raise ConfigError(f"{name} must be a list of integers >= 0, got {value!r}")
    choices = CHOICES.get((section, key))
    if choices and value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
    if kind is str and (section, key) in NONEMPTY and not value.strip():
        raise ConfigError(f"{name} must be a non-empty string, got {value!r}")
    rng = RANGES.get((section, key))
    if rng is not None and not rng.allows(value):
        raise ConfigError(f"{name} must be {rng.text()}, got {value!r}")
    return value


def _merge(cfg: Config, updates: Dict[str, Any], origin: str) -> None:
    for section, keys in updates.items():
        if section not in SCHEMA:
            raise ConfigError(f"unknown section [{section}] in {origin}; known: {', '.join(SCHEMA)}")
        if not isinstance(keys, dict):
            raise ConfigError(f"[{section}] in {origin} must be a table of keys")
        for key, value in keys.items():
            if key not in SCHEMA[section]:
                raise ConfigError(f"unknown key {section}.{key} in {origin}; known keys of [{section}]: "
                                  f"{', '.join(SCHEMA[section])}")
            cfg[section][key] = _typed(section, key, value)


def parse_override(text: str) -> Dict[str, Dict[str, Any]]:
    """``section.key=value`` (value a TOML literal; bare words are taken as strings)."""
    if "=" not in text or "." not in text.split("=", 1)[0]:
        raise ConfigError(f"--set expects section.key=value, got {text!r}")
    name, raw = text.split("=", 1)
    section, key = name.strip().split(".", 1)
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return {section: {key: value}}


def check(cfg: Config, nprocs: int = 1) -> Config:
    """Cross-key checks that need more than one value (and the number of ranks)."""
    net, braid, nested = cfg["network"], cfg["braid"], cfg["nested"]
    layers = net["layers"]
    schedule = nested["schedule"]
    coarsest = layers
    if schedule:
        r = nested["refine"]
        if layers % r ** (len(schedule) - 1):
            raise ConfigError(f"network.layers={layers} must be divisible by nested.refine^(levels-1) = "
                              f"{r ** (len(schedule) - 1)} for {len(schedule)} nested levels")
        coarsest = layers // r ** (len(schedule) - 1)
    if nested["starts"] > 1:
        if not schedule:
            raise ConfigError(f"nested.starts={nested['starts']} needs a nested schedule (nested.schedule is "
                              f"empty): the starts are tried on the coarsest nested level")
        if nested["start_iterations"] > schedule[0]:
            raise ConfigError(f"nested.start_iterations={nested['start_iterations']} exceeds "
                              f"nested.schedule[0]={schedule[0]}, which counts the chosen start's iterations; "
                              f"use at most {schedule[0]}")
    Q = cfg["parallel"]["data"]
    if nprocs % Q:
        raise ConfigError(f"parallel.data={Q} data-parallel groups do not divide the {nprocs} ranks; use a "
                          f"divisor of {nprocs}")
    P = nprocs // Q                      # the ranks that share the layers
    if Q > cfg["data"]["n_train"] or 0 < cfg["data"]["n_val"] < Q:
        raise ConfigError(f"parallel.data={Q} groups need at least one sample each: data.n_train="
                          f"{cfg['data']['n_train']}, data.n_val={cfg['data']['n_val']}")
    if P > coarsest + 1:
        per = f" per data-parallel group (parallel.data={Q})" if Q > 1 else ""
        raise ConfigError(f"{P} ranks{per} are more than the {coarsest + 1} time points of the "
                          f"{coarsest}-layer network allow; use at most {coarsest + 1} ranks{per} or more layers")
    if braid["max_levels"] > 1 and braid["cfactor"] > coarsest:
        raise ConfigError(f"braid.cfactor={braid['cfactor']} does not fit a {coarsest}-layer network "
                          f"(it must be <= the number of layers, or set braid.max_levels=1)")
    if cfg["optimizer"]["method"] == "bfgs" and P > 1:
        raise ConfigError("optimizer.method='bfgs' keeps a dense matrix over the whole parameter vector and "
                          "runs on one rank only; use 'lbfgs' with several ranks")
    _check_batches(cfg, Q)
    if cfg["data"]["dataset"] == "lpt_text" and not cfg["data"]["path"]:
        raise ConfigError("data.dataset='lpt_text' needs data.path, the folder of the *.dat files")
    _check_network(cfg)
    if net["opening"] == "pad" and cfg["data"]["dataset"] == "indian_pines" and net["width"] < 200:
        raise ConfigError(f"network.width={net['width']} is smaller than the 200 input bands of indian_pines; "
                          f"zero-padding needs width >= number of features (use opening = 'dense')")
    return cfg


#: the stochastic optimisers (a learning-rate step, no line search)
STOCHASTIC = ("sgd", "adam")


def _check_batches(cfg: Config, Q: int) -> None:
    """Mini-batch keys against each other, the data and the data-parallel groups."""
    opt, nested = cfg["optimizer"], cfg["nested"]
    B, n = opt["batch_size"], cfg["data"]["n_train"]
    if B > n:
        raise ConfigError(f"optimizer.batch_size={B} exceeds data.n_train={n}; use at most {n} (0: full batch)")
    if 0 < B < Q:
        raise ConfigError(f"optimizer.batch_size={B} cannot be split over parallel.data={Q} data-parallel groups; "
                          f"use a batch of at least {Q} samples")
    if opt["epochs"] > 0 and nested["schedule"]:
        raise ConfigError(f"optimizer.epochs={opt['epochs']} is for a non-nested run; nested.schedule counts "
                          f"optimisation steps per level (set optimizer.epochs=0)")
    if opt["epochs"] > 0 and not 0 < B < n:
        raise ConfigError(f"optimizer.epochs={opt['epochs']} needs mini-batches (0 < optimizer.batch_size < "
                          f"data.n_train={n}); a full-batch run counts optimizer.iterations")
    if opt["nesterov"] and opt["momentum"] == 0:
        raise ConfigError("optimizer.nesterov=true needs optimizer.momentum > 0")
    if opt["lr_min"] >= opt["lr"] and opt["lr_schedule"] == "cosine":
        raise ConfigError(f"optimizer.lr_min={opt['lr_min']} must be below optimizer.lr={opt['lr']} "
                          f"for the cosine schedule")
    if cfg["output"]["history"] == "epoch" and not 0 < B < n:
        raise ConfigError("output.history='epoch' needs mini-batches (0 < optimizer.batch_size < data.n_train); "
                          "a full-batch run has a row per optimisation step")
    if 0 < B < n and nested["starts"] > 1:
        raise ConfigError(f"nested.starts={nested['starts']} is not available with mini-batches "
                          f"(optimizer.batch_size={B}); use nested.starts=1")


#: openings of each network.kind
OPENINGS_OF = {"dense": ("dense", "pad"), "conv": ("replicate", "mnist", "conv")}
#: data sets whose samples are images (network.image_shape may stay empty)
IMAGE_DATASETS = ("digits", "idx")


def _check_network(cfg: Config) -> None:
    """The layer kind's keys agree with each other and with the data (docs/design.md section 3)."""
    net, data = cfg["network"], cfg["data"]
    kind = net["kind"]
    if net["opening"] not in OPENINGS_OF[kind]:
        raise ConfigError(f"network.opening={net['opening']!r} is not an opening of network.kind={kind!r}; "
                          f"use one of {', '.join(OPENINGS_OF[kind])}")
    if kind == "dense":
        if net["classifier"] != "dense":
            raise ConfigError(f"network.classifier={net['classifier']!r} needs network.kind='conv'")
    else:
        if net["dtype"] != "float64":
            raise ConfigError(f"network.dtype={net['dtype']!r} is for dense networks only: network.kind='conv' "
                              f"needs network.dtype='float64'")
        if net["kernel_size"] % 2 == 0:
            raise ConfigError(f"network.kernel_size must be odd, got {net['kernel_size']}")
        shape = net["image_shape"]
        if shape and (len(shape) != 2 or min(shape) < 1):
            raise ConfigError(f"network.image_shape must be [H, W] with H, W >= 1, got {shape!r}")
        if not shape and data["dataset"] not in IMAGE_DATASETS:
            raise ConfigError(f"network.kind='conv' on data.dataset={data['dataset']!r} needs network.image_shape "
                              f"= [H, W] (only {' and '.join(IMAGE_DATASETS)} bring their own)")
    if data["dataset"] == "idx":
        for key in ("images", "labels"):
            if not data[key]:
                raise ConfigError(f"data.dataset='idx' needs data.{key}, the training {key}' IDX file")
        if bool(data["val_images"]) != bool(data["val_labels"]):
            raise ConfigError("data.val_images and data.val_labels go together: give both or neither")


def _read_toml(path: str) -> Dict[str, Any]:
    """The TOML file at ``path``; every way of failing is one ConfigError line naming the path."""
    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a folder, not a TOML file") from None
    except PermissionError:
        raise ConfigError(f"config file {path} cannot be read: permission denied") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"config file {path} is not UTF-8 text (byte {e.start}: "
                          f"{e.object[e.start:e.start + 1]!r}); a TOML file must be UTF-8") from None
    except OSError as e:
        raise ConfigError(f"config file {path} cannot be read: {e.strerror or e}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path} is not valid TOML: {e}") from None


def load_config(path: Optional[str] = None, overrides: Iterable[str] = (), nprocs: int = 1) -> Config:
    """Defaults, then the TOML file, then the overrides; checked. Raises ConfigError."""
    cfg = defaults()
    if path is not None:
        _merge(cfg, _read_toml(path), path)
    for text in overrides:
        _merge(cfg, parse_override(text), "--set")
    return check(cfg, nprocs)


def to_json(cfg: Config) -> str:
    """The resolved configuration, as written next to the results."""
    return json.dumps(cfg, indent=2, sort_keys=False)


RESUME_NOTE = "(may change on --resume)"


def describe() -> str:
    """Every section and key with its default and meaning, as TOML comments; the keys a resumed run may
    change are marked with :data:`RESUME_NOTE`."""
    lines: List[str] = [
        "# braidnet configuration: every key at its default (a valid TOML file; every key optional).",
        f"# --resume continues a run with the keys marked {RESUME_NOTE} free to change; every other",
        "# key defines the model, the data or the algorithm and must equal the checkpointed run's",
        "# (nested.schedule only with the same number of levels and the finished levels unchanged).",
        "",
    ]
    for section, keys in SCHEMA.items():
        lines.append(f"[{section}]")
        for key, (default, _, text) in keys.items():
            rng = RANGES.get((section, key))
            allowed = f" [{rng.text()}]" if rng is not None else ""
            free = f" {RESUME_NOTE}" if (section, key) in RESUMABLE else ""
            lines.append(f"{key} = {json.dumps(default)}  # {text}{allowed}{free}")
        lines.append("")
    return "\n".join(lines)


def resume_conflicts(old: Config, new: Config) -> List[Tuple[str, Any, Any]]:
    """``(section.key, old value, new value)`` of every key, in schema order, that a resumed run must
    keep (not in :data:`RESUMABLE`) but ``new`` changes.

    ``old`` is the checkpointed run's configuration (its config.json: sections and keys it lacks, from
    an older braidnet, count as their defaults; sections outside the schema, such as ``run``, are
    ignored); ``new`` the resolved configuration of the resuming run.
    """
    conflicts: List[Tuple[str, Any, Any]] = []
    for section, keys in SCHEMA.items():
        old_keys = old.get(section)
        old_keys = old_keys if isinstance(old_keys, dict) else {}
        new_keys = new.get(section) or {}
        for key, (default, _, _) in keys.items():
            if (section, key) in RESUMABLE:
                continue
            a, b = old_keys.get(key, default), new_keys.get(key, default)
            if not _same(a, b):
                conflicts.append((f"{section}.{key}", a, b))
    return conflicts


def _same(a: Any, b: Any) -> bool:
    """Equal as configuration values: 5 == 5.0, but true != 1 (a bool is no number here)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b
