#include <algorithm>
#include <cstring>

#include "kernels/dtype.h"
#include "src/algo/direct.h"
#include "src/algo/registry.h"
#include "src/core/work.h"
#include "src/exec/backoff.h"
#include "transport/fifo.h"

namespace lockstep {

void Work::ring() {
  bell.fetch_add(1, std::memory_order_relaxed);
  futexWakeAll(&bell);
}

bool waitWork(const Work& w, Deadline deadline) {
  const CallerWaits waiting;  // a background op's waits may yield meanwhile (src/exec/backoff.h)
  Backoff backoff;
  // Sleeps with the other side of markDone's order: either this sees `done`, or markDone sees
  // the sleeper and rings after `seen` was read, so the futex does not wait.
  auto sleep = [&](long ns) {
    const uint32_t seen = w.bell.load(std::memory_order_relaxed);
    w.sleepers.fetch_add(1, std::memory_order_seq_cst);
    if (!w.done.load(std::memory_order_seq_cst)) futexWait(&w.bell, seen, ns);
    w.sleepers.fetch_sub(1, std::memory_order_relaxed);
  };
  while (!w.done.load(std::memory_order_acquire)) {
    backoff.pause(sleep);
    if (backoff.sleeping() && deadline.expired()) return w.done.load(std::memory_order_acquire);
  }
  return true;
}

void planOp(const OpDesc& op, int rank, int nranks, Algorithm algorithm, Work* w, const RingOrder* order) {
  if (isPointToPoint(op.kind)) return planPointToPoint({&op, 1}, rank, nranks, w);
  Fingerprint fp;
  fp.count = op.count;
  fp.root = op.kind == OpKind::kBroadcast || op.kind == OpKind::kReduce ? op.root : -1;
  fp.kind = static_cast<uint8_t>(op.kind);
  fp.dtype = static_cast<uint8_t>(op.dtype);
  fp.op = op.kind == OpKind::kAllReduce || op.kind == OpKind::kReduceScatter || op.kind == OpKind::kReduce
              ? static_cast<uint8_t>(op.op)
              : 0;
  fp.algorithm = static_cast<uint8_t>(algorithm);
  w->info = OpInfo{opKindName(op.kind), algorithmName(algorithm), fp, op.dtype, op.op, op.count};
  size_t count = op.count;
  if (op.kind == OpKind::kBarrier) {
    // A one-byte all-reduce: nobody gets the result before every rank has contributed.
    w->info.dtype = lockstepUint8;
    w->info.op = lockstepMax;
    w->info.fp.count = count = 1;
  }
  if (order != nullptr && !order->isIdentity() && followsRing(algorithm)) {
    // Built at this rank's ring position (and the root's), then translated back to ranks.
    const int root = op.root >= 0 ? order->positionOf[op.root] : op.root;
    buildSchedule(algorithm, op.kind, order->positionOf[rank], nranks, count, root, &w->schedule);
    toRankSpace(*order, op.kind, count, &w->schedule);
  } else {
    buildSchedule(algorithm, op.kind, rank, nranks, count, op.root, &w->schedule);
  }
  w->peers = peersOf(w->schedule);
  bindBuffers(op, rank, nranks, algorithm, w);
}

namespace {

// Whether a schedule reads or writes the op's output buffer.
bool usesOutput(const Schedule& s) {
  for (size_t i = 0; i < s.lanes(); ++i) {
    for (const Step& step : s.lane(i)) {
      if (step.src == kOutput || (primWrites(step.prim) && step.dst == kOutput)) return true;
    }
  }
  return false;
}

}  // namespace

void bindBuffers(const OpDesc& op, int rank, int nranks, Algorithm algorithm, Work* w) {
  w->buffers = {const_cast<char*>(static_cast<const char*>(op.send)), static_cast<char*>(op.recv)};
  w->stagedFrom = nullptr;
  w->stagingBytes = w->partialsBytes = 0;
  if (op.kind == OpKind::kBarrier) {
    w->buffers = {reinterpret_cast<char*>(&w->scratch[0]), reinterpret_cast<char*>(&w->scratch[1])};
    return;
  }
  const size_t count = op.count;
  if (op.kind == OpKind::kReduce && rank != op.root && usesOutput(w->schedule)) {
    // Only the root's recvbuff is the caller's to have written (others may pass anything, NULL
    // included, as in NCCL). A tree node with two children combines the first into its output
    // before the second: on other ranks that output is a buffer of the Work's own.
    w->partialsBytes = count * dataTypeSize(w->info.dtype);
    w->buffers[kOutput] = nullptr;
  }
  // The one-shot and rank-ordered algorithms overwrite parts of the output while other parts of
  // the input are still to be sent or combined: when the two overlap (in place, or a
  // reduce-scatter whose output is its own block of the input), they work from a copy of the
  // input. The copy is taken when the op starts (Communicator::execute), not here: an op of a
  // group, or one queued behind others, is planned before the ops ahead of it have written the
  // buffer it reads (for a call ordered with a CUDA stream, the input exists once the stream
  // reaches it). A non-root's reduce never writes the caller's output, so it needs none.
  const bool staged = algorithm == Algorithm::kDirect || algorithm == Algorithm::kOrdered;
  const bool writesOutput = !(op.kind == OpKind::kReduce && rank != op.root);
  size_t bytes = count * dataTypeSize(w->info.dtype);
  const size_t inBytes = op.kind == OpKind::kReduceScatter ? bytes * static_cast<size_t>(nranks) : bytes;
  const char *in = w->buffers[kInput], *outp = w->buffers[kOutput];
  const bool overlap = in != nullptr && outp != nullptr && in < outp + bytes && outp < in + inBytes;
  if (staged && writesOutput && overlap && count > 0 && op.kind != OpKind::kAllToAll) {
    w->stagingBytes = inBytes;
    w->stagedFrom = w->buffers[kInput];
    w->buffers[kInput] = nullptr;
  }
}

void allocateOwnBuffers(Work* w, int rank) {
  // A failure here once left the peers waiting in the op, then blamed the rank's departure
  // (helper-81); thrown from the op, it reaches them as the rank's failure.
  try {
    if (w->partialsBytes) {
      w->partials.resize(w->partialsBytes);  // capacity kept across calls on a reused Work
      w->buffers[kOutput] = w->partials.data();
    }
    if (w->stagedFrom) {
      w->staging.resize(w->stagingBytes);
      w->buffers[kInput] = w->staging.data();
    }
  } catch (const std::bad_alloc&) {
    throw Error(lockstepSystemError,
                std::string(w->info.label()) + ": rank " + std::to_string(rank) + " is out of memory for " +
                    std::to_string(w->partialsBytes + w->stagingBytes) + " bytes of its own (" +
                    (w->stagedFrom ? "a copy of the input, which " + std::string(w->info.algorithm) + " needs in place"
                                   : std::string("a non-root's partial results")) +
                    ")");
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
  fp.algorithm = static_cast<uint8_t>(Algorithm::kDirect);
  w->info = OpInfo{
      ops.size() == 1 ? opKindName(ops[0].kind) : kSendRecvGroup, "direct", fp, lockstepUint8, lockstepSum, bytes};
  directP2P(rank, nranks, p2p, &w->schedule);
  w->peers = peersOf(w->schedule);
}

}  // namespace lockstep
