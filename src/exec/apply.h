// What a primitive does to the bytes of one slice, once its message has arrived and its send slot
// is free. Shared by the host executor and the simulator so both compute exactly the same thing.
#pragma once

#include <cstring>

#include "kernels/cpu_reduce.h"
#include "src/algo/schedule.h"

namespace lockstep {

struct SliceKernels {
  ReduceKernels k;
  size_t elem;
  int nranks;
  // Final values go to the output with non-temporal stores: set for outputs too large to stay in
  // cache, where a normal store would first read the line it overwrites.
  bool streamOutput = false;
  // Set: send slots are written with non-temporal stores (src/exec/slot_stores.h). A reduction
  // bound for a slot is made first here, a slice-sized buffer of this rank's own, or in the
  // output where that is written with ordinary stores (streamOutput unset), then streamed on.
  void* slotScratch = nullptr;
};

// Runs the slice [first, first + n) of `step`. buffers[i] is the base of buffer index i; in is
// the received message (or null), out the send slot (or null).
//
// Floating avg scales a rank's own contribution by 1/nranks exactly once, where it enters the
// reduction: whenever a step reads it from the input buffer (kInput) to send it or combine it.
// Partial results (in the output buffer, or received) are never scaled again. Integer avg
// divides once, in the step flagged finish. Either way each value is computed once and copied,
// or computed by every rank in the same operand order, so ranks stay bit-identical.
inline void applyPrim(const Step& step, size_t first, size_t n, const char* const* buffers, const void* in, void* out,
                      const SliceKernels& sk) {
  const ReduceKernels& k = sk.k;
  const size_t bytes = n * sk.elem;
  const char* src = buffers[step.src] + (step.srcOffset + first) * sk.elem;
  char* dst = const_cast<char*>(buffers[step.dst]) + (step.dstOffset + first) * sk.elem;
  const bool scaled = step.src == kInput && k.premulSum;  // src is raw input and avg scales it
  // to = partial (op) src, where partial is what arrived (or dst itself for a local reduce).
  auto combine = [&](void* to, const void* partial) {
    if (scaled && step.localFirst) {
      // My scaled input first (the lower rank's data, Step::localFirst): scaled into place, then
      // combined in that order. Operand order decides which NaN a sum returns, so it matters
      // for bit-identical ranks. `partial` is then a received message, never `to`, so scaling
      // into `to` first loses nothing (in place, `to` may be the input itself, scaled where it lies).
      k.scale(to, src, n, sk.nranks);
      k.reduce(to, to, partial, n);
    } else if (scaled) {
      k.premulSum(to, partial, src, n, sk.nranks);
    } else if (step.localFirst) {
      k.reduce(to, src, partial, n);
    } else {
      k.reduce(to, partial, src, n);
    }
  };
  switch (step.prim) {
    case Prim::kSend:
      if (scaled)
        k.scale(out, src, n, sk.nranks);
      else if (sk.slotScratch)
        streamCopy(out, src, bytes);
      else
        std::memcpy(out, src, bytes);
      break;
    case Prim::kRecv:
      if (sk.streamOutput)
        streamCopy(dst, in, bytes);
      else
        std::memcpy(dst, in, bytes);
      break;
    case Prim::kRecvReduceSend:
      if (sk.slotScratch) {
        combine(sk.slotScratch, in);
        streamCopy(out, sk.slotScratch, bytes);
        break;
      }
      combine(out, in);
      break;
    case Prim::kRecvReduceCopy:
    case Prim::kRecvReduceCopySend:
      if (out && sk.streamOutput) {
        // Reduce into the send slot (the peer reads it next, from cache), then stream it out;
        // or, streaming slots, into this rank's scratch, streamed to both. The operands are all
        // read before dst is written, so in-place calls are safe.
        void* to = sk.slotScratch ? sk.slotScratch : out;
        combine(to, in);
        if (step.finish && k.divide) k.divide(to, n, sk.nranks);
        if (to != out) streamCopy(out, to, bytes);
        streamCopy(dst, to, bytes);
        break;
      }
      combine(dst, in);
      if (step.finish && k.divide) k.divide(dst, n, sk.nranks);
      if (out && sk.slotScratch)
        streamCopy(out, dst, bytes);
      else if (out)
        std::memcpy(out, dst, bytes);
      break;
    case Prim::kRecvCopySend:
      if (sk.slotScratch)
        streamCopy(out, in, bytes);
      else
        std::memcpy(out, in, bytes);
      if (sk.streamOutput)
        streamCopy(dst, in, bytes);
      else
        std::memcpy(dst, in, bytes);
      break;
    case Prim::kCopy:
      if (scaled)
        k.scale(dst, src, n, sk.nranks);
      else if (dst != src)
        std::memmove(dst, src, bytes);
      if (step.finish && k.divide) k.divide(dst, n, sk.nranks);
      break;
    case Prim::kLocalReduce:
      combine(dst, dst);
      if (step.finish && k.divide) k.divide(dst, n, sk.nranks);
      break;
  }
}

}  // namespace lockstep
