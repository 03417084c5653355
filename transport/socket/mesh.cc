// Authenticated TCP connections from this rank to a set of peers (the data sockets of the socket
// transport, and the control connections of the health watchdog).
//
// Ordering: each rank first sends its hello to every higher peer without waiting, then accepts
// (and answers) every lower peer, then reads the answers of the higher peers. The highest rank
// only accepts, so by induction nobody waits on a rank that is itself waiting.
#include "transport/socket/mesh.h"

#include <algorithm>

#include "src/core/logging.h"

namespace lockstep {
namespace {

constexpr auto kHelloTimeout = std::chrono::seconds(5);

}  // namespace

std::map<int, Fd> connectMesh(const TransportContext& ctx, const std::vector<int>& peers, Purpose purpose,
                              const std::string& what) {
  const int nranks = static_cast<int>(ctx.peers.size());
  Fd listener;
  std::vector<NetAddr> addrs(nranks);
  if (!peers.empty()) {
    listener = listenOn(ctx.localAddr);
    addrs[ctx.rank] = localAddress(listener.get());
  }
  ctx.bootstrap.allGather(addrs.data(), sizeof(NetAddr));

  Deadline dl = Deadline::after(ctx.config.timeout);
  std::map<int, Fd> fds;
  // Every failure names the peer it concerns.
  auto blame = [&](int p, const std::string& doing, const Error& e) -> RemoteError {
    return RemoteError(p, what + ": rank " + std::to_string(ctx.rank) + " " + doing + " " + ctx.peers[p].describe() +
                              " (" + addrs[p].str() + "): " + e.what());
  };
  for (int p : peers) {
    if (p < ctx.rank) continue;
    try {
      if (!addrs[p].valid()) throw InternalError("it published no address");
      Fd fd = connectTo(addrs[p], dl);
      Hello h = makeHello(ctx.secret, ctx.commId, ctx.rank, nranks, purpose);
      sendAll(fd.get(), &h, sizeof(h), dl);
      fds[p] = std::move(fd);
    } catch (const Error& e) {
      throw blame(p, "could not connect to", e);
    }
  }
  auto missingLower = [&] {
    std::string m;
    for (int p : peers) {
      if (p < ctx.rank && !fds.count(p)) m += (m.empty() ? "" : ", ") + ctx.peers[p].describe();
    }
    return m;
  };
  while (!missingLower().empty()) {
    Fd fd = acceptUntil(listener.get(), dl);
    if (!fd.valid()) {
      throw Timeout(what + ": rank " + std::to_string(ctx.rank) + " waited " +
                    std::to_string(ctx.config.timeout.count()) + " ms for " + missingLower() + " to connect");
    }
    Hello h;
    try {
      recvAll(fd.get(), &h, sizeof(h), dl.earlier(Deadline::after(kHelloTimeout)));
    } catch (const Error& e) {
      LS_WARN(ctx.rank, what << ": dropped a connection: " << e.what());
      continue;
    }
    std::string why = checkHello(h, ctx.secret, ctx.commId, purpose, nranks);
    if (why.empty() && (h.rank >= ctx.rank || fds.count(h.rank))) why = "unexpected rank " + std::to_string(h.rank);
    if (why.empty() && std::find(peers.begin(), peers.end(), h.rank) == peers.end()) why = "not a socket peer";
    if (!why.empty()) {
      LS_WARN(ctx.rank, what << ": rejected a connection: " << why);
      continue;
    }
    try {
      Hello answer = makeHello(ctx.secret, ctx.commId, ctx.rank, nranks, purpose);
      sendAll(fd.get(), &answer, sizeof(answer), dl);
    } catch (const Error& e) {
      throw blame(h.rank, "could not answer", e);
    }
    fds[h.rank] = std::move(fd);
  }
  for (int p : peers) {
    if (p < ctx.rank) continue;
    Hello answer;
    try {
      recvAll(fds[p].get(), &answer, sizeof(answer), dl);
    } catch (const Error& e) {
      throw blame(p, "got no answer from", e);
    }
    std::string why = checkHello(answer, ctx.secret, ctx.commId, purpose, nranks);
    if (!why.empty() || answer.rank != p) {
      throw RemoteError(p, what + ": bad answer from " + ctx.peers[p].describe() + ": " + why);
    }
  }

  return fds;
}

}  // namespace lockstep
