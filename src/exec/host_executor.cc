#include "src/exec/host_executor.h"

#include <algorithm>
#include <bit>
#include <cstdio>
#include <cstring>

#include "kernels/cpu_reduce.h"
#include "kernels/dtype.h"
#include "src/core/errors.h"
#include "src/core/op.h"
#include "src/exec/apply.h"
#include "src/exec/backoff.h"
#include "src/exec/float_env.h"

namespace lockstep {

struct HostExecutor::Ctx {
  const OpInfo& op;
  MessageTag tag;     // op.fp as it travels
  bool pointToPoint;  // a send/recv Work: tags carry each message's size
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
      aborted_(aborted) {
  for (int r = 0; r < nranks_; ++r) slotsReadInPlace_ |= r != rank_ && !links_[r]->sendsByReference();
}

namespace {

// Messages sent by reference are forgotten once they have left, looked for when the list is this
// long (at most slots per link are in flight) and before every write to the op's buffers.
constexpr size_t kRefsBeforePrune = 64;

// Outputs at least this large are written with non-temporal stores: by then the output, the
// input and the peers' buffers no longer fit in the last-level cache together, so the output
// would be evicted before anyone reads it, and a normal store pays a read of every line first.
// A quarter of the L3 leaves room for the input, the slots and a second rank on the host, and
// 8 MiB at most: a VM's sysfs reports its host socket's L3, shared with every other tenant (260
// MiB on one development VM, where outputs of 16-64 MiB ran at 3.1 GB/s with normal stores and
// those of 128 MiB and up, streamed, at 4.2: perf/compare, interleaved, same run). The size
// comes from sysfs (what the kernel was told about this CPU's L3); glibc's
// sysconf(_SC_LEVEL3_CACHE_SIZE) reported 10x the real size on another development VM.
size_t streamingThreshold() {
  static const size_t bytes = [] {
    size_t l3 = 0;
    if (FILE* f = std::fopen("/sys/devices/system/cpu/cpu0/cache/index3/size", "r")) {
      unsigned long kib = 0;
      if (std::fscanf(f, "%luK", &kib) == 1) l3 = kib << 10;
      std::fclose(f);
    }
    constexpr size_t kMax = size_t{8} << 20;
    return l3 > 0 ? std::min(l3 / 4, kMax) : kMax;
  }();
  return bytes;
}

// Ops at least this large choose how to fill their send slots by timing both ways (slot_stores.h).
// Behind two L3s, streaming stores made a 2-rank all-reduce 3.8x faster at 32 KiB (18-23 against
// 4.8 us) and 5x at 256 KiB-4 MiB; sharing one, they cost 1.05x the time at 32 KiB and 2.2x at
// 256 KiB-1 MiB, which the choice avoids. Below, the choice would not pay for itself: at 4-16 KiB
// streaming gained 1.7-3.3x behind two L3s but cost 1.15-1.9x sharing one, where two clock reads
// and a lookup are already a few percent of a 1-3 us call.
constexpr size_t kSlotChoiceBytes = size_t{32} << 10;

}  // namespace

void HostExecutor::run(const Schedule& schedule, std::span<char* const> buffers, const OpInfo& op, Deadline deadline) {
  const DefaultFloatEnv floatEnv;  // the same arithmetic on every rank, whatever this thread set
  const size_t elem = dataTypeSize(op.dtype);
  if (op.dtype != reduceFor_.dtype || op.op != reduceFor_.op)
    reduceFor_ = {op.dtype, op.op, reduceKernels(op.dtype, op.op)};
  SliceKernels kernels{reduceFor_.kernels, elem, nranks_};
  const size_t outBytes = op.count * elem;
  const bool pointToPoint = isPointToPoint(static_cast<OpKind>(op.fp.kind));
  kernels.streamOutput = !pointToPoint && outBytes >= streamingThreshold();
  // Ops whose peers read the slots where they lie choose how to fill them by timing both ways
  // (slot_stores.h); a socket's peer reads what the kernel copied, whatever stores filled the
  // slot. From kSlotChoiceBytes where each rank has a CPU of its own; with more ranks than CPUs
  // (or the caller's work beside a background op) only ops whose output is streamed: there a
  // call's time says more about the peers' scheduling than about the stores. On 4 ranks over 2
  // vCPUs the choice from 32 KiB made 32 KiB-2 MiB 1.7-2x faster behind two L3s (medians), but
  // 5-8 % slower at 32-512 KiB sharing one (single runs up to 1.5x); not taken, yet.
  // An op that could choose but does not is still counted: the choice's samples are calls
  // numbered alike on every rank, and a blocking call may run inline on one rank and in the
  // background (behind queued work) on another.
  const uint32_t shape = uint32_t{op.fp.kind} << 8 | op.fp.algorithm;
  const bool mayChoose = slotsReadInPlace_ && !pointToPoint && (kernels.streamOutput || outBytes >= kSlotChoiceBytes);
  const bool chooseSlots = mayChoose && (kernels.streamOutput || !wait_.oversubscribed);
  if (mayChoose && !chooseSlots) slotStores_.skip(shape, outBytes);
  if (chooseSlots && slotStores_.streaming(shape, outBytes)) {
    if (slotScratch_.size() < slotBytes_) slotScratch_.resize(slotBytes_);
    kernels.slotScratch = slotScratch_.data();
  }
  const Clock::time_point start = chooseSlots ? Clock::now() : Clock::time_point{};
  Ctx ctx{op,
          op.fp.tag(),
          pointToPoint,
          buffers.data(),
          kernels,
          deadline,
          deadline.at() - timeout_};  // the op's start: the first slow wait checks the peers
  // Every dtype's size is a power of two: a shift, not a division, on every call.
  const size_t sliceElems = (elem & (elem - 1)) == 0 ? slotBytes_ >> std::countr_zero(elem) : slotBytes_ / elem;
  lanes_.clear();
  for (size_t i = 0; i < schedule.lanes(); ++i) {
    const std::span<const Step> steps = schedule.lane(i);
    // Where every step fits one slice (a small op), slice-major order is step order: walked as
    // such, without the phase bookkeeping, which costs a small op more than its own steps do.
    const bool oneSliceEach =
        std::all_of(steps.begin(), steps.end(), [&](const Step& s) { return s.count <= sliceElems; });
    lanes_.emplace_back().walker =
        SliceWalker(steps, sliceElems, oneSliceEach ? LaneOrder::kStepMajor : schedule.order(i));
  }

  try {
    runLanes(ctx);
    flush(ctx);
  } catch (...) {
    // Messages sent by reference must not read these buffers once the call has returned.
    for (const RefSend& r : refs_) links_[r.peer]->settleRef(r.ticket, true);
    refs_.clear();
    throw;
  }
  refs_.clear();  // flushed: every message has left
  if (chooseSlots)
    slotStores_.record(shape, outBytes, std::chrono::duration<double, std::micro>(Clock::now() - start).count());
}

void HostExecutor::runLanes(Ctx& ctx) {
  Backoff backoff(wait_);
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
    backoff.pause([&](long ns) { sleepOnBlockedLink(ns); });
    if (backoff.sleeping()) slowChecks(ctx);
  }
}

void HostExecutor::sleepOnBlockedLink(long ns) {
  // One futex or socket at a time: sleep on the first blocked lane's link. Other lanes can only
  // move when their peer does, which this sleep does not see, so keep it short when there are
  // several.
  constexpr long kMultiLaneSleepNs = 50'000;
  if (lanes_.size() > 1 && ns > kMultiLaneSleepNs) ns = kMultiLaneSleepNs;
  for (Lane& lane : lanes_) {
    if (lane.walker.done()) continue;
    const Step& step = lane.walker.step();
    if (primRecvs(step.prim) && !lane.in.data) return links_[step.recvPeer]->wait(true, ns);
    if (primSends(step.prim) && !lane.slot) return links_[step.sendPeer]->wait(false, ns);
  }
  links_[rank_]->wait(true, ns);  // nothing to wait for on a link: a plain sleep, bounded by ns
}

bool HostExecutor::advance(Lane& lane, Ctx& ctx) {
  bool moved = false;
  while (!lane.walker.done()) {
    const Step& step = lane.walker.step();
    const size_t n = lane.walker.count(), bytes = n * ctx.kernels.elem;
    if (primRecvs(step.prim) && !lane.in.data) {
      lane.in = links_[step.recvPeer]->tryRecv();
      if (!lane.in.data) return moved;
      checkMessage(lane.in, step, bytes, ctx);
    }
    if (primSends(step.prim) && !lane.slot) {
      lane.slot = links_[step.sendPeer]->trySendSlot();
      if (!lane.slot) return moved;
    }
    const size_t first = lane.walker.first(), elem = ctx.kernels.elem;
    char* dst = const_cast<char*>(ctx.buffers[step.dst]) + (step.dstOffset + first) * elem;
    if (!refs_.empty() && primWrites(step.prim)) settleRefs(dst, bytes, true);
    if (lane.slot && sendByReference(step, bytes, ctx)) {
      // What the peer gets is the input itself (a send) or what this step writes to dst.
      const char* from = dst;
      if (step.prim == Prim::kSend) {
        from = ctx.buffers[step.src] + (step.srcOffset + first) * elem;
      } else {
        // The same step without its copy into the slot (each prim spelled out, so the
        // compiler sees that neither writes a slot).
        Step local = step;
        if (step.prim == Prim::kRecvCopySend) {
          local.prim = Prim::kRecv;
          applyPrim(local, first, n, ctx.buffers, lane.in.data, nullptr, ctx.kernels);
        } else {
          local.prim = Prim::kRecvReduceCopy;
          applyPrim(local, first, n, ctx.buffers, lane.in.data, nullptr, ctx.kernels);
        }
      }
      const uint64_t ticket = links_[step.sendPeer]->postSendRef(from, bytes, tagFor(step, ctx));
      if (refs_.size() >= kRefsBeforePrune) settleRefs(nullptr, 0, false);
      refs_.push_back(RefSend{step.sendPeer, ticket, from, from + bytes});
      lane.slot = nullptr;
    } else if (n > 0) {  // an empty message moves no bytes (its buffers may be NULL)
      applyPrim(step, first, n, ctx.buffers, lane.in.data, lane.slot, ctx.kernels);
    }
    if (lane.in.data) links_[step.recvPeer]->releaseRecv();
    if (lane.slot) links_[step.sendPeer]->postSend(bytes, tagFor(step, ctx));
    lane.in = Message{};
    lane.slot = nullptr;
    lane.walker.advance();
    moved = true;
  }
  return moved;
}

bool HostExecutor::sendByReference(const Step& step, size_t bytes, const Ctx& ctx) const {
  // Below this a copy into the slot costs less than keeping track of the reference.
  constexpr size_t kMinBytes = 16 << 10;
  if (bytes < kMinBytes || !links_[step.sendPeer]->sendsByReference()) return false;
  switch (step.prim) {
    case Prim::kSend:  // unless avg sends a scaled copy of the input
      return !(step.src == kInput && ctx.kernels.k.premulSum);
    case Prim::kRecvReduceCopySend:
    case Prim::kRecvCopySend:
      return true;
    default:  // kRecvReduceSend: its result exists only in the slot
      return false;
  }
}

void HostExecutor::settleRefs(const char* p, size_t bytes, bool detach) {
  for (size_t i = 0; i < refs_.size();) {
    const RefSend& r = refs_[i];
    const bool overlaps = detach && r.begin < p + bytes && p < r.end;
    if (links_[r.peer]->settleRef(r.ticket, overlaps)) {
      refs_[i] = refs_.back();
      refs_.pop_back();
    } else {
      ++i;
    }
  }
}

MessageTag HostExecutor::tagFor(const Step& step, const Ctx& ctx) const {
  if (!ctx.pointToPoint) return ctx.tag;
  // Send/recv: each message carries its total size, so a send and a receive of different sizes
  // fail at their first slice instead of spilling into the next message.
  Fingerprint fp = ctx.op.fp;
  fp.count = step.count * ctx.kernels.elem;
  return fp.tag();
}

void HostExecutor::checkMessage(const Message& in, const Step& step, size_t bytes, const Ctx& ctx) const {
  const MessageTag want = tagFor(step, ctx);
  if (in.tag == want && in.bytes == bytes) return;
  const int peer = step.recvPeer;
  Fingerprint theirs, mine;
  if (!Fingerprint::fromTag(in.tag, &theirs) || !Fingerprint::fromTag(want, &mine)) {
    throw RemoteError(peer, ctx.op.label() + ": " + names_[peer] + " sent a message with a malformed header");
  }
  if (ctx.pointToPoint && theirs.kind == mine.kind && theirs.count != mine.count) {
    throw Mismatch("send/recv: " + names_[peer] + " sent a " + std::to_string(theirs.count) +
                       "-byte message where rank " + std::to_string(rank_) + " posted a " + std::to_string(mine.count) +
                       "-byte receive (count x datatype size must match on both ends)",
                   peer);
  }
  if (const char* field = mine.firstDifference(theirs)) {
    const bool otherOp = field[0] == 's';  // "sequence number": the hint below is about that
    throw Mismatch("collective mismatch: rank " + std::to_string(rank_) + " called " + mine.describe() + " but " +
                       names_[peer] + " called " + theirs.describe() + "; first difference: " + field +
                       (otherOp ? " (one of the two skipped a call, or finished alone an earlier op the other "
                                  "made differently: a rooted op with other arguments, or one that moved no data "
                                  "on one rank, count 0)"
                                : ""),
                   peer);
  }
  throw RemoteError(peer, ctx.op.label() + ": " + names_[peer] + " sent " + std::to_string(in.bytes) +
                              " bytes where the schedule expects " + std::to_string(bytes));
}

void HostExecutor::slowChecks(Ctx& ctx) {
  if (aborted_ && aborted_->load()) {
    throw Aborted(ctx.op.label() + ": communicator aborted");
  }
  if (monitor_) monitor_->check();
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
    // Built only to throw: this runs on slow waits of the steady state, which allocates nothing.
    auto waited = [&] {
      return " while rank " + std::to_string(rank_) + " waited for " +
             (waitsForData ? "its data" : "it to free a slot");
    };
    if (links_[peer]->peerGone()) {
      // It may have posted what we wait for just before it exited: look once more.
      if (advance(lane, ctx)) continue;
      throw RemoteError(
          peer, ctx.op.label() + ": " + names_[peer] + " is gone (process exited or connection closed)" + waited());
    }
    // A peer that destroyed its communicator and lives on: its link stays up (shared memory), so
    // only its goodbye tells. Collectives learn it from the watchdog, which compares the ops it
    // completed; sends and receives, which the watchdog does not follow, here. Not over sockets:
    // the goodbye, on its own connection, can overtake the peer's last data (a retransmission on
    // a lossy link), and the data connection's end shows in peerGone() after that data.
    if (std::string left = leftForGood(peer, ctx); !left.empty()) {
      if (advance(lane, ctx)) continue;
      throw RemoteError(peer, ctx.op.label() + ": " + left + waited());
    }
    if (expired) timeout(ctx, waitsForData ? "data from " + names_[peer] : names_[peer] + " to free a slot", peer);
  }
  if (expired) timeout(ctx, "its own work (no lane is waiting on a peer)");
}

