"""braidnet: layer-parallel training of deep residual networks with multigrid in time (MGRIT).

Submodules (imported on first use, so that ``import braidnet`` does not start MPI):

- :mod:`braidnet.braid`: the MGRIT core as a Python object (``Core``), for any time-stepping problem
- :mod:`braidnet.resnet`: the residual network, its layer-serial forward and backward passes
- :mod:`braidnet.optim`: L-BFGS, BFGS, steepest descent, SGD and Adam on a flat parameter vector
- :mod:`braidnet.datasets`: the peaks and Indian Pines data sets
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "Core": "braidnet.braid",
    "BraidError": "braidnet.braid",
    "check_app": "braidnet.braid",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'braidnet' has no attribute {name!r}")


__all__ = ["__version__", *_LAZY]
