/*
 * braid.h -- the one user header of braidnet's MGRIT core.
 *
 * Multigrid reduction in time (MGRIT) solves all time steps of u_{i} = Phi_i(u_{i-1}), i = 1..ntime, at
 * once, in parallel over the ranks of a time communicator.  The interface follows LLNL's XBraid
 * (names, argument order, semantics of the callbacks), so that an application written for one runs on
 * the other.  This file is the interface document: every callback type and public function has a
 * prose block; arguments are marked (in), (out) or (in/out).
 *
 * Conventions
 *  - Every function returns an error code: 0 on success, one of the BRAID_ERROR_* codes otherwise.
 *  - A user callback returns 0 on success.  Any other value aborts the solve on every rank: the core
 *    stops calling callbacks (except `free`, to release vectors), tells the other ranks within the
 *    current iteration, and braid_Drive returns that value on the rank where it happened and
 *    BRAID_ERROR_REMOTE on the others.  braid_GetErrorRank tells which rank failed.
 *  - Vectors are opaque to the core: it only moves the pointers the user's init/clone/unpack make.
 */
#ifndef BRAID_HEADER
#define BRAID_HEADER

#include <mpi.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Defined by braidnet's own core only: code that must also build against LLNL XBraid tests it before
 * using the extensions below (braid_SetWarmSkip, braid_GetErrorRank, braid_GetDistribution,
 * braid_GetDistributionOf, braid_GetLevelStrides, braid_GetNumSteps, braid_SetTrace, braid_GetTrace). */
#define BRAIDNET_BUNDLED_CORE 1

typedef int    braid_Int;
typedef double braid_Real;

/* Error codes.  Positive, so that they never collide with a callback's own negative codes. */
#define BRAID_ERROR_GENERIC   1   /* generic error */
#define BRAID_ERROR_MEMORY    2   /* an allocation failed */
#define BRAID_ERROR_ARG       3   /* an argument is out of range (see the setter's text) */
#define BRAID_ERROR_DIVERGED  4   /* the residual norm became NaN or infinite */
#define BRAID_ERROR_REMOTE    5   /* a callback failed on another rank */
#define BRAID_ERROR_MPI       6   /* an MPI call failed */
#define BRAID_ERROR_STATE     7   /* the call is not allowed now (e.g. a grid option after the first drive) */

/* Message types seen by the buffer callbacks (braid_BufferStatusGetMessageType). */
#define braid_ASCaller_FInterp   0
#define braid_ASCaller_FRestrict 1
#define braid_ASCaller_FRefine   2
#define braid_ASCaller_FAccess   3
#define braid_ASCaller_FRelax    4
#define braid_ASCaller_Drive_TopCycle 5

/*--------------------------------------------------------------------------
 * Opaque types
 *--------------------------------------------------------------------------*/

/** The user's application: whatever the callbacks need (problem data, communicators, ...). */
typedef struct _braid_App_struct *braid_App;

/** One state vector u(t), defined by the user. */
typedef struct _braid_Vector_struct *braid_Vector;

/** The solver. */
typedef struct _braid_Core_struct *braid_Core;

/** Read-only views of the solver's state handed to the callbacks (see braid_status.h). */
typedef struct _braid_Status_struct *braid_Status;
typedef struct _braid_Status_struct *braid_StepStatus;
typedef struct _braid_Status_struct *braid_AccessStatus;
typedef struct _braid_Status_struct *braid_BufferStatus;

/*--------------------------------------------------------------------------
 * User callbacks
 *--------------------------------------------------------------------------*/

/**
 * step: advance u from tstart to tstop (braid_StepStatusGetTstartTstop), u <- Phi(u).
 *  - app   (in)     the application
 *  - ustop (in)     the core's current approximation at tstop (a hint for implicit solvers; may be u
 *                   itself when no value is stored at tstop); never modify it
 *  - fstop (in)     the FAS right-hand side at tstop, or NULL; informational only: the core adds it to
 *                   u after the step, so the step must NOT add it
 *  - u     (in/out) the state at tstart on input, at tstop on output
 *  - status (in)    tstart/tstop, level, level-local index of tstart, iteration, ...
 * On coarse levels the step size is larger (tstop - tstart = cf^l h): re-discretise accordingly.
 */
