// What the rendezvous can tell about reachability before any rank dials another: each rank's
// bootstrap address (where its peers will connect, the data links' address too) and the source
// of its connection to the rendezvous, which says which host (or network namespace) it is on.
//
// A rank listening on a loopback or link-local address cannot be reached from another host. The
// communicator's own check (checkCrossHostAddresses) sees it only after the bootstrap ring has
// formed, and that ring dials the address first: with ranks dealt round-robin over the hosts, the
// rank dialling it failed at "connecting to its ring successor ... refused", and the misconfigured
// rank, left waiting for its predecessor, blamed that healthy rank. The rendezvous has every
// rank's address before anyone dials, so it refuses the job there, on every rank alike.
#pragma once

#include <string>
#include <vector>

#include "src/net/socket.h"

namespace lockstep {

struct RankContact {
  NetAddr listens;            // the address it published (its bootstrap listener)
  NetAddr from;               // the source address of its connection to the rendezvous
  bool fromRootHost = false;  // `from` is loopback or an address of the rendezvous's own host
};

// The longest reason unreachableListener gives: it travels in a RootReply's message.
constexpr size_t kReachMessageMax = 255;

// Empty, or why some rank listens where another cannot reach it, naming both: a loopback or
// link-local listener with ranks on other hosts, or one address published from two hosts. Ranks whose
// connections came from one address, or all from the rendezvous's host, count as one host. NAT
// can hide several hosts behind one address, so a miss is possible; a false alarm takes ranks of
// one host that reach the rendezvous from different source addresses.
std::string unreachableListener(const std::vector<RankContact>& ranks);

}  // namespace lockstep
