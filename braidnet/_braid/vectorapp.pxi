# Fast applications: VectorApp, whose vectors are malloc'd blocks of `size` doubles (or floats, with
# `single`), and its box, whose callbacks run without the GIL.  (Included by braidnet/braid.pyx.)

cdef extern from "bn_kernels.h":
    void bn_axpby(Py_ssize_t n, double a, const double *x, double b, double *y) noexcept nogil
    void bn_axpby_f32(Py_ssize_t n, double a, const float *x, double b, float *y) noexcept nogil


cdef class VectorApp:
    """Base class of fast applications whose vectors are blocks of ``size`` doubles (or floats).

    Subclass it in Cython and set ``size``, ``ctx``, ``step_fn`` and ``init_fn`` (and optionally
    ``access_fn``, ``norm_fn``, and ``single = 1`` for float32 vectors) in ``__cinit__``; see
    ``braidnet/braid.pxd``.  The base class supplies clone, free, sum, the Euclidean norm
    (accumulated in double) and the buffer callbacks in C.
    """

    def __cinit__(self, *args, **kwargs):
        # Subclass __cinit__ arguments reach here too: accept and ignore them.
        self.size = 0
        self.single = 0
        self.ctx = NULL
        self.step_fn = NULL
        self.init_fn = NULL
        self.access_fn = NULL
        self.norm_fn = NULL
        self.steps_from_src = 0

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

    @property
    def dtype(self) -> np.dtype:
        """The dtype of the app's vectors: float32 when ``single``, else float64."""
        return np.dtype(np.float32 if self.single else np.float64)

    def init_vector(self, double t) -> np.ndarray:
        """The initial guess at time t, from init_fn (a new array of ``size`` values of ``dtype``)."""
        self._check()
        u = np.zeros(self.size, self.dtype)
        cdef int ierr = self.init_fn(self.ctx, t, _vdata(u))
        if ierr != 0:
            self._raise(ierr, "init")
        return u

    def step_vector(self, u, double tstart, double tstop, int level=0, int index=0,
                    int done=0, src=None) -> np.ndarray:
        """One step of step_fn from tstart to tstop on a copy of u (returned); iter 0, ``done`` as
        in a core's final sweep (1) or its iterations (0).  With ``src`` (an app with
        ``steps_from_src`` only) the step starts from src and writes the returned vector, whose
        contents (u) it must not read: a core's clone whose copy was put off."""
        self._check()
        out = _app_vector(self, u, True)
        cdef double *up = _vdata(out)
        cdef StepInfo info
        info.tstart, info.tstop, info.level, info.index = tstart, tstop, level, index
        info.iter, info.done, info.app, info.src = 0, done, <void *>self, NULL
        if src is not None:
            if not self.steps_from_src:
                raise ValueError(f"{type(self).__name__} does not step from src (steps_from_src is 0)")
            src = _app_vector(self, src, False)
            info.src = _vdata(src)
        cdef int ierr = self.step_fn(self.ctx, up, up, &info)
        if ierr != 0:
            self._raise(ierr, "step")
        return out

    def access_vector(self, u, double t, int level=0, int done=1) -> None:
        """Call access_fn on (a copy of) u at time t, as a final access (done 1) by default."""
        self._check()
        v = _app_vector(self, u, True)
        if self.access_fn == NULL:
            return
        cdef AccessInfo info
        info.t, info.index, info.level, info.iter, info.done = t, 0, level, 0, done
        info.residual, info.app = -1.0, <void *>self
        cdef int ierr = self.access_fn(self.ctx, _vdata(v), &info)
        if ierr != 0:
            self._raise(ierr, "access")

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
        cdef double *up = _vdata(u)
        cdef StepInfo info
        cdef Py_ssize_t k
        cdef int ierr = 0
        info.tstart, info.tstop, info.level, info.index = tstart, tstop, level, index
        info.iter, info.done, info.app, info.src = 0, 0, <void *>self, NULL
        best = math.inf
        for _ in range(repeats):
            t0 = time.perf_counter()
            with nogil:
                for k in range(calls):
                    ierr = self.step_fn(self.ctx, up, up, &info)
                    if ierr != 0:
                        break
            best = min(best, time.perf_counter() - t0)
            if ierr != 0:
                self._raise(ierr, "step")
        return best / calls

    def norm_vector(self, u) -> float:
        """The spatial norm the core uses (norm_fn, or Euclidean)."""
        self._check()
        v = _app_vector(self, u, False)
        cdef FastApp a
        cdef double n = 0.0
        a.size, a.single, a.ctx, a.norm = self.size, self.single, self.ctx, self.norm_fn
        cdef int ierr = _fast_norm_of(&a, _vdata(v), &n)
        if ierr != 0:
            self._raise(ierr, "norm")
        return n


