// What the API hands the communicator: one validated operation, before it becomes a schedule.
#pragma once

#include <cstddef>

#include "lockstep/lockstep.h"
#include "src/algo/collective.h"

namespace lockstep {

struct OpDesc {
  OpKind kind = OpKind::kBarrier;
  const void* send = nullptr;
  void* recv = nullptr;
  size_t count = 0;  // NCCL's count argument: per-rank block for reduce-scatter, all-gather, all-to-all
  lockstepDataType_t dtype = lockstepUint8;
  lockstepRedOp_t op = lockstepSum;
  int root = -1;        // the root of broadcast/reduce, the peer of send/recv
  bool device = false;  // the buffers are CUDA device memory (the call is ordered with a stream)
};

}  // namespace lockstep
