// How a failure names the ranks it is about: every one in full up to a few, the rest as ranges,
// and the whole report relayed to the ranks that did not find it (not cut in its middle).
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "src/core/named_peers.h"
#include "tests/common/thread_comms.h"

namespace lockstep {
namespace {

TEST(NamedPeers, AFewAreNamedInFull) {
  NamedPeers list;
  for (int r = 1; r <= 6; ++r) list.add(r, "rank " + std::to_string(r) + " (h:1)", " (last completed op #0)");
  const std::string s = list.str();
  EXPECT_EQ(s.find("rank 1 (h:1) (last completed op #0), rank 2 (h:1)"), 0u) << s;
  EXPECT_NE(s.find("rank 6 (h:1) (last completed op #0)"), std::string::npos) << s;
  EXPECT_EQ(s.find("more"), std::string::npos) << s;
}

TEST(NamedPeers, TheRestAreRangesGroupedByWhatIsSaidOfThem) {
  NamedPeers list;
  for (int r = 0; r < 1000; ++r) {
    if (r == 500) continue;
    list.add(r, "rank " + std::to_string(r) + " (h:" + std::to_string(r) + ") silent for 900 ms",
             r == 700 ? " (last completed op #3)" : " (last completed op #4)");
  }
  const std::string s = list.str();
  EXPECT_NE(s.find("rank 5 (h:5) silent for 900 ms (last completed op #4), and 993 more: ranks 6-499, 501-699, "
                   "701-999 (last completed op #4), rank 700 (last completed op #3)"),
            std::string::npos)
      << s;
  EXPECT_LT(s.size(), 500u) << s;
}

// Scattered ranks (every other one of 4096 late) are sixteen runs and a count, not 12 KB.
TEST(NamedPeers, AGroupShowsSixteenRunsOfRanksAndCountsTheRest) {
  NamedPeers list;
  for (int r = 1; r < 4096; r += 2) list.add(r, "rank " + std::to_string(r), " (last completed op #0)");
  const std::string s = list.str();
  EXPECT_NE(s.find("and 2042 more: ranks 13, 15, 17, 19, 21, 23, 25, 27, 29, 31, 33, 35, 37, 39, 41, 43 and 2026 "
                   "more (last completed op #0)"),
            std::string::npos)
      << s;
  EXPECT_LT(s.size(), 400u) << s;
}

TEST(NamedPeers, PastEightGroupsTheRestAreInOtherStates) {
  NamedPeers list;
  for (int r = 0; r < 40; ++r) list.add(r, "rank " + std::to_string(r), " (op #" + std::to_string(r) + ")");
  const std::string s = list.str();
  // Ranks 6-13 each make a group; ranks 14-39 share the last.
  EXPECT_NE(s.find("and 34 more: rank 6 (op #6), rank 7 (op #7)"), std::string::npos) << s;
  EXPECT_NE(s.find("rank 13 (op #13), ranks 14-39 (in other states)"), std::string::npos) << s;
}

// Nine ranks, eight of which come late to an all-reduce: rank 0 times out and names the eight
// (six in full, then "and 2 more: ranks 7-8"); they hear it relayed when they come. The report
// used to travel in one control message's 384 bytes, cut in its middle: of twelve ranks, ranks
// 5-7 were named nowhere in the late ranks' errors. The timeout, which also bounds the setup, is
// 5 s, and the late ranks come 3 s after it: 2 s failed the setup of twelve ranks on a loaded
// machine or under TSan (helper-98).
TEST(FailureReport, ALongTimeoutReportIsRelayedWhole) {
  setenv("LOCKSTEP_TIMEOUT", "5", 1);
  const int n = 9;
  auto comms = testing::initThreadComms(n);
  unsetenv("LOCKSTEP_TIMEOUT");
  ASSERT_FALSE(::testing::Test::HasFailure());
  std::vector<std::string> what(n);
  testing::onThreads(n, [&](int r) {
    if (r > 0) std::this_thread::sleep_for(std::chrono::milliseconds(8000));
    float x = 1;
    if (lockstepAllReduce(&x, &x, 1, lockstepFloat32, lockstepSum, comms[r], nullptr) != lockstepSuccess)
      what[r] = lockstepGetLastError(comms[r]);
  });
  for (int r = 0; r < n; ++r) {
    EXPECT_NE(what[r].find("timed out"), std::string::npos) << "rank " << r << ": " << what[r];
    for (int late = 1; late <= 6; ++late) {
      EXPECT_NE(what[r].find("rank " + std::to_string(late) + " ("), std::string::npos)
          << "rank " << r << " names rank " << late << ": " << what[r];
    }
    EXPECT_NE(what[r].find("and 2 more: ranks 7-8 (last completed op #0)"), std::string::npos)
        << "rank " << r << ": " << what[r];
    if (r > 0) EXPECT_NE(what[r].find("rank 0 ("), std::string::npos) << "relayed: " << what[r];
    if (r > 0) EXPECT_NE(what[r].find(" reports: "), std::string::npos) << "relayed: " << what[r];
  }
  testing::destroyAll(comms);
}

}  // namespace
}  // namespace lockstep
