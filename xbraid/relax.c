/*
 * relax.c -- sweeps over the intervals of a level: F- and C-relaxation, and the F-relaxations that
 * restriction, interpolation and access are built on.
 *
 * An interval starts at a C-point c and holds the F-points c+1 .. c+cf-1; the C-point c+cf ends it.
 * F-relaxation steps from u_c through the F-points; C-relaxation sets u_{c+cf} = Phi(u_{c+cf-1}) + f,
 * using the F-point values of the same sweep.  A sweep visits the intervals that touch this rank's
 * points [ilower, iupper]; the first may start on the left neighbour, and then starts from the
 * received value at ilower-1.
 *
 * Order: intervals are processed from the last to the first.  The last point's value is then known
 * early and sent while the other intervals are computed; and since a C-point is read (as the start of
 * its interval) before the interval to its left overwrites it (C-relaxation), F-then-C gives the same
 * result on any number of ranks.  Access sweeps go in increasing time order instead; the final FC
 * relaxation (an FC sweep that calls access) keeps the FC order, as LLNL XBraid's does.
 */
#include "_braid.h"

static braid_Int
_braid_Visit(braid_Core core, braid_Int level, _braid_SweepMode mode, braid_Int i, braid_Vector u)
{
   if (mode == _braid_SWEEP_INTERP) return _braid_CorrectFine(core, level, i, u);
   if (mode == _braid_SWEEP_ACCESS || mode == _braid_SWEEP_FC_ACCESS) return _braid_Access(core, level, i, u);
   return 0;
}

/* One interval, starting at C-point c (which may lie left of this rank's points). */
static braid_Int
_braid_SweepInterval(braid_Core core, braid_Int level, _braid_SweepMode mode, braid_Int cf, braid_Int c)
{
   _braid_Grid *g = &core->grids[level];
   braid_Int lo = g->ilower, hi = g->iupper;
   braid_Int first = (c + 1 > lo) ? c + 1 : lo;              /* first F-point to compute */
   braid_Int last = (c + cf - 1 < hi) ? c + cf - 1 : hi;     /* last F-point to compute */
   braid_Int target = c + cf;                                /* the C-point that ends the interval */
   braid_Int relax_c = (mode == _braid_SWEEP_FC || mode == _braid_SWEEP_FC_ACCESS);
   braid_Int cstep = (relax_c || mode == _braid_SWEEP_RESIDUAL) && target >= lo && target <= hi;
   braid_Vector w = NULL, copy;
   braid_Int i;

   /* the interval's start: visited here by an F-sweep; an FC sweep visits a C-point once it has
    * relaxed it, as the end of its interval, except point 0, which no sweep changes */
   if (c >= lo && (mode != _braid_SWEEP_FC_ACCESS || c == 0)) _braid_Visit(core, level, mode, c, *_braid_UPtr(g, c));
   if (first > last && !cstep) return 0;

   /* start from u_c, or from the neighbour's value at ilower-1 */
   if (c >= lo) {
      _braid_Clone(core, *_braid_UPtr(g, c), &w);
   }
   else {
      _braid_CommWaitRecv(core, level);
      _braid_Clone(core, g->uleft, &w);
   }

   /* F-relaxation */
   for (i = first; i <= last; i++) {
      braid_Int stored = _braid_IsStored(g, i);
      _braid_Step(core, level, i, stored ? *_braid_UPtr(g, i) : NULL, w, 1);
      if (stored) {
         _braid_Clone(core, w, &copy);
         _braid_SetVector(core, _braid_UPtr(g, i), copy);
      }
      _braid_Visit(core, level, mode, i, w);
      if (i == hi) _braid_CommSend(core, level, w, braid_ASCaller_FRelax);
   }

   /* C-relaxation, or the residual at the C-point (its step without f: the residual takes f apart) */
   if (cstep) {
      _braid_Step(core, level, target, *_braid_UPtr(g, target), w, relax_c);
      if (relax_c) {
         _braid_SetVector(core, _braid_UPtr(g, target), w);
         _braid_Visit(core, level, mode, target, w);
      }
      else {
         _braid_ResidualAtCPoint(core, level, target, w);
      }
      w = NULL;  /* moved */
   }
   _braid_Free(core, &w);
   return 0;
}

/*
 * Sweep over `level` with C-points every cf points (the level's own cfactor, or n+1 for sequential
 * time stepping from point 0).  Every rank owning points of the level takes part.
 */
braid_Int
_braid_Sweep(braid_Core core, braid_Int level, _braid_SweepMode mode, braid_Int cf)
{
   _braid_Grid *g = &core->grids[level];
   braid_Int lo = g->ilower, hi = g->iupper;
   braid_Int cfirst, clast, k, n;

   if (lo > hi) return 0;
   _braid_CommPostRecv(core, level);
   /* a C-point keeps its value under F-relaxation: the right neighbour can have it now */
   if (hi % cf == 0) _braid_CommSend(core, level, *_braid_UPtr(g, hi), braid_ASCaller_FRelax);

   cfirst = (lo > 0) ? ((lo - 1) / cf) * cf : 0;  /* the interval holding ilower-1 may end at ilower */
   clast = (hi / cf) * cf;
   n = (clast - cfirst) / cf + 1;
   for (k = 0; k < n; k++) {
      braid_Int c = (mode == _braid_SWEEP_ACCESS) ? cfirst + k * cf : clast - k * cf;
      _braid_SweepInterval(core, level, mode, cf, c);
   }
   _braid_CommWaitRecv(core, level);  /* the left value may have gone unused */
   return 0;
}

/* Pre-relaxation: nrelax sweeps of F- then C-relaxation. */
braid_Int
_braid_Relax(braid_Core core, braid_Int level)
{
   braid_Int k;
   for (k = 0; k < core->grids[level].nrelax; k++)
      _braid_Sweep(core, level, _braid_SWEEP_FC, core->grids[level].cfactor);
   return 0;
}

/* Sequential time stepping over a whole level from its point 0 (pipelined across ranks). */
braid_Int
_braid_SeqSolve(braid_Core core, braid_Int level)
{
   return _braid_Sweep(core, level, _braid_SWEEP_F, core->grids[level].n + 1);
}
