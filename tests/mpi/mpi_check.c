/* A Lockstep program that initialises through MPI (lockstep/mpi.h) and checks its collectives
 * against exact expected values and against MPI's own all-reduce. Run it under mpirun.
 * Exit 0 when every value is right; 1 on a wrong value; 2 on an error. */
#include <lockstep/mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(int rank, const char* what, lockstepResult_t r) {
  fprintf(stderr, "mpi_check rank %d: %s: %s: %s\n", rank, what, lockstepGetErrorString(r), lockstepGetLastError(NULL));
  return 2;
}

/* --null-comm-on-rank-0: rank 0 passes comm == NULL. Every rank must return lockstepInvalidArgument
 * at once (the others used to wait in MPI_Bcast for ever), rank 0 saying why. */
static int nullCommOnRankZero(int rank, int nranks) {
  lockstepComm_t comm = NULL;
  lockstepResult_t r = lockstepCommInitMpi(rank == 0 ? NULL : &comm, MPI_COMM_WORLD);
  int refused = r == lockstepInvalidArgument && comm == NULL, all = 0;
  if (rank == 0 && strstr(lockstepGetLastError(NULL), "comm is NULL") == NULL) {
    fprintf(stderr, "mpi_check rank 0: last error '%s'\n", lockstepGetLastError(NULL));
    refused = 0;
  }
  MPI_Allreduce(&refused, &all, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  if (rank == 0) printf("mpi_check: comm == NULL on rank 0: %d of %d ranks refused at once\n", all, nranks);
  MPI_Finalize();
  return all == nranks ? 0 : 1;
}

int main(int argc, char** argv) {
  lockstepComm_t comm;
  /* Before MPI_Init: refused, where MPI's default error handler used to end the job. */
  lockstepResult_t r = lockstepCommInitMpi(&comm, MPI_COMM_WORLD);
  if (r != lockstepInvalidUsage) return fail(-1, "lockstepCommInitMpi before MPI_Init was not refused", r);
  MPI_Init(&argc, &argv);
  int mpiRank, mpiSize;
  MPI_Comm_rank(MPI_COMM_WORLD, &mpiRank);
  MPI_Comm_size(MPI_COMM_WORLD, &mpiSize);
  if (argc > 1 && strcmp(argv[1], "--null-comm-on-rank-0") == 0) return nullCommOnRankZero(mpiRank, mpiSize);
  r = lockstepCommInitMpi(&comm, MPI_COMM_WORLD);
  if (r != lockstepSuccess) return fail(mpiRank, "lockstepCommInitMpi", r);
  int rank = -1, nranks = -1;
  lockstepCommUserRank(comm, &rank);
  lockstepCommCount(comm, &nranks);
  long wrong = 0;
  if (rank != mpiRank || nranks != mpiSize) {
    fprintf(stderr, "mpi_check: Lockstep rank %d of %d, MPI rank %d of %d\n", rank, nranks, mpiRank, mpiSize);
    wrong++;
  }

  /* All-reduce of int32 (exact: wraps) and float32 (small integers: exact in any order),
   * compared with MPI_Allreduce on the same input. */
  const size_t count = 1000003;
  int32_t* in = malloc(count * sizeof(int32_t));
  int32_t* out = malloc(count * sizeof(int32_t));
  int32_t* ref = malloc(count * sizeof(int32_t));
  float* fin = malloc(count * sizeof(float));
  float* fout = malloc(count * sizeof(float));
  for (size_t i = 0; i < count; i++) {
    in[i] = (int32_t)(i * 2654435761u + (uint32_t)rank * 40503u);
    fin[i] = (float)((i + (size_t)rank) % 1024);
  }
  r = lockstepAllReduce(in, out, count, lockstepInt32, lockstepSum, comm, NULL);
  if (r != lockstepSuccess) return fail(rank, "allreduce int32", r);
  MPI_Allreduce(in, ref, (int)count, MPI_INT32_T, MPI_SUM, MPI_COMM_WORLD);
  for (size_t i = 0; i < count; i++) wrong += out[i] != ref[i];
  r = lockstepAllReduce(fin, fout, count, lockstepFloat32, lockstepSum, comm, NULL);
  if (r != lockstepSuccess) return fail(rank, "allreduce float32", r);
  for (size_t i = 0; i < count; i++) {
    double want = 0;
    for (int q = 0; q < nranks; q++) want += (double)((i + (size_t)q) % 1024);
    wrong += fout[i] != (float)want;
  }

  /* All-gather: block q comes from rank q. */
  int32_t mine[3] = {rank * 10, rank * 10 + 1, rank * 10 + 2};
  int32_t* all = malloc(3 * (size_t)nranks * sizeof(int32_t));
  r = lockstepAllGather(mine, all, 3, lockstepInt32, comm, NULL);
  if (r != lockstepSuccess) return fail(rank, "allgather", r);
  for (int q = 0; q < nranks; q++) {
    for (int k = 0; k < 3; k++) wrong += all[q * 3 + k] != q * 10 + k;
  }

  long total = 0;
  MPI_Allreduce(&wrong, &total, 1, MPI_LONG, MPI_SUM, MPI_COMM_WORLD);
  if (rank == 0) printf("mpi_check: %d ranks initialised through MPI_Bcast of the id, %ld wrong\n", nranks, total);
  lockstepCommDestroy(comm);
  free(in), free(out), free(ref), free(fin), free(fout), free(all);
  MPI_Finalize();
  return total ? 1 : 0;
}
