// tcp_ceiling: the loopback TCP traffic of a 2-rank all-reduce over sockets, with nothing else.
//
// A 2-rank all-reduce of B bytes makes each rank send B bytes and receive B bytes (the ring's two
// halves, or recursive doubling's one exchange), at once in both directions. Two processes do
// exactly that over one loopback connection (TCP_NODELAY, kernel-autotuned buffers): each sends
// B while it receives B, non-blocking, busy-polling, no copy or reduction of its own, from and
// into one page-aligned 256 KiB buffer each that stays in cache (an all-reduce must also read its
// input and write its output; this leaves only TCP's own work). B / time bounds what an all-reduce
// that moves those bytes over one TCP connection can reach (busbw = algbw at 2 ranks), in the
// same conditions: on a noisy VM, only when run interleaved with it. It replaces a Python version
// whose own overhead made it read below what OpenMPI reached over the same loopback.
//
// Two details decide whether it bounds anything (EPYC VM, 2026-12-05, 16 MiB, interleaved):
//  - the buffers are page-aligned: from a std::vector (malloc's 16-byte offset into its mapping)
//    the kernel's copies ran at 1.1-1.7 GB/s, page-aligned at 2.1-3.3;
//  - like the perf drivers, a sample times back-to-back exchanges (about 64 MiB of them) after one
//    barrier, so consecutive exchanges overlap as consecutive all-reduces do: 3.2-5.4 GB/s, where
//    one exchange per barrier read 2.0-3.0 and Lockstep's all-reduce 2.2-2.4.
//
// Its connection is tuned by the socket transport's own tuneDataSocket (reno on loopback:
// BBR, the system's default on the development VM, paces a connection at its bandwidth estimate
// and put whole runs 1.5x behind; src/net/socket.cc).
//
// With -m (memory), each process also does with memory what the all-reduce must: it sends from a
// buffer of B bytes (its input) and, as Lockstep does, receives each piece into the 256 KiB buffer
// and copies it from there into a second B-byte buffer (its output), with the library's
// non-temporal copy where Lockstep streams its output (from 8 MiB: host_executor.cc). Left out are
// the arithmetic and which copy reads what: the all-reduce reads half its input in its reductions
// rather than in the kernel's send copy, sends its reduced half in place of that half of its
// input, and reduces half of what it receives instead of copying it. So -m is what moving an
// all-reduce's bytes through memory and one TCP connection costs here: an all-reduce whose
// reductions were free would reach it, no real one can pass it by much. Without -m, both buffers
// stay in cache, and at large sizes it bounds nothing: an all-reduce must also read its input and
// write its output. (Given buffers of the exchange's size and receiving straight into them, the
// tool read 1.8-2.9 GB/s at 16-64 MiB, below Lockstep's 3.2-3.6: the copy through a cached buffer
// is what -m keeps.)
//
// It prints the perf drivers' table (size, count, type, redop, root, time, algbw, busbw, #wrong),
// so perf/compare runs it interleaved with Lockstep and the anchors (the "tcp-ceiling" column, and
// "tcp-memory" for -m).
//
//   build/perf/tcp_ceiling [-m] [-b 64K] [-e 256M] [-f 4] [-r 5]
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

#include "kernels/cpu_reduce.h"
#include "src/net/socket.h"

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

constexpr size_t kChunk = 256 << 10;

// Lockstep streams outputs from this size on (its default on the development VM: a quarter of the
// L3, at most 8 MiB; host_executor.cc).
constexpr size_t kStreamFrom = size_t{8} << 20;

// Where the bytes of one exchange come from and go.
struct Buffers {
  const char* out;  // sent from: kChunk bytes reused, or (memory mode) `bytes` bytes
  char* in;         // received into: kChunk bytes, reused
  char* output;     // memory mode: where received bytes are copied from `in`; else null
};

// Sends `bytes` from b.out while receiving `bytes` into b.in (kChunk at a time), both at once.
// Busy: a process asleep in poll takes up to milliseconds to wake on a VM, which would make the
// bound slower than what it bounds.
void exchange(int fd, const Buffers& b, size_t bytes) {
  size_t sent = 0, got = 0;
  while (sent < bytes || got < bytes) {
    bool moved = false;
    if (sent < bytes) {
      // At most to the next kChunk boundary, in the memory mode too: Lockstep sends 256 KiB frames.
      const size_t off = b.output ? sent : sent % kChunk;
      ssize_t n = ::send(fd, b.out + off, std::min(kChunk - off % kChunk, bytes - sent), MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n < 0 && errno != EAGAIN) die("send");
      if (n > 0) {
        sent += static_cast<size_t>(n);
        moved = true;
      }
    }
    if (got < bytes) {
      const size_t off = got % kChunk;
      ssize_t n = ::recv(fd, b.in + off, std::min(kChunk - off, bytes - got), MSG_DONTWAIT);
      if (n == 0) die("peer closed");
      if (n < 0 && errno != EAGAIN) die("recv");
      if (n > 0) {
        if (b.output && bytes >= kStreamFrom)
          lockstep::streamCopy(b.output + got, b.in + off, static_cast<size_t>(n));
        else if (b.output)
          std::memcpy(b.output + got, b.in + off, static_cast<size_t>(n));
        got += static_cast<size_t>(n);
        moved = true;
      }
    }
    if (!moved) {
      pollfd p{fd, static_cast<short>((got < bytes ? POLLIN : 0) | (sent < bytes ? POLLOUT : 0)), 0};
      if (::poll(&p, 1, 0) < 0) die("poll");
    }
  }
}

