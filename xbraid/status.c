/*
 * status.c -- what a callback may ask about the call it is in (braid_status.h).
 */
#include "_braid.h"

braid_Int braid_StepStatusGetTstartTstop(braid_StepStatus s, braid_Real *tstart_ptr, braid_Real *tstop_ptr)
{
   *tstart_ptr = s->tstart;
   *tstop_ptr = s->tstop;
   return 0;
}

braid_Int braid_StepStatusGetTIndex(braid_StepStatus s, braid_Int *idx_ptr) { *idx_ptr = s->index; return 0; }
braid_Int braid_StepStatusGetLevel(braid_StepStatus s, braid_Int *level_ptr) { *level_ptr = s->level; return 0; }
braid_Int braid_StepStatusGetNLevels(braid_StepStatus s, braid_Int *n_ptr) { *n_ptr = s->core->nlevels; return 0; }
braid_Int braid_StepStatusGetIter(braid_StepStatus s, braid_Int *iter_ptr) { *iter_ptr = s->iter; return 0; }
braid_Int braid_StepStatusGetDone(braid_StepStatus s, braid_Int *done_ptr) { *done_ptr = s->done; return 0; }

braid_Int braid_StepStatusGetTol(braid_StepStatus s, braid_Real *tol_ptr)
{
   braid_Core core = s->core;
   *tol_ptr = core->use_abstol ? core->abstol : core->reltol * core->rnorm0;
   return 0;
}

braid_Int braid_StepStatusGetRNorms(braid_StepStatus s, braid_Int *nrequest_ptr, braid_Real *rnorms)
{
   /* iterations finished so far in this drive; the current one's norm is not final yet */
   return _braid_CopyHistory(s->core->rnorms, s->core->iter, nrequest_ptr, rnorms);
}

braid_Int braid_AccessStatusGetT(braid_AccessStatus s, braid_Real *t_ptr) { *t_ptr = s->t; return 0; }
braid_Int braid_AccessStatusGetTIndex(braid_AccessStatus s, braid_Int *idx_ptr) { *idx_ptr = s->index; return 0; }
braid_Int braid_AccessStatusGetIter(braid_AccessStatus s, braid_Int *iter_ptr) { *iter_ptr = s->iter; return 0; }
braid_Int braid_AccessStatusGetLevel(braid_AccessStatus s, braid_Int *level_ptr) { *level_ptr = s->level; return 0; }
braid_Int braid_AccessStatusGetNLevels(braid_AccessStatus s, braid_Int *n_ptr) { *n_ptr = s->core->nlevels; return 0; }
braid_Int braid_AccessStatusGetDone(braid_AccessStatus s, braid_Int *done_ptr) { *done_ptr = s->done; return 0; }

braid_Int braid_AccessStatusGetResidual(braid_AccessStatus s, braid_Real *rnorm_ptr)
{
   return braid_GetRNorm(s->core, rnorm_ptr);
}

braid_Int braid_AccessStatusGetTILD(braid_AccessStatus s, braid_Real *t_ptr, braid_Int *iter_ptr,
                                    braid_Int *level_ptr, braid_Int *done_ptr)
{
   *t_ptr = s->t;
   *iter_ptr = s->iter;
   *level_ptr = s->level;
   *done_ptr = s->done;
   return 0;
}

braid_Int braid_BufferStatusGetMessageType(braid_BufferStatus s, braid_Int *type_ptr)
{
   *type_ptr = s->msgtype;
   return 0;
}

braid_Int braid_BufferStatusSetSize(braid_BufferStatus s, braid_Real size)
{
   s->size = size;
   return 0;
}
