// socket: TCP between any two ranks (always possible, so it is the fallback). Setup: ranks that
// have socket peers listen; everyone all-gathers the addresses; the lower rank of each pair
// connects; both sides authenticate with the id's secret.
//
// Ordering: each rank first sends its hello to every higher peer without waiting, then accepts
// (and answers) every lower peer, then reads the answers of the higher peers. The highest rank
// only accepts, so by induction nobody waits on a rank that is itself waiting.
#include <algorithm>
#include <map>

#include "bootstrap/handshake.h"
#include "src/core/logging.h"
#include "transport/socket/socket_link.h"

namespace lockstep {
namespace {

constexpr auto kHelloTimeout = std::chrono::seconds(5);

class SocketTransport : public Transport {
 public:
  explicit SocketTransport(const TransportContext& ctx) : ctx_(ctx) {}
  const char* name() const override { return "socket"; }
  bool canConnect(const PeerInfo&, const PeerInfo&) const override { return true; }

  std::vector<std::unique_ptr<Link>> connect(const std::vector<int>& peers) override {
    const int nranks = static_cast<int>(ctx_.peers.size());
    Fd listener;
    std::vector<NetAddr> addrs(nranks);
    if (!peers.empty()) {
      listener = listenOn(ctx_.localAddr);
      addrs[ctx_.rank] = localAddress(listener.get());
    }
    ctx_.bootstrap.allGather(addrs.data(), sizeof(NetAddr));

    Deadline dl = Deadline::after(ctx_.config.timeout);
    std::map<int, Fd> fds;
    // Every failure names the peer it concerns.
    auto blame = [&](int p, const std::string& doing, const Error& e) -> RemoteError {
      return RemoteError(p, "socket transport: rank " + std::to_string(ctx_.rank) + " " + doing + " " +
                                ctx_.peers[p].describe() + " (" + addrs[p].str() + "): " + e.what());
    };
    for (int p : peers) {
      if (p < ctx_.rank) continue;
      try {
        if (!addrs[p].valid()) throw InternalError("it published no address");
        Fd fd = connectTo(addrs[p], dl);
        Hello h = makeHello(ctx_.secret, ctx_.commId, ctx_.rank, nranks, Purpose::kData);
        sendAll(fd.get(), &h, sizeof(h), dl);
        fds[p] = std::move(fd);
      } catch (const Error& e) {
        throw blame(p, "could not connect to", e);
      }
    }
    auto missingLower = [&] {
      std::string m;
      for (int p : peers) {
        if (p < ctx_.rank && !fds.count(p)) m += (m.empty() ? "" : ", ") + ctx_.peers[p].describe();
      }
      return m;
    };
    while (!missingLower().empty()) {
      Fd fd = acceptUntil(listener.get(), dl);
      if (!fd.valid()) {
        throw Timeout("socket transport: rank " + std::to_string(ctx_.rank) + " waited " +
                      std::to_string(ctx_.config.timeout.count()) + " ms for " + missingLower() + " to connect");
      }
      Hello h;
      try {
        recvAll(fd.get(), &h, sizeof(h), dl.earlier(Deadline::after(kHelloTimeout)));
      } catch (const Error& e) {
        LS_WARN(ctx_.rank, "socket transport: dropped a connection: " << e.what());
        continue;
      }
      std::string why = checkHello(h, ctx_.secret, ctx_.commId, Purpose::kData, nranks);
      if (why.empty() && (h.rank >= ctx_.rank || fds.count(h.rank))) why = "unexpected rank " + std::to_string(h.rank);
      if (why.empty() && std::find(peers.begin(), peers.end(), h.rank) == peers.end()) why = "not a socket peer";
      if (!why.empty()) {
        LS_WARN(ctx_.rank, "socket transport: rejected a connection: " << why);
        continue;
      }
      try {
        Hello answer = makeHello(ctx_.secret, ctx_.commId, ctx_.rank, nranks, Purpose::kData);
        sendAll(fd.get(), &answer, sizeof(answer), dl);
      } catch (const Error& e) {
        throw blame(h.rank, "could not answer", e);
      }
      fds[h.rank] = std::move(fd);
    }
    for (int p : peers) {
      if (p < ctx_.rank) continue;
      Hello answer;
      try {
        recvAll(fds[p].get(), &answer, sizeof(answer), dl);
      } catch (const Error& e) {
        throw blame(p, "got no answer from", e);
      }
      std::string why = checkHello(answer, ctx_.secret, ctx_.commId, Purpose::kData, nranks);
      if (!why.empty() || answer.rank != p) {
        throw RemoteError(p, "socket transport: bad answer from " + ctx_.peers[p].describe() + ": " + why);
      }
    }

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
