/* Lockstep over an MPI job: MPI carries the unique id, and nothing else.
 *
 *   #include <mpi.h>
 *   #include <lockstep/mpi.h>
 *   MPI_Init(&argc, &argv);
 *   lockstepComm_t comm;
 *   lockstepCommInitMpi(&comm, MPI_COMM_WORLD);   // rank and size are the MPI communicator's
 *
 * Rank 0 of the MPI communicator creates the unique id (this starts the rendezvous in that
 * process), MPI_Bcast sends it to the others, and every rank calls lockstepCommInitRank. After
 * that Lockstep never calls MPI: collectives run over Lockstep's own transports.
 *
 * Header-only, so liblockstep has no MPI dependency: compile the program with the MPI wrapper
 * (mpicc / mpicxx) and link -llockstep as usual. Collective over `mpiComm`: every rank calls it.
 * If rank 0 cannot create the id, or is given comm == NULL, every rank returns that error at once
 * (lockstepGetLastError says why on rank 0); a NULL comm on another rank fails there, and its peers
 * time out naming it. Called before MPI_Init or after MPI_Finalize it returns lockstepInvalidUsage;
 * an MPI failure returns lockstepSystemError on the ranks that see it (under MPI's default error
 * handler, MPI ends the job first). These three come from this header, not the library: they
 * leave lockstepGetLastError as it was.
 */
#ifndef LOCKSTEP_MPI_H_
#define LOCKSTEP_MPI_H_

#include <mpi.h>
#include <string.h>

#include "lockstep/lockstep.h"

#ifdef __cplusplus
extern "C" {
#endif

static inline lockstepResult_t lockstepCommInitMpi(lockstepComm_t* comm, MPI_Comm mpiComm) {
  /* The id travels with rank 0's result, so a failure there reaches every rank. */
  struct {
    int result;
    lockstepUniqueId id;
  } msg;
  int rank = 0, nranks = 0, initialised = 0, finalised = 0;
  memset(&msg, 0, sizeof(msg));
  if (comm != NULL) *comm = NULL;
  /* Asked first: MPI's default error handler ends the job on a call before MPI_Init. */
  if (MPI_Initialized(&initialised) != MPI_SUCCESS || MPI_Finalized(&finalised) != MPI_SUCCESS) {
    return lockstepSystemError;
  }
  if (!initialised || finalised) return lockstepInvalidUsage;
  if (MPI_Comm_rank(mpiComm, &rank) != MPI_SUCCESS || MPI_Comm_size(mpiComm, &nranks) != MPI_SUCCESS) {
    return lockstepSystemError;
  }
  /* A NULL comm still takes part in the broadcast: returning before it left the other ranks in
   * MPI_Bcast, which has no deadline. On rank 0 it fails every rank at once. */
  msg.result = lockstepSuccess;
  if (rank == 0) msg.result = comm == NULL ? (int)lockstepInvalidArgument : (int)lockstepGetUniqueId(&msg.id);
  if (MPI_Bcast(&msg, (int)sizeof(msg), MPI_BYTE, 0, mpiComm) != MPI_SUCCESS) return lockstepSystemError;
  /* Through the library, so that lockstepGetLastError says "comm is NULL". */
  if (comm == NULL) return lockstepCommInitRank(NULL, nranks, msg.id, rank);
  if (msg.result != lockstepSuccess) return (lockstepResult_t)msg.result;
  return lockstepCommInitRank(comm, nranks, msg.id, rank);
}

#ifdef __cplusplus
}
#endif

#endif /* LOCKSTEP_MPI_H_ */
