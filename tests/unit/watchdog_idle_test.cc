// What the watchdogs of an idle communicator cost. Every rank hears from every other, so the
// cost of one rank's watchdog grows with N, and all of them together as N^2: each wake to read a
// heartbeat polled every peer, and every interval a rank sent N - 1 heartbeats that said nothing
// new (1-1.6 % of a core per idle rank at 64 ranks, helper-99).
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <chrono>
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

}  // namespace
}  // namespace lockstep
