// socket: TCP between any two ranks (always possible, so it is the fallback): one authenticated
// connection per peer pair (transport/socket/mesh.h), wrapped in a SocketLink.
#include <algorithm>
#include <map>

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
    std::map<int, Fd> fds = connectMesh(ctx_, peers, Purpose::kData, "socket transport");
    std::vector<std::unique_ptr<Link>> links;
    for (int p : peers) {
      tuneDataSocket(fds[p].get());
      links.push_back(std::make_unique<SocketLink>(std::move(fds[p]), p, ctx_.peers[p].describe(), ctx_.config.slots,
                                                   ctx_.config.slotBytes));
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
