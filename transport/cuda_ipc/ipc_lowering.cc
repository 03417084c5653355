#include "transport/cuda_ipc/ipc_lowering.h"

#include <algorithm>
#include <cstring>

#include "kernels/cpu_reduce.h"
#include "kernels/dtype.h"
#include "src/algo/slicing.h"

namespace lockstep {
namespace ipc {
namespace {

char* at(char* base, size_t elems, size_t elem) { return base ? base + elems * elem : nullptr; }

}  // namespace

bool lower(const LowerArgs& a, Counters& counters, std::vector<uint64_t>& blob) {
  const Schedule& s = *a.schedule;
  const size_t lanes = s.lanes();
  if (lanes > kMaxLanes || a.workers < 1 || a.workers > static_cast<uint32_t>(a.geometry.workers)) return false;
  blob.clear();
  if (lanes == 0) return true;  // nothing moves: no program, and no op for the counters
  const size_t elem = dataTypeSize(a.dtype);
  const size_t sliceElems = a.geometry.slotBytes / elem;
  // avg's extra work, as the host executor does it (src/exec/apply.h).
  const ReduceKernels k = reduceKernels(a.dtype, a.op);
  const bool floatingAvg = k.premulSum != nullptr, integerAvg = k.divide != nullptr;

  std::vector<Instr> instrs;
  std::vector<uint32_t> laneBegin{0};
  std::vector<uint32_t> phases(lanes, 0);
  Counters next = counters;
  for (size_t lane = 0; lane < lanes; ++lane) {
    const std::span<const Step> steps = s.lane(lane);
    size_t furthest = 0;  // one past the furthest step emitted so far
    for (SliceWalker w(steps, sliceElems, s.order(lane)); !w.done(); w.advance()) {
      const Step& step = w.step();
      Instr in{};
      // A phase group starts where the walk first passes a step flagged phase (which may itself
      // be empty, and skipped): every earlier slice is done, so the workers meet first.
      const size_t index = static_cast<size_t>(&step - steps.data());
      if (index >= furthest) {
        bool crosses = false;
        for (size_t i = furthest; i <= index; ++i) crosses = crosses || steps[i].phase;
        if (crosses && instrs.size() > laneBegin.back()) {
          in.flags |= kPhase;
          ++phases[lane];
        }
        furthest = index + 1;
      }
      in.prim = static_cast<uint8_t>(step.prim);
      in.sendPeer = step.sendPeer;
      in.recvPeer = step.recvPeer;
      in.elems = w.count();
      if (step.localFirst) in.flags |= kLocalFirst;
      if (floatingAvg && step.src == kInput) in.flags |= kScaled;
      if (integerAvg && step.finish) in.flags |= kDivide;
      if (step.src < a.buffers.size()) in.src = at(a.buffers[step.src], step.srcOffset + w.first(), elem);
      if (step.dst < a.buffers.size()) in.dst = at(a.buffers[step.dst], step.dstOffset + w.first(), elem);
      if (primRecvs(step.prim)) {
        const int p = step.recvPeer;
        const uint64_t seq = ++next.received[p];
        in.flags |= kRecvs;
        in.inSeq = seq;
        in.inHeader = a.geometry.header(a.segments[a.rank], p, seq);
        in.inData = a.geometry.payload(a.segments[a.rank], p, seq);
        in.inTail = a.geometry.tail(a.segments[p], a.rank);
      }
      if (primSends(step.prim)) {
        const int p = step.sendPeer;
        const uint64_t seq = ++next.sent[p];
        in.flags |= kSends;
        in.outSeq = seq;
        in.outCredit = seq > uint64_t(a.geometry.slots) ? seq - a.geometry.slots : 0;
        if (seq - counters.sent[p] <= uint64_t(a.geometry.slots)) in.flags |= kCreditAll;
        in.outHeader = a.geometry.header(a.segments[p], a.rank, seq);
        in.outData = a.geometry.payload(a.segments[p], a.rank, seq);
        in.outTail = a.geometry.tail(a.segments[a.rank], p);
      }
      instrs.push_back(in);
    }
    // Drains: one per peer this lane sent to (two lanes never share a link direction).
    std::vector<int> sentTo;
    for (size_t i = laneBegin.back(); i < instrs.size(); ++i) {
      if ((instrs[i].flags & kSends) && std::find(sentTo.begin(), sentTo.end(), instrs[i].sendPeer) == sentTo.end()) {
        sentTo.push_back(instrs[i].sendPeer);
      }
    }
    for (int p : sentTo) {
      Instr d{};
      d.prim = static_cast<uint8_t>(Prim::kSend);
      d.flags = kDrain;
      d.sendPeer = p;
      d.recvPeer = -1;
      d.outCredit = next.sent[p];
      d.outTail = a.geometry.tail(a.segments[a.rank], p);
      instrs.push_back(d);
    }
    laneBegin.push_back(static_cast<uint32_t>(instrs.size()));
  }

  ProgramHeader h{};
  h.magic = kProgramMagic;
  h.lanes = static_cast<uint32_t>(lanes);
  h.workers = a.workers;
  h.maxWorkers = static_cast<uint32_t>(a.geometry.workers);
  h.rank = a.rank;
  h.nranks = a.geometry.nranks;
  h.dtype = static_cast<uint32_t>(a.dtype);
  h.op = static_cast<uint32_t>(a.op);
  h.slots = static_cast<uint32_t>(a.geometry.slots);
  h.elemBytes = static_cast<uint32_t>(elem);
  h.sliceElems = sliceElems;
  for (int i = 0; i < 3; ++i) h.tag[i] = a.tag[i];
  h.opIndex = next.ops;
  h.timeoutNs = a.timeoutNs;
  h.state = a.state;
  for (size_t lane = 0; lane < lanes; ++lane) {
    h.barrierBase[lane] = next.barrier[lane];
    next.barrier[lane] += uint64_t(a.workers) * phases[lane];
  }
  h.workersBase = next.workersDone;
  next.workersDone += uint64_t(a.workers) * lanes;
  next.ops += 1;
  h.abortFlag = a.abortFlag;
  h.error = a.error;

  const size_t bytes = sizeof(h) + laneTableBytes(h.lanes) + instrs.size() * sizeof(Instr);
  blob.assign((bytes + 7) / 8, 0);
  char* out = reinterpret_cast<char*>(blob.data());
  std::memcpy(out, &h, sizeof(h));
  std::memcpy(out + sizeof(h), laneBegin.data(), laneBegin.size() * sizeof(uint32_t));
  std::memcpy(out + sizeof(h) + laneTableBytes(h.lanes), instrs.data(), instrs.size() * sizeof(Instr));
  counters = std::move(next);
  return true;
}

}  // namespace ipc
}  // namespace lockstep