typedef braid_Int (*braid_PtFcnStep)(braid_App app, braid_Vector ustop, braid_Vector fstop,
                                     braid_Vector u, braid_StepStatus status);

/** init: allocate and return (out) in *u_ptr the initial guess at time t (the initial condition at tstart).
 *  For init, clone and bufunpack: after a non-zero return the core ignores *u_ptr, so release anything
 *  you allocated before failing. */
typedef braid_Int (*braid_PtFcnInit)(braid_App app, braid_Real t, braid_Vector *u_ptr);

/** clone: allocate (out) *v_ptr as a copy of u (in). */
typedef braid_Int (*braid_PtFcnClone)(braid_App app, braid_Vector u, braid_Vector *v_ptr);

/** free: release u (in), which the core will not use again. */
typedef braid_Int (*braid_PtFcnFree)(braid_App app, braid_Vector u);

/** sum: y <- alpha x + beta y, in place in y (in/out); x (in). */
typedef braid_Int (*braid_PtFcnSum)(braid_App app, braid_Real alpha, braid_Vector x, braid_Real beta,
                                    braid_Vector y);

/** spatialnorm: (out) *norm_ptr = a norm of u (in); its temporal combination is braid_SetTemporalNorm. */
typedef braid_Int (*braid_PtFcnSpatialNorm)(braid_App app, braid_Vector u, braid_Real *norm_ptr);

/** access: look at u (in) (write output, keep states): see braid_SetAccessLevel for when it is called. */
typedef braid_Int (*braid_PtFcnAccess)(braid_App app, braid_Vector u, braid_AccessStatus status);

/** bufsize: (out) *size_ptr = the largest number of bytes bufpack will write. */
typedef braid_Int (*braid_PtFcnBufSize)(braid_App app, braid_Int *size_ptr, braid_BufferStatus status);

/** bufpack: write u (in) into buffer (out), at most bufsize bytes; braid_BufferStatusSetSize may say how many. */
typedef braid_Int (*braid_PtFcnBufPack)(braid_App app, braid_Vector u, void *buffer, braid_BufferStatus status);

/** bufunpack: allocate (out) *u_ptr from the bytes in buffer (in) that bufpack wrote on another rank. */
typedef braid_Int (*braid_PtFcnBufUnpack)(braid_App app, void *buffer, braid_Vector *u_ptr,
                                          braid_BufferStatus status);

/*--------------------------------------------------------------------------
 * Life cycle
 *--------------------------------------------------------------------------*/

/**
 * braid_Init: create a core for ntime steps on [tstart, tstop] (points t_i = tstart + (i/ntime)(tstop-tstart)).
 *  - comm_world (in) the whole communicator (space x time); kept for XBraid compatibility
 *  - comm       (in) the time communicator: the ntime+1 points are split in contiguous blocks over its
 *                    ranks, the first (ntime+1) % P ranks holding one more point
 *  - ntime      (in) >= 1
 *  - app, step ... bufunpack (in) the application and its callbacks (none may be NULL)
 *  - core_ptr   (out) the new core; release it with braid_Destroy
 * No MPI communication happens here: the arguments are checked and the options take their defaults
 * (max_levels 30, min_coarse 2, cfactor 2, nrelax 1, max_iter 100, relative tolerance 1e-9, V-cycles
 * (FMG off, nfmg -1), temporal norm 2, skip 1, storage -1, print level 2, access level 1).
 */
braid_Int braid_Init(MPI_Comm comm_world, MPI_Comm comm, braid_Real tstart, braid_Real tstop, braid_Int ntime,
                     braid_App app, braid_PtFcnStep step, braid_PtFcnInit init, braid_PtFcnClone clone,
                     braid_PtFcnFree free, braid_PtFcnSum sum, braid_PtFcnSpatialNorm spatialnorm,
                     braid_PtFcnAccess access, braid_PtFcnBufSize bufsize, braid_PtFcnBufPack bufpack,
                     braid_PtFcnBufUnpack bufunpack, braid_Core *core_ptr);

