#include "src/net/socket.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <thread>
#include <unordered_set>

#include "src/net/resolve.h"

namespace lockstep {

bool NetAddr::valid() const { return family == AF_INET || family == AF_INET6; }

std::string NetAddr::hostStr() const {
  char buf[INET6_ADDRSTRLEN] = "?";
  if (family != AF_INET && family != AF_INET6) return "<unset>";
  inet_ntop(family, addr, buf, sizeof(buf));
  return buf;
}

std::string NetAddr::str() const {
  char buf[INET6_ADDRSTRLEN] = "?";
  if (family == AF_INET) {
    inet_ntop(AF_INET, addr, buf, sizeof(buf));
    return std::string(buf) + ":" + std::to_string(port);
  }
  if (family == AF_INET6) {
    inet_ntop(AF_INET6, addr, buf, sizeof(buf));
    std::string s = "[";  // appended piecewise: GCC 12 warns falsely (-Wrestrict) on a + chain here
    s.append(buf).append("]:").append(std::to_string(port));
    return s;
  }
  return "<unset>";
}

socklen_t NetAddr::toSockaddr(sockaddr_storage* ss) const {
  std::memset(ss, 0, sizeof(*ss));
  if (family == AF_INET) {
    auto* in = reinterpret_cast<sockaddr_in*>(ss);
    in->sin_family = AF_INET;
    in->sin_port = htons(port);
    std::memcpy(&in->sin_addr, addr, 4);
    return sizeof(sockaddr_in);
  }
  auto* in6 = reinterpret_cast<sockaddr_in6*>(ss);
  in6->sin6_family = AF_INET6;
  in6->sin6_port = htons(port);
  std::memcpy(&in6->sin6_addr, addr, 16);
  return sizeof(sockaddr_in6);
}

NetAddr NetAddr::fromSockaddr(const sockaddr* sa) {
  NetAddr a;
  if (sa->sa_family == AF_INET) {
    auto* in = reinterpret_cast<const sockaddr_in*>(sa);
    a.family = AF_INET;
    a.port = ntohs(in->sin_port);
    std::memcpy(a.addr, &in->sin_addr, 4);
  } else if (sa->sa_family == AF_INET6) {
    auto* in6 = reinterpret_cast<const sockaddr_in6*>(sa);
    a.port = ntohs(in6->sin6_port);
    if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
      // An IPv4 peer of a dual-stack socket (::ffff:a.b.c.d) is that IPv4 address: so it compares
      // equal to the same host's IPv4 addresses, and 127.x counts as loopback.
      a.family = AF_INET;
      std::memcpy(a.addr, in6->sin6_addr.s6_addr + 12, 4);
    } else {
      a.family = AF_INET6;
      std::memcpy(a.addr, &in6->sin6_addr, 16);
    }
  }
  return a;
}

const addrinfo* preferredAddress(const addrinfo* list) {
  for (const addrinfo* ai = list; ai; ai = ai->ai_next) {
    if (ai->ai_family == AF_INET) return ai;
  }
  return list;
}

