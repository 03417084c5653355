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
};

// Runs the slice [first, first + n) of `step`. buffers[i] is the base of buffer index i; in is
// the received message (or null), out the send slot (or null).
//
// Floating avg scales this rank's input by 1/nranks wherever it enters the reduction (a send of
// raw input, or the second operand of a reduce); integer avg divides once, in the finishing
// step. Either way each value is computed once and then copied, so ranks stay bit-identical.
inline void applyPrim(const Step& step, size_t first, size_t n, const char* const* buffers, const void* in, void* out,
                      const SliceKernels& sk) {
  const ReduceKernels& k = sk.k;
  const size_t bytes = n * sk.elem;
  const char* src = buffers[step.src] + (step.srcOffset + first) * sk.elem;
  char* dst = const_cast<char*>(buffers[step.dst]) + (step.dstOffset + first) * sk.elem;
  auto combine = [&](void* to) {
    if (k.premulSum)
      k.premulSum(to, in, src, n, sk.nranks);
    else
      k.reduce(to, in, src, n);
  };
  switch (step.prim) {
    case Prim::kSend:
      if (k.scale)
        k.scale(out, src, n, sk.nranks);
      else
        std::memcpy(out, src, bytes);
      break;
    case Prim::kRecv:
      std::memcpy(dst, in, bytes);
      break;
    case Prim::kRecvReduceSend:
      combine(out);
      break;
    case Prim::kRecvReduceCopy:
    case Prim::kRecvReduceCopySend:
      combine(dst);
      if (step.finish && k.divide) k.divide(dst, n, sk.nranks);
      if (out) std::memcpy(out, dst, bytes);
      break;
    case Prim::kRecvCopySend:
      std::memcpy(dst, in, bytes);
      std::memcpy(out, in, bytes);
      break;
    case Prim::kCopy:
      if (k.scale)
        k.scale(dst, src, n, sk.nranks);
      else if (dst != src)
        std::memmove(dst, src, bytes);
      if (step.finish && k.divide) k.divide(dst, n, sk.nranks);
      break;
  }
}

}  // namespace lockstep