/**
 * braid_Drive: run MGRIT iterations until the residual is below the tolerance or max_iter iterations
 * were done, then call access at every fine point (done = 1).  Collective over the time communicator.
 * With max_levels = 1 it does no iteration at all, as LLNL XBraid: the final F-relaxation of level 0
 * is then the sequential time stepping (run even with access level 0), and the history is [-1].
 * Calling it again on the same core is a warm restart: the grids and the current solution are kept,
 * the iteration count and residual history start anew, the relative tolerance still refers to the
 * first residual the core ever computed, and the first iteration is a full one (no skip, unless
 * braid_SetWarmSkip).
 */
braid_Int braid_Drive(braid_Core core);

/** braid_Destroy: free everything the core holds (calling the user's free on each vector). */
braid_Int braid_Destroy(braid_Core core);

/** braid_PrintStats: print the statistics block of the last drive on rank 0 of the time communicator. */
braid_Int braid_PrintStats(braid_Core core);

/*--------------------------------------------------------------------------
 * Options.  Each returns BRAID_ERROR_ARG for a value out of range (leaving the option as it was), and
 * BRAID_ERROR_STATE for a grid-shaping option (levels, cfactor, min_coarse, storage) after the first drive.
 * Per-level setters may be called in any order with other setters.
 *--------------------------------------------------------------------------*/

/** Most levels of the hierarchy, >= 1.  1: sequential time stepping, done by the final access sweep
 *  with no MGRIT iteration (0 iterations, residual history [-1]; LLNL XBraid's behaviour).  A
 *  hierarchy of one level for another reason (min_coarse) still iterates: each iteration is a
 *  sequential solve with residual 0. */
braid_Int braid_SetMaxLevels(braid_Core core, braid_Int max_levels);
/** Coarsen level l only while floor(n_l / cf) >= min_coarse (n_l intervals on level l); >= 1. */
braid_Int braid_SetMinCoarse(braid_Core core, braid_Int min_coarse);
/** Coarsening factor >= 2 from `level` to level+1; level -1 sets every level (0 <= level < 64). */
braid_Int braid_SetCFactor(braid_Core core, braid_Int level, braid_Int cfactor);
/** Pre-relaxation on `level`: nrelax >= 0 sweeps of (F then C); 0 = F-relaxation, 1 = FCF; level -1 = all. */
braid_Int braid_SetNRelax(braid_Core core, braid_Int level, braid_Int nrelax);
/** Absolute tolerance >= 0 on the residual norm; once set, it replaces the relative one.  Converged
 *  means rnorm < tol strictly (as LLNL XBraid): a residual of exactly 0 does not meet a tolerance of 0. */
braid_Int braid_SetAbsTol(braid_Core core, braid_Real atol);
/** Relative tolerance >= 0: converged when the residual norm < rtol * the first residual norm
 *  (strictly: when the first residual is 0, e.g. with seq_soln, the tolerance is 0 and the drive runs
 *  max_iter iterations, as LLNL XBraid does). */
braid_Int braid_SetRelTol(braid_Core core, braid_Real rtol);
/** Most iterations of one drive, >= 0 (0: only the final access).  (LLNL XBraid stops when the
 *  iteration index reaches max_iter - 1, so max_iter 0 never stops there; avoid it on both cores.) */
braid_Int braid_SetMaxIter(braid_Core core, braid_Int max_iter);
/** Switch F-cycles on (there is no call to switch them off again): every iteration is an F-cycle,
 *  except iteration nfmg (braid_SetNFMG). */
braid_Int braid_SetFMG(braid_Core core);
/**
 * nfmg >= -1 (default -1).  This follows LLNL XBraid's behaviour, not its documentation ("number of
 * initial F-cycles to do before switching to V-cycles", "once called, XBraid will use FMG"):
 *  - without braid_SetFMG, nfmg changes nothing: every iteration is a V-cycle;
 *  - with braid_SetFMG, iteration k of a drive (k = 0, 1, ...) is an F-cycle unless k == nfmg, where
 *    it is a V-cycle: nfmg = 2 gives F, F, V, F, F, ...; nfmg = 0 gives V, F, F, ...; -1 F always.
 * (XBraid's drive loop resets its F-cycle level to the coarsest after every iteration, except when
 * the iteration count has just reached nfmg.)
 */
