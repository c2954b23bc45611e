# Errors: the core's codes as BraidError, and CHKERR, the one way a core call reports failure.
# (Included by braidnet/braid.pyx.)

#: What a callback returns after storing a Python exception (negative: never a core error code).
CALLBACK_ERROR = -1
cdef int _CALLBACK_ERROR = -1


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
