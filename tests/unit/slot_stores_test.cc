// How ops choose to fill their send slots (src/exec/slot_stores.h): both ways timed at the same
// calls on every rank, the faster kept, and the other sampled again once a period so that a change
// is followed.
#include <gtest/gtest.h>

#include <vector>

#include "src/exec/slot_stores.h"

namespace lockstep {
namespace {

constexpr size_t kBytes = size_t{64} << 20;
constexpr uint32_t kShape = 1;

// Runs `calls` ops of `bytes`, ordinary ones taking `ordinaryUs` and streaming ones `streamingUs`;
// returns how many streamed.
int run(SlotStores& s, int calls, double ordinaryUs, double streamingUs, size_t bytes = kBytes) {
  int streamed = 0;
  for (int i = 0; i < calls; ++i) {
    const bool way = s.streaming(kShape, bytes);
    streamed += way;
    s.record(kShape, bytes, way ? streamingUs : ordinaryUs);
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
  // Streaming was 3x faster: it is kept, but for the ordinary samples, one a period.
  const uint64_t every = SlotStores::sampleEvery(kBytes);
  const int calls = 1000;
  int samples = 0;
  for (uint64_t c = 5; c < 5 + calls; ++c) samples += c % every == every / 2;
  EXPECT_EQ(calls - run(s, calls, 30'000, 10'000), samples);
}

// A rank's call waits for its peers: a way shows its speed when they store that way too. Ranks
// whose timings differ (and which may even choose differently) still sample at the same calls.
TEST(SlotStores, EveryRankSamplesAtTheSameCalls) {
  SlotStores a, b, c;
  std::vector<int> aStreamed, bStreamed, cOrdinary;
  for (int call = 0; call < 600; ++call) {
    const bool wa = a.streaming(kShape, kBytes / 16), wb = b.streaming(kShape, kBytes / 16),
               wc = c.streaming(kShape, kBytes / 16);
    a.record(kShape, kBytes / 16, wa ? 22'000 : 10'000);                    // ordinary faster
    b.record(kShape, kBytes / 16, (wb ? 25'000 : 9'000) + call % 7 * 300);  // the same, noisier
    c.record(kShape, kBytes / 16, wc ? 4'000 : 30'000);                     // streaming faster
    if (wa) aStreamed.push_back(call);
    if (wb) bStreamed.push_back(call);
    if (!wc) cOrdinary.push_back(call);
  }
  EXPECT_EQ(aStreamed, bStreamed);
  const uint64_t every = SlotStores::sampleEvery(kBytes / 16);
  ASSERT_EQ(every, SlotStores::kSampleEvery);
  std::vector<int> streamingSamples{2, 4}, ordinarySamples{0, 1, 3};
  for (int call = 5; call < 600; ++call) {
    if (call % every == 0) streamingSamples.push_back(call);
    if (call % every == every / 2) ordinarySamples.push_back(call);
  }
  EXPECT_EQ(aStreamed, streamingSamples);
  EXPECT_EQ(cOrdinary, ordinarySamples);
}

TEST(SlotStores, SamplesOfTheSlowerWayCostAboutOnePercent) {
  // Ways 2.2x apart (ordinary stores at 256 KiB on peers sharing an L3).
  SlotStores s;
  const int calls = 10'000;
  const double extra = run(s, calls, 10'000, 22'000, kBytes / 16) * 12'000.0, total = calls * 10'000.0 + extra;
  EXPECT_NEAR(extra / total, 1.2 / SlotStores::kSampleEvery, 0.001);
  EXPECT_EQ(SlotStores::sampleEvery(kBytes), SlotStores::kSampleEveryLarge) << "64 MiB: a call takes milliseconds";
}

TEST(SlotStores, FollowsAChangeBackToOrdinaryStores) {
  SlotStores s;
  run(s, 100, 30'000, 10'000);  // two L3s: streaming wins
  // The peers now share a cache: ordinary stores are faster, which the next ordinary sample
  // shows (within a period).
  run(s, static_cast<int>(SlotStores::sampleEvery(kBytes)), 8'000, 10'000);
  EXPECT_LE(run(s, 100, 8'000, 10'000), 100 / static_cast<int>(SlotStores::sampleEvery(kBytes)) + 1)
      << "back to ordinary stores, streaming only when sampled";
}

TEST(SlotStores, FollowsAChangeThatSlowsTheChosenWayWithinAFewCalls) {
  SlotStores s;
  run(s, 100, 10'000, 22'000);  // one L3: ordinary stores win
  // The ranks now sit behind two L3s: ordinary stores take 8x as long, streaming 0.8x. Once the
  // last kRecent ordinary calls are all that slow, streaming's figure beats them: the rank
  // switches at once, not at the next samples (up to two periods later).
  std::vector<bool> ways;
  for (uint32_t i = 0; i < SlotStores::kRecent + 3; ++i) {
    ways.push_back(s.streaming(kShape, kBytes));
    s.record(kShape, kBytes, ways.back() ? 18'000 : 80'000);
  }
  std::vector<bool> want(SlotStores::kRecent, false);
  want.resize(SlotStores::kRecent + 3, true);
  EXPECT_EQ(ways, want);
  EXPECT_GE(run(s, 100, 80'000, 18'000), 100 - 100 / static_cast<int>(SlotStores::sampleEvery(kBytes)) - 1);
}

TEST(SlotStores, ACallSlowedByWhatItWaitedForDoesNotFlipTheChoice) {
  // 4 ranks on 2 vCPUs: a call now and then waits for a descheduled peer, 10x its usual time;
  // even a sample that slow leaves the least of the window alone.
  SlotStores s;
  run(s, 100, 10'000, 22'000);
  int streamed = 0;
  for (int i = 0; i < 300; ++i) {
    const bool way = s.streaming(kShape, kBytes);
    streamed += way;
    s.record(kShape, kBytes, i % 50 == 0 ? 100'000 : way ? 22'000 : 10'000);
  }
  EXPECT_LE(streamed, 300 / static_cast<int>(SlotStores::sampleEvery(kBytes)) + 1) << "ordinary stores stay the choice";
}

TEST(SlotStores, ASlowStretchDoesNotFlipTheChoice) {
  // Ordinary stores 10 us, streaming 22; then, for 40 calls, the host slows every call down:
  // ordinary 26 us, streaming 40. The stretch's samples are the slower of each window.
  SlotStores s;
  run(s, 100, 10'000, 22'000);
  EXPECT_LE(run(s, 40, 26'000, 40'000), 2);
  EXPECT_LE(run(s, 100, 10'000, 22'000), 100 / static_cast<int>(SlotStores::sampleEvery(kBytes)) + 1);
}

TEST(SlotStores, AHiccupThatSwitchedIsUndoneAtTheNextResample) {
  // 128 KiB on peers sharing an L3: ordinary 10 us, streaming 13. Right after an ordinary sample
  // (call 64), four ordinary calls take 45 us: the watch switches to streaming. The sample of
  // ordinary stores at the next multiple of kResampleEvery brings them back, not the next
  // regular ordinary sample (call 192).
  SlotStores s;
  const size_t bytes = kBytes / 512;
  ASSERT_EQ(SlotStores::sampleEvery(bytes), 128u);
  run(s, 65, 10'000, 13'000, bytes);
  run(s, 4, 45'000, 13'000, bytes);
  EXPECT_LE(run(s, 60, 10'000, 13'000, bytes), static_cast<int>(SlotStores::kResampleEvery));
}

TEST(SlotStores, AnOpThatDoesNotChooseIsCountedAllTheSame) {
  // One rank ran call 7 in the background (no choice there), the other inline: their samples
  // still fall on the same calls.
  SlotStores a, b;
  const size_t bytes = kBytes / 512;
  std::vector<int> aStreamed, bStreamed;
  for (int call = 0; call < 300; ++call) {
    const bool wa = a.streaming(kShape, bytes);
    a.record(kShape, bytes, wa ? 22'000 : 10'000);
    if (wa) aStreamed.push_back(call);
    if (call == 7) {
      b.skip(kShape, bytes);
      continue;
    }
    const bool wb = b.streaming(kShape, bytes);
    b.record(kShape, bytes, wb ? 22'000 : 10'000);
    if (wb) bStreamed.push_back(call);
  }
  EXPECT_EQ(aStreamed, bStreamed);
  EXPECT_EQ(aStreamed, (std::vector<int>{2, 4, 128, 256}));
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
