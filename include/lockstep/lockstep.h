/*
 * Lockstep: collective communication for data-parallel training.
 *
 * This header is the library's only public contract (a C ABI). It is shaped like NCCL's: a unique
 * id created on one rank and handed to the others, a communicator per rank, and collectives that
 * take a stream. For host memory, stream == NULL means the call returns once the result is in
 * recvbuff. With CUDA device buffers (or any buffers and a non-NULL stream) the call is
 * stream-ordered, as in NCCL: it is queued behind the work already on the stream (NULL: the
 * legacy default stream), returns at once, and the result is in recvbuff once the stream has
 * passed it; failures are reported by lockstepCommGetAsyncError.
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

/* In C++ the enums get int as their fixed underlying type: any int a caller passes (a bad dtype,
 * say) is then a valid value to check and reject, not undefined behaviour. Same size as in C. */
#ifdef __cplusplus
#define LOCKSTEP_ENUM enum : int
#else
#define LOCKSTEP_ENUM enum
#endif

#ifdef __cplusplus
extern "C" {
#endif

#define LOCKSTEP_MAJOR 0
#define LOCKSTEP_MINOR 2
#define LOCKSTEP_PATCH 0
/* Version as one integer, like NCCL_VERSION_CODE: major * 10000 + minor * 100 + patch. */
#define LOCKSTEP_VERSION_CODE (LOCKSTEP_MAJOR * 10000 + LOCKSTEP_MINOR * 100 + LOCKSTEP_PATCH)

#define LOCKSTEP_UNIQUE_ID_BYTES 128

typedef LOCKSTEP_ENUM{lockstepSuccess = 0,
                      lockstepSystemError = 1,     /* a system call failed (errno in the message) */
                      lockstepInternalError = 2,   /* a bug in Lockstep */
                      lockstepInvalidArgument = 3, /* a bad argument: null buffer, bad dtype, ... */
                      lockstepInvalidUsage = 4,    /* a valid argument used in the wrong way or state */
                      lockstepRemoteError = 5,     /* a peer died, disconnected or sent bad data */
                      lockstepInProgress = 6,      /* a non-blocking operation has not finished yet */
                      lockstepTimeout = 7,         /* a deadline expired; the message names the missing ranks */
                      lockstepMismatch = 8,        /* ranks disagree (version, config, or collective arguments) */
                      lockstepAborted = 9,         /* the communicator was aborted */
                      lockstepNumResults = 10} lockstepResult_t;

/* The data types and reduction ops have NCCL's values (ncclFloat32 == lockstepFloat32 == 7, ncclAvg ==
 * lockstepAvg == 4), so a program that maps its tensors' types through an NCCL helper and casts
 * reduces the type it means. The result codes are Lockstep's own. */
typedef LOCKSTEP_ENUM{lockstepInt8 = 0,     lockstepUint8 = 1,    lockstepInt32 = 2,       lockstepUint32 = 3,
                      lockstepInt64 = 4,    lockstepUint64 = 5,   lockstepFloat16 = 6,     lockstepFloat32 = 7,
                      lockstepFloat64 = 8,  lockstepBfloat16 = 9, lockstepFloat8e4m3 = 10, lockstepFloat8e5m2 = 11,
                      lockstepNumTypes = 12} lockstepDataType_t;

typedef LOCKSTEP_ENUM{lockstepSum = 0, lockstepProd = 1, lockstepMax = 2,
                      lockstepMin = 3, lockstepAvg = 4,  lockstepNumOps = 5} lockstepRedOp_t;

/* Opaque bytes: magic, version, the root's address and port, and a 128-bit secret. */
typedef struct {
  char internal[LOCKSTEP_UNIQUE_ID_BYTES];
} lockstepUniqueId;

typedef struct lockstepComm* lockstepComm_t;

/* A handle on a non-blocking operation (the lockstepI* calls), completed with lockstepTest or
 * lockstepWait like MPI_Request. */
typedef struct lockstepRequest* lockstepRequest_t;

/* The color that makes lockstepCommSplit return NULL for this rank. */
#define LOCKSTEP_SPLIT_NOCOLOR (-1)

/* The CUDA stream type, kept opaque so this header needs no CUDA headers. */
typedef void* lockstepStream_t;

/* Writes LOCKSTEP_VERSION_CODE of the loaded library. */
LOCKSTEP_API lockstepResult_t lockstepGetVersion(int* version);

/* Creates an id and starts a rendezvous service for it in this process (a background thread that
 * lives until all ranks have connected, or LOCKSTEP_TIMEOUT after the first rank arrived; an id no
 * rank ever uses keeps it for the process's life). Hand the id to every rank by any means: a file,
 * MPI_Bcast, or LOCKSTEP_UNIQUE_ID as hex (lockstepUniqueIdToHex). */
LOCKSTEP_API lockstepResult_t lockstepGetUniqueId(lockstepUniqueId* uniqueId);

/* Hex form of an id (2 * LOCKSTEP_UNIQUE_ID_BYTES characters plus a NUL), and back. */
LOCKSTEP_API lockstepResult_t lockstepUniqueIdToHex(const lockstepUniqueId* uniqueId, char* hex, size_t hexBytes);
LOCKSTEP_API lockstepResult_t lockstepUniqueIdFromHex(const char* hex, lockstepUniqueId* uniqueId);

/* Collective over nranks ranks: every rank calls it with the same id and its own rank. Inside a
 * group (as with NCCL, one thread creating several ranks: GroupStart, InitRank for each, GroupEnd)
 * it returns at once with *comm set; the outermost GroupEnd initialises the group's communicators
 * all at once, before its other calls, and returns the first failure. Until then *comm refuses
 * every call; after a failed init, every call but destroy and abort (lockstepGetLastError says
 * why). A failed call in the group, or GroupAbandon, fails the inits too. */
LOCKSTEP_API lockstepResult_t lockstepCommInitRank(lockstepComm_t* comm, int nranks, lockstepUniqueId commId, int rank);

/* Like lockstepCommInitRank, with the rank, size and rendezvous taken from the environment:
 * LOCKSTEP_RANK, LOCKSTEP_WORLD_SIZE, and either LOCKSTEP_UNIQUE_ID (hex) or LOCKSTEP_ROOT=host:port
 * (rank 0 serves the rendezvous there). lockstep-run sets these; a launcher's own variables
 * (torchrun, Slurm, OpenMPI, PMI, PMIx) give the rank and size too (README, Launching). Inside a
 * group it is deferred to the group's end as lockstepCommInitRank is. */
LOCKSTEP_API lockstepResult_t lockstepCommInitFromEnv(lockstepComm_t* comm);

/* Waits for outstanding work, then frees the communicator. Never hangs: waits have deadlines.
 * NULL (what a failed init leaves) is accepted and does nothing, as with NCCL; so for abort.
 * Refused (lockstepInvalidUsage, and the group discarded) inside an open group that has calls on
 * it; lockstepCommAbort is not. */
LOCKSTEP_API lockstepResult_t lockstepCommDestroy(lockstepComm_t comm);

/* Stops outstanding work and frees the communicator without waiting for peers. Called from
 * another thread while a destroy of comm waits for its calls or queued work, it makes that
 * destroy quick (host work fails with lockstepAborted, queued kernels stop) and returns; the
 * destroy frees it. The communicators split from comm, and theirs, are aborted too: their work
 * fails with lockstepAborted, and each is still destroyed by its owner. */
LOCKSTEP_API lockstepResult_t lockstepCommAbort(lockstepComm_t comm);

/* The first error this communicator or its group has seen, including errors of non-blocking
 * operations and failures noticed between calls (a peer died, left, or called a different
 * collective): lockstepSuccess while healthy. On a communicator this rank aborted it returns
 * lockstepAborted, as every other call does; its peers see lockstepRemoteError naming it, once
 * they have finished the ops it completed. After an error, further collectives fail with it;
 * destroy the communicator. On a communicator initialised inside a group that has not ended (or
 * whose lockstepGroupEnd is building it), *asyncError is lockstepInProgress. */
LOCKSTEP_API lockstepResult_t lockstepCommGetAsyncError(lockstepComm_t comm, lockstepResult_t* asyncError);

LOCKSTEP_API lockstepResult_t lockstepCommCount(const lockstepComm_t comm, int* count);
LOCKSTEP_API lockstepResult_t lockstepCommUserRank(const lockstepComm_t comm, int* rank);

/* A static description of a result code. */
LOCKSTEP_API const char* lockstepGetErrorString(lockstepResult_t result);

/* The message of the last error raised on this thread (comm may be NULL); "" if none. A
 * lockstepCommGetAsyncError that reports a failure sets it to that failure's message. The
 * pointer is to this thread's own buffer: it stays valid for the thread's life and reads the
 * latest message (copy the text to keep one past the next failing call). */
LOCKSTEP_API const char* lockstepGetLastError(lockstepComm_t comm);

/* Reduces count elements across ranks; every rank receives the result, bit-identical on all
 * ranks. In place when sendbuff == recvbuff. */
LOCKSTEP_API lockstepResult_t lockstepAllReduce(const void* sendbuff, void* recvbuff, size_t count,
                                                lockstepDataType_t datatype, lockstepRedOp_t op, lockstepComm_t comm,
                                                lockstepStream_t stream);

/* Returns once every rank has entered the barrier. */
LOCKSTEP_API lockstepResult_t lockstepBarrier(lockstepComm_t comm, lockstepStream_t stream);

/* Every rank contributes nranks*recvcount elements; rank r receives block r of the reduction.
 * In place when recvbuff == sendbuff + rank*recvcount elements. */
LOCKSTEP_API lockstepResult_t lockstepReduceScatter(const void* sendbuff, void* recvbuff, size_t recvcount,
                                                    lockstepDataType_t datatype, lockstepRedOp_t op,
                                                    lockstepComm_t comm, lockstepStream_t stream);

/* Every rank contributes sendcount elements; every rank receives all nranks blocks, in rank
 * order. In place when sendbuff == recvbuff + rank*sendcount elements. */
LOCKSTEP_API lockstepResult_t lockstepAllGather(const void* sendbuff, void* recvbuff, size_t sendcount,
                                                lockstepDataType_t datatype, lockstepComm_t comm,
                                                lockstepStream_t stream);

/* The root's sendbuff reaches every rank's recvbuff (sendbuff is only read on the root). In place
 * when sendbuff == recvbuff. */
LOCKSTEP_API lockstepResult_t lockstepBroadcast(const void* sendbuff, void* recvbuff, size_t count,
                                                lockstepDataType_t datatype, int root, lockstepComm_t comm,
                                                lockstepStream_t stream);

/* The reduction of every rank's sendbuff lands in the root's recvbuff (recvbuff is only written
 * on the root). In place when sendbuff == recvbuff. */
LOCKSTEP_API lockstepResult_t lockstepReduce(const void* sendbuff, void* recvbuff, size_t count,
                                             lockstepDataType_t datatype, lockstepRedOp_t op, int root,
                                             lockstepComm_t comm, lockstepStream_t stream);

/* Point to point. Outside a group a send returns once its data is handed to the transport, which
 * may mean waiting for the matching receive; inside a group, sends and receives never deadlock
 * whatever order each rank posts them in. The sizes (count x datatype size) must match. */
LOCKSTEP_API lockstepResult_t lockstepSend(const void* sendbuff, size_t count, lockstepDataType_t datatype, int peer,
                                           lockstepComm_t comm, lockstepStream_t stream);
LOCKSTEP_API lockstepResult_t lockstepRecv(void* recvbuff, size_t count, lockstepDataType_t datatype, int peer,
                                           lockstepComm_t comm, lockstepStream_t stream);

/* Block p (count elements) of sendbuff goes to rank p; block q of recvbuff comes from rank q.
 * The buffers must not overlap. */
LOCKSTEP_API lockstepResult_t lockstepAllToAll(const void* sendbuff, void* recvbuff, size_t count,
                                               lockstepDataType_t datatype, lockstepComm_t comm,
                                               lockstepStream_t stream);

/* Calls between GroupStart and GroupEnd (on any communicators of this thread) are recorded and
 * launched together by the outermost GroupEnd, which returns when the blocking ones are done.
 * Nothing blocks before GroupEnd; buffers must stay valid until then. Groups nest. Communicators
 * initialised in the group are built first (see lockstepCommInitRank); calls on them belong in a
 * later group. */
LOCKSTEP_API lockstepResult_t lockstepGroupStart(void);
LOCKSTEP_API lockstepResult_t lockstepGroupEnd(void);
/* Any call that fails inside a group discards the whole group: the outermost GroupEnd launches
 * nothing and returns that error, and the group's requests complete with it. GroupAbandon closes
 * one level as GroupEnd does and discards the group the same way, for a caller that hit an error
 * of its own in between (requests complete with lockstepInvalidUsage). */
LOCKSTEP_API lockstepResult_t lockstepGroupAbandon(void);

/* Collective over comm: ranks passing the same color form a new communicator, ranked by key (ties
 * by their rank in comm). color == LOCKSTEP_SPLIT_NOCOLOR takes part and gets *newcomm = NULL.
 * The new communicator is independent: it may be driven by another thread at the same time. */
LOCKSTEP_API lockstepResult_t lockstepCommSplit(lockstepComm_t comm, int color, int key, lockstepComm_t* newcomm);

/* Non-blocking forms, as MPI's MPI_I*: each returns at once with a request; the operation runs
 * on the communicator's progress thread, after earlier operations, while the caller works. The
 * buffers must stay untouched until the request completes. */
LOCKSTEP_API lockstepResult_t lockstepIallReduce(const void* sendbuff, void* recvbuff, size_t count,
                                                 lockstepDataType_t datatype, lockstepRedOp_t op, lockstepComm_t comm,
                                                 lockstepRequest_t* request);
LOCKSTEP_API lockstepResult_t lockstepIreduceScatter(const void* sendbuff, void* recvbuff, size_t recvcount,
                                                     lockstepDataType_t datatype, lockstepRedOp_t op,
                                                     lockstepComm_t comm, lockstepRequest_t* request);
LOCKSTEP_API lockstepResult_t lockstepIallGather(const void* sendbuff, void* recvbuff, size_t sendcount,
                                                 lockstepDataType_t datatype, lockstepComm_t comm,
                                                 lockstepRequest_t* request);
LOCKSTEP_API lockstepResult_t lockstepIbroadcast(const void* sendbuff, void* recvbuff, size_t count,
                                                 lockstepDataType_t datatype, int root, lockstepComm_t comm,
                                                 lockstepRequest_t* request);
LOCKSTEP_API lockstepResult_t lockstepIreduce(const void* sendbuff, void* recvbuff, size_t count,
                                              lockstepDataType_t datatype, lockstepRedOp_t op, int root,
                                              lockstepComm_t comm, lockstepRequest_t* request);
LOCKSTEP_API lockstepResult_t lockstepIsend(const void* sendbuff, size_t count, lockstepDataType_t datatype, int peer,
                                            lockstepComm_t comm, lockstepRequest_t* request);
LOCKSTEP_API lockstepResult_t lockstepIrecv(void* recvbuff, size_t count, lockstepDataType_t datatype, int peer,
                                            lockstepComm_t comm, lockstepRequest_t* request);
LOCKSTEP_API lockstepResult_t lockstepIallToAll(const void* sendbuff, void* recvbuff, size_t count,
                                                lockstepDataType_t datatype, lockstepComm_t comm,
                                                lockstepRequest_t* request);
LOCKSTEP_API lockstepResult_t lockstepIbarrier(lockstepComm_t comm, lockstepRequest_t* request);

/* MPI_Test: *done = 1 and the operation's result once it has finished (the request is then
 * freed and *request set to NULL); *done = 0 and lockstepSuccess while it runs. A NULL *request
 * counts as done. */
LOCKSTEP_API lockstepResult_t lockstepTest(lockstepRequest_t* request, int* done);

/* MPI_Wait with a deadline: waits up to timeoutMs (< 0: as long as the operation takes; it is
 * itself bounded by LOCKSTEP_TIMEOUT). Returns the operation's result and frees the request, or
 * lockstepInProgress if the deadline passed first (the request stays valid). Inside a group it
 * waits for operations launched before the group; one of the open group itself is a usage error
 * (it starts only at the outermost GroupEnd), and, like any failed call there, discards the group.
 * Reporting the operation's own failure, or a deadline that passed, does not discard it.
 * lockstepTest likewise. Any thread may wait or test, one at a time for a given request: a wait,
 * test or free while another thread waits for or tests it returns lockstepInvalidUsage. */
LOCKSTEP_API lockstepResult_t lockstepWait(lockstepRequest_t* request, int64_t timeoutMs);

/* *launched = 0 while the request's operation belongs to a group that is still open (it starts at
 * the outermost lockstepGroupEnd), 1 once it has been launched (or for a NULL request). Never fails
 * for a valid handle, so it is safe inside a group: what a wrapper asks before deciding to wait
 * for an operation or only to let go of its handle. */
LOCKSTEP_API lockstepResult_t lockstepRequestLaunched(lockstepRequest_t request, int* launched);

/* Frees a request without waiting (MPI_Request_free): the operation still runs to completion. */
LOCKSTEP_API lockstepResult_t lockstepRequestFree(lockstepRequest_t* request);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* LOCKSTEP_LOCKSTEP_H_ */
