// libFuzzer: the peer table every rank all-gathers at init, each record another process's bytes,
// as the communicator takes it: strings terminated, the records checked to agree (settings,
// versions) and their addresses against the hosts they claim, the ring ordered by host and
// described, each record named in messages. A record must be refused with an Error or taken;
// nothing may read past it or fail otherwise.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "src/algo/ring_order.h"
#include "src/core/errors.h"
#include "src/topo/ordering.h"
#include "src/topo/peer_info.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace lockstep;
  const size_t n = size / sizeof(PeerInfo);
  if (n == 0 || n > 16) return 0;
  std::vector<PeerInfo> peers(n);
  std::memcpy(peers.data(), data, n * sizeof(PeerInfo));
  for (PeerInfo& p : peers) terminateStrings(&p);
  try {
    checkPeersAgree(peers);
    checkCrossHostAddresses(peers);
  } catch (const Error&) {
    return 0;
  }
  std::vector<uint64_t> hosts;
  for (const PeerInfo& p : peers) hosts.push_back(p.hostHash);
  const RingOrder ring(hostContiguousOrder(peers));
  (void)describeRing(hosts, ring.rankAt);
  (void)hostCrossings(hosts, ring.rankAt);
  for (const PeerInfo& p : peers) {
    (void)p.describe();
    (void)p.ifnameStr();
    (void)hostCpus(peers, p.hostHash);
  }
  return 0;
}
