/*
 * braid_status.h -- what a callback may ask the core about the call it is in.
 *
 * Each getter returns 0 and writes through its pointer arguments (out).  A status is valid only during
 * the callback it was passed to.
 */
#ifndef BRAID_STATUS_HEADER
#define BRAID_STATUS_HEADER

#ifdef __cplusplus
extern "C" {
#endif

/* ---- step ---- */
/** The step goes from tstart to tstop. */
braid_Int braid_StepStatusGetTstartTstop(braid_StepStatus status, braid_Real *tstart_ptr, braid_Real *tstop_ptr);
/** Level-local index of tstart (multiply by the product of the finer levels' cfactors for the fine index). */
braid_Int braid_StepStatusGetTIndex(braid_StepStatus status, braid_Int *idx_ptr);
/** Level of the step, 0 = finest. */
braid_Int braid_StepStatusGetLevel(braid_StepStatus status, braid_Int *level_ptr);
/** Number of levels. */
braid_Int braid_StepStatusGetNLevels(braid_StepStatus status, braid_Int *nlevels_ptr);
/** Current iteration of the drive. */
braid_Int braid_StepStatusGetIter(braid_StepStatus status, braid_Int *iter_ptr);
/** 1 in the final sweep after convergence (or max_iter), else 0. */
braid_Int braid_StepStatusGetDone(braid_StepStatus status, braid_Int *done_ptr);
/** The stopping tolerance in force (absolute, or relative times the first residual). */
braid_Int braid_StepStatusGetTol(braid_StepStatus status, braid_Real *tol_ptr);
/** Residual history of this drive so far; same request convention as braid_GetRNorms. */
braid_Int braid_StepStatusGetRNorms(braid_StepStatus status, braid_Int *nrequest_ptr, braid_Real *rnorms);

/* ---- access ---- */
/** Time of the vector. */
braid_Int braid_AccessStatusGetT(braid_AccessStatus status, braid_Real *t_ptr);
/** Level-local index of the vector. */
braid_Int braid_AccessStatusGetTIndex(braid_AccessStatus status, braid_Int *idx_ptr);
/** Current iteration. */
braid_Int braid_AccessStatusGetIter(braid_AccessStatus status, braid_Int *iter_ptr);
/** Level of the vector. */
braid_Int braid_AccessStatusGetLevel(braid_AccessStatus status, braid_Int *level_ptr);
/** Number of levels. */
braid_Int braid_AccessStatusGetNLevels(braid_AccessStatus status, braid_Int *nlevels_ptr);
/** 1 in the final access after the drive, else 0. */
braid_Int braid_AccessStatusGetDone(braid_AccessStatus status, braid_Int *done_ptr);
/** The last residual norm (-1 if none yet). */
braid_Int braid_AccessStatusGetResidual(braid_AccessStatus status, braid_Real *rnorm_ptr);
/** t, iteration, level and done at once. */
braid_Int braid_AccessStatusGetTILD(braid_AccessStatus status, braid_Real *t_ptr, braid_Int *iter_ptr,
                                    braid_Int *level_ptr, braid_Int *done_ptr);

/* ---- buffers ---- */
/** Which part of the algorithm sends the message (braid_ASCaller_*). */
braid_Int braid_BufferStatusGetMessageType(braid_BufferStatus status, braid_Int *type_ptr);
/** bufpack may say how many bytes it really wrote (<= bufsize); by default all bufsize bytes are sent. */
braid_Int braid_BufferStatusSetSize(braid_BufferStatus status, braid_Real size);

#ifdef __cplusplus
}
#endif

#endif
