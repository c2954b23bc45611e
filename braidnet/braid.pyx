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
           "VectorApp", "check_app", "error_string", "BUNDLED_CORE"]

#: What a callback returns after storing a Python exception (negative: never a core error code).
CALLBACK_ERROR = -1
cdef int _CALLBACK_ERROR = -1

#: True when built against braidnet's own core, False against LLNL XBraid.
BUNDLED_CORE = bool(BRAIDNET_CORE_IS_BUNDLED)


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------

def error_string(code: int) -> str:
    """The core's English description of an error code."""
    return (<bytes>braid_ErrorString(code)).decode("ascii", "replace")


#: Error codes of the core, as :attr:`BraidError.code` carries them.
ERROR_MEMORY = BRAID_ERROR_MEMORY
ERROR_ARG = BRAID_ERROR_ARG
ERROR_DIVERGED = BRAID_ERROR_DIVERGED
ERROR_REMOTE = BRAID_ERROR_REMOTE
ERROR_MPI = BRAID_ERROR_MPI


class BraidError(RuntimeError):
    """A non-zero error code from the MGRIT core.

    ``code`` is the core's code (``BRAID_ERROR_*``, or a callback's own code); ``rank`` is the rank
    of the time communicator whose callback failed, when known.
    """

    def __init__(self, code: int, message: str | None = None, rank: int | None = None) -> None:
        self.code = int(code)
        self.rank = rank
        if message is None:
            message = error_string(code)
        self.message = message
        super().__init__(f"{message} (braid error code {self.code})")

    def __reduce__(self):
        # picklable (e.g. to gather errors over MPI) despite the non-standard constructor
        return type(self), (self.code, self.message, self.rank)


cdef int _raise_braid_error(braid_Int ierr) except -1 with gil:
    if PyErr_Occurred() != NULL:
        return -1   # a Python exception is already set: let it through unchanged
    raise BraidError(ierr)


cdef inline int CHKERR(braid_Int ierr) except -1 nogil:
    """Raise BraidError for a non-zero code (mpi4py's CHKERR shape)."""
    if ierr == 0:
        return 0
    _raise_braid_error(ierr)
    return -1


cdef bint _mpi_alive() noexcept nogil:
    cdef int initialized = 0, finalized = 1
    MPI_Initialized(&initialized)
    MPI_Finalized(&finalized)
    return initialized != 0 and finalized == 0


# ---------------------------------------------------------------------------------------------
# Status objects handed to Python callbacks (copies: they stay valid after the callback)
# ---------------------------------------------------------------------------------------------

@cython.final
cdef class StepStatus:
    """What a Python ``step`` learns about its call."""
    cdef readonly double tstart
    cdef readonly double tstop
    cdef readonly int level
    cdef readonly int nlevels
    cdef readonly int index
    cdef readonly int iter
    cdef readonly int done
    cdef readonly double tol

    def __repr__(self) -> str:
        return (f"StepStatus(tstart={self.tstart!r}, tstop={self.tstop!r}, level={self.level}, "
                f"index={self.index}, iter={self.iter}, done={self.done})")


@cython.final
cdef class AccessStatus:
    """What a Python ``access`` learns about its call."""
    cdef readonly double t
    cdef readonly int index
    cdef readonly int level
    cdef readonly int nlevels
    cdef readonly int iter
    cdef readonly int done
    cdef readonly double residual

    def __repr__(self) -> str:
        return (f"AccessStatus(t={self.t!r}, index={self.index}, level={self.level}, iter={self.iter}, "
                f"done={self.done}, residual={self.residual!r})")


cdef StepStatus _step_status(braid_StepStatus status):
    cdef StepStatus s = StepStatus.__new__(StepStatus)
    braid_StepStatusGetTstartTstop(status, &s.tstart, &s.tstop)
    braid_StepStatusGetLevel(status, &s.level)
    braid_StepStatusGetNLevels(status, &s.nlevels)
    braid_StepStatusGetTIndex(status, &s.index)
    braid_StepStatusGetIter(status, &s.iter)
    braid_StepStatusGetDone(status, &s.done)
    braid_StepStatusGetTol(status, &s.tol)
    return s


cdef AccessStatus _access_status(braid_AccessStatus status):
    cdef AccessStatus s = AccessStatus.__new__(AccessStatus)
    braid_AccessStatusGetTILD(status, &s.t, &s.iter, &s.level, &s.done)
    braid_AccessStatusGetTIndex(status, &s.index)
    braid_AccessStatusGetNLevels(status, &s.nlevels)
    braid_AccessStatusGetResidual(status, &s.residual)
    return s


@cython.final
cdef class DriveResult:
    """What one ``Core.drive()`` did."""
    cdef readonly int iterations          # iterations, iteration 0 included
    cdef readonly list residual_norms     # braid_GetRNorms' list (-1 where not available)
    cdef readonly int levels              # levels of the hierarchy
    cdef readonly double time             # wall-clock seconds of braid_Drive on this rank

    def __init__(self, int iterations, list residual_norms, int levels, double time) -> None:
        self.iterations = iterations
        self.residual_norms = residual_norms
        self.levels = levels
        self.time = time

    def __repr__(self) -> str:
        last = self.residual_norms[-1] if self.residual_norms else None
        return (f"DriveResult(iterations={self.iterations}, levels={self.levels}, "
                f"last residual={last!r}, time={self.time:.3g} s)")


# ---------------------------------------------------------------------------------------------
# The box: what the core's callbacks reach through braid_App
# ---------------------------------------------------------------------------------------------

cdef class _Box:
    cdef int refresh(self) except -1:
        """Re-read the application's callbacks (GIL held); called before each drive."""
        return 0

    cdef object take_error(self):
        """Return and forget the exception a callback stored (None if none)."""
        return None


