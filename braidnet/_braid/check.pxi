# check_app: XBraid's braid_Test* checks, on the very callbacks the core would use.
# (Included by braidnet/braid.pyx.)

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
