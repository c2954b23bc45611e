/*
 * interp.c -- FAS interpolation from level lc to level lc-1.
 *
 * F-relax on level lc (on the coarsest level, whose single interval starts at point 0, this is the
 * exact sequential solve), and at every coarse point j add the correction e_j = u_j - v_j to the fine
 * C-point j*cf.  Fine F-points are not touched: the next F-relaxation regenerates them from the
 * corrected C-points (ideal interpolation).
 */
#include "_braid.h"

/* Called at each point j of level lc during the sweep, with u = the relaxed value there.  The
 * correction e = u - v is formed first and then added (LLNL XBraid's order, so that both cores round
 * alike); v is not needed after it, so e takes its place. */
braid_Int
_braid_CorrectFine(braid_Core core, braid_Int lc, braid_Int j, braid_Vector u)
{
   _braid_Grid *g = &core->grids[lc - 1], *gc = &core->grids[lc];
   braid_Vector uf = *_braid_UPtr(g, j * g->cfactor), e = gc->va[j - gc->ilower];
   _braid_Sum(core, 1.0, u, -1.0, e);
   _braid_Sum(core, 1.0, e, 1.0, uf);
   return 0;
}

braid_Int
_braid_Interp(braid_Core core, braid_Int lc)
{
   return _braid_Sweep(core, lc, _braid_SWEEP_INTERP, core->grids[lc].cfactor);
}
