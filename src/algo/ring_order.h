// Ring order: which rank stands at each position of the ring.
//
// The ring-following algorithms (ring, chain) are generated in position space: "rank" p of the
// generator is the rank at position p, its successor is position p+1. A communicator whose ranks
// are interleaved across hosts (ranks 0,2 on host A, 1,3 on host B) would otherwise cross the
// network at every hop; with a host-contiguous order (0 2 | 1 3) each host boundary is crossed
// once. The order is computed once per communicator from PeerInfo, identically on every rank
// (src/topo/ordering.h), so every rank translates the same schedule the same way.
//
// Translation (toRankSpace): peers p -> rankAt[p]; for reduce-scatter and all-gather, block c of
// the position-space layout is block rankAt[c] of the user's buffer (position p's own block must
// be its rank's block). All-reduce, broadcast and reduce address whole buffers: only peers change.
#pragma once

#include <vector>

#include "src/algo/collective.h"
#include "src/algo/schedule.h"

namespace lockstep {

struct RingOrder {
  std::vector<int> rankAt;      // position -> rank
  std::vector<int> positionOf;  // rank -> position

  RingOrder() = default;  // empty: the identity of any size
  // Throws InternalError unless rankAt is a permutation of 0..n-1.
  explicit RingOrder(std::vector<int> rankAtPosition);
  static RingOrder identity(int nranks);

  int size() const { return static_cast<int>(rankAt.size()); }
  bool isIdentity() const { return identity_; }

 private:
  bool identity_ = true;
};

// Algorithms whose schedules follow the ring, and so are built in position space.
inline bool followsRing(Algorithm a) { return a == Algorithm::kRing || a == Algorithm::kChain; }

// Rewrites a schedule built in position space (the generator's rank = this rank's position, its
// root = the root's position) into rank space. blockCount is the per-rank block of
// reduce-scatter / all-gather (NCCL's count argument); unused for the other collectives.
void toRankSpace(const RingOrder& order, OpKind kind, size_t blockCount, Schedule* schedule);

}  // namespace lockstep
