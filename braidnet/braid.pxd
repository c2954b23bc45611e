# cython: language_level=3
"""The C-level face of ``braidnet.braid`` that other Cython modules cimport.

A fast application is a subclass of :class:`VectorApp` whose vectors are contiguous blocks of
``size`` doubles, or of ``size`` floats when the subclass sets ``single = 1`` in ``__cinit__``.  The base class owns the vectors (allocation, copies, sums, norms, buffers: all
in C, without the GIL); the subclass supplies C functions for the time step and the initial guess
(and optionally access and norm) plus a ``ctx`` pointer to its own C data::

    from braidnet.braid cimport VectorApp, StepInfo, AccessInfo

    cdef struct MyData:
        double rate

    cdef int my_step(void *ctx, double *u, const double *ustop,
                     const StepInfo *info) noexcept nogil:
        u[0] = u[0] / (1.0 + (<MyData *>ctx).rate * (info.tstop - info.tstart))
        return 0

    cdef int my_init(void *ctx, double t, double *u) noexcept nogil:
        u[0] = 1.0 if t == 0.0 else 0.0
        return 0

    cdef class MyApp(VectorApp):
        cdef MyData data
        def __cinit__(self, double rate=1.0):
            self.data.rate = rate
            self.size = 1
            self.ctx = &self.data
            self.step_fn = my_step
            self.init_fn = my_init

A single-precision app (``single = 1``) gets float blocks behind the same ``double *`` pointers of
the callbacks below: its functions cast them to ``float *``.  The base class clones, sums and
ships float32 bytes (half the message volume) and accumulates the Euclidean norm in double.

The pointers and ``ctx`` are read again at the start of each ``Core.drive()``.  A callback returns 0
on success; any other value aborts the solve on every rank.  To raise a Python exception from a
callback, store it with :func:`store_error` (GIL held) or :func:`store_error_message` (no GIL
needed) using ``info.app`` and return their result.
"""
from braidnet.libbraid cimport braid_App, braid_Core, braid_PtFcnStep, braid_PtFcnInit, \
    braid_PtFcnClone, braid_PtFcnFree, braid_PtFcnSum, braid_PtFcnSpatialNorm, braid_PtFcnAccess, \
    braid_PtFcnBufSize, braid_PtFcnBufPack, braid_PtFcnBufUnpack


# What a fast step sees of the step status (filled from the braid_StepStatusGet* getters).
cdef struct StepInfo:
    double tstart      # the step goes from tstart ...
    double tstop       # ... to tstop (tstop - tstart = cf^level h on coarse levels)
    int level          # 0 = finest
    int index          # level-local index of tstart
    int iter           # iteration of the current drive
    int done           # 1 in the final sweep after convergence
    void *app          # the VectorApp (borrowed PyObject*), for store_error*
    const double *src  # NULL: the step starts from u.  Else (only for an app that sets
                       # steps_from_src) it starts from src, a vector the core just cloned into u
                       # whose copy was skipped: u holds garbage and the step must write all of it

# What a fast access sees of the access status.
cdef struct AccessInfo:
    double t           # time of the vector
    int index          # level-local index
    int level
    int iter
    int done           # 1 in the final access after the drive
    double residual    # last residual norm (-1 if none yet)
    void *app          # the VectorApp (borrowed PyObject*), for store_error*

# u <- Phi(u) from info.tstart to info.tstop, in place (from info.src into u where src is set);
# ustop (read only) is the core's current value at tstop (may alias u).  Never add the FAS
# right-hand side: the core does.
ctypedef int (*vstep_fn)(void *ctx, double *u, const double *ustop, const StepInfo *info) noexcept nogil
# Write the initial guess at time t (the initial condition at tstart) into u (size entries).
ctypedef int (*vinit_fn)(void *ctx, double t, double *u) noexcept nogil
# Look at u (read only).
ctypedef int (*vaccess_fn)(void *ctx, const double *u, const AccessInfo *info) noexcept nogil
# *norm = a spatial norm of u (size entries).  Default: Euclidean.
ctypedef int (*vnorm_fn)(void *ctx, const double *u, Py_ssize_t size, double *norm) noexcept nogil


# The callbacks and app pointer handed to braid_Init (and used by check_app).
cdef struct Callbacks:
    braid_App app
    braid_PtFcnStep step
    braid_PtFcnInit init
    braid_PtFcnClone clone
    braid_PtFcnFree free
    braid_PtFcnSum sum
    braid_PtFcnSpatialNorm norm
    braid_PtFcnAccess access
    braid_PtFcnBufSize bufsize
    braid_PtFcnBufPack bufpack
    braid_PtFcnBufUnpack bufunpack

# The fast app as the nogil callbacks see it: a copy of a VectorApp's fields, taken with the GIL.
cdef struct FastApp:
    Py_ssize_t size
    int single         # 1: the vectors hold floats, 0: doubles
    void *ctx
    vstep_fn step
    vinit_fn init
    vaccess_fn access
    vnorm_fn norm
    void *owner        # the VectorApp (borrowed PyObject*)
    int from_src       # the step honours StepInfo.src (VectorApp.steps_from_src)


cdef class VectorApp:
    """Base class of fast applications (see the module text)."""
    cdef readonly Py_ssize_t size   # values per vector
    cdef readonly bint single       # 1: the values are floats (float32), 0: doubles (default)
    cdef void *ctx                  # the subclass's C data, passed to every function below
    cdef vstep_fn step_fn           # required
    cdef vinit_fn init_fn           # required
    cdef vaccess_fn access_fn       # optional (NULL: no access)
    cdef vnorm_fn norm_fn           # optional (NULL: Euclidean norm)
    cdef public bint steps_from_src # optional: step_fn honours StepInfo.src (saves a clone's copy)
    cdef object _error              # exception stored by a callback, re-raised by drive()
    cdef int _check(self) except -1
    cdef int _raise(self, int code, str what) except -1


# Base of the two app boxes: what a Core (or check_app) needs from an application.
cdef class _Box:
    cdef Callbacks cb
    cdef object app
    cdef int refresh(self) except -1
    cdef object take_error(self)


cdef class Core:
    cdef braid_Core _core
    cdef _Box _box
    cdef object _comm
    cdef readonly object app
    cdef readonly double tstart
    cdef readonly double tstop
    cdef readonly int ntime
    cdef readonly dict options
    cdef int _driven
    cdef int _apply(self, dict opts) except -1
    cdef int _check_open(self) except -1
    cdef int _raise_failure(self, int ierr) except -1


# Store `exc` (an exception instance or class) on the VectorApp `app` (StepInfo.app or
# AccessInfo.app) unless one is stored already; return the non-zero code for the callback to
# return.  Call with the GIL held.
cdef int store_error(void *app, object exc) noexcept
# As store_error with RuntimeError(msg); callable without the GIL (it takes it).
cdef int store_error_message(void *app, const char *msg) noexcept nogil
