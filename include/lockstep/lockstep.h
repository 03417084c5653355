/*
 * Lockstep: collective communication for data-parallel training.
 *
 * This header is the library's only public contract (a C ABI). It is shaped like NCCL's: a unique
 * id created on one rank and handed to the others, a communicator per rank, and collectives that
 * take a stream. For host memory, stream == NULL means the call returns once the result is in
 * recvbuff.
 *
 * Every function returns a lockstepResult_t; on failure, lockstepGetLastError() says why, naming
 * the rank, host or argument at fault.
 */
#ifndef LOCKSTEP_LOCKSTEP_H_
#define LOCKSTEP_LOCKSTEP_H_

#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__)
#define LOCKSTEP_API __attribute__((visibility("default")))
#else
#define LOCKSTEP_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

#define LOCKSTEP_MAJOR 0
#define LOCKSTEP_MINOR 1
#define LOCKSTEP_PATCH 0
/* Version as one integer, like NCCL_VERSION_CODE: major * 10000 + minor * 100 + patch. */
#define LOCKSTEP_VERSION_CODE (LOCKSTEP_MAJOR * 10000 + LOCKSTEP_MINOR * 100 + LOCKSTEP_PATCH)

#define LOCKSTEP_UNIQUE_ID_BYTES 128

typedef enum {
  lockstepSuccess = 0,
  lockstepSystemError = 1,     /* a system call failed (errno in the message) */
  lockstepInternalError = 2,   /* a bug in Lockstep */
  lockstepInvalidArgument = 3, /* a bad argument: null buffer, bad dtype, ... */
  lockstepInvalidUsage = 4,    /* a valid argument used in the wrong way or state */
  lockstepRemoteError = 5,     /* a peer died, disconnected or sent bad data */
  lockstepInProgress = 6,      /* a non-blocking operation has not finished yet */
  lockstepTimeout = 7,         /* a deadline expired; the message names the missing ranks */
  lockstepMismatch = 8,        /* ranks disagree (version, config, or collective arguments) */
  lockstepAborted = 9,         /* the communicator was aborted */
  lockstepNumResults = 10
} lockstepResult_t;

typedef enum {
  lockstepInt8 = 0,
  lockstepUint8 = 1,
  lockstepInt32 = 2,
  lockstepUint32 = 3,
  lockstepInt64 = 4,
  lockstepUint64 = 5,
  lockstepFloat16 = 6,
  lockstepBfloat16 = 7,
  lockstepFloat32 = 8,
  lockstepFloat64 = 9,
  lockstepFloat8e4m3 = 10,
  lockstepFloat8e5m2 = 11,
  lockstepNumTypes = 12
} lockstepDataType_t;

typedef enum {
  lockstepSum = 0,
  lockstepProd = 1,
  lockstepMax = 2,
  lockstepMin = 3,
  lockstepAvg = 4,
  lockstepNumOps = 5
} lockstepRedOp_t;

/* Opaque bytes: magic, version, the root's address and port, and a 128-bit secret. */
typedef struct {
  char internal[LOCKSTEP_UNIQUE_ID_BYTES];
} lockstepUniqueId;

typedef struct lockstepComm* lockstepComm_t;

/* The CUDA stream type, kept opaque so this header needs no CUDA headers. */
typedef void* lockstepStream_t;

/* Writes LOCKSTEP_VERSION_CODE of the loaded library. */
LOCKSTEP_API lockstepResult_t lockstepGetVersion(int* version);

/* Creates an id and starts a rendezvous service for it in this process (a background thread that
 * lives until all ranks have connected or the timeout expires). Hand the id to every rank by any
 * means: a file, MPI_Bcast, or LOCKSTEP_UNIQUE_ID as hex (lockstepUniqueIdToHex). */
LOCKSTEP_API lockstepResult_t lockstepGetUniqueId(lockstepUniqueId* uniqueId);

/* Hex form of an id (2 * LOCKSTEP_UNIQUE_ID_BYTES characters plus a NUL), and back. */
LOCKSTEP_API lockstepResult_t lockstepUniqueIdToHex(const lockstepUniqueId* uniqueId, char* hex, size_t hexBytes);
LOCKSTEP_API lockstepResult_t lockstepUniqueIdFromHex(const char* hex, lockstepUniqueId* uniqueId);

/* Collective over nranks ranks: every rank calls it with the same id and its own rank. */
LOCKSTEP_API lockstepResult_t lockstepCommInitRank(lockstepComm_t* comm, int nranks, lockstepUniqueId commId, int rank);

/* Like lockstepCommInitRank, with the rank, size and rendezvous taken from the environment:
 * LOCKSTEP_RANK, LOCKSTEP_WORLD_SIZE, and either LOCKSTEP_UNIQUE_ID (hex) or LOCKSTEP_ROOT=host:port
 * (rank 0 serves the rendezvous there). lockstep-run sets these. */
LOCKSTEP_API lockstepResult_t lockstepCommInitFromEnv(lockstepComm_t* comm);

/* Waits for outstanding work, then frees the communicator. Never hangs: waits have deadlines. */
LOCKSTEP_API lockstepResult_t lockstepCommDestroy(lockstepComm_t comm);

/* Stops outstanding work and frees the communicator without waiting for peers. */
LOCKSTEP_API lockstepResult_t lockstepCommAbort(lockstepComm_t comm);

LOCKSTEP_API lockstepResult_t lockstepCommCount(const lockstepComm_t comm, int* count);
LOCKSTEP_API lockstepResult_t lockstepCommUserRank(const lockstepComm_t comm, int* rank);

/* A static description of a result code. */
LOCKSTEP_API const char* lockstepGetErrorString(lockstepResult_t result);

/* The message of the last error raised on this thread (comm may be NULL); "" if none. */
LOCKSTEP_API const char* lockstepGetLastError(lockstepComm_t comm);

/* Reduces count elements across ranks; every rank receives the result, bit-identical on all
 * ranks. In place when sendbuff == recvbuff. */
LOCKSTEP_API lockstepResult_t lockstepAllReduce(const void* sendbuff, void* recvbuff, size_t count,
                                                lockstepDataType_t datatype, lockstepRedOp_t op, lockstepComm_t comm,
                                                lockstepStream_t stream);

/* Returns once every rank has entered the barrier. */
LOCKSTEP_API lockstepResult_t lockstepBarrier(lockstepComm_t comm, lockstepStream_t stream);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* LOCKSTEP_LOCKSTEP_H_ */
