# cython: language_level=3
"""Declarations of the MGRIT core's C interface, ``braid.h`` and ``braid_status.h``.

Declared once here and cimported by every Cython module that talks to the core
(``from braidnet.libbraid cimport ...``).  The callback pointer types are ``noexcept nogil``: the
core is plain C, so a callback can neither raise into it nor rely on holding the GIL.
"""
from mpi4py.libmpi cimport MPI_Comm


cdef extern from "braid.h" nogil:
    ctypedef int braid_Int
    ctypedef double braid_Real

    # Message types seen by the buffer callbacks: only those both cores define.  (LLNL XBraid numbers
    # some differently: compare only with these names, never with literal numbers.  The bundled
    # core's braid_ASCaller_FRelax is not declared: LLNL has no such caller, its value 4 there is
    # braid_ASCaller_FRefine_AfterInitHier.)
    enum:
        braid_ASCaller_FInterp
        braid_ASCaller_FRestrict
        braid_ASCaller_FRefine
        braid_ASCaller_FAccess
        braid_ASCaller_Drive_TopCycle

    # Opaque handles.  Only the typedef names reach the generated C, so the struct tags need not
    # match the header's.
    cdef struct _braid_App_struct
    cdef struct _braid_Vector_struct
    cdef struct _braid_Core_struct
    cdef struct _braid_Status_struct
    ctypedef _braid_App_struct *braid_App
    ctypedef _braid_Vector_struct *braid_Vector
    ctypedef _braid_Core_struct *braid_Core
    ctypedef _braid_Status_struct *braid_Status
    ctypedef _braid_Status_struct *braid_StepStatus
    ctypedef _braid_Status_struct *braid_AccessStatus
    ctypedef _braid_Status_struct *braid_BufferStatus

    # User callbacks.
    ctypedef braid_Int (*braid_PtFcnStep)(braid_App app, braid_Vector ustop, braid_Vector fstop,
                                          braid_Vector u, braid_StepStatus status) noexcept nogil
    ctypedef braid_Int (*braid_PtFcnInit)(braid_App app, braid_Real t, braid_Vector *u_ptr) noexcept nogil
    ctypedef braid_Int (*braid_PtFcnClone)(braid_App app, braid_Vector u, braid_Vector *v_ptr) noexcept nogil
    ctypedef braid_Int (*braid_PtFcnFree)(braid_App app, braid_Vector u) noexcept nogil
    ctypedef braid_Int (*braid_PtFcnSum)(braid_App app, braid_Real alpha, braid_Vector x, braid_Real beta,
                                         braid_Vector y) noexcept nogil
    ctypedef braid_Int (*braid_PtFcnSpatialNorm)(braid_App app, braid_Vector u,
                                                 braid_Real *norm_ptr) noexcept nogil
    ctypedef braid_Int (*braid_PtFcnAccess)(braid_App app, braid_Vector u,
                                            braid_AccessStatus status) noexcept nogil
    ctypedef braid_Int (*braid_PtFcnBufSize)(braid_App app, braid_Int *size_ptr,
                                             braid_BufferStatus status) noexcept nogil
    ctypedef braid_Int (*braid_PtFcnBufPack)(braid_App app, braid_Vector u, void *buffer,
                                             braid_BufferStatus status) noexcept nogil
    ctypedef braid_Int (*braid_PtFcnBufUnpack)(braid_App app, void *buffer, braid_Vector *u_ptr,
                                               braid_BufferStatus status) noexcept nogil

    # Life cycle.
    braid_Int braid_Init(MPI_Comm comm_world, MPI_Comm comm, braid_Real tstart, braid_Real tstop,
                         braid_Int ntime, braid_App app, braid_PtFcnStep step, braid_PtFcnInit init,
                         braid_PtFcnClone clone, braid_PtFcnFree free, braid_PtFcnSum sum,
                         braid_PtFcnSpatialNorm spatialnorm, braid_PtFcnAccess access,
                         braid_PtFcnBufSize bufsize, braid_PtFcnBufPack bufpack,
                         braid_PtFcnBufUnpack bufunpack, braid_Core *core_ptr)
    braid_Int braid_Drive(braid_Core core)
    braid_Int braid_Destroy(braid_Core core)
    braid_Int braid_PrintStats(braid_Core core)

    # Options.
    braid_Int braid_SetMaxLevels(braid_Core core, braid_Int max_levels)
    braid_Int braid_SetMinCoarse(braid_Core core, braid_Int min_coarse)
    braid_Int braid_SetCFactor(braid_Core core, braid_Int level, braid_Int cfactor)
    braid_Int braid_SetNRelax(braid_Core core, braid_Int level, braid_Int nrelax)
    braid_Int braid_SetAbsTol(braid_Core core, braid_Real atol)
    braid_Int braid_SetRelTol(braid_Core core, braid_Real rtol)
    braid_Int braid_SetMaxIter(braid_Core core, braid_Int max_iter)
    braid_Int braid_SetFMG(braid_Core core)
    braid_Int braid_SetNFMG(braid_Core core, braid_Int nfmg)
    braid_Int braid_SetSkip(braid_Core core, braid_Int skip)
    braid_Int braid_SetFinalFCRelax(braid_Core core)
    braid_Int braid_SetStorage(braid_Core core, braid_Int storage)
    braid_Int braid_SetTemporalNorm(braid_Core core, braid_Int tnorm)
    braid_Int braid_SetPrintLevel(braid_Core core, braid_Int print_level)
    braid_Int braid_SetAccessLevel(braid_Core core, braid_Int access_level)
    braid_Int braid_SetSeqSoln(braid_Core core, braid_Int seq_soln)

    # Results.
    braid_Int braid_GetNumIter(braid_Core core, braid_Int *niter_ptr)
    braid_Int braid_GetRNorms(braid_Core core, braid_Int *nrequest_ptr, braid_Real *rnorms)
    braid_Int braid_GetRNorm(braid_Core core, braid_Real *rnorm_ptr)
    braid_Int braid_GetNLevels(braid_Core core, braid_Int *nlevels_ptr)

    # braid_status.h: step.
    braid_Int braid_StepStatusGetTstartTstop(braid_StepStatus status, braid_Real *tstart_ptr,
                                             braid_Real *tstop_ptr)
    braid_Int braid_StepStatusGetTIndex(braid_StepStatus status, braid_Int *idx_ptr)
    braid_Int braid_StepStatusGetLevel(braid_StepStatus status, braid_Int *level_ptr)
    braid_Int braid_StepStatusGetNLevels(braid_StepStatus status, braid_Int *nlevels_ptr)
    braid_Int braid_StepStatusGetIter(braid_StepStatus status, braid_Int *iter_ptr)
    braid_Int braid_StepStatusGetDone(braid_StepStatus status, braid_Int *done_ptr)
    braid_Int braid_StepStatusGetTol(braid_StepStatus status, braid_Real *tol_ptr)
    braid_Int braid_StepStatusGetRNorms(braid_StepStatus status, braid_Int *nrequest_ptr,
                                        braid_Real *rnorms)

    # braid_status.h: access.
    braid_Int braid_AccessStatusGetT(braid_AccessStatus status, braid_Real *t_ptr)
    braid_Int braid_AccessStatusGetTIndex(braid_AccessStatus status, braid_Int *idx_ptr)
    braid_Int braid_AccessStatusGetIter(braid_AccessStatus status, braid_Int *iter_ptr)
    braid_Int braid_AccessStatusGetLevel(braid_AccessStatus status, braid_Int *level_ptr)
    braid_Int braid_AccessStatusGetNLevels(braid_AccessStatus status, braid_Int *nlevels_ptr)
    braid_Int braid_AccessStatusGetDone(braid_AccessStatus status, braid_Int *done_ptr)
    braid_Int braid_AccessStatusGetResidual(braid_AccessStatus status, braid_Real *rnorm_ptr)
    braid_Int braid_AccessStatusGetTILD(braid_AccessStatus status, braid_Real *t_ptr, braid_Int *iter_ptr,
                                        braid_Int *level_ptr, braid_Int *done_ptr)

    # braid_status.h: buffers.
    braid_Int braid_BufferStatusGetMessageType(braid_BufferStatus status, braid_Int *type_ptr)
    braid_Int braid_BufferStatusSetSize(braid_BufferStatus status, braid_Real size)


