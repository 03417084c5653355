// How large ops choose to fill their send slots (src/exec/slot_stores.h): both ways tried, the
// faster kept, the other retried now and then so that a change is followed.
#include <gtest/gtest.h>

#include <vector>

#include "src/exec/slot_stores.h"

namespace lockstep {
namespace {

constexpr size_t kBytes = size_t{64} << 20;

// Runs `calls` ops of kBytes, ordinary ones taking `ordinaryUs` and streaming ones `streamingUs`;
// returns how many streamed.
int run(SlotStores& s, int calls, double ordinaryUs, double streamingUs) {
  int streamed = 0;
  for (int i = 0; i < calls; ++i) {
    const bool way = s.streaming(kBytes);
    streamed += way;
    s.record(kBytes, way ? streamingUs : ordinaryUs);
  }
  return streamed;
}

TEST(SlotStores, TriesBothWaysThenKeepsTheFaster) {
  SlotStores s;
  EXPECT_FALSE(s.streaming(kBytes)) << "the first call is ordinary (and untimed)";
  s.record(kBytes, 1e9);  // a first call's page faults count for nothing
  std::vector<bool> ways;
  for (int i = 0; i < 4; ++i) {
    ways.push_back(s.streaming(kBytes));
    s.record(kBytes, ways.back() ? 10'000 : 30'000);
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

TEST(SlotStores, EachSizeDecidesAlone) {
  SlotStores s;
  run(s, 100, 30'000, 10'000);
  EXPECT_FALSE(s.streaming(kBytes / 4)) << "another size starts afresh, untimed and ordinary";
  s.record(kBytes / 4, 1);
  EXPECT_GT(run(s, 100, 30'000, 10'000), 80) << "the first size still streams";
}

}  // namespace
}  // namespace lockstep
