#include "src/topo/ordering.h"

#include <algorithm>
#include <map>
#include <numeric>

namespace lockstep {

std::vector<int> hostContiguousOrder(const std::vector<uint64_t>& hostOf, const std::vector<int>& numaOf) {
  const int n = static_cast<int>(hostOf.size());
  std::map<uint64_t, int> hostRank;  // host -> its lowest rank: hosts in order of first appearance
  for (int r = 0; r < n; ++r) hostRank.try_emplace(hostOf[r], r);
  std::vector<int> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  // Stable: equal keys keep rank order.
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
    int ha = hostRank[hostOf[a]], hb = hostRank[hostOf[b]];
    if (ha != hb) return ha < hb;
    return numaOf[a] < numaOf[b];
  });
  return order;
}

std::vector<int> hostContiguousOrder(const std::vector<PeerInfo>& peers) {
  std::vector<uint64_t> hosts;
  std::vector<int> numa;
  for (const PeerInfo& p : peers) {
    hosts.push_back(p.hostHash);
    numa.push_back(p.numaNode);
  }
  return hostContiguousOrder(hosts, numa);
}

int hostCrossings(const std::vector<uint64_t>& hostOf, const std::vector<int>& rankAt) {
  const size_t n = rankAt.size();
  int crossings = 0;
  for (size_t p = 0; n > 1 && p < n; ++p) crossings += hostOf[rankAt[p]] != hostOf[rankAt[(p + 1) % n]];
  return crossings;
}

std::string describeRing(const std::vector<uint64_t>& hostOf, const std::vector<int>& rankAt) {
  std::string s;
  for (size_t p = 0; p < rankAt.size(); ++p) {
    if (p > 0) s += hostOf[rankAt[p]] != hostOf[rankAt[p - 1]] ? " | " : " ";
    s += std::to_string(rankAt[p]);
  }
  return s;
}

}  // namespace lockstep
