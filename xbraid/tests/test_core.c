/*
 * test_core.c -- C-level tests of the MGRIT core, run under mpiexec (1-4 ranks) and under valgrind or
 * AddressSanitizer by scripts/check_leaks.sh.
 *
 * Problem: a 2-vector linear ODE with a rotation and decay, u <- A(dt) u with
 * A(dt) = (I + dt*M)^-1 (backward Euler, M = [[1, -2], [2, 1]]), whose sequential solution every rank
 * can compute.  For many configurations (levels, cfactor, relaxation, cycles, skip, storage, ntime) the
 * test checks that the access values at done = 1 equal sequential time stepping to 1e-10 and prints
 * one line per configuration with the iteration count and the last residual, so that runs on
 * different rank counts can be compared (they must print the same lines).
 * Each configuration also checks braid_GetLevelStrides (asked before the drive) against the step sizes
 * the step callback saw on every level, and braid_GetDistributionOf against the contiguous blocks.
 * Then: a failing step on the last rank must make braid_Drive return an error on every rank; a warm
 * restart must converge at once; many Init/Drive/Destroy cycles must not leak (checked by the tools).
 * Behaviour that follows LLNL XBraid (xbraid/README.md): one level means no iteration; which
 * iterations are F-cycles under braid_SetFMG / braid_SetNFMG; a zero residual does not meet a zero
 * tolerance; the final FC relaxation (braid_SetFinalFCRelax) against values computed by hand from a
 * drive without it, and the residual of the warm restart after it; a warm restart that skips
 * (braid_SetWarmSkip) restarts its C-points from the coarse solution.  The event trace (braid_SetTrace)
 * records exactly the drive's step calls and balanced sends and receives.
 * Exit code 0 on success.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "braid.h"

typedef struct _braid_Vector_struct { double v[2]; } my_Vector;

typedef struct _braid_App_struct {
   int rank, ntime;
   double tstart, tstop;
   double *exact;      /* sequential solution, 2*(ntime+1) */
   double maxerr;
   int fail_rank, fail_iter, naccess;
   double level_dt[64];  /* the step size seen on each level (0: no step there), to check the strides */
   long coarse_steps[64];  /* steps on levels > 0 in each iteration, to tell F- from V-cycles */
   long steps;         /* all steps */
   long nvectors;      /* live vectors, must return to 0 */
   double *rec;        /* if set: the final access's level-0 values, 2*(ntime+1), zeros elsewhere */
} my_App;

static void apply(double dt, double *u)
{
   /* (I + dt M)^-1 u with M = [[1,-2],[2,1]]: det = (1+dt)^2 + 4 dt^2 */
   double a = 1.0 + dt, b = -2.0 * dt, c = 2.0 * dt, d = 1.0 + dt, det = a * d - b * c;
   double x = (d * u[0] - b * u[1]) / det, y = (-c * u[0] + a * u[1]) / det;
   u[0] = x; u[1] = y;
}

static int my_step(braid_App app, braid_Vector ustop, braid_Vector fstop, braid_Vector u, braid_StepStatus st)
{
   double t0, t1;
   int iter, level;
   (void) ustop; (void) fstop;
   braid_StepStatusGetTstartTstop(st, &t0, &t1);
   braid_StepStatusGetIter(st, &iter);
   braid_StepStatusGetLevel(st, &level);
   if (app->rank == app->fail_rank && iter == app->fail_iter) return 42;
   if (level >= 0 && level < 64) app->level_dt[level] = t1 - t0;
   if (level > 0 && iter >= 0 && iter < 64) app->coarse_steps[iter]++;
   app->steps++;
   apply(t1 - t0, u->v);
   return 0;
}

static int my_init(braid_App app, double t, braid_Vector *u_ptr)
{
   my_Vector *u = malloc(sizeof(*u));
   if (t == app->tstart) { u->v[0] = 1.0; u->v[1] = 0.5; }
   else { u->v[0] = 0.456; u->v[1] = -0.2; }
   app->nvectors++;
   *u_ptr = u;
   return 0;
}

