// shm: ranks on the same host, in different processes. Each rank creates one FIFO segment per
// peer for that peer to write into, sends its name over the bootstrap, maps the peer's, and
// unlinks its own once everyone has mapped (so nothing is left in /dev/shm, even after a crash
// later on).
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "transport/fifo_link.h"
#include "transport/shm/shm_segment.h"

namespace lockstep {
namespace {

constexpr int kTagShmName = 0x5348;    // "SH"
constexpr size_t kMessageBytes = 512;  // a segment name; in agree(), "!" and an error message

class ShmTransport : public Transport {
 public:
  explicit ShmTransport(const TransportContext& ctx) : ctx_(ctx) {}
  const char* name() const override { return "shm"; }
  bool canConnect(const PeerInfo& self, const PeerInfo& peer) const override {
    // Same host and the same /dev/shm mount (containers on one host may each have their own),
    // and the same user: a segment is created 0600, so another user's rank could not open it,
    // and every rank's init failed with "Permission denied" (helper-67). Such pairs use sockets.
    // A uid is one user only within one user namespace: root in a rootless container is another
    // user of the host than root outside it, though both say euid 0 (helper-73).
    return self.hostHash == peer.hostHash && self.shmId != 0 && self.shmId == peer.shmId &&
           self.processToken != peer.processToken && self.euid == peer.euid && self.userNamespace == peer.userNamespace;
  }

  std::vector<std::unique_ptr<Link>> connect(const std::vector<int>& peers) override {
    const size_t bytes = fifoBytes(ctx_.config.slots, ctx_.config.slotBytes);
    std::vector<std::shared_ptr<ShmSegment>> inbound, outbound;
    std::string failure;
    lockstepResult_t failureCode = lockstepSuccess;
    auto failed = [&](const Error& e, const std::string& context) {
      if (!failure.empty()) return;
      failure = context + e.what();
      failureCode = e.code();
    };
    try {
      for (size_t i = 0; i < peers.size(); ++i) {
        inbound.push_back(std::make_shared<ShmSegment>(ShmSegment::create(bytes)));
        initFifo(inbound.back()->addr(), ctx_.config.slots, ctx_.config.slotBytes);
      }
    } catch (const Error& e) {
      failed(e, "");
    }
    // Every rank learns whether every rank could, before any name is sent: told by the rank that
    // failed, each peer failed with whatever its own exchange met first (a segment unlinked as
    // its creator gave up, a refused connection), and with a small /dev/shm (a container's 64
    // MiB) only some of eight ranks named the cause. Now every rank names the same rank and why.
    agree(failure, failureCode, "could not create shared memory");
    for (size_t i = 0; i < peers.size(); ++i) {
      char msg[kMessageBytes] = {};
      std::snprintf(msg, sizeof(msg), "%s", inbound[i]->name().c_str());
      ctx_.bootstrap.send(peers[i], kTagShmName, msg, sizeof(msg));
    }
    for (int p : peers) {
      char msg[kMessageBytes];
      ctx_.bootstrap.recv(p, kTagShmName, msg, sizeof(msg));
      msg[sizeof(msg) - 1] = '\0';
      const std::string who = ctx_.peers[p].describe();
      if (!failure.empty()) continue;  // every name is read, so none is left for a later exchange
      try {
        if (std::strncmp(msg, "/lockstep-", 10) != 0) throw RemoteError(p, "it sent a bad segment name");
        outbound.push_back(std::make_shared<ShmSegment>(ShmSegment::open(msg, bytes)));
      } catch (const Error& e) {
        failed(e, "cannot map the segment of " + who + ": ");
      }
    }
    // Also the barrier before the unlinking: every peer has mapped what this rank created.
    agree(failure, failureCode, "could not map a peer's shared memory");
    for (auto& s : inbound) s->unlink();

    std::vector<std::unique_ptr<Link>> links;
    for (size_t i = 0; i < peers.size(); ++i) {
      FifoHeader* out = attachFifo(outbound[i]->addr(), ctx_.config.slots, ctx_.config.slotBytes);
      FifoHeader* in = static_cast<FifoHeader*>(inbound[i]->addr());
      auto both = std::make_shared<std::pair<std::shared_ptr<ShmSegment>, std::shared_ptr<ShmSegment>>>(outbound[i],
                                                                                                        inbound[i]);
      const PeerInfo& peer = ctx_.peers[peers[i]];
      // A pid names the peer only inside its own pid namespace.
      bool samePidNs = peer.pidNamespace != 0 && peer.pidNamespace == ctx_.peers[ctx_.rank].pidNamespace;
      links.push_back(std::make_unique<FifoLink>(out, in, ctx_.config.slots, ctx_.config.slotBytes, both,
                                                 samePidNs ? openPidFd(peer.pid) : Fd(), peer.describe(), peers[i]));
    }
    return links;
  }

 private:
  // Collective over the communicator (every rank connects every transport): each rank's failure,
  // if any; then every rank throws the first failing rank's, naming it, or none does.
  void agree(const std::string& mine, lockstepResult_t code, const char* what) {
    const int n = static_cast<int>(ctx_.peers.size());
    std::vector<char> all(static_cast<size_t>(n) * kMessageBytes, 0);
    if (!mine.empty()) std::snprintf(all.data() + ctx_.rank * kMessageBytes, kMessageBytes, "!%s", mine.c_str());
    ctx_.bootstrap.allGather(all.data(), kMessageBytes);
    for (int r = 0; r < n; ++r) {
      const char* m = all.data() + static_cast<size_t>(r) * kMessageBytes;
      if (m[0] != '!') continue;
      if (r == ctx_.rank) throw Error(code, "shm: " + mine);
      throw RemoteError(r, "shm: " + ctx_.peers[r].describe() + " " + what + ": " +
                               printable(std::string(m + 1, strnlen(m + 1, kMessageBytes - 1))));
    }
  }

  TransportContext ctx_;
};

}  // namespace

std::unique_ptr<Transport> makeShmTransport(const TransportContext& ctx) { return std::make_unique<ShmTransport>(ctx); }

}  // namespace lockstep
