/*
 * comm.c -- communication in time.
 *
 * The only values that cross ranks are the ones just left of a rank's first point: in every sweep over
 * a level each rank sends the value of its last point to its right neighbour as soon as that value is
 * final, and receives the value of point ilower-1 from its left neighbour, non-blocking, so that the
 * work on its other intervals overlaps the message.  Restriction sends the restricted value of the
 * last coarse point the same way.  Each message is a header (error code, payload bytes) followed by
 * the user's packed vector; a rank in error sends the header alone, and the receiver takes on the
 * error instead of unpacking.  Messages between a pair of ranks on one level are matched in order.
 */
#include <string.h>
#include "_braid.h"

static int
_braid_Tag(braid_Int level)
{
   return 1000 + level;
}

braid_Int
_braid_CommPostRecv(braid_Core core, braid_Int level)
{
   _braid_Grid *g = &core->grids[level];
   if (g->left < 0) return 0;
   if (MPI_Irecv(g->recvbuf, core->msg_bytes, MPI_BYTE, g->left, _braid_Tag(level), core->comm,
                 &g->recvreq) != MPI_SUCCESS)
      return _braid_Fail(core, BRAID_ERROR_MPI);
   return 0;
}

/* Complete the pending receive (if any) and put the value into g->uleft. */
braid_Int
_braid_CommWaitRecv(braid_Core core, braid_Int level)
{
   _braid_Grid *g = &core->grids[level];
   int header[2];
   if (g->recvreq == MPI_REQUEST_NULL) return 0;
   if (MPI_Wait(&g->recvreq, MPI_STATUS_IGNORE) != MPI_SUCCESS)
      return _braid_Fail(core, BRAID_ERROR_MPI);
   memcpy(header, g->recvbuf, sizeof(header));
   /* the receive is recorded where this rank waits for it: that is where it can lose time */
   _braid_TRACE(core, BRAID_TRACE_RECV, level, -1, g->left, _braid_HEADER_BYTES + header[1]);
   _braid_Free(core, &g->uleft);
   if (header[0] != 0)
      _braid_Fail(core, BRAID_ERROR_REMOTE);
   else if (core->error == 0)
      _braid_BufUnpack(core, (char *) g->recvbuf + _braid_HEADER_BYTES, &g->uleft, braid_ASCaller_FRelax);
   return 0;
}

/* Send u (the value at this rank's last point of `level`) to the right neighbour. */
braid_Int
_braid_CommSend(braid_Core core, braid_Int level, braid_Vector u, braid_Int msgtype)
{
   _braid_Grid *g = &core->grids[level];
   int header[2] = {0, 0};
   braid_Int size = 0;
   if (g->right < 0) return 0;
   if (g->sendreq != MPI_REQUEST_NULL && MPI_Wait(&g->sendreq, MPI_STATUS_IGNORE) != MPI_SUCCESS)
      return _braid_Fail(core, BRAID_ERROR_MPI);
   _braid_BufPack(core, u, (char *) g->sendbuf + _braid_HEADER_BYTES, msgtype, &size);
   if (core->error) {
      header[0] = core->error;
      size = 0;
   }
   header[1] = size;
   memcpy(g->sendbuf, header, sizeof(header));
   if (MPI_Isend(g->sendbuf, _braid_HEADER_BYTES + size, MPI_BYTE, g->right, _braid_Tag(level), core->comm,
                 &g->sendreq) != MPI_SUCCESS)
      return _braid_Fail(core, BRAID_ERROR_MPI);
   _braid_TRACE(core, BRAID_TRACE_SEND, level, -1, g->right, _braid_HEADER_BYTES + size);
   return 0;
}

/* Complete whatever is still in flight on a level. */
braid_Int
_braid_CommFinish(braid_Core core, braid_Int level)
{
   _braid_Grid *g = &core->grids[level];
   _braid_CommWaitRecv(core, level);
   if (g->sendreq != MPI_REQUEST_NULL) MPI_Wait(&g->sendreq, MPI_STATUS_IGNORE);
   return 0;
}

/*
 * Collective: after this, every rank knows whether any rank failed.  The failing rank keeps its own
 * code, the others get BRAID_ERROR_REMOTE, and all learn the (lowest) failing rank.  Errors that every
 * rank finds at once (a diverged residual) are set without this.
 */
braid_Int
_braid_CommAgreeOnError(braid_Core core)
{
   int mine[2], all[2];
   mine[0] = core->error_here ? 1 : 0;
   mine[1] = core->rank;
   if (MPI_Allreduce(mine, all, 1, MPI_2INT, MPI_MAXLOC, core->comm) != MPI_SUCCESS)
      return _braid_Fail(core, BRAID_ERROR_MPI);
   _braid_TRACE(core, BRAID_TRACE_REDUCE, -1, -1, -1, (braid_Int) sizeof(mine));
   if (all[0] == 1) {
      core->error_rank = all[1];
      _braid_Fail(core, BRAID_ERROR_REMOTE);
   }
   return core->error;
}