static int my_clone(braid_App app, braid_Vector u, braid_Vector *v_ptr)
{
   my_Vector *v = malloc(sizeof(*v));
   *v = *u;
   app->nvectors++;
   *v_ptr = v;
   return 0;
}

static int my_free(braid_App app, braid_Vector u)
{
   free(u);
   app->nvectors--;
   return 0;
}

static int my_sum(braid_App app, double alpha, braid_Vector x, double beta, braid_Vector y)
{
   (void) app;
   y->v[0] = alpha * x->v[0] + beta * y->v[0];
   y->v[1] = alpha * x->v[1] + beta * y->v[1];
   return 0;
}

static int my_norm(braid_App app, braid_Vector u, double *n)
{
   (void) app;
   *n = sqrt(u->v[0] * u->v[0] + u->v[1] * u->v[1]);
   return 0;
}

static int my_access(braid_App app, braid_Vector u, braid_AccessStatus st)
{
   int idx, done, level;
   double e;
   braid_AccessStatusGetTIndex(st, &idx);
   braid_AccessStatusGetDone(st, &done);
   braid_AccessStatusGetLevel(st, &level);
   if (done && level == 0) {
      e = fabs(u->v[0] - app->exact[2 * idx]) + fabs(u->v[1] - app->exact[2 * idx + 1]);
      if (e > app->maxerr) app->maxerr = e;
      app->naccess++;
      if (app->rec) { app->rec[2 * idx] = u->v[0]; app->rec[2 * idx + 1] = u->v[1]; }
   }
   return 0;
}

static int my_bufsize(braid_App app, int *size, braid_BufferStatus st)
{
   (void) app; (void) st;
   *size = 2 * sizeof(double);
   return 0;
}

static int my_bufpack(braid_App app, braid_Vector u, void *buf, braid_BufferStatus st)
{
   (void) app; (void) st;
   memcpy(buf, u->v, 2 * sizeof(double));
   return 0;
}

static int my_bufunpack(braid_App app, void *buf, braid_Vector *u_ptr, braid_BufferStatus st)
{
   my_Vector *u = malloc(sizeof(*u));
   (void) st;
   memcpy(u->v, buf, 2 * sizeof(double));
   app->nvectors++;
   *u_ptr = u;
   return 0;
}

/* The strides must be the level count the drive built and the step sizes it used: a step on level l
 * spans strides[l] fine intervals (every level's steps do, even the coarsest level's). */
static int check_strides(const my_App *app, int nstrides, const int *strides, int nlevels, int rank, int k)
{
   double h = (app->tstop - app->tstart) / app->ntime;
   int l, bad = (nstrides != nlevels || strides[0] != 1);
   for (l = 0; l < nstrides && l < 64; l++)
      if (app->level_dt[l] != 0.0 && fabs(app->level_dt[l] - strides[l] * h) > 1e-12 * strides[l])
         bad = 1;
   if (bad) printf("FAIL strides of config %d on rank %d: %d levels asked, %d built\n", k, rank, nstrides, nlevels);
   return bad;
}

/* Every rank's range: contiguous blocks covering 0..ntime in rank order, sizes differing by at most one,
 * this rank's equal to braid_GetDistribution's; out-of-range ranks rejected. */