cdef braid_Int _noop_access(braid_App app, braid_Vector u, braid_AccessStatus status) noexcept nogil:
    return 0


# ---- Python applications: each braid_Vector is a PyObject* (a numpy array) owning one reference ----

cdef inline braid_Vector _hand_out(object obj):
    """Give the core one reference to obj (released by _py_free)."""
    Py_INCREF(obj)
    return <braid_Vector><void *>obj


cdef inline object _vec(braid_Vector v):
    return <object><PyObject *>v


cdef object _own(object x, str what):
    """An ndarray that only the core will hold: x itself if nobody else references it, else a copy.

    The core keeps each vector and updates it in place, so vectors must never share memory with
    each other or with the application (an ``init`` returning a stored array would otherwise alias).
    The argument is borrowed from the caller's temporary: a reference count of 1 means nobody else
    holds x.
    """
    if isinstance(x, np.ndarray):
        if Py_REFCNT(x) == 1 and (<object>x).base is None and (<object>x).flags.writeable:
            return x
        return np.array(x, copy=True)
    if x is None:
        raise TypeError(f"{what} returned None; it must return a numpy array")
    try:
        return np.array(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{what} must return a numpy array, got {type(x).__name__}") from exc


cdef void _copy_into(object dst, object src, str what) except *:
    src = np.asarray(src)
    if src.shape != dst.shape:
        raise ValueError(f"{what} returned an array of shape {src.shape}; the vector has shape {dst.shape}")
    np.copyto(dst, src)


cdef const unsigned char[::1] _byte_view(object data):
    """The bytes of an array (any dtype) or bytes-like object, as one contiguous byte view."""
    if isinstance(data, np.ndarray):
        return np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    return np.frombuffer(data, dtype=np.uint8)


cdef object _optional_method(object app, str name):
    f = getattr(app, name, None)
    if f is not None and not callable(f):
        raise TypeError(f"app.{name} must be callable, got {type(f).__name__}")
    return f


@cython.final
cdef class _PyBox(_Box):
    """A plain Python application (methods on numpy arrays) behind braid_App."""
    cdef object f_init, f_step, f_clone, f_sum, f_norm, f_access, f_bufsize, f_pack, f_unpack
    cdef object error
    cdef double tstart
    cdef object shape, dtype
    cdef Py_ssize_t nbytes          # message size in bytes, -1 until first asked

    def __cinit__(self, app, double tstart):
        self.app = app
        self.tstart = tstart
        self.nbytes = -1

    cdef int refresh(self) except -1:
        app = self.app
        for name in ("init", "step"):
            if not callable(getattr(app, name, None)):
                raise TypeError(f"a Python app needs a callable {name}() method; "
                                f"{type(app).__name__} has none (or pass a braidnet.braid.VectorApp)")
        self.f_init = app.init
        self.f_step = app.step
        self.f_clone = _optional_method(app, "clone")
        self.f_sum = _optional_method(app, "sum")
        self.f_norm = _optional_method(app, "norm")
        self.f_access = _optional_method(app, "access")
        self.f_bufsize = _optional_method(app, "bufsize")
        self.f_pack = _optional_method(app, "pack")
        self.f_unpack = _optional_method(app, "unpack")
        if (self.f_pack is None) != (self.f_unpack is None):
            raise TypeError("a Python app defines pack() and unpack() together, or neither")
        if self.f_bufsize is not None and self.f_pack is None:
            raise TypeError("app.bufsize() only makes sense with pack() and unpack()")
        self.cb.app = <braid_App><void *>self
        self.cb.step = _py_step
        self.cb.init = _py_init
        self.cb.clone = _py_clone
        self.cb.free = _py_free
        self.cb.sum = _py_sum
        self.cb.norm = _py_norm
        self.cb.access = _py_access if self.f_access is not None else _noop_access
        self.cb.bufsize = _py_bufsize
        self.cb.bufpack = _py_bufpack
        self.cb.bufunpack = _py_bufunpack
        return 0

    cdef object take_error(self):
        exc, self.error = self.error, None
        return exc

    cdef int fail(self, exc) noexcept:
        if self.error is None:      # keep the first exception
            self.error = exc
        return _CALLBACK_ERROR

    cdef object template(self):
        """An array of init(tstart)'s shape and dtype (what the default pack/unpack move)."""
        if self.shape is None:
            u = _own(self.f_init(self.tstart), "init")
            self.shape, self.dtype = u.shape, u.dtype
        return self.shape, self.dtype

    cdef Py_ssize_t message_size(self) except -1:
        if self.nbytes < 0:
            if self.f_bufsize is not None:
                n = self.f_bufsize()
                if not isinstance(n, numbers.Integral) or n < 0:
                    raise ValueError(f"app.bufsize() must return an integer >= 0, got {n!r}")
            elif self.f_pack is not None:
                n = len(_byte_view(self.f_pack(_own(self.f_init(self.tstart), "init"))))
            else:
                shape, dtype = self.template()
                n = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
            if n >= 2**31:
                raise ValueError(f"a message of {n} bytes is too long for the core (< 2**31 bytes)")
            self.nbytes = n
        return self.nbytes

    # ---- the callbacks, with the GIL held ----

    cdef braid_Int init(self, braid_Real t, braid_Vector *u_ptr) noexcept:
        u_ptr[0] = NULL     # on failure: no vector (the core expects none and frees nothing)
        if self.error is not None:
            return _CALLBACK_ERROR
        try:
            u = _own(self.f_init(t), "init")
        except BaseException as exc:
            return self.fail(exc)
        u_ptr[0] = _hand_out(u)
        return 0

    cdef braid_Int step(self, braid_Vector ustop, braid_Vector fstop, braid_Vector u,
                        braid_StepStatus status) noexcept:
        if self.error is not None:
            return _CALLBACK_ERROR
        try:
            uo = _vec(u)
            res = self.f_step(uo, _vec(ustop), None if fstop == NULL else _vec(fstop), _step_status(status))
            if res is not None and res is not uo:
                _copy_into(uo, res, "step")
        except BaseException as exc:
            return self.fail(exc)
        return 0

    cdef braid_Int clone(self, braid_Vector u, braid_Vector *v_ptr) noexcept:
        v_ptr[0] = NULL
        if self.error is not None:
            return _CALLBACK_ERROR
        try:
            if self.f_clone is None:
                v = np.array(_vec(u), copy=True)
            else:
                v = _own(self.f_clone(_vec(u)), "clone")
        except BaseException as exc:
            return self.fail(exc)
        v_ptr[0] = _hand_out(v)
        return 0

    cdef braid_Int sum(self, double alpha, braid_Vector x, double beta, braid_Vector y) noexcept:
        if self.error is not None:
            return _CALLBACK_ERROR
        try:
            xo, yo = _vec(x), _vec(y)
            if self.f_sum is None:
                # y = alpha x + beta y; beta == 0 overwrites y (it may hold anything)
                if beta == 0.0:
                    np.multiply(xo, alpha, out=yo)
                else:
                    ax = alpha * xo     # first: x may be y itself
                    np.multiply(yo, beta, out=yo)
                    yo += ax
            else:
                res = self.f_sum(alpha, xo, beta, yo)
                if res is not None and res is not yo:
                    _copy_into(yo, res, "sum")
        except BaseException as exc:
            return self.fail(exc)
        return 0

    cdef braid_Int norm(self, braid_Vector u, braid_Real *norm_ptr) noexcept:
        if self.error is not None:
            return _CALLBACK_ERROR
        try:
            if self.f_norm is None:
                norm_ptr[0] = np.linalg.norm(np.ravel(_vec(u)))
            else:
                norm_ptr[0] = self.f_norm(_vec(u))
        except BaseException as exc:
            return self.fail(exc)
        return 0

    cdef braid_Int access(self, braid_Vector u, braid_AccessStatus status) noexcept:
        if self.error is not None:
            return _CALLBACK_ERROR
        try:
            self.f_access(_vec(u), _access_status(status))
        except BaseException as exc:
            return self.fail(exc)
        return 0

    cdef braid_Int bufsize(self, braid_Int *size_ptr) noexcept:
        if self.error is not None:
            return _CALLBACK_ERROR
        try:
            size_ptr[0] = <braid_Int>self.message_size()
        except BaseException as exc:
            return self.fail(exc)
        return 0

    cdef braid_Int bufpack(self, braid_Vector u, void *buffer) noexcept:
        cdef const unsigned char[::1] src
        if self.error is not None:
            return _CALLBACK_ERROR
        try:
            n = self.message_size()
            if self.f_pack is None:
                src = _byte_view(_vec(u))
                if src.shape[0] != n:
                    shape, dtype = self.template()
                    raise ValueError(f"default pack: the vector has {src.shape[0]} bytes, but init(tstart) "
                                     f"gave shape {shape} dtype {dtype} ({n} bytes)")
            else:
                src = _byte_view(self.f_pack(_vec(u)))
                if src.shape[0] > n:
                    raise ValueError(f"app.pack() wrote {src.shape[0]} bytes, more than the message size {n}")
            if src.shape[0] > 0:
                memcpy(buffer, &src[0], src.shape[0])
        except BaseException as exc:
            return self.fail(exc)
        return 0

    cdef braid_Int bufunpack(self, void *buffer, braid_Vector *u_ptr) noexcept:
        cdef unsigned char[::1] dst
        u_ptr[0] = NULL
        if self.error is not None:
            return _CALLBACK_ERROR
        try:
            n = self.message_size()
            if self.f_unpack is None:
                shape, dtype = self.template()
                u = np.empty(shape, dtype)
                dst = u.reshape(-1).view(np.uint8)
                if n > 0:
                    memcpy(&dst[0], buffer, n)
            else:
                # A bytes copy: the core's buffer does not outlive this call.
                u = _own(self.f_unpack(PyBytes_FromStringAndSize(<char *>buffer, n)), "unpack")
        except BaseException as exc:
            return self.fail(exc)
        u_ptr[0] = _hand_out(u)
        return 0


# The C entry points of Python apps: take the GIL and go to the box's method.

cdef braid_Int _py_step(braid_App app, braid_Vector ustop, braid_Vector fstop, braid_Vector u,
                        braid_StepStatus status) noexcept nogil:
    with gil:
        return (<_PyBox><void *>app).step(ustop, fstop, u, status)

cdef braid_Int _py_init(braid_App app, braid_Real t, braid_Vector *u_ptr) noexcept nogil:
    with gil:
        return (<_PyBox><void *>app).init(t, u_ptr)

cdef braid_Int _py_clone(braid_App app, braid_Vector u, braid_Vector *v_ptr) noexcept nogil:
    with gil:
        return (<_PyBox><void *>app).clone(u, v_ptr)

cdef braid_Int _py_free(braid_App app, braid_Vector u) noexcept nogil:
    # Needs nothing from the app, so it is safe while a Core is being torn down.
    with gil:
        Py_XDECREF(<PyObject *>u)
    return 0

cdef braid_Int _py_sum(braid_App app, braid_Real alpha, braid_Vector x, braid_Real beta,
                       braid_Vector y) noexcept nogil:
    with gil:
        return (<_PyBox><void *>app).sum(alpha, x, beta, y)

cdef braid_Int _py_norm(braid_App app, braid_Vector u, braid_Real *norm_ptr) noexcept nogil:
    with gil:
        return (<_PyBox><void *>app).norm(u, norm_ptr)

cdef braid_Int _py_access(braid_App app, braid_Vector u, braid_AccessStatus status) noexcept nogil:
    with gil:
        return (<_PyBox><void *>app).access(u, status)

cdef braid_Int _py_bufsize(braid_App app, braid_Int *size_ptr, braid_BufferStatus status) noexcept nogil:
    with gil:
        return (<_PyBox><void *>app).bufsize(size_ptr)

cdef braid_Int _py_bufpack(braid_App app, braid_Vector u, void *buffer, braid_BufferStatus status) noexcept nogil:
    with gil:
        return (<_PyBox><void *>app).bufpack(u, buffer)

cdef braid_Int _py_bufunpack(braid_App app, void *buffer, braid_Vector *u_ptr,
                             braid_BufferStatus status) noexcept nogil:
    with gil:
        return (<_PyBox><void *>app).bufunpack(buffer, u_ptr)


# ---- fast applications: each braid_Vector is a malloc'd block of `size` doubles; no GIL ----

cdef class VectorApp:
    """Base class of fast applications whose vectors are blocks of ``size`` doubles.

    Subclass it in Cython and set ``size``, ``ctx``, ``step_fn`` and ``init_fn`` (and optionally
    ``access_fn``, ``norm_fn``) in ``__cinit__``; see ``braidnet/braid.pxd``.  The base class
    supplies clone, free, sum, the Euclidean norm and the buffer callbacks in C.
    """

    def __cinit__(self, *args, **kwargs):
        # Subclass __cinit__ arguments reach here too: accept and ignore them.
        self.size = 0
        self.ctx = NULL
        self.step_fn = NULL
        self.init_fn = NULL
        self.access_fn = NULL
        self.norm_fn = NULL

    cdef int _check(self) except -1:
        if self.size < 1:
            raise ValueError(f"{type(self).__name__}.size must be >= 1 (set it in __cinit__), got {self.size}")
        if self.step_fn == NULL or self.init_fn == NULL:
            raise ValueError(f"{type(self).__name__} must set step_fn and init_fn in __cinit__")
        return 0

    cdef int _raise(self, int code, str what) except -1:
        exc, self._error = self._error, None
        if exc is not None:
            raise exc
        raise BraidError(code, f"{type(self).__name__}: {what} returned error code {code}")

    def init_vector(self, double t) -> np.ndarray:
        """The initial guess at time t, from init_fn (a new array of ``size`` doubles)."""
        self._check()
        u = np.zeros(self.size)
        cdef double[::1] uv = u
        cdef int ierr = self.init_fn(self.ctx, t, &uv[0])
        if ierr != 0:
            self._raise(ierr, "init")
        return u

    def step_vector(self, u, double tstart, double tstop, int level=0, int index=0) -> np.ndarray:
        """One step of step_fn from tstart to tstop on a copy of u (returned); iter 0, done 0."""
        self._check()
        out = np.array(u, dtype=np.float64, copy=True).reshape(-1)
        if out.shape[0] != self.size:
            raise ValueError(f"u has {out.shape[0]} entries, the app's vectors {self.size}")
        cdef double[::1] uv = out
        cdef StepInfo info
        info.tstart, info.tstop, info.level, info.index = tstart, tstop, level, index
        info.iter, info.done, info.app = 0, 0, <void *>self
        cdef int ierr = self.step_fn(self.ctx, &uv[0], &uv[0], &info)
        if ierr != 0:
            self._raise(ierr, "step")
        return out

    def time_step(self, Py_ssize_t calls, double tstart, double tstop, int level=0, int index=0,
                  int repeats=5) -> float:
        """Seconds per call of step_fn (best of ``repeats`` loops of ``calls`` calls, no GIL).

        The steps run back to back on one vector that starts at ``init_fn(tstart)``; choose
        tstart/tstop so that repeated steps stay in the normal floating-point range.
        """
        self._check()
        if calls < 1 or repeats < 1:
            raise ValueError(f"calls and repeats must be >= 1, got calls={calls}, repeats={repeats}")
        u = self.init_vector(tstart)
        cdef double[::1] uv = u
        cdef StepInfo info
        cdef Py_ssize_t k
        cdef int ierr = 0
        info.tstart, info.tstop, info.level, info.index = tstart, tstop, level, index
        info.iter, info.done, info.app = 0, 0, <void *>self
        best = math.inf
        for _ in range(repeats):
            t0 = time.perf_counter()
            with nogil:
                for k in range(calls):
                    ierr = self.step_fn(self.ctx, &uv[0], &uv[0], &info)
                    if ierr != 0:
                        break
            best = min(best, time.perf_counter() - t0)
            if ierr != 0:
                self._raise(ierr, "step")
        return best / calls

    def norm_vector(self, u) -> float:
        """The spatial norm the core uses (norm_fn, or Euclidean)."""
        self._check()
        cdef double[::1] uv = np.ascontiguousarray(u, dtype=np.float64).reshape(-1)
        if uv.shape[0] != self.size:
            raise ValueError(f"u has {uv.shape[0]} entries, the app's vectors {self.size}")
        cdef FastApp a
        cdef double n = 0.0
        a.size, a.ctx, a.norm = self.size, self.ctx, self.norm_fn
        cdef int ierr = _fast_norm_of(&a, &uv[0], &n)
        if ierr != 0:
            self._raise(ierr, "norm")
        return n


cdef int store_error(void *app, object exc) noexcept:
    cdef VectorApp v
    if app == NULL:
        return _CALLBACK_ERROR
    v = <VectorApp>app
    if v._error is None:
        if isinstance(exc, type):
            try:
                exc = exc()
            except BaseException as e:
                exc = e
        v._error = exc
    return _CALLBACK_ERROR


cdef int store_error_message(void *app, const char *msg) noexcept nogil:
    with gil:
        try:
            text = (<bytes>msg).decode("utf-8", "replace")
        except BaseException as e:
            return store_error(app, e)
        return store_error(app, RuntimeError(text))


cdef inline int _fast_norm_of(FastApp *a, const double *u, double *norm) noexcept nogil:
    cdef Py_ssize_t i
    cdef double s = 0.0
    if a.norm != NULL:
        return a.norm(a.ctx, u, a.size, norm)
    for i in range(a.size):
        s += u[i] * u[i]
    norm[0] = sqrt(s)
    return 0


cdef double *_fast_alloc(FastApp *a) noexcept nogil:
    return <double *>malloc(a.size * sizeof(double))


cdef braid_Int _v_step(braid_App app, braid_Vector ustop, braid_Vector fstop, braid_Vector u,
                       braid_StepStatus status) noexcept nogil:
    cdef FastApp *a = <FastApp *>app
    cdef StepInfo info
    braid_StepStatusGetTstartTstop(status, &info.tstart, &info.tstop)
    braid_StepStatusGetLevel(status, &info.level)
    braid_StepStatusGetTIndex(status, &info.index)
    braid_StepStatusGetIter(status, &info.iter)
    braid_StepStatusGetDone(status, &info.done)
    info.app = a.owner
    return a.step(a.ctx, <double *>u, <const double *>ustop, &info)

cdef braid_Int _v_init(braid_App app, braid_Real t, braid_Vector *u_ptr) noexcept nogil:
    cdef FastApp *a = <FastApp *>app
    cdef double *u = _fast_alloc(a)
    cdef braid_Int ierr
    u_ptr[0] = NULL     # on failure: no vector (the core expects none and frees nothing)
    if u == NULL:
        return BRAID_ERROR_MEMORY
    ierr = a.init(a.ctx, t, u)
    if ierr != 0:
        free(u)
        return ierr
    u_ptr[0] = <braid_Vector>u
    return 0

cdef braid_Int _v_clone(braid_App app, braid_Vector u, braid_Vector *v_ptr) noexcept nogil:
    cdef FastApp *a = <FastApp *>app
    cdef double *v = _fast_alloc(a)
    v_ptr[0] = <braid_Vector>v
    if v == NULL:
        return BRAID_ERROR_MEMORY
    memcpy(v, <double *>u, a.size * sizeof(double))
    return 0

cdef braid_Int _v_free(braid_App app, braid_Vector u) noexcept nogil:
    free(<void *>u)
    return 0

cdef braid_Int _v_sum(braid_App app, braid_Real alpha, braid_Vector x, braid_Real beta,
                      braid_Vector y) noexcept nogil:
    cdef FastApp *a = <FastApp *>app
    cdef const double *xp = <const double *>x
    cdef double *yp = <double *>y
    cdef Py_ssize_t i
    if beta == 0.0:
        for i in range(a.size):
            yp[i] = alpha * xp[i]
    else:
        for i in range(a.size):
            yp[i] = alpha * xp[i] + beta * yp[i]
    return 0

cdef braid_Int _v_norm(braid_App app, braid_Vector u, braid_Real *norm_ptr) noexcept nogil:
    return _fast_norm_of(<FastApp *>app, <const double *>u, norm_ptr)

cdef braid_Int _v_access(braid_App app, braid_Vector u, braid_AccessStatus status) noexcept nogil:
    cdef FastApp *a = <FastApp *>app
    cdef AccessInfo info
    braid_AccessStatusGetTILD(status, &info.t, &info.iter, &info.level, &info.done)
    braid_AccessStatusGetTIndex(status, &info.index)
    braid_AccessStatusGetResidual(status, &info.residual)
    info.app = a.owner
    return a.access(a.ctx, <const double *>u, &info)

cdef braid_Int _v_bufsize(braid_App app, braid_Int *size_ptr, braid_BufferStatus status) noexcept nogil:
    size_ptr[0] = <braid_Int>((<FastApp *>app).size * sizeof(double))
    return 0

cdef braid_Int _v_bufpack(braid_App app, braid_Vector u, void *buffer, braid_BufferStatus status) noexcept nogil:
    memcpy(buffer, <void *>u, (<FastApp *>app).size * sizeof(double))
    return 0

cdef braid_Int _v_bufunpack(braid_App app, void *buffer, braid_Vector *u_ptr,
                            braid_BufferStatus status) noexcept nogil:
    cdef FastApp *a = <FastApp *>app
    cdef double *u = _fast_alloc(a)
    u_ptr[0] = <braid_Vector>u
    if u == NULL:
        return BRAID_ERROR_MEMORY
    memcpy(u, buffer, a.size * sizeof(double))
    return 0


@cython.final
cdef class _FastBox(_Box):
    """A VectorApp behind braid_App: the nogil callbacks read a C copy of its fields."""
    cdef FastApp fast

    def __cinit__(self, VectorApp app):
        self.app = app

    cdef int refresh(self) except -1:
        cdef VectorApp v = <VectorApp>self.app
        v._check()
        self.fast.size = v.size
        self.fast.ctx = v.ctx
        self.fast.step = v.step_fn
        self.fast.init = v.init_fn
        self.fast.access = v.access_fn
        self.fast.norm = v.norm_fn
        self.fast.owner = <void *>v
        self.cb.app = <braid_App>&self.fast
        self.cb.step = _v_step
        self.cb.init = _v_init
        self.cb.clone = _v_clone
        self.cb.free = _v_free
        self.cb.sum = _v_sum
        self.cb.norm = _v_norm
        self.cb.access = _v_access if v.access_fn != NULL else _noop_access
        self.cb.bufsize = _v_bufsize
        self.cb.bufpack = _v_bufpack
        self.cb.bufunpack = _v_bufunpack
        return 0

    cdef object take_error(self):
        cdef VectorApp v = <VectorApp>self.app
        exc, v._error = v._error, None
        return exc


cdef _Box _make_box(object app, double tstart):
    cdef _Box box
    if isinstance(app, VectorApp):
        box = _FastBox(app)
    else:
        box = _PyBox(app, tstart)
    box.refresh()
    return box


# ---------------------------------------------------------------------------------------------
# Options
# ---------------------------------------------------------------------------------------------

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
    "nfmg": lambda v: _int_option("nfmg", v, -1, what="an integer >= 0, or -1 (always F-cycles)"),
    "skip": lambda v: int(_bool_option("skip", v)),
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


def _tnorm(value):
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, str)) or value not in _TNORMS:
        raise ValueError(f"tnorm must be 1 or 'l1' (sum), 2 or 'l2' (default) or 3 or 'linf' (max), got {value!r}")
    return _TNORMS[value]


