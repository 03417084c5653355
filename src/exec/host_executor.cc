#include "src/exec/host_executor.h"

#include <algorithm>
#include <cstring>

#include "kernels/cpu_reduce.h"
#include "kernels/dtype.h"
#include "src/algo/slicing.h"
#include "src/core/errors.h"
#include "src/exec/apply.h"
#include "src/exec/backoff.h"

namespace lockstep {

struct HostExecutor::Ctx {
  const OpInfo& op;
  const char* input;
  char* output;
  SliceKernels kernels;
  Deadline deadline;
  Clock::time_point nextPeerCheck;
};

HostExecutor::HostExecutor(int rank, std::vector<Link*> links, std::vector<std::string> names, size_t slotBytes,
                           std::chrono::milliseconds timeout)
    : rank_(rank),
      nranks_(static_cast<int>(links.size())),
      links_(std::move(links)),
      names_(std::move(names)),
      slotBytes_(slotBytes),
      timeout_(timeout) {
  for (Link* l : links_) {
    if (l) active_.push_back(l);
  }
}

void HostExecutor::run(const Schedule& schedule, const void* input, void* output, const OpInfo& op) {
  const size_t elem = dataTypeSize(op.dtype);
  SliceKernels kernels{reduceFn(op.dtype, op.op), op.op == lockstepAvg ? divideFn(op.dtype) : nullptr, elem, nranks_};
  Ctx ctx{op,      static_cast<const char*>(input), static_cast<char*>(output),
          kernels, Deadline::after(timeout_),       Clock::now()};
  for (SliceWalker w(schedule, slotBytes_ / elem); !w.done(); w.advance())
    runSlice(w.step(), w.first(), w.count(), ctx);
  flush(ctx);
}

void HostExecutor::runSlice(const Step& step, size_t first, size_t n, Ctx& ctx) {
  const size_t elem = ctx.kernels.elem;
  const char* src = (step.src == Buf::kInput ? ctx.input : ctx.output) + (step.srcOffset + first) * elem;
  char* dst = (step.dst == Buf::kInput ? const_cast<char*>(ctx.input) : ctx.output) + (step.dstOffset + first) * elem;
  Message in;
  void* slot = nullptr;
  if (primRecvs(step.prim) || primSends(step.prim)) waitFor(step, &in, n * elem, &slot, ctx);
  applyPrim(step, in.data, src, dst, slot, n, ctx.kernels);
  if (in.data) links_[step.recvPeer]->releaseRecv();
  if (slot) links_[step.sendPeer]->postSend(n * elem);
}

void HostExecutor::waitFor(const Step& step, Message* in, size_t inBytes, void** slot, Ctx& ctx) {
  Link* recvLink = primRecvs(step.prim) ? links_[step.recvPeer] : nullptr;
  Link* sendLink = primSends(step.prim) ? links_[step.sendPeer] : nullptr;
  Backoff backoff;
  for (;;) {
    if (recvLink && !in->data) {
      *in = recvLink->tryRecv();
      if (in->data && in->bytes != inBytes) {
        throw RemoteError(step.recvPeer, std::string(ctx.op.kind) + " #" + std::to_string(ctx.op.seq) + ": " +
                                             names_[step.recvPeer] + " sent " + std::to_string(in->bytes) +
                                             " bytes where the schedule expects " + std::to_string(inBytes) +
                                             " (do the ranks call the same collective?)");
      }
    }
    if (sendLink && !*slot) *slot = sendLink->trySendSlot();
    if ((!recvLink || in->data) && (!sendLink || *slot)) return;
    progressAll();
    backoff.pause();
    if (backoff.sleeping()) {
      auto now = Clock::now();
      if (now >= ctx.deadline.at()) {
        timeout(ctx, recvLink && !in->data ? "data from " + names_[step.recvPeer]
                                           : names_[step.sendPeer] + " to free a slot");
      }
      if (now >= ctx.nextPeerCheck) {
        if (recvLink) recvLink->checkPeer();
        if (sendLink) sendLink->checkPeer();
        ctx.nextPeerCheck = now + std::chrono::milliseconds(100);
      }
    }
  }
}

void HostExecutor::progressAll() {
  for (Link* l : active_) l->progress();
}

void HostExecutor::flush(Ctx& ctx) {
  Backoff backoff;
  for (;;) {
    bool done = true;
    for (Link* l : active_) done = l->progress() && done;
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
