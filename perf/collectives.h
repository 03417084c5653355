// The collectives as the perf drivers and tests see them through the public C API: the shape of
// each call, nccl-tests' size and busbw conventions, how to run it, and the exact data to check.
#pragma once

#include <cstddef>

#include "lockstep/lockstep.h"
#include "perf/pattern.h"
#include "src/algo/collective.h"

namespace lockstep::perf {

enum class Coll { kAllReduce, kReduceScatter, kAllGather, kBroadcast, kReduce, kSendRecv, kAllToAll };
constexpr Coll kAllColls[] = {Coll::kAllReduce, Coll::kReduceScatter, Coll::kAllGather, Coll::kBroadcast,
                              Coll::kReduce,    Coll::kSendRecv,      Coll::kAllToAll};

const char* collName(Coll c);
OpKind collKind(Coll c);  // the library's name for it (send/recv: kSend)
bool collReduces(Coll c);
bool collRooted(Coll c);
bool collHasInPlace(Coll c);

// Elements in the send and receive buffers for NCCL's `count` argument.
size_t sendElems(Coll c, size_t count, int nranks);
size_t recvElems(Coll c, size_t count, int nranks);
// nccl-tests' size column (bytes) and the count a size maps to.
size_t sizeBytes(Coll c, size_t count, int nranks, size_t elem);
size_t countForSize(Coll c, size_t bytes, int nranks, size_t elem);
// busbw = algbw * busFactor, as nccl-tests defines it per collective.
double busFactor(Coll c, int nranks);

// Runs one call: blocking when request is NULL, else non-blocking. kSendRecv is a ring exchange
// (send to the next rank, receive from the previous one) in a group.
lockstepResult_t runColl(Coll c, const void* send, void* recv, size_t count, lockstepDataType_t t, lockstepRedOp_t op,
                         int root, lockstepComm_t comm, lockstepRequest_t* request, lockstepStream_t stream = nullptr);

// Buffers for a call. In place, both point into one allocation of max(send, recv) elements laid
// out as NCCL's in-place form requires.
struct CollBuffers {
  void* send;
  void* recv;
};
CollBuffers collBuffers(Coll c, void* sendAlloc, void* recvAlloc, size_t count, int rank, int nranks, size_t elem,
                        bool inPlace);

// Writes this rank's input into send.
void fillInput(Coll c, const Pattern& p, void* send, size_t count, int rank, int nranks, int root);
// Elements of this rank's output that differ from the exact result (0 where the rank gets none).
size_t countWrong(Coll c, const Pattern& p, const void* recv, size_t count, int rank, int nranks, int root);

}  // namespace lockstep::perf