cdef object _app_vector(VectorApp app, object u, bint copy):
    """u as a flat contiguous array of the app's dtype (a copy when ``copy``), of ``size`` values."""
    v = (np.array(u, dtype=app.dtype, copy=True) if copy
         else np.ascontiguousarray(u, dtype=app.dtype)).reshape(-1)
    if v.shape[0] != app.size:
        raise ValueError(f"u has {v.shape[0]} entries, the app's vectors {app.size}")
    return v


cdef double *_vdata(object a) except NULL:
    """The data of a contiguous 1-D float64 or float32 array, as the callbacks' double pointer
    (a float block for a single-precision app)."""
    cdef const unsigned char[::1] bytes_ = a.view(np.uint8)
    return <double *>&bytes_[0]


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
    cdef double s = 0.0, x
    cdef const float *uf = <const float *>u
    if a.norm != NULL:
        return a.norm(a.ctx, u, a.size, norm)
    if a.single:            # float32 vectors: the sum of squares in double
        for i in range(a.size):
            x = uf[i]
            s += x * x
    else:
        for i in range(a.size):
            s += u[i] * u[i]
    norm[0] = sqrt(s)
    return 0


cdef inline size_t _fast_bytes(FastApp *a) noexcept nogil:
    return a.size * (sizeof(float) if a.single else sizeof(double))


cdef enum:
    POOL_MAX = 32           # freed vectors kept for reuse ...
    POOL_BYTES = 1 << 26    # ... while they hold at most 64 MiB


# What the callbacks reach through braid_App: the FastApp first (so that braid_App is also a
# FastApp *), then the first non-zero code a callback returned in the current drive.  LLNL XBraid
# ignores callback codes: braidnet keeps the code here, skips the app's own functions once one has
# failed (as the bundled core does) and still writes every output (vectors, norms).
cdef struct _FastState:
    FastApp fast
    braid_Int code
    braid_Int nsteps        # step calls of the current drive (Core.step_calls on LLNL XBraid)
    # A core clones and frees vectors all the time (each interval's start, the injection to a
    # coarse level, received values).  Blocks of a wide layer's batch are large: malloc hands each
    # one back to the system and takes it again, zeroing fresh pages every time.  Freed blocks
    # kept here make that a memcpy (a restriction frees a level's worth at once: up to 32, within
    # 64 MiB).
    int npool
    void *pool[POOL_MAX]
    # A clone whose copy is put off (apps with steps_from_src): the core clones a vector and
    # steps the clone at once (each interval's start, the restriction's coarse steps), so the
    # step can read the original and write the clone, and the copy is never made.  Any other
    # callback makes it first (_fast_settle); the core touches vectors only through callbacks.
    void *pend_src
    void *pend_dst


cdef double *_fast_alloc(FastApp *a) noexcept nogil:
    cdef _FastState *s = <_FastState *>a
    if s.npool > 0:
        s.npool -= 1
        return <double *>s.pool[s.npool]
    return <double *>malloc(_fast_bytes(a))


cdef void _fast_release(_FastState *s) noexcept nogil:
    """Give the pooled blocks back to the system."""
    while s.npool > 0:
        s.npool -= 1
        free(s.pool[s.npool])


