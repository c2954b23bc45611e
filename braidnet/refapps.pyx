# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Fast (``VectorApp``) versions of the three reference problems (docs/design.md section 2.10).

Each mirrors a plain-Python class of :mod:`braidnet.refproblems` operation for operation:

- :class:`ScalarApp`: ``u' = -u``, backward Euler ``u <- u / (1 + dt)``;
- :class:`HeatApp`: ``u_t = u_xx + F`` on 33 points of ``[0, pi]``, backward Euler, Thomas solve;
- :class:`ResNet4App`: ``u <- u + h tanh(W u + b)``.

Every app records what the final access (``done = 1``, level 0) shows it: the state at the largest
time seen (:attr:`final`) and, after :meth:`keep_states`, every state by fine time index
(:meth:`states`).  The C functions run without the GIL and allocate nothing per step.
"""
from libc.math cimport cos, sin, tanh
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memcpy

from braidnet.braid cimport AccessInfo, StepInfo, VectorApp, store_error, store_error_message

import numpy as np

__all__ = ["ScalarApp", "HeatApp", "ResNet4App", "FailingScalarApp", "HEAT_NX", "RESNET4_W", "RESNET4_B", "RESNET4_U0"]

# The problems' data, in one place; their numpy twins (braidnet.refproblems) import it from here.
HEAT_NX = 33
RESNET4_W = ((0.5, -1.5, 0.2, 0.0), (1.5, 0.3, -0.4, 0.1), (-0.2, 0.4, -0.6, 1.0), (0.1, -0.3, -1.0, 0.2))
RESNET4_B = (0.1, -0.2, 0.05, 0.3)
RESNET4_U0 = (1.0, -0.5, 0.25, 2.0)


# ---- what the final access keeps (the first member of every app's C data) ----

cdef struct Record:
    Py_ssize_t size
    double *last            # state at the largest t of a final access (size doubles)
    double last_t
    int have_last
    double *states          # npoints x size, or NULL
    unsigned char *seen     # npoints flags
    Py_ssize_t npoints


cdef int record_access(void *ctx, const double *u, const AccessInfo *info) noexcept nogil:
    """Keep level-0 states of the final access; ctx starts with a Record."""
    cdef Record *r = <Record *>ctx
    if not info.done or info.level != 0:
        return 0
    if not r.have_last or info.t >= r.last_t:
        memcpy(r.last, u, r.size * sizeof(double))
        r.last_t = info.t
        r.have_last = 1
    if r.states != NULL and 0 <= info.index < r.npoints:
        memcpy(r.states + info.index * r.size, u, r.size * sizeof(double))
        r.seen[info.index] = 1
    return 0


cdef class _RecordingApp(VectorApp):
    """Common part: the Record (see record_access) and its Python view."""
    cdef Record *rec

    cdef int _setup_record(self, Record *rec, Py_ssize_t size) except -1:
        self.rec = rec
        rec.size = size
        rec.last = <double *>calloc(size, sizeof(double))
        if rec.last == NULL:
            raise MemoryError()
        self.size = size
        self.access_fn = record_access
        return 0

    def keep_states(self, Py_ssize_t npoints) -> None:
        """Also keep every level-0 state of the final access with fine index < npoints."""
        self._free_states()
        self.rec.states = <double *>malloc(npoints * self.size * sizeof(double))
        self.rec.seen = <unsigned char *>calloc(npoints, 1)
        if self.rec.states == NULL or self.rec.seen == NULL:
            self._free_states()
            raise MemoryError()
        self.rec.npoints = npoints

    def states(self) -> dict:
        """{fine index: state} of the final access on this rank (after keep_states)."""
        cdef Py_ssize_t i
        out = {}
        if self.rec == NULL or self.rec.states == NULL:
            return out
        for i in range(self.rec.npoints):
            if self.rec.seen[i]:
                out[i] = np.asarray(<double[:self.size]>(self.rec.states + i * self.size)).copy()
        return out

    @property
    def final(self):
        """(t, state) at the largest time a final access showed this rank, or None."""
        if self.rec == NULL or not self.rec.have_last:
            return None
        return self.rec.last_t, np.asarray(<double[:self.size]>self.rec.last).copy()

    def reset_record(self) -> None:
        """Forget what was recorded (keep_states stays on)."""
        if self.rec == NULL:
            return
        self.rec.have_last = 0
        if self.rec.seen != NULL:
            for i in range(self.rec.npoints):
                self.rec.seen[i] = 0

    cdef void _free_states(self) noexcept:
        if self.rec != NULL:
            free(self.rec.states)
            free(self.rec.seen)
            self.rec.states = NULL
            self.rec.seen = NULL
            self.rec.npoints = 0

    def __dealloc__(self):
        if self.rec != NULL:
            self._free_states()
            free(self.rec.last)
            self.rec.last = NULL


# ---- scalar: u' = -u ----

cdef struct ScalarData:
    Record rec
    double tstart
    double u0           # value at tstart
    double guess        # initial guess at t > tstart


cdef int scalar_step(void *ctx, double *u, const double *ustop, const StepInfo *info) noexcept nogil:
    u[0] = u[0] / (1.0 + (info.tstop - info.tstart))
    return 0


cdef int scalar_init(void *ctx, double t, double *u) noexcept nogil:
    cdef ScalarData *d = <ScalarData *>ctx
    u[0] = d.u0 if t == d.tstart else d.guess
    return 0


cdef class ScalarApp(_RecordingApp):
    """``u' = -u`` by backward Euler, ``u <- u / (1 + dt)``; u(tstart) = u0, guess elsewhere."""
    cdef ScalarData data

    def __cinit__(self, double u0=1.0, double guess=0.456, double tstart=0.0):
        self.data.u0 = u0
        self.data.guess = guess
        self.data.tstart = tstart
        self._setup_record(&self.data.rec, 1)
        self.ctx = &self.data
        self.step_fn = scalar_step
        self.init_fn = scalar_init


