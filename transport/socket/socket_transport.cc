// socket: TCP between any two ranks (always possible, so it is the fallback): LOCKSTEP_SOCKET_NSTREAMS
// authenticated connections per peer pair (transport/socket/mesh.h), wrapped in a SocketLink.
#include <algorithm>
#include <map>

#include "src/core/logging.h"
#include "transport/socket/mesh.h"
#include "transport/socket/socket_link.h"

namespace lockstep {
namespace {

class SocketTransport : public Transport {
 public:
  explicit SocketTransport(const TransportContext& ctx) : ctx_(ctx) {}
  const char* name() const override { return "socket"; }
  bool canConnect(const PeerInfo&, const PeerInfo&) const override { return true; }

  std::vector<std::unique_ptr<Link>> connect(const std::vector<int>& peers) override {
    // One mesh per stream: each has its own listener, so connections of different streams can
    // never be confused. Built at once (connectMeshes).
    std::map<int, std::vector<Fd>> streams;
    std::vector<std::map<int, Fd>> meshes =
        connectMeshes(ctx_, peers, Purpose::kData, "socket transport", ctx_.config.socketStreams);
    for (int s = 0; s < ctx_.config.socketStreams; ++s) {
      for (auto& [p, fd] : meshes[s]) {
        const std::string cc = tuneDataSocket(fd.get(), ctx_.config.socketCongestion);
        if (!cc.empty() && s == 0)
          LS_INFO(ctx_.rank, "socket transport: " << cc << " congestion control to " << ctx_.peers[p].describe());
        streams[p].push_back(std::move(fd));
      }
    }
    std::vector<std::unique_ptr<Link>> links;
    for (int p : peers) {
      links.push_back(std::make_unique<SocketLink>(std::move(streams[p]), p, ctx_.peers[p].describe(),
                                                   ctx_.config.slots, ctx_.config.slotBytes));
    }
    return links;
  }

 private:
  TransportContext ctx_;
};

}  // namespace

std::unique_ptr<Transport> makeSocketTransport(const TransportContext& ctx) {
  return std::make_unique<SocketTransport>(ctx);
}

}  // namespace lockstep
