// How large ops choose to fill their send slots (src/exec/slot_stores.h): both ways tried, the
// faster kept, the other retried now and then so that a change is followed.
#include <gtest/gtest.h>

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
  // Streaming was 3x faster: it is kept, but for one call in kExploreEvery.
  const int calls = 160;
  const int streamed = run(s, calls, 30'000, 10'000);
  EXPECT_EQ(streamed, calls - calls / static_cast<int>(SlotStores::kExploreEvery));
}

TEST(SlotStores, FollowsAChangeBackToOrdinaryStores) {
  SlotStores s;
  run(s, 100, 30'000, 10'000);  // two L3s: streaming wins
  // The peers now share a cache: ordinary stores are faster, seen at the exploring calls.
  run(s, 200, 8'000, 10'000);
  EXPECT_LE(run(s, 160, 8'000, 10'000), 160 / static_cast<int>(SlotStores::kExploreEvery))
      << "back to ordinary stores, streaming only when exploring";
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
