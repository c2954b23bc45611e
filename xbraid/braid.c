/*
 * braid.c -- the core's life cycle, its options and its results.
 *
 * Setters check their argument and leave the option unchanged when it is out of range.  Options that
 * shape the grid hierarchy are fixed once the first drive has built it.
 */
#include <stdio.h>
#include <stdlib.h>
#include "_braid.h"

braid_Int
braid_Init(MPI_Comm comm_world, MPI_Comm comm, braid_Real tstart, braid_Real tstop, braid_Int ntime,
           braid_App app, braid_PtFcnStep step, braid_PtFcnInit init, braid_PtFcnClone clone,
           braid_PtFcnFree free_fn, braid_PtFcnSum sum, braid_PtFcnSpatialNorm spatialnorm,
           braid_PtFcnAccess access, braid_PtFcnBufSize bufsize, braid_PtFcnBufPack bufpack,
           braid_PtFcnBufUnpack bufunpack, braid_Core *core_ptr)
{
   braid_Core core;
   braid_Int l;

   if (core_ptr == NULL) return BRAID_ERROR_ARG;
   *core_ptr = NULL;
   if (ntime < 1 || !(tstop > tstart) || !step || !init || !clone || !free_fn || !sum || !spatialnorm ||
       !access || !bufsize || !bufpack || !bufunpack)
      return BRAID_ERROR_ARG;
   core = (braid_Core) calloc(1, sizeof(*core));
   if (core == NULL) return BRAID_ERROR_MEMORY;

   core->comm_world = comm_world;
   core->comm = comm;
   MPI_Comm_rank(comm, &core->rank);
   MPI_Comm_size(comm, &core->nprocs);
   core->tstart = tstart;
   core->tstop = tstop;
   core->ntime = ntime;
   core->app = app;
   core->step = step;
   core->init = init;
   core->clone = clone;
   core->free = free_fn;
   core->sum = sum;
   core->spatialnorm = spatialnorm;
   core->access = access;
   core->bufsize = bufsize;
   core->bufpack = bufpack;
   core->bufunpack = bufunpack;

   core->max_levels = 30;
   core->min_coarse = 2;
   for (l = 0; l < _braid_MAX_LEVELS; l++) {
      core->cfactor[l] = 2;
      core->nrelax[l] = 1;
   }
   core->reltol = 1e-9;
   core->use_abstol = 0;
   core->max_iter = 100;
   core->fmg = 0;
   core->nfmg = -1;
   core->skip = 1;
   core->storage = -1;
   core->tnorm = 2;
   core->print_level = 2;
   core->access_level = 1;
   core->rnorm0 = -1.0;
   core->error_rank = -1;
   core->status.core = core;
   *core_ptr = core;
   return 0;
}

braid_Int
braid_Destroy(braid_Core core)
{
   if (core == NULL) return 0;
   core->error = 0;  /* callbacks again allowed: free must run */
   _braid_FreeGrids(core);
   _braid_TraceFree(core);
   free(core->rnorms);
   free(core);
   return 0;
}

braid_Int
braid_PrintStats(braid_Core core)
{
   braid_Real rnorm;
   if (core->rank != 0) return 0;
   braid_GetRNorm(core, &rnorm);
   printf("\n  Braid stats:\n");
   printf("  start time = %e\n  stop time  = %e\n  time steps = %d\n", core->tstart, core->tstop, core->ntime);
   printf("  ranks      = %d\n  levels     = %d (max %d, min coarse %d)\n", core->nprocs, core->nlevels,
          core->max_levels, core->min_coarse);
   printf("  cfactor    = %d, nrelax = %d (level 0)\n", core->cfactor[0], core->nrelax[0]);
   if (!core->fmg)
      printf("  iterations = %d (max %d), V-cycles\n", core->niter, core->max_iter);
   else if (core->nfmg < 0)
      printf("  iterations = %d (max %d), F-cycles\n", core->niter, core->max_iter);
   else
      printf("  iterations = %d (max %d), F-cycles except a V-cycle in iteration %d\n", core->niter,
             core->max_iter, core->nfmg);
   printf("  tolerance  = %e (%s)\n", core->use_abstol ? core->abstol : core->reltol,
          core->use_abstol ? "absolute" : "relative");
   printf("  residual   = %e\n", rnorm);
   printf("  steps here = %ld on rank 0\n  wall time  = %f s\n\n", core->nsteps, core->wall_time);
   fflush(stdout);
   return 0;
}