cdef inline void _fast_settle(FastApp *a) noexcept nogil:
    """Make the put-off clone, if any."""
    cdef _FastState *s = <_FastState *>a
    if s.pend_dst != NULL:
        memcpy(s.pend_dst, s.pend_src, _fast_bytes(a))
        s.pend_dst = s.pend_src = NULL


cdef inline braid_Int _fast_fail(FastApp *a, braid_Int code) noexcept nogil:
    cdef _FastState *s = <_FastState *>a
    if code != 0 and s.code == 0:
        s.code = code
    return code


cdef inline braid_Int _fast_failed(FastApp *a) noexcept nogil:
    return (<_FastState *>a).code


cdef braid_Int _v_step(braid_App app, braid_Vector ustop, braid_Vector fstop, braid_Vector u,
                       braid_StepStatus status) noexcept nogil:
    cdef FastApp *a = <FastApp *>app
    cdef _FastState *s = <_FastState *>app
    cdef StepInfo info
    cdef int ierr
    info.src = NULL
    if s.pend_dst == <void *>u and not _fast_failed(a):
        info.src = <const double *>s.pend_src      # u is the put-off clone: step from its original
        s.pend_dst = s.pend_src = NULL
    else:
        _fast_settle(a)
    if _fast_failed(a):
        return _fast_failed(a)
    braid_StepStatusGetTstartTstop(status, &info.tstart, &info.tstop)
    braid_StepStatusGetLevel(status, &info.level)
    braid_StepStatusGetTIndex(status, &info.index)
    braid_StepStatusGetIter(status, &info.iter)
    braid_StepStatusGetDone(status, &info.done)
    info.app = a.owner
    s.nsteps += 1
    ierr = a.step(a.ctx, <double *>u, <const double *>ustop, &info)
    if ierr != 0 and info.src != NULL:
        memcpy(u, info.src, _fast_bytes(a))     # a failed step leaves the clone, as without src
    return _fast_fail(a, ierr)

cdef braid_Int _v_init(braid_App app, braid_Real t, braid_Vector *u_ptr) noexcept nogil:
    cdef FastApp *a = <FastApp *>app
    cdef double *u
    cdef braid_Int ierr
    _fast_settle(a)
    u = _fast_alloc(a)
    u_ptr[0] = NULL     # on failure: no vector on the bundled core (it expects none and frees nothing)
    if u == NULL:
        return _fast_fail(a, BRAID_ERROR_MEMORY)
    ierr = _fast_failed(a)
    if ierr == 0:
        ierr = _fast_fail(a, a.init(a.ctx, t, u))
    if ierr != 0:
        if BRAIDNET_CORE_IS_BUNDLED:
            free(u)
            return ierr
        memset(u, 0, _fast_bytes(a))   # LLNL XBraid uses the vector anyway: zeros
    u_ptr[0] = <braid_Vector>u
    return ierr

cdef braid_Int _v_clone(braid_App app, braid_Vector u, braid_Vector *v_ptr) noexcept nogil:
    cdef FastApp *a = <FastApp *>app
    cdef _FastState *s = <_FastState *>app
    cdef double *v
    _fast_settle(a)
    v = _fast_alloc(a)
    v_ptr[0] = <braid_Vector>v
    if v == NULL:
        return _fast_fail(a, BRAID_ERROR_MEMORY)
    if a.from_src:
        s.pend_src, s.pend_dst = <void *>u, <void *>v
    else:
        memcpy(v, <double *>u, _fast_bytes(a))
    return 0

cdef braid_Int _v_free(braid_App app, braid_Vector u) noexcept nogil:
    cdef _FastState *s = <_FastState *>app
    if s.pend_dst == <void *>u:
        s.pend_dst = s.pend_src = NULL       # a clone freed unused: never copied
    else:
        _fast_settle(&s.fast)
    if s.npool < POOL_MAX and (s.npool + 1) * _fast_bytes(&s.fast) <= POOL_BYTES:
        s.pool[s.npool] = <void *>u
        s.npool += 1
    else:
        free(<void *>u)
    return 0

