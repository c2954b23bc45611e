/*
 * base.c -- the one place that calls the user's callbacks.
 *
 * Every call checks the callback's return code.  A non-zero code is kept in the core (core->error) and
 * from then on callbacks are skipped: vectors that would have been made are NULL, operations on NULL
 * vectors do nothing.  The algorithm itself runs on unchanged, so every rank still sends and receives
 * the same messages and reaches the same collective calls; the error travels in the message headers
 * and through one reduction per iteration, and no rank waits for a message that never comes.
 * Only `free` is still called after an error, so that nothing leaks.
 */
#include "_braid.h"

braid_Int
_braid_Fail(braid_Core core, braid_Int code)
{
   if (code != 0 && core->error == 0) {
      core->error = code;
      core->error_here = (code != BRAID_ERROR_REMOTE);
   }
   return code;
}

/* Evaluate a callback unless the core is in error; record a failure. */
#define _braid_CALL(core, expr)                     \
   do {                                             \
      if ((core)->error == 0)                       \
         _braid_Fail((core), (expr));               \
   } while (0)

braid_Int
_braid_Init(braid_Core core, braid_Real t, braid_Vector *u)
{
   *u = NULL;
   _braid_CALL(core, core->init(core->app, t, u));
   if (core->error) *u = NULL;
   return 0;
}

braid_Int
_braid_Clone(braid_Core core, braid_Vector u, braid_Vector *v)
{
   *v = NULL;
   if (u == NULL) return 0;
   _braid_CALL(core, core->clone(core->app, u, v));
   if (core->error) *v = NULL;
   return 0;
}

/* Free *u and set it to NULL; still called after an error (vectors made before it must go). */
braid_Int
_braid_Free(braid_Core core, braid_Vector *u)
{
   if (*u != NULL) {
      braid_Int code = core->free(core->app, *u);
      *u = NULL;
      if (code != 0) _braid_Fail(core, code);
   }
   return 0;
}

braid_Int
_braid_Sum(braid_Core core, braid_Real alpha, braid_Vector x, braid_Real beta, braid_Vector y)
{
   if (x == NULL || y == NULL) return 0;
   _braid_CALL(core, core->sum(core->app, alpha, x, beta, y));
   return 0;
}

braid_Int
_braid_Norm(braid_Core core, braid_Vector u, braid_Real *norm)
{
   *norm = 0.0;
   if (u == NULL) return 0;
   _braid_CALL(core, core->spatialnorm(core->app, u, norm));
   return 0;
}

braid_Int
_braid_Access(braid_Core core, braid_Int level, braid_Int index, braid_Vector u)
{
   braid_Status s = &core->status;
   if (u == NULL) return 0;
   s->level = level;
   s->index = index;
   s->t = _braid_Time(core, level, index);
   s->iter = core->iter;
   s->done = core->done;
   _braid_CALL(core, core->access(core->app, u, s));
   return 0;
}

/*
 * Advance u from point index-1 to point index of `level`: u <- Phi(u) (+ f_index on coarse levels when
 * add_rhs).  ustop is the stored value at `index`, a hint for the user (u itself when none is stored).
 */
braid_Int
_braid_Step(braid_Core core, braid_Int level, braid_Int index, braid_Vector ustop, braid_Vector u,
            braid_Int add_rhs)
{
   braid_Status s = &core->status;
   _braid_Grid *g = &core->grids[level];
   braid_Vector f = NULL;

   if (u == NULL) return 0;
   if (level > 0 && index >= g->ilower && index <= g->iupper)
      f = g->fa[index - g->ilower];
   s->level = level;
   s->index = index - 1;
   s->tstart = _braid_Time(core, level, index - 1);
   s->tstop = _braid_Time(core, level, index);
   s->iter = core->iter;
   s->done = core->done;
   _braid_CALL(core, core->step(core->app, ustop ? ustop : u, add_rhs ? f : NULL, u, s));
   core->nsteps++;
   _braid_TRACE(core, BRAID_TRACE_STEP, level, index, -1, 0);
   if (add_rhs && f != NULL)
      _braid_Sum(core, 1.0, f, 1.0, u);
   if (core->access_level >= 3)
      _braid_Access(core, level, index, u);
   return 0;
}

braid_Int
_braid_BufSize(braid_Core core, braid_Int *size)
{
   braid_Status s = &core->status;
   *size = 0;
   s->msgtype = braid_ASCaller_FRelax;
   _braid_CALL(core, core->bufsize(core->app, size, s));
   if (*size < 0) _braid_Fail(core, BRAID_ERROR_ARG);
   return 0;
}

/* Pack u into buffer; *size gets the bytes written (0 when nothing was packed). */
braid_Int
_braid_BufPack(braid_Core core, braid_Vector u, void *buffer, braid_Int msgtype, braid_Int *size)
{
   braid_Status s = &core->status;
   *size = 0;
   if (u == NULL || core->error) return 0;
   s->msgtype = msgtype;
   s->size = -1.0;
   _braid_CALL(core, core->bufpack(core->app, u, buffer, s));
   *size = (s->size >= 0.0) ? (braid_Int) s->size : core->msg_bytes - _braid_HEADER_BYTES;
   return 0;
}

braid_Int
_braid_BufUnpack(braid_Core core, void *buffer, braid_Vector *u, braid_Int msgtype)
{
   braid_Status s = &core->status;
   *u = NULL;
   s->msgtype = msgtype;
   _braid_CALL(core, core->bufunpack(core->app, buffer, u, s));
   if (core->error) *u = NULL;
   return 0;
}
