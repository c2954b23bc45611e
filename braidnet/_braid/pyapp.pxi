# Python applications: each braid_Vector is a PyObject* (a numpy array) owning one reference;
# the callbacks take the GIL and go to the _PyBox.  (Included by braidnet/braid.pyx.)

from libc.string cimport memset

cimport numpy as cnp

cnp.import_array()

# numpy's own dot product of a dtype (for float64: the BLAS ddot x.dot(x) uses)
ctypedef void (*_npy_dotfunc)(void *, cnp.npy_intp, void *, cnp.npy_intp, void *, cnp.npy_intp,
                              void *) noexcept

cdef extern from "numpy/arrayobject.h":
    ctypedef struct _npy_arrfuncs "PyArray_ArrFuncs":
        _npy_dotfunc dotfunc
    _npy_arrfuncs *PyDataType_GetArrFuncs(cnp.dtype)

# The float64 dot product of np.linalg.norm (sqrt(x.dot(x))), so that the C norm is bit-identical.
cdef _npy_dotfunc _ddot = PyDataType_GetArrFuncs(cnp.PyArray_DescrFromType(cnp.NPY_DOUBLE)).dotfunc


cdef inline double *_f64(PyObject *v, bint write) noexcept:
    """The data of v when the default C paths may work on it directly: an exact ndarray, float64 in
    native byte order, C-contiguous and aligned (and writeable if `write`); else NULL (the numpy
    path then runs, as before)."""
    cdef object o = <object>v
    if not cnp.PyArray_CheckExact(o):
        return NULL
    cdef cnp.ndarray a = <cnp.ndarray>o
    if (cnp.PyArray_TYPE(a) != cnp.NPY_DOUBLE or not cnp.PyArray_ISNOTSWAPPED(a)
            or not cnp.PyArray_CHKFLAGS(a, cnp.NPY_ARRAY_C_CONTIGUOUS | cnp.NPY_ARRAY_ALIGNED)
            or (write and not cnp.PyArray_ISWRITEABLE(a))):
        return NULL
    return <double *>cnp.PyArray_DATA(a)


cdef inline bint _same_shape(PyObject *x, PyObject *y) noexcept:
    cdef cnp.ndarray a = <cnp.ndarray><object>x, b = <cnp.ndarray><object>y
    cdef int nd = cnp.PyArray_NDIM(a), k
    if nd != cnp.PyArray_NDIM(b):
        return False
    for k in range(nd):
        if cnp.PyArray_DIMS(a)[k] != cnp.PyArray_DIMS(b)[k]:
            return False
    return True

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


# ---- what init may return: checked once per Core at set-up (core.pxi), and on every later init ----

# Why an init result was refused (0: accepted).  The set-up reduction carries the code and the
# dtype's character code, so that every rank words the failing rank's error itself.
cdef enum:
    _INIT_OK = 0
    _INIT_NONE = 1          # None
    _INIT_NOT_NUMERIC = 2   # numpy makes no array of it (a ragged list, ...)
    _INIT_DTYPE = 3         # no real number: bool, complex, object, str, bytes, datetime, void
    _INIT_LOSSY = 4         # int64/uint64 beyond 2**53 in magnitude, or longdouble float64 does not hold
    _INIT_EMPTY = 5         # no entries

_FLOAT64 = np.dtype(np.float64)

# The rule, as every refusal states it.
_INIT_RULE = ("init must return a non-empty array-like of float64, or of a real dtype whose values float64 "
             "holds exactly (float16, float32, integers; int64/uint64 only within 2**53 in magnitude, "
             "longdouble only when exact), which the wrapper converts to float64; bool, complex, object, "
             "string and datetime dtypes are refused")