std::string HostExecutor::leftForGood(int peer, const Ctx& ctx) const {
  if (!ctx.pointToPoint || !monitor_ || !links_[peer]->deliveredWhenPosted()) return {};
  return monitor_->departed(peer);
}

void HostExecutor::flush(Ctx& ctx) {
  Backoff backoff(wait_);
  for (;;) {
    bool done = true;
    int stuck = -1;
    for (int r = 0; r < nranks_; ++r) {
      if (!links_[r]->progress()) {
        done = false;
        stuck = r;
      }
    }
    if (done) return;
    backoff.pause([&](long ns) { links_[stuck]->wait(false, ns); });
    if (!backoff.sleeping()) continue;
    if (aborted_ && aborted_->load()) throw Aborted(ctx.op.label() + ": communicator aborted");
    if (monitor_) monitor_->check();
    if (links_[stuck]->peerGone()) {
      throw RemoteError(stuck,
                        ctx.op.label() + ": " + names_[stuck] + " is gone before it took this rank's last sends");
    }
    if (std::string left = leftForGood(stuck, ctx); !left.empty()) {
      throw RemoteError(stuck, ctx.op.label() + ": " + left + " before it took this rank's last sends");
    }
    if (ctx.deadline.expired()) timeout(ctx, names_[stuck] + " to accept the last sends", stuck);
  }
}