NetAddr NetAddr::parse(const std::string& hostPort, Deadline resolveBy, std::vector<NetAddr>* addresses) {
  std::string host, port;
  if (!hostPort.empty() && hostPort[0] == '[') {
    auto close = hostPort.find(']');
    if (close == std::string::npos || close + 1 >= hostPort.size() || hostPort[close + 1] != ':') {
      throw InvalidArgument("address \"" + hostPort + "\" is not [v6addr]:port");
    }
    host = hostPort.substr(1, close - 1);
    port = hostPort.substr(close + 2);
  } else {
    auto colon = hostPort.rfind(':');
    if (colon == std::string::npos) throw InvalidArgument("address \"" + hostPort + "\" is not host:port");
    host = hostPort.substr(0, colon);
    port = hostPort.substr(colon + 1);
  }
  char* end = nullptr;
  long p = std::strtol(port.c_str(), &end, 10);
  // Digits only: a sign or a blank strtol would skip ("+29611") names the same port in other
  // words, and the secret derived from LOCKSTEP_ROOT would differ between ranks that wrote it so.
  if (port.empty() || !std::isdigit(static_cast<unsigned char>(port[0])) || *end != '\0' || p < 1 || p > 65535) {
    throw InvalidArgument("address \"" + hostPort + "\" has no valid port (1-65535)");
  }
  addrinfo* res = resolveHost(host, resolveBy);
  NetAddr a = fromSockaddr(preferredAddress(res)->ai_addr);
  if (addresses) {
    // Distinct addresses of the family taken (every host prefers IPv4, so only their order
    // within it can differ); getaddrinfo lists one per socket type and protocol it matched.
    addresses->clear();
    for (const addrinfo* ai = res; ai; ai = ai->ai_next) {
      const NetAddr x = fromSockaddr(ai->ai_addr);
      if (x.family == a.family &&
          std::none_of(addresses->begin(), addresses->end(), [&](const NetAddr& y) { return y.sameHost(x); }))
        addresses->push_back(x);
    }
  }
  freeaddrinfo(res);
  a.port = static_cast<uint16_t>(p);
  // An IPv6 link-local address needs its interface (a scope id), which an address here does not
  // carry: rank 0 failed to bind it ("Invalid argument") and the others waited out their timeout.
  if (a.family == AF_INET6 && a.isLinkLocal()) {
    throw InvalidArgument("address \"" + hostPort +
                          "\" is IPv6 link-local, which Lockstep does not support: give a global or unique-local "
                          "address (or a host name that resolves to one)");
  }
  return a;
}

NetAddr NetAddr::loopback(uint16_t port) {
  NetAddr a;
  a.family = AF_INET;
  a.port = port;
  a.addr[0] = 127;
  a.addr[3] = 1;
  return a;
}

bool NetAddr::isLoopback() const {
  if (family == AF_INET) return addr[0] == 127;
  static const uint8_t v6lo[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  return family == AF_INET6 && std::memcmp(addr, v6lo, 16) == 0;
}

bool NetAddr::isLinkLocal() const {
  if (family == AF_INET) return addr[0] == 169 && addr[1] == 254;
  return family == AF_INET6 && addr[0] == 0xfe && (addr[1] & 0xc0) == 0x80;
}

bool NetAddr::sameHost(const NetAddr& o) const {
  return family == o.family && std::memcmp(addr, o.addr, sizeof(addr)) == 0;  // unused bytes are zero
}

namespace {

// The descriptors Fd objects hold. In a child forked from this process (fork without exec: worker
// pools, data loaders), each is pointed at /dev/null: the child can use none of them (its
// communicators are the parent's, and refused), and its copies of the sockets kept a rank that
// died looking alive to its peers until the child exited. The number stays taken, so the Fd that
// still names it closes nothing of the child's.
struct HeldFds {
  std::mutex mu;
  std::unordered_set<int> fds;
};

HeldFds& heldFds() {
  static HeldFds* held = [] {
    auto* h = new HeldFds;  // never destroyed: a thread may close an Fd during exit
    pthread_atfork([] { heldFds().mu.lock(); }, [] { heldFds().mu.unlock(); },
                   [] {
                     HeldFds& mine = heldFds();
                     const int null = ::open("/dev/null", O_RDWR | O_CLOEXEC);
                     if (null >= 0) {
                       for (int fd : mine.fds) ::dup3(null, fd, O_CLOEXEC);
                       ::close(null);
                     }
                     mine.mu.unlock();
                   });
    return h;
  }();
  return *held;
}

}  // namespace

Fd::Fd(int fd) : fd_(fd) {
  if (fd_ < 0) return;
  HeldFds& h = heldFds();
  std::lock_guard<std::mutex> lock(h.mu);
  h.fds.insert(fd_);
}

Fd& Fd::operator=(Fd&& o) noexcept {
  if (this != &o) {
    reset();
    fd_ = std::exchange(o.fd_, -1);
  }
  return *this;
}

void Fd::reset() {
  if (fd_ < 0) return;
  HeldFds& h = heldFds();
  std::lock_guard<std::mutex> lock(h.mu);  // closed under the lock: a fork sees it held or gone
  h.fds.erase(fd_);
  ::close(std::exchange(fd_, -1));
}

static Fd newSocket(int family) {
  return Fd(static_cast<int>(checkSys(::socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), "socket")));
}

