# The box: what the core's callbacks reach through braid_App.  A Core (or check_app) talks to an
# application only through a _Box: _PyBox for a Python object (pyapp.pxi), _FastBox for a
# VectorApp (vectorapp.pxi).  (Included by braidnet/braid.pyx.)

cdef class _Box:
    cdef int refresh(self) except -1:
        """Re-read the application's callbacks (GIL held); called before each drive."""
        return 0

    cdef object take_error(self):
        """Return and forget the exception a callback stored (None if none)."""
        return None


cdef braid_Int _noop_access(braid_App app, braid_Vector u, braid_AccessStatus status) noexcept nogil:
    return 0


cdef _Box _make_box(object app, double tstart):
    cdef _Box box
    if isinstance(app, VectorApp):
        box = _FastBox(app)
    else:
        box = _PyBox(app, tstart)
    box.refresh()
    return box
