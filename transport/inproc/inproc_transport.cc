// inproc: ranks that are threads of one process. The FIFOs live on the heap; a process-wide
// registry hands each one from the receiver that created it to the sender.
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <tuple>

#include "src/core/errors.h"
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
    // This rank's entries leave the registry however connect ends: a failed barrier (a rank
    // that never came) must not leave its FIFOs in the process for good.
    struct Forget {
      uint64_t comm;
      int rank;
      const std::vector<int>& peers;
      ~Forget() {
        std::lock_guard<std::mutex> lock(gMu);
        for (int p : peers) gRegistry.erase({comm, p, rank});
      }
    } forget{ctx_.commId, ctx_.rank, peers};
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
        auto it = gRegistry.find({ctx_.commId, ctx_.rank, peers[i]});
        if (it == gRegistry.end()) {
          // Only a rank that gave up on the barrier as the others passed it forgets so early.
          throw RemoteError(peers[i], "inproc setup: " + ctx_.peers[peers[i]].describe() + " left during setup");
        }
        auto out = it->second;
        auto both = std::make_shared<std::pair<std::shared_ptr<HeapFifo>, std::shared_ptr<HeapFifo>>>(out, inbound[i]);
        links.push_back(std::make_unique<FifoLink>(out->header, inbound[i]->header, ctx_.config.slots,
                                                   ctx_.config.slotBytes, both, Fd(), ctx_.peers[peers[i]].describe(),
                                                   peers[i]));
      }
    }
    ctx_.bootstrap.barrier();  // every sender holds its FIFO; the registry can forget them
    return links;
  }

 private:
  TransportContext ctx_;
};

}  // namespace

size_t inprocFifosRegistered() {
  std::lock_guard<std::mutex> lock(gMu);
  return gRegistry.size();
}

std::unique_ptr<Transport> makeInprocTransport(const TransportContext& ctx) {
  return std::make_unique<InprocTransport>(ctx);
}

}  // namespace lockstep
