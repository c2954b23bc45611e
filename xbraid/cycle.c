/*
 * cycle.c -- one MGRIT iteration: a V-cycle or an F-cycle.
 *
 * V-cycle from level l: on each level down to the coarsest, relax and restrict; solve the coarsest level
 * exactly; interpolate back up to l.
 * F-cycle: down as a V-cycle; on the way up, on arriving at each level l > 0, first run one V-cycle
 * from l (down to the coarsest and back to l), then interpolate on up.  Level 0 gets no extra cycle.
 * With skip, the first iteration does no fine-level work: the current C-point values are injected to
 * every level with f = 0, so the coarsest solve is plain coarse time stepping, and the way up is as usual.
 * A warm restart that skips (braid_SetWarmSkip) does the same, as LLNL XBraid's skip at every drive
 * (LLNL frees a coarse level's right-hand sides after interpolating from it): its fine C-points become
 * the coarse solution, whatever the previous drives had reached.
 *
 * Which iterations are F-cycles follows LLNL XBraid's behaviour (not its documentation, which says
 * "F-cycles in the first nfmg iterations"): without braid_SetFMG every iteration is a V-cycle; with
 * it, iteration k of a drive (k = 0, 1, ...) is an F-cycle unless k == nfmg.  So nfmg = -1 (the
 * default) gives F-cycles always, nfmg = 2 gives F, F, V, F, F, ... and braid_SetNFMG alone changes
 * nothing.  (XBraid's drive loop resets its F-cycle level to the coarsest after every iteration,
 * except when the iteration count has just reached nfmg.)
 */
#include "_braid.h"

/* Relax and restrict from `level` to the coarsest, solve there, interpolate back to `level`. */
braid_Int
_braid_VCycle(braid_Core core, braid_Int level)
{
   braid_Int l;
   for (l = level; l < core->nlevels - 1; l++) {
      _braid_Relax(core, l);
      _braid_Restrict(core, l);
   }
   for (l = core->nlevels - 1; l > level; l--)
      _braid_Interp(core, l);
   return 0;
}

/* Is iteration `iter` of this drive an F-cycle?  (See the top of this file.) */
braid_Int
_braid_IsFCycle(braid_Core core, braid_Int iter)
{
   return core->fmg && core->nfmg != iter;
}

/* One iteration from level 0; its residual norm (if any) lands in core->rnorms[core->iter]. */
braid_Int
_braid_Iterate(braid_Core core, braid_Int skip_down)
{
   braid_Int nl = core->nlevels, l;
   braid_Int fcycle = _braid_IsFCycle(core, core->iter);

   core->rnorms[core->iter] = -1.0;
   if (nl == 1) {
      /* one level (max_levels > 1 but the grid too small to coarsen): sequential time stepping is
       * the exact solution, its residual 0 */
      _braid_SeqSolve(core, 0);
      core->rnorms[core->iter] = 0.0;
      return 0;
   }

   for (l = 0; l < nl - 1; l++) {
      if (skip_down) {
         _braid_Inject(core, l, 1);
      }
      else {
         _braid_Relax(core, l);
         _braid_Restrict(core, l);
      }
   }
   for (l = nl - 1; l > 0; l--) {
      _braid_Interp(core, l);
      if (fcycle && l - 1 > 0) _braid_VCycle(core, l - 1);
   }
   return 0;
}
