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
 * If rank 0 cannot create the id, every rank returns that error (lockstepGetLastError says why
 * on rank 0). An MPI failure returns lockstepSystemError on the ranks that see it.
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
  int rank = 0, nranks = 0;
  memset(&msg, 0, sizeof(msg));
  if (comm == NULL) return lockstepInvalidArgument;
  *comm = NULL;
  if (MPI_Comm_rank(mpiComm, &rank) != MPI_SUCCESS || MPI_Comm_size(mpiComm, &nranks) != MPI_SUCCESS) {
    return lockstepSystemError;
  }
  msg.result = lockstepSuccess;
  if (rank == 0) msg.result = (int)lockstepGetUniqueId(&msg.id);
  if (MPI_Bcast(&msg, (int)sizeof(msg), MPI_BYTE, 0, mpiComm) != MPI_SUCCESS) return lockstepSystemError;
  if (msg.result != lockstepSuccess) return (lockstepResult_t)msg.result;
  return lockstepCommInitRank(comm, nranks, msg.id, rank);
}

#ifdef __cplusplus
}
#endif

#endif /* LOCKSTEP_MPI_H_ */
