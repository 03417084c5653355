// inproc: ranks that are threads of one process. The FIFOs live on the heap; a process-wide
// registry hands each one from the receiver that created it to the sender.
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <tuple>

#include "transport/fifo_link.h"

namespace lockstep {
namespace {

std::mutex gMu;
std::map<std::tuple<uint64_t, int, int>, std::shared_ptr<HeapFifo>> gRegistry;  // (comm, src, dst)

class InprocTransport : public Transport {
 public:
  explicit InprocTransport(const TransportContext& ctx) : ctx_(ctx) {}
  const char* name() const override { return "inproc"; }
  bool canConnect(const PeerInfo& self, const PeerInfo& peer) const override {
    return self.processToken == peer.processToken;
  }

  std::vector<std::unique_ptr<Link>> connect(const std::vector<int>& peers) override {
    std::vector<std::shared_ptr<HeapFifo>> inbound;
    {
      std::lock_guard<std::mutex> lock(gMu);
      for (int p : peers) {
        inbound.push_back(std::make_shared<HeapFifo>(ctx_.config.slots, ctx_.config.slotBytes));
        gRegistry[{ctx_.commId, p, ctx_.rank}] = inbound.back();
      }
    }
    ctx_.bootstrap.barrier();  // every inbound FIFO is registered
    std::vector<std::unique_ptr<Link>> links;
    {
      std::lock_guard<std::mutex> lock(gMu);
      for (size_t i = 0; i < peers.size(); ++i) {
        auto out = gRegistry.at({ctx_.commId, ctx_.rank, peers[i]});
        auto both = std::make_shared<std::pair<std::shared_ptr<HeapFifo>, std::shared_ptr<HeapFifo>>>(out, inbound[i]);
        links.push_back(std::make_unique<FifoLink>(out->header, inbound[i]->header, ctx_.config.slots,
                                                   ctx_.config.slotBytes, both, Fd(), ctx_.peers[peers[i]].describe(),
                                                   peers[i]));
      }
    }
    ctx_.bootstrap.barrier();  // every sender holds its FIFO; the registry can forget them
    std::lock_guard<std::mutex> lock(gMu);
    for (int p : peers) gRegistry.erase({ctx_.commId, p, ctx_.rank});
    return links;
  }

 private:
  TransportContext ctx_;
};

}  // namespace

std::unique_ptr<Transport> makeInprocTransport(const TransportContext& ctx) {
  return std::make_unique<InprocTransport>(ctx);
}

}  // namespace lockstep
