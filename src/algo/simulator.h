// Executes the schedules of all N ranks in one process over an in-memory network of FIFOs with
// `slots` credits each, using the same slicing and primitives as the host executor. It proves
// schedules correct (and deadlock-free under credit flow control) at scales no test machine has,
// counts what each rank sends, and predicts the time a collective takes under a network model.
#pragma once

#include <string>
#include <vector>

#include "lockstep/lockstep.h"
#include "src/algo/schedule.h"
#include "src/algo/tuner.h"

namespace lockstep {

// Ranks [k * ranksPerNode, (k + 1) * ranksPerNode) share node k. A message costs its link's alpha
// plus bytes over its bandwidth; each rank has one send and one receive port per link class
// (intra-node, inter-node), so a rank's messages on one class queue behind each other, and each
// message holds its sender's port for the link's gap on top of its bytes.
struct NetworkModel {
  LinkCost intra{0.3, 6.0};
  LinkCost inter{6.0, 2.5};
  int ranksPerNode = 0;   // 0: every rank on one node
  double reduceGBps = 0;  // local reduce/copy speed (GB/s); 0: free
  bool sameNode(int a, int b) const { return ranksPerNode <= 0 || a / ranksPerNode == b / ranksPerNode; }
};

struct SimOptions {
  size_t sliceBytes = 1 << 20;
  int slots = 4;
  const NetworkModel* network = nullptr;  // predict time under this model
  bool moveData = true;                   // false: schedules only (buffers unused), for large N
};

struct SimStats {
  std::vector<uint64_t> messagesSent;  // per rank
  std::vector<uint64_t> bytesSent;     // per rank
  int latencySteps = 0;                // longest chain of messages, each waiting for the one before
  double timeUs = 0;                   // when the last rank finishes, under options.network
};

// buffers[r][i] is the base of rank r's buffer index i (for a collective: {input, output}, which
// may be equal for in-place). Throws InternalError on deadlock or on a message whose size the
// receiver does not expect.
SimStats simulate(const std::vector<Schedule>& schedules, const std::vector<std::vector<char*>>& buffers,
                  lockstepDataType_t dtype, lockstepRedOp_t op, const SimOptions& options);

inline SimStats simulate(const std::vector<Schedule>& schedules, const std::vector<std::vector<char*>>& buffers,
                         lockstepDataType_t dtype, lockstepRedOp_t op, size_t sliceBytes, int slots) {
  SimOptions o;
  o.sliceBytes = sliceBytes;
  o.slots = slots;
  return simulate(schedules, buffers, dtype, op, o);
}

}  // namespace lockstep
