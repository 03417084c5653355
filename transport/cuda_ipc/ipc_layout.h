// The memory one rank shares with the others on its host, for cuda_ipc (device memory exported
// with an IPC handle; on the CPU, any memory). For `nranks` ranks, `slots` slots of `slotBytes`,
// and lanes of at most `workers` workers (each worker a channel of its own, ipc_program.h):
//
//   headers  SlotHeader[nranks][slots][workers]  messages from rank p land in row p (p writes)
//   tails    [nranks][workers] 64-byte lines     line (p, w): messages to p whose part w p has
//                                                released (p writes)
//   state    SegmentState                   this rank's barrier and op counters (this rank only)
//   data     [nranks][slots][slotBytes]     the payload of row p's slots (p writes)
//
// So a sender writes its message (payload, then header) into the receiver's segment and polls
// its own tail line; a receiver polls its own headers and writes the tail into the sender's.
// Both ends compute the same offsets from the same geometry, never from the peer's memory.
#pragma once

#include <cstddef>
#include <cstdint>

#include "transport/cuda_ipc/ipc_program.h"

namespace lockstep {
namespace ipc {

struct Geometry {
  int nranks = 0;
  int slots = 0;
  size_t slotBytes = 0;
  int workers = 1;

  size_t headersOffset() const { return 0; }
  size_t tailsOffset() const { return headersOffset() + size_t(nranks) * slots * workers * sizeof(SlotHeader); }
  size_t stateOffset() const { return tailsOffset() + size_t(nranks) * workers * 64; }
  size_t dataOffset() const { return (stateOffset() + sizeof(SegmentState) + 4095) & ~size_t(4095); }
  size_t bytes() const { return dataOffset() + size_t(nranks) * slots * slotBytes; }

  // In the segment of the receiver: worker 0's header of `from`'s slot for message `seq` (1, 2,
  // ...; worker w's follows at + w), and the slot's payload.
  SlotHeader* header(char* receiverSegment, int from, uint64_t seq) const {
    return reinterpret_cast<SlotHeader*>(receiverSegment + headersOffset()) +
           (size_t(from) * slots + slot(seq)) * workers;
  }
  char* payload(char* receiverSegment, int from, uint64_t seq) const {
    return receiverSegment + dataOffset() + (size_t(from) * slots + slot(seq)) * slotBytes;
  }
  // In the segment of the sender: worker 0's tail line for `to` (worker w's at + w * kTailWords):
  // how many of the sender's messages `to` has released.
  uint64_t* tail(char* senderSegment, int to) const {
    return reinterpret_cast<uint64_t*>(senderSegment + tailsOffset() + size_t(to) * workers * 64);
  }
  SegmentState* state(char* segment) const { return reinterpret_cast<SegmentState*>(segment + stateOffset()); }
  size_t slot(uint64_t seq) const { return static_cast<size_t>((seq - 1) % static_cast<uint64_t>(slots)); }
};

}  // namespace ipc
}  // namespace lockstep
