"""Training configuration: a TOML file with the sections below, every key optional.

``SCHEMA`` is the single source of truth: each key's default, type and meaning.  ``load_config``
reads a file, applies ``--set section.key=value`` overrides (values parsed as TOML literals) and
checks everything before any MPI work starts, so that every rank fails the same way with one clear
message.  ``describe()`` prints the documented defaults (``braidnet config``).
"""
from __future__ import annotations

import copy
import json
import math
import sys
from typing import Any, Dict, Iterable, List, Optional, Tuple

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python < 3.11 only
    import tomli as tomllib


class ConfigError(ValueError):
    """A configuration value is unknown, of the wrong type or out of range."""


# section -> key -> (default, type, help).  Types: int, float, bool, str, "ints" (list of ints).
SCHEMA: Dict[str, Dict[str, Tuple[Any, Any, str]]] = {
    "data": {
        "dataset": ("peaks", str, "peaks | indian_pines | lpt_text (the paper code's *.dat files in data.path)"),
        "n_train": (5000, int, "training samples (peaks) / pixels (indian_pines)"),
        "n_val": (200, int, "validation samples"),
        "seed": (0, int, "seed of the data draw / split"),
        "path": ("", str, "folder of the lpt_text files"),
    },
    "network": {
        "width": (8, int, "channels of the residual layers"),
        "layers": (64, int, "residual layers of the finest network"),
        "T": (5.0, float, "final time; step size h = T / layers"),
        "activation": ("smoothrelu", str, "tanh | relu | smoothrelu"),
        "opening": ("dense", str, "dense | pad (zero-padding, no parameters)"),
        "bias": ("channel", str, "channel (one per channel) | scalar (one per layer, as LPT)"),
        "gamma_tik": (1e-7, float, "Tikhonov weight on the residual layers and the opening"),
        "gamma_ddt": (1e-7, float, "weight of the time-derivative regulariser"),
        "gamma_class": (1e-7, float, "Tikhonov weight on the classifier"),
        "init_opening": (1e-3, float, "scale of the uniform [0,1) initial opening weights"),
        "init_layers": (0.0, float, "scale w_i of the initial residual weights (paper: 0 or 1e-6)"),
        "init_classifier": (1e-3, float, "scale of the initial classifier weights"),
        "seed": (1, int, "seed of the weight initialisation"),
    },
    "braid": {
        "max_levels": (3, int, "MGRIT levels (1 = layer-serial)"),
        "cfactor": (4, int, "coarsening factor"),
        "nrelax": (1, int, "0 = F-relaxation, 1 = FCF"),
        "nrelax_fine": (-1, int, "relaxation on the finest level only (-1: as nrelax)"),
        "min_coarse": (2, int, "smallest coarse grid"),
        "fmg": (False, bool, "F-cycles instead of V-cycles"),
        "iterations": (2, int, "MGRIT iterations d of the primal and of the adjoint solve per optimisation iteration"),
        "drop": (0.0, float, "if > 0: instead of d fixed iterations, iterate until the residual dropped by this factor (paper: 1e4)"),
        "abs_tol": (0.0, float, "if > 0: also stop each solve once the residual is below this"),
        "max_iter": (50, int, "cap on the iterations of one solve in the adaptive modes"),
    },
    "optimizer": {
        "method": ("lbfgs", str, "lbfgs | bfgs (dense; one rank only) | sd (steepest descent)"),
        "iterations": (188, int, "optimisation iterations (non-nested); see nested.schedule"),
        "memory": (10, int, "L-BFGS memory"),
        "gtol": (1e-9, float, "stop when ||gradient|| < gtol"),
        "ls_trials": (20, int, "most Armijo backtracking trials per iteration"),
        "ls_factor": (0.5, float, "backtracking factor"),
        "armijo_c": (1e-4, float, "Armijo sufficient-decrease constant"),
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
    },
}

CHOICES = {
    ("data", "dataset"): ("peaks", "indian_pines", "lpt_text"),
    ("network", "activation"): ("tanh", "relu", "smoothrelu"),
    ("network", "opening"): ("dense", "pad"),
    ("network", "bias"): ("channel", "scalar"),
    ("optimizer", "method"): ("lbfgs", "bfgs", "sd"),
    ("nested", "interpolation"): ("constant", "linear"),
    ("nested", "states"): ("interpolate", "zero"),
}

# (section, key) -> smallest allowed value
MINIMUM = {
    ("data", "n_train"): 1, ("data", "n_val"): 0, ("network", "width"): 1, ("network", "layers"): 1,
    ("braid", "max_levels"): 1, ("braid", "cfactor"): 2, ("braid", "nrelax"): 0, ("braid", "nrelax_fine"): -1,
    ("braid", "min_coarse"): 1, ("braid", "iterations"): 1, ("braid", "max_iter"): 1,
    ("optimizer", "iterations"): 0, ("optimizer", "memory"): 1, ("optimizer", "ls_trials"): 1,
    ("nested", "refine"): 2, ("nested", "boost_iterations"): 0, ("nested", "calibrate"): 0, ("nested", "boost_d"): 1,
    ("nested", "starts"): 1, ("nested", "start_iterations"): 1,
    ("output", "checkpoint_every"): 0, ("output", "validate_every"): 1,
}

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
        if value < 0:
            raise ConfigError(f"{name} must be >= 0, got {value!r}")
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
    low = MINIMUM.get((section, key))
    if low is not None and value < low:
        raise ConfigError(f"{name} must be >= {low}, got {value!r}")
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
    if nprocs > coarsest + 1:
        raise ConfigError(f"{nprocs} ranks are more than the {coarsest + 1} time points of the "
                          f"{coarsest}-layer network allow; use at most {coarsest + 1} ranks or more layers")
    if braid["max_levels"] > 1 and braid["cfactor"] > coarsest:
        raise ConfigError(f"braid.cfactor={braid['cfactor']} does not fit a {coarsest}-layer network "
                          f"(it must be <= the number of layers, or set braid.max_levels=1)")
    if cfg["optimizer"]["method"] == "bfgs" and nprocs > 1:
        raise ConfigError("optimizer.method='bfgs' keeps a dense matrix over the whole parameter vector and "
                          "runs on one rank only; use 'lbfgs' with several ranks")
    if net["opening"] == "pad" and cfg["data"]["dataset"] == "indian_pines" and net["width"] < 200:
        raise ConfigError(f"network.width={net['width']} is smaller than the 200 input bands of indian_pines; "
                          f"zero-padding needs width >= number of features (use opening = 'dense')")
    return cfg


def load_config(path: Optional[str] = None, overrides: Iterable[str] = (), nprocs: int = 1) -> Config:
    """Defaults, then the TOML file, then the overrides; checked. Raises ConfigError."""
    cfg = defaults()
    if path is not None:
        try:
            with open(path, "rb") as f:
                data = tomllib.load(f)
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{path} is not valid TOML: {e}") from None
        _merge(cfg, data, path)
    for text in overrides:
        _merge(cfg, parse_override(text), "--set")
    return check(cfg, nprocs)


def to_json(cfg: Config) -> str:
    """The resolved configuration, as written next to the results."""
    return json.dumps(cfg, indent=2, sort_keys=False)


def describe() -> str:
    """Every section and key with its default and meaning, as TOML comments."""
    lines: List[str] = []
    for section, keys in SCHEMA.items():
        lines.append(f"[{section}]")
        for key, (default, _, text) in keys.items():
            lines.append(f"{key} = {json.dumps(default)}  # {text}")
        lines.append("")
    return "\n".join(lines)