Fd listenOn(const NetAddr& addr) {
  Fd fd = newSocket(addr.family);
  int one = 1;
  setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_storage ss;
  socklen_t len = addr.toSockaddr(&ss);
  checkSys(::bind(fd.get(), reinterpret_cast<sockaddr*>(&ss), len), "bind", "binding " + addr.str());
  checkSys(::listen(fd.get(), 4096), "listen", "listening on " + addr.str());
  return fd;
}

NetAddr localAddress(int fd) {
  sockaddr_storage ss;
  socklen_t len = sizeof(ss);
  checkSys(::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len), "getsockname");
  return NetAddr::fromSockaddr(reinterpret_cast<sockaddr*>(&ss));
}

bool pollFor(int fd, short events, Deadline deadline) {
  for (;;) {
    pollfd p{fd, events, 0};
    int rc = ::poll(&p, 1, deadline.remainingMs(100));
    if (rc > 0) return true;
    if (rc < 0 && errno != EINTR) throw SystemError("poll", errno);
    if (deadline.expired()) return false;
  }
}

bool connectionEnds(int fd, NetAddr* mine, NetAddr* theirs) {
  sockaddr_storage a{}, b{};
  socklen_t an = sizeof(a), bn = sizeof(b);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&a), &an) != 0 ||
      getpeername(fd, reinterpret_cast<sockaddr*>(&b), &bn) != 0 || a.ss_family != b.ss_family)
    return false;
  *mine = NetAddr::fromSockaddr(reinterpret_cast<sockaddr*>(&a));
  *theirs = NetAddr::fromSockaddr(reinterpret_cast<sockaddr*>(&b));
  return true;
}

namespace {

bool isSelfConnected(int fd) {
  NetAddr mine, theirs;
  return connectionEnds(fd, &mine, &theirs) && mine.port == theirs.port && mine.sameHost(theirs);
}

}  // namespace

std::string localInterfaceDown(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "";
  const NetAddr mine = NetAddr::fromSockaddr(reinterpret_cast<const sockaddr*>(&ss));
  if (mine.isLoopback()) return "";
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return "";
  std::string found, down;
  for (ifaddrs* i = list; i; i = i->ifa_next) {
    if (!i->ifa_addr || (i->ifa_addr->sa_family != AF_INET && i->ifa_addr->sa_family != AF_INET6)) continue;
    if (!NetAddr::fromSockaddr(i->ifa_addr).sameHost(mine)) continue;
    found = i->ifa_name;
    if (!(i->ifa_flags & IFF_UP) || !(i->ifa_flags & IFF_RUNNING)) down = i->ifa_name;
  }
  freeifaddrs(list);
  if (!down.empty()) return "this host's interface " + down + " (" + mine.hostStr() + ") is down";
  if (found.empty()) return "this host's address " + mine.hostStr() + " is gone from its interfaces";
  return "";
}

