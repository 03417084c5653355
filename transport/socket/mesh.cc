// Authenticated TCP connections from this rank to a set of peers (the data sockets of the socket
// transport, and the control connections of the health watchdog).
//
// Ordering: each rank dials every higher peer and sends it its hello while it accepts (and
// answers) every lower peer, then reads the answers of the higher peers. Nobody waits to connect
// on a rank that does not accept meanwhile, and the highest rank only accepts, so by induction
// nobody waits on a rank that is itself waiting.
#include "transport/socket/mesh.h"

#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <exception>
#include <list>
#include <map>
#include <mutex>
#include <system_error>
#include <thread>

#include "src/core/logging.h"
#include "src/core/named_peers.h"
#include "src/core/thread_name.h"

namespace lockstep {
namespace {

constexpr auto kHelloTimeout = std::chrono::seconds(5);
constexpr auto kProbeEvery = std::chrono::milliseconds(250);

// Whether a peer that has not connected is still there (its bootstrap listens), asked at most
// once per kProbeEvery for all of this rank's meshes: each mesh's thread probing on its own sent
// LOCKSTEP_SOCKET_NSTREAMS probes at a time into a stopped rank's bootstrap listener, which
// nothing serves then, and overflowed its queue (helper-97: 4098 queued, against 280 when the
// meshes were built one after another).
class Prober {
 public:
  explicit Prober(Bootstrap& bootstrap) : bootstrap_(bootstrap) {}
  bool listening(int peer) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = last_.find(peer);
      if (it != last_.end() && (!it->second.listening || Clock::now() - it->second.at < kProbeEvery))
        return it->second.listening;
      last_[peer] = {Clock::now(), true};  // the others take this until the answer is in
    }
    const bool listening = bootstrap_.peerListening(peer);
    std::lock_guard<std::mutex> lock(mu_);
    last_[peer] = {Clock::now(), listening};
    return listening;
  }

 private:
  struct Probe {
    Clock::time_point at;
    bool listening;
  };
  Bootstrap& bootstrap_;
  std::mutex mu_;
  std::map<int, Probe> last_;
};