static int check_distribution(braid_Core core, int ntime, int nprocs, int rank)
{
   int q, lo, hi, mylo, myhi, next = 0, bad = 0, size0 = -1;
   braid_GetDistribution(core, &mylo, &myhi);
   for (q = 0; q < nprocs; q++) {
      braid_GetDistributionOf(core, q, &lo, &hi);
      if (q == rank && (lo != mylo || hi != myhi)) bad = 1;
      if (hi >= lo && lo != next) bad = 1;
      if (size0 < 0) size0 = hi - lo + 1;
      if (hi - lo + 1 > size0 || hi - lo + 1 < size0 - 1 || (hi - lo + 1 < 0)) bad = 1;
      if (hi >= lo) next = hi + 1;
   }
   if (next != ntime + 1) bad = 1;
   if (braid_GetDistributionOf(core, nprocs, &lo, &hi) != BRAID_ERROR_ARG ||
       braid_GetDistributionOf(core, -1, &lo, &hi) != BRAID_ERROR_ARG) bad = 1;
   if (bad) printf("FAIL distribution of %d points on rank %d of %d\n", ntime + 1, rank, nprocs);
   return bad;
}

typedef struct { int ntime, levels, cf, cf1, nrelax, fmg, skip, storage, tnorm, seq; } config;

static braid_Core make_core(my_App *app, const config *c, MPI_Comm comm)
{
   braid_Core core;
   int i;
   app->ntime = c->ntime;
   app->tstart = 0.0;
   app->tstop = 0.05 * c->ntime;
   app->exact = realloc(app->exact, 2 * (c->ntime + 1) * sizeof(double));
   app->exact[0] = 1.0; app->exact[1] = 0.5;
   for (i = 1; i <= c->ntime; i++) {
      double t0 = app->tstart + (((double) (i - 1)) / c->ntime) * (app->tstop - app->tstart);
      double t1 = app->tstart + (((double) i) / c->ntime) * (app->tstop - app->tstart);
      app->exact[2 * i] = app->exact[2 * i - 2];
      app->exact[2 * i + 1] = app->exact[2 * i - 1];
      apply(t1 - t0, &app->exact[2 * i]);
   }
   app->maxerr = 0.0;
   app->naccess = 0;
   memset(app->level_dt, 0, sizeof(app->level_dt));
   braid_Init(MPI_COMM_WORLD, comm, app->tstart, app->tstop, c->ntime, app, my_step, my_init, my_clone, my_free,
              my_sum, my_norm, my_access, my_bufsize, my_bufpack, my_bufunpack, &core);
   braid_SetPrintLevel(core, 0);
   braid_SetMaxLevels(core, c->levels);
   braid_SetCFactor(core, -1, c->cf);
   if (c->cf1) braid_SetCFactor(core, 0, c->cf1);
   braid_SetNRelax(core, -1, c->nrelax);
   braid_SetAbsTol(core, 1e-13);
   braid_SetMaxIter(core, 60);
   if (c->fmg) braid_SetFMG(core);
   braid_SetSkip(core, c->skip);
   braid_SetStorage(core, c->storage);
   braid_SetTemporalNorm(core, c->tnorm);
   braid_SetSeqSoln(core, c->seq);
   return core;
}

