/*
 * trace.c -- the opt-in event trace (braid_SetTrace, braid_GetTrace; an extension of this core).
 *
 * Why: the time of a layer-parallel solve on many ranks is set by its critical path, a chain of step
 * calls and messages across ranks.  On a machine with fewer cores than ranks wall-clock times say
 * little about that path (MPI busy-polls, ranks wait for a core, not for a message), but the order of
 * events on each rank does not depend on the machine: record it here, and replay it elsewhere with a
 * cost per step and per message (scripts/replay_scaling.py).
 *
 * Recording is per rank, appends to a growing array, and needs no communication.  A failed allocation
 * stops recording (the trace then ends early) rather than failing the solve: the trace is a diagnostic.
 */
#include <stdlib.h>
#include "_braid.h"

void
_braid_TraceRecord(braid_Core core, braid_Int kind, braid_Int level, braid_Int index, braid_Int peer,
                   braid_Int bytes)
{
   struct _braid_Trace *tr = core->trace;
   braid_TraceEvent *e;
   if (!tr->recording) return;
   if (tr->n == tr->cap) {
      braid_Int cap = tr->cap ? 2 * tr->cap : 1024;
      braid_TraceEvent *grown = (braid_TraceEvent *) realloc(tr->events, (size_t) cap * sizeof(*grown));
      if (grown == NULL) {
         tr->recording = 0;
         return;
      }
      tr->events = grown;
      tr->cap = cap;
   }
   e = &tr->events[tr->n++];
   e->kind = kind;
   e->level = level;
   e->index = index;
   e->peer = peer;
   e->bytes = bytes;
   e->iter = core->iter;
   e->drive = tr->drive;
}

/* Called by braid_Drive before any event of the drive. */
void
_braid_TraceNewDrive(braid_Core core)
{
   if (core->trace != NULL && core->trace->recording) core->trace->drive++;
}

void
_braid_TraceFree(braid_Core core)
{
   if (core->trace == NULL) return;
   free(core->trace->events);
   free(core->trace);
   core->trace = NULL;
}

braid_Int
braid_SetTrace(braid_Core core, braid_Int on)
{
   if (core == NULL || (on != 0 && on != 1)) return BRAID_ERROR_ARG;
   if (on) {
      _braid_TraceFree(core);
      core->trace = (struct _braid_Trace *) calloc(1, sizeof(struct _braid_Trace));
      if (core->trace == NULL) return BRAID_ERROR_MEMORY;
      core->trace->recording = 1;
      core->trace->drive = -1;
   }
   else if (core->trace != NULL) {
      core->trace->recording = 0;
   }
   return 0;
}

braid_Int
braid_GetTrace(braid_Core core, braid_Int *nevents_ptr, const braid_TraceEvent **events_ptr)
{
   if (core == NULL || nevents_ptr == NULL || events_ptr == NULL) return BRAID_ERROR_ARG;
   *nevents_ptr = core->trace ? core->trace->n : 0;
   *events_ptr = core->trace ? core->trace->events : NULL;
   return 0;
}
