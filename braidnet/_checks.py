"""Argument checks shared by the library's modules, so that a bad count reads the same everywhere."""
from __future__ import annotations

import numbers

import numpy as np


def count(value, name: str, lo: int = 0) -> int:
    """``value`` as an int if it is an integer >= ``lo`` (a bool is not), else a ValueError naming it."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or value < lo:
        raise ValueError(f"{name} must be an integer >= {lo}, got {name}={value!r}")
    return int(value)
