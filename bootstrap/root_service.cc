#include "bootstrap/root_service.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <list>
#include <map>
#include <mutex>
#include <set>
#include <system_error>
#include <vector>

#include "bootstrap/handshake.h"
#include "bootstrap/reach_check.h"
#include "src/core/config.h"
#include "src/core/errors.h"
#include "src/core/logging.h"
#include "src/core/thread_name.h"

namespace lockstep {
namespace {

// A client connection whose hello has not fully arrived yet.
struct Pending {
  Fd fd;
  Clock::time_point since;
  size_t got = 0;
  char buf[kRootHelloBytes];
};

struct Registered {
  Fd fd;
  NetAddr addr;
};

// A client has this long to send its hello; slower ones are dropped so they cannot hold a slot.
constexpr auto kHelloTimeout = std::chrono::seconds(10);
// Unauthenticated connections held at once (the largest communicator served: kMaxRanks).
constexpr size_t kMaxPending = 256;

}  // namespace

RootService::RootService(const NetAddr& bind, const Secret& secret, std::chrono::milliseconds timeout)
    : listen_(listenOn(bind)), address_(localAddress(listen_.get())), secret_(secret) {
  if (address_.family == AF_INET && address_.addr[0] == 0 && address_.addr[1] == 0 && address_.addr[2] == 0 &&
      address_.addr[3] == 0) {
    address_.addr[0] = 127, address_.addr[3] = 1;  // bound to the wildcard: reachable locally
  }
  try {
    thread_ = std::thread([this, timeout] {
      nameThisThread("lockstep-root");
      try {
        serve(timeout);
      } catch (const std::exception& e) {
        LS_WARN(-1, "rendezvous service at " << address_.str() << " failed: " << e.what());
      }
      listen_.reset();
      finished_ = true;
    });
  } catch (const std::system_error& e) {
    throw SystemError("pthread_create", e.code().value(),
                      "starting the rendezvous thread (a thread limit: ulimit -u or a pids cgroup?)");
  }
}

RootService::~RootService() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

void RootService::rankExited(int rank, const std::string& how) {
  std::lock_guard<std::mutex> lock(exitsMu_);
  if (exits_.empty()) exits_ = "rank " + std::to_string(rank) + " " + how + " before the rendezvous completed";
}

void RootService::serve(std::chrono::milliseconds timeout) {
  // The clock starts with the first rank, not with the id: under a launcher, or with an id made
  // and handed out early, ranks may do any amount of work (load data, a checkpoint) before their
  // init, and each rank's own timeout already bounds its wait. Until then the service waits, as
  // NCCL's root does.
  Deadline deadline = Deadline::never();
  std::string lastRejection;
  const uint64_t commId = commIdFromSecret(secret_);
  std::list<Pending> pending;
  // Registrations by the world size they announced, then by rank. The first rank's size is not
  // taken as the truth: a misconfigured rank that comes first must not lock the others out. The
  // first size whose every rank arrives forms the communicator.
  std::map<int, std::map<int, Registered>> bySize;
  std::set<int> left;      // ranks that registered, then closed their connection before the end
  WarnLimiter rejections;  // strangers may connect at will
  auto reject = [&](Fd& fd, const std::string& why) {
    ++rejected_;
    lastRejection = why;
    LS_WARN_LIMITED(rejections, -1, "rendezvous " << address_.str() << ": rejected a connection: " << why);
    fd.reset();
  };
  auto replyTo = [&](Fd& fd, lockstepResult_t status, const NetAddr& next, const std::string& msg,
                     const NetAddr& prev = NetAddr{}) {
    RootReply r{};
    r.status = status;
    r.next = next;
    r.prev = prev;
    std::snprintf(r.message, sizeof(r.message), "%s", msg.c_str());
    try {
      sendAll(fd.get(), &r, sizeof(r), Deadline::after(std::chrono::seconds(5)));
      ++messagesOut_;
    } catch (const std::exception&) {
      // The rank is gone; it will report its own failure.
    }
  };
  auto sizesSeen = [&] {
    std::string s;
    for (const auto& [n, group] : bySize) {
      if (!group.empty()) s += (s.empty() ? "" : ", ") + std::to_string(group.size()) + " said " + std::to_string(n);
    }
    return s;
  };

  int formed = -1;     // the world size of the communicator formed
  std::string doomed;  // a rank exited before the rendezvous formed: why it never will
  while (formed < 0) {
    if (stop_.load()) return;
    if (doomed.empty()) {
      std::lock_guard<std::mutex> lock(exitsMu_);
      doomed = exits_;
      if (!doomed.empty()) {
        doomed = "rendezvous at " + address_.str() + ": " + doomed;
        // Said where some rank waits: a job whose programs never init (`sh -c ...`) says nothing.
        if (registered_.load() > 0) LS_WARN(-1, doomed);
        for (auto& [n, group] : bySize) {
          for (auto& [r, reg] : group) replyTo(reg.fd, lockstepRemoteError, NetAddr{}, doomed);
        }
        bySize.clear();
        registered_ = 0;
      }
    }
    if (deadline.expired()) {
      const bool disagree =
          std::count_if(bySize.begin(), bySize.end(), [](const auto& g) { return !g.second.empty(); }) > 1;
      for (auto& [n, group] : bySize) {
        // A rank that registered and left (its process exited, or its init gave up) is told
        // from one that never came: it was once reported as "never connected".
        // And one that came saying another world size is not missing: it was called "never
        // connected" beside the disagreement (helper-65).
        std::string missing, gone, otherSize;
        int listed = 0, listedGone = 0;
        for (int r = 0; r < n && listed + listedGone < 32; ++r) {
          if (group.count(r)) continue;
          const int size = n;  // a structured binding: clang refuses to capture one
          const bool elsewhere = std::any_of(bySize.begin(), bySize.end(),
                                             [&](const auto& g) { return g.first != size && g.second.count(r); });
          if (elsewhere)
            otherSize += (otherSize.empty() ? "" : ",") + std::to_string(r);
          else if (left.count(r))
            gone += (listedGone++ ? "," : "") + std::to_string(r);
          else
            missing += (listed++ ? "," : "") + std::to_string(r);
        }
        if (listed + listedGone == 32) (listed ? missing : gone) += ",...";
        // With its limit: the service's own (the LOCKSTEP_TIMEOUT of the process that made the
        // id, or of rank 0 serving LOCKSTEP_ROOT), which the waiting ranks may not share.
        std::string msg = "rendezvous at " + address_.str() + " timed out after " + std::to_string(timeout.count()) +
                          " ms from the first rank's arrival (the LOCKSTEP_TIMEOUT of the process serving it): ";
        if (listed) msg += "rank(s) " + missing + " never connected";
        if (listedGone) {
          msg += std::string(listed ? "; " : "") + "rank(s) " + gone +
                 " connected, then closed the connection (did the process exit?)";
        }
        if (!otherSize.empty()) {
          msg += std::string(listed || listedGone ? "; " : "") + "rank(s) " + otherSize +
                 " connected saying the world has another size";
        }
        if (disagree) msg += " (ranks disagree on the world size: " + sizesSeen() + ")";
        if (rejected_.load() > 0) {
          // A rank that came with other settings is among those it turned away: say why.
          msg += " (it turned away " + std::to_string(rejected_.load()) +
                 " connection(s), the last for: " + lastRejection + ")";
        }
        LS_WARN(-1, msg);
        for (auto& [r, reg] : group) replyTo(reg.fd, lockstepTimeout, NetAddr{}, msg);
      }
      return;
    }
    std::vector<pollfd> fds{{listen_.get(), POLLIN, 0}};
    for (auto& p : pending) fds.push_back({p.fd.get(), POLLIN, 0});
    // A registered rank sends nothing more until its reply: anything readable is its departure.
    std::vector<std::pair<int, int>> watched;  // (size, rank) of fds[1 + pending.size() + i]
    for (auto& [n, group] : bySize) {
      for (auto& [r, reg] : group) {
        fds.push_back({reg.fd.get(), POLLIN, 0});
        watched.emplace_back(n, r);
      }
    }
    int rc = ::poll(fds.data(), fds.size(), deadline.remainingMs(100));
    if (rc < 0 && errno != EINTR) throw SystemError("poll", errno, "serving the rendezvous");
    for (size_t i = 0; i < watched.size(); ++i) {
      if (!(fds[1 + pending.size() + i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      auto [n, r] = watched[i];
      // It left before the rendezvous completed: its number is free for a restarted rank.
      LS_WARN(-1, "rendezvous " << address_.str() << ": rank " << r << " left before the rendezvous completed");
      bySize[n].erase(r);
      left.insert(r);
      --registered_;
    }
    if (fds[0].revents & POLLIN) {
      int shortage = 0;
      Fd fd = acceptReady(listen_.get(), &shortage);
      if (shortage && pending.empty()) {
        // Every descriptor is a registered rank's (or the process's own): the rendezvous cannot
        // take the rest. The ranks it holds learn why instead of timing out.
        std::string msg = SystemError("accept4", shortage,
                                      "the rendezvous at " + address_.str() + " took " +
                                          std::to_string(registered_.load()) + " ranks")
                              .what();
        LS_WARN(-1, msg);
        for (auto& [n, group] : bySize) {
          for (auto& [r, reg] : group) replyTo(reg.fd, lockstepSystemError, NetAddr{}, msg);
        }
        return;
      }
      // Out of descriptors, or too many strangers waiting: the oldest unauthenticated
      // connection makes room, so a flood cannot lock the ranks out.
      if (shortage || (fd.valid() && pending.size() >= kMaxPending)) {
        reject(pending.front().fd, shortage ? "dropped to make room: this process is out of descriptors (" +
                                                  std::string(std::strerror(shortage)) + "; raise ulimit -n)"
                                            : std::string("dropped to make room (too many pending connections)"));
        pending.pop_front();
      }
      if (fd.valid()) {
        ++accepted_;
        pending.emplace_back();
        pending.back().fd = std::move(fd);
        pending.back().since = Clock::now();
      }
    }
    auto now = Clock::now();
    for (auto it = pending.begin(); it != pending.end();) {
      Pending& p = *it;
      ssize_t n = ::recv(p.fd.get(), p.buf + p.got, sizeof(p.buf) - p.got, 0);
      if (n > 0) p.got += static_cast<size_t>(n);
      bool closed = n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
      if (closed || (p.got < sizeof(p.buf) && now - p.since > kHelloTimeout)) {
        reject(p.fd, closed ? "closed before a complete hello" : "hello too slow");
        it = pending.erase(it);
        continue;
      }
      if (p.got < sizeof(p.buf)) {
        ++it;
        continue;
      }
      ++messagesIn_;
      Hello h;
      NetAddr addr;
      std::memcpy(&h, p.buf, sizeof(h));
      std::memcpy(&addr, p.buf + sizeof(h), sizeof(addr));
      std::string why = checkHello(h, secret_, commId, Purpose::kRoot, -1);
      const bool lost = why.empty() && !doomed.empty();  // a genuine rank, of a job that cannot form
      if (lost) why = doomed;
      if (why.empty() && !addr.valid()) why = "invalid bootstrap address";
      if (why.empty() && h.nranks > kMaxRanks) why = "communicator size " + std::to_string(h.nranks) + " too large";
      if (why.empty() && bySize[h.nranks].count(h.rank))
        why = "rank " + std::to_string(h.rank) + " registered twice (two processes given the same rank?)";
      if (!why.empty()) {
        // Tell a genuine peer why (it holds the secret); strangers get nothing. It reads a hello
        // before the reply, as an accepted rank does: one its own checks pass (its communicator
        // id and size), so that the reply's reason is what it reports.
        if (constantTimeEqual(h.secret, secret_.data(), 16)) {
          const Hello answer = makeHello(secret_, h.commId, 0, std::max(h.nranks, 1), Purpose::kRoot);
          try {
            sendAll(p.fd.get(), &answer, sizeof(answer), Deadline::after(std::chrono::seconds(5)));
            replyTo(p.fd, lost ? lockstepRemoteError : lockstepInvalidUsage, NetAddr{}, why);
          } catch (const std::exception&) {
            // The rank is gone; it will report its own failure.
          }
        }
        if (lost) {
          p.fd.reset();  // told, and already logged: not a stranger turned away
        } else {
          reject(p.fd, why);
        }
        it = pending.erase(it);
        continue;
      }
      if (deadline.at() == Clock::time_point::max()) deadline = Deadline::after(timeout);  // the first rank
      Hello answer = makeHello(secret_, commId, /*rank=*/0, h.nranks, Purpose::kRoot);
      try {
        sendAll(p.fd.get(), &answer, sizeof(answer), Deadline::after(std::chrono::seconds(5)));
        ++messagesOut_;
        auto& group = bySize[h.nranks];
        group[h.rank] = Registered{std::move(p.fd), addr};
        left.erase(h.rank);  // restarted
        ++registered_;
        if (static_cast<int>(group.size()) == h.nranks) formed = h.nranks;
      } catch (const std::exception& e) {
        reject(p.fd, e.what());
      }
      it = pending.erase(it);
      if (formed >= 0) break;
    }
  }
  auto& ranks = bySize[formed];
  // A rank none of the others can dial fails every rank here, naming it, before the ring dials.
  std::vector<RankContact> contacts(formed);
  for (int r = 0; r < formed; ++r) {
    contacts[r].listens = ranks[r].addr;
    NetAddr mine;
    if (connectionEnds(ranks[r].fd.get(), &mine, &contacts[r].from)) {
      contacts[r].fromRootHost = contacts[r].from.isLoopback() || contacts[r].from.sameHost(mine);
    }
  }
  static_assert(sizeof(RootReply::message) > kReachMessageMax, "the reason must fit the reply");
  const std::string unreachable = unreachableListener(contacts);
  if (!unreachable.empty()) LS_WARN(-1, "rendezvous at " << address_.str() << " refused the job: " << unreachable);
  for (int r = 0; r < formed; ++r) {
    if (!unreachable.empty()) {
      replyTo(ranks[r].fd, lockstepInvalidUsage, NetAddr{}, unreachable);
      continue;
    }
    replyTo(ranks[r].fd, lockstepSuccess, ranks[(r + 1) % formed].addr, "", ranks[(r + formed - 1) % formed].addr);
  }
  // Whoever came with another size is told which size won.
  for (auto& [n, group] : bySize) {
    if (n == formed) continue;
    for (auto& [r, reg] : group) {
      replyTo(reg.fd, lockstepInvalidUsage, NetAddr{},
              "communicator size " + std::to_string(n) + ", expected " + std::to_string(formed) + " (the " +
                  std::to_string(formed) + " ranks that agreed formed the communicator)");
    }
  }
  if (unreachable.empty()) LS_INFO(-1, "rendezvous at " << address_.str() << " complete: " << formed << " ranks");
}

namespace {

// lockstepGetUniqueId's services live here until they finish; finished ones are reaped when the
// next one starts. Not a static object that exit() destroys: a child forked from this process
// inherits the list, and destroying it there joined threads that exist only in the parent (the
// child died of SIGABRT at exit, or hung for ever). The process that made a list stops its
// services at exit; a forked child leaves the inherited list alone (another thread of the parent
// may have held its mutex at the fork) and starts one of its own, which keeps the old reachable.
struct DetachedRoots {
  const pid_t owner;               // the process whose threads serve them
  DetachedRoots* const inherited;  // the parent's list, in a forked child: never touched
  std::mutex mu;
  std::list<std::unique_ptr<RootService>> services;
};
std::atomic<DetachedRoots*> gRoots{nullptr};

void stopDetachedRootsAtExit() {
  DetachedRoots* r = gRoots.load();
  if (!r || r->owner != getpid()) return;  // a forked child that made none: they are its parent's
  std::lock_guard<std::mutex> lock(r->mu);
  r->services.clear();
}

DetachedRoots& detachedRoots() {
  static const bool registered = std::atexit(stopDetachedRootsAtExit) == 0;
  (void)registered;
  DetachedRoots* r = gRoots.load();
  while (!r || r->owner != getpid()) {
    auto* mine = new DetachedRoots{getpid(), r, {}, {}};
    if (gRoots.compare_exchange_strong(r, mine)) return *mine;
    delete mine;  // another thread of this process made one first: r is it now
  }
  return *r;
}

}  // namespace

void detachedRootsRankExited(int rank, const std::string& how) {
  DetachedRoots& d = detachedRoots();
  std::lock_guard<std::mutex> lock(d.mu);
  for (auto& s : d.services) {
    if (!s->finished()) s->rankExited(rank, how);
  }
}

void startDetachedRoot(const NetAddr& bind, const Secret& secret, std::chrono::milliseconds timeout, NetAddr* address) {
  DetachedRoots& d = detachedRoots();
  std::lock_guard<std::mutex> lock(d.mu);
  d.services.remove_if([](const std::unique_ptr<RootService>& s) { return s->finished(); });
  d.services.push_back(std::make_unique<RootService>(bind, secret, timeout));
  *address = d.services.back()->address();
}

}  // namespace lockstep
