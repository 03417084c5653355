#include "perf/collectives.h"

#include "kernels/dtype.h"

namespace lockstep::perf {

const char* collName(Coll c) {
  switch (c) {
    case Coll::kAllReduce:
      return "allreduce";
    case Coll::kReduceScatter:
      return "reducescatter";
    case Coll::kAllGather:
      return "allgather";
    case Coll::kBroadcast:
      return "broadcast";
    case Coll::kReduce:
      return "reduce";
    case Coll::kSendRecv:
      return "sendrecv";
    case Coll::kAllToAll:
      return "alltoall";
  }
  return "?";
}

OpKind collKind(Coll c) {
  switch (c) {
    case Coll::kAllReduce:
      return OpKind::kAllReduce;
    case Coll::kReduceScatter:
      return OpKind::kReduceScatter;
    case Coll::kAllGather:
      return OpKind::kAllGather;
    case Coll::kBroadcast:
      return OpKind::kBroadcast;
    case Coll::kReduce:
      return OpKind::kReduce;
    case Coll::kSendRecv:
      return OpKind::kSend;
    case Coll::kAllToAll:
      return OpKind::kAllToAll;
  }
  return OpKind::kAllReduce;
}

bool collReduces(Coll c) { return c == Coll::kAllReduce || c == Coll::kReduceScatter || c == Coll::kReduce; }
bool collRooted(Coll c) { return c == Coll::kBroadcast || c == Coll::kReduce; }
bool collHasInPlace(Coll c) { return c != Coll::kSendRecv && c != Coll::kAllToAll; }

size_t sendElems(Coll c, size_t count, int n) {
  return (c == Coll::kReduceScatter || c == Coll::kAllToAll) ? count * n : count;
}
size_t recvElems(Coll c, size_t count, int n) {
  return (c == Coll::kAllGather || c == Coll::kAllToAll) ? count * n : count;
}

size_t sizeBytes(Coll c, size_t count, int n, size_t elem) {
  bool whole = c == Coll::kReduceScatter || c == Coll::kAllGather || c == Coll::kAllToAll;
  return count * elem * (whole ? n : 1);
}
size_t countForSize(Coll c, size_t bytes, int n, size_t elem) {
  bool whole = c == Coll::kReduceScatter || c == Coll::kAllGather || c == Coll::kAllToAll;
  return bytes / elem / (whole ? n : 1);
}

double busFactor(Coll c, int n) {
  switch (c) {
    case Coll::kAllReduce:
      return 2.0 * (n - 1) / n;
    case Coll::kReduceScatter:
    case Coll::kAllGather:
    case Coll::kAllToAll:
      return static_cast<double>(n - 1) / n;
    default:
      return 1.0;
  }
}

lockstepResult_t runColl(Coll c, const void* send, void* recv, size_t count, lockstepDataType_t t, lockstepRedOp_t op,
                         int root, lockstepComm_t comm, lockstepRequest_t* request, lockstepStream_t stream) {
  switch (c) {
    case Coll::kAllReduce:
      return request ? lockstepIallReduce(send, recv, count, t, op, comm, request)
                     : lockstepAllReduce(send, recv, count, t, op, comm, stream);
    case Coll::kReduceScatter:
      return request ? lockstepIreduceScatter(send, recv, count, t, op, comm, request)
                     : lockstepReduceScatter(send, recv, count, t, op, comm, stream);
    case Coll::kAllGather:
      return request ? lockstepIallGather(send, recv, count, t, comm, request)
                     : lockstepAllGather(send, recv, count, t, comm, stream);
    case Coll::kBroadcast:
      return request ? lockstepIbroadcast(send, recv, count, t, root, comm, request)
                     : lockstepBroadcast(send, recv, count, t, root, comm, stream);
    case Coll::kReduce:
      return request ? lockstepIreduce(send, recv, count, t, op, root, comm, request)
                     : lockstepReduce(send, recv, count, t, op, root, comm, stream);
    case Coll::kAllToAll:
      return request ? lockstepIallToAll(send, recv, count, t, comm, request)
                     : lockstepAllToAll(send, recv, count, t, comm, stream);
    case Coll::kSendRecv: {
      int rank, n;
      lockstepCommUserRank(comm, &rank);
      lockstepCommCount(comm, &n);
      lockstepResult_t r = lockstepGroupStart();
      if (r != lockstepSuccess) return r;
      lockstepRequest_t* second = request;
      lockstepRequest_t dummy = nullptr;
      // Two requests would be needed for two calls; a group fuses them into one Work, so the
      // receive's request covers both and the send's is freed.
      if (request) {
        r = lockstepIsend(send, count, t, (rank + 1) % n, comm, &dummy);
        if (r == lockstepSuccess) r = lockstepIrecv(recv, count, t, (rank + n - 1) % n, comm, second);
      } else {
        r = lockstepSend(send, count, t, (rank + 1) % n, comm, stream);
        if (r == lockstepSuccess) r = lockstepRecv(recv, count, t, (rank + n - 1) % n, comm, stream);
      }
      lockstepResult_t e = lockstepGroupEnd();
      if (dummy) lockstepRequestFree(&dummy);
      return r != lockstepSuccess ? r : e;
    }
  }
  return lockstepInvalidArgument;
}

CollBuffers collBuffers(Coll c, void* sendAlloc, void* recvAlloc, size_t count, int rank, int n, size_t elem,
                        bool inPlace) {
  if (!inPlace) return {sendAlloc, recvAlloc};
  char* base = static_cast<char*>(recvAlloc);
  switch (c) {
    case Coll::kReduceScatter:
      return {base, base + static_cast<size_t>(rank) * count * elem};
    case Coll::kAllGather:
      return {base + static_cast<size_t>(rank) * count * elem, base};
    default:
      return {base, base};
  }
}

void fillInput(Coll c, const Pattern& p, void* send, size_t count, int rank, int n, int root) {
  switch (c) {
    case Coll::kAllGather:
      return p.fill(send, count, rank, static_cast<size_t>(rank) * count);
    case Coll::kBroadcast:
      if (rank == root) p.fill(send, count, rank);
      return;
    default:
      return p.fill(send, sendElems(c, count, n), rank);
  }
}

size_t countWrong(Coll c, const Pattern& p, const void* recv, size_t count, int rank, int n, int root) {
  auto block = [&](int q) { return static_cast<const char*>(recv) + static_cast<size_t>(q) * count * p.elemBytes(); };
  size_t wrong = 0;
  switch (c) {
    case Coll::kAllReduce:
      return p.countWrong(recv, count);
    case Coll::kReduceScatter:
      return p.countWrong(recv, count, static_cast<size_t>(rank) * count);
    case Coll::kReduce:
      return rank == root ? p.countWrong(recv, count) : 0;
    case Coll::kBroadcast:
      return p.countWrongFrom(recv, count, root);
    case Coll::kSendRecv:
      return p.countWrongFrom(recv, count, (rank + n - 1) % n);
    case Coll::kAllGather:
      for (int q = 0; q < n; ++q) wrong += p.countWrongFrom(block(q), count, q, static_cast<size_t>(q) * count);
      return wrong;
    case Coll::kAllToAll:
      for (int q = 0; q < n; ++q) wrong += p.countWrongFrom(block(q), count, q, static_cast<size_t>(rank) * count);
      return wrong;
  }
  return count;
}

}  // namespace lockstep::perf
