// What a primitive does to the bytes of one slice, once its message has arrived and its send slot
// is free. Shared by the host executor and the simulator so both compute exactly the same thing.
#pragma once

#include <cstring>

#include "kernels/cpu_reduce.h"
#include "src/algo/schedule.h"

namespace lockstep {

struct SliceKernels {
  ReduceFn reduce;
  DivideFn divide;  // set for avg only: finishing steps divide by nranks
  size_t elem;
  int nranks;
};

// in: the received message (or null); src/dst: the slice in the user's buffers; out: the send
// slot (or null); n elements.
inline void applyPrim(const Step& step, const void* in, const char* src, char* dst, void* out, size_t n,
                      const SliceKernels& k) {
  const size_t bytes = n * k.elem;
  switch (step.prim) {
    case Prim::kSend:
      std::memcpy(out, src, bytes);
      break;
    case Prim::kRecv:
      std::memcpy(dst, in, bytes);
      break;
    case Prim::kRecvReduceSend:
      k.reduce(out, in, src, n);
      break;
    case Prim::kRecvReduceCopy:
    case Prim::kRecvReduceCopySend:
      k.reduce(dst, in, src, n);
      if (step.finish && k.divide) k.divide(dst, n, k.nranks);
      if (out) std::memcpy(out, dst, bytes);
      break;
    case Prim::kRecvCopySend:
      std::memcpy(dst, in, bytes);
      std::memcpy(out, in, bytes);
      break;
    case Prim::kCopy:
      if (dst != src) std::memmove(dst, src, bytes);
      if (step.finish && k.divide) k.divide(dst, n, k.nranks);
      break;
  }
}

}  // namespace lockstep