cdef object _as_vector(object x, int *reason, int *char):
    """init's result as a float64 ndarray that only the core holds; None with *reason (and the
    dtype's character code in *char) when it is refused.  x is borrowed from the caller's temporary
    (see _own: a fresh float64 array is not copied)."""
    reason[0] = _INIT_OK
    char[0] = 0
    if x is None:
        reason[0] = _INIT_NONE
        return None
    if isinstance(x, np.ndarray) and (<object>x).dtype == _FLOAT64:
        u = _own(x, "init")
    else:
        try:
            a = x if isinstance(x, np.ndarray) else np.array(x)   # np.array: a fresh copy
        except (TypeError, ValueError, OverflowError):
            reason[0] = _INIT_NOT_NUMERIC
            return None
        dt = a.dtype
        char[0] = ord(dt.char)
        if dt.kind in "iu":
            if dt.itemsize > 4 and a.size > 0 and not (a.max() <= 2**53 and (dt.kind == "u" or a.min() >= -2**53)):
                reason[0] = _INIT_LOSSY
                return None
        elif dt.kind == "f":
            if dt.itemsize > 8 and not np.array_equal(a.astype(np.float64), a, equal_nan=True):
                reason[0] = _INIT_LOSSY
                return None
        else:
            reason[0] = _INIT_DTYPE
            return None
        u = a if (dt == _FLOAT64 and a is not x) else a.astype(np.float64)
    if u.size == 0:
        reason[0] = _INIT_EMPTY
        return None
    return u