[[noreturn]] void HostExecutor::timeout(const Ctx& ctx, const std::string& waitingFor, int peer) {
  // Sends and receives take no sequence number: laggards(0) names the peers that stopped
  // answering, left or died.
  std::string late = monitor_ ? monitor_->laggards(ctx.op.fp.seq, peer) : "";
  // Sends and receives run in call order outside a group: an exchange of large messages posted
  // as Isend then Irecv on both sides waits here for ever. Say how to post it.
  // Not where the peer waits inside a collective: then the calls are out of order, and
  // grouping would not help.
  const bool grouped = std::strcmp(ctx.op.kind, kSendRecvGroup) == 0;
  const bool peerInCollective = late.find("inside a collective") != std::string::npos;
  const std::string hint = ctx.pointToPoint && !grouped && !peerInCollective
                               ? " (sends and receives that must progress together, such "
                                 "as an exchange, belong in one lockstepGroupStart/End)"
                               : "";
  // Sends and receives move bytes (a group's may mix datatypes): their size is said in bytes.
  const std::string size = ctx.pointToPoint ? std::to_string(ctx.op.count) + " bytes"
                                            : std::to_string(ctx.op.count) + " x " + dataTypeName(ctx.op.dtype);
  throw Timeout(ctx.op.label() + " (" + size + ") timed out after " + std::to_string(timeout_.count()) +
                " ms on rank " + std::to_string(rank_) + ", waiting for " + waitingFor +
                (late.empty() ? "" : "; " + late) + stallNotes() + hint);
}

std::string HostExecutor::stallNotes() const {
  // What this rank's own links show: sends the network keeps dropping stall the ranks after it.
  std::string stalls;
  for (int r = 0; r < nranks_; ++r) {
    std::string note = links_[r] ? links_[r]->stallNote() : "";
    // A note of this host's own (its interface down) comes from every link alike: once.
    if (!note.empty() && stalls.find(note) == std::string::npos) stalls += "; " + note;
  }
  return stalls;
}

}  // namespace lockstep