def _check_arguments(tstart, tstop, ntime, options: dict) -> dict:
    """Validate everything in Python (same outcome on every rank); return the normalised options."""
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
    if opts.get("fmg") and "nfmg" in opts:
        raise ValueError("give fmg=True (F-cycles always) or nfmg=k (F-cycles in the first k iterations), not both")
    return opts


# ---------------------------------------------------------------------------------------------
# The core
# ---------------------------------------------------------------------------------------------

_GRID_OPTIONS = frozenset({"max_levels", "min_coarse", "cfactor", "storage", "seq_soln"})


@cython.no_gc_clear   # __dealloc__ needs the box and app: never let the GC clear them first
cdef class Core:
    """An MGRIT solver for ``ntime`` steps on ``[tstart, tstop]`` over the ranks of ``comm``.

    ``app`` is a :class:`VectorApp` or a Python object with these methods (vectors are numpy arrays;
    every one the core holds is its own array, so return new arrays, never views or stored ones:
    the wrapper copies a returned array that something else references):

    - ``init(t) -> array`` (required): the initial guess at time t (the initial condition at tstart);
    - ``step(u, ustop, fstop, status)`` (required): advance ``u`` from ``status.tstart`` to
      ``status.tstop`` in place, or return a new array that the wrapper copies into ``u`` (the core
      keeps the object ``u`` itself).  ``ustop`` (the current value at tstop, may be ``u``) and
      ``fstop`` (FAS right-hand side or None; the core adds it itself) are read only;
    - ``clone(u) -> array`` (default: a copy);
    - ``sum(alpha, x, beta, y)``: ``y <- alpha x + beta y`` in place in ``y`` (default: numpy);
    - ``norm(u) -> float`` (default: Euclidean norm of all entries);
    - ``access(u, status)``: look at ``u`` (read only; copy what you keep);
    - ``pack(u) -> bytes-like`` and ``unpack(data: bytes) -> array`` (default: the raw bytes of an
      array with the shape and dtype of ``init(tstart)``), with optional ``bufsize() -> int``, the
      largest number of bytes ``pack`` writes (default: ``len(pack(init(tstart)))``).

    Options (XBraid's names; unset ones keep the core's defaults): ``max_levels``, ``min_coarse``,
    ``cfactor`` and ``nrelax`` (an int for all levels, or a list per level from level 0; levels past
    the list keep the default), ``abs_tol`` or ``rel_tol``, ``max_iter``, ``fmg`` (bool) or
    ``nfmg``, ``skip`` (0/1), ``storage`` (-1 or a level), ``tnorm`` (1/'l1', 2/'l2', 3/'linf'),
    ``print_level`` (0-2), ``access_level`` (0-3), ``seq_soln`` (bool).  Bad values raise
    ``ValueError`` before any MPI call.
    """

    def __cinit__(self):
        self._core = NULL
        self._driven = 0

    def __init__(self, app, tstart, tstop, ntime, comm=MPI.COMM_WORLD, **options) -> None:
        cdef MPI_Comm c
        if self._core != NULL:
            raise RuntimeError("Core.__init__ called twice")
        opts = _check_arguments(tstart, tstop, ntime, options)
        if not isinstance(comm, MPI.Comm):
            raise TypeError(f"comm must be an mpi4py MPI.Comm, got {type(comm).__name__}")
        if comm == MPI.COMM_NULL:
            raise ValueError("comm must not be MPI.COMM_NULL")
        box = _make_box(app, float(tstart))
        self.app = app
        self.tstart = tstart
        self.tstop = tstop
        self.ntime = ntime
        self.options = opts
        self._box = box
        self._comm = comm
        c = (<_MPIComm>comm).ob_mpi
        CHKERR(braid_Init(c, c, self.tstart, self.tstop, self.ntime, box.cb.app, box.cb.step, box.cb.init,
                          box.cb.clone, box.cb.free, box.cb.sum, box.cb.norm, box.cb.access, box.cb.bufsize,
                          box.cb.bufpack, box.cb.bufunpack, &self._core))
        self._apply(opts)

    cdef int _apply(self, dict opts) except -1:
        cdef braid_Core core = self._core
        # max_levels first: LLNL XBraid needs it before the per-level setters.
        if "max_levels" in opts:
            CHKERR(braid_SetMaxLevels(core, opts["max_levels"]))
        if "min_coarse" in opts:
            CHKERR(braid_SetMinCoarse(core, opts["min_coarse"]))
        for name, setter in (("cfactor", 0), ("nrelax", 1)):
            if name not in opts:
                continue
            value = opts[name]
            pairs = [(-1, value)] if isinstance(value, int) else list(enumerate(value))
            for level, v in pairs:
                if setter == 0:
                    CHKERR(braid_SetCFactor(core, level, v))
                else:
                    CHKERR(braid_SetNRelax(core, level, v))
        if "abs_tol" in opts:
            CHKERR(braid_SetAbsTol(core, opts["abs_tol"]))
        if "rel_tol" in opts:
            CHKERR(braid_SetRelTol(core, opts["rel_tol"]))
        if "max_iter" in opts:
            CHKERR(braid_SetMaxIter(core, opts["max_iter"]))
        if opts.get("fmg"):
            CHKERR(braid_SetFMG(core))
        if "nfmg" in opts:
            CHKERR(braid_SetNFMG(core, opts["nfmg"]))
        if "skip" in opts:
            CHKERR(braid_SetSkip(core, opts["skip"]))
        if "storage" in opts:
            CHKERR(braid_SetStorage(core, opts["storage"]))
        if "tnorm" in opts:
            CHKERR(braid_SetTemporalNorm(core, opts["tnorm"]))
        if "print_level" in opts:
            CHKERR(braid_SetPrintLevel(core, opts["print_level"]))
        if "access_level" in opts:
            CHKERR(braid_SetAccessLevel(core, opts["access_level"]))
        if "seq_soln" in opts:
            CHKERR(braid_SetSeqSoln(core, opts["seq_soln"]))
        return 0

    def set_options(self, **options) -> None:
        """Change options between drives (e.g. ``max_iter`` and ``abs_tol`` of each One-shot solve).

        Options that shape the grid hierarchy (``max_levels``, ``min_coarse``, ``cfactor``,
        ``storage``, ``seq_soln``) are fixed once the core has been driven.
        """
        self._check_open()
        opts = _check_arguments(self.tstart, self.tstop, self.ntime, options)
        fixed = sorted(set(opts) & _GRID_OPTIONS) if self._driven else []
        if fixed:
            raise ValueError(f"{', '.join(fixed)} cannot change after the first drive (they shape the grids)")
        if "fmg" in opts and not opts["fmg"]:
            opts["nfmg"] = 0           # back to V-cycles
        if "abs_tol" in opts:
            self.options.pop("rel_tol", None)
        if "rel_tol" in opts:
            self.options.pop("abs_tol", None)
        self._apply(opts)
        self.options.update(opts)

    cdef int _check_open(self) except -1:
        if self._core == NULL:
            raise ValueError("this Core is closed")
        return 0

    def drive(self) -> DriveResult:
        """Run MGRIT to convergence (or max_iter); collective over the communicator.

        Calling it again continues from the current solution (warm restart).  An exception raised
        by a callback is re-raised here on its rank; the other ranks raise :class:`BraidError`.
        """
        cdef braid_Int ierr
        self._check_open()
        self._box.refresh()
        self._box.take_error()
        t0 = time.perf_counter()
        with nogil:
            ierr = braid_Drive(self._core)
        wall = time.perf_counter() - t0
        self._driven = 1
        self._raise_failure(ierr)
        return DriveResult(self.iterations, self.residual_norms, self.levels, wall)

    cdef int _raise_failure(self, braid_Int ierr) except -1:
        cdef braid_Int rank = -1
        exc = self._box.take_error()
        if not BRAIDNET_CORE_IS_BUNDLED:
            # LLNL XBraid ignores callback codes: agree on failure here, so that no rank goes on alone.
            failed = (<object>self._comm).allreduce(
                (<object>self._comm).Get_rank() if (exc is not None or ierr != 0) else -1, op=MPI.MAX)
            if exc is None and ierr == 0 and failed >= 0:
                raise BraidError(BRAID_ERROR_REMOTE, f"a callback failed on rank {failed}", rank=failed)
        if exc is not None:
            raise exc
        if ierr == 0:
            return 0
        if ierr == BRAID_ERROR_REMOTE:
            braid_GetErrorRank(self._core, &rank)
            where = f"rank {rank}" if rank >= 0 else "another rank"
            raise BraidError(ierr, f"a callback failed on {where} of the time communicator; the solve "
                                   f"was aborted", rank=rank if rank >= 0 else None)
        if ierr < 0 or ierr > BRAID_ERROR_STATE:
            raise BraidError(ierr, f"a callback returned error code {ierr}", rank=(<object>self._comm).Get_rank())
        CHKERR(ierr)
        return 0

    @property
    def iterations(self) -> int:
        """Iterations of the last drive (iteration 0 included); 0 before the first."""
        cdef braid_Int n = 0
        self._check_open()
        if not self._driven:
            return 0
        CHKERR(braid_GetNumIter(self._core, &n))
        return n

    @property
    def residual_norms(self) -> list:
        """The residual history of the last drive, exactly as braid_GetRNorms gives it."""
        cdef braid_Int niter = 0, n
        cdef double *buf
        self._check_open()
        if not self._driven:
            return []
        CHKERR(braid_GetNumIter(self._core, &niter))
        n = niter + 1
        buf = <double *>malloc(n * sizeof(double))
        if buf == NULL:
            raise MemoryError()
        try:
            CHKERR(braid_GetRNorms(self._core, &n, buf))
            return [buf[i] for i in range(n)]
        finally:
            free(buf)

    @property
    def levels(self) -> int:
        """Levels of the hierarchy (known after the first drive)."""
        cdef braid_Int n = 0
        self._check_open()
        CHKERR(braid_GetNLevels(self._core, &n))
        return n

    @property
    def step_calls(self):
        """Step callbacks this rank made in the last drive (None when built against LLNL XBraid)."""
        cdef braid_Int n = -1
        self._check_open()
        if not BRAIDNET_CORE_IS_BUNDLED:
            return None
        CHKERR(braid_GetNumSteps(self._core, &n))
        return n

    @property
    def distribution(self) -> tuple:
        """(ilower, iupper): the fine time indices this rank owns (iupper < ilower: none)."""
        cdef braid_Int lo = 0, hi = -1
        self._check_open()
        if BRAIDNET_CORE_IS_BUNDLED:
            CHKERR(braid_GetDistribution(self._core, &lo, &hi))
            return lo, hi
        size, rank = (<object>self._comm).Get_size(), (<object>self._comm).Get_rank()
        q, r = divmod(self.ntime + 1, size)
        lo = rank * q + min(rank, r)
        return lo, lo + q + (1 if rank < r else 0) - 1

    @property
    def comm(self):
        """The time communicator."""
        return self._comm

    def print_stats(self) -> None:
        """Print the statistics block of the last drive (rank 0 of the communicator)."""
        self._check_open()
        CHKERR(braid_PrintStats(self._core))

    def close(self) -> None:
        """Destroy the C core (its vectors are freed); later calls raise ValueError.  Idempotent."""
        cdef braid_Core core = self._core
        self._core = NULL
        if core != NULL and _mpi_alive():
            CHKERR(braid_Destroy(core))

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __dealloc__(self):
        # After MPI_Finalize the core's communicator is gone: leave the memory to the exit.
        if self._core != NULL and _mpi_alive():
            braid_Destroy(self._core)
        self._core = NULL

    def __repr__(self) -> str:
        state = "closed" if self._core == NULL else "open"
        return (f"<braidnet.braid.Core {state}: ntime={self.ntime} on [{self.tstart!r}, {self.tstop!r}], "
                f"app={type(self.app).__name__}>")


