// A unit of work for a communicator's executor: a schedule, the buffers its indices refer to, and
// how it ended. Ops execute in the order their Work was submitted, one Work at a time.
#pragma once

#include <atomic>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "src/algo/ring_order.h"
#include "src/algo/schedule.h"
#include "src/core/clock.h"
#include "src/core/op.h"
#include "src/exec/host_executor.h"
#include "src/exec/stream_order.h"

namespace lockstep {

struct Work {
  Schedule schedule;
  PeerList peers;  // peersOf(schedule), for the flight recorder
  std::vector<char*> buffers;
  OpInfo info{};
  Clock::time_point queued;          // when the call was queued (flight recorder); unset if run inline
  uint8_t scratch[2] = {};           // a barrier's one-byte input and output
  std::vector<char> staging;         // a copy of the input, for in-place calls of algorithms that need one
  std::vector<char> partials;        // a non-root's stand-in output for a reduce that keeps partials there
  const char* stagedFrom = nullptr;  // where that copy comes from (taken when the op starts)
  StreamGate gate;                   // ordered with a CUDA stream (src/exec/stream_order.h)

  // Completion: written by whoever ran the work, then `done` is released.
  std::atomic<bool> done{false};
  lockstepResult_t result = lockstepSuccess;
  std::string error;

  void reset() {
    schedule.clear();
    peers = {};
    buffers.clear();
    stagedFrom = nullptr;
    resetCompletion();
  }
  // Keeps the schedule, for a rerun of the same plan on new buffers (bindBuffers).
  void resetCompletion() {
    queued = Clock::time_point{};
    done.store(false, std::memory_order_relaxed);
    result = lockstepSuccess;
    error.clear();
  }
};

// Waits until w is done (polling with backoff: no condition variable ties a Work to the
// communicator that runs it). False if the deadline passes first.
bool waitWork(const Work& w, Deadline deadline);

// Fills `w` (schedule, buffers, info) for one collective or a lone send/recv. Pure: no I/O.
// Ring-following algorithms are built in `order`'s position space (nullptr: rank order), so a
// host's ranks are neighbours on the ring.
void planOp(const OpDesc& op, int rank, int nranks, Algorithm algorithm, Work* w, const RingOrder* order = nullptr);
// Points a planned collective at the call's buffers (staging a copy of the input where the
// algorithm needs one): the part of planOp that changes when the same call is made again.
void bindBuffers(const OpDesc& op, int rank, int nranks, Algorithm algorithm, Work* w);
// Fuses a group's sends and receives on one communicator into one Work with a lane per peer and
// direction. They are moved as bytes, so the two ends need only agree on sizes.
void planPointToPoint(std::span<const OpDesc> ops, int rank, int nranks, Work* w);

}  // namespace lockstep