# ---- heat: u_t = u_xx + F on [0, pi] ----

cdef struct HeatData:
    Record rec
    double tstart
    double dx
    int nx              # HEAT_NX points
    double *sinx        # [nx] sin(x_j): the exact solution is sin(x) cos(t)
    double *cp          # [nx] Thomas scratch (modified super-diagonal)


cdef int heat_step(void *ctx, double *u, const double *ustop, const StepInfo *info) noexcept nogil:
    """Backward Euler: (u' - u)/dt = D2 u' + F(x, tstop), Dirichlet u'_0, u'_32 = sin(x) cos(tstop).

    F = sin(x) (cos t - sin t) is evaluated at the new time tstop (the implicit end of the step).
    The 31 interior unknowns solve -lam u'_{i-1} + (1 + 2 lam) u'_i - lam u'_{i+1} = u_i + dt F_i
    (boundary values moved to the right-hand side) by the Thomas algorithm, in place in u.
    """
    cdef HeatData *d = <HeatData *>ctx
    cdef int n = d.nx
    cdef double dt = info.tstop - info.tstart
    cdef double ct = cos(info.tstop), st = sin(info.tstop)
    cdef double lam = dt / (d.dx * d.dx)
    cdef double diag = 1.0 + 2.0 * lam, off = -lam
    cdef double g0 = d.sinx[0] * ct, g1 = d.sinx[n - 1] * ct
    cdef double m
    cdef int i
    # forward sweep: u[i] becomes the modified right-hand side
    for i in range(1, n - 1):
        u[i] = u[i] + dt * d.sinx[i] * (ct - st)
    u[1] = u[1] - off * g0
    u[n - 2] = u[n - 2] - off * g1
    d.cp[1] = off / diag
    u[1] = u[1] / diag
    for i in range(2, n - 1):
        m = diag - off * d.cp[i - 1]
        d.cp[i] = off / m
        u[i] = (u[i] - off * u[i - 1]) / m
    # back substitution
    for i in range(n - 3, 0, -1):
        u[i] = u[i] - d.cp[i] * u[i + 1]
    u[0] = g0
    u[n - 1] = g1
    return 0


cdef int heat_init(void *ctx, double t, double *u) noexcept nogil:
    cdef HeatData *d = <HeatData *>ctx
    cdef int i
    cdef double ct = cos(t)
    for i in range(d.nx):
        u[i] = d.sinx[i] * ct if t == d.tstart else 0.0
    return 0


cdef class HeatApp(_RecordingApp):
    """``u_t = u_xx + F`` on 33 points of [0, pi], exact solution sin(x) cos(t); see heat_step.

    init: the exact solution at tstart, zero elsewhere.  Norm: Euclidean over all 33 entries.
    """
    cdef HeatData data

    def __cinit__(self, double tstart=0.0):
        cdef int j
        self.data.nx = HEAT_NX
        self.data.sinx = <double *>calloc(HEAT_NX, sizeof(double))
        self.data.cp = <double *>calloc(HEAT_NX, sizeof(double))
        if self.data.sinx == NULL or self.data.cp == NULL:
            raise MemoryError()
        self.data.tstart = tstart
        self.data.dx = np.pi / (HEAT_NX - 1)
        for j in range(HEAT_NX):
            self.data.sinx[j] = sin(j * self.data.dx)
        self._setup_record(&self.data.rec, HEAT_NX)
        self.ctx = &self.data
        self.step_fn = heat_step
        self.init_fn = heat_init

    def __dealloc__(self):
        free(self.data.sinx)
        free(self.data.cp)