// The mesh itself, once every rank's address is known: connects to the higher peers, takes the
// lower ones, then reads the higher ones' answers, into `fds`.
void connectPeers(const TransportContext& ctx, const std::vector<int>& peers, Purpose purpose, const std::string& what,
                  const Fd& listener, const std::vector<NetAddr>& addrs, Deadline dl, Prober& prober,
                  std::map<int, Fd>& fds) {
  const int nranks = static_cast<int>(ctx.peers.size());
  // Every failure names the peer it concerns, except this process's own shortage of descriptors
  // or memory, which is no peer's doing.
  auto blame = [&](int p, const std::string& doing, const Error& e) -> std::exception_ptr {
    const std::string context = what + ": rank " + std::to_string(ctx.rank) + " " + doing + " " +
                                ctx.peers[p].describe() + " (" + addrs[p].str() + ")";
    if (auto* se = dynamic_cast<const SystemError*>(&e); se && isLocalShortage(se->err)) {
      return std::make_exception_ptr(SystemError(se->syscall, se->err, context));
    }
    return std::make_exception_ptr(RemoteError(p, context + ": " + e.what()));
  };
  // The higher peers, dialled all at once while the lower ones are taken (below): one after
  // another, a rank waited for each lost SYN in turn (a second each), and for each listener whose
  // queue was full while its owner itself waited to dial (32 ranks with 16 streams failed their
  // init at somaxconn 16: helper-97).
  struct Dial {
    int peer;
    Dialer dialer;
    size_t slot = 0;    // its place in this pass's poll set (0: not in it, waiting to retry)
    bool done = false;  // connected, its hello sent
  };
  std::vector<Dial> dials;
  for (int p : peers) {
    if (p < ctx.rank) continue;
    if (!addrs[p].valid())
      std::rethrow_exception(blame(p, "could not connect to", InternalError("it published no address")));
    // Its listener was up before it published the address: refused means it exited or gave up.
    dials.push_back(Dial{p, Dialer(addrs[p], /*retryRefused=*/false)});
  }
  size_t dialing = dials.size();
  // Moves a dial on; a connection made takes its hello at once (it fits the socket's buffer).
  auto advance = [&](Dial& d) {
    try {
      Fd fd = d.dialer.step(dl);
      if (!fd.valid()) return;
      Hello h = makeHello(ctx.secret, ctx.commId, ctx.rank, nranks, purpose);
      sendAll(fd.get(), &h, sizeof(h), dl);
      fds[d.peer] = std::move(fd);
    } catch (const Error& e) {
      std::rethrow_exception(blame(d.peer, "could not connect to", e));
    }
    d.done = true;
    --dialing;
  };
  for (Dial& d : dials) advance(d);
  // The lower peers still to connect, counted on every pass and named (bounded, NamedPeers) only
  // in an error: the list was built on every pass, and at 4096 ranks the highest rank spent 1.6 s
  // building 400 MB of it, and its errors were 176 KB long (helper-99).
  const size_t lower =
      static_cast<size_t>(std::count_if(peers.begin(), peers.end(), [&](int p) { return p < ctx.rank; }));
  auto missingLower = [&] {
    NamedPeers missing;
    for (int p : peers) {
      if (p < ctx.rank && !fds.count(p)) missing.add(p, ctx.peers[p].describe(), "");
    }
    return missing.str();
  };
  // Lower peers connect to us. Pending connections are served together (poll), so a stranger
  // that connects and dawdles cannot hold up the real peers; it is dropped after kHelloTimeout.
  struct Pending {
    Fd fd;
    Clock::time_point since;
    Hello hello{};
    size_t got = 0;
  };
  std::list<Pending> pending;
  WarnLimiter strangers;  // anyone may connect to the listener
  Deadline probe = Deadline::after(kProbeEvery);
  size_t probes = 0;
  int gone = -1;     // a missing peer found gone: an error if one more pass does not bring it
  size_t taken = 0;  // lower peers accepted
  while (taken < lower || dialing > 0) {
    if (gone >= 0 && !fds.count(gone)) {
      // The one found may have failed because of another that died: name every missing peer
      // that is gone.
      NamedPeers goneOnes;
      for (int p : peers) {
        if (p < ctx.rank && !fds.count(p) && (p == gone || !prober.listening(p))) {
          goneOnes.add(p, ctx.peers[p].describe(), "");
        }
      }
      const std::string names = goneOnes.str();
      throw RemoteError(gone, what + ": rank " + std::to_string(ctx.rank) + " waited for " + missingLower() +
                                  " to connect; gone: " + names +
                                  " (each exited, or failed its setup, perhaps because of another rank)");
    }
    if (dl.expired() && taken < lower) {
      throw Timeout(what + ": rank " + std::to_string(ctx.rank) + " waited " +
                    std::to_string(ctx.config.timeout.count()) + " ms for " + missingLower() + " to connect");
    }
    if (taken < lower && probe.expired()) {
      // A peer that failed its setup elsewhere, or died, never connects: its bootstrap says so.
      // One missing peer per probe, in turn, so that a large communicator's slow setup is not a
      // storm of connections.
      std::vector<int> missing;
      for (int p : peers) {
        if (p < ctx.rank && !fds.count(p)) missing.push_back(p);
      }
      const int p = missing[probes++ % missing.size()];
      if (!prober.listening(p)) gone = p;
      probe = Deadline::after(kProbeEvery);
    }
    std::vector<pollfd> pfds{{listener.get(), POLLIN, 0}};
    for (const Pending& c : pending) pfds.push_back({c.fd.get(), POLLIN, 0});
    int waitMs = dl.remainingMs(100);
    for (Dial& d : dials) {
      if (d.done) continue;
      d.slot = d.dialer.pollFd() >= 0 ? pfds.size() : 0;
      if (d.slot) {
        pfds.push_back({d.dialer.pollFd(), POLLOUT, 0});
      } else {  // a retry's backoff
        const auto until = std::chrono::ceil<std::chrono::milliseconds>(d.dialer.retryAt() - Clock::now()).count();
        waitMs = std::min<int>(waitMs, static_cast<int>(std::max<int64_t>(until, 0)));
      }
    }
    ::poll(pfds.data(), pfds.size(), waitMs);
    // Only the dials poll found done, those waiting to retry (which look at the clock alone), and
    // past the deadline every one (which then times out): each step of a connection under way is
    // a poll of its own, and every pass stepped all of them.
    for (Dial& d : dials) {
      if (!d.done && (!d.slot || pfds[d.slot].revents || dl.expired())) advance(d);
    }
    if (pfds[0].revents & POLLIN) {
      int shortage = 0;
      Fd fd = acceptReady(listener.get(), &shortage);
      if (shortage && pending.empty()) {
        throw SystemError("accept4", shortage,
                          what + ": rank " + std::to_string(ctx.rank) + " taking the connections of " + missingLower());
      }
      // Room is made only for a connection there is: out of descriptors, or one more taken.
      if (shortage || (fd.valid() && pending.size() >= 256)) {
        LS_WARN_LIMITED(strangers, ctx.rank, what << ": dropped the oldest unanswered connection to make room");
        pending.pop_front();
      }
      if (fd.valid()) pending.push_back(Pending{std::move(fd), Clock::now()});
    }
    for (auto it = pending.begin(); it != pending.end();) {
      Pending& c = *it;
      ssize_t n = ::recv(c.fd.get(), reinterpret_cast<char*>(&c.hello) + c.got, sizeof(Hello) - c.got, MSG_DONTWAIT);
      if (n > 0) c.got += static_cast<size_t>(n);
      bool closed = n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
      if (closed || (c.got < sizeof(Hello) && Clock::now() - c.since > kHelloTimeout)) {
        LS_WARN_LIMITED(strangers, ctx.rank,
                        what << ": dropped a connection: " << (closed ? "closed early" : "hello too slow"));
        it = pending.erase(it);
        continue;
      }
      if (c.got < sizeof(Hello)) {
        ++it;
        continue;
      }
      const Hello& h = c.hello;
      std::string why = checkHello(h, ctx.secret, ctx.commId, purpose, nranks);
      if (why.empty() && (h.rank >= ctx.rank || fds.count(h.rank))) why = "unexpected rank " + std::to_string(h.rank);
      if (why.empty() && std::find(peers.begin(), peers.end(), h.rank) == peers.end()) why = "not a peer of this mesh";
      if (!why.empty()) {
        LS_WARN_LIMITED(strangers, ctx.rank, what << ": rejected a connection: " << why);
        it = pending.erase(it);
        continue;
      }
      try {
        Hello answer = makeHello(ctx.secret, ctx.commId, ctx.rank, nranks, purpose);
        sendAll(c.fd.get(), &answer, sizeof(answer), dl);
      } catch (const Error& e) {
        std::rethrow_exception(blame(h.rank, "could not answer", e));
      }
      fds[h.rank] = std::move(c.fd);
      ++taken;
      it = pending.erase(it);
    }
  }

  for (int p : peers) {
    if (p < ctx.rank) continue;
    Hello answer;
    try {
      recvAll(fds[p].get(), &answer, sizeof(answer), dl);
    } catch (const Error& e) {
      std::rethrow_exception(blame(p, "got no answer from", e));
    }
    std::string why = checkHello(answer, ctx.secret, ctx.commId, purpose, nranks);
    if (!why.empty() || answer.rank != p) {
      throw RemoteError(p, what + ": bad answer from " + ctx.peers[p].describe() + ": " + why);
    }
  }
}

}  // namespace

