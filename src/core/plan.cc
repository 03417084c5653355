#include <algorithm>

#include "kernels/dtype.h"
#include "src/algo/chain.h"
#include "src/algo/direct.h"
#include "src/algo/ring.h"
#include "src/core/work.h"
#include "src/exec/backoff.h"

namespace lockstep {

const char* opKindName(OpKind kind) {
  switch (kind) {
    case OpKind::kAllReduce:
      return "allreduce";
    case OpKind::kReduceScatter:
      return "reducescatter";
    case OpKind::kAllGather:
      return "allgather";
    case OpKind::kBroadcast:
      return "broadcast";
    case OpKind::kReduce:
      return "reduce";
    case OpKind::kSend:
      return "send";
    case OpKind::kRecv:
      return "recv";
    case OpKind::kAllToAll:
      return "alltoall";
    case OpKind::kBarrier:
      return "barrier";
  }
  return "?";
}

bool waitWork(const Work& w, Deadline deadline) {
  Backoff backoff;
  while (!w.done.load(std::memory_order_acquire)) {
    backoff.pause();
    if (backoff.sleeping() && deadline.expired()) return w.done.load(std::memory_order_acquire);
  }
  return true;
}

namespace {
const char* algorithmOf(OpKind kind) {
  switch (kind) {
    case OpKind::kBroadcast:
    case OpKind::kReduce:
      return "chain";
    case OpKind::kSend:
    case OpKind::kRecv:
    case OpKind::kAllToAll:
      return "direct";
    default:
      return "ring";
  }
}
}  // namespace

void planOp(const OpDesc& op, int rank, int nranks, Work* w) {
  Fingerprint fp;
  fp.count = op.count;
  fp.root = op.kind == OpKind::kBroadcast || op.kind == OpKind::kReduce ? op.root : -1;
  fp.kind = static_cast<uint8_t>(op.kind);
  fp.dtype = static_cast<uint8_t>(op.dtype);
  fp.op = op.kind == OpKind::kAllReduce || op.kind == OpKind::kReduceScatter || op.kind == OpKind::kReduce
              ? static_cast<uint8_t>(op.op)
              : 0;
  w->info = OpInfo{opKindName(op.kind), algorithmOf(op.kind), fp, op.dtype, op.op, op.count};
  w->buffers = {const_cast<char*>(static_cast<const char*>(op.send)), static_cast<char*>(op.recv)};
  Schedule* s = &w->schedule;
  switch (op.kind) {
    case OpKind::kAllReduce:
      ringAllReduce(rank, nranks, op.count, s);
      break;
    case OpKind::kReduceScatter:
      ringReduceScatter(rank, nranks, op.count, s);
      break;
    case OpKind::kAllGather:
      ringAllGather(rank, nranks, op.count, s);
      break;
    case OpKind::kBroadcast:
      chainBroadcast(rank, nranks, op.root, op.count, s);
      break;
    case OpKind::kReduce:
      chainReduce(rank, nranks, op.root, op.count, s);
      break;
    case OpKind::kAllToAll:
      directAllToAll(rank, nranks, op.count, s);
      break;
    case OpKind::kSend:
    case OpKind::kRecv:
      planPointToPoint({&op, 1}, rank, nranks, w);
      break;
    case OpKind::kBarrier:
      // A one-byte all-reduce: nobody gets the result before every rank has contributed.
      w->info.dtype = lockstepUint8;
      w->info.op = lockstepMax;
      w->info.fp.count = 1;
      w->buffers = {reinterpret_cast<char*>(&w->scratch[0]), reinterpret_cast<char*>(&w->scratch[1])};
      ringAllReduce(rank, nranks, 1, s);
      break;
  }
}

void planPointToPoint(std::span<const OpDesc> ops, int rank, int nranks, Work* w) {
  size_t bytes = 0;
  std::vector<P2POp> p2p;
  w->buffers.clear();
  for (const OpDesc& op : ops) {
    size_t n = op.count * dataTypeSize(op.dtype);
    bytes += n;
    p2p.push_back(P2POp{op.kind == OpKind::kSend, op.root, static_cast<uint32_t>(w->buffers.size()), n});
    w->buffers.push_back(op.kind == OpKind::kSend ? const_cast<char*>(static_cast<const char*>(op.send))
                                                  : static_cast<char*>(op.recv));
  }
  // Every send/recv message carries the same fingerprint: the two ends post different calls by
  // design, and these ops take no collective sequence number.
  Fingerprint fp;
  fp.kind = static_cast<uint8_t>(OpKind::kSend);
  w->info = OpInfo{
      ops.size() == 1 ? opKindName(ops[0].kind) : "send/recv group", "direct", fp, lockstepUint8, lockstepSum, bytes};
  directP2P(rank, nranks, p2p, &w->schedule);
}

}  // namespace lockstep