# ---- ResNet-4: u <- u + h tanh(W u + b) ----

cdef struct ResNetData:
    Record rec
    double tstart
    double W[4][4]
    double b[4]
    double u0[4]


cdef int resnet_step(void *ctx, double *u, const double *ustop, const StepInfo *info) noexcept nogil:
    cdef ResNetData *d = <ResNetData *>ctx
    cdef double h = info.tstop - info.tstart
    cdef double z[4]
    cdef int i, j
    for i in range(4):
        z[i] = d.b[i]
        for j in range(4):
            z[i] += d.W[i][j] * u[j]
    for i in range(4):
        u[i] = u[i] + h * tanh(z[i])
    return 0


cdef int resnet_init(void *ctx, double t, double *u) noexcept nogil:
    cdef ResNetData *d = <ResNetData *>ctx
    cdef int i
    for i in range(4):
        u[i] = d.u0[i] if t == d.tstart else 0.0
    return 0


cdef class ResNet4App(_RecordingApp):
    """``u <- u + h tanh(W u + b)`` with h = tstop - tstart; u(tstart) = u0, zero guess elsewhere."""
    cdef ResNetData data

    def __cinit__(self, W=RESNET4_W, b=RESNET4_B, u0=RESNET4_U0, double tstart=0.0):
        self.data.tstart = tstart
        self.set_params(W, b)
        u0a = np.asarray(u0, dtype=np.float64)
        if u0a.shape != (4,):
            raise ValueError(f"u0 must have shape (4,), got {u0a.shape}")
        for i in range(4):
            self.data.u0[i] = u0a[i]
        self._setup_record(&self.data.rec, 4)
        self.ctx = &self.data
        self.step_fn = resnet_step
        self.init_fn = resnet_init

    def set_params(self, W, b) -> None:
        """Replace W (4x4) and b (4); the next drive() uses them (warm restart)."""
        Wa = np.asarray(W, dtype=np.float64)
        ba = np.asarray(b, dtype=np.float64)
        if Wa.shape != (4, 4) or ba.shape != (4,):
            raise ValueError(f"W must have shape (4, 4) and b (4,), got {Wa.shape} and {ba.shape}")
        for i in range(4):
            self.data.b[i] = ba[i]
            for j in range(4):
                self.data.W[i][j] = Wa[i, j]


# ---- a scalar app whose step fails on purpose (tests, and an example of raising from nogil C) ----

cdef struct FailData:
    ScalarData base
    int fail_index      # fine index of tstart at which the level-0 step fails
    int fail_iter       # ... from this iteration on
    int mode            # 0: store_error_message, 1: store_error(ZeroDivisionError), 2: bare code


cdef int failing_step(void *ctx, double *u, const double *ustop, const StepInfo *info) noexcept nogil:
    cdef FailData *d = <FailData *>ctx
    if info.level == 0 and info.index == d.fail_index and info.iter >= d.fail_iter:
        if d.mode == 0:
            return store_error_message(info.app, b"FailingScalarApp: step failed on purpose")
        if d.mode == 1:
            with gil:
                return store_error(info.app, ZeroDivisionError("FailingScalarApp: division on purpose"))
        return 42
    return scalar_step(ctx, u, ustop, info)


cdef class FailingScalarApp(_RecordingApp):
    """ScalarApp whose level-0 step from fine index ``fail_index`` fails from iteration ``fail_iter`` on.

    ``mode``: ``"message"`` stores RuntimeError via store_error_message (no GIL), ``"exception"``
    stores ZeroDivisionError via store_error (with the GIL), ``"code"`` returns 42 and stores nothing.
    """
    cdef FailData data

    def __cinit__(self, int fail_index, int fail_iter=0, str mode="message"):
        modes = {"message": 0, "exception": 1, "code": 2}
        if mode not in modes:
            raise ValueError(f"mode must be one of {', '.join(modes)}, got {mode!r}")
        self.data.base.u0 = 1.0
        self.data.base.guess = 0.456
        self.data.base.tstart = 0.0
        self.data.fail_index = fail_index
        self.data.fail_iter = fail_iter
        self.data.mode = modes[mode]
        self._setup_record(&self.data.base.rec, 1)
        self.ctx = &self.data
        self.step_fn = failing_step
        self.init_fn = scalar_init
