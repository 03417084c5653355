// Lowering: one rank's Schedule, on the call's buffers, into a cuda_ipc Program
// (ipc_program.h). A pure function of its arguments and of the link counters it advances, so it
// is tested on the CPU, and every rank lowers its side of a hop to the same message numbers.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "lockstep/lockstep.h"
#include "src/algo/schedule.h"
#include "transport/cuda_ipc/ipc_layout.h"

namespace lockstep {
namespace ipc {

// What this rank has sent to and received from each peer since the communicator was made, and
// how far its barriers have counted: the state a Program's numbers continue from.
struct Counters {
  std::vector<uint64_t> sent;      // by peer
  std::vector<uint64_t> received;  // by peer
  uint64_t barrier[kMaxLanes] = {};
  uint64_t workersDone = 0;
  uint64_t ops = 0;
  std::vector<uint64_t> sentBefore;  // lower()'s scratch: `sent` at the op's start (kept, not reallocated)
  explicit Counters(int nranks = 0) : sent(nranks, 0), received(nranks, 0), sentBefore(nranks, 0) {}
};

struct LowerArgs {
  const Schedule* schedule;
  std::span<char* const> buffers;  // base of each buffer index (device addresses on a GPU)
  lockstepDataType_t dtype;
  lockstepRedOp_t op;
  int rank;
  Geometry geometry;
  std::span<char* const> segments;  // every rank's segment as mapped here
  uint32_t workers;                 // per lane in this op, at most geometry.workers; every rank
                                    // must pick the same number for the same op
  uint64_t tag[3];                  // the op's fingerprint (Fingerprint::tag())
  uint64_t timeoutNs;
  SegmentState* state;                 // this rank's (segments[rank]'s) state area
  const volatile uint32_t* abortFlag;  // as the executing device sees them
  ErrorRecord* error;
};

// Writes the program to `blob` (8-byte words; a reused blob keeps its capacity, so a loop of calls
// allocates nothing) and advances `counters`. A schedule with no steps
// leaves `blob` empty (there is nothing to launch). False, with nothing advanced, if the schedule
// has more lanes than a segment has barriers (kMaxLanes), or more workers than the geometry.
bool lower(const LowerArgs& args, Counters& counters, std::vector<uint64_t>& blob);

}  // namespace ipc
}  // namespace lockstep
