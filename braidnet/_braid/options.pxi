# Options: every argument and option of a Core is checked here, in Python, identically on every
# rank and before any MPI call.  (Included by braidnet/braid.pyx.)

_MAX_LEVEL_INDEX = 64     # per-level setters take 0 <= level < 64
_TNORMS = {1: 1, 2: 2, 3: 3, "l1": 1, "l2": 2, "linf": 3}


def _is_int(x) -> bool:
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


def _int_option(name, value, lo, hi=None, what=None):
    if not _is_int(value) or value < lo or (hi is not None and value > hi):
        allowed = what or (f"an integer >= {lo}" if hi is None else f"an integer from {lo} to {hi}")
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    return int(value)


def _bool_option(name, value):
    if isinstance(value, (bool, np.bool_)) or (_is_int(value) and value in (0, 1)):
        return bool(value)
    raise ValueError(f"{name} must be True/False (or 0/1), got {value!r}")


def _real(name, value):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite real number, got {value!r}")
    return float(value)


def _per_level(name, value, lo):
    """An int for every level, or a list of ints per level from level 0."""
    what = f"an integer >= {lo} or a non-empty list of them (one per level from level 0)"
    if isinstance(value, (list, tuple, np.ndarray)):
        if not 0 < len(value) <= _MAX_LEVEL_INDEX:
            raise ValueError(f"{name} must be {what}, at most {_MAX_LEVEL_INDEX} long; got {value!r}")
        return [_int_option(f"{name}[{l}]", v, lo, what=f"an integer >= {lo}") for l, v in enumerate(value)]
    return _int_option(name, value, lo, what=what)


_OPTIONS = {
    "max_levels": lambda v: _int_option("max_levels", v, 1),
    "min_coarse": lambda v: _int_option("min_coarse", v, 1),
    "cfactor": lambda v: _per_level("cfactor", v, 2),
    "nrelax": lambda v: _per_level("nrelax", v, 0),
    "abs_tol": lambda v: _nonneg("abs_tol", v),
    "rel_tol": lambda v: _nonneg("rel_tol", v),
    "max_iter": lambda v: _int_option("max_iter", v, 0),
    "fmg": lambda v: _bool_option("fmg", v),
    "nfmg": lambda v: _int_option("nfmg", v, -1, what="an integer >= 0 (the one V-cycle among F-cycles), or -1 (F-cycles always)"),
    "skip": lambda v: _skip(v),
    "final_fc_relax": lambda v: _bool_option("final_fc_relax", v),
    "storage": lambda v: _int_option("storage", v, -1,
                                     what="-1 (store C-points only) or a level >= 0 from which all points are stored"),
    "tnorm": lambda v: _tnorm(v),
    "print_level": lambda v: _int_option("print_level", v, 0, 2),
    "access_level": lambda v: _int_option("access_level", v, 0, 3),
    "seq_soln": lambda v: int(_bool_option("seq_soln", v)),
}


def _nonneg(name, value):
    x = _real(name, value)
    if x < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return x


# skip: the words and what they normalise to (0 and 1 as before; "every" is kept as a word)
_SKIPS = {"off": 0, "first": 1, "every": "every"}


def _skip(value):
    if isinstance(value, str) and value in _SKIPS:
        return _SKIPS[value]
    if isinstance(value, (bool, np.bool_)) or (_is_int(value) and value in (0, 1)):
        return int(value)
    raise ValueError(f"skip must be 0 or 'off' (never), 1 or 'first' (first drive only, default) or 'every' "
                     f"(every drive, as LLNL XBraid), got {value!r}")


def _tnorm(value):
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, str)) or value not in _TNORMS:
        raise ValueError(f"tnorm must be 1 or 'l1' (sum), 2 or 'l2' (default) or 3 or 'linf' (max), got {value!r}")
    return _TNORMS[value]


# (No annotations on the arguments: Cython would convert them before they are checked; see braid.pyi.)
def check_options(tstart, tstop, ntime, **options) -> dict:
    """Check a Core's time interval, step count and options as ``Core(...)`` does; return the options
    normalised (ints, floats, tnorm as 1/2/3, per-level values as lists).

    Pure Python: the same outcome on every rank, no MPI call.  Raises ``ValueError`` naming the
    first bad argument.  Callers that build Cores later (e.g. after MPI work) use it to fail early.
    """
    t0 = _real("tstart", tstart)
    t1 = _real("tstop", tstop)
    if t1 <= t0:
        raise ValueError(f"tstop must be > tstart, got tstart={tstart!r}, tstop={tstop!r}")
    _int_option("ntime", ntime, 1, what="an integer >= 1 (number of time steps)")
    if ntime >= 2**31 - 1:
        raise ValueError(f"ntime must be < 2**31 - 1, got {ntime!r}")
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise ValueError(f"unknown option{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
                         f"allowed: {', '.join(sorted(_OPTIONS))}")
    opts = {name: _OPTIONS[name](value) for name, value in options.items()}
    if "abs_tol" in opts and "rel_tol" in opts:
        raise ValueError("give abs_tol or rel_tol, not both (the last one set would silently win)")
    return opts


# The options that shape the grid hierarchy: fixed once a core has been driven.
_GRID_OPTIONS = frozenset({"max_levels", "min_coarse", "cfactor", "storage", "seq_soln"})
