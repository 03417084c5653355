#include "transport/cuda_ipc/ipc_lowering.h"

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
  // Nothing below can fail: the counters advance in place.
  const size_t elem = dataTypeSize(a.dtype);
  const size_t sliceElems = a.geometry.slotBytes / elem;
  // avg's extra work, as the host executor does it (src/exec/apply.h).
  const ReduceKernels k = reduceKernels(a.dtype, a.op);
  const bool floatingAvg = k.premulSum != nullptr, integerAvg = k.divide != nullptr;

  // The blob: the header, the lane table, then the instructions, appended as they are made.
  constexpr size_t kInstrWords = sizeof(Instr) / 8;
  static_assert(sizeof(Instr) % 8 == 0 && sizeof(ProgramHeader) % 8 == 0, "the blob is 8-byte words");
  const size_t codeStart = (sizeof(ProgramHeader) + laneTableBytes(static_cast<uint32_t>(lanes))) / 8;
  blob.resize(codeStart, 0);
  auto emit = [&](const Instr& in) {
    const size_t at = blob.size();
    blob.resize(at + kInstrWords);
    std::memcpy(&blob[at], &in, sizeof(Instr));
  };
  auto instr = [&](size_t i) { return reinterpret_cast<const Instr*>(&blob[codeStart]) + i; };
  auto count = [&] { return (blob.size() - codeStart) / kInstrWords; };
  auto laneTableAt = [&](size_t lane) { return reinterpret_cast<uint32_t*>(&blob[sizeof(ProgramHeader) / 8]) + lane; };

  ProgramHeader h{};
  counters.sentBefore.assign(counters.sent.begin(), counters.sent.end());
  *laneTableAt(0) = 0;
  for (size_t lane = 0; lane < lanes; ++lane) {
    const size_t laneStart = count();
    h.barrierBase[lane] = counters.barrier[lane];
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
        if (crosses && count() > laneStart) {
          in.flags |= kPhase;
          counters.barrier[lane] += a.workers;
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
        const uint64_t seq = ++counters.received[p];
        in.flags |= kRecvs;
        in.inSeq = seq;
        in.inHeader = a.geometry.header(a.segments[a.rank], p, seq);
        in.inData = a.geometry.payload(a.segments[a.rank], p, seq);
        in.inTail = a.geometry.tail(a.segments[p], a.rank);
      }
      if (primSends(step.prim)) {
        const int p = step.sendPeer;
        const uint64_t seq = ++counters.sent[p];
        in.flags |= kSends;
        in.outSeq = seq;
        in.outCredit = seq > uint64_t(a.geometry.slots) ? seq - a.geometry.slots : 0;
        if (seq - counters.sentBefore[p] <= uint64_t(a.geometry.slots)) in.flags |= kCreditAll;
        in.outHeader = a.geometry.header(a.segments[p], a.rank, seq);
        in.outData = a.geometry.payload(a.segments[p], a.rank, seq);
        in.outTail = a.geometry.tail(a.segments[a.rank], p);
      }
      emit(in);
    }
    // Drains: one per peer this lane sent to, after the op's last message to it (two lanes
    // never share a link direction, so that message is in this lane).
    const size_t laneEnd = count();
    for (size_t i = laneStart; i < laneEnd; ++i) {
      const Instr& last = *instr(i);
      if (!(last.flags & kSends) || last.outSeq != counters.sent[last.sendPeer]) continue;
      Instr d{};
      d.prim = static_cast<uint8_t>(Prim::kSend);
      d.flags = kDrain;
      d.sendPeer = last.sendPeer;
      d.recvPeer = -1;
      d.outCredit = last.outSeq;
      d.outTail = last.outTail;
      emit(d);  // may move the blob: `last` is not used after this
    }
    *laneTableAt(lane + 1) = static_cast<uint32_t>(count());
  }

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
  h.opIndex = counters.ops++;
  h.timeoutNs = a.timeoutNs;
  h.state = a.state;
  h.workersBase = counters.workersDone;
  counters.workersDone += uint64_t(a.workers) * lanes;
  h.abortFlag = a.abortFlag;
  h.error = a.error;
  std::memcpy(blob.data(), &h, sizeof(h));
  return true;
}

}  // namespace ipc
}  // namespace lockstep
