# The core: Core, one braid_Core with its box.  (Included by braidnet/braid.pyx.)

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
    the list keep the default), ``abs_tol`` or ``rel_tol``, ``max_iter``, ``fmg`` (bool: F-cycles
    instead of V-cycles), ``nfmg`` (F-cycles except a V-cycle at iteration nfmg, as XBraid's
    ``SetFMG`` + ``SetNFMG`` do; -1: F-cycles always), ``skip`` (0 or 'off'; 1 or 'first', the
    default: the first iteration of the first drive does no fine-level work; 'every': so does the
    first iteration of every warm restart, as LLNL XBraid's skip), ``final_fc_relax`` (bool: end
    each drive with an F-then-C relaxation whose values the final access sees, XBraid's
    ``SetFinalFCRelax``; cannot be switched off again), ``storage`` (-1 or a level), ``tnorm`` (1/'l1', 2/'l2', 3/'linf'),
    ``print_level`` (0-2), ``access_level`` (0-3), ``seq_soln`` (bool).  Bad values raise
    ``ValueError`` before any MPI call.

    The constructor is collective: it checks the vectors once, with one reduction over ``comm``.
    A Python app's ``init(tstart)`` must return a non-empty array-like of float64, or of a real
    dtype whose values float64 holds exactly (float16, float32, integers; int64/uint64 only within
    2**53 in magnitude, longdouble only when exact), which the wrapper converts to float64 (as it
    converts every later ``init``, whose shape must be that of ``init(tstart)``); bool, complex,
    object, string and datetime dtypes raise ``TypeError``, lossy values or empty arrays
    ``ValueError``.  The vector size (a VectorApp's ``size``) must be the same on every rank, else
    ``ValueError``.  Every rank raises the same error, naming the rank at fault; an exception that
    the app raises there comes out on its rank, and the other ranks raise :class:`BraidError`
    naming that rank.

    Built against LLNL XBraid (``BUNDLED_CORE`` False) a Core behaves the same; what braidnet does
    around that core for it is listed in one place, the section "LLNL XBraid" of
    ``braidnet/_braid/core.pxi``.
    """

    def __cinit__(self):
        self._core = NULL
        self._driven = 0

    def __init__(self, app, tstart, tstop, ntime, comm=MPI.COMM_WORLD, **options) -> None:
        cdef MPI_Comm c
        if self._core != NULL:
            raise RuntimeError("Core.__init__ called twice")
        opts = check_options(tstart, tstop, ntime, **options)
        if not isinstance(comm, MPI.Comm):
            raise TypeError(f"comm must be an mpi4py MPI.Comm, got {type(comm).__name__}")
        if comm == MPI.COMM_NULL:
            raise ValueError("comm must not be MPI.COMM_NULL")
        box = _set_up_box(comm, app, float(tstart))
        self.app = app
        self.tstart = tstart
        self.tstop = tstop
        self.ntime = ntime
        self.options = opts
        self._box = box
        self._comm = comm
        if BRAIDNET_CORE_IS_BUNDLED:
            _create(self)
        # LLNL XBraid: the braid_Core is made by the first drive (see "LLNL XBraid" below)

    cdef int _apply(self, dict opts) except -1:
        cdef braid_Core core = self._core
        if core == NULL:
            return 0        # LLNL XBraid before the first drive: _create applies self.options
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
        if opts.get("fmg") or "nfmg" in opts:
            # XBraid's SetNFMG acts only after SetFMG: F-cycles, except a V-cycle at iteration nfmg
            CHKERR(braid_SetFMG(core))
        if "nfmg" in opts:
            CHKERR(braid_SetNFMG(core, opts["nfmg"]))
        if not BRAIDNET_CORE_IS_BUNDLED:
            _llnl_skip(self, opts)
        elif "skip" in opts:
            CHKERR(braid_SetSkip(core, 0 if opts["skip"] == 0 else 1))
            CHKERR(braid_SetWarmSkip(core, 1 if opts["skip"] == "every" else 0))
        if opts.get("final_fc_relax"):
            CHKERR(braid_SetFinalFCRelax(core))
        if "storage" in opts:
            CHKERR(braid_SetStorage(core, opts["storage"]))
        if "tnorm" in opts:
            CHKERR(braid_SetTemporalNorm(core, opts["tnorm"]))
        if "print_level" in opts:
            CHKERR(braid_SetPrintLevel(core, opts["print_level"]))
        if "access_level" in opts:
            CHKERR(braid_SetAccessLevel(core, opts["access_level"]))
        if "seq_soln" in opts and BRAIDNET_CORE_IS_BUNDLED:
            CHKERR(braid_SetSeqSoln(core, opts["seq_soln"]))
        return 0

    def set_options(self, **options) -> None:
        """Change options between drives (e.g. ``max_iter`` and ``abs_tol`` of each One-shot solve).

        Options that shape the grid hierarchy (``max_levels``, ``min_coarse``, ``cfactor``,
        ``storage``, ``seq_soln``) are fixed once the core has been driven.
        """
        self._check_open()
        opts = check_options(self.tstart, self.tstop, self.ntime, **options)
        fixed = sorted(set(opts) & _GRID_OPTIONS) if self._driven else []
        if fixed:
            raise ValueError(f"{', '.join(fixed)} cannot change after the first drive (they shape the grids)")
        if "fmg" in opts and not opts["fmg"]:
            if self.options.get("fmg") or "nfmg" in self.options:
                raise ValueError("fmg=False: F-cycles cannot be switched off once on (XBraid has no setter "
                                 "for it); make a new Core")
            del opts["fmg"]
        if "final_fc_relax" in opts and not opts["final_fc_relax"] and self.options.get("final_fc_relax"):
            raise ValueError("final_fc_relax=False: the final FC relaxation cannot be switched off once on "
                             "(XBraid has no setter for it); make a new Core")
        if "abs_tol" in opts:
            self.options.pop("rel_tol", None)
        if "rel_tol" in opts:
            self.options.pop("abs_tol", None)
        self._apply(opts)
        self.options.update(opts)

    cdef int _check_open(self) except -1:
        # open from __init__ to close(); the braid_Core itself may not exist yet (LLNL XBraid)
        if self._box is None:
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
        if not BRAIDNET_CORE_IS_BUNDLED and self._core == NULL:
            _llnl_first_drive(self)
        t0 = time.perf_counter()
        with nogil:
            ierr = braid_Drive(self._core)
        wall = time.perf_counter() - t0
        self._driven = 1
        if not BRAIDNET_CORE_IS_BUNDLED:
            _llnl_after_drive(self)
        self._raise_failure(ierr)
        return DriveResult(self.iterations, self.residual_norms, self.levels, wall)

    cdef int _raise_failure(self, braid_Int ierr) except -1:
        cdef braid_Int rank = -1
        if not BRAIDNET_CORE_IS_BUNDLED:
            ierr, rank = _llnl_agree(self, ierr)
        exc = self._box.take_error()
        if exc is not None:
            raise exc
        if ierr == 0:
            return 0
        if ierr == BRAID_ERROR_REMOTE:
            if BRAIDNET_CORE_IS_BUNDLED:
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
        if not self._driven or self._core == NULL:
            return 0
        CHKERR(braid_GetNumIter(self._core, &n))
        return n

    @property
    def residual_norms(self) -> list:
        """The residual history of the last drive, exactly as braid_GetRNorms gives it."""
        cdef braid_Int niter = 0, n
        cdef double *buf
        self._check_open()
        if not self._driven or self._core == NULL:
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
        if self._core == NULL:
            return 0
        CHKERR(braid_GetNLevels(self._core, &n))
        return n

    @property
    def step_calls(self):
        """Step callbacks this rank made in the last drive (0 before the first)."""
        cdef braid_Int n = -1
        self._check_open()
        if not BRAIDNET_CORE_IS_BUNDLED:
            return _box_steps(self._box) if self._driven else 0
        CHKERR(braid_GetNumSteps(self._core, &n))
        return n

    def set_trace(self, on) -> None:
        """Start (``True``: a new trace, the earlier one discarded) or stop (``False``: the events are
        kept for :attr:`trace`) this rank's event trace.  Local, no communication.

        The trace is an extension of braidnet's bundled core: built against LLNL XBraid
        (:data:`TRACE_AVAILABLE` False) this raises ``NotImplementedError``.
        """
        self._check_open()
        # (untyped argument: a `bool` annotation would let Cython coerce any value to a bint)
        if not isinstance(on, (bool, np.bool_)) and not (isinstance(on, numbers.Integral) and on in (0, 1)):
            raise ValueError(f"on must be True or False, got {on!r}")
        if not BRAIDNET_CORE_IS_BUNDLED:
            raise NotImplementedError("the event trace (Core.set_trace) needs braidnet's bundled MGRIT core; "
                                      "this braidnet was built against LLNL XBraid (XBRAID_DIR)")
        CHKERR(braid_SetTrace(self._core, 1 if on else 0))

    @property
    def trace(self) -> np.ndarray:
        """This rank's events since the last ``set_trace(True)``, in program order, as a numpy structured
        array with int32 fields ``kind`` (:data:`TRACE_KINDS`: 1 step, 2 send, 3 receive completed,
        4 reduction), ``level``, ``index`` (steps: the level's point stepped into, fine point
        ``index * level_strides[level]``; else -1), ``peer`` (messages: the other rank of the time
        communicator; else -1), ``bytes`` (messages: header + packed vector; reductions: bytes
        reduced), ``iter`` (the drive's iteration) and ``drive`` (drives since the trace started,
        from 0).  Empty when no trace was started.  A copy: later drives do not change it.
        """
        cdef braid_Int n = 0
        cdef const braid_TraceEvent *ev = NULL
        cdef size_t addr
        self._check_open()
        out = np.zeros(0, dtype=TRACE_DTYPE)
        if not BRAIDNET_CORE_IS_BUNDLED or self._core == NULL:
            return out
        CHKERR(braid_GetTrace(self._core, &n, &ev))
        out = np.zeros(n, dtype=TRACE_DTYPE)
        if n > 0:
            # braid_TraceEvent is seven braid_Int (int32) in TRACE_DTYPE's field order
            addr = out.ctypes.data
            memcpy(<void *>addr, ev, n * sizeof(braid_TraceEvent))
        return out

    @property
    def distribution(self) -> tuple:
        """(ilower, iupper): the fine time indices this rank owns (iupper < ilower: none)."""
        cdef braid_Int lo = 0, hi = -1
        self._check_open()
        if not BRAIDNET_CORE_IS_BUNDLED:
            return _llnl_fine_range(self.ntime, (<object>self._comm).Get_size(), (<object>self._comm).Get_rank())
        CHKERR(braid_GetDistribution(self._core, &lo, &hi))
        return lo, hi

    @property
    def distributions(self) -> list:
        """Every rank's :attr:`distribution`, indexed by rank of the time communicator (no communication)."""
        cdef braid_Int lo = 0, hi = -1, q
        self._check_open()
        size = (<object>self._comm).Get_size()
        if not BRAIDNET_CORE_IS_BUNDLED:
            return [_llnl_fine_range(self.ntime, size, q) for q in range(size)]
        out = []
        for q in range(size):
            CHKERR(braid_GetDistributionOf(self._core, q, &lo, &hi))
            out.append((lo, hi))
        return out

    @property
    def level_strides(self) -> tuple:
        """The hierarchy: the fine-index stride of every level, level 0 (stride 1) first.

        Point i of level l is fine point ``i * level_strides[l]``.  Known before the first drive:
        it is what the core builds from its options (those that shape it are fixed by then).
        """
        cdef braid_Int n = 0, l
        cdef braid_Int *buf
        self._check_open()
        if not BRAIDNET_CORE_IS_BUNDLED:
            return _llnl_level_strides(self.ntime, self.options)
        CHKERR(braid_GetLevelStrides(self._core, 0, &n, NULL))
        buf = <braid_Int *>malloc(n * sizeof(braid_Int))
        if buf == NULL:
            raise MemoryError()
        try:
            CHKERR(braid_GetLevelStrides(self._core, n, &n, buf))
            return tuple([buf[l] for l in range(n)])
        finally:
            free(buf)

    @property
    def comm(self):
        """The time communicator."""
        return self._comm

    def print_stats(self) -> None:
        """Print the statistics block of the last drive (rank 0 of the communicator)."""
        self._check_open()
        if self._core == NULL:
            return      # LLNL XBraid before the first drive: no core, no statistics
        CHKERR(braid_PrintStats(self._core))

    def close(self) -> None:
        """Destroy the C core (its vectors are freed); later calls raise ValueError.  Idempotent."""
        cdef braid_Core core = self._core
        self._core = NULL
        try:
            if core != NULL and _mpi_alive():
                CHKERR(braid_Destroy(core))
        finally:
            self._box = None

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
        state = "closed" if self._box is None else "open"
        return (f"<braidnet.braid.Core {state}: ntime={self.ntime} on [{self.tstart!r}, {self.tstop!r}], "
                f"app={type(self.app).__name__}>")


# ---------------------------------------------------------------------------------------------
# LLNL XBraid: what braidnet does around it
#
# Built against LLNL XBraid (XBRAID_DIR=..., BUNDLED_CORE False), braidnet behaves as on its bundled
# core for every public function.  Where LLNL cannot do something, braidnet does it around the core;
# this is the one place that says so (the code is in the helpers below, the boxes in pyapp.pxi and
# vectorapp.pxi, and the shim in libbraid.pxd):
#
# * Life cycle.  LLNL's braid_Destroy reads the fine grid, which only braid_Drive makes: destroying a
#   core that was never driven crashes.  So the braid_Core is made by the first drive (braid_Init,
#   then the options, in _create); a Core closed before it holds no C core and frees nothing.
#   braid_Init makes no MPI call, so nothing collective moves.  Before the first drive ``levels``
#   is 0 (as on the bundled core), and ``print_stats()`` prints nothing (there is no core).
# * File output.  LLNL writes braid.out.cycle into the working directory by default; every core
#   gets braid_SetFileIOLevel(core, 0) (braidnet_FileOutputOff in the shim).
# * Warm restarts.  LLNL applies skip (the first down-cycle does no fine-level work) at every
#   braid_Drive; the bundled core skips in the first drive only, unless ``skip="every"``
#   (braid_SetWarmSkip).  So with skip 1 braidnet sets skip 0 on the LLNL core after each drive;
#   with "every" it leaves LLNL's skip on, which is that mode; always skip 0 while seq_soln is on,
#   where the bundled core ignores skip (it avoids LLNL's warning).
# * Callback failures.  LLNL ignores callback return codes and uses their outputs.  So braidnet's
#   callbacks always write valid outputs, also after a failure: vectors (zeros, or a copy where one
#   is cloned), norms (0), message sizes (fixed before the first drive: a Python app's message size
#   is computed and agreed on there, one reduction, so that bufsize never needs the app again) and
#   buffers (zeros); once one failed they skip the app's functions, as the bundled core does.  Each
#   box keeps this rank's first code (a Python exception: CALLBACK_ERROR; a VectorApp's own code).
#   After braid_Drive one reduction (_llnl_agree) finds the lowest failing rank, as the bundled core
#   does: the failing rank raises its exception (or BraidError with its code), the others
#   BraidError(ERROR_REMOTE) naming it.  A NaN residual norm (LLNL stops, but returns 0) raises
#   BraidError(ERROR_DIVERGED) on every rank.  LLNL goes on iterating after a failure until its
#   tolerance or max_iter ends the drive (the failing rank's callbacks return at once): no rank
#   hangs, but the failing drive costs more than on the bundled core.
# * Results LLNL does not publish: ``step_calls`` counts the step callbacks in the box;
#   ``distribution``, ``distributions`` and ``level_strides`` follow the bundled core's rules
#   (_llnl_fine_range, _llnl_level_strides; LLNL distributes and coarsens by the same rules).
#   braid_ErrorString and braid_GetErrorRank are stand-ins in the shim (libbraid.pxd).
# * Not equal: LLNL's algorithm itself (e.g. which points are accessed when, the order of the final
#   access, how many steps a cycle takes, its print_level output) is LLNL's; tests that depend on
#   the bundled core's choices are marked ``bundled_core`` (tests/conftest.py).
# ---------------------------------------------------------------------------------------------

cdef int _create(Core self) except -1:
    """braid_Init, no file output, and the options: the C core of self."""
    cdef MPI_Comm c = (<_MPIComm>self._comm).ob_mpi
    cdef _Box box = self._box
    CHKERR(braid_Init(c, c, self.tstart, self.tstop, self.ntime, box.cb.app, box.cb.step, box.cb.init,
                      box.cb.clone, box.cb.free, box.cb.sum, box.cb.norm, box.cb.access, box.cb.bufsize,
                      box.cb.bufpack, box.cb.bufunpack, &self._core))
    CHKERR(braidnet_FileOutputOff(self._core))
    self._apply(self.options)
    return 0


cdef int _llnl_skip(Core self, dict opts) except -1:
    """LLNL's skip for the next drive: skip 1 in the first drive only, "every" in all, never with
    seq_soln (set before seq_soln: no warning)."""
    merged = dict(self.options)
    merged.update(opts)
    skip = merged.get("skip", 1)
    on = skip == "every" or (skip == 1 and not self._driven)
    CHKERR(braid_SetSkip(self._core, 1 if on and not merged.get("seq_soln", 0) else 0))
    if "seq_soln" in opts:
        CHKERR(braid_SetSeqSoln(self._core, opts["seq_soln"]))
    return 0


cdef int _llnl_first_drive(Core self) except -1:
    """LLNL, before braid_Drive makes the grids: settle a Python app's message size (agreed on over
    the ranks: a failure ends the drive on every rank before it starts), then make the C core."""
    if isinstance(self._box, _PyBox):
        (<_PyBox>self._box).settle_message_size()
    self._raise_failure(0)      # a failure leaves no core: the next drive tries again, as the bundled one
    _create(self)
    return 0


cdef int _llnl_after_drive(Core self) except -1:
    """LLNL: later drives continue from the current solution (no skipped down-cycle, unless "every")."""
    _llnl_skip(self, {})
    return 0


cdef tuple _llnl_agree(Core self, braid_Int ierr):
    """LLNL: (code, rank) of the drive's failure, agreed on with one reduction: this rank's code
    if it failed (the lowest failing rank), else ERROR_REMOTE and the lowest failing rank, else (0, -1)."""
    comm = self._comm
    me, P = comm.Get_rank(), comm.Get_size()
    code = ierr if ierr != 0 else _box_code(self._box)
    if code == 0 and self._core != NULL and self._driven:
        if any(math.isnan(r) for r in self.residual_norms):
            code = BRAID_ERROR_DIVERGED     # every rank sees the same (global) norm
    first = comm.allreduce(me if code != 0 else P, op=MPI.MIN)
    if first == P:
        return 0, -1
    return (code if code != 0 else BRAID_ERROR_REMOTE), first


cdef braid_Int _box_code(_Box box):
    if isinstance(box, _PyBox):
        return (<_PyBox>box).code()
    if isinstance(box, _FastBox):
        return (<_FastBox>box).code()
    return 0


cdef object _box_steps(_Box box):
    if isinstance(box, _PyBox):
        return (<_PyBox>box).nsteps
    if isinstance(box, _FastBox):
        return (<_FastBox>box).state.nsteps
    return None


# ---------------------------------------------------------------------------------------------
# The set-up check of the vectors: one reduction per Core
# ---------------------------------------------------------------------------------------------

cdef int _SHIFT = 65536     # room below a failure's key for its payload (reason << 8 | dtype char)


cdef _Box _set_up_box(object comm, object app, double tstart):
    """The app's box, once every rank of comm agrees that its vectors are fine (one Allreduce).

    Each rank contributes max(size, rank), min(size, rank) and its failure (kind, rank, payload),
    each packed into one int64 so that MPI_MAX finds the extreme value and the lowest rank holding
    it.  Failure kinds: 2, an exception (payload 1: checking the app, 2: in init(tstart)); 1, a
    refused init(tstart) (payload: reason << 8 | the dtype's character code).
    """
    cdef _Box box = None
    cdef int reason = 0, char = 0
    cdef Py_ssize_t size = -1
    cdef int stage = 1
    exc = None
    try:
        box = _make_box(app, tstart)
        stage = 2
        if isinstance(box, _FastBox):
            size = (<VectorApp>box.app).size
        else:
            size = (<_PyBox>box).probe(&reason, &char)
    except BaseException as e:   # noqa: every rank must reach the reduction (as the callbacks do)
        exc = e
    P, me = comm.Get_size(), comm.Get_rank()
    k = P - 1 - me                              # larger for lower ranks: MAX picks the lowest rank
    buf = np.array([-1, -(2**62), -1], dtype=np.int64)
    if exc is not None:
        buf[2] = (2 * P + k) * _SHIFT + stage
    elif size < 0:
        buf[2] = (1 * P + k) * _SHIFT + (reason << 8) + char
    else:
        buf[0] = size * P + k
        buf[1] = -size * P + k
    comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.MAX)
    cls = type(app).__name__
    fail = int(buf[2])
    if fail >= 0:
        key, payload = divmod(fail, _SHIFT)
        kind, kbad = divmod(key, P)
        bad = P - 1 - kbad
        if kind == 2:
            if exc is not None:
                raise exc
            what = f"{cls}.init({tstart!r})" if payload == 2 else f"checking the app {cls}"
            raise BraidError(BRAID_ERROR_REMOTE, f"{what} raised an exception on rank {bad} of the time "
                                                 f"communicator while the Core was set up", rank=bad)
        raise _init_refusal(cls, tstart, payload >> 8, payload & 255, f" on rank {bad}" if P > 1 else "")
    smax, kmax = divmod(int(buf[0]), P)
    q, kmin = divmod(int(buf[1]), P)
    smin = -q
    if smax != smin:
        what = f"{cls}.size" if isinstance(box, _FastBox) else f"the size of {cls}.init({tstart!r})"
        raise ValueError(f"{what} differs between the ranks of the time communicator: {smax} entries on "
                         f"rank {P - 1 - kmax}, {smin} on rank {P - 1 - kmin}; every rank needs vectors "
                         f"of the same size")
    return box


