#include "bootstrap/root_service.h"

#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>
#include <list>
#include <map>
#include <mutex>
#include <vector>

#include "bootstrap/handshake.h"
#include "src/core/logging.h"

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
// Unauthenticated connections held at once, and the largest communicator served.
constexpr size_t kMaxPending = 256;
constexpr int kMaxRanks = 1 << 22;

}  // namespace

RootService::RootService(const NetAddr& bind, const Secret& secret, std::chrono::milliseconds timeout)
    : listen_(listenOn(bind)), address_(localAddress(listen_.get())), secret_(secret) {
  if (address_.family == AF_INET && address_.addr[0] == 0 && address_.addr[1] == 0 && address_.addr[2] == 0 &&
      address_.addr[3] == 0) {
    address_.addr[0] = 127, address_.addr[3] = 1;  // bound to the wildcard: reachable locally
  }
  Deadline deadline = Deadline::after(timeout);
  thread_ = std::thread([this, deadline] {
    try {
      serve(deadline);
    } catch (const std::exception& e) {
      LS_WARN(-1, "rendezvous service at " << address_.str() << " failed: " << e.what());
    }
    listen_.reset();
    finished_ = true;
  });
}

RootService::~RootService() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

void RootService::serve(Deadline deadline) {
  const uint64_t commId = commIdFromSecret(secret_);
  std::list<Pending> pending;
  std::map<int, Registered> ranks;  // by rank; the size comes from the first valid hello
  int nranks = -1;
  auto reject = [&](Fd& fd, const std::string& why) {
    ++rejected_;
    LS_WARN(-1, "rendezvous " << address_.str() << ": rejected a connection: " << why);
    fd.reset();
  };
  auto replyTo = [&](Fd& fd, lockstepResult_t status, const NetAddr& next, const std::string& msg) {
    RootReply r{};
    r.status = status;
    r.next = next;
    std::snprintf(r.message, sizeof(r.message), "%s", msg.c_str());
    try {
      sendAll(fd.get(), &r, sizeof(r), Deadline::after(std::chrono::seconds(5)));
      ++messagesOut_;
    } catch (const std::exception&) {
      // The rank is gone; it will report its own failure.
    }
  };

  while (registered_.load() < nranks || nranks < 0) {
    if (stop_.load()) return;
    if (deadline.expired()) {
      std::string missing;
      int listed = 0;
      for (int r = 0; r < nranks && listed < 32; ++r) {
        if (!ranks.count(r)) missing += (listed++ ? "," : "") + std::to_string(r);
      }
      if (listed == 32) missing += ",...";
      std::string msg = "rendezvous at " + address_.str() + " timed out: rank(s) " + (missing.empty() ? "?" : missing) +
                        " never connected";
      LS_WARN(-1, msg);
      for (auto& [r, reg] : ranks) replyTo(reg.fd, lockstepTimeout, NetAddr{}, msg);
      return;
    }
    std::vector<pollfd> fds{{listen_.get(), POLLIN, 0}};
    for (auto& p : pending) fds.push_back({p.fd.get(), POLLIN, 0});
    int rc = ::poll(fds.data(), fds.size(), deadline.remainingMs(100));
    if (rc < 0 && errno != EINTR) throw SystemError("poll", errno, "serving the rendezvous");
    if (fds[0].revents & POLLIN) {
      int shortage = 0;
      Fd fd = acceptReady(listen_.get(), &shortage);
      if (shortage && pending.empty()) {
        // Every descriptor is a registered rank's (or the process's own): the rendezvous cannot
        // take the rest. The ranks it holds learn why instead of timing out.
        std::string msg =
            SystemError("accept4", shortage,
                        "the rendezvous at " + address_.str() + " took " + std::to_string(ranks.size()) + " ranks")
                .what();
        LS_WARN(-1, msg);
        for (auto& [r, reg] : ranks) replyTo(reg.fd, lockstepSystemError, NetAddr{}, msg);
        return;
      }
      // Out of descriptors, or too many strangers waiting: the oldest unauthenticated
      // connection makes room, so a flood cannot lock the ranks out.
      if (shortage || pending.size() >= kMaxPending) {
        reject(pending.front().fd, "dropped to make room (too many pending connections)");
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
      std::string why = checkHello(h, secret_, commId, Purpose::kRoot, nranks);
      if (why.empty() && !addr.valid()) why = "invalid bootstrap address";
      if (why.empty() && h.nranks > kMaxRanks) why = "communicator size " + std::to_string(h.nranks) + " too large";
      if (why.empty() && ranks.count(h.rank))
        why = "rank " + std::to_string(h.rank) + " registered twice (two processes given the same rank?)";
      if (!why.empty()) {
        // Tell a genuine peer why (it holds the secret); strangers get nothing. It reads a hello
        // before the reply, as an accepted rank does: one its own checks pass (its communicator
        // id and size), so that the reply's reason is what it reports.
        if (constantTimeEqual(h.secret, secret_.data(), 16)) {
          const Hello answer = makeHello(secret_, h.commId, 0, std::max(h.nranks, 1), Purpose::kRoot);
          try {
            sendAll(p.fd.get(), &answer, sizeof(answer), Deadline::after(std::chrono::seconds(5)));
            replyTo(p.fd, lockstepInvalidUsage, NetAddr{}, why);
          } catch (const std::exception&) {
            // The rank is gone; it will report its own failure.
          }
        }
        reject(p.fd, why);
        it = pending.erase(it);
        continue;
      }
      if (nranks < 0) nranks = h.nranks;
      Hello answer = makeHello(secret_, commId, /*rank=*/0, nranks, Purpose::kRoot);
      try {
        sendAll(p.fd.get(), &answer, sizeof(answer), Deadline::after(std::chrono::seconds(5)));
        ++messagesOut_;
        ranks[h.rank] = Registered{std::move(p.fd), addr};
        ++registered_;
      } catch (const std::exception& e) {
        reject(p.fd, e.what());
      }
      it = pending.erase(it);
    }
  }
  for (int r = 0; r < nranks; ++r) replyTo(ranks[r].fd, lockstepSuccess, ranks[(r + 1) % nranks].addr, "");
  LS_INFO(-1, "rendezvous at " << address_.str() << " complete: " << nranks << " ranks");
}

void startDetachedRoot(const NetAddr& bind, const Secret& secret, std::chrono::milliseconds timeout, NetAddr* address) {
  // Services live here until they finish; finished ones are reaped when the next one starts.
  static std::mutex mu;
  static std::list<std::unique_ptr<RootService>> services;
  std::lock_guard<std::mutex> lock(mu);
  services.remove_if([](const std::unique_ptr<RootService>& s) { return s->finished(); });
  services.push_back(std::make_unique<RootService>(bind, secret, timeout));
  *address = services.back()->address();
}

}  // namespace lockstep
