"""braidnet: layer-parallel training of deep residual networks with multigrid in time (MGRIT).

Submodules (imported on first use, so that ``import braidnet`` does not start MPI):

- :mod:`braidnet.braid`: the MGRIT core as a Python object (``Core``), for any time-stepping problem
- :mod:`braidnet.resnet`: the residual network, its layer-serial forward and backward passes
- :mod:`braidnet.optim`: L-BFGS, BFGS, steepest descent, SGD and Adam on a flat parameter vector
- :mod:`braidnet.datasets`: the peaks and Indian Pines data sets

:func:`build_info` says which version this is and which MGRIT core its ``braidnet.braid`` was built
with, without starting MPI.
"""
from __future__ import annotations

import importlib
from typing import Any, Dict

# The one place the version is written: pyproject.toml reads it (dynamic version), `braidnet --version`
# and build_info() report it.
__version__ = "0.1.0"

_LAZY = {
    "Core": "braidnet.braid",
    "BraidError": "braidnet.braid",
    "check_app": "braidnet.braid",
}


def build_info() -> Dict[str, Any]:
    """What this installation is: ``{"version", "core", "xbraid_dir", "blas"}``.

    ``core`` is ``"bundled"`` (braidnet's own MGRIT core, xbraid/) or ``"LLNL XBraid"`` (built with
    ``XBRAID_DIR`` set), ``xbraid_dir`` that folder (None for the bundled core).  Both are recorded
    when braidnet.braid is built (braidnet/_build.py, written by setup.py); reading them does not import
    braidnet.braid and does not start MPI.  Should that record be missing (a tree whose extensions were
    built by an older setup.py), the core is asked instead (``braidnet.braid.BUNDLED_CORE``, which
    initialises MPI) and ``xbraid_dir`` is None.  ``blas`` is the build string of the OpenBLAS the
    kernels call (version and the CPU kernels it chose here), read from ``braidnet._kernels``.
    """
    try:
        from braidnet import _build  # type: ignore[attr-defined]
        core, xbraid_dir = _build.CORE, _build.XBRAID_DIR
    except ImportError:
        from braidnet.braid import BUNDLED_CORE
        core, xbraid_dir = ("bundled" if BUNDLED_CORE else "LLNL XBraid"), None
    from braidnet._kernels import BLAS
    return {"version": __version__, "core": core, "xbraid_dir": xbraid_dir, "blas": BLAS}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'braidnet' has no attribute {name!r}")


__all__ = ["__version__", "build_info", *_LAZY]