cdef object _init_refusal(str cls, double t, int reason, int char, str where):
    """The exception (TypeError or ValueError) refusing init(t)'s result, in one line."""
    name = np.dtype(chr(char)).name if char > 0 else "?"
    if reason == _INIT_NONE:
        what = "None"
    elif reason == _INIT_NOT_NUMERIC:
        what = "something numpy makes no array of numbers of"
    elif reason == _INIT_DTYPE:
        what = f"an array of dtype {name}"
    elif reason == _INIT_LOSSY:
        what = f"{name} values that float64 does not hold exactly"
    else:
        what = "an empty array"
    text = f"{cls}.init({t!r}){where} returned {what}; {_INIT_RULE}"
    return ValueError(text) if reason in (_INIT_LOSSY, _INIT_EMPTY) else TypeError(text)


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
    cdef object shape               # of every vector: init's first result (None until known)
    cdef int ndim                   # the same, for the C paths: len(shape) (-1 until known) ...
    cdef cnp.npy_intp dims[cnp.NPY_MAXDIMS]     # ... and shape
    cdef Py_ssize_t nbytes          # message size in bytes, -1 until first asked
    cdef readonly Py_ssize_t nsteps  # step calls of the current drive (Core.step_calls on LLNL XBraid)

    def __cinit__(self, app, double tstart):
        self.app = app
        self.tstart = tstart
        self.nbytes = -1
        self.ndim = -1

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
        self.nsteps = 0
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

    cdef braid_Int code(self) noexcept:
        """The code this rank's callbacks returned in the current drive (before take_error)."""
        return _CALLBACK_ERROR if self.error is not None else 0

    cdef int settle_message_size(self) noexcept:
        """LLNL XBraid, first drive: fix the message size before the core asks (1: it failed).

        bufsize must answer with the same size even after a failure (LLNL uses whatever it gets);
        a failure here is agreed on by Core.drive() before braid_Drive."""
        try:
            self.message_size()
        except BaseException as exc:
            self.fail(exc)
        return 1 if self.error is not None else 0

    cdef braid_Vector blank(self, braid_Vector like) noexcept:
        """LLNL XBraid, after a failure: a valid vector where one must be written (a copy of
        `like`, else zeros of the vectors' shape); the core ignores codes and uses it."""
        try:
            if like != NULL:
                return _hand_out(np.array(_vec(like), copy=True))
            return _hand_out(np.zeros(self.shape if self.shape is not None else (1,), dtype=np.float64))
        except BaseException as exc:
            self.fail(exc)
            return NULL

    cdef object vector(self, object x, double t):
        """init(t)'s result x (borrowed) as the core's float64 vector; raise if refused or if its
        shape is not the one init gave first (at set-up, init(tstart))."""
        cdef int reason = 0, char = 0
        u = _as_vector(x, &reason, &char)
        if u is None:
            raise _init_refusal(type(self.app).__name__, t, reason, char, "")
        if self.shape is None:
            self.set_shape(u.shape)
        elif u.shape != self.shape:
            raise ValueError(f"{type(self.app).__name__}.init({t!r}) returned an array of shape {u.shape}; "
                             f"init({self.tstart!r}) gave {self.shape}, the shape of every vector")
        return u

    cdef Py_ssize_t probe(self, int *reason, int *char) except -2:
        """The set-up check: the size of init(tstart), or -1 with *reason/*char when it is refused."""
        u = _as_vector(self.f_init(self.tstart), reason, char)
        if u is None:
            return -1
        self.set_shape(u.shape)
        return u.size

    cdef int set_shape(self, tuple shape) except -1:
        cdef int k
        self.shape = shape
        self.ndim = len(shape)
        for k in range(self.ndim):
            self.dims[k] = shape[k]
        return 0

    cdef object template(self):
        """init(tstart)'s shape and dtype (float64): what the default pack/unpack move."""
        if self.shape is None:
            self.vector(self.f_init(self.tstart), self.tstart)
        return self.shape, _FLOAT64

    cdef Py_ssize_t message_size(self) except -1:
        if self.nbytes < 0:
            if self.f_bufsize is not None:
                n = self.f_bufsize()
                if not isinstance(n, numbers.Integral) or n < 0:
                    raise ValueError(f"app.bufsize() must return an integer >= 0, got {n!r}")
            elif self.f_pack is not None:
                n = len(_byte_view(self.f_pack(self.vector(self.f_init(self.tstart), self.tstart))))
            else:
                shape, dtype = self.template()
                n = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
            if n >= 2**31:
                raise ValueError(f"a message of {n} bytes is too long for the core (< 2**31 bytes)")
            self.nbytes = n
        return self.nbytes

    # ---- the callbacks, with the GIL held ----

    cdef braid_Int init(self, braid_Real t, braid_Vector *u_ptr) noexcept:
        # on failure: no vector on the bundled core (it expects none and frees nothing), a zero
        # vector on LLNL XBraid (it ignores the code and uses the vector)
        u_ptr[0] = NULL
        if self.error is None:
            try:
                u = self.vector(self.f_init(t), t)
                u_ptr[0] = _hand_out(u)
                return 0
            except BaseException as exc:
                self.fail(exc)
        if not BRAIDNET_CORE_IS_BUNDLED:
            u_ptr[0] = self.blank(NULL)
        return _CALLBACK_ERROR

    cdef braid_Int step(self, braid_Vector ustop, braid_Vector fstop, braid_Vector u,
                        braid_StepStatus status) noexcept:
        if self.error is not None:
            return _CALLBACK_ERROR
        self.nsteps += 1
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
        if self.error is None:
            try:
                if self.f_clone is None:
                    v = _c_clone(<PyObject *>u)
                    if v is None:
                        v = np.array(_vec(u), copy=True)
                else:
                    v = _own(self.f_clone(_vec(u)), "clone")
                v_ptr[0] = _hand_out(v)
                return 0
            except BaseException as exc:
                self.fail(exc)
        if not BRAIDNET_CORE_IS_BUNDLED:
            v_ptr[0] = self.blank(u)
        return _CALLBACK_ERROR

    cdef braid_Int sum(self, double alpha, braid_Vector x, double beta, braid_Vector y) noexcept:
        if self.error is not None:
            return _CALLBACK_ERROR
        if self.f_sum is None and _c_sum(alpha, <PyObject *>x, beta, <PyObject *>y):
            return 0
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
        if self.error is None:
            try:
                if self.f_norm is None:
                    if not _c_norm(<PyObject *>u, norm_ptr):
                        norm_ptr[0] = np.linalg.norm(np.ravel(_vec(u)))
                else:
                    norm_ptr[0] = self.f_norm(_vec(u))
                return 0
            except BaseException as exc:
                self.fail(exc)
        if not BRAIDNET_CORE_IS_BUNDLED:
            norm_ptr[0] = 0.0
        return _CALLBACK_ERROR

    cdef braid_Int access(self, braid_Vector u, braid_AccessStatus status) noexcept:
        if self.error is not None:
            return _CALLBACK_ERROR
        try:
            self.f_access(_vec(u), _access_status(status))
        except BaseException as exc:
            return self.fail(exc)
        return 0

    cdef braid_Int bufsize(self, braid_Int *size_ptr) noexcept:
        if self.error is None:
            try:
                size_ptr[0] = <braid_Int>self.message_size()
                return 0
            except BaseException as exc:
                self.fail(exc)
        if not BRAIDNET_CORE_IS_BUNDLED:
            # settled before the first drive (settle_message_size): every message keeps its size
            size_ptr[0] = <braid_Int>(self.nbytes if self.nbytes >= 0 else 0)
        return _CALLBACK_ERROR

    cdef braid_Int bufpack(self, braid_Vector u, void *buffer) noexcept:
        cdef const unsigned char[::1] src
        cdef double *data
        if self.error is not None:
            return self.blank_message(buffer)
        if self.f_pack is None and self.nbytes >= 0:
            data = _f64(<PyObject *>u, False)
            if data != NULL and cnp.PyArray_SIZE(<cnp.ndarray><object><PyObject *>u) * 8 == self.nbytes:
                memcpy(buffer, data, self.nbytes)
                return 0
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
            self.fail(exc)
            return self.blank_message(buffer)
        return 0

    cdef braid_Int blank_message(self, void *buffer) noexcept:
        """After a failure: zeros in the buffer on LLNL XBraid (it sends it anyway)."""
        if not BRAIDNET_CORE_IS_BUNDLED and self.nbytes > 0:
            memset(buffer, 0, self.nbytes)
        return _CALLBACK_ERROR

    cdef braid_Int bufunpack(self, void *buffer, braid_Vector *u_ptr) noexcept:
        cdef unsigned char[::1] dst
        u_ptr[0] = NULL
        if self.error is not None:
            return self.blank_unpack(u_ptr)
        try:
            n = self.message_size()
            if self.f_unpack is None and self.ndim >= 0:
                u = cnp.PyArray_EMPTY(self.ndim, self.dims, cnp.NPY_DOUBLE, 0)
                if n > 0:
                    memcpy(cnp.PyArray_DATA(<cnp.ndarray>u), buffer, n)
            elif self.f_unpack is None:
                shape, dtype = self.template()
                u = np.empty(shape, dtype)
                dst = u.reshape(-1).view(np.uint8)
                if n > 0:
                    memcpy(&dst[0], buffer, n)
            else:
                # A bytes copy: the core's buffer does not outlive this call.
                u = _own(self.f_unpack(PyBytes_FromStringAndSize(<char *>buffer, n)), "unpack")
        except BaseException as exc:
            self.fail(exc)
            return self.blank_unpack(u_ptr)
        u_ptr[0] = _hand_out(u)
        return 0

    cdef braid_Int blank_unpack(self, braid_Vector *u_ptr) noexcept:
        if not BRAIDNET_CORE_IS_BUNDLED:
            u_ptr[0] = self.blank(NULL)
        return _CALLBACK_ERROR


