/*
 * _braid.h -- the core's private structures and the prototypes shared between its files.
 *
 * Vocabulary used throughout:
 *  - level l has points 0..n_l; point i of level l is fine point i*stride_l (stride_0 = 1)
 *  - C-points of level l: i % cfactor_l == 0; they are the points of level l+1 (j = i / cfactor_l)
 *  - the coarsest level has a single interval: cfactor = n + 1, so its only C-point is 0 and an
 *    "F-relaxation" there is sequential time stepping
 *  - a rank owns the points [ilower, iupper] of each level (empty when iupper < ilower); the value of
 *    point ilower-1 comes from the left neighbour, the nearest rank to the left owning a point there
 */
#ifndef _BRAID_HEADER
#define _BRAID_HEADER

#include <stddef.h>
#include "braid.h"

#define _braid_MAX_LEVELS 64  /* per-level option slots; 2^31 steps coarsen in at most 31 levels */

/* A status handed to callbacks: one per core, refilled before each call. */
struct _braid_Status_struct {
   braid_Core core;
   braid_Real t, tstart, tstop;
   braid_Int  index, level, iter, done, msgtype;
   braid_Real size;            /* bytes bufpack reports it wrote (-1: all) */
};

/* One level of the time grid with this rank's data. */
typedef struct {
   braid_Int n;                /* number of intervals: points 0..n */
   braid_Int stride;           /* fine index of point i is i*stride */
   braid_Int cfactor;          /* C-points are multiples of cfactor (n+1 on the coarsest level) */
   braid_Int nrelax;           /* (F then C) sweeps before restriction */
   braid_Int store_all;        /* 1: keep u at every point, 0: at C-points only */
   braid_Int ilower, iupper;   /* owned points */
   braid_Int left, right;      /* neighbour ranks on this level, -1 if none */
   braid_Vector *ua;           /* u at owned points (NULL where not stored), ua[i - ilower] */
   braid_Vector *va;           /* restricted values (coarse levels), va[i - ilower] */
   braid_Vector *fa;           /* FAS right-hand side (coarse levels; NULL means zero) */
   braid_Vector uleft;         /* value at ilower-1 received in the last sweep */
   void *sendbuf, *recvbuf;    /* message buffers (header + packed vector) */
   MPI_Request sendreq, recvreq;
} _braid_Grid;

struct _braid_Core_struct {
   /* problem */
   MPI_Comm comm_world, comm;
   braid_Int rank, nprocs;
   braid_Real tstart, tstop;
   braid_Int ntime;
   braid_App app;
   braid_PtFcnStep step;
   braid_PtFcnInit init;
   braid_PtFcnClone clone;
   braid_PtFcnFree free;
   braid_PtFcnSum sum;
   braid_PtFcnSpatialNorm spatialnorm;
   braid_PtFcnAccess access;
   braid_PtFcnBufSize bufsize;
   braid_PtFcnBufPack bufpack;
   braid_PtFcnBufUnpack bufunpack;

   /* options */
   braid_Int max_levels, min_coarse;
   braid_Int cfactor[_braid_MAX_LEVELS], nrelax[_braid_MAX_LEVELS];
   braid_Real abstol, reltol;
   braid_Int use_abstol;
   braid_Int max_iter, fmg, nfmg, skip, storage, tnorm, print_level, access_level, seq_soln;
   braid_Int warm_skip;        /* skip also in the first iteration of every warm restart (extension) */
   braid_Int final_fc_relax;   /* end a drive with one F-then-C sweep of level 0 that calls access */

   /* grid hierarchy (built by the first drive) */
   braid_Int nlevels;
   _braid_Grid *grids;
   braid_Int msg_bytes;        /* header + user bufsize */

   /* iteration state */
   braid_Int iter, done, niter;
   braid_Real *rnorms;         /* residual history of this drive (-1: not available) */
   braid_Int rnorms_cap;
   braid_Real rnorm0;          /* first residual this core ever computed (-1: none yet) */
   braid_Real rnorm_acc;       /* local sum / max of spatial residual norms of this sweep */

   /* errors: a callback's non-zero code, or a BRAID_ERROR_*; while set, callbacks are skipped */
   braid_Int error, error_here, error_rank;

   /* statistics */
   double wall_time;
   long nsteps;

   /* event trace (braid_SetTrace): NULL while off, so that recording costs one pointer test */
   struct _braid_Trace *trace;

   struct _braid_Status_struct status;
};

/* ---- base.c: the one place that calls the user's callbacks ---- */
braid_Int _braid_Fail(braid_Core core, braid_Int code);
braid_Int _braid_Init(braid_Core core, braid_Real t, braid_Vector *u);
braid_Int _braid_Clone(braid_Core core, braid_Vector u, braid_Vector *v);
braid_Int _braid_Free(braid_Core core, braid_Vector *u);
braid_Int _braid_Sum(braid_Core core, braid_Real alpha, braid_Vector x, braid_Real beta, braid_Vector y);
braid_Int _braid_Norm(braid_Core core, braid_Vector u, braid_Real *norm);
braid_Int _braid_Access(braid_Core core, braid_Int level, braid_Int index, braid_Vector u);
braid_Int _braid_Step(braid_Core core, braid_Int level, braid_Int index, braid_Vector ustop, braid_Vector u,
                      braid_Int add_rhs);
