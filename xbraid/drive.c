/*
 * drive.c -- braid_Drive: set up, iterate until converged, final access.
 *
 *   set up      the grids on the first drive; the initial guess (init at the C-points, or sequential
 *               time stepping with seq_soln); a warm restart keeps both
 *   iterate     one V- or F-cycle per iteration; the residual norm is computed at its start (level-0
 *               restriction) and tested after its coarse correction against the tolerance
 *   check       one reduction per iteration tells every rank whether a callback failed anywhere
 *   end         a final F-relaxation on level 0 calls access at every point (done = 1); or, with
 *               braid_SetFinalFCRelax, a final F-then-C relaxation does (see _braid_FinalFCRelax)
 *
 * Where LLNL XBraid's behaviour departs from its documentation, this file follows the behaviour, so
 * that the two cores give the same iterations:
 *   - max_levels = 1: no iteration at all (0 iterations, history [-1]); the final F-relaxation of
 *     level 0 is then sequential time stepping, and it runs even with access level 0;
 *   - converged means rnorm < tol, strictly: a residual of 0 against a tolerance of 0 (relative
 *     tolerance and a first residual of 0) does not stop the iterations before max_iter;
 *   - access level >= 2: the per-iteration access (done = 0) comes after every iteration, the last
 *     one included, before the convergence test, and sees that iteration's index.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include "_braid.h"

/* An F-relaxation of level 0 in time order, calling access at every point. */
braid_Int
_braid_FAccess(braid_Core core, braid_Int done)
{
   core->done = done;
   _braid_Sweep(core, 0, _braid_SWEEP_ACCESS, core->grids[0].cfactor);
   core->done = 0;
   return 0;
}

/*
 * The final FC relaxation (braid_SetFinalFCRelax), as LLNL XBraid does it: one sweep of F- then
 * C-relaxation on level 0 with done = 1, whatever nrelax is, calling access at every point as soon as
 * it is relaxed (F-points from the C-point values the iterations left, then each C-point from the
 * new F-point before it; point 0 unchanged).  It replaces the final F-relaxation and, as LLNL's, runs
 * and calls access at every access level, 0 included.  The relaxed C-points are the solution a warm
 * restart continues from.
 */
braid_Int
_braid_FinalFCRelax(braid_Core core)
{
   core->done = 1;
   _braid_Sweep(core, 0, _braid_SWEEP_FC_ACCESS, core->grids[0].cfactor);
   core->done = 0;
   return 0;
}

static braid_Int
_braid_DriveSetup(braid_Core core)
{
   braid_Int size, i, code;
   _braid_Grid *g;

   if (core->rnorms_cap < core->max_iter + 2) {
      free(core->rnorms);
      core->rnorms_cap = core->max_iter + 2;
      core->rnorms = (braid_Real *) malloc(core->rnorms_cap * sizeof(braid_Real));
      if (core->rnorms == NULL) return BRAID_ERROR_MEMORY;
   }
   if (core->grids != NULL) return 0;

   _braid_BufSize(core, &size);
   if (core->error) return core->error;
   core->msg_bytes = _braid_HEADER_BYTES + size;
   code = _braid_BuildGrids(core);
   if (code) return code;

   /* initial guess at the stored points of level 0 */
   g = &core->grids[0];
   for (i = g->ilower; i <= g->iupper; i++) {
      if (_braid_IsStored(g, i)) {
         braid_Vector u;
         _braid_Init(core, _braid_Time(core, 0, i), &u);
         _braid_SetVector(core, _braid_UPtr(g, i), u);
      }
   }
   if (core->seq_soln) _braid_SeqSolve(core, 0);
   return 0;
}

/* rnorm < tol (strictly; -1, "not available", never converges) */
static braid_Int
_braid_Converged(braid_Core core, braid_Real rnorm)
{
   braid_Real tol = core->use_abstol ? core->abstol : core->reltol * core->rnorm0;
   return rnorm >= 0.0 && rnorm < tol;
}

braid_Int
braid_Drive(braid_Core core)
{
   double t0 = MPI_Wtime();
   braid_Int first, code, skip;
   braid_Real rnorm;

   if (core == NULL) return BRAID_ERROR_ARG;
   core->error = core->error_here = 0;
   core->error_rank = -1;
   core->done = core->niter = core->iter = 0;
   core->nsteps = 0;
   _braid_TraceNewDrive(core);
   first = (core->grids == NULL);

   code = _braid_DriveSetup(core);
   if (code && !core->error) _braid_Fail(core, code);
   /* keep the ranks together: a failed set-up on one rank stops all */
   if (_braid_CommAgreeOnError(core)) goto end;
   skip = (first || core->warm_skip) && core->skip && !core->seq_soln;

   /* max_levels = 1 asks for sequential time stepping: the final access below does it */
   while (core->max_levels > 1 && core->iter < core->max_iter) {
      _braid_Iterate(core, skip && core->iter == 0);
      if (_braid_CommAgreeOnError(core)) break;
      rnorm = core->rnorms[core->iter];
      core->niter = core->iter + 1;
      if (isnan(rnorm)) {
         core->error = BRAID_ERROR_DIVERGED;  /* every rank sees the same norm */
         break;
      }
      if (core->rnorm0 < 0.0 && rnorm >= 0.0) core->rnorm0 = rnorm;
      if (core->access_level >= 2) _braid_FAccess(core, 0);
      if (core->print_level >= 2 && core->rank == 0) {
         if (rnorm >= 0.0) printf("  Braid: || r_%d || = %1.6e\n", core->iter, rnorm);
         else printf("  Braid: || r_%d || = not available\n", core->iter);
         fflush(stdout);
      }
      core->iter++;
      if (_braid_Converged(core, rnorm)) break;
   }

   /* (an access of the last iteration may have failed) */
   if (!_braid_CommAgreeOnError(core)) {
      if (core->final_fc_relax)
         _braid_FinalFCRelax(core);
      else if (core->access_level >= 1)
         _braid_FAccess(core, 1);
      else if (core->max_levels == 1)
         _braid_SeqSolve(core, 0);
      _braid_CommAgreeOnError(core);
   }

end:
   /* the history ends with its last entry once more */
   if (core->rnorms) core->rnorms[core->niter] = (core->niter > 0) ? core->rnorms[core->niter - 1] : -1.0;
   core->wall_time = MPI_Wtime() - t0;
   if (core->print_level >= 1) braid_PrintStats(core);
   if (core->error == 0) return 0;
   return core->error_here || core->error == BRAID_ERROR_DIVERGED ? core->error : BRAID_ERROR_REMOTE;
}
