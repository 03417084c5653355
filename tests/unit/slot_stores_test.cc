// How ops choose to fill their send slots (src/exec/slot_stores.h): both ways tried, the faster
// kept, the other retried now and then (as seldom as keeps its cost near 1 %) so that a change
// is followed.
#include <gtest/gtest.h>

#include <limits>
#include <vector>

#include "src/exec/slot_stores.h"

namespace lockstep {
namespace {

constexpr size_t kBytes = size_t{64} << 20;
constexpr uint32_t kShape = 1;

// Runs `calls` ops of kBytes, ordinary ones taking `ordinaryUs` and streaming ones `streamingUs`;
// returns how many streamed.
int run(SlotStores& s, int calls, double ordinaryUs, double streamingUs) {
  int streamed = 0;
  for (int i = 0; i < calls; ++i) {
    const bool way = s.streaming(kShape, kBytes);
    streamed += way;
    s.record(kShape, kBytes, way ? streamingUs : ordinaryUs);
  }
  return streamed;
}

TEST(SlotStores, TriesBothWaysThenKeepsTheFaster) {
  SlotStores s;
  EXPECT_FALSE(s.streaming(kShape, kBytes)) << "the first call is ordinary (and untimed)";
  s.record(kShape, kBytes, 1e9);  // a first call's page faults count for nothing
  std::vector<bool> ways;
  for (int i = 0; i < 4; ++i) {
    ways.push_back(s.streaming(kShape, kBytes));
    s.record(kShape, kBytes, ways.back() ? 10'000 : 30'000);
  }
  EXPECT_EQ(ways, (std::vector<bool>{false, true, false, true}));
  // Streaming was 3x faster: it is kept, but for one call in 200 (each ordinary call costs two
  // streaming calls' time more: 1 % of the total).
  EXPECT_EQ(SlotStores::exploreEvery(3.0), 200u);
  const int calls = 1000;
  EXPECT_NEAR(calls - run(s, calls, 30'000, 10'000), calls / 200, 1);
}

TEST(SlotStores, TriesTheOtherWayAsOftenAsItsCostAllows) {
  EXPECT_EQ(SlotStores::exploreEvery(1.0), SlotStores::kMinExploreEvery) << "a tie: checked often, for nothing";
  EXPECT_EQ(SlotStores::exploreEvery(0.5), SlotStores::kMinExploreEvery);
  EXPECT_EQ(SlotStores::exploreEvery(1.5), 50u);
  EXPECT_EQ(SlotStores::exploreEvery(100.0), SlotStores::kMaxExploreEvery) << "still followed, if slowly";
  EXPECT_EQ(SlotStores::exploreEvery(std::numeric_limits<double>::quiet_NaN()), SlotStores::kMaxExploreEvery)
      << "no figure for a way yet";
  // Ways 2.2x apart (ordinary stores at 256 KiB on peers sharing an L3): the slower way costs
  // about kExploreCost of the time.
  SlotStores s;
  const int calls = 10'000;
  const int streamed = run(s, calls, 10'000, 22'000);
  const double extra = streamed * 12'000.0, total = calls * 10'000.0 + extra;
  EXPECT_NEAR(extra / total, SlotStores::kExploreCost, 0.002);
}

TEST(SlotStores, FollowsAChangeBackToOrdinaryStores) {
  SlotStores s;
  run(s, 100, 30'000, 10'000);  // two L3s: streaming wins
  // The peers now share a cache: ordinary stores are faster, which the first call that tries
  // them shows (within 200 calls, the period that streaming's lead bought).
  run(s, 200, 8'000, 10'000);
  EXPECT_LE(run(s, 160, 8'000, 10'000), 160 / static_cast<int>(SlotStores::exploreEvery(10'000.0 / 8'000)) + 1)
      << "back to ordinary stores, streaming only when exploring";
}

TEST(SlotStores, FollowsAChangeThatSlowsTheChosenWay) {
  SlotStores s;
  run(s, 100, 10'000, 22'000);  // one L3: ordinary stores win, streaming tried every 120th call
  // The ranks now sit behind two L3s: ordinary stores take 8x as long, streaming 0.8x. Once
  // every call in the window is that slow, streaming takes over, without waiting for a call
  // the other way.
  std::vector<bool> ways;
  for (uint32_t i = 0; i < SlotStores::kWindow + 2; ++i) {
    ways.push_back(s.streaming(kShape, kBytes));
    s.record(kShape, kBytes, ways.back() ? 18'000 : 80'000);
  }
  std::vector<bool> want(SlotStores::kWindow, false);
  want.resize(SlotStores::kWindow + 2, true);
  EXPECT_EQ(ways, want);
}

TEST(SlotStores, ACallSlowedByWhatItWaitedForDoesNotFlipTheChoice) {
  // 4 ranks on 2 vCPUs: a call now and then waits for a descheduled peer, 10x its usual time.
  SlotStores s;
  run(s, 100, 10'000, 22'000);
  EXPECT_FALSE(s.streaming(kShape, kBytes));
  s.record(kShape, kBytes, 100'000);
  EXPECT_LE(run(s, 100, 10'000, 22'000), 1) << "ordinary stores stay the choice (streaming tried once at most)";
}

TEST(SlotStores, ASlowStretchOfTheChosenWayIsCheckedBeforeSwitching) {
  // Ordinary stores 10 us, streaming 22; then, for 40 calls, the host slows every call down:
  // ordinary 26 us, streaming 40. Streaming's figure from before the stretch (22) would look
  // faster; one try of it shows that it is not, and ordinary stores stay the choice.
  SlotStores s;
  run(s, 100, 10'000, 22'000);
  EXPECT_EQ(run(s, 40, 26'000, 40'000), 1) << "one try, not a switch";
  EXPECT_EQ(run(s, 50, 10'000, 22'000), 0);
}

TEST(SlotStores, OpsOfAnotherShapeAreTimedApart) {
  // Two kinds of op alternate: one 3x faster streaming, the other 3x faster with ordinary stores.
  SlotStores s;
  int streamedA = 0, streamedB = 0;
  for (int i = 0; i < 200; ++i) {
    const bool a = s.streaming(1, kBytes);
    s.record(1, kBytes, a ? 10'000 : 30'000);
    const bool b = s.streaming(2, kBytes);
    s.record(2, kBytes, b ? 30'000 : 10'000);
    streamedA += a;
    streamedB += b;
  }
  EXPECT_GT(streamedA, 170);
  EXPECT_LT(streamedB, 30);
}

TEST(SlotStores, EachSizeDecidesAlone) {
  SlotStores s;
  run(s, 100, 30'000, 10'000);
  EXPECT_FALSE(s.streaming(kShape, kBytes / 4)) << "another size starts afresh, untimed and ordinary";
  s.record(kShape, kBytes / 4, 1);
  EXPECT_GT(run(s, 100, 30'000, 10'000), 80) << "the first size still streams";
}

}  // namespace
}  // namespace lockstep
