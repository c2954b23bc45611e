/*
 * norm.c -- the temporal norm of the residual, from the spatial norms at this rank's C-points.
 * tnorm 1: sum of norms; 2: sqrt of the sum of squares; 3: max.  NaN is carried through explicitly,
 * since MPI_MAX need not propagate it.
 */
#include <math.h>
#include "_braid.h"

braid_Int
_braid_NormAccumulate(braid_Core core, braid_Real norm)
{
   switch (core->tnorm) {
      case 1: core->rnorm_acc += norm; break;
      case 3: if (norm > core->rnorm_acc || isnan(norm)) core->rnorm_acc = isnan(core->rnorm_acc) ?
                                                                           core->rnorm_acc : norm;
              break;
      default: core->rnorm_acc += norm * norm; break;
   }
   return 0;
}

/* Collective over the time communicator. */
braid_Int
_braid_NormFinish(braid_Core core, braid_Real *rnorm)
{
   double mine[2], all[2];
   mine[0] = isnan(core->rnorm_acc) ? 0.0 : core->rnorm_acc;
   mine[1] = isfinite(core->rnorm_acc) ? 0.0 : 1.0;
   if (MPI_Allreduce(mine, all, 2, MPI_DOUBLE, core->tnorm == 3 ? MPI_MAX : MPI_SUM, core->comm) != MPI_SUCCESS)
      return _braid_Fail(core, BRAID_ERROR_MPI);
   _braid_TRACE(core, BRAID_TRACE_REDUCE, -1, -1, -1, (braid_Int) sizeof(mine));
   *rnorm = (core->tnorm == 2) ? sqrt(all[0]) : all[0];
   if (all[1] > 0.0) *rnorm = NAN;
   return 0;
}
