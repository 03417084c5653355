#include "bootstrap/reach_check.h"

namespace lockstep {
namespace {

// Where a connection came from is unknown when the socket could not say: such a rank is taken to
// be on every host, so it raises no alarm.
bool sameHost(const RankContact& a, const RankContact& b) {
  if ((!a.fromRootHost && !a.from.valid()) || (!b.fromRootHost && !b.from.valid())) return true;
  if (a.fromRootHost || b.fromRootHost) return a.fromRootHost == b.fromRootHost;
  return a.from.sameHost(b.from);
}

std::string where(const RankContact& c) {
  return c.fromRootHost ? "the rendezvous's host" : "the host at " + c.from.hostStr();
}

}  // namespace

std::string unreachableListener(const std::vector<RankContact>& ranks) {
  for (size_t p = 0; p < ranks.size(); ++p) {
    const NetAddr& a = ranks[p].listens;
    if (!a.isLoopback() && !a.isLinkLocal()) continue;
    for (size_t q = 0; q < ranks.size(); ++q) {
      if (sameHost(ranks[p], ranks[q])) continue;
      return "rank " + std::to_string(p) + " listens on " + (a.isLoopback() ? "loopback " : "link-local ") +
             a.hostStr() + " on " + where(ranks[p]) + "; rank " + std::to_string(q) + ", on " + where(ranks[q]) +
             ", cannot reach it: set LOCKSTEP_SOCKET_IFNAME on rank " + std::to_string(p) +
             "'s host to an interface every host reaches";
    }
  }
  return "";
}

}  // namespace lockstep
