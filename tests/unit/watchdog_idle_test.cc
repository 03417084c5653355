// What the watchdogs of an idle or a busy communicator cost. Every rank hears from every other, so the
// cost of one rank's watchdog grows with N, and all of them together as N^2: each wake to read a
// heartbeat polled every peer, and every interval a rank sent N - 1 heartbeats that said nothing
// new (1-1.6 % of a core per idle rank at 64 ranks, helper-99).
#include <dirent.h>
#include <gtest/gtest.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <chrono>
#include <cstdlib>
#include <thread>
#include <vector>

#include "lockstep/lockstep.h"
#include "tests/common/thread_comms.h"

namespace lockstep {
namespace {

struct Usage {
  double cpuSeconds;
  long wakes;  // voluntary context switches: a thread blocked, here a watchdog's poll
};

Usage processUsage() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  auto s = [](const timeval& t) { return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) * 1e-6; };
  return Usage{s(u.ru_utime) + s(u.ru_stime), u.ru_nvcsw};
}

// 32 ranks as threads, idle for 2 s after one all-reduce. An idle rank hears a keepalive from
// each of its 31 peers every 500 ms and reads what has come at most once per read gap (8 ms at
// 32 ranks): 10-12 wakes a second here. It heard 5 heartbeats a second from each and woke for
// most of them before: 56-102. Only the wakes are judged; CPU time is printed, too noisy here.
TEST(WatchdogIdle, AnIdleRanksWatchdogWakesAFewTimesASecondWhateverTheRankCount) {
  constexpr int kRanks = 32;
  setenv("LOCKSTEP_TIMEOUT", "30", 1);
  std::vector<lockstepComm_t> comms = testing::initThreadComms(kRanks);
  testing::onThreads(kRanks, [&](int r) {
    float x = 1;
    EXPECT_EQ(lockstepAllReduce(&x, &x, 1, lockstepFloat32, lockstepSum, comms[r], nullptr), lockstepSuccess);
    EXPECT_EQ(x, float(kRanks));
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // heartbeats of the op settle
  const Usage before = processUsage();
  const auto start = std::chrono::steady_clock::now();
  std::this_thread::sleep_for(std::chrono::seconds(2));
  const Usage after = processUsage();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double wakesPerRankSecond = static_cast<double>(after.wakes - before.wakes) / kRanks / seconds;
  const double cpuPerRank = (after.cpuSeconds - before.cpuSeconds) / kRanks / seconds;
  std::printf("idle %d ranks: %.1f wakes per rank per second, %.3f %% of a core per rank\n", kRanks, wakesPerRankSecond,
              100 * cpuPerRank);
  EXPECT_LT(wakesPerRankSecond, 30.0) << "an idle watchdog wakes for each peer's heartbeat";
  testing::destroyAll(comms);
  unsetenv("LOCKSTEP_TIMEOUT");
}

// What this process's TCP connections have sent: thread ranks exchange their data over inproc
// links, so these are the watchdogs' control connections (and the bootstrap's, quiet after init).
struct TcpSent {
  uint64_t segments = 0, bytes = 0;
};

TcpSent tcpSent() {
  TcpSent sum;
  DIR* dir = opendir("/proc/self/fd");
  if (!dir) return sum;
  while (dirent* e = readdir(dir)) {
    const int fd = std::atoi(e->d_name);
    int protocol = 0;
    socklen_t len = sizeof(protocol);
    if (e->d_name[0] == '.' || getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &protocol, &len) != 0 || protocol != IPPROTO_TCP)
      continue;
    tcp_info info{};
    len = sizeof(info);
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) != 0) continue;
    sum.segments += info.tcpi_data_segs_out;
    sum.bytes += info.tcpi_bytes_acked;
  }
  closedir(dir);
  return sum;
}

// 4 ranks as threads, making progress for 2 s (back-to-back all-reduces of one float). A rank's
// state changes between every two of its watchdog's ticks: it sends only the keepalive, two
// messages a second per peer, each a 96-byte header and the last 16 ops it entered (384 bytes).
// It sent every peer its state every tick (5 a second), 480 bytes each, before: 2400 bytes a
// second per peer against 960.
TEST(WatchdogBusy, ARankMakingProgressSendsItsPeersOnlyKeepalives) {
  constexpr int kRanks = 4;
  setenv("LOCKSTEP_TIMEOUT", "30", 1);
  std::vector<lockstepComm_t> comms = testing::initThreadComms(kRanks);
  std::this_thread::sleep_for(std::chrono::milliseconds(600));  // the idle ranks' first keepalives
  const TcpSent before = tcpSent();
  const auto start = std::chrono::steady_clock::now();
  std::vector<long> ops(kRanks, 0);
  testing::onThreads(kRanks, [&](int r) {
    // Rank 0 says when to stop, through the data, so that every rank makes the same calls.
    for (float x = 0; x < 0.5f; ++ops[r]) {
      x = r == 0 && std::chrono::steady_clock::now() - start > std::chrono::seconds(2) ? 1 : 0;
      if (lockstepAllReduce(&x, &x, 1, lockstepFloat32, lockstepSum, comms[r], nullptr) != lockstepSuccess) {
        ADD_FAILURE() << "rank " << r << ": " << lockstepGetLastError(comms[r]);
        break;
      }
    }
  });
  const TcpSent after = tcpSent();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double messages = static_cast<double>(after.segments - before.segments);
  const double perPeerSecond = messages / (kRanks * (kRanks - 1)) / seconds;
  const double bytesPerPeerSecond = static_cast<double>(after.bytes - before.bytes) / (kRanks * (kRanks - 1)) / seconds;
  std::printf("busy %d ranks, %ld ops each in %.2f s: %.2f messages and %.0f bytes per peer per second\n", kRanks,
              ops[0], seconds, perPeerSecond, bytesPerPeerSecond);
  EXPECT_GT(ops[0], 100) << "the ranks made no progress to speak of";
  EXPECT_GT(perPeerSecond, 1.0) << "no keepalives: peers would count these ranks stopped";
  EXPECT_LT(perPeerSecond, 3.5) << "a busy rank sends its peers news that is stale at once";
  EXPECT_LT(bytesPerPeerSecond, 1500.0) << "heartbeats carry more than the ops they name";
  testing::destroyAll(comms);
  unsetenv("LOCKSTEP_TIMEOUT");
}

}  // namespace
}  // namespace lockstep
