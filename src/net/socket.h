// Small TCP helpers shared by the bootstrap and the socket transport. All sockets are
// non-blocking and close-on-exec; every blocking-looking call takes a Deadline.
#pragma once

#include <netdb.h>
#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "src/core/clock.h"
#include "src/core/errors.h"

namespace lockstep {

// An IPv4 or IPv6 address and port in a fixed, trivially copyable form (it travels in the unique
// id and in PeerInfo). Port in host byte order.
struct NetAddr {
  uint16_t family = 0;  // AF_INET or AF_INET6; 0 = unset
  uint16_t port = 0;
  uint8_t addr[16] = {};

  bool valid() const;
  std::string str() const;      // "1.2.3.4:5" or "[::1]:5"
  std::string hostStr() const;  // "1.2.3.4" or "::1": without the port
  socklen_t toSockaddr(sockaddr_storage* ss) const;
  static NetAddr fromSockaddr(const sockaddr* sa);
  // Parses "host:port" or "[v6]:port"; a name is looked up by `resolveBy` (src/net/resolve.h),
  // and is its first IPv4 address. `addresses`, when given, receives all of the name's addresses
  // of the family taken (port 0). Throws InvalidArgument, or Timeout where no answer came.
  static NetAddr parse(const std::string& hostPort, Deadline resolveBy = Deadline::never(),
                       std::vector<NetAddr>* addresses = nullptr);
  static NetAddr loopback(uint16_t port = 0);
  bool isLoopback() const;
  bool isLinkLocal() const;
  bool sameHost(const NetAddr& o) const;  // the same family and address, whatever the ports
};
static_assert(sizeof(NetAddr) == 20);

// Of a name's resolved addresses, the one every host takes: its first IPv4 one, else the first.
// glibc orders a name's addresses by each host's own addresses (RFC 6724), so for a name with
// both families the first one was IPv6 on a host with an IPv6 address and IPv4 on the others:
// rank 0 listened on one family and the others dialled the other until the timeout (helper-87).
// An IPv6 rendezvous is asked for with a literal address ("[fd00::1]:29500").
const struct addrinfo* preferredAddress(const struct addrinfo* list);

// The peer closed the connection. Callers that know who the peer is turn it into RemoteError.
struct ConnectionClosed : Error {
  explicit ConnectionClosed(const std::string& w) : Error(lockstepRemoteError, w) {}
};

// Owns a file descriptor. Every one the library holds is known, so that a child forked from the
// process lets go of them (see forgetInheritedFds in socket.cc): its copies of a rank's sockets
// kept the connections open after the rank died, and the peers, told nothing, waited out their
// timeout.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd);
  Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Fd& operator=(Fd&& o) noexcept;
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  void reset();

 private:
  int fd_ = -1;
};

// Listens on `addr` (port 0 picks a free port). The backlog is large so that connects complete
// before this side accepts, which keeps connection setup free of ordering deadlocks.
Fd listenOn(const NetAddr& addr);
NetAddr localAddress(int fd);
// A connected socket's two ends, of one family; false if either cannot be read.
bool connectionEnds(int fd, NetAddr* mine, NetAddr* theirs);

// Connects, retrying refused connections (the listener may not be up yet) until the deadline;
// with retryRefused false, a refusal is a SystemError (ECONNREFUSED) at once.
Fd connectTo(const NetAddr& addr, Deadline deadline, bool retryRefused = true);

// connectTo without blocking, for a rank that connects to many peers while it serves others:
// step() moves it on and returns the connected socket once there; it throws what connectTo
// throws. Between steps, poll pollFd() for POLLOUT (-1: nothing to poll, a retry waits until
// retryAt()).
class Dialer {
 public:
  Dialer(const NetAddr& addr, bool retryRefused) : addr_(addr), retryRefused_(retryRefused) {}
  Fd step(Deadline deadline);
  int pollFd() const { return fd_.valid() ? fd_.get() : -1; }
  Clock::time_point retryAt() const { return retryAt_; }

 private:
  NetAddr addr_;
  bool retryRefused_;
  Fd fd_;                        // the connection under way
  Clock::time_point retryAt_{};  // when the next attempt may start
  int backoffMs_ = 1;
  int lastErr_ = 0;  // why the last attempt failed, for a timeout in its backoff
};
// What keeps a connected socket's bytes from leaving this host, for timeout messages: "this
// host's interface eth0 (10.0.0.2) is down", or its address is gone; "" when neither (or for
// loopback, or where it cannot tell).
std::string localInterfaceDown(int fd);

// Accepts one connection without waiting. Invalid when none is queued, or when this process is
// out of descriptors or memory: then *shortage is that errno and the connection stays queued.
// Servers that hold unauthenticated connections drop their oldest to make room (a flood of
// strangers must not lock the ranks out); with none to drop, the shortage is the process's own.
Fd acceptReady(int listenFd, int* shortage);

// Accepts one connection; returns an invalid Fd if the deadline passes first. Throws
// SystemError when this process is out of descriptors.
Fd acceptUntil(int listenFd, Deadline deadline);

// Moves exactly n bytes. Throw Timeout at the deadline, ConnectionClosed at EOF, SystemError else.
void sendAll(int fd, const void* buf, size_t n, Deadline deadline);
// sendAll that, while the socket is full, also watches watchFd and calls onReadable() when it is
// readable (a rank sending to a peer keeps serving its own listener, so two cannot deadlock).
void sendAllServing(int fd, const void* buf, size_t n, Deadline deadline, int watchFd,
                    const std::function<void()>& onReadable);
void recvAll(int fd, void* buf, size_t n, Deadline deadline);

// Tuning for data connections: TCP_NODELAY, and the congestion control `congestion` names
// (LOCKSTEP_SOCKET_CC): "" picks reno for a connection that stays inside this host and leaves the
// system's choice elsewhere; "system" leaves it everywhere; any other name is set on every
// connection, and one the kernel refuses is an InvalidArgument. Returns what it set ("" if none).
std::string tuneDataSocket(int fd, const std::string& congestion);

// Closes connections so that what was last sent on them arrives. A socket closed with unread
// bytes resets its connection, and the reset throws away what its send queue still holds: a
// goodbye that Nagle's algorithm kept back behind an unacknowledged message was lost that way.
// So each write side is shut first (what is queued leaves at once, then a FIN), and what arrives
// is read and dropped until each peer closes too, or the deadline passes; then all are closed.
void closeGracefully(std::vector<Fd>& fds, Deadline deadline);

// Waits until fd is readable/writable (events as for poll); false at the deadline.
bool pollFor(int fd, short events, Deadline deadline);

}  // namespace lockstep