Fd Dialer::step(Deadline deadline) {
  for (;;) {
    int err;
    if (!fd_.valid()) {
      if (Clock::now() < retryAt_) {
        // Past the deadline in a retry's backoff: a caller polling with the deadline's 0 ms left
        // spun until the retry (helper-102).
        if (deadline.expired())
          throw Timeout("connecting to " + addr_.str() + " timed out: " + std::strerror(lastErr_));
        return Fd();
      }
      fd_ = newSocket(addr_.family);
      sockaddr_storage ss;
      const socklen_t len = addr_.toSockaddr(&ss);
      err = ::connect(fd_.get(), reinterpret_cast<sockaddr*>(&ss), len) == 0 ? 0 : errno;
    } else {
      pollfd p{fd_.get(), POLLOUT, 0};
      if (::poll(&p, 1, 0) == 0)
        err = EINPROGRESS;  // still connecting
      else {
        socklen_t elen = sizeof(err);
        getsockopt(fd_.get(), SOL_SOCKET, SO_ERROR, &err, &elen);
      }
    }
    if (err == EINPROGRESS) {
      if (deadline.expired()) throw Timeout("connecting to " + addr_.str() + " timed out");
      return Fd();
    }
    // Connected to itself: while no one listens on a local port of the ephemeral range, the
    // kernel may pick that very port as the source, and TCP's simultaneous open then connects
    // the socket to itself (and holds the port the listener is about to bind). As refused.
    if (err == 0 && isSelfConnected(fd_.get())) err = ECONNREFUSED;
    if (err == 0) return std::move(fd_);
    fd_.reset();
    // Refused or reset: the listener is not up yet. No route, or the network down: a link that
    // may come back (a cable, a switch, an interface coming up late). Try again until the deadline.
    const bool transient = err == ECONNRESET || err == ETIMEDOUT || err == EAGAIN || err == EHOSTUNREACH ||
                           err == ENETUNREACH || err == EHOSTDOWN || err == ENETDOWN;
    if ((err != ECONNREFUSED || !retryRefused_) && !transient) {
      throw SystemError("connect", err, "connecting to " + addr_.str());
    }
    if (deadline.expired()) throw Timeout("connecting to " + addr_.str() + " timed out: " + std::strerror(err));
    lastErr_ = err;
    retryAt_ = Clock::now() + std::chrono::milliseconds(backoffMs_);
    backoffMs_ = std::min(backoffMs_ * 2, 100);
  }
}

Fd connectTo(const NetAddr& addr, Deadline deadline, bool retryRefused) {
  Dialer dialer(addr, retryRefused);
  for (;;) {
    if (Fd fd = dialer.step(deadline); fd.valid()) return fd;
    if (dialer.pollFd() >= 0) {
      pollFor(dialer.pollFd(), POLLOUT, deadline);
    } else {
      std::this_thread::sleep_until(std::min(dialer.retryAt(), Clock::now() + std::chrono::milliseconds(100)));
    }
  }
}

Fd acceptReady(int listenFd, int* shortage) {
  *shortage = 0;
  for (;;) {
    int fd = ::accept4(listenFd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) return Fd(fd);
    // A connection that failed before it was accepted: Linux passes its network error on
    // through accept, and accept(2) asks to retry as for EAGAIN. The listener is fine.
    if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO || errno == ENETDOWN || errno == ENOPROTOOPT ||
        errno == EHOSTDOWN || errno == ENONET || errno == EHOSTUNREACH || errno == EOPNOTSUPP || errno == ENETUNREACH)
      continue;
    if (isLocalShortage(errno)) {
      // Linux takes the descriptor before it looks at the queue, so this comes with no
      // connection waiting too: a shortage only counts when one is (it stays queued).
      const int err = errno;
      pollfd queued{listenFd, POLLIN, 0};
      if (::poll(&queued, 1, 0) == 1 && (queued.revents & POLLIN)) *shortage = err;
      return Fd();
    }
    if (errno != EAGAIN && errno != EWOULDBLOCK) throw SystemError("accept4", errno);
    return Fd();
  }
}

Fd acceptUntil(int listenFd, Deadline deadline) {
  for (;;) {
    int shortage = 0;
    Fd fd = acceptReady(listenFd, &shortage);
    if (fd.valid()) return fd;
    if (shortage) throw SystemError("accept4", shortage, "accepting a connection");
    if (!pollFor(listenFd, POLLIN, deadline)) return Fd();
  }
}

void sendAll(int fd, const void* buf, size_t n, Deadline deadline) { sendAllServing(fd, buf, n, deadline, -1, {}); }

