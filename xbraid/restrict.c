/*
 * restrict.c -- FAS restriction from `level` to level+1.
 *
 * After F-relaxation, at every C-point i > 0:   r_i = f_i - (u_i - Phi(u_{i-1}))      (f = 0 on level 0)
 * Inject u_i and r_i to the coarse point j = i/cf, keep the injected value as v_j, start the coarse
 * level from u = v, and give it the right-hand side
 *                                                f_j = r_j + v_j - Phi_c(v_{j-1}),
 * so that the coarse equation u_j - Phi_c(u_{j-1}) = f_j holds for u = v exactly when r = 0.  On level 0
 * the norm of r is the iteration's residual norm.  Points after the last C-point (ntime not a multiple
 * of cf) form an open interval: no residual, no coarse correction.
 */
#include "_braid.h"

/*
 * r = Phi(u_{i-1}) at C-point i (the step without f): turn it into r_i and hand it to the coarse level
 * as f_j.  The operations are LLNL XBraid's, in its order (r = u - Phi, then f - r, or -r without f),
 * so that both cores round alike and give the same numbers, not only the same iterations.
 */
braid_Int
_braid_ResidualAtCPoint(braid_Core core, braid_Int level, braid_Int i, braid_Vector r)
{
   _braid_Grid *g = &core->grids[level], *gc = &core->grids[level + 1];
   braid_Int j = i / g->cfactor;
   braid_Vector f = (level > 0) ? g->fa[i - g->ilower] : NULL;
   braid_Real norm;

   _braid_Sum(core, 1.0, *_braid_UPtr(g, i), -1.0, r);
   if (f != NULL)
      _braid_Sum(core, 1.0, f, -1.0, r);
   else
      _braid_Sum(core, 0.0, r, -1.0, r);
   if (level == 0) {
      _braid_Norm(core, r, &norm);
      _braid_NormAccumulate(core, norm);
   }
   return _braid_SetVector(core, &gc->fa[j - gc->ilower], r);
}

/* Copy this rank's C-points of `level` to level+1, as u and v (clear_rhs: f = 0 there, as with skip). */
braid_Int
_braid_Inject(braid_Core core, braid_Int level, braid_Int clear_rhs)
{
   _braid_Grid *g = &core->grids[level], *gc = &core->grids[level + 1];
   braid_Int j;
   for (j = gc->ilower; j <= gc->iupper; j++) {
      braid_Vector u = *_braid_UPtr(g, j * g->cfactor), v = NULL, uc = NULL;
      _braid_Clone(core, u, &v);
      _braid_SetVector(core, &gc->va[j - gc->ilower], v);
      if (_braid_IsStored(gc, j)) _braid_Clone(core, u, &uc);
      _braid_SetVector(core, _braid_UPtr(gc, j), uc);
      if (clear_rhs) _braid_Free(core, &gc->fa[j - gc->ilower]);
   }
   return 0;
}

braid_Int
_braid_Restrict(braid_Core core, braid_Int level)
{
   _braid_Grid *g = &core->grids[level], *gc = &core->grids[level + 1];
   braid_Int j, jlo;

   if (level == 0) core->rnorm_acc = 0.0;
   _braid_Sweep(core, level, _braid_SWEEP_RESIDUAL, g->cfactor);
   if (level == 0) _braid_NormFinish(core, &core->rnorms[core->iter]);
   _braid_Inject(core, level, 0);

   /* f_j += v_j - Phi_c(v_{j-1}); v at the coarse point left of ours comes from the neighbour */
   if (gc->ilower > gc->iupper) return 0;
   _braid_CommPostRecv(core, level + 1);
   _braid_CommSend(core, level + 1, gc->va[gc->iupper - gc->ilower], braid_ASCaller_FRestrict);
   jlo = (gc->ilower > 0) ? gc->ilower : 1;
   for (j = gc->iupper; j >= jlo; j--) {
      braid_Vector vprev, phi_v = NULL;
      if (j - 1 >= gc->ilower) {
         vprev = gc->va[j - 1 - gc->ilower];
      }
      else {
         _braid_CommWaitRecv(core, level + 1);
         vprev = gc->uleft;
      }
      _braid_Clone(core, vprev, &phi_v);
      _braid_Step(core, level + 1, j, gc->va[j - gc->ilower], phi_v, 0);
      _braid_Sum(core, 1.0, gc->va[j - gc->ilower], -1.0, phi_v);      /* v_j - Phi_c(v_{j-1}) */
      _braid_Sum(core, 1.0, phi_v, 1.0, gc->fa[j - gc->ilower]);       /* ... + r_j */
      _braid_Free(core, &phi_v);
   }
   _braid_CommWaitRecv(core, level + 1);
   return 0;
}