# What only braidnet's bundled core has.  braid.h defines BRAIDNET_BUNDLED_CORE; against LLNL XBraid
# (built with XBRAID_DIR=...) this shim supplies the error codes, braid_ErrorString, and stand-ins
# for the extensions, so the same Cython compiles against either core.
cdef extern from *:
    """
    #include "braid.h"
    #ifdef BRAIDNET_BUNDLED_CORE
    #define BRAIDNET_CORE_IS_BUNDLED 1
    /* The bundled core writes no files. */
    static braid_Int braidnet_FileOutputOff(braid_Core core)
    {
        (void)core;
        return 0;
    }
    #else
    #define BRAIDNET_CORE_IS_BUNDLED 0
    #define BRAID_ERROR_GENERIC   1
    #define BRAID_ERROR_MEMORY    2
    #define BRAID_ERROR_ARG       3
    #define BRAID_ERROR_DIVERGED  4
    #define BRAID_ERROR_REMOTE    5
    #define BRAID_ERROR_MPI       6
    #define BRAID_ERROR_STATE     7
    /* LLNL XBraid's file-output level defaults to 1 (braid.out.cycle in the working directory). */
    static braid_Int braidnet_FileOutputOff(braid_Core core)
    {
        return braid_SetFileIOLevel(core, 0);
    }
    /* LLNL XBraid has no error strings: name its own codes (1, 2 and 4 = argument error). */
    static const char *braid_ErrorString(braid_Int code)
    {
        switch (code) {
        case 0: return "success";
        case 1: return "generic error";
        case 2: return "memory allocation failed";
        case 4: return "argument error";
        default: return "unknown error code";
        }
    }
    /* LLNL XBraid skips at every drive when skip is on: never called there (braidnet/_braid/core.pxi
     * sets LLNL's skip before each drive instead), declared so that the same Cython compiles. */
    static braid_Int braid_SetWarmSkip(braid_Core core, braid_Int warm_skip)
    {
        (void)core; (void)warm_skip;
        return BRAID_ERROR_GENERIC;
    }
    /* LLNL XBraid does not track which rank failed (it ignores callback return codes). */
    static braid_Int braid_GetErrorRank(braid_Core core, braid_Int *rank_ptr)
    {
        (void)core;
        *rank_ptr = -1;
        return 0;
    }
    /* No public way to ask LLNL XBraid for its distribution or hierarchy: never called (braidnet.braid
     * uses its stand-ins, braidnet/_braid/core.pxi), declared so that the same Cython compiles. */
    static braid_Int braid_GetDistribution(braid_Core core, braid_Int *ilower_ptr, braid_Int *iupper_ptr)
    {
        (void)core;
        *ilower_ptr = 0;
        *iupper_ptr = -1;
        return BRAID_ERROR_GENERIC;
    }
    static braid_Int braid_GetDistributionOf(braid_Core core, braid_Int rank, braid_Int *ilower_ptr,
                                             braid_Int *iupper_ptr)
    {
        (void)core; (void)rank;
        *ilower_ptr = 0;
        *iupper_ptr = -1;
        return BRAID_ERROR_GENERIC;
    }
    static braid_Int braid_GetLevelStrides(braid_Core core, braid_Int max, braid_Int *nlevels_ptr,
                                           braid_Int *strides)
    {
        (void)core; (void)max; (void)strides;
        *nlevels_ptr = 0;
        return BRAID_ERROR_GENERIC;
    }
    static braid_Int braid_GetNumSteps(braid_Core core, braid_Int *nsteps_ptr)
    {
        (void)core;
        *nsteps_ptr = -1;
        return BRAID_ERROR_GENERIC;
    }
    /* LLNL XBraid records no event trace: never called (Core.set_trace refuses first), declared so
     * that the same Cython compiles. */
    #define BRAID_TRACE_STEP   1
    #define BRAID_TRACE_SEND   2
    #define BRAID_TRACE_RECV   3
    #define BRAID_TRACE_REDUCE 4
    typedef struct {
       braid_Int kind, level, index, peer, bytes, iter, drive;
    } braid_TraceEvent;
    static braid_Int braid_SetTrace(braid_Core core, braid_Int on)
    {
        (void)core; (void)on;
        return BRAID_ERROR_GENERIC;
    }
    static braid_Int braid_GetTrace(braid_Core core, braid_Int *nevents_ptr, const braid_TraceEvent **events_ptr)
    {
        (void)core;
        *nevents_ptr = 0;
        *events_ptr = NULL;
        return BRAID_ERROR_GENERIC;
    }
    #endif
    """
    # 1 when built against the bundled core, 0 against LLNL XBraid.
    enum: BRAIDNET_CORE_IS_BUNDLED
    enum:
        BRAID_ERROR_GENERIC
        BRAID_ERROR_MEMORY
        BRAID_ERROR_ARG
        BRAID_ERROR_DIVERGED
        BRAID_ERROR_REMOTE
        BRAID_ERROR_MPI
        BRAID_ERROR_STATE
    const char *braid_ErrorString(braid_Int code) nogil
    braid_Int braid_SetWarmSkip(braid_Core core, braid_Int warm_skip) nogil
    braid_Int braid_GetErrorRank(braid_Core core, braid_Int *rank_ptr) nogil
    braid_Int braid_GetDistribution(braid_Core core, braid_Int *ilower_ptr, braid_Int *iupper_ptr) nogil
    braid_Int braid_GetDistributionOf(braid_Core core, braid_Int rank, braid_Int *ilower_ptr,
                                      braid_Int *iupper_ptr) nogil
    braid_Int braid_GetLevelStrides(braid_Core core, braid_Int max, braid_Int *nlevels_ptr,
                                    braid_Int *strides) nogil
    braid_Int braid_GetNumSteps(braid_Core core, braid_Int *nsteps_ptr) nogil
    # The event trace (bundled core only; stand-ins that fail on LLNL XBraid).
    enum:
        BRAID_TRACE_STEP
        BRAID_TRACE_SEND
        BRAID_TRACE_RECV
        BRAID_TRACE_REDUCE
    ctypedef struct braid_TraceEvent:
        braid_Int kind, level, index, peer, bytes, iter, drive
    braid_Int braid_SetTrace(braid_Core core, braid_Int on) nogil
    braid_Int braid_GetTrace(braid_Core core, braid_Int *nevents_ptr, const braid_TraceEvent **events_ptr) nogil
    # No file output: braid_SetFileIOLevel(core, 0) on LLNL XBraid, nothing on the bundled core.
    braid_Int braidnet_FileOutputOff(braid_Core core) nogil
