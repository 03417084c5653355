// shm: ranks on the same host, in different processes. Each rank creates one FIFO segment per
// peer for that peer to write into, sends its name over the bootstrap, maps the peer's, and
// unlinks its own once everyone has mapped (so nothing is left in /dev/shm, even after a crash
// later on).
#include <cstring>

#include "transport/fifo_link.h"
#include "transport/shm/shm_segment.h"

namespace lockstep {
namespace {

constexpr int kTagShmName = 0x5348;    // "SH"
constexpr size_t kMessageBytes = 512;  // a segment name, or "!" and an error message

class ShmTransport : public Transport {
 public:
  explicit ShmTransport(const TransportContext& ctx) : ctx_(ctx) {}
  const char* name() const override { return "shm"; }
  bool canConnect(const PeerInfo& self, const PeerInfo& peer) const override {
    // Same host and the same /dev/shm mount (containers on one host may each have their own).
    return self.hostHash == peer.hostHash && self.shmId != 0 && self.shmId == peer.shmId &&
           self.processToken != peer.processToken;
  }

  std::vector<std::unique_ptr<Link>> connect(const std::vector<int>& peers) override {
    const size_t bytes = fifoBytes(ctx_.config.slots, ctx_.config.slotBytes);
    std::vector<std::shared_ptr<ShmSegment>> inbound, outbound;
    // Each peer gets the name of its segment, or "!" and why this rank could not create it, so
    // that a full /dev/shm fails every rank at once with the culprit named, not with a timeout.
    std::string failure;
    lockstepResult_t failureCode = lockstepSuccess;
    for (int p : peers) {
      char msg[kMessageBytes] = {};
      try {
        if (!failure.empty()) throw InvalidUsage(failure);
        inbound.push_back(std::make_shared<ShmSegment>(ShmSegment::create(bytes)));
        initFifo(inbound.back()->addr(), ctx_.config.slots, ctx_.config.slotBytes);
        std::snprintf(msg, sizeof(msg), "%s", inbound.back()->name().c_str());
      } catch (const Error& e) {
        if (failure.empty()) {
          failure = e.what();
          failureCode = e.code();
        }
        std::snprintf(msg, sizeof(msg), "!%s", failure.c_str());
      }
      ctx_.bootstrap.send(p, kTagShmName, msg, sizeof(msg));
    }
    for (int p : peers) {
      char msg[kMessageBytes];
      ctx_.bootstrap.recv(p, kTagShmName, msg, sizeof(msg));
      msg[sizeof(msg) - 1] = '\0';
      const std::string who = ctx_.peers[p].describe();
      if (msg[0] == '!') throw RemoteError(p, "shm: " + who + " could not create shared memory: " + (msg + 1));
      if (std::strncmp(msg, "/lockstep-", 10) != 0) throw RemoteError(p, "shm: " + who + " sent a bad segment name");
      try {
        outbound.push_back(std::make_shared<ShmSegment>(ShmSegment::open(msg, bytes)));
      } catch (const Error& e) {
        throw RemoteError(p, "shm: cannot map the segment of " + who + ": " + e.what());
      }
    }
    if (!failure.empty()) throw Error(failureCode, failure);
    ctx_.bootstrap.barrier();  // every peer has mapped what we created
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
  TransportContext ctx_;
};

}  // namespace

std::unique_ptr<Transport> makeShmTransport(const TransportContext& ctx) { return std::make_unique<ShmTransport>(ctx); }

}  // namespace lockstep
