/*
 * grid.c -- the hierarchy of time grids and how its points are distributed over the ranks.
 *
 * Level 0 has ntime intervals.  Level l+1 keeps every cfactor_l-th point of level l and is made while
 * l+1 < max_levels and floor(n_l / cfactor_l) >= min_coarse.  The ntime+1 fine points are split in
 * contiguous blocks, the first (ntime+1) % P ranks holding one more; a coarse point lives on the rank
 * that owns its fine point, so nothing is ever redistributed and a rank may own no point of a level.
 * Storage grows linearly with the number of points: per level one pointer per owned point for u,
 * and on coarse levels one each for the restricted values v and the right-hand side f.
 */
#include <stdlib.h>
#include <string.h>
#include "_braid.h"

/* t_i on the fine grid, computed with exactly this formula so that every level sees the same times. */
braid_Real
_braid_Time(braid_Core core, braid_Int level, braid_Int i)
{
   long fi = (long) i * core->grids[level].stride;
   return core->tstart + (((braid_Real) fi) / core->ntime) * (core->tstop - core->tstart);
}

braid_Int
_braid_IsCPoint(_braid_Grid *g, braid_Int i)
{
   return (i % g->cfactor) == 0;
}

braid_Int
_braid_IsStored(_braid_Grid *g, braid_Int i)
{
   return g->store_all || _braid_IsCPoint(g, i);
}

/* The slot holding u at owned point i. */
braid_Vector *
_braid_UPtr(_braid_Grid *g, braid_Int i)
{
   return &g->ua[i - g->ilower];
}

/* Put u into a slot, freeing what was there (u is moved, not copied). */
braid_Int
_braid_SetVector(braid_Core core, braid_Vector *slot, braid_Vector u)
{
   if (*slot != u) _braid_Free(core, slot);
   *slot = u;
   return 0;
}

/* Owned range of rank q on level 0: contiguous blocks, the first (ntime+1) % P ranks one point more. */
void
_braid_FineRange(braid_Core core, braid_Int q, braid_Int *lo, braid_Int *hi)
{
   braid_Int npoints = core->ntime + 1;
   braid_Int base = npoints / core->nprocs, extra = npoints % core->nprocs;
   *lo = q * base + (q < extra ? q : extra);
   *hi = *lo + base + (q < extra ? 1 : 0) - 1;
}

/* Owned range of rank q on a level of the given stride: the points whose fine index it owns. */
static void
_braid_LevelRange(braid_Core core, braid_Int q, braid_Int stride, braid_Int *lo, braid_Int *hi)
{
   braid_Int flo, fhi;
   _braid_FineRange(core, q, &flo, &fhi);
   *lo = (flo + stride - 1) / stride;
   *hi = (fhi >= 0) ? fhi / stride : -1;
}

/* The number of levels the current options give: level l+1 is made while l+1 < max_levels and
 * floor(n_l / cfactor_l) >= min_coarse (n_l intervals on level l).  The one place of this rule:
 * _braid_BuildGrids uses it, braid_GetLevelStrides publishes it. */
braid_Int
_braid_NumLevels(braid_Core core)
{
   braid_Int n = core->ntime, nlevels = 1;
   while (nlevels < core->max_levels && nlevels < _braid_MAX_LEVELS &&
          n / core->cfactor[nlevels - 1] >= core->min_coarse) {
      n /= core->cfactor[nlevels - 1];
      nlevels++;
   }
   return nlevels;
}

braid_Int
_braid_BuildGrids(braid_Core core)
{
   braid_Int n = core->ntime, stride = 1, nlevels = _braid_NumLevels(core), l, q;

   core->grids = (_braid_Grid *) calloc(nlevels, sizeof(_braid_Grid));
   if (core->grids == NULL) return BRAID_ERROR_MEMORY;
   core->nlevels = nlevels;

   n = core->ntime;
   for (l = 0; l < nlevels; l++) {
      _braid_Grid *g = &core->grids[l];
      braid_Int nlocal;
      g->n = n;
      g->stride = stride;
      g->cfactor = (l < nlevels - 1) ? core->cfactor[l] : n + 1;
      g->nrelax = core->nrelax[l];
      g->store_all = (core->storage >= 0 && l >= core->storage);
      _braid_LevelRange(core, core->rank, stride, &g->ilower, &g->iupper);
      g->left = g->right = -1;
      for (q = core->rank - 1; q >= 0 && g->ilower <= g->iupper; q--) {
         braid_Int qlo, qhi;
         _braid_LevelRange(core, q, stride, &qlo, &qhi);
         if (qlo <= qhi) { g->left = q; break; }
      }
      for (q = core->rank + 1; q < core->nprocs && g->ilower <= g->iupper; q++) {
         braid_Int qlo, qhi;
         _braid_LevelRange(core, q, stride, &qlo, &qhi);
         if (qlo <= qhi) { g->right = q; break; }
      }
      nlocal = g->iupper - g->ilower + 1;
      if (nlocal < 0) nlocal = 0;
      g->ua = (braid_Vector *) calloc(nlocal + 1, sizeof(braid_Vector));
      g->va = (braid_Vector *) calloc(nlocal + 1, sizeof(braid_Vector));
      g->fa = (braid_Vector *) calloc(nlocal + 1, sizeof(braid_Vector));
      g->sendbuf = malloc(core->msg_bytes);
      g->recvbuf = malloc(core->msg_bytes);
      g->sendreq = g->recvreq = MPI_REQUEST_NULL;
      if (!g->ua || !g->va || !g->fa || !g->sendbuf || !g->recvbuf) return BRAID_ERROR_MEMORY;
      if (l < nlevels - 1) {
         stride *= core->cfactor[l];
         n /= core->cfactor[l];
      }
   }
   return 0;
}

braid_Int
_braid_FreeGrids(braid_Core core)
{
   braid_Int l, i;
   if (core->grids == NULL) return 0;
   for (l = 0; l < core->nlevels; l++) {
      _braid_Grid *g = &core->grids[l];
      braid_Int nlocal = g->iupper - g->ilower + 1;
      _braid_CommFinish(core, l);
      for (i = 0; i < nlocal; i++) {
         if (g->ua) _braid_Free(core, &g->ua[i]);
         if (g->va) _braid_Free(core, &g->va[i]);
         if (g->fa) _braid_Free(core, &g->fa[i]);
      }
      _braid_Free(core, &g->uleft);
      free(g->ua); free(g->va); free(g->fa);
      free(g->sendbuf); free(g->recvbuf);
   }
   free(core->grids);
   core->grids = NULL;
   core->nlevels = 0;
   return 0;
}
