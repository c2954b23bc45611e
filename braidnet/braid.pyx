# cython: language_level=3
"""The MGRIT core as a Python object.

:class:`Core` wraps one ``braid_Core``: ``Core(app, tstart, tstop, ntime, comm, **options)`` checks its
arguments in Python (identically on every rank, before any MPI call), ``drive()`` runs the solve with
the GIL released, and the results are read back as Python values.

Applications come in two kinds:

* a plain Python object whose methods work on numpy arrays (see :class:`Core` for the methods);
* a Cython subclass of :class:`VectorApp` (``from braidnet.braid cimport VectorApp``), whose
  vectors are C blocks of doubles and whose callbacks run without the GIL (see ``braid.pxd``).

Exceptions raised inside callbacks are stored on the application, the callback returns a non-zero
code, the core aborts the solve on every rank, and ``drive()`` re-raises the stored exception on the
rank where it happened; the other ranks raise :class:`BraidError` naming that rank.
"""
cimport cython
from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.exc cimport PyErr_Occurred
from cpython.ref cimport PyObject, Py_INCREF, Py_XDECREF, Py_REFCNT
from libc.math cimport sqrt
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy

from mpi4py.libmpi cimport MPI_Comm, MPI_Finalized, MPI_Initialized
from mpi4py.MPI cimport Comm as _MPIComm

from braidnet.libbraid cimport *

import math
import numbers
import time

import numpy as np
from mpi4py import MPI

__all__ = ["BraidError", "CALLBACK_ERROR", "Core", "DriveResult", "StepStatus", "AccessStatus",
           "VectorApp", "check_app", "check_options", "error_string", "BUNDLED_CORE", "TRACE_AVAILABLE",
           "TRACE_DTYPE", "TRACE_KINDS"]

#: True when built against braidnet's own core, False against LLNL XBraid.
BUNDLED_CORE = bool(BRAIDNET_CORE_IS_BUNDLED)
#: Whether :meth:`Core.set_trace` works: the event trace is an extension of the bundled core.
TRACE_AVAILABLE = BUNDLED_CORE
#: The fields of :attr:`Core.trace` (braid_TraceEvent in xbraid/braid.h, seven braid_Int).
TRACE_DTYPE = np.dtype([("kind", np.int32), ("level", np.int32), ("index", np.int32), ("peer", np.int32),
                        ("bytes", np.int32), ("iter", np.int32), ("drive", np.int32)])
#: Event kinds of :attr:`Core.trace`.
TRACE_KINDS = {"step": int(BRAID_TRACE_STEP), "send": int(BRAID_TRACE_SEND), "recv": int(BRAID_TRACE_RECV),
               "reduce": int(BRAID_TRACE_REDUCE)}

# One file per concern (as mpi4py builds MPI.pyx), in dependency order.
include "_braid/errors.pxi"
include "_braid/status.pxi"
include "_braid/options.pxi"
include "_braid/box.pxi"
include "_braid/pyapp.pxi"
include "_braid/vectorapp.pxi"
include "_braid/core.pxi"
include "_braid/check.pxi"