const char *
braid_ErrorString(braid_Int code)
{
   switch (code) {
      case 0: return "no error";
      case BRAID_ERROR_GENERIC: return "braid: error";
      case BRAID_ERROR_MEMORY: return "braid: out of memory";
      case BRAID_ERROR_ARG: return "braid: argument out of range";
      case BRAID_ERROR_DIVERGED: return "braid: iterations diverged (the residual norm is NaN or infinite)";
      case BRAID_ERROR_REMOTE: return "braid: a callback failed on another rank";
      case BRAID_ERROR_MPI: return "braid: an MPI call failed";
      case BRAID_ERROR_STATE: return "braid: option cannot change after the first drive";
      default: return "braid: a user callback returned an error code";
   }
}

/*--------------------------------------------------------------------------
 * Options
 *--------------------------------------------------------------------------*/

#define _braid_CHECK(core, cond) \
   do { if ((core) == NULL || !(cond)) return BRAID_ERROR_ARG; } while (0)
#define _braid_GRID_OPTION(core) \
   do { if ((core) != NULL && (core)->grids != NULL) return BRAID_ERROR_STATE; } while (0)

braid_Int braid_SetMaxLevels(braid_Core core, braid_Int max_levels)
{
   _braid_CHECK(core, max_levels >= 1);
   _braid_GRID_OPTION(core);
   core->max_levels = max_levels;
   return 0;
}

braid_Int braid_SetMinCoarse(braid_Core core, braid_Int min_coarse)
{
   _braid_CHECK(core, min_coarse >= 1);
   _braid_GRID_OPTION(core);
   core->min_coarse = min_coarse;
   return 0;
}

braid_Int braid_SetCFactor(braid_Core core, braid_Int level, braid_Int cfactor)
{
   braid_Int l;
   _braid_CHECK(core, cfactor >= 2 && level >= -1 && level < _braid_MAX_LEVELS);
   _braid_GRID_OPTION(core);
   for (l = 0; l < _braid_MAX_LEVELS; l++)
      if (level == -1 || level == l) core->cfactor[l] = cfactor;
   return 0;
}

braid_Int braid_SetNRelax(braid_Core core, braid_Int level, braid_Int nrelax)
{
   braid_Int l;
   _braid_CHECK(core, nrelax >= 0 && level >= -1 && level < _braid_MAX_LEVELS);
   for (l = 0; l < _braid_MAX_LEVELS; l++)
      if (level == -1 || level == l) core->nrelax[l] = nrelax;
   for (l = 0; core->grids && l < core->nlevels; l++)
      core->grids[l].nrelax = core->nrelax[l];
   return 0;
}

braid_Int braid_SetAbsTol(braid_Core core, braid_Real atol)
{
   _braid_CHECK(core, atol >= 0.0);
   core->abstol = atol;
   core->use_abstol = 1;
   return 0;
}

braid_Int braid_SetRelTol(braid_Core core, braid_Real rtol)
{
   _braid_CHECK(core, rtol >= 0.0);
   core->reltol = rtol;
   core->use_abstol = 0;
   return 0;
}

braid_Int braid_SetMaxIter(braid_Core core, braid_Int max_iter)
{
   _braid_CHECK(core, max_iter >= 0);
   core->max_iter = max_iter;
   return 0;
}

braid_Int braid_SetFMG(braid_Core core)
{
   _braid_CHECK(core, 1);
   core->fmg = 1;
   return 0;
}

braid_Int braid_SetNFMG(braid_Core core, braid_Int nfmg)
{
   _braid_CHECK(core, nfmg >= -1);
   core->nfmg = nfmg;
   return 0;
}

braid_Int braid_SetSkip(braid_Core core, braid_Int skip)
{
   _braid_CHECK(core, skip == 0 || skip == 1);
   core->skip = skip;
   return 0;
}

braid_Int braid_SetWarmSkip(braid_Core core, braid_Int warm_skip)
{
   _braid_CHECK(core, warm_skip == 0 || warm_skip == 1);
   core->warm_skip = warm_skip;
   return 0;
}

braid_Int braid_SetFinalFCRelax(braid_Core core)
{
   _braid_CHECK(core, 1);
   core->final_fc_relax = 1;
   return 0;
}

braid_Int braid_SetStorage(braid_Core core, braid_Int storage)
{
   _braid_CHECK(core, storage >= -1);
   _braid_GRID_OPTION(core);
   core->storage = storage;
   return 0;
}

braid_Int braid_SetTemporalNorm(braid_Core core, braid_Int tnorm)
{
   _braid_CHECK(core, tnorm >= 1 && tnorm <= 3);
   core->tnorm = tnorm;
   return 0;
}