// Both ends start together: one byte each way (received busily, as above).
void barrier(int fd) {
  char c = 'g';
  if (::send(fd, &c, 1, MSG_NOSIGNAL) != 1) die("send");
  for (;;) {
    ssize_t n = ::recv(fd, &c, 1, MSG_DONTWAIT);
    if (n == 1) return;
    if (n == 0 || (n < 0 && errno != EAGAIN)) die("recv");
  }
}

}  // namespace

int main(int argc, char** argv) {
  size_t minBytes = 64 << 10, maxBytes = 256 << 20, factor = 4;
  int runs = 5;
  bool memory = false;
  for (int i = 1; i < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "-m") {
      memory = true;
      --i;  // takes no value
      continue;
    }
    const bool help = flag == "-h" || flag == "--help";
    if (help || i + 1 == argc) {
      std::fprintf(help ? stdout : stderr, "usage: %s [-m] [-b 64K] [-e 256M] [-f 4] [-r 5]\n", argv[0]);
      return help ? 0 : 2;
    }
    if (flag == "-b") {
      minBytes = parseSize(argv[i + 1]);
    } else if (flag == "-e") {
      maxBytes = parseSize(argv[i + 1]);
    } else if (flag == "-f") {
      factor = std::max<size_t>(2, parseSize(argv[i + 1]));
    } else if (flag == "-r") {
      runs = std::max(1, std::atoi(argv[i + 1]));
    } else {
      std::fprintf(stderr, "usage: %s [-m] [-b 64K] [-e 256M] [-f 4] [-r 5]\n", argv[0]);
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
  // Tuned as the socket transport tunes its data connections (TCP_NODELAY; reno on loopback, or
  // LOCKSTEP_SOCKET_CC), so that this bounds the same connection.
  try {
    const char* cc = std::getenv("LOCKSTEP_SOCKET_CC");
    lockstep::tuneDataSocket(fd, cc ? cc : "");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tcp_ceiling: %s\n", e.what());
    std::exit(2);
  }
  // Page-aligned, and touched before timing (no page faults in the samples).
  const size_t outBytes = memory ? std::max(maxBytes, kChunk) : kChunk;
  char* out = static_cast<char*>(std::aligned_alloc(4096, (outBytes + 4095) & ~size_t{4095}));
  char* in = static_cast<char*>(std::aligned_alloc(4096, kChunk));
  char* output = memory ? static_cast<char*>(std::aligned_alloc(4096, (outBytes + 4095) & ~size_t{4095})) : nullptr;
  if (!out || !in || (memory && !output)) die("aligned_alloc");
  std::memset(out, 1, outBytes);
  std::memset(in, 0, kChunk);
  if (output) std::memset(output, 0, outBytes);
  const Buffers buffers{out, in, output};
  if (child != 0) {
    std::printf("# tcp loopback ceiling%s, 2 processes, B bytes each way at once, back to back; median of %d runs\n",
                memory ? " (memory: from a B-byte input, into a B-byte output through a 256 KiB buffer)" : "", runs);
    std::printf("# %12s %12s %8s %6s %6s %10s %8s %8s %6s\n", "size (B)", "count", "type", "redop", "root", "time (us)",
                "algbw", "busbw", "#wrong");
  }
  for (size_t bytes = minBytes; bytes <= maxBytes; bytes *= factor) {
    const int reps = static_cast<int>(std::clamp<size_t>((size_t{64} << 20) / bytes, 1, 1000));
    std::vector<double> us;
    for (int r = 0; r <= runs; ++r) {  // the first run warms up the connection
      barrier(fd);
      auto t0 = std::chrono::steady_clock::now();
      for (int k = 0; k < reps; ++k) exchange(fd, buffers, bytes);
      us.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() / reps);
    }
    us.erase(us.begin());
    std::sort(us.begin(), us.end());
    const double median = us[us.size() / 2];
    const double gbps = bytes / median / 1e3;  // busbw = algbw at 2 ranks
    if (child != 0)
      std::printf("  %12zu %12zu %8s %6s %6d %10.2f %8.3f %8.3f %6d\n", bytes, bytes / 4, "float", "none", -1, median,
                  gbps, gbps, 0);
  }
  ::close(fd);
  std::free(out);
  std::free(in);
  std::free(output);
  if (child == 0) return 0;
  int status = 0;
  ::waitpid(child, &status, 0);
  return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}
