# What Python sees of a call and of a drive: StepStatus and AccessStatus (copies handed to
# Python callbacks, valid after the callback) and DriveResult.  (Included by braidnet/braid.pyx.)

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
