// Direct exchanges: point-to-point sends and receives (fused per group), and all-to-all.
#pragma once

#include <span>

#include "src/algo/schedule.h"

namespace lockstep {

struct P2POp {
  bool send;
  int peer;
  uint32_t buffer;  // buffer index of this op in the fused group
  size_t count;     // elements
};

// One lane per (peer, direction), each keeping the posted order: sends to different peers, and
// a send and a receive with the same peer, never wait on each other, so a group's send/recv
// pairs cannot deadlock whatever order each rank posted them in.
void directP2P(int rank, int nranks, std::span<const P2POp> ops, Schedule* out);

// Block p of the input goes to rank p; block q of the output comes from rank q. count elements
// per block. One lane per peer and direction, plus the local copy.
void directAllToAll(int rank, int nranks, size_t count, Schedule* out);

// One-shot all-reduce: every rank sends its input to every other and combines all N
// contributions itself, in rank order 0, 1, ..., N-1. One latency step; N-1 times the data:
// for small messages on few ranks. Rank-ordered, so it is also deterministic.
void directAllReduce(int rank, int nranks, size_t count, Schedule* out);

// Appends the steps that combine, into output[offset, offset + count), every rank's
// contribution in rank order 0..N-1: rank q's arrives from q (q != rank), this rank's own comes
// from input[srcOffset...]. The last step finishes the reduction. Used by the one-shot and the
// deterministic algorithms.
void orderedCombine(int rank, int nranks, size_t srcOffset, size_t offset, size_t count, Schedule* out);

}  // namespace lockstep
