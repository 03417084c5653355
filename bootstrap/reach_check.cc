#include "bootstrap/reach_check.h"

#include <map>
#include <string>

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
      const std::string rp = "rank " + std::to_string(p), rq = "rank " + std::to_string(q);
      const std::string listens = rp + " listens on " + (a.isLoopback() ? "loopback " : "link-local ") + a.hostStr();
      std::string why = listens + " on " + where(ranks[p]) + "; " + rq + ", on " + where(ranks[q]) +
                        ", cannot reach it: set LOCKSTEP_SOCKET_IFNAME on " + rp +
                        "'s host to an interface every host reaches";
      // Long IPv6 addresses and rank numbers: the hosts' addresses go (the rendezvous's log has them).
      if (why.size() > kReachMessageMax) {
        why = listens + ", which " + rq + " on another host cannot reach: set LOCKSTEP_SOCKET_IFNAME on " + rp +
              "'s host";
      }
      return why;
    }
  }
  // One address published from two hosts: an address private to each (docker0's 172.17.0.1 on
  // every Docker host, containers behind NAT), so every rank that dials it reaches its own host.
  // That failed as "refused" or a timeout, blaming a healthy peer (helper-73).
  std::map<std::string, size_t> first;  // listen address -> the first rank publishing it
  for (size_t q = 0; q < ranks.size(); ++q) {
    if (!ranks[q].listens.valid()) continue;
    const auto [at, fresh] = first.emplace(ranks[q].listens.hostStr(), q);
    const size_t p = at->second;
    if (fresh || sameHost(ranks[p], ranks[q])) continue;
    const std::string rp = "rank " + std::to_string(p), rq = "rank " + std::to_string(q);
    std::string why = rp + " on " + where(ranks[p]) + " and " + rq + " on " + where(ranks[q]) + " both listen on " +
                      ranks[q].listens.hostStr() +
                      ", an address private to each host: set LOCKSTEP_SOCKET_IFNAME to an interface every host "
                      "reaches";
    if (why.size() > kReachMessageMax) {
      why = rp + " and " + rq + ", on two hosts, both listen on " + ranks[q].listens.hostStr() +
            ": set LOCKSTEP_SOCKET_IFNAME to an interface every host reaches";
    }
    return why;
  }
  return "";
}

}  // namespace lockstep