braid_Int braid_SetPrintLevel(braid_Core core, braid_Int print_level)
{
   _braid_CHECK(core, print_level >= 0 && print_level <= 3);
   core->print_level = print_level;
   return 0;
}

braid_Int braid_SetAccessLevel(braid_Core core, braid_Int access_level)
{
   _braid_CHECK(core, access_level >= 0 && access_level <= 3);
   core->access_level = access_level;
   return 0;
}

braid_Int braid_SetSeqSoln(braid_Core core, braid_Int seq_soln)
{
   _braid_CHECK(core, seq_soln == 0 || seq_soln == 1);
   _braid_GRID_OPTION(core);
   core->seq_soln = seq_soln;
   return 0;
}

/*--------------------------------------------------------------------------
 * Results
 *--------------------------------------------------------------------------*/

braid_Int braid_GetNumIter(braid_Core core, braid_Int *niter_ptr)
{
   _braid_CHECK(core, niter_ptr != NULL);
   *niter_ptr = core->niter;
   return 0;
}

/* Copy the first (n > 0) or last (n < 0) entries of history[0..len-1]. */
braid_Int
_braid_CopyHistory(const braid_Real *history, braid_Int len, braid_Int *nrequest_ptr, braid_Real *out)
{
   braid_Int n = *nrequest_ptr, k, start;
   braid_Int count = (n >= 0 ? n : -n);
   if (count > len) count = len;
   start = (n >= 0) ? 0 : len - count;
   for (k = 0; k < count; k++) out[k] = history[start + k];
   *nrequest_ptr = count;
   return 0;
}

braid_Int braid_GetRNorms(braid_Core core, braid_Int *nrequest_ptr, braid_Real *rnorms)
{
   _braid_CHECK(core, nrequest_ptr != NULL && (rnorms != NULL || *nrequest_ptr == 0));
   if (core->rnorms == NULL) {
      *nrequest_ptr = 0;
      return 0;
   }
   return _braid_CopyHistory(core->rnorms, core->niter + 1, nrequest_ptr, rnorms);
}

braid_Int braid_GetRNorm(braid_Core core, braid_Real *rnorm_ptr)
{
   _braid_CHECK(core, rnorm_ptr != NULL);
   *rnorm_ptr = (core->rnorms && core->niter > 0) ? core->rnorms[core->niter - 1] : -1.0;
   return 0;
}

braid_Int braid_GetNLevels(braid_Core core, braid_Int *nlevels_ptr)
{
   _braid_CHECK(core, nlevels_ptr != NULL);
   *nlevels_ptr = core->nlevels;
   return 0;
}

braid_Int braid_GetErrorRank(braid_Core core, braid_Int *rank_ptr)
{
   _braid_CHECK(core, rank_ptr != NULL);
   *rank_ptr = core->error_rank;
   return 0;
}

braid_Int braid_GetNumSteps(braid_Core core, braid_Int *nsteps_ptr)
{
   _braid_CHECK(core, nsteps_ptr != NULL);
   *nsteps_ptr = (braid_Int) core->nsteps;
   return 0;
}

braid_Int braid_GetDistribution(braid_Core core, braid_Int *ilower_ptr, braid_Int *iupper_ptr)
{
   return braid_GetDistributionOf(core, core->rank, ilower_ptr, iupper_ptr);
}

braid_Int braid_GetDistributionOf(braid_Core core, braid_Int rank, braid_Int *ilower_ptr, braid_Int *iupper_ptr)
{
   _braid_CHECK(core, ilower_ptr != NULL && iupper_ptr != NULL && rank >= 0 && rank < core->nprocs);
   _braid_FineRange(core, rank, ilower_ptr, iupper_ptr);
   return 0;
}

/* The grid options are frozen by the first drive, so the hierarchy computed from them is the one
 * built (or to be built). */
braid_Int braid_GetLevelStrides(braid_Core core, braid_Int max, braid_Int *nlevels_ptr, braid_Int *strides)
{
   braid_Int nlevels, l, stride = 1;
   _braid_CHECK(core, max >= 0 && nlevels_ptr != NULL && (strides != NULL || max == 0));
   nlevels = _braid_NumLevels(core);
   for (l = 0; l < nlevels && l < max; l++) {
      strides[l] = stride;
      if (l + 1 < nlevels) stride *= core->cfactor[l];   /* (the coarsest level's cfactor is unused) */
   }
   *nlevels_ptr = nlevels;
   return 0;
}