braid_Int braid_SetNFMG(braid_Core core, braid_Int nfmg);
/** skip 1 (default): the first iteration of the first drive does no work on the fine level (inject,
 *  solve coarsest, interpolate); 0 or 1.  Warm restarts do not skip unless braid_SetWarmSkip(core, 1).
 *  (LLNL XBraid skips at every drive: this core's skip 1 plus braid_SetWarmSkip(core, 1).) */
braid_Int braid_SetSkip(braid_Core core, braid_Int skip);
/**
 * braid_SetWarmSkip (extension of this core): with warm_skip = 1 and skip 1, every warm restart also
 * skips the fine-level work of its first iteration, as LLNL XBraid's skip does: the current C-point
 * values are injected to every level with f = 0, the coarsest level is solved and the iteration goes
 * up as usual (its residual is not available: -1).  The fine C-points thus restart from the coarse
 * solution.  0 (default) or 1; may change between drives.
 */
braid_Int braid_SetWarmSkip(braid_Core core, braid_Int warm_skip);
/**
 * braid_SetFinalFCRelax: end every drive with one F-then-C relaxation sweep of level 0 (whatever
 * nrelax is) instead of the final F-relaxation, as LLNL XBraid does.  Every point is handed to access
 * (done = 1) as soon as the sweep has relaxed it: an F-point after stepping from the C-point value the
 * iterations left, a C-point after its C-relaxation from the new F-point before it, point 0 as it is.
 * As in LLNL XBraid (whose documentation does not say so), this sweep runs and calls access at every
 * access level, 0 included, and its C-point values are what a warm restart continues from.  There is no
 * call to switch it off again.
 */
braid_Int braid_SetFinalFCRelax(braid_Core core);
/** Store every point on levels >= storage (0 = all levels), or only C-points (-1, default). */
braid_Int braid_SetStorage(braid_Core core, braid_Int storage);
/** Temporal norm of the residual: 1 = sum, 2 = sqrt of the sum of squares (default), 3 = max. */
braid_Int braid_SetTemporalNorm(braid_Core core, braid_Int tnorm);
/** 0 = silent, 1 = statistics block after each drive, 2 = also the residual of each iteration (rank 0, stdout). */
braid_Int braid_SetPrintLevel(braid_Core core, braid_Int print_level);
/** 0 = never call access (except in a final FC relaxation), 1 = after the drive (done = 1), 2 = also
 *  after each iteration on level 0
 *  (done = 0, the iteration's index, the last iteration included, before the convergence test),
 *  3 = also after every step on every level. */
braid_Int braid_SetAccessLevel(braid_Core core, braid_Int access_level);
/** 1: initial guess by sequential time stepping on level 0 instead of init(t) at t > tstart; 0 or 1. */
braid_Int braid_SetSeqSoln(braid_Core core, braid_Int seq_soln);

/*--------------------------------------------------------------------------
 * Results
 *--------------------------------------------------------------------------*/

/** (out) iterations of the last drive, iteration 0 included. */
braid_Int braid_GetNumIter(braid_Core core, braid_Int *niter_ptr);
/**
 * Residual norm history of the last drive: iteration k's norm (computed at its start, -1 where not
 * available: the skipped first iteration), followed by the last entry once more ([-1] after a drive
 * of no iteration, e.g. max_levels = 1).
 *  - nrequest_ptr (in/out) in: how many to return (> 0: the first ones, < 0: the last ones);
 *                          out: how many were written
 *  - rnorms       (out)    room for |*nrequest_ptr| values
 */
