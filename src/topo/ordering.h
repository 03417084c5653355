// The ring order a communicator uses (src/algo/ring_order.h), from its peer table: the ranks of
// one host contiguous, so that a ring crosses each host boundary once; within a host, the ranks
// of one NUMA node contiguous. Hosts come in the order of their lowest rank, and ranks keep
// their relative order inside a group, so a job launched host by host (the usual case) keeps
// the identity order. Pure and deterministic: every rank computes the same order.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "src/topo/peer_info.h"

namespace lockstep {

// hostOf[r], numaOf[r] for every rank r; returns the rank at each ring position.
std::vector<int> hostContiguousOrder(const std::vector<uint64_t>& hostOf, const std::vector<int>& numaOf);
std::vector<int> hostContiguousOrder(const std::vector<PeerInfo>& peers);

// Hops of the ring (position p -> p+1, and the last back to the first) that join two hosts.
int hostCrossings(const std::vector<uint64_t>& hostOf, const std::vector<int>& rankAt);

// "0 2 | 1 3": the ranks in ring order, a bar where the ring moves to another host.
std::string describeRing(const std::vector<uint64_t>& hostOf, const std::vector<int>& rankAt);

}  // namespace lockstep
