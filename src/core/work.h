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
  Clock::time_point queued;  // when the call was queued (flight recorder); unset if run inline
  Clock::time_point ranAt;   // when the progress thread began it, to the microsecond; unset if run inline
  uint8_t scratch[2] = {};   // a barrier's one-byte input and output
  // Buffers of the Work's own, allocated when the op starts (Communicator::execute), where a
  // failure is the group's to hear, and bound in place of the caller's (null until then):
  std::vector<char> staging;         // a copy of the input, for in-place calls of algorithms that need one
  std::vector<char> partials;        // a non-root's stand-in output for a reduce that keeps partials there
  const char* stagedFrom = nullptr;  // where that copy comes from (taken when the op starts)
  size_t stagingBytes = 0, partialsBytes = 0;
  StreamGate gate;  // ordered with a CUDA stream (src/exec/stream_order.h)

  // Completion: written by whoever ran the work, then markDone() releases `done`.
  std::atomic<bool> done{false};
  lockstepResult_t result = lockstepSuccess;
  std::string error;
  // A waitWork asleep on `bell` (a futex word) is woken by markDone: it once slept in growing
  // steps, up to 0.5 ms past the work's end.
  mutable std::atomic<uint32_t> sleepers{0}, bell{0};

  void markDone() {
    done.store(true, std::memory_order_seq_cst);
    if (sleepers.load(std::memory_order_seq_cst) != 0) ring();
  }
  void ring();  // wakes the sleepers (plan.cc)

  void reset() {
    schedule.clear();
    peers = {};
    buffers.clear();
    stagedFrom = nullptr;
    stagingBytes = partialsBytes = 0;
    resetCompletion();
  }
  // Keeps the schedule, for a rerun of the same plan on new buffers (bindBuffers).
  void resetCompletion() {
    queued = ranAt = Clock::time_point{};
    done.store(false, std::memory_order_relaxed);
    result = lockstepSuccess;
    error.clear();
  }
};

// Waits until w is done: spins, yields, then sleeps on w.bell until markDone rings it (or a
// bounded interval passes, for the deadline). False if the deadline passes first.
bool waitWork(const Work& w, Deadline deadline);

// Fills `w` (schedule, buffers, info) for one collective or a lone send/recv. Pure: no I/O.
// Ring-following algorithms are built in `order`'s position space (nullptr: rank order), so a
// host's ranks are neighbours on the ring.
void planOp(const OpDesc& op, int rank, int nranks, Algorithm algorithm, Work* w, const RingOrder* order = nullptr);
// Points a planned collective at the call's buffers (staging a copy of the input where the
// algorithm needs one): the part of planOp that changes when the same call is made again.
void bindBuffers(const OpDesc& op, int rank, int nranks, Algorithm algorithm, Work* w);
// Allocates the buffers bindBuffers asked for and binds them: when the op starts. Throws Error
// (lockstepSystemError) when memory runs out.
void allocateOwnBuffers(Work* w, int rank);
// Fuses a group's sends and receives on one communicator into one Work with a lane per peer and
// direction. They are moved as bytes, so the two ends need only agree on sizes.
void planPointToPoint(std::span<const OpDesc> ops, int rank, int nranks, Work* w);

}  // namespace lockstep