int main(int argc, char **argv)
{
   int rank, nprocs, failures = 0, k, n;
   my_App app;
   MPI_Comm comm = MPI_COMM_WORLD;
   static const config configs[] = {
      /* ntime levels cf cf1 nrelax fmg skip storage tnorm seq */
      {64, 1, 2, 0, 1, 0, 1, -1, 2, 0},
      {64, 2, 2, 0, 1, 0, 1, -1, 2, 0},
      {64, 3, 2, 0, 0, 0, 1, -1, 2, 0},
      {64, 4, 4, 0, 1, 0, 0, -1, 2, 0},
      {100, 6, 2, 0, 1, 1, 1, -1, 2, 0},
      {100, 6, 2, 0, 1, 1, 0, 0, 1, 0},
      {97, 3, 4, 0, 1, 0, 1, 0, 3, 0},
      {97, 3, 8, 0, 0, 1, 1, -1, 2, 0},
      {150, 4, 2, 4, 2, 0, 1, 1, 2, 0},
      {7, 3, 2, 0, 1, 0, 1, -1, 2, 0},
      {5, 2, 2, 0, 1, 0, 0, -1, 2, 0},
      {33, 5, 2, 0, 1, 1, 1, -1, 2, 1},
   };
   int nconfigs = (int) (sizeof(configs) / sizeof(configs[0]));
   int cycles = (argc > 1) ? atoi(argv[1]) : 1;

   MPI_Init(&argc, &argv);
   MPI_Comm_rank(comm, &rank);
   MPI_Comm_size(comm, &nprocs);
   memset(&app, 0, sizeof(app));
   app.rank = rank;
   app.fail_rank = -1;

   for (n = 0; n < cycles; n++)
   for (k = 0; k < nconfigs; k++) {
      braid_Core core = make_core(&app, &configs[k], comm);
      int strides[64], nstrides = 0, code, niter, nlev, nr = 1;
      double rnorm, err;
      long nvec;
      braid_GetLevelStrides(core, 64, &nstrides, strides);    /* before the drive */
      failures += check_distribution(core, configs[k].ntime, nprocs, rank);
      code = braid_Drive(core);
      nvec = app.nvectors;
      braid_GetNumIter(core, &niter);
      braid_GetNLevels(core, &nlev);
      failures += check_strides(&app, nstrides, strides, nlev, rank, k);
      braid_GetRNorms(core, &nr, &rnorm);
      nr = -1;
      braid_GetRNorms(core, &nr, &rnorm);
      MPI_Allreduce(&app.maxerr, &err, 1, MPI_DOUBLE, MPI_MAX, comm);
      braid_Destroy(core);
      if (rank == 0 && n == 0)
         printf("config %2d: code %d levels %d iterations %2d last residual %.10e error %.2e\n", k, code, nlev,
                niter, rnorm, err);
      if (code != 0 || err > 1e-10 || app.nvectors != 0 || (nvec == 0)) {
         printf("FAIL config %d on rank %d: code %d error %.3e live vectors %ld\n", k, rank, code, err,
                app.nvectors);
         failures++;
      }
   }

   /* a failing callback on the last rank stops every rank */
   {
      config c = {64, 3, 2, 0, 1, 0, 0, -1, 2, 0};
      braid_Core core;
      int code, erank;
      app.fail_rank = nprocs - 1;
      app.fail_iter = 2;
      core = make_core(&app, &c, comm);
      code = braid_Drive(core);
      braid_GetErrorRank(core, &erank);
      braid_Destroy(core);
      app.fail_rank = -1;
      if ((rank == nprocs - 1 && code != 42) || (rank != nprocs - 1 && code != BRAID_ERROR_REMOTE) ||
          erank != nprocs - 1 || app.nvectors != 0) {
         printf("FAIL error propagation on rank %d: code %d, error rank %d, live vectors %ld\n", rank, code, erank,
                app.nvectors);
         failures++;
      }
      else if (rank == 0) printf("error propagation: ok (code %d on the failing rank)\n", 42);
   }

   /* warm restart: a second drive with nothing changed converges in one iteration */
   {
      config c = {64, 3, 2, 0, 1, 0, 1, -1, 2, 0};
      braid_Core core = make_core(&app, &c, comm);
      int niter1, niter2;
      braid_Drive(core);
      braid_GetNumIter(core, &niter1);
      app.maxerr = 0.0;
      braid_Drive(core);
      braid_GetNumIter(core, &niter2);
      braid_Destroy(core);
      if (niter2 != 1 || app.maxerr > 1e-10) {
         printf("FAIL warm restart: iterations %d then %d, error %.3e\n", niter1, niter2, app.maxerr);
         failures++;
      }
      else if (rank == 0) printf("warm restart: ok (%d iterations, then %d)\n", niter1, niter2);
   }

   /* max_levels 1: no iteration (history [-1]); the final access steps through level 0 once, also
    * with access level 0 (then without calling access) */
   {
      config c = {64, 1, 2, 0, 1, 0, 1, -1, 2, 0};
      int level, bad = 0;
      for (level = 0; level <= 1; level++) {
         braid_Core core = make_core(&app, &c, comm);
         int niter = -1, nr = 4;
         double norms[4] = {0, 0, 0, 0};
         long mine[2], all[2];
         braid_SetAccessLevel(core, level);
         app.steps = 0;
         braid_Drive(core);
         braid_GetNumIter(core, &niter);
         braid_GetRNorms(core, &nr, norms);
         braid_Destroy(core);
         mine[0] = app.steps;
         mine[1] = app.naccess;
         MPI_Allreduce(mine, all, 2, MPI_LONG, MPI_SUM, comm);
         if (niter != 0 || nr != 1 || norms[0] != -1.0 || all[0] != 64 || all[1] != (level ? 65 : 0)) {
            printf("FAIL one level, access level %d: %d iterations, %d norms (%g), %ld steps, %ld accesses\n",
                   level, niter, nr, norms[0], all[0], all[1]);
            failures++;
            bad = 1;
         }
      }
      if (!bad && rank == 0) printf("one level: ok (0 iterations, history [-1], 64 steps)\n");
   }

   /* F- and V-cycles: iteration k is an F-cycle iff braid_SetFMG was called and k != nfmg; an
    * F-cycle steps more on the coarse levels than a V-cycle.  Tolerance 0: a residual never meets
    * it (not even 0), so every run does max_iter iterations. */
   {
      config c = {64, 4, 2, 0, 1, 0, 0, -1, 2, 0};
      /* fmg, nfmg (-2: not set) */
      static const int runs[][2] = {{0, -2}, {1, -2}, {1, 2}, {1, 0}, {0, 2}, {1, -1}};
      long counts[6][5], mine[5];
      int r, it, bad = 0;
      for (r = 0; r < 6; r++) {
         braid_Core core = make_core(&app, &c, comm);
         int niter = -1;
         if (runs[r][0]) braid_SetFMG(core);
         if (runs[r][1] != -2) braid_SetNFMG(core, runs[r][1]);
         braid_SetAbsTol(core, 0.0);
         braid_SetMaxIter(core, 5);
         memset(app.coarse_steps, 0, sizeof(app.coarse_steps));
         braid_Drive(core);
         braid_GetNumIter(core, &niter);
         braid_Destroy(core);
         for (it = 0; it < 5; it++) mine[it] = app.coarse_steps[it];
         MPI_Allreduce(mine, counts[r], 5, MPI_LONG, MPI_SUM, comm);
         if (niter != 5) bad = 1;
      }
      for (it = 0; it < 5; it++) {
         long v = counts[0][it], f = counts[1][it];
         if (f <= v) bad = 1;                                    /* F-cycles step more */
         if (counts[2][it] != (it == 2 ? v : f)) bad = 1;         /* FMG, nfmg 2: F F V F F */
         if (counts[3][it] != (it == 0 ? v : f)) bad = 1;         /* FMG, nfmg 0: V F F F F */
         if (counts[4][it] != v) bad = 1;                         /* nfmg 2 alone: V-cycles */
         if (counts[5][it] != f) bad = 1;                         /* FMG, nfmg -1: F-cycles */
      }
      if (bad) {
         printf("FAIL F/V cycle schedule (coarse steps per iteration: V %ld %ld, F %ld %ld)\n", counts[0][0],
                counts[0][1], counts[1][0], counts[1][1]);
         failures++;
      }
      else if (rank == 0) printf("F/V cycle schedule: ok\n");
   }

   /* final FC relaxation: after two iterations (not converged), drive A ends with the usual final
    * F-relaxation, drive B with an FC relaxation.  B's access must show A's F-point values (stepped from
    * the same C-points), at each C-point c > 0 the step from A's value at c-1, at point 0 the same;
    * at access level 0 too.  A warm restart of B then starts from the relaxed C-points: its first
    * residual is computed here by hand from B's C-point values. */
   {
      config c = {37, 3, 4, 0, 0, 0, 1, -1, 2, 0};
      int np = c.ntime + 1, i, cf = 4, level, bad = 0;
      double *a = calloc(2 * np, sizeof(double)), *b = calloc(2 * np, sizeof(double));
      double dmax = 0.0, cmove = 0.0, r2 = 0.0, rnorm = -1.0;
      for (level = 1; level >= 0; level--) {
         long mine, all;
         int nr = 1;
         braid_Core core = make_core(&app, &c, comm);
         braid_SetAbsTol(core, 0.0);
         braid_SetMaxIter(core, 2);
         app.rec = a;
         memset(a, 0, 2 * np * sizeof(double));
         braid_Drive(core);
         braid_Destroy(core);
         MPI_Allreduce(MPI_IN_PLACE, a, 2 * np, MPI_DOUBLE, MPI_SUM, comm);
         core = make_core(&app, &c, comm);
         braid_SetAbsTol(core, 0.0);
         braid_SetMaxIter(core, 2);
         braid_SetAccessLevel(core, level);
         braid_SetFinalFCRelax(core);
         app.rec = b;
         app.naccess = 0;
         memset(b, 0, 2 * np * sizeof(double));
         braid_Drive(core);
         app.rec = NULL;
         mine = app.naccess;
         MPI_Allreduce(MPI_IN_PLACE, b, 2 * np, MPI_DOUBLE, MPI_SUM, comm);
         MPI_Allreduce(&mine, &all, 1, MPI_LONG, MPI_SUM, comm);
         if (all != np) bad = 1;
         for (i = 0; i < np; i++) {
            double want[2] = {a[2 * i], a[2 * i + 1]};
            if (i > 0 && i % cf == 0) {
               double t0 = app.tstart + (((double) (i - 1)) / c.ntime) * (app.tstop - app.tstart);
               double t1 = app.tstart + (((double) i) / c.ntime) * (app.tstop - app.tstart);
               want[0] = a[2 * i - 2];
               want[1] = a[2 * i - 1];
               apply(t1 - t0, want);
               cmove = fmax(cmove, fabs(want[0] - a[2 * i]));
            }
            dmax = fmax(dmax, fabs(b[2 * i] - want[0]) + fabs(b[2 * i + 1] - want[1]));
         }
         /* the warm restart's first residual: F-relax from B's C-points, r_c = u_c - Phi(u_{c-1}) */
         r2 = 0.0;
         for (i = cf; i < np; i += cf) {
            double w[2] = {b[2 * (i - cf)], b[2 * (i - cf) + 1]};
            int k;
            for (k = i - cf + 1; k <= i; k++) {
               double t0 = app.tstart + (((double) (k - 1)) / c.ntime) * (app.tstop - app.tstart);
               double t1 = app.tstart + (((double) k) / c.ntime) * (app.tstop - app.tstart);
               apply(t1 - t0, w);
            }
            r2 += (b[2 * i] - w[0]) * (b[2 * i] - w[0]) + (b[2 * i + 1] - w[1]) * (b[2 * i + 1] - w[1]);
         }
         braid_SetMaxIter(core, 1);
         braid_Drive(core);
         braid_GetRNorms(core, &nr, &rnorm);
         braid_Destroy(core);
         if (fabs(rnorm - sqrt(r2)) > 1e-12 * sqrt(r2)) bad = 1;
      }
      if (bad || dmax > 1e-14 || cmove < 1e-6) {
         printf("FAIL final FC relaxation: largest difference %.3e (C-points moved by %.3e), warm residual %.6e "
                "instead of %.6e\n", dmax, cmove, rnorm, sqrt(r2));
         failures++;
      }
      else if (rank == 0) printf("final FC relaxation: ok (C-points moved by %.2e)\n", cmove);
      free(a);
      free(b);
   }

   /* warm skip: after a converged drive, a warm restart of one iteration keeps the solution; with
    * braid_SetWarmSkip its one iteration is a skipped one, as in LLNL XBraid: injection with f = 0 and
    * the coarse solve make the fine C-points the coarse time stepping from point 0, computed here */
   {
      config c = {64, 2, 4, 0, 1, 0, 1, -1, 2, 0};
      int np = c.ntime + 1, warm, i, bad = 0, niter[2] = {0, 0};
      double first[2] = {0.0, 0.0}, err[2] = {0.0, 0.0}, coarse[2] = {1.0, 0.5};
      double *u = calloc(2 * np, sizeof(double));
      for (warm = 0; warm <= 1; warm++) {
         braid_Core core = make_core(&app, &c, comm);
         int nr = 1;
         braid_SetWarmSkip(core, warm);
         braid_Drive(core);
         braid_SetMaxIter(core, 1);
         app.rec = u;
         memset(u, 0, 2 * np * sizeof(double));
         app.maxerr = 0.0;
         braid_Drive(core);
         app.rec = NULL;
         MPI_Allreduce(&app.maxerr, &err[warm], 1, MPI_DOUBLE, MPI_MAX, comm);
         braid_GetNumIter(core, &niter[warm]);
         braid_GetRNorms(core, &nr, &first[warm]);
         braid_Destroy(core);
      }
      MPI_Allreduce(MPI_IN_PLACE, u, 2 * np, MPI_DOUBLE, MPI_SUM, comm);
      for (i = c.cf; i < np; i += c.cf) {
         double t0 = app.tstart + (((double) (i - c.cf)) / c.ntime) * (app.tstop - app.tstart);
         double t1 = app.tstart + (((double) i) / c.ntime) * (app.tstop - app.tstart);
         apply(t1 - t0, coarse);
         if (fabs(u[2 * i] - coarse[0]) + fabs(u[2 * i + 1] - coarse[1]) > 1e-14) bad = 1;
      }
      if (bad || niter[0] != 1 || niter[1] != 1 || first[0] < 0.0 || first[1] != -1.0 || err[0] > 1e-10 ||
          err[1] < 1e-6 || braid_SetWarmSkip(NULL, 1) != BRAID_ERROR_ARG) {
         printf("FAIL warm skip: first residuals %g and %g, errors %.3e and %.3e, C-points %s the coarse "
                "solution\n", first[0], first[1], err[0], err[1], bad ? "differ from" : "equal");
         failures++;
      }
      else if (rank == 0) printf("warm skip: ok (the C-points become the coarse solution, error %.2e)\n", err[1]);
      free(u);
   }

   /* the event trace (braid_SetTrace): its steps are the step counter, every send is received, the
    * drive after braid_SetTrace(core, 0) adds nothing, and a new trace (or Destroy) frees the old */
   {
      braid_Core core = make_core(&app, &configs[0], comm);
      const braid_TraceEvent *ev = NULL;
      int nev = -1, nsteps = -1, i, counts[4] = {0, 0, 0, 0}, bad = 0;
      braid_SetMaxLevels(core, 3);
      braid_SetCFactor(core, -1, 2);
      braid_GetTrace(core, &nev, &ev);
      bad |= (nev != 0 || ev != NULL);
      bad |= (braid_SetTrace(core, 2) != BRAID_ERROR_ARG || braid_SetTrace(NULL, 1) != BRAID_ERROR_ARG);
      braid_SetTrace(core, 1);
      braid_Drive(core);
      braid_GetNumSteps(core, &nsteps);
      braid_SetTrace(core, 0);
      braid_Drive(core);
      braid_GetTrace(core, &nev, &ev);
      for (i = 0; i < nev; i++) {
         if (ev[i].kind < 1 || ev[i].kind > 4 || ev[i].drive != 0) bad = 1;
         else counts[ev[i].kind - 1]++;
      }
      bad |= (counts[0] != nsteps || counts[3] < 2);
      /* sends and receives balance over the ranks */
      counts[1] -= counts[2];
      MPI_Allreduce(MPI_IN_PLACE, &counts[1], 1, MPI_INT, MPI_SUM, comm);
      bad |= (counts[1] != 0);
      braid_SetTrace(core, 1);       /* a new trace: the old events are freed */
      braid_GetTrace(core, &nev, &ev);
      bad |= (nev != 0);
      braid_Drive(core);             /* recorded, then freed by Destroy */
      braid_Destroy(core);
      if (bad) {
         printf("FAIL event trace on rank %d (%d events, %d step events, %d steps)\n", rank, nev, counts[0], nsteps);
         failures++;
      }
   }

   /* setters reject bad values */
   {
      braid_Core core;
      braid_Init(MPI_COMM_WORLD, comm, 0.0, 1.0, 10, &app, my_step, my_init, my_clone, my_free, my_sum,
                 my_norm, my_access, my_bufsize, my_bufpack, my_bufunpack, &core);
      if (braid_SetCFactor(core, -1, 1) != BRAID_ERROR_ARG || braid_SetMaxLevels(core, 0) != BRAID_ERROR_ARG ||
          braid_SetAbsTol(core, -1.0) != BRAID_ERROR_ARG || braid_SetTemporalNorm(core, 4) != BRAID_ERROR_ARG ||
          braid_SetWarmSkip(core, 2) != BRAID_ERROR_ARG) {
         printf("FAIL setters accept bad values\n");
         failures++;
      }
      braid_Destroy(core);
   }

   /* the level rule against hand-computed hierarchies, before any drive */
   {
      static const struct { int ntime, max_levels, min_coarse, cf, cf0, nlevels, strides[6]; } h[] = {
         /* ntime max min cf cf0 -> nlevels strides */
         {16, 30, 2, 2, 0, 4, {1, 2, 4, 8}},
         {16, 2, 2, 2, 0, 2, {1, 2}},
         {32, 30, 1, 4, 0, 3, {1, 4, 16}},
         {21, 30, 2, 2, 4, 3, {1, 4, 8}},
         {3, 30, 2, 2, 0, 1, {1}},
         {63, 30, 3, 2, 0, 5, {1, 2, 4, 8, 16}},
         {7, 1, 2, 2, 0, 1, {1}},
      };
      int nh = (int) (sizeof(h) / sizeof(h[0])), j, l;
      for (j = 0; j < nh; j++) {
         braid_Core core;
         int strides[6], nlev = -1, bad = 0;
         braid_Init(MPI_COMM_WORLD, comm, 0.0, 1.0, h[j].ntime, &app, my_step, my_init, my_clone, my_free,
                    my_sum, my_norm, my_access, my_bufsize, my_bufpack, my_bufunpack, &core);
         braid_SetMaxLevels(core, h[j].max_levels);
         braid_SetMinCoarse(core, h[j].min_coarse);
         braid_SetCFactor(core, -1, h[j].cf);
         if (h[j].cf0) braid_SetCFactor(core, 0, h[j].cf0);
         braid_GetLevelStrides(core, 6, &nlev, strides);
         bad = (nlev != h[j].nlevels);
         for (l = 0; !bad && l < nlev; l++) bad = (strides[l] != h[j].strides[l]);
         /* only the count when there is no room */
         nlev = -1;
         if (braid_GetLevelStrides(core, 0, &nlev, NULL) != 0 || nlev != h[j].nlevels) bad = 1;
         braid_Destroy(core);
         if (bad) {
            printf("FAIL level strides of hierarchy %d (ntime %d)\n", j, h[j].ntime);
            failures++;
         }
      }
   }

   free(app.exact);
   MPI_Allreduce(MPI_IN_PLACE, &failures, 1, MPI_INT, MPI_SUM, comm);
   if (rank == 0) printf("%s: %d failures on %d ranks\n", failures ? "FAILED" : "passed", failures, nprocs);
   MPI_Finalize();
   return failures ? 1 : 0;
}