void sendAllServing(int fd, const void* buf, size_t n, Deadline deadline, int watchFd,
                    const std::function<void()>& onReadable) {
  auto* p = static_cast<const char*>(buf);
  while (n > 0) {
    ssize_t rc = ::send(fd, p, n, MSG_NOSIGNAL);
    if (rc > 0) {
      p += rc;
      n -= static_cast<size_t>(rc);
      continue;
    }
    if (rc < 0 && errno == EINTR) continue;
    if (rc < 0 && (errno == EPIPE || errno == ECONNRESET)) throw ConnectionClosed("connection closed by peer");
    if (rc < 0 && errno != EAGAIN && errno != EWOULDBLOCK) throw SystemError("send", errno);
    pollfd fds[2] = {{fd, POLLOUT, 0}, {watchFd, POLLIN, 0}};
    int ready = ::poll(fds, watchFd >= 0 ? 2 : 1, deadline.remainingMs(100));
    if (ready < 0 && errno != EINTR) throw SystemError("poll", errno);
    if (watchFd >= 0 && (fds[1].revents & POLLIN)) onReadable();
    // Whatever poll said: a listener that stays readable (nothing to accept while out of
    // descriptors) or a stream of signals must not keep this loop past its deadline.
    if (deadline.expired()) throw Timeout("send timed out");
  }
}

void recvAll(int fd, void* buf, size_t n, Deadline deadline) {
  auto* p = static_cast<char*>(buf);
  while (n > 0) {
    ssize_t rc = ::recv(fd, p, n, 0);
    if (rc > 0) {
      p += rc;
      n -= static_cast<size_t>(rc);
      continue;
    }
    if (rc == 0) throw ConnectionClosed("connection closed by peer");
    if (errno == EINTR) continue;
    if (errno == ECONNRESET) throw ConnectionClosed("connection reset by peer");
    if (errno != EAGAIN && errno != EWOULDBLOCK) throw SystemError("recv", errno);
    if (!pollFor(fd, POLLIN, deadline)) throw Timeout("receive timed out");
  }
}

namespace {

// Both ends of the connection are addresses of this host: its bytes never leave the kernel.
bool staysInHost(int fd) {
  NetAddr mine, theirs;
  return connectionEnds(fd, &mine, &theirs) && (mine.sameHost(theirs) || theirs.isLoopback());
}

}  // namespace

void closeGracefully(std::vector<Fd>& fds, Deadline deadline) {
  std::vector<pollfd> open;
  for (const Fd& f : fds) {
    if (f.valid() && ::shutdown(f.get(), SHUT_WR) == 0) open.push_back({f.get(), POLLIN, 0});
  }
  char sink[4096];
  while (!open.empty()) {
    const int ready = ::poll(open.data(), open.size(), deadline.remainingMs());
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) break;  // the deadline: a peer that does not close is not waited for
    for (size_t i = 0; i < open.size();) {
      ssize_t n = 1;
      if (open[i].revents) {
        while ((n = ::recv(open[i].fd, sink, sizeof(sink), MSG_DONTWAIT)) > 0) {
        }
      }
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        open.erase(open.begin() + static_cast<std::ptrdiff_t>(i));  // closed (or broken) at the far end
      } else {
        ++i;
      }
    }
  }
  for (Fd& f : fds) f.reset();
}

std::string tuneDataSocket(int fd, const std::string& congestion) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  // Buffer sizes are left to the kernel's autotuning: an explicit SO_SNDBUF/SO_RCVBUF is capped
  // by net.core.[rw]mem_max (about 200 KiB by default) and turns autotuning off.
  //
  // Congestion control: a pacing one (BBR, the default on some distributions and clouds) sends a
  // connection's segments on a timer at its bandwidth estimate. Within one host there is no
  // network to pace for, and on the development VM a 2-rank all-reduce over loopback under BBR
  // ran in one of two modes for a process's whole life, 1.5x apart (BBR still in its start-up
  // phase, or pacing); without pacing that split went away (docs/design-notes.md).
  // Reno is the one every process may choose (tcp_allowed_congestion_control).
  if (congestion == "system") return "";
  const std::string want = !congestion.empty() ? congestion : staysInHost(fd) ? "reno" : "";
  if (want.empty()) return "";
  if (setsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, want.data(), static_cast<socklen_t>(want.size())) == 0) return want;
  if (congestion.empty()) return "";  // our own choice: the system's stays
  throw InvalidArgument("LOCKSTEP_SOCKET_CC=" + congestion + ": the kernel refused this congestion control (" +
                        std::strerror(errno) +
                        "); see /proc/sys/net/ipv4/tcp_allowed_congestion_control for those a process may "
                        "choose, or use \"system\"");
}

}  // namespace lockstep