braid_Int braid_GetRNorms(braid_Core core, braid_Int *nrequest_ptr, braid_Real *rnorms);
/** (out) the last residual norm (-1 if none). */
braid_Int braid_GetRNorm(braid_Core core, braid_Real *rnorm_ptr);
/** (out) number of levels of the hierarchy (known after the first drive). */
braid_Int braid_GetNLevels(braid_Core core, braid_Int *nlevels_ptr);
/** (out) the rank of the time communicator whose callback failed in the last drive, or -1. */
braid_Int braid_GetErrorRank(braid_Core core, braid_Int *rank_ptr);
/** (out) index range [ilower, iupper] of the fine points this rank owns (iupper < ilower: none). */
braid_Int braid_GetDistribution(braid_Core core, braid_Int *ilower_ptr, braid_Int *iupper_ptr);
/**
 * braid_GetDistributionOf: the fine points any rank owns, by the rule of braid_Init (contiguous
 * blocks, the first (ntime+1) % P ranks one point more).  No communication.
 *  - rank       (in)  a rank of the time communicator, 0 <= rank < its size
 *  - ilower_ptr (out) first fine index it owns
 *  - iupper_ptr (out) last fine index it owns (iupper < ilower: none)
 */
braid_Int braid_GetDistributionOf(braid_Core core, braid_Int rank, braid_Int *ilower_ptr, braid_Int *iupper_ptr);
/**
 * braid_GetLevelStrides: the hierarchy the core builds from its current options (or has built: the
 * options that shape it are fixed by the first drive).  Level l+1 exists while l+1 < max_levels and
 * floor(n_l / cfactor_l) >= min_coarse, n_l being the number of intervals of level l.  Valid before
 * the first drive; no communication.
 *  - max         (in)  room in strides, >= 0
 *  - nlevels_ptr (out) the number of levels (may exceed max)
 *  - strides     (out) strides[l] for l < min(max, nlevels): point i of level l is fine point
 *                      i * strides[l] (strides[0] = 1); may be NULL when max == 0
 */
braid_Int braid_GetLevelStrides(braid_Core core, braid_Int max, braid_Int *nlevels_ptr, braid_Int *strides);
/** (out) how many times this rank called the step callback in the last drive. */
braid_Int braid_GetNumSteps(braid_Core core, braid_Int *nsteps_ptr);
/*--------------------------------------------------------------------------
 * Event trace (extension of this core).  Off by default; while off, the only cost is one pointer test
 * per step, message and reduction.  While on, each rank records, in program order, what decides the
 * solve's critical path: its step calls, the messages it sends, the receives it waits for and the
 * reductions it joins.  scripts/replay_scaling.py replays these traces as a discrete-event simulation
 * (a rank's clock advances by a step's cost; a receive waits for its message's arrival).
 *--------------------------------------------------------------------------*/

#define BRAID_TRACE_STEP   1   /* a step call: level, index = the level's point stepped into */
#define BRAID_TRACE_SEND   2   /* a message posted to peer (non-blocking): level, bytes */
#define BRAID_TRACE_RECV   3   /* a receive from peer completed (this rank waited for it): level, bytes */
#define BRAID_TRACE_REDUCE 4   /* an allreduce over the time communicator (every rank joins): bytes */

/** One event.  peer is a rank of the core's time communicator (-1 for steps and reductions); messages
 *  between two ranks on one level are matched in order (the k-th SEND from a to b on level l is the
 *  k-th RECV on b from a on level l); index is -1 except for steps; iter is the drive's iteration
 *  (core iteration counter) when the event happened; drive counts the drives since the trace began. */
typedef struct {
   braid_Int kind, level, index, peer, bytes, iter, drive;
} braid_TraceEvent;

/**
 * braid_SetTrace (extension of this core): on = 1 starts a new trace (the earlier one is discarded),
 * recording over every later drive until braid_SetTrace(core, 0), which stops recording and keeps the
 * events for braid_GetTrace.  Local to this rank (no communication); 0 or 1.
 */
braid_Int braid_SetTrace(braid_Core core, braid_Int on);
/**
 * braid_GetTrace (extension of this core): the events recorded since the last braid_SetTrace(core, 1).
 *  - nevents_ptr (out) number of events (0 when no trace was ever started)
 *  - events_ptr  (out) the core's own array of them (NULL when none), valid until the next
 *                      braid_SetTrace(core, 1), braid_Drive or braid_Destroy; do not free it
 */
braid_Int braid_GetTrace(braid_Core core, braid_Int *nevents_ptr, const braid_TraceEvent **events_ptr);

/** (out) a static English description of an error code. */
const char *braid_ErrorString(braid_Int code);

#ifdef __cplusplus
}
#endif

#include "braid_status.h"

#endif