braid_Int _braid_BufSize(braid_Core core, braid_Int *size);
braid_Int _braid_BufPack(braid_Core core, braid_Vector u, void *buffer, braid_Int msgtype, braid_Int *size);
braid_Int _braid_BufUnpack(braid_Core core, void *buffer, braid_Vector *u, braid_Int msgtype);

/* ---- grid.c: levels, distribution, storage ---- */
braid_Real _braid_Time(braid_Core core, braid_Int level, braid_Int i);
braid_Int _braid_IsCPoint(_braid_Grid *g, braid_Int i);
braid_Int _braid_IsStored(_braid_Grid *g, braid_Int i);
braid_Vector *_braid_UPtr(_braid_Grid *g, braid_Int i);
braid_Int _braid_SetVector(braid_Core core, braid_Vector *slot, braid_Vector u);
void _braid_FineRange(braid_Core core, braid_Int q, braid_Int *lo, braid_Int *hi);
braid_Int _braid_NumLevels(braid_Core core);
braid_Int _braid_BuildGrids(braid_Core core);
braid_Int _braid_FreeGrids(braid_Core core);

/* ---- comm.c: the value just left of a rank's first point ---- */
braid_Int _braid_CommPostRecv(braid_Core core, braid_Int level);
braid_Int _braid_CommWaitRecv(braid_Core core, braid_Int level);
braid_Int _braid_CommSend(braid_Core core, braid_Int level, braid_Vector u, braid_Int msgtype);
braid_Int _braid_CommFinish(braid_Core core, braid_Int level);
braid_Int _braid_CommAgreeOnError(braid_Core core);

/* ---- relax.c: sweeps over the intervals of a level ---- */
typedef enum {
   _braid_SWEEP_F,         /* F-relaxation */
   _braid_SWEEP_FC,        /* F- then C-relaxation */
   _braid_SWEEP_RESIDUAL,  /* F-relaxation, then the FAS residual at each C-point (restriction) */
   _braid_SWEEP_INTERP,    /* F-relaxation, correcting the finer level at every point (interpolation) */
   _braid_SWEEP_ACCESS,    /* F-relaxation in increasing order, calling access at every point */
   _braid_SWEEP_FC_ACCESS  /* F- then C-relaxation, calling access at every point once relaxed */
} _braid_SweepMode;
braid_Int _braid_Sweep(braid_Core core, braid_Int level, _braid_SweepMode mode, braid_Int cfactor);
braid_Int _braid_Relax(braid_Core core, braid_Int level);
braid_Int _braid_SeqSolve(braid_Core core, braid_Int level);

/* ---- restrict.c, interp.c ---- */
braid_Int _braid_Restrict(braid_Core core, braid_Int level);
braid_Int _braid_Inject(braid_Core core, braid_Int level, braid_Int clear_rhs);
braid_Int _braid_ResidualAtCPoint(braid_Core core, braid_Int level, braid_Int i, braid_Vector phi_u);
braid_Int _braid_Interp(braid_Core core, braid_Int level);
braid_Int _braid_CorrectFine(braid_Core core, braid_Int level, braid_Int j, braid_Vector u);

/* ---- norm.c: the temporal norm of the residual ---- */
braid_Int _braid_NormAccumulate(braid_Core core, braid_Real spatial_norm);
braid_Int _braid_NormFinish(braid_Core core, braid_Real *rnorm);

/* ---- cycle.c, drive.c ---- */
braid_Int _braid_VCycle(braid_Core core, braid_Int level);
braid_Int _braid_IsFCycle(braid_Core core, braid_Int iter);
braid_Int _braid_Iterate(braid_Core core, braid_Int skip_down);
braid_Int _braid_FAccess(braid_Core core, braid_Int done);
braid_Int _braid_FinalFCRelax(braid_Core core);

/* ---- trace.c: the opt-in event trace (braid_SetTrace) ---- */
struct _braid_Trace {
   braid_TraceEvent *events;
   braid_Int n, cap;
   braid_Int recording;        /* 0 after braid_SetTrace(core, 0): events kept, none added */
   braid_Int drive;            /* drives begun since the trace started, minus one */
};
void _braid_TraceRecord(braid_Core core, braid_Int kind, braid_Int level, braid_Int index, braid_Int peer,
                        braid_Int bytes);
void _braid_TraceNewDrive(braid_Core core);
void _braid_TraceFree(braid_Core core);
/* Record an event only when a trace is on: the test is all that tracing costs while it is off. */
#define _braid_TRACE(core, kind, level, index, peer, bytes)                     \
   do {                                                                         \
      if ((core)->trace != NULL)                                                \
         _braid_TraceRecord((core), (kind), (level), (index), (peer), (bytes)); \
   } while (0)

/* ---- braid.c ---- */
braid_Int _braid_CopyHistory(const braid_Real *history, braid_Int len, braid_Int *nrequest_ptr, braid_Real *out);

/* message header in front of every packed vector: error code, payload bytes */
#define _braid_HEADER_BYTES 8

#endif