std::vector<std::map<int, Fd>> connectMeshes(const TransportContext& ctx, const std::vector<int>& peers,
                                             Purpose purpose, const std::string& what, int count) {
  const int nranks = static_cast<int>(ctx.peers.size());
  std::vector<Fd> listeners(static_cast<size_t>(count));
  std::vector<NetAddr> addrs(static_cast<size_t>(nranks) * count);  // rank r's mesh s at r * count + s
  try {
    if (!peers.empty()) {
      for (int s = 0; s < count; ++s) {
        listeners[s] = listenOn(ctx.localAddr);
        addrs[ctx.rank * count + s] = localAddress(listeners[s].get());
      }
    }
  } catch (...) {
    // Out of descriptors for a listener: the peers wait in the all-gather below, and its ring
    // neighbours found this rank gone "for a reason of its own". Told the reason instead.
    ctx.bootstrap.failSetup(std::current_exception(), /*heard=*/false);
  }
  try {
    ctx.bootstrap.allGather(addrs.data(), count * sizeof(NetAddr));
  } catch (...) {
    // The ranks already past the all-gather wait for this one to connect, and would find it
    // gone: tell them why (its ring neighbours heard already).
    ctx.bootstrap.failSetup(std::current_exception(), /*heard=*/true);
  }

  Deadline dl = ctx.bootstrap.stepDeadline(ctx.config.timeout);  // within setup's deadline
  // Outside the try: the connections and the listeners stay up until failSetup has told the
  // others, so a peer that finds this rank gone has its report already.
  std::vector<std::map<int, Fd>> fds(static_cast<size_t>(count));
  std::vector<std::exception_ptr> errors(static_cast<size_t>(count));
  std::vector<uint64_t> errorOrder(static_cast<size_t>(count));
  std::atomic<uint64_t> errorsSoFar{0};
  Prober prober(ctx.bootstrap);
  auto build = [&](int s) {
    try {
      std::vector<NetAddr> mine(static_cast<size_t>(nranks));
      for (int r = 0; r < nranks; ++r) mine[r] = addrs[r * count + s];
      connectPeers(ctx, peers, purpose, what, listeners[s], mine, dl, prober, fds[s]);
    } catch (...) {
      errors[s] = std::current_exception();
      errorOrder[s] = errorsSoFar.fetch_add(1);
    }
  };
  // The meshes at once, each on its own thread with its own listener (so no listener queues more
  // connections than one mesh's): one after another, each waited for its slowest connection,
  // and a lost SYN costs a second. 16 ranks with 16 streams over a link losing 1 % took 23 s to
  // set up (helper-87). One mesh dialling every stream at once overflowed the listeners' queues
  // (helper-92).
  // Without peers a mesh is nothing to wait for: no threads. A job whose ranks all share memory
  // started LOCKSTEP_SOCKET_NSTREAMS of them, and failed its init under a thread limit for a
  // transport it did not use (helper-96).
  if (count == 1 || peers.empty()) {
    for (int s = 0; s < count; ++s) build(s);
  } else {
    std::vector<std::thread> threads;
    threads.reserve(static_cast<size_t>(count));
    try {
      for (int s = 0; s < count; ++s) {
        threads.emplace_back([&build, s] {
          nameThisThread("lockstep-mesh");
          build(s);
        });
      }
    } catch (const std::system_error& e) {
      // No thread for a mesh: this process's shortage. The meshes started end on their own.
      for (int s = static_cast<int>(threads.size()); s < count; ++s) {
        errors[s] = std::make_exception_ptr(
            SystemError("pthread_create", e.code().value(),
                        what + ": rank " + std::to_string(ctx.rank) + " starting a thread for each of its " +
                            std::to_string(count) +
                            " streams (LOCKSTEP_SOCKET_NSTREAMS; a thread limit: ulimit -u or a pids cgroup?)"));
        errorOrder[s] = errorsSoFar.fetch_add(1);
      }
    }
    for (auto& t : threads) t.join();
  }
  // This rank's own failure (a SystemError: connectPeers turns every failure a peer caused into
  // a RemoteError) first: a shortage of descriptors or threads is why the peers failed too, and a
  // mesh that met a peer giving up because of it was once reported instead, in stream order,
  // blaming that peer (helper-97). Otherwise the first failure met.
  auto local = [](const std::exception_ptr& e) {
    try {
      std::rethrow_exception(e);
    } catch (const SystemError&) {
      return true;
    } catch (...) {
      return false;
    }
  };
  int first = -1;
  bool firstLocal = false;
  for (int s = 0; s < count; ++s) {
    if (!errors[s]) continue;
    const bool mine = local(errors[s]);
    if (first < 0 || (mine && !firstLocal) || (mine == firstLocal && errorOrder[s] < errorOrder[first])) {
      first = s;
      firstLocal = mine;
    }
  }
  // The peer blamed may have failed because of another rank; failSetup names the first.
  if (first >= 0) ctx.bootstrap.failSetup(errors[first], /*heard=*/false);
  return fds;
}

std::map<int, Fd> connectMesh(const TransportContext& ctx, const std::vector<int>& peers, Purpose purpose,
                              const std::string& what) {
  return std::move(connectMeshes(ctx, peers, purpose, what, 1)[0]);
}

}  // namespace lockstep
