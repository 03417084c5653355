// tcp_ceiling: the loopback TCP traffic of a 2-rank all-reduce over sockets, with nothing else.
//
// A 2-rank all-reduce of B bytes makes each rank send B bytes and receive B bytes (the ring's two
// halves, or recursive doubling's one exchange), at once in both directions. Two processes do
// exactly that over one loopback connection (TCP_NODELAY, kernel-autotuned buffers): each sends
// B from one buffer while it receives B into another, non-blocking under poll, no copy or
// reduction of its own. B / time bounds what an all-reduce that moves those bytes over one TCP
// connection can reach (busbw = algbw at 2 ranks), in the same conditions: on a noisy VM, only
// when run interleaved with it. It replaces a Python version whose own
// overhead made it read below what OpenMPI reached over the same loopback.
//
//   build/perf/tcp_ceiling [-b 64K] [-e 256M] [-f 4] [-r 5]
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

[[noreturn]] void die(const char* what) {
  std::perror(what);
  std::exit(2);
}

size_t parseSize(const char* text) {
  char* end = nullptr;
  double v = std::strtod(text, &end);
  switch (*end) {
    case 'K':
    case 'k':
      v *= 1 << 10;
      break;
    case 'M':
    case 'm':
      v *= 1 << 20;
      break;
    case 'G':
    case 'g':
      v *= 1 << 30;
      break;
    default:
      break;
  }
  return static_cast<size_t>(v);
}

// Sends `bytes` from `out` while receiving `bytes` into `in`, both at once.
void exchange(int fd, const char* out, char* in, size_t bytes) {
  size_t sent = 0, got = 0;
  while (sent < bytes || got < bytes) {
    pollfd p{fd, static_cast<short>((got < bytes ? POLLIN : 0) | (sent < bytes ? POLLOUT : 0)), 0};
    if (::poll(&p, 1, 10000) <= 0) die("poll");
    if (sent < bytes && (p.revents & POLLOUT)) {
      ssize_t n = ::send(fd, out + sent, bytes - sent, MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n < 0 && errno != EAGAIN) die("send");
      if (n > 0) sent += static_cast<size_t>(n);
    }
    if (got < bytes && (p.revents & (POLLIN | POLLHUP | POLLERR))) {
      ssize_t n = ::recv(fd, in + got, bytes - got, MSG_DONTWAIT);
      if (n == 0) die("peer closed");
      if (n < 0 && errno != EAGAIN) die("recv");
      if (n > 0) got += static_cast<size_t>(n);
    }
  }
}

// Both ends start together: one byte each way.
void barrier(int fd) {
  char c = 'g';
  if (::send(fd, &c, 1, MSG_NOSIGNAL) != 1) die("send");
  if (::recv(fd, &c, 1, MSG_WAITALL) != 1) die("recv");
}

}  // namespace

int main(int argc, char** argv) {
  size_t minBytes = 64 << 10, maxBytes = 256 << 20, factor = 4;
  int runs = 5;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "-b") {
      minBytes = parseSize(argv[i + 1]);
    } else if (flag == "-e") {
      maxBytes = parseSize(argv[i + 1]);
    } else if (flag == "-f") {
      factor = std::max<size_t>(2, parseSize(argv[i + 1]));
    } else if (flag == "-r") {
      runs = std::max(1, std::atoi(argv[i + 1]));
    } else {
      std::fprintf(stderr, "usage: %s [-b 64K] [-e 256M] [-f 4] [-r 5]\n", argv[0]);
      return 2;
    }
  }
  int listener = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (listener < 0 || ::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::listen(listener, 1) != 0 || ::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len) != 0)
    die("listen");
  const pid_t child = ::fork();
  if (child < 0) die("fork");
  int fd;
  if (child == 0) {
    fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) die("connect");
  } else {
    fd = ::accept(listener, nullptr, nullptr);
    if (fd < 0) die("accept");
  }
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  std::vector<char> out(maxBytes, 1), in(maxBytes, 0);  // touched: no page faults while timed
  if (child != 0) std::printf("# tcp loopback, 2 processes, B bytes each way at once; median of %d runs\n", runs);
  if (child != 0) std::printf("#        size    time (us)   busbw (GB/s)\n");
  for (size_t bytes = minBytes; bytes <= maxBytes; bytes *= factor) {
    std::vector<double> us;
    for (int r = 0; r <= runs; ++r) {  // the first run warms up the connection
      barrier(fd);
      auto t0 = std::chrono::steady_clock::now();
      exchange(fd, out.data(), in.data(), bytes);
      us.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
    }
    us.erase(us.begin());
    std::sort(us.begin(), us.end());
    const double median = us[us.size() / 2];
    if (child != 0) std::printf("%14zu %12.1f %12.2f\n", bytes, median, bytes / median / 1e3);
  }
  ::close(fd);
  if (child == 0) return 0;
  int status = 0;
  ::waitpid(child, &status, 0);
  return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}
