// Executes the schedules of all N ranks in one process over an in-memory network of FIFOs with
// `slots` credits each, using the same slicing and primitives as the host executor. It proves
// schedules correct (and deadlock-free under credit flow control) at scales no test machine has,
// and counts what each rank sends.
#pragma once

#include <string>
#include <vector>

#include "lockstep/lockstep.h"
#include "src/algo/schedule.h"

namespace lockstep {

struct SimStats {
  std::vector<uint64_t> messagesSent;  // per rank
  std::vector<uint64_t> bytesSent;     // per rank
  uint64_t rounds = 0;                 // scheduler passes; a rough latency measure
};

// buffers[r][i] is the base of rank r's buffer index i (for a collective: {input, output}, which
// may be equal for in-place). Throws InternalError on deadlock or on a message whose size the
// receiver does not expect.
SimStats simulate(const std::vector<Schedule>& schedules, const std::vector<std::vector<char*>>& buffers,
                  lockstepDataType_t dtype, lockstepRedOp_t op, size_t sliceBytes, int slots);

}  // namespace lockstep