cdef braid_Int _v_sum(braid_App app, braid_Real alpha, braid_Vector x, braid_Real beta,
                      braid_Vector y) noexcept nogil:
    # the SIMD kernel (its AVX2 clone where the CPU has AVX2): the cores call sum about as
    # often as step, on every level, so it is a tenth of a wide layer's pass
    cdef FastApp *a = <FastApp *>app
    _fast_settle(a)
    if a.single:            # float32 vectors, float32 arithmetic (the core's alpha, beta: +-1, 0)
        bn_axpby_f32(a.size, alpha, <const float *>x, beta, <float *>y)
    else:
        bn_axpby(a.size, alpha, <const double *>x, beta, <double *>y)
    return 0

cdef braid_Int _v_norm(braid_App app, braid_Vector u, braid_Real *norm_ptr) noexcept nogil:
    cdef FastApp *a = <FastApp *>app
    cdef braid_Int ierr
    _fast_settle(a)
    ierr = _fast_failed(a)
    if ierr == 0:
        ierr = _fast_fail(a, _fast_norm_of(a, <const double *>u, norm_ptr))
    if ierr != 0 and not BRAIDNET_CORE_IS_BUNDLED:
        norm_ptr[0] = 0.0
    return ierr

cdef braid_Int _v_access(braid_App app, braid_Vector u, braid_AccessStatus status) noexcept nogil:
    cdef FastApp *a = <FastApp *>app
    cdef AccessInfo info
    _fast_settle(a)
    if _fast_failed(a):
        return _fast_failed(a)
    braid_AccessStatusGetTILD(status, &info.t, &info.iter, &info.level, &info.done)
    braid_AccessStatusGetTIndex(status, &info.index)
    braid_AccessStatusGetResidual(status, &info.residual)
    info.app = a.owner
    return _fast_fail(a, a.access(a.ctx, <const double *>u, &info))

cdef braid_Int _v_bufsize(braid_App app, braid_Int *size_ptr, braid_BufferStatus status) noexcept nogil:
    size_ptr[0] = <braid_Int>_fast_bytes(<FastApp *>app)
    return 0

cdef braid_Int _v_bufpack(braid_App app, braid_Vector u, void *buffer, braid_BufferStatus status) noexcept nogil:
    _fast_settle(<FastApp *>app)
    memcpy(buffer, <void *>u, _fast_bytes(<FastApp *>app))
    return 0

cdef braid_Int _v_bufunpack(braid_App app, void *buffer, braid_Vector *u_ptr,
                            braid_BufferStatus status) noexcept nogil:
    cdef FastApp *a = <FastApp *>app
    cdef double *u
    _fast_settle(a)
    u = _fast_alloc(a)
    u_ptr[0] = <braid_Vector>u
    if u == NULL:
        return _fast_fail(a, BRAID_ERROR_MEMORY)
    memcpy(u, buffer, _fast_bytes(a))
    return 0


@cython.final
cdef class _FastBox(_Box):
    """A VectorApp behind braid_App: the nogil callbacks read a C copy of its fields."""
    cdef _FastState state

    def __cinit__(self, VectorApp app):
        self.app = app

    def __dealloc__(self):
        _fast_release(&self.state)

    cdef int refresh(self) except -1:
        cdef VectorApp v = <VectorApp>self.app
        v._check()
        _fast_settle(&self.state.fast)         # with the size it was made for
        if v.size != self.state.fast.size or v.single != self.state.fast.single:
            _fast_release(&self.state)     # pooled blocks of another size
        self.state.fast.size = v.size
        self.state.fast.single = v.single
        self.state.fast.ctx = v.ctx
        self.state.fast.step = v.step_fn
        self.state.fast.init = v.init_fn
        self.state.fast.access = v.access_fn
        self.state.fast.norm = v.norm_fn
        self.state.fast.owner = <void *>v
        self.state.fast.from_src = v.steps_from_src
        self.state.code = 0
        self.state.nsteps = 0
        self.cb.app = <braid_App>&self.state
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

    cdef braid_Int code(self) noexcept:
        """The first non-zero code this rank's callbacks returned in the current drive."""
        return self.state.code