# ---------------------------------------------------------------------------------------------
# Stand-ins for LLNL XBraid (BRAIDNET_CORE_IS_BUNDLED false), which publishes neither its hierarchy
# nor other ranks' ranges.  They copy the bundled core's rules (xbraid/grid.c: _braid_NumLevels and
# _braid_FineRange), the reference; nothing else in braidnet may compute these.
# ---------------------------------------------------------------------------------------------

def _llnl_fine_range(ntime: int, size: int, rank: int) -> tuple:
    q, r = divmod(ntime + 1, size)
    lo = rank * q + min(rank, r)
    return lo, lo + q + (1 if rank < r else 0) - 1


def _llnl_level_strides(ntime: int, options: dict) -> tuple:
    # the defaults of both cores: max_levels 30, min_coarse 2, cfactor 2
    max_levels, min_coarse = options.get("max_levels", 30), options.get("min_coarse", 2)
    cfactor = options.get("cfactor", 2)
    cf = (lambda l: cfactor[l] if l < len(cfactor) else 2) if isinstance(cfactor, list) else (lambda l: cfactor)
    strides, n = [1], ntime
    while len(strides) < min(max_levels, _MAX_LEVEL_INDEX):
        c = cf(len(strides) - 1)
        if n // c < min_coarse:
            break
        n //= c
        strides.append(strides[-1] * c)
    return tuple(strides)