# ---------------------------------------------------------------------------------------------
# check_app: XBraid's braid_Test* checks, on the very callbacks the core would use
# ---------------------------------------------------------------------------------------------

cdef int _checked(_Box box, braid_Int ierr, str what) except -1:
    if ierr == 0:
        return 0
    exc = box.take_error()
    if exc is not None:
        raise exc
    raise AssertionError(f"check_app: {what} returned error code {ierr}")


cdef int _check_zero(_Box box, braid_Vector v, double scale, str what) except -1:
    cdef double n = 0.0
    _checked(box, box.cb.norm(box.cb.app, v, &n), "norm")
    if not n <= 1e-12 * max(scale, 1e-300) and n != 0.0:
        raise AssertionError(f"check_app: {what}: expected a zero vector, its norm is {n!r} "
                             f"(norm of init(t) is {scale!r})")
    return 0


def check_app(app, t: float = 0.0) -> None:
    """Test an app's callbacks as XBraid's ``braid_Test*`` functions do; raise on the first failure.

    Uses ``init(t)`` (choose a t where it is non-zero, e.g. tstart) and checks: the norm is finite and
    >= 0; a clone has the same norm and ``u - clone(u) == 0``; ``sum(0, x, 1, y)`` leaves y alone,
    ``sum(2, x, 0, y)`` doubles x's norm and ``2x + (-1) 2x == 0``; a pack/unpack round trip
    reproduces the vector.  Raises ``TypeError``/``ValueError`` for a malformed app,
    ``AssertionError`` naming the failed check, or the exception a callback raised.
    """
    cdef _Box box = _make_box(app, float(t))
    cdef Callbacks cb = box.cb
    cdef braid_Vector u = NULL, v = NULL, w = NULL, r = NULL
    cdef braid_Real nu = 0.0, nv = 0.0
    cdef braid_Int size = 0
    cdef void *buf = NULL
    box.take_error()
    try:
        _checked(box, cb.init(cb.app, t, &u), "init")
        _checked(box, cb.norm(cb.app, u, &nu), "norm")
        if not (math.isfinite(nu) and nu >= 0.0):
            raise AssertionError(f"check_app: norm(init({t!r})) is {nu!r}; a norm must be finite and >= 0")
        # clone
        _checked(box, cb.clone(cb.app, u, &v), "clone")
        _checked(box, cb.norm(cb.app, v, &nv), "norm")
        if abs(nv - nu) > 1e-12 * nu:
            raise AssertionError(f"check_app: clone: norm of the clone {nv!r} differs from the original's {nu!r}")
        _checked(box, cb.sum(cb.app, 1.0, u, -1.0, v), "sum")
        _check_zero(box, v, nu, "clone: u - clone(u)")
        # sum: 0*x + 1*y == y
        _checked(box, cb.clone(cb.app, u, &w), "clone")
        _checked(box, cb.sum(cb.app, 0.0, v, 1.0, w), "sum")
        _checked(box, cb.norm(cb.app, w, &nv), "norm")
        if abs(nv - nu) > 1e-12 * nu:
            raise AssertionError(f"check_app: sum(0, x, 1, y) changed y: its norm went from {nu!r} to {nv!r}")
        # sum: 2*x + 0*y == 2x
        _checked(box, cb.sum(cb.app, 2.0, u, 0.0, w), "sum")
        _checked(box, cb.norm(cb.app, w, &nv), "norm")
        if abs(nv - 2.0 * nu) > 1e-12 * nu:
            raise AssertionError(f"check_app: sum(2, x, 0, y) should give 2x, of norm {2.0 * nu!r}; "
                                 f"got a norm of {nv!r} (is sum in place in y? is norm homogeneous?)")
        # sum: 2x + (-1) (2x) == 0
        _checked(box, cb.sum(cb.app, 2.0, u, -1.0, w), "sum")
        _check_zero(box, w, nu, "sum: 2x + (-1) (2x)")
        # buffers
        _checked(box, cb.bufsize(cb.app, &size, NULL), "bufsize")
        if size < 0:
            raise AssertionError(f"check_app: bufsize gave {size} bytes")
        buf = malloc(size if size > 0 else 1)
        if buf == NULL:
            raise MemoryError()
        _checked(box, cb.bufpack(cb.app, u, buf, NULL), "pack")
        _checked(box, cb.bufunpack(cb.app, buf, &r, NULL), "unpack")
        _checked(box, cb.sum(cb.app, 1.0, u, -1.0, r), "sum")
        _check_zero(box, r, nu, "pack/unpack round trip: u - unpack(pack(u))")
    finally:
        free(buf)
        if u != NULL:
            cb.free(cb.app, u)
        if v != NULL:
            cb.free(cb.app, v)
        if w != NULL:
            cb.free(cb.app, w)
        if r != NULL:
            cb.free(cb.app, r)
