// shm: ranks on the same host, in different processes. Each rank creates one FIFO segment per
// peer for that peer to write into, sends its name over the bootstrap, maps the peer's, and
// unlinks its own once everyone has mapped (so nothing is left in /dev/shm, even after a crash
// later on).
#include <cstring>

#include "transport/fifo_link.h"
#include "transport/shm/shm_segment.h"

namespace lockstep {
namespace {

constexpr int kTagShmName = 0x5348;  // "SH"

class ShmTransport : public Transport {
 public:
  explicit ShmTransport(const TransportContext& ctx) : ctx_(ctx) {}
  const char* name() const override { return "shm"; }
  bool canConnect(const PeerInfo& self, const PeerInfo& peer) const override {
    return self.hostHash == peer.hostHash && self.pid != peer.pid;
  }

  std::vector<std::unique_ptr<Link>> connect(const std::vector<int>& peers) override {
    const size_t bytes = fifoBytes(ctx_.config.slots, ctx_.config.slotBytes);
    std::vector<std::shared_ptr<ShmSegment>> inbound, outbound;
    for (int p : peers) {
      inbound.push_back(std::make_shared<ShmSegment>(ShmSegment::create(bytes)));
      initFifo(inbound.back()->addr(), ctx_.config.slots, ctx_.config.slotBytes);
      char name[64] = {};
      std::snprintf(name, sizeof(name), "%s", inbound.back()->name().c_str());
      ctx_.bootstrap.send(p, kTagShmName, name, sizeof(name));
    }
    for (int p : peers) {
      char name[64];
      ctx_.bootstrap.recv(p, kTagShmName, name, sizeof(name));
      name[sizeof(name) - 1] = '\0';
      if (std::strncmp(name, "/lockstep-", 10) != 0) throw RemoteError(p, "peer sent a bad shared-memory name");
      outbound.push_back(std::make_shared<ShmSegment>(ShmSegment::open(name, bytes)));
    }
    ctx_.bootstrap.barrier();  // every peer has mapped what we created
    for (auto& s : inbound) s->unlink();

    std::vector<std::unique_ptr<Link>> links;
    for (size_t i = 0; i < peers.size(); ++i) {
      FifoHeader* out = attachFifo(outbound[i]->addr(), ctx_.config.slots, ctx_.config.slotBytes);
      FifoHeader* in = static_cast<FifoHeader*>(inbound[i]->addr());
      auto both = std::make_shared<std::pair<std::shared_ptr<ShmSegment>, std::shared_ptr<ShmSegment>>>(outbound[i],
                                                                                                        inbound[i]);
      const PeerInfo& peer = ctx_.peers[peers[i]];
      links.push_back(std::make_unique<FifoLink>(out, in, both, openPidFd(peer.pid), peer.describe(), peers[i]));
    }
    return links;
  }

 private:
  TransportContext ctx_;
};

}  // namespace

std::unique_ptr<Transport> makeShmTransport(const TransportContext& ctx) { return std::make_unique<ShmTransport>(ctx); }

}  // namespace lockstep
