#include "src/exec/host_executor.h"

#include "kernels/cpu_reduce.h"
#include "kernels/dtype.h"
#include "src/core/errors.h"
#include "src/exec/apply.h"
#include "src/exec/backoff.h"

namespace lockstep {

struct HostExecutor::Ctx {
  const OpInfo& op;
  const char* const* buffers;
  SliceKernels kernels;
  Deadline deadline;
  Clock::time_point nextPeerCheck;
};

HostExecutor::HostExecutor(int rank, std::vector<Link*> links, std::vector<std::string> names, size_t slotBytes,
                           std::chrono::milliseconds timeout, const std::atomic<bool>* aborted)
    : rank_(rank),
      nranks_(static_cast<int>(links.size())),
      links_(std::move(links)),
      names_(std::move(names)),
      slotBytes_(slotBytes),
      timeout_(timeout),
      aborted_(aborted) {}

void HostExecutor::run(const Schedule& schedule, std::span<char* const> buffers, const OpInfo& op) {
  const size_t elem = dataTypeSize(op.dtype);
  SliceKernels kernels{reduceKernels(op.dtype, op.op), elem, nranks_};
  Ctx ctx{op, buffers.data(), kernels, Deadline::after(timeout_), Clock::now()};
  lanes_.clear();
  for (size_t i = 0; i < schedule.lanes(); ++i)
    lanes_.emplace_back().walker = SliceWalker(schedule.lane(i), slotBytes_ / elem);

  Backoff backoff;
  for (;;) {
    bool done = true, moved = false;
    for (Lane& lane : lanes_) {
      if (lane.walker.done()) continue;
      moved |= advance(lane, ctx);
      done &= lane.walker.done();
    }
    if (done) break;
    if (moved) {
      backoff.reset();
      continue;
    }
    for (Link* l : links_) l->progress();
    backoff.pause();
    if (backoff.sleeping()) slowChecks(ctx);
  }
  flush(ctx);
}

bool HostExecutor::advance(Lane& lane, Ctx& ctx) {
  bool moved = false;
  while (!lane.walker.done()) {
    const Step& step = lane.walker.step();
    const size_t n = lane.walker.count(), bytes = n * ctx.kernels.elem;
    if (primRecvs(step.prim) && !lane.in.data) {
      lane.in = links_[step.recvPeer]->tryRecv();
      if (!lane.in.data) return moved;
      if (lane.in.bytes != bytes) {
        throw RemoteError(step.recvPeer, std::string(ctx.op.kind) + " #" + std::to_string(ctx.op.seq) + ": " +
                                             names_[step.recvPeer] + " sent " + std::to_string(lane.in.bytes) +
                                             " bytes where rank " + std::to_string(rank_) + " expects " +
                                             std::to_string(bytes) + " (do the ranks call the same operation?)");
      }
    }
    if (primSends(step.prim) && !lane.slot) {
      lane.slot = links_[step.sendPeer]->trySendSlot();
      if (!lane.slot) return moved;
    }
    applyPrim(step, lane.walker.first(), n, ctx.buffers, lane.in.data, lane.slot, ctx.kernels);
    if (lane.in.data) links_[step.recvPeer]->releaseRecv();
    if (lane.slot) links_[step.sendPeer]->postSend(bytes);
    lane.in = Message{};
    lane.slot = nullptr;
    lane.walker.advance();
    moved = true;
  }
  return moved;
}

void HostExecutor::slowChecks(Ctx& ctx) {
  if (aborted_ && aborted_->load()) {
    throw Aborted(std::string(ctx.op.kind) + " #" + std::to_string(ctx.op.seq) + ": communicator aborted");
  }
  auto now = Clock::now();
  const bool expired = now >= ctx.deadline.at(), checkPeers = now >= ctx.nextPeerCheck;
  if (!expired && !checkPeers) return;
  ctx.nextPeerCheck = now + std::chrono::milliseconds(100);
  for (Lane& lane : lanes_) {
    if (lane.walker.done()) continue;
    const Step& step = lane.walker.step();
    bool waitsForData = primRecvs(step.prim) && !lane.in.data;
    int peer = waitsForData ? step.recvPeer : step.sendPeer;
    if (peer < 0) continue;
    if (links_[peer]->peerGone()) {
      // It may have posted what we wait for just before it exited: look once more.
      if (advance(lane, ctx)) continue;
      throw RemoteError(peer, std::string(ctx.op.kind) + " #" + std::to_string(ctx.op.seq) + ": " + names_[peer] +
                                  " is gone (process exited or connection closed) while rank " + std::to_string(rank_) +
                                  " waited for " + (waitsForData ? "its data" : "it to free a slot"));
    }
    if (expired) timeout(ctx, waitsForData ? "data from " + names_[peer] : names_[peer] + " to free a slot");
  }
  if (expired) timeout(ctx, "its own work (no lane is waiting on a peer)");
}

void HostExecutor::flush(Ctx& ctx) {
  Backoff backoff;
  for (;;) {
    bool done = true;
    for (Link* l : links_) done = l->progress() && done;
    if (done) return;
    backoff.pause();
    if (backoff.sleeping() && ctx.deadline.expired()) timeout(ctx, "peers to accept the last sends");
  }
}

[[noreturn]] void HostExecutor::timeout(const Ctx& ctx, const std::string& waitingFor) {
  throw Timeout(std::string(ctx.op.kind) + " #" + std::to_string(ctx.op.seq) + " (" + std::to_string(ctx.op.count) +
                " x " + dataTypeName(ctx.op.dtype) + ") timed out after " + std::to_string(timeout_.count()) +
                " ms on rank " + std::to_string(rank_) + ", waiting for " + waitingFor);
}

}  // namespace lockstep