# ---- the default clone/sum/norm in C, on the float64 buffers (the numpy path where they do not apply) ----

cdef object _c_clone(PyObject *u):
    """A C-contiguous copy of u (same shape), or None where the C path does not apply."""
    cdef double *src = _f64(u, False)
    if src == NULL:
        return None
    cdef cnp.ndarray a = <cnp.ndarray><object>u
    v = cnp.PyArray_EMPTY(cnp.PyArray_NDIM(a), cnp.PyArray_DIMS(a), cnp.NPY_DOUBLE, 0)
    memcpy(cnp.PyArray_DATA(<cnp.ndarray>v), src, cnp.PyArray_NBYTES(a))
    return v


cdef bint _c_sum(double alpha, PyObject *x, double beta, PyObject *y) noexcept:
    """y = alpha x + beta y in C (True), with numpy's default's numbers: beta == 0 overwrites y
    with alpha*x, else each entry is (beta*y) + (alpha*x), each product rounded (no FMA: the
    build does not target FMA, and the sum of two rounded products is what numpy computes).
    False (nothing done) where the C path does not apply: the numpy path runs."""
    cdef double *xd = _f64(x, False)
    cdef double *yd = _f64(y, True)
    cdef Py_ssize_t i, n
    cdef double ax, by
    if xd == NULL or yd == NULL or not _same_shape(x, y):
        return False
    n = cnp.PyArray_SIZE(<cnp.ndarray><object>y)
    if xd != yd and xd < yd + n and yd < xd + n:
        return False                # partial overlap: numpy's buffering handles it
    if beta == 0.0:
        for i in range(n):
            yd[i] = xd[i] * alpha
    else:
        for i in range(n):
            ax = alpha * xd[i]
            by = yd[i] * beta
            yd[i] = by + ax
    return True


cdef bint _c_norm(PyObject *u, double *out) noexcept:
    """np.linalg.norm(u) = sqrt(u.dot(u)) with numpy's own float64 dot (True), or False."""
    cdef double *d = _f64(u, False)
    cdef double sq = 0.0
    if d == NULL:
        return False
    _ddot(d, 8, d, 8, &sq, cnp.PyArray_SIZE(<cnp.ndarray><object>u), NULL)
    out[0] = sqrt(sq)
    return True


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
